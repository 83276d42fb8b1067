//! Health checks a registration runs (`register(..., checks=[...])`):
//! `HttpCheck`, `TcpCheck`, `GrpcCheck`, `CommandCheck`, `TtlCheck`, all
//! subclasses of `Check`, and `CheckState` (a check's state as written in
//! the instance's entry).
//!
//! Each object is validated when it is made, through kv-discovery's
//! `CheckOptions` (the one place kvctl and the bindings validate checks);
//! `register` turns them into `kv_discovery::Check`s.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use kv_discovery::check::{CheckOptions, CheckTls};
use kv_discovery::{Check, CheckKind, CheckState};
use pyo3::prelude::*;

use crate::errors::invalid;

/// Seconds as a positive duration.
fn secs(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            invalid(format!(
                "{what} must be a positive number of seconds, not {s}"
            ))
        })
}

fn at_least_one(what: &str, n: u32) -> PyResult<u32> {
    if n == 0 {
        return Err(invalid(format!("{what} must be at least 1")));
    }
    Ok(n)
}

/// The settings every probe-based check takes, as Python gives them.
#[derive(Clone, Copy, Debug)]
struct ProbeArgs {
    interval: f64,
    timeout: f64,
    success_before_passing: u32,
    failures_before_critical: u32,
}

/// The TLS settings of `https://` HTTP and gRPC checks, as Python gives
/// them (validated with the target by `CheckOptions`).
#[derive(Clone, Debug)]
struct TlsArgs {
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
    skip_verify: bool,
}

impl TlsArgs {
    /// `target` with these settings.
    fn apply(self, target: CheckOptions) -> CheckOptions {
        CheckOptions {
            tls_ca_file: self.ca_file,
            tls_server_name: self.server_name,
            tls_skip_verify: self.skip_verify,
            ..target
        }
    }
}

/// The same, validated.
#[derive(Clone, Copy, Debug)]
struct Probe {
    interval: Duration,
    timeout: Duration,
    success_before_passing: u32,
    failures_before_critical: u32,
}

/// A health check the registering process runs; make one of its
/// subclasses and pass it in `register(..., checks=[...])`. Checks start
/// critical until their first result (as Consul's do); the instance's
/// health is the worst of its checks, and only a change of state is
/// written.
///
/// >>> c.register("web", "10.0.0.5:8080", checks=[kvclient.HttpCheck("http://10.0.0.5:8080/health")])
#[pyclass(frozen, subclass, module = "kvclient", name = "Check")]
#[derive(Debug)]
pub(crate) struct PyCheck {
    /// What it probes, validated.
    kind: CheckKind,
    name: Option<String>,
    /// `None` for TTL checks (nothing is probed).
    probe: Option<Probe>,
    deregister_critical_after: Option<Duration>,
    /// TLS of `https://` probes (default for other checks).
    tls: CheckTls,
}

impl PyCheck {
    /// Validates `target` (a `CheckOptions` naming one check) with the
    /// shared settings; the check's kind.
    fn new(
        target: CheckOptions,
        name: Option<String>,
        probe: Option<ProbeArgs>,
        deregister_critical_after: Option<f64>,
    ) -> PyResult<PyCheck> {
        if name.as_deref() == Some("") {
            return Err(invalid("a check name must not be empty"));
        }
        let probe = match probe {
            Some(p) => Some(Probe {
                interval: secs("interval", p.interval)?,
                timeout: secs("timeout", p.timeout)?,
                success_before_passing: at_least_one(
                    "success_before_passing",
                    p.success_before_passing,
                )?,
                failures_before_critical: at_least_one(
                    "failures_before_critical",
                    p.failures_before_critical,
                )?,
            }),
            None => None,
        };
        let deregister_critical_after = deregister_critical_after
            .map(|d| secs("deregister_critical_after", d))
            .transpose()?;
        // Validation is kv-discovery's (URL scheme, address, gRPC target,
        // command); the settings are applied in `build`.
        let mut checks = CheckOptions {
            deregister_critical_after,
            ..target
        }
        .into_checks()
        .map_err(|e| invalid(e.to_string()))?;
        let (Some(check), None) = (checks.pop(), checks.pop()) else {
            return Err(invalid("exactly one check target expected"));
        };
        Ok(PyCheck {
            kind: check.kind().clone(),
            name,
            probe,
            deregister_critical_after,
            tls: check.tls().clone(),
        })
    }

