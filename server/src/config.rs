//! Command-line flags, named as etcd names them, each also readable from a
//! `KVD_*` environment variable.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// kvd: an etcd-v3-compatible key-value store.
#[derive(Debug, Clone, Parser)]
#[command(name = "kvd", version, about)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "KVD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: ./<name>.kvd).
    #[arg(long, env = "KVD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Path to a dedicated raft log (WAL) directory (default: <data-dir>/member/wal).
    #[arg(long, env = "KVD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic (comma separated).
    #[arg(
        long,
        env = "KVD_LISTEN_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub listen_client_urls: Vec<String>,
    /// Client URLs advertised to the cluster (default: the listen URLs).
    #[arg(long, env = "KVD_ADVERTISE_CLIENT_URLS", value_delimiter = ',')]
    pub advertise_client_urls: Vec<String>,
    /// Extra URLs serving only /metrics and the health endpoints (plain
    /// HTTP/1.1; https is refused for now).
    #[arg(long, env = "KVD_LISTEN_METRICS_URLS", value_delimiter = ',')]
    pub listen_metrics_urls: Vec<String>,
    /// URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "KVD_LISTEN_PEER_URLS",
        default_value = "http://127.0.0.1:2380",
        value_delimiter = ','
    )]
    pub listen_peer_urls: Vec<String>,
    /// Peer URLs advertised to the cluster (default: the listen peer URLs).
    #[arg(long, env = "KVD_INITIAL_ADVERTISE_PEER_URLS", value_delimiter = ',')]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Initial cluster configuration for bootstrapping (name=peer-url,...).
    #[arg(long, env = "KVD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ("new" or "existing").
    #[arg(long, env = "KVD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token, mixed into the cluster and member IDs.
    #[arg(
        long,
        env = "KVD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Largest client request accepted, in bytes.
    #[arg(long, env = "KVD_MAX_REQUEST_BYTES", default_value_t = 1572864)]
    pub max_request_bytes: usize,
    /// Most operations in one txn branch.
    #[arg(long, env = "KVD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Backend size that raises a NOSPACE alarm (0 = 2 GiB).
    #[arg(long, env = "KVD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Auto compaction mode: "periodic" or "revision".
    #[arg(long, env = "KVD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Auto compaction retention: a duration ("1h", "30m", or hours as a
    /// number) in periodic mode, a revision count in revision mode; 0 = off.
    #[arg(long, env = "KVD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// Applied entries between raft snapshots (log compaction).
    #[arg(long, env = "KVD_SNAPSHOT_COUNT", default_value_t = 100000)]
    pub snapshot_count: u64,
    /// Entries a leader keeps in its log after a snapshot, for slow followers
    /// to catch up from before they need the whole snapshot.
    #[arg(
        long,
        env = "KVD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5000
    )]
    pub experimental_snapshot_catchup_entries: u64,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, env = "KVD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Raft election timeout in milliseconds.
    #[arg(long, env = "KVD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Log level filter (error, warn, info, debug) or a tracing directive.
    #[arg(long, env = "KVD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Logger: "zap", the only one etcd 3.5+ accepts (kvd logs through tracing).
    #[arg(long, env = "KVD_LOGGER", default_value = "zap")]
    pub logger: String,
    /// Log targets, comma separated: "default" (stderr), "stderr", "stdout" or file paths.
    #[arg(
        long,
        env = "KVD_LOG_OUTPUTS",
        default_value = "default",
        value_delimiter = ','
    )]
    pub log_outputs: Vec<String>,
    /// Log format: "console" (kvd's default) or "json" (etcd's default).
    #[arg(long, env = "KVD_LOG_FORMAT", default_value = "console")]
    pub log_format: String,
    /// Auth token type: "simple", or "jwt,pub-key=...,priv-key=...,sign-method=...,ttl=..." (etcd's syntax).
    #[arg(long, env = "KVD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// bcrypt cost of stored password hashes (4 to 31).
    #[arg(long, env = "KVD_BCRYPT_COST", default_value_t = 10)]
    pub bcrypt_cost: u32,
    /// Seconds a simple token lives without use.
    #[arg(long, env = "KVD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// Client TLS certificate (PEM); needed for https:// client URLs.
    #[arg(long, env = "KVD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Client TLS key (PEM) of --cert-file.
    #[arg(long, env = "KVD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// CA that signs client certificates; given, clients must present one.
    #[arg(long, env = "KVD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Require client certificates signed by --trusted-ca-file.
    #[arg(long, env = "KVD_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub client_cert_auth: bool,
    /// Peer TLS certificate (PEM); needed for https:// peer URLs.
    #[arg(long, env = "KVD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Peer TLS key (PEM) of --peer-cert-file.
    #[arg(long, env = "KVD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// CA that signs the members' peer certificates.
    #[arg(long, env = "KVD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Require peer certificates signed by --peer-trusted-ca-file.
    #[arg(long, env = "KVD_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub peer_client_cert_auth: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid URL {0:?}: expected http://host:port")]
    BadUrl(String),
    #[error("invalid --auto-compaction-retention {0:?}")]
    BadRetention(String),
    /// etcd's text for an https URL without certificate flags.
    #[error("TLS key/cert ({flags}) must be provided for {side} url {url} with HTTPS scheme")]
    TlsNeedsCert {
        side: &'static str,
        flags: &'static str,
        url: String,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("invalid --initial-cluster {0:?}: {1}")]
    BadCluster(String, &'static str),
    #[error("invalid auth flags: {0}")]
    BadAuth(String),
    #[error("invalid --initial-cluster-state {0:?}: expected \"new\" or \"existing\"")]
    UnsupportedState(String),
}

