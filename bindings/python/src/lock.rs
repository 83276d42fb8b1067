//! Distributed locks (`Lock`/`AsyncLock`): etcd's lock keys, so they
//! exclude `etcdctl lock` holders too. Each acquisition runs on its own
//! session (lease), revoked on release.

use std::sync::Arc;
use std::time::Duration;

use kv_discovery::{LockGuard, Mutex, Session};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors::{discovery_err, invalid};
use crate::runtime::{awaitable, block, block_py, drop_in_runtime};
use crate::txn::PyCompare;

pub(crate) struct LockInner {
    client: kv_client::Client,
    name: String,
    ttl: i64,
    held: tokio::sync::Mutex<Option<(Session, LockGuard)>>,
}

impl LockInner {
    pub(crate) fn new(client: kv_client::Client, name: String, ttl: i64) -> Arc<LockInner> {
        Arc::new(LockInner {
            client,
            name,
            ttl,
            held: tokio::sync::Mutex::new(None),
        })
    }

    /// Acquires: waits forever (`None`), up to `timeout` seconds, or not
    /// at all (`0`). Returns whether the lock is now held.
    async fn acquire(self: Arc<Self>, timeout: Option<f64>) -> PyResult<bool> {
        let mut held = self.held.lock().await;
        if held.is_some() {
            return Ok(true);
        }
        if timeout.is_some_and(f64::is_nan) {
            return Err(invalid("timeout must be a number of seconds, not NaN"));
        }
        let session = Session::with_ttl(&self.client, self.ttl)
            .await
            .map_err(discovery_err)?;
        let m = Mutex::new(&session, &self.name);
        let r = match timeout {
            None => m.lock().await,
            Some(t) if t <= 0.0 => m.try_lock().await,
            // Too large to represent (inf): no limit.
            Some(t) => match Duration::try_from_secs_f64(t) {
                Ok(limit) => m.lock_timeout(limit).await,
                Err(_) => m.lock().await,
            },
        };
        match r {
            Ok(g) => {
                *held = Some((session, g));
                Ok(true)
            }
            Err(kv_discovery::Error::Locked)
            | Err(kv_discovery::Error::Client(kv_client::Error::Timeout)) => {
                let _ = session.close().await;
                Ok(false)
            }
            Err(e) => {
                let _ = session.close().await;
                Err(discovery_err(e))
            }
        }
    }

    /// Releases; returns whether it was held.
    async fn release(self: Arc<Self>) -> PyResult<bool> {
        let Some((session, guard)) = self.held.lock().await.take() else {
            return Ok(false);
        };
        let r = guard.unlock().await;
        let _ = session.close().await;
        r.map_err(discovery_err)?;
        Ok(true)
    }

    fn with_guard<T>(&self, f: impl FnOnce(&Session, &LockGuard) -> T) -> Option<T> {
        let held = self.held.try_lock().ok()?;
        held.as_ref().map(|(s, g)| f(s, g))
    }
}

impl Drop for LockInner {
    fn drop(&mut self) {
        // Unlock and revoke in the background (best effort).
        drop_in_runtime(self.held.get_mut().take());
    }
}

macro_rules! lock_class {
    ($ty:ident, $name:literal, $run:path, { $($extra:tt)* }) => {
        #[doc = "A named distributed lock with a fencing token. Not held until `acquire()` or a `with` block.\n\n>>> with c.lock(\"jobs/nightly\", ttl=10) as lock:\n...     c.transaction([lock.is_owner()], [Op.put(\"jobs/out\", \"done\")])"]
        #[pyclass(module = "kvclient", name = $name)]
        pub(crate) struct $ty {
            pub(crate) inner: Arc<LockInner>,
        }

        #[pymethods]
        impl $ty {
            /// The lock name.
            ///
            /// >>> lock.name
            #[getter]
            fn name(&self) -> &str {
                &self.inner.name
            }
            /// Acquires the lock. `timeout=None` waits as long as it takes,
            /// `0` only tries; returns whether the lock is held.
            ///
            /// >>> if lock.acquire(timeout=5.0):
            /// ...     lock.release()
            #[pyo3(signature = (timeout=None))]
            fn acquire<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
                $run(py, self.inner.clone().acquire(timeout))
            }
            /// Releases the lock; returns whether it was held.
            ///
            /// >>> lock.release()
            fn release<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                $run(py, self.inner.clone().release())
            }
            /// Whether this object holds the lock and its session is alive.
            ///
            /// >>> lock.is_acquired()
            fn is_acquired(&self) -> bool {
                self.inner.with_guard(|s, _| s.lost_reason().is_none()).unwrap_or(false)
            }
            /// The fencing token (the lock key's create revision; it grows
            /// from one holder to the next), or `None` when not held.
            ///
            /// >>> lock.fencing_token
            #[getter]
            fn fencing_token(&self) -> Option<i64> {
                self.inner.with_guard(|_, g| g.fencing_token())
            }
            /// The lock key (`<name>/<lease id in hex>`), or `None` when not held.
            ///
            /// >>> lock.key
            #[getter]
            fn key(&self) -> Option<String> {
                self.inner.with_guard(|_, g| g.key().to_string())
            }
            /// A compare that holds only while this lock is held: put it in
            /// the `compare` list of writes that must happen under the lock.
            ///
            /// >>> c.transaction([lock.is_owner()], [Op.put("out", "guarded")]).succeeded
            fn is_owner(&self) -> PyResult<PyCompare> {
                self.inner
                    .with_guard(|_, g| PyCompare { inner: g.is_owner() })
                    .ok_or_else(|| invalid(format!("the lock {:?} is not held", self.inner.name)))
            }
            fn __repr__(&self) -> String {
                format!("{}(name={:?}, fencing_token={:?})", $name, self.inner.name, self.fencing_token())
            }
            $($extra)*
        }
    };
}

lock_class!(PyLock, "Lock", block_py, {
    fn __enter__(slf: PyRef<'_, Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        block(py, slf.inner.clone().acquire(None))?;
        Ok(slf.into())
    }
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        block(py, self.inner.clone().release())?;
        Ok(false)
    }
});

lock_class!(PyAsyncLock, "AsyncLock", awaitable, {
    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let inner = slf.borrow().inner.clone();
        let me = slf.unbind();
        awaitable(py, async move {
            inner.acquire(None).await?;
            Ok(me)
        })
    }
    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move {
            inner.release().await?;
            Ok(false)
        })
    }
});