    /// The probe settings (TTL checks have none: defaults).
    fn probe(&self) -> Probe {
        self.probe.unwrap_or(Probe {
            interval: kv_discovery::check::DEFAULT_CHECK_INTERVAL,
            timeout: kv_discovery::check::DEFAULT_CHECK_TIMEOUT,
            success_before_passing: 1,
            failures_before_critical: 1,
        })
    }

    /// The kind's name, which is also the default check name.
    fn kind_name(&self) -> &'static str {
        match &self.kind {
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Grpc { .. } => "grpc",
            CheckKind::Command { .. } => "cmd",
            CheckKind::Ttl { .. } => "ttl",
            _ => "check",
        }
    }

    /// The Rust check, named `name`. Settings were validated in `new`.
    fn build(&self, name: String) -> Check {
        let mut c = Check::new(name, self.kind.clone());
        if let Some(p) = self.probe {
            c = c
                .with_interval(p.interval)
                .with_timeout(p.timeout)
                .with_success_before_passing(p.success_before_passing)
                .with_failures_before_critical(p.failures_before_critical);
        }
        if let Some(d) = self.deregister_critical_after {
            c = c.with_deregister_critical_after(d);
        }
        c.with_tls(self.tls.clone())
    }
}

/// The checks of one registration, named: a check without a name is named
/// after its kind as kvctl names them (`http`, then `http-2`, ...).
pub(crate) fn resolve(checks: &[PyRef<'_, PyCheck>]) -> Vec<Check> {
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    checks
        .iter()
        .map(|c| {
            let name = match &c.name {
                Some(n) => n.clone(),
                None => {
                    let kind = c.kind_name();
                    let n = seen.entry(kind).or_default();
                    *n += 1;
                    if *n == 1 {
                        kind.to_string()
                    } else {
                        format!("{kind}-{n}")
                    }
                }
            };
            c.build(name)
        })
        .collect()
}

#[pymethods]
impl PyCheck {
    /// The name given, or `None`: then `register` names it after its kind
    /// (`"http"`, `"tcp"`, `"grpc"`, `"cmd"`, `"ttl"`; a second one of a kind
    /// `"http-2"`). A TTL check's name is what `pass_ttl` takes.
    #[getter]
    fn name(&self) -> Option<String> {
        self.name.clone()
    }
    /// `"http"`, `"tcp"`, `"grpc"`, `"cmd"` or `"ttl"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind_name()
    }
    /// Seconds critical after which the instance is deregistered (its lease
    /// revoked, the registration stopped), or `None`.
    #[getter]
    fn deregister_critical_after(&self) -> Option<f64> {
        self.deregister_critical_after.map(|d| d.as_secs_f64())
    }
    fn __repr__(&self) -> String {
        let target = match &self.kind {
            CheckKind::Http { url } => format!("HttpCheck({url:?}"),
            CheckKind::Tcp { addr } => format!("TcpCheck({addr:?}"),
            CheckKind::Grpc { addr, service } => format!("GrpcCheck({addr:?}, service={service:?}"),
            CheckKind::Command { program, args } => {
                let argv: Vec<&String> = std::iter::once(program).chain(args).collect();
                format!("CommandCheck({argv:?}")
            }
            CheckKind::Ttl { ttl } => format!("TtlCheck({}", ttl.as_secs_f64()),
            other => format!("Check({other:?}"),
        };
        match &self.name {
            Some(n) => format!("{target}, name={n:?})"),
            None => format!("{target})"),
        }
    }
}