/// The longest periodic retention: Go's time.Duration (etcd's type for it)
/// cannot hold more than about 292 years.
const MAX_RETENTION: Duration = Duration::from_secs(i64::MAX as u64 / 1_000_000_000);

/// What auto compaction keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Off,
    Period(Duration),
    Revisions(i64),
}

/// Parses `http://host:port`, `https://host:port` (or `host:port`) into a
/// socket address. Whether https has certificates is [`Config::validate`]'s check.
pub fn parse_url(url: &str) -> Result<SocketAddr, ConfigError> {
    let rest = match url.get(..8) {
        Some(p) if p.eq_ignore_ascii_case("https://") => &url[8..],
        _ => url.strip_prefix("http://").unwrap_or(url),
    };
    let hostport = rest.trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| {
            a.find(|s| s.is_ipv4())
                .or_else(|| hostport.to_socket_addrs().ok()?.next())
        })
        .ok_or_else(|| ConfigError::BadUrl(url.to_string()))
}

/// Whether `url` has the https scheme (any case).
pub fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
}

impl Config {
    /// Checks the flags that need no I/O: every https URL has its TLS flags
    /// (see [`crate::tls::check_urls`]) and the auto compaction retention
    /// parses. The TLS files themselves are read when the listeners start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::tls::check_urls(self)?;
        self.retention()?;
        Ok(())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.kvd", self.name)))
    }

    /// Where the raft log lives: --wal-dir, or `member/wal` in the data dir.
    pub fn wal_dir(&self) -> PathBuf {
        self.wal_dir
            .clone()
            .unwrap_or_else(|| self.data_dir().join("member").join("wal"))
    }

    pub fn client_urls(&self) -> Vec<String> {
        if self.advertise_client_urls.is_empty() {
            self.listen_client_urls.clone()
        } else {
            self.advertise_client_urls.clone()
        }
    }

    pub fn peer_urls(&self) -> Vec<String> {
        if self.initial_advertise_peer_urls.is_empty() {
            self.listen_peer_urls.clone()
        } else {
            self.initial_advertise_peer_urls.clone()
        }
    }

    /// The initial members as (name, peer URLs); defaults to just this member.
    pub fn initial_members(&self) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
        let Some(spec) = &self.initial_cluster else {
            return Ok(vec![(self.name.clone(), self.peer_urls())]);
        };
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (name, url) = part
                .split_once('=')
                .ok_or_else(|| ConfigError::BadCluster(spec.clone(), "expected name=url"))?;
            match out.iter_mut().find(|(n, _)| n == name) {
                Some((_, urls)) => urls.push(url.to_string()),
                None => out.push((name.to_string(), vec![url.to_string()])),
            }
        }
        if !out.iter().any(|(n, _)| *n == self.name) {
            return Err(ConfigError::BadCluster(
                spec.clone(),
                "does not name this member",
            ));
        }
        Ok(out)
    }

    pub fn quota_bytes(&self) -> u64 {
        if self.quota_backend_bytes == 0 {
            2 << 30
        } else {
            self.quota_backend_bytes
        }
    }

    pub fn retention(&self) -> Result<Retention, ConfigError> {
        let r = self.auto_compaction_retention.trim();
        let bad = || ConfigError::BadRetention(r.to_string());
        if self.auto_compaction_mode == "revision" {
            let n: i64 = r.parse().map_err(|_| bad())?;
            return Ok(if n <= 0 {
                Retention::Off
            } else {
                Retention::Revisions(n)
            });
        }
        let secs = if let Ok(hours) = r.parse::<f64>() {
            hours * 3600.0
        } else {
            parse_duration(r).ok_or_else(bad)?
        };
        // "NaN", "inf" and 1e300 parse as f64 but are no duration.
        if !secs.is_finite() {
            return Err(bad());
        }
        if secs <= 0.0 {
            return Ok(Retention::Off);
        }
        let period = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
        if period > MAX_RETENTION {
            return Err(bad());
        }
        Ok(Retention::Period(period))
    }
}

