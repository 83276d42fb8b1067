//! What both client classes are built from: the constructor's arguments
//! turned into a `ClientConfig`, the lazily connected core, and argument
//! parsing shared by their methods.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kv_client::{ClientConfig, SortOrder, SortTarget, WatchOptions};
use kv_discovery::ServiceInstance;
use pyo3::prelude::*;

use crate::errors::{client_err, closed, invalid};
use crate::registry::parse_health;
use crate::watch::WatchInner;

/// The connection both client classes wrap: the config, and the
/// `kv_client::Client` made from it on first use (connecting
/// authenticates, so it is async).
pub(crate) struct Core {
    pub(crate) config: ClientConfig,
    client: tokio::sync::OnceCell<kv_client::Client>,
    pub(crate) closed: AtomicBool,
}

impl Core {
    pub(crate) async fn client(self: &Arc<Self>) -> PyResult<kv_client::Client> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(closed("client"));
        }
        self.client
            .get_or_try_init(|| kv_client::Client::connect(self.config.clone()))
            .await
            .cloned()
            .map_err(client_err)
    }
}

/// A lease argument: an ID or a `Lease`/`AsyncLease`/keeper (anything with `.id`).
pub(crate) struct LeaseId(pub i64);

impl<'a, 'py> FromPyObject<'a, 'py> for LeaseId {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(id) = obj.extract::<i64>() {
            return Ok(LeaseId(id));
        }
        Ok(LeaseId(obj.getattr("id")?.extract::<i64>()?))
    }
}

fn read_file(what: &str, path: &str) -> PyResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| invalid(format!("cannot read {what} {path:?}: {e}")))
}

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

/// Builds the core from the constructor's arguments (no network).
#[allow(clippy::too_many_arguments)]
pub(crate) fn core(
    endpoints: Vec<String>,
    user: Option<String>,
    password: Option<String>,
    ca_cert: Option<String>,
    cert_cert: Option<String>,
    cert_key: Option<String>,
    timeout: Option<f64>,
    connect_timeout: Option<f64>,
) -> PyResult<Arc<Core>> {
    if endpoints.is_empty() {
        return Err(invalid("at least one endpoint is needed"));
    }
    let mut c = ClientConfig::new(endpoints);
    match (user, password) {
        (Some(u), Some(p)) => c = c.with_user(u, p),
        (None, None) => {}
        _ => return Err(invalid("user and password go together")),
    }
    let identity = match (cert_cert, cert_key) {
        (Some(c), Some(k)) => Some((
            read_file("client certificate", &c)?,
            read_file("client key", &k)?,
        )),
        (None, None) => None,
        _ => return Err(invalid("cert_cert and cert_key go together")),
    };
    if ca_cert.is_some() || identity.is_some() {
        let ca = match ca_cert {
            Some(p) => read_file("CA certificate", &p)?,
            None => Vec::new(),
        };
        c = c.with_tls(ca, identity);
    }
    if let Some(t) = timeout {
        c = c.with_request_timeout(secs("timeout", t)?);
    }
    if let Some(t) = connect_timeout {
        c = c.with_connect_timeout(secs("connect_timeout", t)?);
    }
    Ok(Arc::new(Core {
        config: c,
        client: tokio::sync::OnceCell::new(),
        closed: AtomicBool::new(false),
    }))
}

/// Endpoints as one string or a list of strings.
pub(crate) fn endpoints(obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(s) = obj.extract::<String>() {
        return Ok(vec![s]);
    }
    obj.extract::<Vec<String>>()
}

pub(crate) fn sort(
    order: Option<&str>,
    target: Option<&str>,
) -> PyResult<Option<(SortTarget, SortOrder)>> {
    if order.is_none() && target.is_none() {
        return Ok(None);
    }
    let order = match order.unwrap_or("ascend") {
        "ascend" => SortOrder::Ascend,
        "descend" => SortOrder::Descend,
        o => {
            return Err(invalid(format!(
                "sort_order must be \"ascend\" or \"descend\", not {o:?}"
            )));
        }
    };
    let target = match target.unwrap_or("key") {
        "key" => SortTarget::Key,
        "version" => SortTarget::Version,
        "create" => SortTarget::Create,
        "mod" => SortTarget::Mod,
        "value" => SortTarget::Value,
        t => {
            return Err(invalid(format!(
                "sort_target must be key, version, create, mod or value, not {t:?}"
            )));
        }
    };
    Ok(Some((target, order)))
}

pub(crate) fn watch_options(
    range_end: Option<Vec<u8>>,
    prefix: bool,
    start_revision: Option<i64>,
    prev_kv: bool,
    progress_notify: bool,
    no_put: bool,
    no_delete: bool,
) -> WatchOptions {
    let mut o = WatchOptions::new();
    if let Some(end) = range_end {
        o = o.with_range(end);
    } else if prefix {
        o = o.with_prefix();
    }
    if let Some(r) = start_revision {
        o = o.with_start_revision(r);
    }
    if prev_kv {
        o = o.with_prev_kv();
    }
    if progress_notify {
        o = o.with_progress_notify();
    }
    if no_put {
        o = o.with_no_put();
    }
    if no_delete {
        o = o.with_no_delete();
    }
    o
}

pub(crate) async fn watch(
    core: Arc<Core>,
    key: Vec<u8>,
    opts: WatchOptions,
) -> PyResult<Arc<WatchInner>> {
    let c = core.client().await?;
    // Always on: the iterator skips the empty resume batch and reports it
    // through `resumed_at`/`resume_count`/`on_resume`.
    let stream = c
        .watch(key, opts.with_resume_notify())
        .await
        .map_err(client_err)?;
    Ok(WatchInner::new(stream))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn instance(
    service: String,
    addr: String,
    id: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    version: Option<String>,
    health: &str,
) -> PyResult<ServiceInstance> {
    let mut i = ServiceInstance::new(service, addr).with_health(parse_health(health)?);
    if let Some(id) = id {
        i = i.with_id(id);
    }
    for (k, v) in metadata.unwrap_or_default() {
        i = i.with_metadata(k, v);
    }
    if let Some(v) = version {
        i = i.with_version(v);
    }
    Ok(i)
}