/// Getters of the probe settings, for the probe-based check classes;
/// `tls` first adds the getters of the TLS settings.
macro_rules! probe_check {
    (tls $ty:ident, $name:literal, $doc:literal, { $($field:ident: $fty:ty),* }, { $($extra:tt)* }) => {
        probe_check!($ty, $name, $doc, { $($field: $fty),* }, {
            $($extra)*
            /// The PEM file of CA certificates an `https://` server is
            /// verified against, or `None`: the system's roots.
            #[getter]
            fn tls_ca_file(slf: PyRef<'_, Self>) -> Option<String> {
                let tls = &slf.as_super().tls;
                tls.ca_file.as_ref().map(|p| p.to_string_lossy().into_owned())
            }
            /// The name an `https://` server's certificate is verified for
            /// (and sent as SNI), or `None`: the host of the URL or address.
            #[getter]
            fn tls_server_name(slf: PyRef<'_, Self>) -> Option<String> {
                slf.as_super().tls.server_name.clone()
            }
            /// Whether any server certificate is accepted (encrypted, but
            /// the server is not authenticated).
            #[getter]
            fn tls_skip_verify(slf: PyRef<'_, Self>) -> bool {
                slf.as_super().tls.skip_verify
            }
        });
    };
    ($ty:ident, $name:literal, $doc:literal, { $($field:ident: $fty:ty),* }, { $($extra:tt)* }) => {
        #[doc = $doc]
        #[pyclass(frozen, extends = PyCheck, module = "kvclient", name = $name)]
        #[derive(Debug)]
        pub(crate) struct $ty {
            $($field: $fty),*
        }

        #[pymethods]
        impl $ty {
            /// Seconds between two probes.
            #[getter]
            fn interval(slf: PyRef<'_, Self>) -> f64 {
                slf.as_super().probe().interval.as_secs_f64()
            }
            /// Seconds one probe may take (then it counts as critical).
            #[getter]
            fn timeout(slf: PyRef<'_, Self>) -> f64 {
                slf.as_super().probe().timeout.as_secs_f64()
            }
            /// Consecutive passing results needed to turn passing.
            #[getter]
            fn success_before_passing(slf: PyRef<'_, Self>) -> u32 {
                slf.as_super().probe().success_before_passing
            }
            /// Consecutive failing results needed to turn warning or critical.
            #[getter]
            fn failures_before_critical(slf: PyRef<'_, Self>) -> u32 {
                slf.as_super().probe().failures_before_critical
            }
            $($extra)*
        }
    };
}

probe_check!(
    tls PyHttpCheck,
    "HttpCheck",
    "`GET url` every `interval` seconds: 2xx is passing, 429 warning, anything else (or no answer within `timeout`) critical.\n\nAn `https://` server is verified against `tls_ca_file` (a PEM file of CA certificates; default: the system's roots) for `tls_server_name` (also sent as SNI; default: the URL's host); `tls_skip_verify=True` accepts any certificate (encrypted, but the server is not authenticated). A failed handshake is critical. The TLS settings need an `https://` URL.\n\n>>> kvclient.HttpCheck(\"http://127.0.0.1:8080/health\", interval=5.0, timeout=2.0, failures_before_critical=3)\n>>> kvclient.HttpCheck(\"https://10.0.0.5:8443/health\", tls_ca_file=\"/etc/web/ca.pem\", tls_server_name=\"web.internal\")",
    { url: String },
    {
        #[new]
        #[pyo3(signature = (url, *, name=None, interval=10.0, timeout=5.0, success_before_passing=1, failures_before_critical=1, deregister_critical_after=None, tls_ca_file=None, tls_server_name=None, tls_skip_verify=false))]
        #[allow(clippy::too_many_arguments)]
        fn new(url: String, name: Option<String>, interval: f64, timeout: f64, success_before_passing: u32, failures_before_critical: u32, deregister_critical_after: Option<f64>, tls_ca_file: Option<PathBuf>, tls_server_name: Option<String>, tls_skip_verify: bool) -> PyResult<PyClassInitializer<Self>> {
            let probe = ProbeArgs { interval, timeout, success_before_passing, failures_before_critical };
            let tls = TlsArgs { ca_file: tls_ca_file, server_name: tls_server_name, skip_verify: tls_skip_verify };
            let target = tls.apply(CheckOptions { http: vec![url.clone()], ..Default::default() });
            Ok(PyClassInitializer::from(PyCheck::new(target, name, Some(probe), deregister_critical_after)?).add_subclass(Self { url }))
        }
        /// The URL probed.
        #[getter]
        fn url(&self) -> String {
            self.url.clone()
        }
    }
);

