//! A DNS server answering from the registry, as Consul's DNS interface
//! does (feature `dns`, on by default), built on hickory-dns's server.
//!
//! | name | type | answer |
//! | --- | --- | --- |
//! | `<service>.service.<domain>` | A, AAAA | the IP of each healthy instance |
//! | `<tag>.<service>.service.<domain>` | A, AAAA, SRV | only instances carrying the tag |
//! | `_<service>._<tag>.service.<domain>` | SRV (RFC 2782) | `_tcp` / `_udp` as tag: any instance |
//! | `<service>.service.<domain>` | SRV | one record per distinct target and port, priority and weight 1 |
//! | `<hex ip>.addr.<domain>` | A, AAAA | the SRV target of an instance on an IP, also sent as additional record |
//! | `<domain>` | SOA | a synthesized SOA whose minimum is the TTL |
//!
//! Decisions (with Consul's defaults where it has one):
//! - Healthy means passing **or warning** ([`HealthFilter::PassingOrWarning`],
//!   Consul's `only_passing = false`); [`DnsOptions::with_health`] changes it.
//! - The TTL is 0 by default (Consul's `service_ttl`): every answer reflects
//!   the registry now. [`DnsOptions::with_ttl`] sets a small one; the SOA
//!   minimum follows it, so negative answers are cached as long.
//! - Answers are shuffled per reply, for client-side balancing. Over UDP a
//!   reply larger than the client's buffer is truncated (TC set) and
//!   resolvers retry over TCP, served on the same port.
//! - An instance address is `host:port`. An IP host gives A/AAAA records
//!   and an SRV record whose target is `<hex ip>.addr.<domain>`; a hostname
//!   gives only an SRV record with the hostname as target (no CNAME: a
//!   CNAME must be alone at its name, and a service has many instances).
//!   Other addresses (URLs, paths) are left out.
//! - A service (with the tag) without healthy instances is NXDOMAIN, as in
//!   Consul; a type the service has no records of (TXT, or A when it only
//!   has IPv6) is NOERROR without answers. Names in the domain that mean
//!   nothing are NXDOMAIN; names outside it are REFUSED (the server is
//!   authoritative only, it never recurses); errors reading the registry
//!   are SERVFAIL.
//! - DNS names are case-insensitive, registry keys are not: a query is
//!   looked up in lower case, so give services lower-case names (one DNS
//!   label each: no dots) to reach them through DNS. Tags match
//!   case-insensitively.
//!
//! Answers come from one live [`Subscription`](crate::Subscription) per
//! service, started on the first query for it (SERVFAIL if that takes
//! longer than [`DnsOptions::with_start_timeout`]), dropped when not asked
//! for within [`DnsOptions::with_idle_timeout`], and at most
//! [`DnsOptions::with_max_subscriptions`] of them: past that, the least
//! recently asked is dropped, so random names cannot grow the set. While the
//! store is unreachable the subscriptions keep their last known instances
//! and answers go on from them.
//!
//! ```no_run
//! # async fn demo(client: kv_client::Client) -> Result<(), kv_discovery::dns::DnsError> {
//! use kv_discovery::dns::{DnsOptions, DnsServer};
//! let server = DnsServer::bind(client, "127.0.0.1:8600".parse().unwrap(), DnsOptions::new()).await?;
//! // dig @127.0.0.1 -p 8600 api.service.kv SRV
//! server.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod cache;
mod handler;
mod names;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::rr::{LowerName, Name};
use kv_client::Client;
use tokio::net::{TcpListener, UdpSocket};

use crate::{DEFAULT_NAMESPACE, HealthFilter};
use cache::Cache;
use handler::Handler;

/// The default DNS domain (Consul's is `consul`).
pub const DEFAULT_DOMAIN: &str = "kv";
/// The default bound on the services followed at once.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 256;
/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// A failure to start or run the DNS server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The domain is not a DNS name.
    #[error("invalid DNS domain {0:?}")]
    InvalidDomain(String),
    /// An option out of range.
    #[error("invalid DNS option: {0}")]
    InvalidOption(String),
    /// The UDP socket or TCP listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The server's sockets failed while serving.
    #[error("DNS server failed: {0}")]
    Server(String),
}

/// Settings of a [`DnsServer`]; the defaults follow Consul's.
///
/// ```
/// use std::time::Duration;
/// use kv_discovery::dns::DnsOptions;
/// use kv_discovery::HealthFilter;
/// let o = DnsOptions::new()
///     .with_domain("kv.example")
///     .with_ttl(5)
///     .with_health(HealthFilter::Passing)
///     .with_idle_timeout(Duration::from_secs(30));
/// assert_eq!(o.domain(), "kv.example");
/// assert_eq!(DnsOptions::new().ttl(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct DnsOptions {
    domain: String,
    namespace: String,
    ttl: u32,
    health: HealthFilter,
    max_subscriptions: usize,
    idle_timeout: Duration,
    start_timeout: Duration,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            domain: DEFAULT_DOMAIN.to_string(),
            namespace: DEFAULT_NAMESPACE.to_string(),
            ttl: 0,
            health: HealthFilter::PassingOrWarning,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            idle_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(2),
        }
    }
}

