//! Health checks, tags and filters of the discovery API in JS shapes:
//! `register({ tags, checks: [{ http }, { tcp }, { ttlMs }, ...] })`,
//! TTL check reports, `list`/`subscribe` filters, and instances with their
//! tags and check states. Validation is the toolkit's
//! ([`CheckOptions::into_checks`]), so kvctl, Python and Node agree on what
//! a valid check is; only the JS option names are ours.

use std::collections::HashMap;
use std::time::Duration;

use kv_discovery::check::CheckOptions;
use kv_discovery::{Check, Health, HealthFilter, Registry, ServiceFilter, ServiceInstance};
use napi_derive::napi;

use crate::client::NativeClient;
use crate::convert::millis;
use crate::{errors, guard};

/// A check's state as written in the instance's entry.
#[napi(object, object_from_js = false)]
pub struct CheckStatus {
    /// "passing" | "warning" | "critical"
    pub health: String,
    /// The output of the probe (or the TTL report's note) that set the state.
    pub output: String,
}

/// A service instance as registered.
#[napi(object, object_from_js = false)]
pub struct Instance {
    pub service: String,
    pub id: String,
    pub addrs: Vec<String>,
    pub metadata: HashMap<String, String>,
    pub tags: Vec<String>,
    pub version: String,
    /// "passing" | "warning" | "critical" (with checks: the worst of them)
    pub health: String,
    /// The states of the checks its owner runs, by check name.
    pub checks: HashMap<String, CheckStatus>,
}

impl From<ServiceInstance> for Instance {
    fn from(i: ServiceInstance) -> Self {
        Instance {
            health: i.health.to_string(),
            service: i.service,
            id: i.id,
            addrs: i.addrs,
            metadata: i.metadata.into_iter().collect(),
            tags: i.tags,
            version: i.version,
            checks: i
                .checks
                .into_iter()
                .map(|(name, s)| {
                    let status = CheckStatus {
                        health: s.health.to_string(),
                        output: s.output,
                    };
                    (name, status)
                })
                .collect(),
        }
    }
}

/// A health state named in JS.
pub(crate) fn health(s: &str) -> napi::Result<Health> {
    match s {
        "passing" => Ok(Health::Passing),
        "warning" => Ok(Health::Warning),
        "critical" => Ok(Health::Critical),
        h => Err(errors::invalid(format!(
            "health must be passing, warning or critical, not {h:?}"
        ))),
    }
}

/// One health check of `register`: exactly one of `http`, `tcp`, `grpc`,
/// `command`, `ttlMs`, with optional settings. Durations are milliseconds.
#[napi(object)]
pub struct CheckSpec {
    /// Unique within the registration; by default the kind (`http`, `tcp`,
    /// `grpc`, `cmd`, `ttl`), then `http-2`... for a second of one kind.
    pub name: Option<String>,
    /// URL to `GET` (`http://` or `https://`): 2xx passing, 429 warning,
    /// else critical.
    pub http: Option<String>,
    /// `host:port` to connect to.
    pub tcp: Option<String>,
    /// gRPC health target `ADDR[/SERVICE]` (`ADDR`: `host:port`,
    /// `http://host:port` or `https://host:port`).
    pub grpc: Option<String>,
    /// Program and arguments: exit 0 passing, 1 warning, else critical.
    pub command: Option<Vec<String>>,
    /// A TTL check: how long a report holds.
    pub ttl_ms: Option<f64>,
    /// Time between two probes (default 10 s).
    pub interval_ms: Option<f64>,
    /// Limit on one probe (default 5 s).
    pub timeout_ms: Option<f64>,
    /// Consecutive passing results needed to turn passing (default 1).
    pub success_before_passing: Option<f64>,
    /// Consecutive failures needed to turn warning or critical (default 1).
    pub failures_before_critical: Option<f64>,
    /// Deregisters the instance once the check has been critical this long.
    pub deregister_critical_after_ms: Option<f64>,
    /// `https://` checks: the PEM file of CA certificates the server is
    /// verified against (default: the system's roots).
    pub tls_ca_file: Option<String>,
    /// `https://` checks: the name the server's certificate is verified
    /// for, also sent as SNI (default: the host of the URL or address).
    pub tls_server_name: Option<String>,
    /// `https://` checks: accept any certificate (encrypted, but the server
    /// is not authenticated).
    pub tls_skip_verify: Option<bool>,
}

fn positive_millis(ms: Option<f64>, what: &str) -> napi::Result<Option<Duration>> {
    let Some(ms) = ms else { return Ok(None) };
    let d = millis(ms, what)?;
    if d.is_zero() {
        return Err(errors::invalid(format!("{what} must be positive")));
    }
    Ok(Some(d))
}

fn count(n: Option<f64>, what: &str) -> napi::Result<Option<u32>> {
    let Some(n) = n else { return Ok(None) };
    if n.fract() != 0.0 || !(1.0..=f64::from(u32::MAX)).contains(&n) {
        return Err(errors::invalid(format!(
            "{what} must be a whole number of at least 1"
        )));
    }
    Ok(Some(n as u32))
}

