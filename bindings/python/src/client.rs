//! `Client` (blocking) and `AsyncClient` (asyncio): one set of method
//! bodies, generated for both classes by `client_class!`; only how the
//! caller waits differs (`block_py` vs `awaitable`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::checks::PyCheck;
use crate::config::{Core, LeaseId, core, instance, sort, watch, watch_options};
use crate::election::{ElectionInner, PyAsyncElection, PyElection};
use crate::errors::client_err;
use crate::lease::{LeaseInner, PyAsyncLease, PyLease};
use crate::lock::{LockInner, PyAsyncLock, PyLock};
use crate::registration::{PyAsyncRegistration, PyRegistration, RegInner};
use crate::registry::{
    PyAsyncSubscription, PySubscription, RegisterArgs, SubInner, instances, service_filter,
};
use crate::runtime::{awaitable, block, block_py};
use crate::txn::{
    PyCompare, PyOp, PyTxnResult, build_txn, delete_options, get_options, put_options,
};
use crate::types::{Bin, PyDeleteResult, PyGetResult, PyKeyValue, PyMember, PyPutResult, PyStatus};
use crate::watch::{PyAsyncWatch, PyWatch};

macro_rules! client_class {
    ($ty:ident, $name:literal, $doc:literal, $run:path, $watch:ident, $lease:ident, $lock:ident, $reg:ident, $sub:ident, $election:ident, { $($extra:tt)* }) => {
        #[doc = $doc]
        #[pyclass(module = "kvclient", name = $name)]
        pub(crate) struct $ty {
            core: Arc<Core>,
        }

        #[pymethods]
        impl $ty {
            /// The endpoints this client balances over.
            ///
            /// >>> c.endpoints
            #[getter]
            fn endpoints(&self) -> Vec<String> {
                self.core.config.endpoints().to_vec()
            }

            /// The key-value at `key`, or `None`.
            ///
            /// >>> c.get("config/db").text
            #[pyo3(signature = (key, *, revision=None, serializable=false))]
            fn get<'py>(&self, py: Python<'py>, key: Bin, revision: Option<i64>, serializable: bool) -> PyResult<Bound<'py, PyAny>> {
                let core = self.core.clone();
                let opts = get_options(false, None, None, revision, false, false, serializable);
                $run(py, async move {
                    let mut r = core.client().await?.get(key.0, opts).await.map_err(client_err)?;
                    Ok(r.take_kvs().into_iter().next().map(PyKeyValue::from))
                })
            }

            /// Every key-value under `prefix`.
            ///
            /// >>> [kv.key_text for kv in c.get_prefix("config/")]
            #[pyo3(signature = (prefix, *, limit=None, revision=None, keys_only=false, count_only=false, serializable=false, sort_order=None, sort_target=None))]
            #[allow(clippy::too_many_arguments)]
            fn get_prefix<'py>(&self, py: Python<'py>, prefix: Bin, limit: Option<i64>, revision: Option<i64>, keys_only: bool, count_only: bool, serializable: bool, sort_order: Option<&str>, sort_target: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
                let mut opts = get_options(true, None, limit, revision, keys_only, count_only, serializable);
                if let Some((t, o)) = sort(sort_order, sort_target)? {
                    opts = opts.with_sort(t, o);
                }
                let core = self.core.clone();
                $run(py, async move {
                    let r = core.client().await?.get(prefix.0, opts).await.map_err(client_err)?;
                    Ok(PyGetResult::from(r))
                })
            }

            /// Every key-value in `[key, range_end)` (`range_end=b"\0"`: every key from `key` on).
            ///
            /// >>> c.get_range("a", "c", limit=10).count
            #[pyo3(signature = (key, range_end, *, limit=None, revision=None, keys_only=false, count_only=false, serializable=false, sort_order=None, sort_target=None))]
            #[allow(clippy::too_many_arguments)]
            fn get_range<'py>(&self, py: Python<'py>, key: Bin, range_end: Bin, limit: Option<i64>, revision: Option<i64>, keys_only: bool, count_only: bool, serializable: bool, sort_order: Option<&str>, sort_target: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
                let mut opts = get_options(false, Some(range_end), limit, revision, keys_only, count_only, serializable);
                if let Some((t, o)) = sort(sort_order, sort_target)? {
                    opts = opts.with_sort(t, o);
                }
                let core = self.core.clone();
                $run(py, async move {
                    let r = core.client().await?.get(key.0, opts).await.map_err(client_err)?;
                    Ok(PyGetResult::from(r))
                })
            }

            /// Writes `value` at `key`, optionally on a lease.
            ///
            /// >>> c.put("config/db", "postgres://...", lease=lease).revision
            #[pyo3(signature = (key, value, *, lease=None, prev_kv=false))]
            fn put<'py>(&self, py: Python<'py>, key: Bin, value: Bin, lease: Option<LeaseId>, prev_kv: bool) -> PyResult<Bound<'py, PyAny>> {
                let opts = put_options(lease.map(|l| l.0), prev_kv);
                let core = self.core.clone();
                $run(py, async move {
                    let r = core.client().await?.put(key.0, value.0, opts).await.map_err(client_err)?;
                    Ok(PyPutResult::from(r))
                })
            }

            /// Deletes `key`; the result is true when something was deleted.
            ///
            /// >>> c.delete("config/db")
            #[pyo3(signature = (key, *, prev_kv=false))]
            fn delete<'py>(&self, py: Python<'py>, key: Bin, prev_kv: bool) -> PyResult<Bound<'py, PyAny>> {
                let opts = delete_options(false, None, prev_kv);
                let core = self.core.clone();
                $run(py, async move {
                    let r = core.client().await?.delete(key.0, opts).await.map_err(client_err)?;
                    Ok(PyDeleteResult::from(r))
                })
            }

            /// Deletes every key under `prefix`.
            ///
            /// >>> c.delete_prefix("config/").deleted
            #[pyo3(signature = (prefix, *, prev_kv=false))]
            fn delete_prefix<'py>(&self, py: Python<'py>, prefix: Bin, prev_kv: bool) -> PyResult<Bound<'py, PyAny>> {
                let opts = delete_options(true, None, prev_kv);
                let core = self.core.clone();
                $run(py, async move {
                    let r = core.client().await?.delete(prefix.0, opts).await.map_err(client_err)?;
                    Ok(PyDeleteResult::from(r))
                })
            }

            /// Deletes every key in `[key, range_end)`.
            ///
            /// >>> c.delete_range("a", "c").deleted
            #[pyo3(signature = (key, range_end, *, prev_kv=false))]
            fn delete_range<'py>(&self, py: Python<'py>, key: Bin, range_end: Bin, prev_kv: bool) -> PyResult<Bound<'py, PyAny>> {
                let opts = delete_options(false, Some(range_end), prev_kv);
                let core = self.core.clone();
                $run(py, async move {
                    let r = core.client().await?.delete(key.0, opts).await.map_err(client_err)?;
                    Ok(PyDeleteResult::from(r))
                })
            }

            /// Runs `success` if every compare holds, else `failure`, atomically.
            ///
            /// >>> c.transaction([Compare.version("k") == 0], [Op.put("k", "v")], [Op.get("k")]).succeeded
            #[pyo3(signature = (compare, success=Vec::new(), failure=Vec::new()))]
            fn transaction<'py>(&self, py: Python<'py>, compare: Vec<PyRef<'py, PyCompare>>, success: Vec<PyRef<'py, PyOp>>, failure: Vec<PyRef<'py, PyOp>>) -> PyResult<Bound<'py, PyAny>> {
                let txn = build_txn(compare, success, failure);
                let core = self.core.clone();
                $run(py, async move {
                    let r = core.client().await?.txn(txn).await.map_err(client_err)?;
                    Ok(PyTxnResult::from(r))
                })
            }

            /// Compacts the history up to `revision`.
            ///
            /// >>> c.compact(c.status().revision)
            #[pyo3(signature = (revision, *, physical=false))]
            fn compact<'py>(&self, py: Python<'py>, revision: i64, physical: bool) -> PyResult<Bound<'py, PyAny>> {
                let core = self.core.clone();
                $run(py, async move {
                    core.client().await?.compact(revision, physical).await.map_err(client_err)?;
                    Ok(())
                })
            }

            /// The status of the member that answers.
            ///
            /// >>> c.status().leader
            fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                let core = self.core.clone();
                $run(py, async move {
                    let s = core.client().await?.status().await.map_err(client_err)?;
                    let h = s.0.header.clone().unwrap_or_default();
                    Ok(PyStatus {
                        version: s.version().to_string(),
                        member_id: h.member_id,
                        leader: s.leader(),
                        db_size: s.db_size(),
                        raft_index: s.raft_index(),
                        raft_term: s.raft_term(),
                        revision: h.revision,
                    })
                })
            }

            /// The cluster's members.
            ///
            /// >>> [m.name for m in c.members()]
            fn members<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                let core = self.core.clone();
                $run(py, async move {
                    let r = core.client().await?.member_list().await.map_err(client_err)?;
                    Ok(r.members()
                        .iter()
                        .map(|m| PyMember {
                            id: m.id,
                            name: m.name.clone(),
                            peer_urls: m.peer_ur_ls.clone(),
                            client_urls: m.client_ur_ls.clone(),
                            is_learner: m.is_learner,
                        })
                        .collect::<Vec<_>>())
                })
            }

            /// Watches `key` (or `[key, range_end)`); returns once the server confirmed the watch.
            ///
            /// >>> for event in c.watch("config/db", prev_kv=True):
            /// ...     print(event.type, event.value)
            #[pyo3(signature = (key, *, range_end=None, start_revision=None, prev_kv=false, progress_notify=false, no_put=false, no_delete=false))]
            #[allow(clippy::too_many_arguments)]
            fn watch<'py>(&self, py: Python<'py>, key: Bin, range_end: Option<Bin>, start_revision: Option<i64>, prev_kv: bool, progress_notify: bool, no_put: bool, no_delete: bool) -> PyResult<Bound<'py, PyAny>> {
                let opts = watch_options(range_end.map(|r| r.0), false, start_revision, prev_kv, progress_notify, no_put, no_delete);
                let core = self.core.clone();
                $run(py, async move { Ok($watch::new(watch(core, key.0, opts).await?)) })
            }

            /// Watches every key under `prefix`.
            ///
            /// >>> for event in c.watch_prefix("config/", start_revision=100):
            /// ...     print(event.key, event.value)
            #[pyo3(signature = (prefix, *, start_revision=None, prev_kv=false, progress_notify=false, no_put=false, no_delete=false))]
            #[allow(clippy::too_many_arguments)]
            fn watch_prefix<'py>(&self, py: Python<'py>, prefix: Bin, start_revision: Option<i64>, prev_kv: bool, progress_notify: bool, no_put: bool, no_delete: bool) -> PyResult<Bound<'py, PyAny>> {
                let opts = watch_options(None, true, start_revision, prev_kv, progress_notify, no_put, no_delete);
                let core = self.core.clone();
                $run(py, async move { Ok($watch::new(watch(core, prefix.0, opts).await?)) })
            }

            /// Grants a lease of `ttl` seconds.
            ///
            /// >>> with c.lease(10) as lease:
            /// ...     c.put("alive", "1", lease=lease)
            fn lease<'py>(&self, py: Python<'py>, ttl: i64) -> PyResult<Bound<'py, PyAny>> {
                let core = self.core.clone();
                $run(py, async move {
                    let inner = LeaseInner::grant(core.client().await?, ttl).await?;
                    Ok($lease { inner })
                })
            }

            /// Revokes lease `lease_id`.
            ///
            /// >>> c.revoke_lease(lease.id)
            fn revoke_lease<'py>(&self, py: Python<'py>, lease_id: LeaseId) -> PyResult<Bound<'py, PyAny>> {
                let core = self.core.clone();
                $run(py, async move {
                    core.client().await?.lease_revoke(lease_id.0).await.map_err(client_err)?;
                    Ok(())
                })
            }

            /// The IDs of every lease.
            ///
            /// >>> c.leases()
            fn leases<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                let core = self.core.clone();
                $run(py, async move { core.client().await?.leases().await.map_err(client_err) })
            }

            /// A distributed lock named `name` (not acquired yet: call
            /// `acquire()` or use it in a `with` block). `ttl` is the
            /// session lease's: a holder that dies loses the lock after it.
            ///
            /// >>> with c.lock("jobs/nightly", ttl=10) as lock:
            /// ...     print(lock.fencing_token)
            #[pyo3(signature = (name, *, ttl=60))]
            fn lock<'py>(&self, py: Python<'py>, name: String, ttl: i64) -> PyResult<Bound<'py, PyAny>> {
                let core = self.core.clone();
                $run(py, async move { Ok($lock { inner: LockInner::new(core.client().await?, name, ttl) }) })
            }

            /// Registers a service instance; heartbeat and re-registration run in the
            /// background. `tags` are what subscribers filter on; `checks` are health
            /// checks this process runs (`HttpCheck`, `TcpCheck`, `GrpcCheck`,
            /// `CommandCheck`, `TtlCheck`): with checks the instance starts critical and
            /// its health is the worst check's (`health` is then replaced).
            ///
            /// >>> with c.register("web", "10.0.0.5:8080", tags=["v2"],
            /// ...                 checks=[kvclient.HttpCheck("http://10.0.0.5:8080/health")]) as reg:
            /// ...     serve()
            #[pyo3(signature = (service, addr, *, id=None, metadata=None, version=None, health="passing", ttl=10, namespace="kv", tags=None, checks=None))]
            #[allow(clippy::too_many_arguments)]
            fn register<'py>(&self, py: Python<'py>, service: String, addr: String, id: Option<String>, metadata: Option<BTreeMap<String, String>>, version: Option<String>, health: &str, ttl: i64, namespace: &str, tags: Option<Vec<String>>, checks: Option<Vec<PyRef<'py, PyCheck>>>) -> PyResult<Bound<'py, PyAny>> {
                let args = RegisterArgs { instance: instance(service, addr, id, metadata, version, health)?, ttl, namespace: namespace.to_string(), checks: Vec::new() }
                    .with_tags_and_checks(tags, checks);
                let core = self.core.clone();
                $run(py, async move { Ok($reg { inner: RegInner::register(core.client().await?, args).await? }) })
            }

            /// Subscribes to `service`'s live instances: those carrying every tag in
            /// `tags` and every pair in `metadata`, whose health `health` accepts
            /// (`"any"`, the default as in Consul; `"warning"`: passing or warning;
            /// `"passing"`). An instance leaving the filter is reported `"removed"`.
            ///
            /// >>> for event in c.subscribe("web", tags=["v2"], health="passing"):
            /// ...     print(event.type, event.instance.addr)
            #[pyo3(signature = (service, *, namespace="kv", tags=None, metadata=None, health="any"))]
            fn subscribe<'py>(&self, py: Python<'py>, service: String, namespace: &str, tags: Option<Vec<String>>, metadata: Option<BTreeMap<String, String>>, health: &str) -> PyResult<Bound<'py, PyAny>> {
                let filter = service_filter(tags, metadata, health)?;
                let namespace = namespace.to_string();
                let core = self.core.clone();
                $run(py, async move { Ok($sub { inner: SubInner::start(core.client().await?, service, namespace, filter).await? }) })
            }

            /// The instances of `service` registered now, filtered as `subscribe` filters.
            ///
            /// >>> [i.addr for i in c.instances("web", health="passing")]
            #[pyo3(signature = (service, *, namespace="kv", tags=None, metadata=None, health="any"))]
            fn instances<'py>(&self, py: Python<'py>, service: String, namespace: &str, tags: Option<Vec<String>>, metadata: Option<BTreeMap<String, String>>, health: &str) -> PyResult<Bound<'py, PyAny>> {
                let filter = service_filter(tags, metadata, health)?;
                let namespace = namespace.to_string();
                let core = self.core.clone();
                $run(py, async move { instances(core.client().await?, service, namespace, filter).await })
            }

            /// An election named `name`; campaigns run on a session lease of `ttl` seconds.
            ///
            /// >>> with c.election("db-primary").campaign("10.0.0.5") as leadership:
            /// ...     lead()
            #[pyo3(signature = (name, *, ttl=60))]
            fn election<'py>(&self, py: Python<'py>, name: String, ttl: i64) -> PyResult<Bound<'py, PyAny>> {
                let core = self.core.clone();
                $run(py, async move { Ok($election { inner: ElectionInner::new(core.client().await?, name, ttl) }) })
            }

            /// Closes the client: later calls raise `ClosedError`.
            ///
            /// >>> c.close()
            fn close(&self) {
                self.core.closed.store(true, Ordering::SeqCst);
            }

            fn __repr__(&self) -> String {
                format!("{}({:?})", $name, self.core.config.endpoints())
            }

            $($extra)*
        }
    };
}

