//! Service discovery: `register(...)` (heartbeat and re-registration run in
//! the background) and `subscribe(service)` (the live instance set plus
//! added/updated/removed events, gap-free).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex};

use kv_discovery::{Health, Registry, ServiceEvent, ServiceInstance, Subscription};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

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

/// A registered service instance (JSON-compatible with the Rust toolkit).
///
/// >>> [(i.id, i.addr, i.metadata) for i in c.instances("web")]
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
    /// `"passing"`, `"warning"` or `"critical"`.
    #[pyo3(get)]
    health: String,
}

impl From<ServiceInstance> for PyServiceInstance {
    fn from(i: ServiceInstance) -> Self {
        PyServiceInstance {
            health: i.health.to_string(),
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
            "ServiceInstance(service={:?}, id={:?}, addrs={:?}, health={:?})",
            self.service, self.id, self.addrs, self.health
        )
    }
}

/// What `Client.register` needs.
pub(crate) struct RegisterArgs {
    pub(crate) instance: ServiceInstance,
    pub(crate) ttl: i64,
    pub(crate) namespace: String,
}

pub(crate) fn registry(client: kv_client::Client, namespace: String, ttl: Option<i64>) -> Registry {
    let r = Registry::new(client).with_namespace(namespace);
    match ttl {
        Some(t) => r.with_ttl(t),
        None => r,
    }
}

/// A change in a subscribed service: `type` is `"added"`, `"updated"` or
/// `"removed"` (the initial instances come as `"added"`).
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
    ) -> PyResult<Arc<SubInner>> {
        let sub = registry(client, namespace, None)
            .subscribe(&service)
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

/// Lists a service's instances now.
pub(crate) async fn instances(
    client: kv_client::Client,
    service: String,
    namespace: String,
) -> PyResult<Vec<PyServiceInstance>> {
    let list = registry(client, namespace, None)
        .list(&service)
        .await
        .map_err(discovery_err)?;
    Ok(list.into_iter().map(Into::into).collect())
}
