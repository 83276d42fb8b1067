//! Health checks the registering process runs itself, as Consul's agent
//! does: HTTP (and HTTPS, see [`CheckTls`]), TCP connect, gRPC health
//! (`grpc.health.v1`, plaintext or TLS), a command's exit code, and TTL
//! checks the application pings.
//!
//! Each check turns its probe results into a state with thresholds
//! (`success_before_passing`, `failures_before_critical`); the instance's
//! health is the worst of its checks. Only a change of a check's state is
//! written to the registry (one write per change, never one per probe).
//! A check critical for longer than its `deregister_critical_after`
//! deregisters the instance (its lease is revoked and the registration
//! stops). Like Consul, a check starts critical until its first result.
//!
//! ```no_run
//! # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
//! use std::time::Duration;
//! use kv_discovery::{Check, Registry, ServiceInstance};
//! let reg = Registry::new(client)
//!     .register_with_checks(
//!         ServiceInstance::new("web", "127.0.0.1:8080"),
//!         [Check::http("web-http", "http://127.0.0.1:8080/health")
//!             .with_interval(Duration::from_secs(5))
//!             .with_failures_before_critical(3)
//!             .with_deregister_critical_after(Duration::from_secs(60))],
//!     )
//!     .await?;
//! # Ok(())
//! # }
//! ```

mod options;
mod probe;
mod runner;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Health;

pub use options::{CheckOptions, CheckOptionsError, grpc_target, split_command};
pub(crate) use runner::{Checks, initial_states, spawn};
pub use tls::CheckTls;

/// The most output bytes kept from one probe (a command's stdout and
/// stderr, an HTTP body); the rest is cut.
pub const MAX_CHECK_OUTPUT: usize = 4096;

/// Default time between two probes.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Default limit on one probe.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What a check probes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckKind {
    /// `GET url` (`http://` or `https://`): 2xx passing, 429 warning,
    /// anything else (or no answer, or a TLS handshake that fails) critical.
    /// An `https://` server is verified as the check's [`CheckTls`] says
    /// (by default against the system's roots, for the URL's host).
    Http {
        /// The URL.
        url: String,
    },
    /// A TCP connect to `addr` (`host:port`): accepted is passing.
    Tcp {
        /// The address.
        addr: String,
    },
    /// `grpc.health.v1.Health/Check` at `addr` (`http://host:port`, or
    /// `https://host:port` over TLS verified as the check's [`CheckTls`]
    /// says) for `service` (`""`: the server as a whole): `SERVING` is
    /// passing.
    Grpc {
        /// The server's URI.
        addr: String,
        /// The service name asked about.
        service: String,
    },
    /// Runs `program args...`: exit 0 passing, 1 warning, else critical;
    /// stdout and stderr are kept (bounded) as the output.
    Command {
        /// The program.
        program: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// The application reports the state with
    /// [`Registration::update_ttl`](crate::Registration::update_ttl); none
    /// within `ttl` makes the check critical.
    Ttl {
        /// How long a report holds.
        ttl: Duration,
    },
}

/// One health check of a registration: what to probe, how often, and the
/// thresholds for a state change.
///
/// ```
/// use std::time::Duration;
/// use kv_discovery::Check;
/// let c = Check::tcp("db-port", "127.0.0.1:5432")
///     .with_interval(Duration::from_secs(2))
///     .with_timeout(Duration::from_secs(1))
///     .with_success_before_passing(2)
///     .with_failures_before_critical(3);
/// assert_eq!(c.name(), "db-port");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub(crate) name: String,
    pub(crate) kind: CheckKind,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) success_before_passing: u32,
    pub(crate) failures_before_critical: u32,
    pub(crate) deregister_critical_after: Option<Duration>,
    pub(crate) tls: CheckTls,
}

