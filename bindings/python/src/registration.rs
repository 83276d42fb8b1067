//! A live registration (`Client.register`): the entry is kept on a lease,
//! renewed and re-registered by kv-discovery in the background, with the
//! health checks it was given. Its `RegistrationEvent`s (registered, lease
//! lost, retry failed, re-registered, health changed) are read by
//! iterating the object.
//!
//! A pump task owns the Rust `Registration`: it forwards events to a
//! bounded queue for Python and runs `set_health`/`update_ttl`/`close`
//! commands, so a reader waiting for the next event never blocks those
//! calls. It also answers `instance` reads with the Rust registration's
//! own copy, which follows every check state change (only changes of the
//! overall health come as events).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use kv_discovery::{Health, Registration, RegistrationEvent, ServiceInstance};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use tokio::sync::{mpsc, oneshot};

use crate::checks::PyCheckState;
use crate::errors::{discovery_err, invalid};
use crate::lease::reason;
use crate::registry::{PyServiceInstance, RegisterArgs, parse_health, registry};
use crate::runtime::{aenter_self, anext, awaitable, block, block_py};

/// Events kept for a Python reader that lags (newer ones are dropped when
/// full, as kv-discovery itself does: nobody reading is the common case).
const EVENT_QUEUE: usize = 64;

/// Something that happened to a registration. `type` is one of
/// `"registered"`, `"lease_lost"`, `"retry_failed"`, `"reregistered"`,
/// `"health_changed"`; the other fields are set when they apply.
///
/// >>> for event in registration:
/// ...     if event.type == "reregistered":
/// ...         print("back on lease", event.lease)
#[pyclass(frozen, module = "kvclient", name = "RegistrationEvent")]
#[derive(Clone, Debug)]
pub(crate) struct PyRegistrationEvent {
    /// `"registered"`, `"lease_lost"`, `"retry_failed"`, `"reregistered"` or `"health_changed"`.
    #[pyo3(get, name = "type")]
    kind: &'static str,
    /// The lease: the new one (registered, reregistered) or the lost one.
    #[pyo3(get)]
    lease: Option<i64>,
    /// Why the lease was lost: `"not_found"` (revoked or expired) or `"ttl_elapsed"`.
    #[pyo3(get)]
    reason: Option<&'static str>,
    /// The failed attempt's error message (retry_failed).
    #[pyo3(get)]
    error: Option<String>,
    /// The new health (health_changed).
    #[pyo3(get)]
    health: Option<String>,
}

#[pymethods]
impl PyRegistrationEvent {
    fn __repr__(&self) -> String {
        format!(
            "RegistrationEvent(type={:?}, lease={:?}, reason={:?}, error={:?}, health={:?})",
            self.kind, self.lease, self.reason, self.error, self.health
        )
    }
}

impl From<RegistrationEvent> for PyRegistrationEvent {
    fn from(e: RegistrationEvent) -> Self {
        let mut ev = PyRegistrationEvent {
            kind: "",
            lease: None,
            reason: None,
            error: None,
            health: None,
        };
        match e {
            RegistrationEvent::Registered { lease } => {
                (ev.kind, ev.lease) = ("registered", Some(lease))
            }
            RegistrationEvent::LeaseLost { lease, reason: why } => {
                (ev.kind, ev.lease, ev.reason) = ("lease_lost", Some(lease), Some(reason(why)))
            }
            RegistrationEvent::RetryFailed { error } => {
                (ev.kind, ev.error) = ("retry_failed", Some(error.to_string()))
            }
            RegistrationEvent::Reregistered { lease } => {
                (ev.kind, ev.lease) = ("reregistered", Some(lease))
            }
            RegistrationEvent::HealthChanged { health } => {
                (ev.kind, ev.health) = ("health_changed", Some(health.to_string()))
            }
        }
        ev
    }
}

