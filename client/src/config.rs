//! Client configuration: endpoints, timeouts, keep-alive and retry tunables.
//!
//! Every default is a named constant below so tests and callers can see (and
//! override) exactly what the client does.

use std::time::Duration;

use crate::error::Error;
use crate::retry::RetryPolicy;
use crate::tls::TlsConfig;

/// Default time allowed to establish one TCP connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of one unary request, retries included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default interval between HTTP/2 keep-alive pings. etcd's server rejects
/// pings more frequent than its `--grpc-keepalive-min-time` (5 s by default),
/// so this stays above that.
pub const DEFAULT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Default time to wait for a ping's acknowledgement before the connection
/// is declared dead (a half-open TCP connection then fails instead of hanging).
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest response the client decodes (etcd's own client allows
/// `math.MaxInt32`; responses above gRPC's usual 4 MiB must work).
pub const DEFAULT_MAX_DECODING_MESSAGE_SIZE: usize = i32::MAX as usize;
/// Default largest request the client encodes.
pub const DEFAULT_MAX_ENCODING_MESSAGE_SIZE: usize = i32::MAX as usize;

/// How to reach the cluster and how patient to be with it.
///
/// Built with chained `with_*` setters over sensible defaults.
///
/// ```
/// use std::time::Duration;
/// use kv_client::ClientConfig;
///
/// let config = ClientConfig::new(["127.0.0.1:2379", "http://127.0.0.1:22379"])
///     .with_connect_timeout(Duration::from_secs(2))
///     .with_request_timeout(Duration::from_secs(5));
/// assert_eq!(config.endpoints().len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct ClientConfig {
    endpoints: Vec<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    keep_alive_interval: Duration,
    keep_alive_timeout: Duration,
    max_decoding_message_size: usize,
    max_encoding_message_size: usize,
    retry: RetryPolicy,
    user: Option<Credentials>,
    tls: Option<TlsConfig>,
}

