//! What a DNS name in the served domain asks for, and how an instance's
//! address turns into records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The meaning of a name inside the domain (the domain's labels removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `[tag.]<service>.service`, or RFC 2782's `_<service>._<tag>.service`
    /// (where `_tcp` and `_udp` mean no tag, as in Consul).
    Service {
        /// The service name, lower case (DNS names are case-insensitive).
        service: String,
        /// The tag every answered instance must carry.
        tag: Option<String>,
    },
    /// `<hex>.addr`: the synthetic SRV target of an instance listening on
    /// an IP address (8 hex digits for IPv4, 32 for IPv6, as Consul's).
    Addr(IpAddr),
    /// The domain itself.
    Apex,
    /// Nothing: NXDOMAIN.
    Unknown,
}

/// Parses the labels left of the domain, leftmost first, lower-cased.
pub(crate) fn parse(labels: &[&[u8]]) -> Target {
    let text: Option<Vec<&str>> = labels.iter().map(|l| std::str::from_utf8(l).ok()).collect();
    let Some(text) = text else {
        return Target::Unknown;
    };
    match text.as_slice() {
        [] => Target::Apex,
        [service, "service"] => service_target(service, None),
        [a, b, "service"] => match (a.strip_prefix('_'), b.strip_prefix('_')) {
            (Some(service), Some(proto)) => {
                let tag = (!matches!(proto, "tcp" | "udp")).then_some(proto);
                service_target(service, tag)
            }
            _ => service_target(b, Some(a)),
        },
        [hex, "addr"] => decode_addr(hex).map_or(Target::Unknown, Target::Addr),
        _ => Target::Unknown,
    }
}

fn service_target(service: &str, tag: Option<&str>) -> Target {
    // A name that cannot be one key segment cannot be registered: asking
    // the store about it would only cost a watch.
    let ok = |s: &str| !s.is_empty() && !s.contains('/');
    if !ok(service) || tag.is_some_and(|t| !ok(t)) {
        return Target::Unknown;
    }
    Target::Service {
        service: service.to_string(),
        tag: tag.map(str::to_string),
    }
}

fn decode_addr(hex: &str) -> Option<IpAddr> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    match bytes?.as_slice() {
        &[a, b, c, d] => Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d))),
        b if b.len() == 16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(b);
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// The `<hex>` label of an IP address's synthetic name.
pub(crate) fn encode_addr(ip: IpAddr) -> String {
    let octets: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    octets.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where an instance address points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `ip:port` (`[v6]:port`).
    Socket(SocketAddr),
    /// A bare IP: A/AAAA only, no SRV (no port).
    Ip(IpAddr),
    /// `hostname:port`: SRV only, the hostname as target.
    Host(String, u16),
}

/// Reads a registered address; `None` for anything else (a URL, a path):
/// such an address is left out of DNS answers.
pub(crate) fn endpoint(addr: &str) -> Option<Endpoint> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Some(Endpoint::Socket(sa));
    }
    if let Ok(ip) = addr.parse::<IpAddr>() {
        return Some(Endpoint::Ip(ip));
    }
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return None;
    }
    Some(Endpoint::Host(host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> Target {
        let labels: Vec<&[u8]> = if name.is_empty() {
            Vec::new()
        } else {
            name.split('.').map(str::as_bytes).collect()
        };
        parse(&labels)
    }

    fn svc(service: &str, tag: Option<&str>) -> Target {
        Target::Service {
            service: service.into(),
            tag: tag.map(Into::into),
        }
    }

    #[test]
    fn service_names() {
        assert_eq!(p("web.service"), svc("web", None));
        assert_eq!(p("v2.web.service"), svc("web", Some("v2")));
        assert_eq!(p("_web._tcp.service"), svc("web", None));
        assert_eq!(p("_web._udp.service"), svc("web", None));
        assert_eq!(p("_web._v2.service"), svc("web", Some("v2")));
        assert_eq!(p(""), Target::Apex);
        for unknown in ["service", "web", "a.b.web.service", "web.node", "x.addr"] {
            assert_eq!(p(unknown), Target::Unknown, "{unknown}");
        }
        assert_eq!(parse(&[b"a/b", b"service"]), Target::Unknown);
        assert_eq!(parse(&[b"\xff", b"service"]), Target::Unknown);
    }

    #[test]
    fn addr_names_round_trip() {
        for ip in ["127.0.0.1", "10.1.2.255", "::1", "fd00::abcd:1"] {
            let ip: IpAddr = ip.parse().unwrap();
            let label = encode_addr(ip);
            assert_eq!(p(&format!("{label}.addr")), Target::Addr(ip));
        }
        assert_eq!(encode_addr("127.0.0.1".parse().unwrap()), "7f000001");
        assert_eq!(p("7f00001.addr"), Target::Unknown);
        assert_eq!(p("7f0000zz.addr"), Target::Unknown);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint("10.0.0.1:80"),
            Some(Endpoint::Socket("10.0.0.1:80".parse().unwrap()))
        );
        assert_eq!(
            endpoint("[::1]:8080"),
            Some(Endpoint::Socket("[::1]:8080".parse().unwrap()))
        );
        assert_eq!(endpoint("::1"), Some(Endpoint::Ip("::1".parse().unwrap())));
        assert_eq!(
            endpoint("DB.internal:5432"),
            Some(Endpoint::Host("db.internal".into(), 5432))
        );
        for bad in [
            "http://10.0.0.1:80",
            "db:99999",
            "db",
            "a..b:1",
            "/tmp/sock",
        ] {
            assert_eq!(endpoint(bad), None, "{bad}");
        }
    }
}