client_class!(
    PyClient,
    "Client",
    "A blocking client for kv or any etcd v3 server (method names follow python-etcd3). Every call releases the GIL while it waits; Ctrl-C interrupts it. Method examples use `c` for a `Client`.\n\n>>> with kvclient.Client([\"127.0.0.1:2379\"]) as c:\n...     c.put(\"config/db\", \"postgres://...\")\n...     print(c.get(\"config/db\").text)",
    block_py,
    PyWatch,
    PyLease,
    PyLock,
    PyRegistration,
    PySubscription,
    PyElection,
    {
        /// Connects to `endpoints` (`"host:port"`, `http://` or `https://`
        /// URLs). With `user`/`password` it authenticates now (raising
        /// `AuthFailedError`); otherwise connections are made on first use.
        #[new]
        #[pyo3(signature = (endpoints=None, *, user=None, password=None, ca_cert=None, cert_cert=None, cert_key=None, timeout=None, connect_timeout=None))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            py: Python<'_>,
            endpoints: Option<&Bound<'_, PyAny>>,
            user: Option<String>,
            password: Option<String>,
            ca_cert: Option<String>,
            cert_cert: Option<String>,
            cert_key: Option<String>,
            timeout: Option<f64>,
            connect_timeout: Option<f64>,
        ) -> PyResult<Self> {
            let eps = match endpoints {
                Some(e) => crate::config::endpoints(e)?,
                None => vec!["127.0.0.1:2379".to_string()],
            };
            let core = core(
                eps,
                user,
                password,
                ca_cert,
                cert_cert,
                cert_key,
                timeout,
                connect_timeout,
            )?;
            let c = core.clone();
            block(py, async move { c.client().await.map(|_| ()) })?;
            Ok(PyClient { core })
        }
        fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }
        #[pyo3(signature = (*_args))]
        fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
            self.close();
            false
        }
    }
);

