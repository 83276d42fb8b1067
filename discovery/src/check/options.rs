//! Checks described as flat options, the way `kvctl service register` and
//! the Python and Node `register(...)` take them, named after the fields of
//! a Consul check definition (`HTTP`, `TCP`, `GRPC`, `Args`, `TTL`,
//! `Interval`, `Timeout`, `DeregisterCriticalServiceAfter`,
//! `SuccessBeforePassing`, `FailuresBeforeCritical`, `TLSServerName`,
//! `TLSSkipVerify`; a CA file too, which Consul takes from its agent).
//! One place turns them into [`Check`]s, so every front end names and
//! validates them alike.

use std::path::PathBuf;
use std::time::Duration;

use super::{Check, tls};

/// Why a set of [`CheckOptions`] cannot become checks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckOptionsError {
    /// A check target that cannot be probed (the option and the reason).
    #[error("invalid {option} {value:?}: {reason}")]
    Invalid {
        /// The option, e.g. `check-http`.
        option: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A duration that must be positive is zero.
    #[error("{0} must be positive")]
    NotPositive(&'static str),
    /// The CA file cannot be read or holds no usable certificate.
    #[error("invalid check-tls-ca-file: {0}")]
    CaFile(String),
    /// TLS settings without an `https://` HTTP or gRPC check to use them.
    #[error(
        "check-tls-ca-file, check-tls-server-name and check-tls-skip-verify need an https:// HTTP or gRPC check"
    )]
    TlsWithoutHttps,
}

/// Health checks as flat options; [`into_checks`](CheckOptions::into_checks)
/// makes the [`Check`]s. The shared settings (interval, timeout, thresholds,
/// `deregister_critical_after`) apply to every check. Checks are named
/// after their kind (`http`, `tcp`, `grpc`, `cmd`, `ttl`), a second one of
/// the same kind `http-2` and so on: the TTL check's name is what
/// [`Registration::update_ttl`](crate::Registration::update_ttl) takes.
///
/// ```
/// use std::time::Duration;
/// use kv_discovery::check::CheckOptions;
/// let checks = CheckOptions {
///     http: vec!["http://127.0.0.1:8080/health".into()],
///     grpc: vec!["127.0.0.1:50051/my.Service".into()],
///     ttl: vec![Duration::from_secs(30)],
///     interval: Some(Duration::from_secs(5)),
///     ..Default::default()
/// }
/// .into_checks()
/// .unwrap();
/// let names: Vec<&str> = checks.iter().map(|c| c.name()).collect();
/// assert_eq!(names, ["http", "grpc", "ttl"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// URLs to `GET` (`http://` or `https://`).
    pub http: Vec<String>,
    /// `host:port` addresses to connect to.
    pub tcp: Vec<String>,
    /// gRPC health targets, Consul's form `ADDR[/SERVICE]` (`ADDR` is
    /// `host:port` or `http(s)://host:port`).
    pub grpc: Vec<String>,
    /// Commands to run: the program, then its arguments.
    pub command: Vec<Vec<String>>,
    /// TTL checks: how long each report holds.
    pub ttl: Vec<Duration>,
    /// Time between two probes (default [`DEFAULT_CHECK_INTERVAL`](super::DEFAULT_CHECK_INTERVAL)).
    pub interval: Option<Duration>,
    /// Limit on one probe (default [`DEFAULT_CHECK_TIMEOUT`](super::DEFAULT_CHECK_TIMEOUT)).
    pub timeout: Option<Duration>,
    /// Deregister once a check has been critical this long.
    pub deregister_critical_after: Option<Duration>,
    /// Consecutive passing results needed to turn passing (default 1).
    pub success_before_passing: Option<u32>,
    /// Consecutive failures needed to turn warning or critical (default 1).
    pub failures_before_critical: Option<u32>,
    /// `https://` checks trust the CA certificates of this PEM file instead
    /// of the system's roots ([`Check::with_tls_ca_file`]).
    pub tls_ca_file: Option<PathBuf>,
    /// `https://` checks verify the certificate for this name
    /// ([`Check::with_tls_server_name`], Consul's `TLSServerName`).
    pub tls_server_name: Option<String>,
    /// `https://` checks accept any certificate
    /// ([`Check::with_tls_skip_verify`], Consul's `TLSSkipVerify`).
    pub tls_skip_verify: bool,
}

impl CheckOptions {
    /// Whether no check is asked for.
    pub fn is_empty(&self) -> bool {
        self.http.is_empty()
            && self.tcp.is_empty()
            && self.grpc.is_empty()
            && self.command.is_empty()
            && self.ttl.is_empty()
    }

