//! Client configuration: endpoints, timeouts, keep-alive and retry tunables.
//!
//! Every default is a named constant below so tests and callers can see (and
//! override) exactly what the client does.

use std::time::Duration;

use crate::error::Error;
use crate::retry::RetryPolicy;

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
        }
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

    /// The endpoints as URIs: a bare `host:port` gets `http://`.
    pub(crate) fn endpoint_uris(&self) -> Result<Vec<String>, Error> {
        if self.endpoints.is_empty() {
            return Err(Error::Config("no endpoints given".into()));
        }
        self.endpoints
            .iter()
            .map(|e| normalize_endpoint(e))
            .collect()
    }
}

/// `host:port` → `http://host:port`; `http://…` is kept; anything else
/// (an `https://` endpoint: TLS is not supported yet) is refused.
fn normalize_endpoint(endpoint: &str) -> Result<String, Error> {
    let e = endpoint.trim().trim_end_matches('/');
    if e.is_empty() {
        return Err(Error::Config("empty endpoint".into()));
    }
    if e.starts_with("http://") {
        return Ok(e.to_string());
    }
    if e.contains("://") {
        return Err(Error::Config(format!(
            "unsupported endpoint scheme in {endpoint:?} (only http:// is supported)"
        )));
    }
    Ok(format!("http://{e}"))
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
        assert!(ClientConfig::new(["https://h:1"]).endpoint_uris().is_err());
    }
}
