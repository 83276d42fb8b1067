//! Leases: `Lease`/`AsyncLease` (grant, revoke, time-to-live, keep-alive as
//! a `with` block) and `LeaseKeeper`/`AsyncLeaseKeeper` (background
//! renewal with a `lost` signal: property, wait, awaitable and callback).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kv_client::{LeaseKeeper, LeaseLost};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::errors::client_err;
use crate::runtime::{aenter_self, awaitable, block, block_py, drop_in_runtime, runtime};

/// A lease-lost reason as Python sees it.
pub(crate) fn reason(l: LeaseLost) -> &'static str {
    match l {
        LeaseLost::NotFound => "not_found",
        LeaseLost::TtlElapsed => "ttl_elapsed",
        LeaseLost::KeeperDropped => "stopped",
    }
}

/// A granted lease.
pub(crate) struct LeaseInner {
    client: kv_client::Client,
    id: i64,
    ttl: i64,
    /// The keeper a `with` block started.
    keeper: Mutex<Option<Arc<KeeperInner>>>,
}

impl LeaseInner {
    pub(crate) async fn grant(client: kv_client::Client, ttl: i64) -> PyResult<Arc<LeaseInner>> {
        let g = client.lease_grant(ttl).await.map_err(client_err)?;
        Ok(Arc::new(LeaseInner {
            client,
            id: g.id(),
            ttl: g.ttl(),
            keeper: Mutex::new(None),
        }))
    }

    async fn revoke(self: Arc<Self>) -> PyResult<()> {
        self.stop_keeper();
        self.client
            .lease_revoke(self.id)
            .await
            .map_err(client_err)?;
        Ok(())
    }

    /// Revokes, treating a lease already gone as done.
    async fn revoke_if_present(self: Arc<Self>) -> PyResult<()> {
        self.stop_keeper();
        match self.client.lease_revoke(self.id).await {
            Ok(_) | Err(kv_client::Error::LeaseNotFound) => Ok(()),
            Err(e) => Err(client_err(e)),
        }
    }

    async fn keep_alive(self: Arc<Self>) -> PyResult<Arc<KeeperInner>> {
        KeeperInner::start(&self.client, self.id).await
    }

    async fn enter(self: Arc<Self>) -> PyResult<()> {
        let k = self.clone().keep_alive().await?;
        *self.keeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(k);
        Ok(())
    }

    fn stop_keeper(&self) {
        if let Some(k) = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take() {
            k.stop();
        }
    }