enum Cmd {
    SetHealth(Health, oneshot::Sender<PyResult<()>>),
    /// A TTL check report: check name, state, note.
    UpdateTtl(String, Health, String, oneshot::Sender<PyResult<()>>),
    Close(oneshot::Sender<PyResult<()>>),
}

/// A request for the instance as the Rust registration holds it now.
type Snapshot = oneshot::Sender<ServiceInstance>;

/// What the pump keeps up to date for the getters.
struct Shared {
    lease: AtomicI64,
    /// Set once closed, or once kv-discovery stopped the registration (a
    /// check critical past its `deregister_critical_after`).
    stopped: AtomicBool,
}

impl Shared {
    fn update(&self, reg: &Registration) {
        self.lease.store(reg.lease_id(), Ordering::Relaxed);
    }
}

/// What both registration classes share.
pub(crate) struct RegInner {
    key: String,
    shared: Arc<Shared>,
    cmds: mpsc::UnboundedSender<Cmd>,
    /// Each waiting reader holds one request: bounded by the readers.
    snapshots: mpsc::UnboundedSender<Snapshot>,
    events: tokio::sync::Mutex<mpsc::Receiver<RegistrationEvent>>,
}

/// The errors of `update_ttl` the shared mapping does not know.
fn ttl_err(e: kv_discovery::Error) -> PyErr {
    match e {
        kv_discovery::Error::UnknownCheck(_) => invalid(e.to_string()),
        e => discovery_err(e),
    }
}