    /// The checks, validated: URLs parse with the `http` or `https`
    /// scheme, addresses and programs are non-empty, durations positive;
    /// TLS settings need an `https://` check, and the CA file must hold a
    /// certificate.
    pub fn into_checks(self) -> Result<Vec<Check>, CheckOptionsError> {
        for (what, d) in [
            ("interval", self.interval),
            ("timeout", self.timeout),
            ("deregister-critical-after", self.deregister_critical_after),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(CheckOptionsError::NotPositive(what));
            }
        }
        if self.ttl.contains(&Duration::ZERO) {
            return Err(CheckOptionsError::NotPositive("check-ttl"));
        }
        self.check_tls()?;
        let mut out = Vec::new();
        for (i, url) in self.http.into_iter().enumerate() {
            check_url(&url)?;
            out.push(Check::http(name("http", i), url));
        }
        for (i, addr) in self.tcp.into_iter().enumerate() {
            if addr.trim().is_empty() {
                return Err(invalid("check-tcp", addr, "empty address"));
            }
            out.push(Check::tcp(name("tcp", i), addr));
        }
        for (i, target) in self.grpc.into_iter().enumerate() {
            let (addr, service) = grpc_target(&target)?;
            out.push(Check::grpc(name("grpc", i), addr, service));
        }
        for (i, argv) in self.command.into_iter().enumerate() {
            let mut argv = argv.into_iter();
            let program = argv.next().filter(|p| !p.is_empty());
            let Some(program) = program else {
                return Err(invalid("check-cmd", String::new(), "empty command"));
            };
            out.push(Check::command(name("cmd", i), program, argv));
        }
        for (i, ttl) in self.ttl.into_iter().enumerate() {
            out.push(Check::ttl(name("ttl", i), ttl));
        }
        Ok(out
            .into_iter()
            .map(|mut c| {
                if let Some(d) = self.interval {
                    c = c.with_interval(d);
                }
                if let Some(d) = self.timeout {
                    c = c.with_timeout(d);
                }
                if let Some(d) = self.deregister_critical_after {
                    c = c.with_deregister_critical_after(d);
                }
                if let Some(n) = self.success_before_passing {
                    c = c.with_success_before_passing(n);
                }
                if let Some(n) = self.failures_before_critical {
                    c = c.with_failures_before_critical(n);
                }
                if let Some(path) = &self.tls_ca_file {
                    c = c.with_tls_ca_file(path.clone());
                }
                if let Some(name) = &self.tls_server_name {
                    c = c.with_tls_server_name(name.clone());
                }
                c.with_tls_skip_verify(self.tls_skip_verify)
            })
            .collect())
    }
}

impl CheckOptions {
    /// The TLS settings are usable: some check is `https://`, the server
    /// name is a DNS name or IP address, the CA file holds certificates.
    fn check_tls(&self) -> Result<(), CheckOptionsError> {
        let settings = tls::CheckTls {
            ca_file: self.tls_ca_file.clone(),
            server_name: self.tls_server_name.clone(),
            skip_verify: self.tls_skip_verify,
        };
        if settings == tls::CheckTls::default() {
            return Ok(());
        }
        let https = |t: &String| t.trim_start().starts_with("https://");
        if !self.http.iter().chain(&self.grpc).any(https) {
            return Err(CheckOptionsError::TlsWithoutHttps);
        }
        if let Some(name) = &self.tls_server_name
            && tls::server_name(&settings, name).is_err()
        {
            return Err(invalid(
                "check-tls-server-name",
                name.clone(),
                "not a DNS name or IP address",
            ));
        }
        if self.tls_ca_file.is_some() {
            let ca_only = tls::CheckTls {
                skip_verify: false,
                ..settings
            };
            tls::verifier(&ca_only).map_err(|e| CheckOptionsError::CaFile(e.to_string()))?;
        }
        Ok(())
    }
}

/// `kind`, then `kind-2`, `kind-3`...
fn name(kind: &str, i: usize) -> String {
    if i == 0 {
        kind.to_string()
    } else {
        format!("{kind}-{}", i + 1)
    }
}

fn invalid(option: &'static str, value: String, reason: &'static str) -> CheckOptionsError {
    CheckOptionsError::Invalid {
        option,
        value,
        reason,
    }
}

fn check_url(url: &str) -> Result<(), CheckOptionsError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| invalid("check-http", url.to_string(), "not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid(
            "check-http",
            url.to_string(),
            "the scheme must be http or https",
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("check-http", url.to_string(), "no host"));
    }
    Ok(())
}