    /// Leaving a `with` block: stop renewing and revoke (a lease already
    /// gone is fine).
    async fn exit(self: Arc<Self>) -> PyResult<bool> {
        match self.revoke_if_present().await {
            Ok(()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn time_to_live(self: Arc<Self>, keys: bool) -> PyResult<PyLeaseInfo> {
        let r = self
            .client
            .lease_time_to_live(self.id, keys)
            .await
            .map_err(client_err)?;
        Ok(PyLeaseInfo {
            id: self.id,
            ttl: r.ttl(),
            granted_ttl: r.granted_ttl(),
            keys_raw: r.keys().to_vec(),
        })
    }
}

/// A lease's remaining time and keys (`Lease.time_to_live()`).
///
/// >>> info = lease.time_to_live(keys=True)
/// >>> info.ttl, info.keys
#[pyclass(frozen, module = "kvclient", name = "LeaseInfo")]
pub(crate) struct PyLeaseInfo {
    /// The lease ID.
    #[pyo3(get)]
    id: i64,
    /// Seconds left; -1 if the lease has expired or does not exist.
    #[pyo3(get)]
    ttl: i64,
    /// The TTL the lease was granted with.
    #[pyo3(get)]
    granted_ttl: i64,
    keys_raw: Vec<Vec<u8>>,
}

#[pymethods]
impl PyLeaseInfo {
    /// The keys attached (only when asked for with `keys=True`).
    #[getter]
    fn keys<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.keys_raw.iter().map(|k| PyBytes::new(py, k)).collect()
    }
    fn __repr__(&self) -> String {
        format!(
            "LeaseInfo(id={}, ttl={}, granted_ttl={})",
            self.id, self.ttl, self.granted_ttl
        )
    }
}

/// A running keeper.
pub(crate) struct KeeperInner {
    id: i64,
    /// Taken (and dropped) by `stop`, which resolves pending `lost()`
    /// futures with "stopped" (`LeaseLost::KeeperDropped`).
    keeper: Mutex<Option<LeaseKeeper>>,
}

impl KeeperInner {
    pub(crate) async fn start(client: &kv_client::Client, id: i64) -> PyResult<Arc<KeeperInner>> {
        let k = client.lease_keeper(id).await.map_err(client_err)?;
        Ok(Arc::new(KeeperInner {
            id,
            keeper: Mutex::new(Some(k)),
        }))
    }

    fn with<T>(&self, f: impl FnOnce(Option<&LeaseKeeper>) -> T) -> T {
        f(self
            .keeper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref())
    }

    fn lost_now(&self) -> Option<&'static str> {
        self.with(|k| match k {
            Some(k) => k.lost_reason().map(reason),
            None => Some("stopped"),
        })
    }

    /// Resolves with the reason when the lease is lost (or the keeper stopped).
    fn lost(&self) -> impl Future<Output = &'static str> + Send + 'static {
        let lost = self.with(|k| k.map(LeaseKeeper::lost));
        async move {
            match lost {
                Some(lost) => reason(lost.await),
                None => "stopped",
            }
        }
    }

    fn stop(&self) {
        let k = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop_in_runtime(k);
    }

    /// Calls `callback(reason)` from a background thread once the lease is
    /// lost; not when the keeper is stopped or dropped (nothing was lost).
    fn on_lost(&self, callback: Py<PyAny>) -> PyResult<()> {
        let lost = self.lost();
        runtime()?.spawn(async move {
            let why = lost.await;
            if why == "stopped" {
                return;
            }
            // Not while the interpreter exits (see `aio`).
            let _ = crate::aio::attach_from_runtime(|py| {
                if let Err(e) = callback.call1(py, (why,)) {
                    e.write_unraisable(py, Some(callback.bind(py)));
                }
            });
        });
        Ok(())
    }
}

impl Drop for KeeperInner {
    fn drop(&mut self) {
        drop_in_runtime(
            self.keeper
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }
}

macro_rules! keeper_common {
    ($ty:ident, $name:literal, { $($extra:tt)* }) => {
        #[doc = "Keeps a lease alive in the background (renewing every TTL/3) until `stop()` or the end of a `with` block. Dropping it stops renewal too (the lease then expires).\n\n>>> with c.lease(10).keep_alive() as keeper:\n...     keeper.on_lost(lambda reason: print(\"lost:\", reason))"]
        #[pyclass(module = "kvclient", name = $name)]
        pub(crate) struct $ty {
            pub(crate) inner: Arc<KeeperInner>,
        }

        #[pymethods]
        impl $ty {
            /// The lease ID.
            ///
            /// >>> lease.id
            #[getter]
            fn id(&self) -> i64 {
                self.inner.id
            }
            /// The TTL in the last renewal answer, in seconds (0 once stopped).
            ///
            /// >>> lease.ttl
            #[getter]
            fn ttl(&self) -> i64 {
                self.inner.with(|k| k.map_or(0, |k| k.ttl()))
            }
            /// Why the lease was lost (`"not_found"`, `"ttl_elapsed"`, or
            /// `"stopped"`), or `None` while it is kept alive.
            ///
            /// >>> keeper.lost is None
            #[getter]
            fn lost(&self) -> Option<&'static str> {
                self.inner.lost_now()
            }
            /// Calls `callback(reason)` from a background thread when the
            /// lease is lost (not when the keeper is stopped).
            ///
            /// >>> keeper.on_lost(lambda reason: print("lease lost:", reason))
            fn on_lost(&self, callback: Py<PyAny>) -> PyResult<()> {
                self.inner.on_lost(callback)
            }
            /// Stops renewing (the lease is not revoked: it expires after its TTL).
            ///
            /// >>> keeper.stop()
            fn stop(&self) {
                self.inner.stop();
            }
            $($extra)*
        }
    };
}

keeper_common!(PyLeaseKeeper, "LeaseKeeper", {
    /// Blocks until the lease is lost and returns the reason, or returns
    /// `None` after `timeout` seconds.
    ///
    /// >>> keeper.wait_lost(timeout=5.0)
    #[pyo3(signature = (timeout=None))]
    fn wait_lost(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<&'static str>> {
        let lost = self.inner.lost();
        block(py, async move {
            // NaN counts as 0; a limit too large to represent (inf) as none.
            let limit = timeout.map(|t| Duration::try_from_secs_f64(t.max(0.0)));
            Ok(match limit {
                Some(Ok(d)) => tokio::time::timeout(d, lost).await.ok(),
                Some(Err(_)) | None => Some(lost.await),
            })
        })
    }
    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.inner.stop();
        false
    }
});