/// The toolkit's checks for `specs`, validated (unknown or duplicate
/// names are refused by `register_with_checks` itself).
pub(crate) fn checks(specs: Vec<CheckSpec>) -> napi::Result<Vec<Check>> {
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(specs.len());
    for (i, s) in specs.into_iter().enumerate() {
        let mut opts = CheckOptions {
            tls_ca_file: s.tls_ca_file.map(Into::into),
            tls_server_name: s.tls_server_name,
            tls_skip_verify: s.tls_skip_verify.unwrap_or(false),
            ..Default::default()
        };
        let mut kinds = Vec::new();
        if let Some(url) = s.http {
            opts.http.push(url);
            kinds.push("http");
        }
        if let Some(addr) = s.tcp {
            opts.tcp.push(addr);
            kinds.push("tcp");
        }
        if let Some(target) = s.grpc {
            opts.grpc.push(target);
            kinds.push("grpc");
        }
        if let Some(argv) = s.command {
            opts.command.push(argv);
            kinds.push("cmd");
        }
        if let Some(ttl) = positive_millis(s.ttl_ms, "ttlMs")? {
            opts.ttl.push(ttl);
            kinds.push("ttl");
        }
        let [kind] = kinds[..] else {
            return Err(errors::invalid(format!(
                "checks[{i}] needs exactly one of http, tcp, grpc, command, ttlMs"
            )));
        };
        let interval = positive_millis(s.interval_ms, "intervalMs")?;
        let timeout = positive_millis(s.timeout_ms, "timeoutMs")?;
        let dereg = positive_millis(s.deregister_critical_after_ms, "deregisterCriticalAfterMs")?;
        let ok = count(s.success_before_passing, "successBeforePassing")?;
        let fail = count(s.failures_before_critical, "failuresBeforeCritical")?;
        let parsed = opts
            .into_checks()
            .map_err(|e| errors::invalid(format!("checks[{i}]: {e}")))?;
        let [parsed] = &parsed[..] else {
            return Err(errors::invalid(format!("checks[{i}]: not one check")));
        };
        let nth = seen.entry(kind).or_insert(0);
        *nth += 1;
        let name = match s.name {
            Some(n) => n,
            None if *nth == 1 => kind.to_string(),
            None => format!("{kind}-{nth}"),
        };
        let mut c = Check::new(name, parsed.kind().clone());
        if let Some(d) = interval {
            c = c.with_interval(d);
        }
        if let Some(d) = timeout {
            c = c.with_timeout(d);
        }
        if let Some(d) = dereg {
            c = c.with_deregister_critical_after(d);
        }
        if let Some(n) = ok {
            c = c.with_success_before_passing(n);
        }
        if let Some(n) = fail {
            c = c.with_failures_before_critical(n);
        }
        out.push(c.with_tls(parsed.tls().clone()));
    }
    Ok(out)
}

/// A discovery error, with the check-related ones as bad arguments.
pub(crate) fn check_error(e: kv_discovery::Error) -> napi::Error {
    use kv_discovery::Error as D;
    match e {
        D::UnknownCheck(_) | D::InvalidCheck(_) => errors::invalid(e),
        e => errors::discovery(e),
    }
}

/// Which instances `list` and `subscribe` return.
#[napi(object)]
pub struct FilterOpts {
    /// Every one of these tags.
    pub tags: Option<Vec<String>>,
    /// Every one of these metadata labels, equal.
    pub metadata: Option<HashMap<String, String>>,
    /// "passing" (passing only), "warning" (passing or warning), "any"
    /// (default, as Consul's catalog and the toolkit).
    pub health: Option<String>,
}

/// The toolkit's filter for `f` (none: every instance).
pub(crate) fn filter(f: Option<FilterOpts>) -> napi::Result<ServiceFilter> {
    let mut out = ServiceFilter::new();
    let Some(f) = f else { return Ok(out) };
    for t in f.tags.unwrap_or_default() {
        out = out.with_tag(t);
    }
    for (k, v) in f.metadata.unwrap_or_default() {
        out = out.with_metadata(k, v);
    }
    let health = match f.health.as_deref() {
        None | Some("any") => HealthFilter::All,
        Some("warning") => HealthFilter::PassingOrWarning,
        Some("passing") => HealthFilter::Passing,
        Some(h) => {
            return Err(errors::invalid(format!(
                "health filter must be passing, warning or any, not {h:?}"
            )));
        }
    };
    Ok(out.with_health(health))
}

#[napi]
impl NativeClient {
    /// The instances of `service` registered now that pass `filter`.
    #[napi]
    pub async fn list(
        &self,
        service: String,
        namespace: Option<String>,
        filter: Option<FilterOpts>,
    ) -> napi::Result<Vec<Instance>> {
        let c = self.live()?;
        let filter = self::filter(filter)?;
        let mut registry = Registry::new(c);
        if let Some(ns) = namespace {
            registry = registry.with_namespace(ns);
        }
        guard(async move {
            let found = registry
                .list_with(&service, &filter)
                .await
                .map_err(errors::discovery)?;
            Ok(found.into_iter().map(Instance::from).collect())
        })
        .await
    }
}
