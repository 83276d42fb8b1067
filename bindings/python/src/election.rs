//! Leader elections (etcd's `concurrency` keys, so they interoperate with
//! `etcdctl elect`): `Election.campaign` returns a `Leadership`;
//! `leader()` and `observe()` need no campaign.

use std::sync::Arc;

use futures::StreamExt;
use kv_discovery::election::{Observer, leader, observe};
use kv_discovery::{Election, Leadership, Session};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors::{closed, discovery_err};
use crate::runtime::{aenter_self, anext, awaitable, block, block_py, drop_in_runtime};
use crate::txn::PyCompare;
use crate::types::{Bin, PyKeyValue};

pub(crate) struct ElectionInner {
    client: kv_client::Client,
    name: String,
    ttl: i64,
    session: tokio::sync::Mutex<Option<Session>>,
}

impl ElectionInner {
    pub(crate) fn new(client: kv_client::Client, name: String, ttl: i64) -> Arc<ElectionInner> {
        Arc::new(ElectionInner {
            client,
            name,
            ttl,
            session: tokio::sync::Mutex::new(None),
        })
    }

    /// Campaigns on this election's session (made on first use, or again
    /// after it was lost); returns once leader.
    async fn campaign(self: Arc<Self>, value: Vec<u8>) -> PyResult<Arc<LeaderInner>> {
        let session = {
            let mut s = self.session.lock().await;
            match s.as_ref() {
                Some(s) if s.lost_reason().is_none() => s.clone(),
                _ => {
                    let new = Session::with_ttl(&self.client, self.ttl)
                        .await
                        .map_err(discovery_err)?;
                    *s = Some(new.clone());
                    new
                }
            }
        };
        let l = Election::new(&session, self.name.clone())
            .campaign(value)
            .await
            .map_err(discovery_err)?;
        Ok(Arc::new(LeaderInner {
            key: l.key().to_string(),
            revision: l.revision(),
            is_leader: l.is_leader(),
            leadership: tokio::sync::Mutex::new(Some(l)),
        }))
    }

    async fn leader(self: Arc<Self>) -> PyResult<PyKeyValue> {
        let l = leader(&self.client, &self.name)
            .await
            .map_err(discovery_err)?;
        Ok(l.kv.into())
    }

    async fn close(self: Arc<Self>) -> PyResult<()> {
        if let Some(s) = self.session.lock().await.take() {
            s.close().await.map_err(discovery_err)?;
        }
        Ok(())
    }

    fn observe(&self) -> PyResult<Arc<ObserverInner>> {
        let _g = crate::runtime::runtime()?.enter();
        Ok(Arc::new(ObserverInner {
            observer: tokio::sync::Mutex::new(Some(observe(&self.client, &self.name))),
            cancel: tokio::sync::watch::channel(false).0,
        }))
    }
}

impl Drop for ElectionInner {
    fn drop(&mut self) {
        drop_in_runtime(self.session.get_mut().take());
    }
}

pub(crate) struct LeaderInner {
    key: String,
    revision: i64,
    is_leader: kv_client::Compare,
    leadership: tokio::sync::Mutex<Option<Leadership>>,
}

impl LeaderInner {
    async fn proclaim(self: Arc<Self>, value: Vec<u8>) -> PyResult<()> {
        let l = self.leadership.lock().await;
        let l = l.as_ref().ok_or_else(|| closed("leadership"))?;
        l.proclaim(value).await.map_err(discovery_err)
    }
    async fn resign(self: Arc<Self>) -> PyResult<()> {
        let Some(l) = self.leadership.lock().await.take() else {
            return Ok(());
        };
        l.resign().await.map_err(discovery_err)
    }
    /// `__exit__`/`__aexit__`: resign, and never swallow the exception.
    async fn exit(self: Arc<Self>) -> PyResult<bool> {
        self.resign().await?;
        Ok(false)
    }
}

impl Drop for LeaderInner {
    fn drop(&mut self) {
        drop_in_runtime(self.leadership.get_mut().take());
    }
}

pub(crate) struct ObserverInner {
    observer: tokio::sync::Mutex<Option<Observer>>,
    cancel: tokio::sync::watch::Sender<bool>,
}

impl ObserverInner {
    async fn next(self: Arc<Self>) -> PyResult<Option<PyKeyValue>> {
        let mut canceled = self.cancel.subscribe();
        let mut g = self.observer.lock().await;
        let Some(o) = g.as_mut() else { return Ok(None) };
        let next = tokio::select! {
            _ = canceled.wait_for(|c| *c) => None,
            l = o.next() => l,
        };
        match next {
            Some(l) => Ok(Some(l.kv.into())),
            None => {
                drop_in_runtime(g.take());
                Ok(None)
            }
        }
    }
    fn close(&self) {
        self.cancel.send_replace(true);
        if let Ok(mut g) = self.observer.try_lock() {
            drop_in_runtime(g.take());
        }
    }
}