keeper_common!(PyAsyncLeaseKeeper, "AsyncLeaseKeeper", {
    /// Awaits the loss of the lease and returns the reason.
    ///
    /// >>> keeper.wait_lost(timeout=5.0)
    fn wait_lost<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let lost = self.inner.lost();
        awaitable(py, async move { Ok(lost.await) })
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
        self.inner.stop();
        awaitable(py, async move { Ok(false) })
    }
});

macro_rules! lease_class {
    ($ty:ident, $name:literal, $run:path, $keeper:ident, { $($extra:tt)* }) => {
        #[doc = "A granted lease. Attach keys with `put(..., lease=lease)`. As a `with` block it is kept alive inside and revoked at the end.\n\n>>> with c.lease(10) as lease:\n...     c.put(\"alive\", \"1\", lease=lease)"]
        #[pyclass(module = "kvclient", name = $name)]
        pub(crate) struct $ty {
            pub(crate) inner: Arc<LeaseInner>,
        }

        #[pymethods]
        impl $ty {
            /// The lease ID.
            ///
            /// >>> lease.id
            #[getter]
            fn id(&self) -> i64 {
                self.inner.id
            }
            /// The TTL the server granted, in seconds.
            ///
            /// >>> lease.ttl
            #[getter]
            fn ttl(&self) -> i64 {
                self.inner.ttl
            }
            /// Revokes the lease now, deleting every key attached to it.
            ///
            /// >>> lease.revoke()
            fn revoke<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                $run(py, self.inner.clone().revoke())
            }
            /// The remaining TTL (and, with `keys=True`, the attached keys).
            ///
            /// >>> lease.time_to_live(keys=True).keys
            #[pyo3(signature = (*, keys=false))]
            fn time_to_live<'py>(&self, py: Python<'py>, keys: bool) -> PyResult<Bound<'py, PyAny>> {
                $run(py, self.inner.clone().time_to_live(keys))
            }
            /// Starts keeping the lease alive in the background; returns
            /// once the first renewal was acknowledged.
            ///
            /// >>> keeper = lease.keep_alive()
            fn keep_alive<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                let inner = self.inner.clone();
                $run(py, async move { Ok($keeper { inner: inner.keep_alive().await? }) })
            }
            fn __repr__(&self) -> String {
                format!("{}(id={}, ttl={})", $name, self.inner.id, self.inner.ttl)
            }
            $($extra)*
        }
    };
}

lease_class!(PyLease, "Lease", block_py, PyLeaseKeeper, {
    fn __enter__(slf: PyRef<'_, Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        block(py, slf.inner.clone().enter())?;
        Ok(slf.into())
    }
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        block(py, self.inner.clone().exit())
    }
});

lease_class!(PyAsyncLease, "AsyncLease", awaitable, PyAsyncLeaseKeeper, {
    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let inner = slf.borrow().inner.clone();
        let me = slf.unbind();
        awaitable(py, async move {
            inner.enter().await?;
            Ok(me)
        })
    }
    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.inner.clone().exit())
    }
});