impl RegInner {
    pub(crate) async fn register(
        client: kv_client::Client,
        args: RegisterArgs,
    ) -> PyResult<Arc<RegInner>> {
        let reg = registry(client, args.namespace, Some(args.ttl))
            .register_with_checks(args.instance, args.checks)
            .await
            .map_err(|e| match e {
                // Two checks of one name.
                kv_discovery::Error::InvalidCheck(_) => invalid(e.to_string()),
                e => discovery_err(e),
            })?;
        let shared = Arc::new(Shared {
            lease: AtomicI64::new(reg.lease_id()),
            stopped: AtomicBool::new(false),
        });
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (snap_tx, snap_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let key = reg.key().to_string();
        tokio::spawn(pump(reg, cmd_rx, snap_rx, ev_tx, shared.clone()));
        Ok(Arc::new(RegInner {
            key,
            shared,
            cmds: cmd_tx,
            snapshots: snap_tx,
            events: tokio::sync::Mutex::new(ev_rx),
        }))
    }

    /// The instance as the registration holds it now; `None` once stopped.
    async fn instance(self: Arc<Self>) -> PyResult<Option<ServiceInstance>> {
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let (tx, rx) = oneshot::channel();
        if self.snapshots.send(tx).is_err() {
            return Ok(None);
        }
        // The pump drops the request only when it stops.
        Ok(rx.await.ok())
    }

    async fn update_ttl(
        self: Arc<Self>,
        check: String,
        health: Health,
        note: String,
    ) -> PyResult<()> {
        let (tx, rx) = oneshot::channel();
        let closed = || crate::errors::closed("registration");
        self.cmds
            .send(Cmd::UpdateTtl(check, health, note, tx))
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    async fn set_health(self: Arc<Self>, health: Health) -> PyResult<()> {
        let (tx, rx) = oneshot::channel();
        let closed = || crate::errors::closed("registration");
        self.cmds
            .send(Cmd::SetHealth(health, tx))
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Deregisters; closing twice is fine.
    async fn close(self: Arc<Self>) -> PyResult<()> {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Close(tx)).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    /// `__exit__`/`__aexit__`: close, and never swallow the exception.
    async fn exit(self: Arc<Self>) -> PyResult<bool> {
        self.close().await?;
        Ok(false)
    }

    /// The next event; `None` once closed (after the queued ones).
    async fn next(self: Arc<Self>) -> PyResult<Option<PyRegistrationEvent>> {
        Ok(self.events.lock().await.recv().await.map(Into::into))
    }
}

/// Runs `call` (a call on the registration) while answering snapshot
/// requests, so an `instance` read never waits for a write.
async fn serving<T>(
    reg: &Registration,
    snapshots: &mut mpsc::UnboundedReceiver<Snapshot>,
    call: impl Future<Output = T>,
) -> T {
    tokio::pin!(call);
    loop {
        tokio::select! {
            r = &mut call => return r,
            Some(tx) = snapshots.recv() => {
                let _ = tx.send(reg.instance());
            }
        }
    }
}

/// Owns the registration until closed or until the Python object is gone
/// (then dropping it revokes the lease in the background).
async fn pump(
    mut reg: Registration,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    mut snapshots: mpsc::UnboundedReceiver<Snapshot>,
    events: mpsc::Sender<RegistrationEvent>,
    shared: Arc<Shared>,
) {
    // `None` once kv-discovery stopped the registration (deregistered by a
    // check): Python's iteration then ends after the queued events.
    let mut events = Some(events);
    loop {
        tokio::select! {
            ev = reg.next_event(), if events.is_some() => match ev {
                Some(ev) => {
                    shared.update(&reg);
                    if let Some(tx) = &events {
                        let _ = tx.try_send(ev);
                    }
                }
                None => {
                    // Stopped before the sender goes: the iteration ends when
                    // it does, and must find `stopped` set by then.
                    shared.stopped.store(true, Ordering::SeqCst);
                    events = None;
                }
            },
            Some(tx) = snapshots.recv() => {
                let _ = tx.send(reg.instance());
            }
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(Cmd::SetHealth(health, reply)) => {
                    let call = reg.set_health(health);
                    let r = serving(&reg, &mut snapshots, call).await.map_err(discovery_err);
                    shared.update(&reg);
                    let _ = reply.send(r);
                }
                Some(Cmd::UpdateTtl(check, health, note, reply)) => {
                    let call = reg.update_ttl(&check, health, note);
                    let r = serving(&reg, &mut snapshots, call).await.map_err(ttl_err);
                    let _ = reply.send(r);
                }
                Some(Cmd::Close(reply)) => {
                    shared.stopped.store(true, Ordering::SeqCst);
                    let r = match reg.close().await {
                        // Deregistered by a check already: closing is a no-op.
                        Err(kv_discovery::Error::Closed) if events.is_none() => Ok(()),
                        r => r.map_err(discovery_err),
                    };
                    let _ = reply.send(r);
                    return;
                }
            },
        }
    }
}

macro_rules! registration_class {
    ($ty:ident, $name:literal, $run:path, $doc:literal, { $($extra:tt)* }) => {
        #[doc = $doc]
        #[pyclass(module = "kvclient", name = $name)]
        pub(crate) struct $ty {
            pub(crate) inner: Arc<RegInner>,
        }

        #[pymethods]
        impl $ty {
            /// The entry's key, e.g. `"kv/services/web/<id>"`.
            ///
            /// >>> reg.key
            #[getter]
            fn key(&self) -> &str {
                &self.inner.key
            }
            /// The lease the entry is on now (it changes on re-registration).
            ///
            /// >>> reg.lease_id
            #[getter]
            fn lease_id(&self) -> i64 {
                self.inner.shared.lease.load(Ordering::Relaxed)
            }
            /// The instance as last written (or being written), or `None` once
            /// closed or deregistered by a check.
            ///
            /// >>> reg.instance.health
            #[getter]
            fn instance(&self, py: Python<'_>) -> PyResult<Option<PyServiceInstance>> {
                Ok(block(py, self.inner.clone().instance())?.map(Into::into))
            }
            /// The states of its health checks by name, as last written (`{}`
            /// without checks, or once closed).
            ///
            /// >>> {name: state.health for name, state in reg.checks.items()}
            #[getter]
            fn checks(&self, py: Python<'_>) -> PyResult<BTreeMap<String, PyCheckState>> {
                let i = block(py, self.inner.clone().instance())?;
                Ok(i.map(|i| i.checks.into_iter().map(|(k, v)| (k, v.into())).collect()).unwrap_or_default())
            }
            /// Whether the registration has stopped: closed, or deregistered
            /// because a check stayed critical past its `deregister_critical_after`.
            ///
            /// >>> reg.stopped
            #[getter]
            fn stopped(&self) -> bool {
                self.inner.shared.stopped.load(Ordering::SeqCst)
            }
            /// Reports the TTL check `name` passing (see `TtlCheck`), with an
            /// optional note as its output. Only a change of state is written.
            ///
            /// >>> reg.pass_ttl("ttl", note="queue drained")
            #[pyo3(signature = (name, note=None))]
            fn pass_ttl<'py>(&self, py: Python<'py>, name: String, note: Option<String>) -> PyResult<Bound<'py, PyAny>> {
                $run(py, self.inner.clone().update_ttl(name, Health::Passing, note.unwrap_or_default()))
            }
            /// Reports the TTL check `name` warning (the instance stays in
            /// `health="warning"` subscriptions).
            ///
            /// >>> reg.warn_ttl("ttl", note="queue backing up")
            #[pyo3(signature = (name, note=None))]
            fn warn_ttl<'py>(&self, py: Python<'py>, name: String, note: Option<String>) -> PyResult<Bound<'py, PyAny>> {
                $run(py, self.inner.clone().update_ttl(name, Health::Warning, note.unwrap_or_default()))
            }
            /// Reports the TTL check `name` critical now (without waiting for
            /// its TTL to run out).
            ///
            /// >>> reg.fail_ttl("ttl", note="database unreachable")
            #[pyo3(signature = (name, note=None))]
            fn fail_ttl<'py>(&self, py: Python<'py>, name: String, note: Option<String>) -> PyResult<Bound<'py, PyAny>> {
                $run(py, self.inner.clone().update_ttl(name, Health::Critical, note.unwrap_or_default()))
            }
            /// Sets the health (`"passing"`, `"warning"`, `"critical"`) and rewrites the entry.
            ///
            /// >>> reg.set_health("warning")
            fn set_health<'py>(&self, py: Python<'py>, health: &str) -> PyResult<Bound<'py, PyAny>> {
                let h = parse_health(health)?;
                $run(py, self.inner.clone().set_health(h))
            }
            /// Deregisters now (revokes the lease, deleting the entry); iteration
            /// then ends. Closing twice is fine.
            ///
            /// >>> reg.close()
            fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                $run(py, self.inner.clone().close())
            }
            $($extra)*
        }
    };
}

registration_class!(
    PyRegistration,
    "Registration",
    block_py,
    "A live registration: the entry is kept on a lease, renewed in the background and written again after the lease is lost. Iterating it yields `RegistrationEvent`s until it stops (closed, or deregistered by a check critical past its `deregister_critical_after`); `close()` (or the end of a `with` block) deregisters.\n\n>>> with c.register(\"web\", \"10.0.0.5:8080\") as reg:\n...     for event in reg:\n...         print(event.type, event.lease)",
    {
        fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }
        #[pyo3(signature = (*_args))]
        fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
            block(py, self.inner.clone().exit())
        }
        fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }
        fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyRegistrationEvent>> {
            block(py, self.inner.clone().next())
        }
    }
);

registration_class!(
    PyAsyncRegistration,
    "AsyncRegistration",
    awaitable,
    "A live registration (asyncio): as `Registration`, with `async with` and `async for` over its `RegistrationEvent`s.\n\n>>> async with await client.register(\"web\", \"10.0.0.5:8080\") as reg:\n...     async for event in reg:\n...         print(event.type, event.lease)",
    {
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
        fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }
        fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            anext(py, self.inner.clone().next())
        }
    }
);