/// A user name and password for etcd's auth (the password stays out of
/// `Debug` output).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub name: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A configuration for these endpoints (`http://host:port` or bare
    /// `host:port`), with every other setting at its default.
    ///
    /// ```
    /// let config = kv_client::ClientConfig::new(["127.0.0.1:2379"]);
    /// assert_eq!(config.endpoints(), ["127.0.0.1:2379"]);
    /// ```
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            keep_alive_interval: DEFAULT_KEEP_ALIVE_INTERVAL,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            max_decoding_message_size: DEFAULT_MAX_DECODING_MESSAGE_SIZE,
            max_encoding_message_size: DEFAULT_MAX_ENCODING_MESSAGE_SIZE,
            retry: RetryPolicy::default(),
            user: None,
            tls: None,
        }
    }

    /// Authenticates as this user: the client gets a token on connect,
    /// sends it with every request and gets a new one when the server says
    /// it expired.
    ///
    /// ```
    /// let c = kv_client::ClientConfig::new(["127.0.0.1:2379"]).with_user("root", "secret");
    /// assert_eq!(c.user().unwrap().name, "root");
    /// assert!(!format!("{c:?}").contains("secret"));
    /// ```
    pub fn with_user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some(Credentials {
            name: name.into(),
            password: password.into(),
        });
        self
    }

    /// Uses TLS: servers are verified against `ca_pem` (PEM), and the
    /// client presents `identity` = `(cert_pem, key_pem)` when given. Bare
    /// `host:port` endpoints then mean `https://`.
    ///
    /// ```
    /// # let (ca, cert, key) = (b"ca".to_vec(), b"c".to_vec(), b"k".to_vec());
    /// let c = kv_client::ClientConfig::new(["127.0.0.1:2379"]).with_tls(ca, Some((cert, key)));
    /// assert!(c.tls().unwrap().has_identity());
    /// ```
    pub fn with_tls(
        self,
        ca_pem: impl Into<Vec<u8>>,
        identity: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Self {
        let mut tls = TlsConfig::new().with_ca_pem(ca_pem);
        if let Some((cert, key)) = identity {
            tls = tls.with_identity_pem(cert, key);
        }
        self.with_tls_config(tls)
    }

    /// Uses TLS with full control over the settings ([`TlsConfig`]).
    ///
    /// ```
    /// use kv_client::{ClientConfig, tls::TlsConfig};
    /// let c = ClientConfig::new(["https://127.0.0.1:2379"]).with_tls_config(TlsConfig::new());
    /// assert!(c.tls().is_some());
    /// ```
    pub fn with_tls_config(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The user to authenticate as, if any.
    ///
    /// ```
    /// assert!(kv_client::ClientConfig::new(["a:1"]).user().is_none());
    /// ```
    pub fn user(&self) -> Option<&Credentials> {
        self.user.as_ref()
    }

    /// The TLS settings, if any.
    ///
    /// ```
    /// assert!(kv_client::ClientConfig::new(["a:1"]).tls().is_none());
    /// ```
    pub fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// Sets the time allowed to establish one connection.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = kv_client::ClientConfig::new(["127.0.0.1:2379"]).with_connect_timeout(Duration::from_secs(1));
    /// assert_eq!(c.connect_timeout(), Duration::from_secs(1));
    /// ```
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the deadline of one unary request, retries included.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = kv_client::ClientConfig::new(["127.0.0.1:2379"]).with_request_timeout(Duration::from_secs(3));
    /// assert_eq!(c.request_timeout(), Duration::from_secs(3));
    /// ```
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the HTTP/2 keep-alive ping interval and the time to wait for
    /// each ping's acknowledgement.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = kv_client::ClientConfig::new(["127.0.0.1:2379"])
    ///     .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10));
    /// assert_eq!(c.keep_alive(), (Duration::from_secs(30), Duration::from_secs(10)));
    /// ```
    pub fn with_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive_interval = interval;
        self.keep_alive_timeout = timeout;
        self
    }

    /// Sets the largest response message the client accepts.
    ///
    /// ```
    /// let c = kv_client::ClientConfig::new(["127.0.0.1:2379"]).with_max_decoding_message_size(64 << 20);
    /// assert_eq!(c.max_decoding_message_size(), 64 << 20);
    /// ```
    pub fn with_max_decoding_message_size(mut self, bytes: usize) -> Self {
        self.max_decoding_message_size = bytes;
        self
    }

    /// Sets the largest request message the client sends.
    ///
    /// ```
    /// let c = kv_client::ClientConfig::new(["127.0.0.1:2379"]).with_max_encoding_message_size(8 << 20);
    /// assert_eq!(c.max_encoding_message_size(), 8 << 20);
    /// ```
    pub fn with_max_encoding_message_size(mut self, bytes: usize) -> Self {
        self.max_encoding_message_size = bytes;
        self
    }

    /// Sets the retry/backoff policy (also used by watch resume and lease
    /// keep-alive reconnects).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use kv_client::{ClientConfig, RetryPolicy};
    /// let c = ClientConfig::new(["127.0.0.1:2379"])
    ///     .with_retry(RetryPolicy::default().with_initial_backoff(Duration::from_millis(10)));
    /// assert_eq!(c.retry().initial_backoff(), Duration::from_millis(10));
    /// ```
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The endpoints as given.
    ///
    /// ```
    /// assert_eq!(kv_client::ClientConfig::new(["a:1"]).endpoints(), ["a:1"]);
    /// ```
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The connect timeout.
    ///
    /// ```
    /// # use kv_client::{ClientConfig, config::DEFAULT_CONNECT_TIMEOUT};
    /// assert_eq!(ClientConfig::new(["a:1"]).connect_timeout(), DEFAULT_CONNECT_TIMEOUT);
    /// ```
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The per-request deadline (retries included).
    ///
    /// ```
    /// # use kv_client::{ClientConfig, config::DEFAULT_REQUEST_TIMEOUT};
    /// assert_eq!(ClientConfig::new(["a:1"]).request_timeout(), DEFAULT_REQUEST_TIMEOUT);
    /// ```
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The keep-alive `(interval, timeout)`.
    ///
    /// ```
    /// # use kv_client::{ClientConfig, config::*};
    /// assert_eq!(
    ///     ClientConfig::new(["a:1"]).keep_alive(),
    ///     (DEFAULT_KEEP_ALIVE_INTERVAL, DEFAULT_KEEP_ALIVE_TIMEOUT)
    /// );
    /// ```
    pub fn keep_alive(&self) -> (Duration, Duration) {
        (self.keep_alive_interval, self.keep_alive_timeout)
    }

    /// The largest response accepted, in bytes.
    ///
    /// ```
    /// assert!(kv_client::ClientConfig::new(["a:1"]).max_decoding_message_size() > 4 << 20);
    /// ```
    pub fn max_decoding_message_size(&self) -> usize {
        self.max_decoding_message_size
    }

    /// The largest request sent, in bytes.
    ///
    /// ```
    /// assert!(kv_client::ClientConfig::new(["a:1"]).max_encoding_message_size() > 4 << 20);
    /// ```
    pub fn max_encoding_message_size(&self) -> usize {
        self.max_encoding_message_size
    }

    /// The retry policy.
    ///
    /// ```
    /// assert!(kv_client::ClientConfig::new(["a:1"]).retry().max_attempts() > 1);
    /// ```
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The endpoints as URIs: a bare `host:port` gets `https://` when TLS
    /// is configured, else `http://`.
    pub(crate) fn endpoint_uris(&self) -> Result<Vec<String>, Error> {
        if self.endpoints.is_empty() {
            return Err(Error::Config("no endpoints given".into()));
        }
        self.endpoints
            .iter()
            .map(|e| normalize_endpoint(e, self.tls.is_some()))
            .collect()
    }
}