impl DnsOptions {
    /// Domain `kv`, namespace `kv`, TTL 0, passing and warning instances,
    /// at most 256 services followed, each dropped after 60 s unasked.
    pub fn new() -> DnsOptions {
        DnsOptions::default()
    }
    /// The domain served (`<service>.service.<domain>`).
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = domain.into();
        self
    }
    /// The registry's key namespace (see [`Registry::with_namespace`](crate::Registry::with_namespace)).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }
    /// The TTL of every record, in seconds (and the SOA minimum).
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }
    /// Which health states are answered.
    pub fn with_health(mut self, health: HealthFilter) -> Self {
        self.health = health;
        self
    }
    /// The most services followed at once (at least 1).
    pub fn with_max_subscriptions(mut self, max: usize) -> Self {
        self.max_subscriptions = max;
        self
    }
    /// How long a service's subscription outlives its last query.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }
    /// How long a first query waits for the service's first read before
    /// the answer is SERVFAIL.
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }
    /// The domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }
    /// The TTL in seconds.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }
}

/// A DNS server (UDP and TCP on one port) answering from the registry;
/// see the [module docs](self). Dropping it stops it.
pub struct DnsServer {
    addr: SocketAddr,
    server: hickory_server::Server<Handler>,
    cache: Arc<Cache>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Listens on `addr` (UDP and TCP; port 0 picks a free port, the same
    /// for both) and serves until shut down or dropped.
    pub async fn bind(
        client: Client,
        addr: SocketAddr,
        options: DnsOptions,
    ) -> Result<DnsServer, DnsError> {
        let domain = parse_domain(&options.domain)?;
        if options.max_subscriptions == 0 {
            return Err(DnsError::InvalidOption(
                "max subscriptions must be at least 1".into(),
            ));
        }
        if options.idle_timeout.is_zero() || options.start_timeout.is_zero() {
            return Err(DnsError::InvalidOption("timeouts must be positive".into()));
        }
        if options.namespace.is_empty() {
            return Err(DnsError::InvalidOption(
                "the namespace must not be empty".into(),
            ));
        }
        let (udp, tcp) = bind_pair(addr).await?;
        let local = udp
            .local_addr()
            .map_err(|source| DnsError::Bind { addr, source })?;
        let cache = Arc::new(Cache::new(
            client,
            options.namespace,
            options.health,
            options.max_subscriptions,
            options.start_timeout,
        ));
        let handler = Handler {
            domain,
            ttl: options.ttl,
            cache: cache.clone(),
        };
        let mut server = hickory_server::Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, TCP_RESPONSE_BUFFER);
        let sweeper = cache::spawn_sweeper(Arc::downgrade(&cache), options.idle_timeout);
        tracing::info!(addr = %local, domain = %options.domain, "dns: serving");
        Ok(DnsServer {
            addr: local,
            server,
            cache,
            sweeper,
        })
    }

    /// The address served (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many services are followed now (started or starting).
    pub fn subscriptions(&self) -> usize {
        self.cache.len()
    }

    /// Runs until the sockets fail (it never returns otherwise).
    pub async fn wait(&mut self) -> Result<(), DnsError> {
        self.server
            .block_until_done()
            .await
            .map_err(|e| DnsError::Server(e.to_string()))
    }

    /// Stops accepting, finishes the requests in flight and returns.
    pub async fn shutdown(mut self) -> Result<(), DnsError> {
        self.sweeper.abort();
        self.server
            .shutdown_gracefully()
            .await
            .map_err(|e| DnsError::Server(e.to_string()))
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.sweeper.abort();
        self.server.shutdown_token().cancel();
    }
}

fn parse_domain(domain: &str) -> Result<LowerName, DnsError> {
    let bad = || DnsError::InvalidDomain(domain.to_string());
    let trimmed = domain.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(bad());
    }
    let name = Name::from_ascii(format!("{trimmed}.")).map_err(|_| bad())?;
    Ok(LowerName::from(name))
}

/// A UDP socket and a TCP listener on the same port.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let err = |source| DnsError::Bind { addr, source };
    // With port 0 the UDP port may be taken on TCP: try a few.
    let tries = if addr.port() == 0 { 8 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(addr).await.map_err(err)?;
        let port = udp.local_addr().map_err(err)?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(err(last.unwrap_or_else(|| std::io::Error::other("no port"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(parse_domain("kv").unwrap().to_string(), "kv.");
        assert_eq!(
            parse_domain("Kv.Example.").unwrap().to_string(),
            "kv.example."
        );
        assert!(parse_domain("").is_err());
        assert!(parse_domain(".").is_err());
        assert!(parse_domain("a..b").is_err());
    }
}