/// Consul's gRPC check target `ADDR[/SERVICE]` as (`scheme://host:port`,
/// service); `ADDR` without a scheme is plain `http://`.
///
/// ```
/// use kv_discovery::check::grpc_target;
/// assert_eq!(grpc_target("127.0.0.1:50051/my.Svc").unwrap(), ("http://127.0.0.1:50051".into(), "my.Svc".into()));
/// assert_eq!(grpc_target("https://h:443").unwrap(), ("https://h:443".into(), String::new()));
/// assert!(grpc_target("/svc").is_err());
/// ```
pub fn grpc_target(target: &str) -> Result<(String, String), CheckOptionsError> {
    let (scheme, rest) = match target.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest),
        Some(_) => {
            return Err(invalid(
                "check-grpc",
                target.to_string(),
                "the scheme must be http or https",
            ));
        }
        None => ("http", target),
    };
    let (authority, service) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() || !authority.contains(':') {
        return Err(invalid(
            "check-grpc",
            target.to_string(),
            "expected host:port[/service]",
        ));
    }
    Ok((format!("{scheme}://{authority}"), service.to_string()))
}

/// Splits a command line into its words: on whitespace, except inside
/// single or double quotes; a backslash outside single quotes keeps the
/// next character. No other shell syntax (run `sh -c '...'` for that).
///
/// ```
/// use kv_discovery::check::split_command;
/// assert_eq!(split_command(r#"sh -c 'exit 1' "a b"\ c"#).unwrap(), ["sh", "-c", "exit 1", "a b c"]);
/// assert!(split_command("echo 'open").is_err());
/// ```
pub fn split_command(line: &str) -> Result<Vec<String>, CheckOptionsError> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    let unterminated = || invalid("check-cmd", line.to_string(), "unterminated quote");
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(unterminated()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => w.extend(chars.next()),
                        Some(c) => w.push(c),
                        None => return Err(unterminated()),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    if words.is_empty() {
        return Err(invalid("check-cmd", line.to_string(), "empty command"));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CheckKind;

    #[test]
    fn names_and_shared_settings() {
        let checks = CheckOptions {
            http: vec!["http://a:1/".into(), "http://b/h".into()],
            tcp: vec!["c:2".into()],
            command: vec![vec!["true".into()]],
            interval: Some(Duration::from_secs(3)),
            failures_before_critical: Some(2),
            ..Default::default()
        }
        .into_checks()
        .unwrap();
        let names: Vec<&str> = checks.iter().map(Check::name).collect();
        assert_eq!(names, ["http", "http-2", "tcp", "cmd"]);
        assert!(checks.iter().all(|c| c.interval == Duration::from_secs(3)));
        assert!(checks.iter().all(|c| c.failures_before_critical == 2));
        assert_eq!(
            checks[3].kind(),
            &CheckKind::Command {
                program: "true".into(),
                args: vec![]
            }
        );
    }

    #[test]
    fn bad_options_are_refused() {
        let bad = |o: CheckOptions| o.into_checks().unwrap_err().to_string();
        let http = |u: &str| CheckOptions {
            http: vec![u.into()],
            ..Default::default()
        };
        assert!(bad(http("ftp://x/")).contains("scheme"));
        assert!(bad(http("not a url")).contains("not a URL"));
        let zero = CheckOptions {
            interval: Some(Duration::ZERO),
            ..Default::default()
        };
        assert_eq!(bad(zero), "interval must be positive");
        let ttl = CheckOptions {
            ttl: vec![Duration::ZERO],
            ..Default::default()
        };
        assert_eq!(bad(ttl), "check-ttl must be positive");
        let tls = |o: CheckOptions| CheckOptions {
            tls_skip_verify: true,
            ..o
        };
        assert!(bad(tls(http("http://a/"))).contains("need an https://"));
        assert!(
            tls(http("https://a/")).into_checks().unwrap()[0]
                .tls()
                .skip_verify
        );
        let ca = CheckOptions {
            tls_ca_file: Some("/nonexistent/ca.pem".into()),
            ..http("https://a/")
        };
        assert!(bad(ca).contains("cannot read CA file"));
        let named = CheckOptions {
            tls_server_name: Some("a b".into()),
            ..http("https://a/")
        };
        assert!(bad(named).contains("check-tls-server-name"));
        assert!(grpc_target("ftp://h:1").is_err());
        assert!(grpc_target("noport").is_err());
        assert!(split_command("  ").is_err());
    }
}
