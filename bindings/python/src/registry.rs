//! Service discovery: `register(...)` (heartbeat, re-registration and
//! health checks run in the background) and `subscribe(service)` /
//! `instances(service)` (the live instance set plus added/updated/removed
//! events, gap-free), both filtered on tags, metadata and health by
//! kv-discovery's `ServiceFilter`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex};

use kv_discovery::{
    Check, Health, HealthFilter, Registry, ServiceEvent, ServiceFilter, ServiceInstance,
    Subscription,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::checks::PyCheckState;
use crate::errors::{discovery_err, invalid};
use crate::runtime::{aenter_self, anext, awaitable, block, drop_in_runtime};

pub(crate) fn parse_health(s: &str) -> PyResult<Health> {
    match s {
        "passing" => Ok(Health::Passing),
        "warning" => Ok(Health::Warning),
        "critical" => Ok(Health::Critical),
        _ => Err(invalid(format!(
            "health must be \"passing\", \"warning\" or \"critical\", not {s:?}"
        ))),
    }
}

/// Parses a subscription's or listing's `health`: `"passing"` (passing
/// only), `"warning"` (passing or warning) or `"any"`.
fn parse_health_filter(s: &str) -> PyResult<HealthFilter> {
    match s {
        "passing" => Ok(HealthFilter::Passing),
        "warning" => Ok(HealthFilter::PassingOrWarning),
        "any" => Ok(HealthFilter::All),
        _ => Err(invalid(format!(
            "health must be \"passing\", \"warning\" or \"any\", not {s:?}"
        ))),
    }
}

/// The filter of `subscribe`/`instances`: every tag, every metadata pair,
/// and the health.
pub(crate) fn service_filter(
    tags: Option<Vec<String>>,
    metadata: Option<BTreeMap<String, String>>,
    health: &str,
) -> PyResult<ServiceFilter> {
    let mut f = ServiceFilter::new().with_health(parse_health_filter(health)?);
    for t in tags.unwrap_or_default() {
        f = f.with_tag(t);
    }
    for (k, v) in metadata.unwrap_or_default() {
        f = f.with_metadata(k, v);
    }
    Ok(f)
}

/// A registered service instance (JSON-compatible with the Rust toolkit).
///
/// >>> [(i.id, i.addr, i.tags, i.health) for i in c.instances("web", tags=["v2"])]
#[pyclass(frozen, module = "kvclient", name = "ServiceInstance")]
#[derive(Clone, Debug)]
pub(crate) struct PyServiceInstance {
    /// The service name.
    #[pyo3(get)]
    service: String,
    /// The instance ID (unique within the service).
    #[pyo3(get)]
    id: String,
    /// The addresses it serves on.
    #[pyo3(get)]
    addrs: Vec<String>,
    /// Free-form metadata.
    #[pyo3(get)]
    metadata: BTreeMap<String, String>,
    /// The version it runs.
    #[pyo3(get)]
    version: String,
    /// `"passing"`, `"warning"` or `"critical"` (with checks: the worst of them).
    #[pyo3(get)]
    health: String,
    /// Tags subscribers filter on.
    #[pyo3(get)]
    tags: Vec<String>,
    /// The states of the health checks its owner runs, by check name
    /// (empty without checks).
    #[pyo3(get)]
    checks: BTreeMap<String, PyCheckState>,
}

impl From<ServiceInstance> for PyServiceInstance {
    fn from(i: ServiceInstance) -> Self {
        PyServiceInstance {
            health: i.health.to_string(),
            tags: i.tags,
            checks: i.checks.into_iter().map(|(k, v)| (k, v.into())).collect(),
            service: i.service,
            id: i.id,
            addrs: i.addrs,
            metadata: i.metadata,
            version: i.version,
        }
    }
}

#[pymethods]
impl PyServiceInstance {
    /// The first address (`""` if none).
    ///
    /// >>> instance.addr
    #[getter]
    fn addr(&self) -> String {
        self.addrs.first().cloned().unwrap_or_default()
    }
    fn __repr__(&self) -> String {
        format!(
            "ServiceInstance(service={:?}, id={:?}, addrs={:?}, tags={:?}, health={:?})",
            self.service, self.id, self.addrs, self.tags, self.health
        )
    }
}

/// What `Client.register` needs.
pub(crate) struct RegisterArgs {
    pub(crate) instance: ServiceInstance,
    pub(crate) ttl: i64,
    pub(crate) namespace: String,
    /// Run by the registration (none: a plain registration).
    pub(crate) checks: Vec<Check>,
}

impl RegisterArgs {
    /// Adds `register`'s `tags` and `checks` to the instance `config`
    /// built (the checks named, see `checks::resolve`).
    pub(crate) fn with_tags_and_checks(
        mut self,
        tags: Option<Vec<String>>,
        checks: Option<Vec<PyRef<'_, crate::checks::PyCheck>>>,
    ) -> RegisterArgs {
        for t in tags.unwrap_or_default() {
            self.instance = self.instance.with_tag(t);
        }
        self.checks = crate::checks::resolve(&checks.unwrap_or_default());
        self
    }
}

pub(crate) fn registry(client: kv_client::Client, namespace: String, ttl: Option<i64>) -> Registry {
    let r = Registry::new(client).with_namespace(namespace);
    match ttl {
        Some(t) => r.with_ttl(t),
        None => r,
    }
}

/// A change in a subscribed service: `type` is `"added"`, `"updated"` or
/// `"removed"` (the initial instances come as `"added"`). In a filtered
/// subscription an instance that stops passing the filter (e.g. turns
/// critical under `health="passing"`) is `"removed"`, and `"added"` again
/// when it passes again.
///
/// >>> for event in c.subscribe("web"):
/// ...     print(event.type, event.instance.addr)
#[pyclass(frozen, module = "kvclient", name = "ServiceEvent")]
#[derive(Clone, Debug)]
pub(crate) struct PyServiceEvent {
    /// `"added"`, `"updated"` or `"removed"`.
    #[pyo3(get, name = "type")]
    kind: &'static str,
    /// The instance (for `"removed"`, its last known entry).
    #[pyo3(get)]
    instance: PyServiceInstance,
}

#[pymethods]
impl PyServiceEvent {
    fn __repr__(&self) -> String {
        format!(
            "ServiceEvent(type={:?}, id={:?})",
            self.kind, self.instance.id
        )
    }
}

impl From<ServiceEvent> for PyServiceEvent {
    fn from(e: ServiceEvent) -> Self {
        let (kind, i) = match e {
            ServiceEvent::Added(i) => ("added", i),
            ServiceEvent::Updated(i) => ("updated", i),
            ServiceEvent::Removed(i) => ("removed", i),
        };
        PyServiceEvent {
            kind,
            instance: i.into(),
        }
    }
}

pub(crate) struct SubInner {
    sub: tokio::sync::Mutex<Option<Subscription>>,
    /// The set as of the last event handed out, for `current()` while a
    /// reader waits (then no event is pending, so it is the live set).
    last: StdMutex<(Vec<PyServiceInstance>, i64)>,
    cancel: tokio::sync::watch::Sender<bool>,
}

impl SubInner {
    pub(crate) async fn start(
        client: kv_client::Client,
        service: String,
        namespace: String,
        filter: ServiceFilter,
    ) -> PyResult<Arc<SubInner>> {
        let sub = registry(client, namespace, None)
            .subscribe_with(&service, filter)
            .await
            .map_err(discovery_err)?;
        let last = (
            sub.current().into_iter().map(Into::into).collect(),
            sub.revision(),
        );
        Ok(Arc::new(SubInner {
            sub: tokio::sync::Mutex::new(Some(sub)),
            last: StdMutex::new(last),
            cancel: tokio::sync::watch::channel(false).0,
        }))
    }

    async fn next(self: Arc<Self>) -> PyResult<Option<PyServiceEvent>> {
        let mut canceled = self.cancel.subscribe();
        let mut guard = self.sub.lock().await;
        let Some(sub) = guard.as_mut() else {
            return Ok(None);
        };
        let ev = tokio::select! {
            _ = canceled.wait_for(|c| *c) => None,
            ev = sub.next_event() => ev,
        };
        match ev {
            Some(ev) => {
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = (
                    sub.current().into_iter().map(Into::into).collect(),
                    sub.revision(),
                );
                Ok(Some(ev.into()))
            }
            None => {
                drop_in_runtime(guard.take());
                Ok(None)
            }
        }
    }

    fn current(&self) -> (Vec<PyServiceInstance>, i64) {
        if let Ok(g) = self.sub.try_lock()
            && let Some(s) = g.as_ref()
        {
            return (
                s.current().into_iter().map(Into::into).collect(),
                s.revision(),
            );
        }
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn close(&self) {
        self.cancel.send_replace(true);
        if let Ok(mut g) = self.sub.try_lock() {
            drop_in_runtime(g.take());
        }
    }
}

impl Drop for SubInner {
    fn drop(&mut self) {
        drop_in_runtime(self.sub.get_mut().take());
    }
}

macro_rules! subscription_class {
    ($ty:ident, $name:literal, { $($extra:tt)* }) => {
        #[doc = "The live set of a service's instances (`current()`), and its changes when iterated. `close()` stops it.\n\n>>> with c.subscribe(\"web\") as sub:\n...     print(sub.current())\n...     for event in sub:\n...         print(event.type, event.instance.id)"]
        #[pyclass(module = "kvclient", name = $name)]
        pub(crate) struct $ty {
            pub(crate) inner: Arc<SubInner>,
        }

        #[pymethods]
        impl $ty {
            /// The instances live now.
            ///
            /// >>> [i.addr for i in sub.current()]
            fn current(&self) -> Vec<PyServiceInstance> {
                self.inner.current().0
            }
            /// The store revision `current()` reflects.
            ///
            /// >>> sub.revision
            #[getter]
            fn revision(&self) -> i64 {
                self.inner.current().1
            }
            /// Stops the subscription; iteration ends.
            ///
            /// >>> sub.close()
            fn close(&self) {
                self.inner.close();
            }
            $($extra)*
        }
    };
}

subscription_class!(PySubscription, "Subscription", {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyServiceEvent>> {
        block(py, self.inner.clone().next())
    }
    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.inner.close();
        false
    }
});

subscription_class!(PyAsyncSubscription, "AsyncSubscription", {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        anext(py, self.inner.clone().next())
    }
    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        aenter_self(slf)
    }
    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.inner.close();
        awaitable(py, async move { Ok(false) })
    }
});

/// Lists a service's instances now that pass `filter`.
pub(crate) async fn instances(
    client: kv_client::Client,
    service: String,
    namespace: String,
    filter: ServiceFilter,
) -> PyResult<Vec<PyServiceInstance>> {
    let list = registry(client, namespace, None)
        .list_with(&service, &filter)
        .await
        .map_err(discovery_err)?;
    Ok(list.into_iter().map(Into::into).collect())
}