impl Check {
    /// A check named `name` (unique within the registration) of `kind`,
    /// with the default interval and timeout, changing state on the first
    /// result that differs.
    pub fn new(name: impl Into<String>, kind: CheckKind) -> Check {
        Check {
            name: name.into(),
            kind,
            interval: DEFAULT_CHECK_INTERVAL,
            timeout: DEFAULT_CHECK_TIMEOUT,
            success_before_passing: 1,
            failures_before_critical: 1,
            deregister_critical_after: None,
            tls: CheckTls::default(),
        }
    }
    /// An HTTP check: see [`CheckKind::Http`].
    pub fn http(name: impl Into<String>, url: impl Into<String>) -> Check {
        Check::new(name, CheckKind::Http { url: url.into() })
    }
    /// A TCP connect check: see [`CheckKind::Tcp`].
    pub fn tcp(name: impl Into<String>, addr: impl Into<String>) -> Check {
        Check::new(name, CheckKind::Tcp { addr: addr.into() })
    }
    /// A gRPC health check: see [`CheckKind::Grpc`].
    ///
    /// ```
    /// let c = kv_discovery::Check::grpc("rpc", "http://127.0.0.1:50051", "");
    /// assert_eq!(c.name(), "rpc");
    /// ```
    pub fn grpc(
        name: impl Into<String>,
        addr: impl Into<String>,
        service: impl Into<String>,
    ) -> Check {
        let (addr, service) = (addr.into(), service.into());
        Check::new(name, CheckKind::Grpc { addr, service })
    }
    /// A command check: see [`CheckKind::Command`].
    ///
    /// ```
    /// let c = kv_discovery::Check::command("disk", "/usr/local/bin/check-disk", ["--min", "10G"]);
    /// ```
    pub fn command<I, S>(name: impl Into<String>, program: impl Into<String>, args: I) -> Check
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let program = program.into();
        let args = args.into_iter().map(Into::into).collect();
        Check::new(name, CheckKind::Command { program, args })
    }
    /// A TTL check: see [`CheckKind::Ttl`].
    pub fn ttl(name: impl Into<String>, ttl: Duration) -> Check {
        Check::new(name, CheckKind::Ttl { ttl })
    }
    /// Sets the time between two probes (at least 10 ms).
    pub fn with_interval(mut self, interval: Duration) -> Check {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }
    /// Sets the limit on one probe (at least 10 ms).
    pub fn with_timeout(mut self, timeout: Duration) -> Check {
        self.timeout = timeout.max(Duration::from_millis(10));
        self
    }
    /// Consecutive passing results needed to turn passing (at least 1).
    pub fn with_success_before_passing(mut self, n: u32) -> Check {
        self.success_before_passing = n.max(1);
        self
    }
    /// Consecutive failing results needed to turn warning or critical (at
    /// least 1).
    pub fn with_failures_before_critical(mut self, n: u32) -> Check {
        self.failures_before_critical = n.max(1);
        self
    }
    /// Deregisters the instance once this check has been critical for
    /// `after`.
    pub fn with_deregister_critical_after(mut self, after: Duration) -> Check {
        self.deregister_critical_after = Some(after);
        self
    }
    /// Verifies an `https://` server against the CA certificates of this
    /// PEM file instead of the system's roots (HTTP and gRPC checks).
    ///
    /// ```
    /// let c = kv_discovery::Check::grpc("rpc", "https://127.0.0.1:50051", "")
    ///     .with_tls_ca_file("/etc/rpc/ca.pem");
    /// assert!(c.tls().ca_file.is_some());
    /// ```
    pub fn with_tls_ca_file(mut self, path: impl Into<PathBuf>) -> Check {
        self.tls.ca_file = Some(path.into());
        self
    }
    /// Verifies an `https://` server's certificate for this name (also sent
    /// as SNI) instead of the URL's host (Consul's `TLSServerName`).
    pub fn with_tls_server_name(mut self, name: impl Into<String>) -> Check {
        self.tls.server_name = Some(name.into());
        self
    }
    /// Accepts any certificate from an `https://` server (Consul's
    /// `TLSSkipVerify`): still encrypted, but the server is not
    /// authenticated.
    ///
    /// ```
    /// let c = kv_discovery::Check::http("web", "https://127.0.0.1:8443/")
    ///     .with_tls_skip_verify(true);
    /// assert!(c.tls().skip_verify);
    /// ```
    pub fn with_tls_skip_verify(mut self, skip: bool) -> Check {
        self.tls.skip_verify = skip;
        self
    }
    /// The TLS settings of `https://` probes.
    pub fn tls(&self) -> &CheckTls {
        &self.tls
    }
    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What it probes.
    pub fn kind(&self) -> &CheckKind {
        &self.kind
    }
}

/// A check's state as written in the instance's entry (its `checks` map).
///
/// ```
/// use kv_discovery::{CheckState, Health};
/// let s = CheckState { health: Health::Warning, output: "HTTP 429".into() };
/// let json = serde_json::to_string(&s).unwrap();
/// assert_eq!(json, r#"{"health":"warning","output":"HTTP 429"}"#);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckState {
    /// The check's state.
    pub health: Health,
    /// The output of the probe that changed the state (bounded by
    /// [`MAX_CHECK_OUTPUT`]).
    #[serde(default)]
    pub output: String,
}

/// The worse of two states (critical > warning > passing).
pub(crate) fn worse(a: Health, b: Health) -> Health {
    let rank = |h| match h {
        Health::Passing => 0,
        Health::Warning => 1,
        Health::Critical => 2,
    };
    if rank(a) >= rank(b) { a } else { b }
}

/// Cuts `s` to at most [`MAX_CHECK_OUTPUT`] bytes on a char boundary.
pub(crate) fn bounded(mut s: String) -> String {
    if s.len() > MAX_CHECK_OUTPUT {
        let mut cut = MAX_CHECK_OUTPUT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_bounded_on_a_char_boundary() {
        let s = bounded("é".repeat(MAX_CHECK_OUTPUT));
        assert!(s.len() <= MAX_CHECK_OUTPUT && s.len() >= MAX_CHECK_OUTPUT - 1);
        assert_eq!(bounded("ok".into()), "ok");
    }

    #[test]
    fn worst_state_wins() {
        assert_eq!(worse(Health::Passing, Health::Warning), Health::Warning);
        assert_eq!(worse(Health::Critical, Health::Warning), Health::Critical);
        assert_eq!(worse(Health::Passing, Health::Passing), Health::Passing);
    }
}