client_class!(
    PyAsyncClient,
    "AsyncClient",
    "The asyncio client: the same methods as `Client`, each returning an awaitable; watches and subscriptions are `async for`, locks, leases and registrations `async with`. The method examples show the blocking form: await each call here.\n\n>>> async with kvclient.AsyncClient([\"127.0.0.1:2379\"]) as client:\n...     await client.put(\"config/db\", \"postgres://...\")\n...     print((await client.get(\"config/db\")).text)",
    awaitable,
    PyAsyncWatch,
    PyAsyncLease,
    PyAsyncLock,
    PyAsyncRegistration,
    PyAsyncSubscription,
    PyAsyncElection,
    {
        /// Like `Client`, but connecting (and authenticating) happens on the
        /// first call, or in `await client.connect()` / `async with`.
        #[new]
        #[pyo3(signature = (endpoints=None, *, user=None, password=None, ca_cert=None, cert_cert=None, cert_key=None, timeout=None, connect_timeout=None))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            endpoints: Option<&Bound<'_, PyAny>>,
            user: Option<String>,
            password: Option<String>,
            ca_cert: Option<String>,
            cert_cert: Option<String>,
            cert_key: Option<String>,
            timeout: Option<f64>,
            connect_timeout: Option<f64>,
        ) -> PyResult<Self> {
            let eps = match endpoints {
                Some(e) => crate::config::endpoints(e)?,
                None => vec!["127.0.0.1:2379".to_string()],
            };
            Ok(PyAsyncClient {
                core: core(
                    eps,
                    user,
                    password,
                    ca_cert,
                    cert_cert,
                    cert_key,
                    timeout,
                    connect_timeout,
                )?,
            })
        }
        /// Connects (and authenticates) now.
        ///
        /// >>> await client.connect()
        fn connect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            let c = self.core.clone();
            awaitable(py, async move { c.client().await.map(|_| ()) })
        }
        fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
            let py = slf.py();
            let c = slf.borrow().core.clone();
            let me = slf.unbind();
            awaitable(py, async move {
                c.client().await?;
                Ok(me)
            })
        }
        #[pyo3(signature = (*_args))]
        fn __aexit__<'py>(
            &self,
            py: Python<'py>,
            _args: &Bound<'py, PyTuple>,
        ) -> PyResult<Bound<'py, PyAny>> {
            self.close();
            awaitable(py, async move { Ok(false) })
        }
    }
);