/// `host:port` → `http(s)://host:port`; `http://…` and `https://…` are
/// kept; any other scheme is refused.
fn normalize_endpoint(endpoint: &str, tls: bool) -> Result<String, Error> {
    let e = endpoint.trim().trim_end_matches('/');
    if e.is_empty() {
        return Err(Error::Config("empty endpoint".into()));
    }
    if e.starts_with("http://") || e.starts_with("https://") {
        return Ok(e.to_string());
    }
    if e.contains("://") {
        return Err(Error::Config(format!(
            "unsupported endpoint scheme in {endpoint:?} (use http:// or https://)"
        )));
    }
    let scheme = if tls { "https" } else { "http" };
    Ok(format!("{scheme}://{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalized() {
        let c = ClientConfig::new(["127.0.0.1:2379", " http://h:1/ ", "localhost:5"]);
        assert_eq!(
            c.endpoint_uris().unwrap(),
            ["http://127.0.0.1:2379", "http://h:1", "http://localhost:5"]
        );
    }

    #[test]
    fn bad_endpoints_are_refused() {
        let none: [&str; 0] = [];
        assert!(ClientConfig::new(none).endpoint_uris().is_err());
        assert!(ClientConfig::new([""]).endpoint_uris().is_err());
        assert!(ClientConfig::new(["unix://h:1"]).endpoint_uris().is_err());
    }

    #[test]
    fn tls_makes_bare_endpoints_https() {
        let c = ClientConfig::new(["h:1", "http://h:2", "https://h:3"]);
        assert_eq!(
            c.endpoint_uris().unwrap(),
            ["http://h:1", "http://h:2", "https://h:3"]
        );
        let c = c.with_tls_config(TlsConfig::new());
        assert_eq!(
            c.endpoint_uris().unwrap(),
            ["https://h:1", "http://h:2", "https://h:3"]
        );
    }
}