impl Drop for ObserverInner {
    fn drop(&mut self) {
        drop_in_runtime(self.observer.get_mut().take());
    }
}

macro_rules! election_class {
    ($ty:ident, $name:literal, $run:path, $leadership:ident, $observer:ident) => {
        #[doc = "A named election. `campaign(value)` waits until leader and returns the leadership; `leader()` and `observe()` work without campaigning.\n\n>>> election = c.election(\"db-primary\", ttl=10)\n>>> with election.campaign(\"10.0.0.5\") as leadership:\n...     leadership.proclaim(\"10.0.0.5:5432\")"]
        #[pyclass(module = "kvclient", name = $name)]
        pub(crate) struct $ty {
            pub(crate) inner: Arc<ElectionInner>,
        }

        #[pymethods]
        impl $ty {
            /// The election name.
            ///
            /// >>> election.name
            #[getter]
            fn name(&self) -> &str {
                &self.inner.name
            }
            /// Campaigns with `value`; returns once leader.
            ///
            /// >>> with election.campaign("10.0.0.5") as leadership:
            /// ...     lead()
            fn campaign<'py>(&self, py: Python<'py>, value: Bin) -> PyResult<Bound<'py, PyAny>> {
                let inner = self.inner.clone();
                $run(py, async move { Ok($leadership { inner: inner.campaign(value.0).await? }) })
            }
            /// The current leader's key-value (value = its proposal); raises
            /// `NoLeaderError` when nobody campaigns.
            ///
            /// >>> election.leader().text
            fn leader<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                $run(py, self.inner.clone().leader())
            }
            /// Iterates the leader's key-value each time it changes.
            ///
            /// >>> for kv in election.observe():
            /// ...     print("leader is now", kv.text)
            fn observe(&self) -> PyResult<$observer> {
                Ok($observer { inner: self.inner.observe()? })
            }
            /// Ends this election object's session (resigning if leader).
            ///
            /// >>> election.close()
            fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                $run(py, self.inner.clone().close())
            }
        }
    };
}

macro_rules! leadership_class {
    ($ty:ident, $name:literal, $run:path, { $($extra:tt)* }) => {
        #[doc = "Leadership won by `campaign`. `resign()` (or the end of a `with` block) lets the next candidate win.\n\n>>> leadership = election.campaign(\"10.0.0.5\")\n>>> leadership.resign()"]
        #[pyclass(module = "kvclient", name = $name)]
        pub(crate) struct $ty {
            pub(crate) inner: Arc<LeaderInner>,
        }

        #[pymethods]
        impl $ty {
            /// The leader key.
            ///
            /// >>> leadership.key
            #[getter]
            fn key(&self) -> &str {
                &self.inner.key
            }
            /// The leader key's create revision (a fencing token).
            ///
            /// >>> leadership.revision
            #[getter]
            fn revision(&self) -> i64 {
                self.inner.revision
            }
            /// A compare that holds only while still leader.
            ///
            /// >>> c.transaction([leadership.is_leader()], [Op.put("primary", "me")])
            fn is_leader(&self) -> PyCompare {
                PyCompare { inner: self.inner.is_leader.clone() }
            }
            /// Announces a new value; raises `NotLeaderError` if no longer leader.
            ///
            /// >>> leadership.proclaim("10.0.0.6")
            fn proclaim<'py>(&self, py: Python<'py>, value: Bin) -> PyResult<Bound<'py, PyAny>> {
                $run(py, self.inner.clone().proclaim(value.0))
            }
            /// Gives up leadership.
            ///
            /// >>> leadership.resign()
            fn resign<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                $run(py, self.inner.clone().resign())
            }
            $($extra)*
        }
    };
}

macro_rules! observer_class {
    ($ty:ident, $name:literal, { $($extra:tt)* }) => {
        #[doc = "The election's leader key-value each time it changes (iterate it); `close()` stops it.\n\n>>> for kv in election.observe():\n...     print(kv.text)"]
        #[pyclass(module = "kvclient", name = $name)]
        pub(crate) struct $ty {
            pub(crate) inner: Arc<ObserverInner>,
        }

        #[pymethods]
        impl $ty {
            /// Stops observing; iteration ends.
            ///
            /// >>> election.close()
            fn close(&self) {
                self.inner.close();
            }
            $($extra)*
        }
    };
}

election_class!(PyElection, "Election", block_py, PyLeadership, PyObserver);
election_class!(
    PyAsyncElection,
    "AsyncElection",
    awaitable,
    PyAsyncLeadership,
    PyAsyncObserver
);

leadership_class!(PyLeadership, "Leadership", block_py, {
    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        block(py, self.inner.clone().exit())
    }
});

leadership_class!(PyAsyncLeadership, "AsyncLeadership", awaitable, {
    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        aenter_self(slf)
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

observer_class!(PyObserver, "Observer", {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyKeyValue>> {
        block(py, self.inner.clone().next())
    }
});

observer_class!(PyAsyncObserver, "AsyncObserver", {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        anext(py, self.inner.clone().next())
    }
});