probe_check!(
    PyTcpCheck,
    "TcpCheck",
    "A TCP connect to `addr` (`host:port`) every `interval` seconds: accepted within `timeout` is passing, else critical.\n\n>>> kvclient.TcpCheck(\"127.0.0.1:5432\", interval=2.0)",
    { addr: String },
    {
        #[new]
        #[pyo3(signature = (addr, *, name=None, interval=10.0, timeout=5.0, success_before_passing=1, failures_before_critical=1, deregister_critical_after=None))]
        fn new(addr: String, name: Option<String>, interval: f64, timeout: f64, success_before_passing: u32, failures_before_critical: u32, deregister_critical_after: Option<f64>) -> PyResult<PyClassInitializer<Self>> {
            let probe = ProbeArgs { interval, timeout, success_before_passing, failures_before_critical };
            let target = CheckOptions { tcp: vec![addr.clone()], ..Default::default() };
            Ok(PyClassInitializer::from(PyCheck::new(target, name, Some(probe), deregister_critical_after)?).add_subclass(Self { addr }))
        }
        /// The address connected to.
        #[getter]
        fn addr(&self) -> String {
            self.addr.clone()
        }
    }
);

probe_check!(
    tls PyGrpcCheck,
    "GrpcCheck",
    "`grpc.health.v1.Health/Check` at `addr` (`host:port` or `http://host:port`; `https://host:port` over TLS) for `service` (`\"\"`: the server as a whole): `SERVING` is passing, else critical.\n\nAn `https://` address is verified as `HttpCheck` verifies an `https://` URL: `tls_ca_file`, `tls_server_name`, `tls_skip_verify`.\n\n>>> kvclient.GrpcCheck(\"127.0.0.1:50051\", service=\"my.Service\")\n>>> kvclient.GrpcCheck(\"https://10.0.0.5:50051\", tls_ca_file=\"/etc/rpc/ca.pem\")",
    { addr: String, service: String },
    {
        #[new]
        #[pyo3(signature = (addr, *, service=String::new(), name=None, interval=10.0, timeout=5.0, success_before_passing=1, failures_before_critical=1, deregister_critical_after=None, tls_ca_file=None, tls_server_name=None, tls_skip_verify=false))]
        #[allow(clippy::too_many_arguments)]
        fn new(addr: String, service: String, name: Option<String>, interval: f64, timeout: f64, success_before_passing: u32, failures_before_critical: u32, deregister_critical_after: Option<f64>, tls_ca_file: Option<PathBuf>, tls_server_name: Option<String>, tls_skip_verify: bool) -> PyResult<PyClassInitializer<Self>> {
            let rest = addr.split_once("://").map_or(addr.as_str(), |(_, r)| r);
            if rest.contains('/') || service.contains('/') {
                return Err(invalid(format!("GrpcCheck takes the address and the service apart, not {addr:?}")));
            }
            let probe = ProbeArgs { interval, timeout, success_before_passing, failures_before_critical };
            // Consul's target form `ADDR[/SERVICE]`, which CheckOptions parses.
            let target = if service.is_empty() { addr.clone() } else { format!("{addr}/{service}") };
            let tls = TlsArgs { ca_file: tls_ca_file, server_name: tls_server_name, skip_verify: tls_skip_verify };
            let target = tls.apply(CheckOptions { grpc: vec![target], ..Default::default() });
            Ok(PyClassInitializer::from(PyCheck::new(target, name, Some(probe), deregister_critical_after)?).add_subclass(Self { addr, service }))
        }
        /// The server's address.
        #[getter]
        fn addr(&self) -> String {
            self.addr.clone()
        }
        /// The service asked about (`""`: the whole server).
        #[getter]
        fn service(&self) -> String {
            self.service.clone()
        }
    }
);