/// Go-style durations: "1h30m", "10m", "45s", "500ms".
fn parse_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        total += v * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
    }
    num.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_urls() {
        assert_eq!(parse_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_duration("500ms"), Some(0.5));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_url("http://127.0.0.1:2379").unwrap().port(), 2379);
        assert!(parse_url("http://nope").is_err());
    }

    #[test]
    fn bad_retention_is_an_error_not_a_panic() {
        for r in [
            "NaN",
            "nan",
            "inf",
            "-inf",
            "1e300",
            "1e12",
            "99999999999999h",
        ] {
            let flag = format!("--auto-compaction-retention={r}");
            let c = Config::parse_from(["kvd", flag.as_str()]);
            assert!(
                matches!(c.retention(), Err(ConfigError::BadRetention(_))),
                "{r}: {:?}",
                c.retention()
            );
        }
        let c = Config::parse_from(["kvd", "--auto-compaction-retention", "1.5"]);
        assert_eq!(
            c.retention().unwrap(),
            Retention::Period(Duration::from_secs(5400))
        );
    }

    #[test]
    fn https_urls_need_certificates() {
        let c = Config::parse_from(["kvd", "--listen-client-urls", "https://127.0.0.1:2379"]);
        let e = c.validate().unwrap_err().to_string();
        assert_eq!(
            e,
            "TLS key/cert (--cert-file, --key-file) must be provided for client url \
             https://127.0.0.1:2379 with HTTPS scheme"
        );
        let c = Config::parse_from(["kvd", "--initial-cluster", "default=HTTPS://127.0.0.1:2380"]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TlsNeedsCert { side: "peer", .. })
        ));
        let c = Config::parse_from([
            "kvd",
            "--listen-client-urls=https://127.0.0.1:2379",
            "--cert-file=c.pem",
            "--key-file=k.pem",
        ]);
        assert!(c.validate().is_ok());
        assert_eq!(parse_url("https://127.0.0.1:1").unwrap().port(), 1);
        assert!(Config::parse_from(["kvd"]).validate().is_ok());
    }

    #[test]
    fn cert_auth_flags_take_etcd_forms() {
        for args in [
            &["kvd", "--client-cert-auth"][..],
            &["kvd", "--client-cert-auth=true"][..],
        ] {
            assert!(Config::parse_from(args).client_cert_auth, "{args:?}");
        }
        assert!(!Config::parse_from(["kvd", "--client-cert-auth=false"]).client_cert_auth);
        assert!(!Config::parse_from(["kvd"]).peer_client_cert_auth);
    }

    #[test]
    fn defaults_match_etcd() {
        let c = Config::parse_from(["kvd"]);
        assert_eq!(c.data_dir(), PathBuf::from("default.kvd"));
        assert_eq!(c.max_request_bytes, 1572864);
        assert_eq!(c.retention().unwrap(), Retention::Off);
        assert_eq!(c.initial_members().unwrap()[0].0, "default");
    }
}