probe_check!(
    PyCommandCheck,
    "CommandCheck",
    "Runs `argv` (the program, then its arguments; no shell) every `interval` seconds: exit 0 is passing, 1 warning, anything else (or running past `timeout`) critical. Its output (bounded) is the check's output.\n\n>>> kvclient.CommandCheck([\"pg_isready\", \"-h\", \"127.0.0.1\"], interval=30.0)",
    { argv: Vec<String> },
    {
        #[new]
        #[pyo3(signature = (argv, *, name=None, interval=10.0, timeout=5.0, success_before_passing=1, failures_before_critical=1, deregister_critical_after=None))]
        fn new(argv: Vec<String>, name: Option<String>, interval: f64, timeout: f64, success_before_passing: u32, failures_before_critical: u32, deregister_critical_after: Option<f64>) -> PyResult<PyClassInitializer<Self>> {
            let probe = ProbeArgs { interval, timeout, success_before_passing, failures_before_critical };
            let target = CheckOptions { command: vec![argv.clone()], ..Default::default() };
            Ok(PyClassInitializer::from(PyCheck::new(target, name, Some(probe), deregister_critical_after)?).add_subclass(Self { argv }))
        }
        /// The program and its arguments.
        #[getter]
        fn argv(&self) -> Vec<String> {
            self.argv.clone()
        }
    }
);

/// A check the application reports itself: each `pass_ttl` / `warn_ttl`
/// / `fail_ttl` on the registration holds for `ttl` seconds; without a
/// new report it turns critical. Only a change of state is written.
///
/// >>> with c.register("worker", "10.0.0.5:0", checks=[kvclient.TtlCheck(15.0)]) as reg:
/// ...     reg.pass_ttl("ttl", note="queue drained")
#[pyclass(frozen, extends = PyCheck, module = "kvclient", name = "TtlCheck")]
#[derive(Debug)]
pub(crate) struct PyTtlCheck {
    ttl: f64,
}

#[pymethods]
impl PyTtlCheck {
    #[new]
    #[pyo3(signature = (ttl, *, name=None, deregister_critical_after=None))]
    fn new(
        ttl: f64,
        name: Option<String>,
        deregister_critical_after: Option<f64>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let target = CheckOptions {
            ttl: vec![secs("ttl", ttl)?],
            ..Default::default()
        };
        let base = PyCheck::new(target, name, None, deregister_critical_after)?;
        Ok(PyClassInitializer::from(base).add_subclass(Self { ttl }))
    }
    /// Seconds a report holds.
    #[getter]
    fn ttl(&self) -> f64 {
        self.ttl
    }
}

/// A check's state as written in the instance's entry: `health`
/// (`"passing"`, `"warning"` or `"critical"`) and the `output` of the probe
/// (or the TTL report's note) that set it.
///
/// >>> {name: s.health for name, s in instance.checks.items()}
#[pyclass(frozen, eq, module = "kvclient", name = "CheckState")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PyCheckState {
    /// `"passing"`, `"warning"` or `"critical"`.
    #[pyo3(get)]
    health: String,
    /// The output of the probe that set the state (at most 4096 bytes).
    #[pyo3(get)]
    output: String,
}

impl From<CheckState> for PyCheckState {
    fn from(s: CheckState) -> Self {
        PyCheckState {
            health: s.health.to_string(),
            output: s.output,
        }
    }
}

#[pymethods]
impl PyCheckState {
    fn __repr__(&self) -> String {
        format!(
            "CheckState(health={:?}, output={:?})",
            self.health, self.output
        )
    }
}
