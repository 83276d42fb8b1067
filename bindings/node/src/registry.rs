//! Service discovery: `register` (heartbeat, health, re-registration after a
//! lost lease) and `subscribe` (the live instance set and its changes).
//!
//! Both toolkit types need `&mut` to read events while other calls
//! (`set_health`, `current`) go on, so each is owned by a small task that
//! forwards events over a bounded queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use kv_discovery::{
    Health, Registration, RegistrationEvent, Registry, ServiceEvent, ServiceInstance, Subscription,
};
use napi_derive::napi;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::checks::{CheckSpec, FilterOpts, Instance, check_error, health};
use crate::client::NativeClient;
use crate::lease::lost_code;
use crate::{errors, guard};

/// How many events wait for JS; further ones are dropped until it reads (the toolkit
/// bounds its own queue the same way).
const EVENT_QUEUE: usize = 256;

/// Options of `register`.
#[napi(object)]
pub struct RegisterOpts {
    pub service: String,
    pub addrs: Vec<String>,
    /// Instance ID (a UUID v4 when absent).
    pub id: Option<String>,
    pub metadata: Option<HashMap<String, String>>,
    pub version: Option<String>,
    pub health: Option<String>,
    /// Tags subscribers can filter on.
    pub tags: Option<Vec<String>>,
    /// Health checks this process runs; the instance starts critical
    /// until they pass (as Consul's).
    pub checks: Option<Vec<CheckSpec>>,
    /// Lease TTL in seconds (default 10): a dead instance disappears within it.
    pub ttl_sec: Option<i64>,
    /// Key namespace (default "kv").
    pub namespace: Option<String>,
}

/// Something that happened to a registration.
#[napi(object, object_from_js = false)]
pub struct RegEvent {
    /// "registered" | "lost" | "retryFailed" | "reregistered" | "health"
    #[napi(js_name = "type")]
    pub kind: String,
    pub lease: Option<String>,
    /// Why the lease was lost, or the failed retry's error code.
    pub reason: Option<String>,
    pub message: Option<String>,
    pub health: Option<String>,
}

fn reg_event(e: RegistrationEvent) -> RegEvent {
    let mut out = RegEvent {
        kind: String::new(),
        lease: None,
        reason: None,
        message: None,
        health: None,
    };
    match e {
        RegistrationEvent::Registered { lease } => {
            out.kind = "registered".into();
            out.lease = Some(lease.to_string());
        }
        RegistrationEvent::LeaseLost { lease, reason } => {
            out.kind = "lost".into();
            out.lease = Some(lease.to_string());
            out.message = Some(reason.to_string());
            out.reason = Some(lost_code(reason));
        }
        RegistrationEvent::RetryFailed { error } => {
            out.kind = "retryFailed".into();
            out.message = Some(error.to_string());
        }
        RegistrationEvent::Reregistered { lease } => {
            out.kind = "reregistered".into();
            out.lease = Some(lease.to_string());
        }
        RegistrationEvent::HealthChanged { health } => {
            out.kind = "health".into();
            out.health = Some(health.to_string());
        }
    }
    out
}

enum Cmd {
    SetHealth(Health, oneshot::Sender<kv_discovery::Result<()>>),
    /// A TTL check report.
    UpdateTtl {
        check: String,
        health: Health,
        note: String,
        done: oneshot::Sender<kv_discovery::Result<()>>,
    },
    Close(oneshot::Sender<kv_discovery::Result<()>>),
}

/// Owns the registration: forwards its events, runs commands.
async fn run_registration(
    mut reg: Registration,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::Sender<RegEvent>,
    lease: Arc<StdMutex<String>>,
    instance: Arc<StdMutex<ServiceInstance>>,
    closed: CancellationToken,
) {
    // Check states change the toolkit's instance without an event of
    // their own unless the health changes: refresh after every event and
    // command.
    let refresh = |reg: &Registration| {
        *instance.lock().unwrap_or_else(|p| p.into_inner()) = reg.instance();
    };
    loop {
        tokio::select! {
            ev = reg.next_event() => {
                let Some(ev) = ev else { return };
                *lease.lock().unwrap_or_else(|p| p.into_inner()) = reg.lease_id().to_string();
                refresh(&reg);
                // A reader that does not keep up misses the newest events
                // rather than growing the queue.
                let _ = events.try_send(reg_event(ev));
            }
            cmd = cmds.recv() => match cmd {
                Some(Cmd::SetHealth(h, done)) => {
                    let r = reg.set_health(h).await;
                    refresh(&reg);
                    let _ = done.send(r);
                }
                Some(Cmd::UpdateTtl { check, health, note, done }) => {
                    let r = reg.update_ttl(&check, health, note).await;
                    refresh(&reg);
                    let _ = done.send(r);
                }
                Some(Cmd::Close(done)) => {
                    let _ = done.send(reg.close().await);
                    return;
                }
                // Every handle is gone: deregister now.
                None => {
                    let _ = reg.close().await;
                    return;
                }
            },
            _ = closed.cancelled() => {
                let _ = reg.close().await;
                return;
            }
        }
    }
}

#[napi]
impl NativeClient {
    /// Registers a service instance; resolves once its entry is written.
    #[napi]
    pub async fn register(&self, options: RegisterOpts) -> napi::Result<NativeRegistration> {
        let c = self.live()?;
        let mut addrs = options.addrs.into_iter();
        let first = addrs
            .next()
            .ok_or_else(|| errors::invalid("register needs at least one address"))?;
        let mut inst = ServiceInstance::new(options.service, first);
        for a in addrs {
            inst = inst.with_addr(a);
        }
        if let Some(id) = options.id {
            inst = inst.with_id(id);
        }
        for (k, v) in options.metadata.unwrap_or_default() {
            inst = inst.with_metadata(k, v);
        }
        if let Some(v) = options.version {
            inst = inst.with_version(v);
        }
        if let Some(h) = options.health {
            inst = inst.with_health(health(&h)?);
        }
        for t in options.tags.unwrap_or_default() {
            inst = inst.with_tag(t);
        }
        let checks = crate::checks::checks(options.checks.unwrap_or_default())?;
        let mut registry = Registry::new(c).with_ttl(options.ttl_sec.unwrap_or(10));
        if let Some(ns) = options.namespace {
            registry = registry.with_namespace(ns);
        }
        let closed = self.closed.child_token();
        guard(async move {
            let reg = registry
                .register_with_checks(inst, checks)
                .await
                .map_err(check_error)?;
            let key = reg.key().to_string();
            let instance = Arc::new(StdMutex::new(reg.instance()));
            let lease = Arc::new(StdMutex::new(reg.lease_id().to_string()));
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
            tokio::spawn(run_registration(
                reg,
                cmd_rx,
                ev_tx,
                lease.clone(),
                instance.clone(),
                closed.clone(),
            ));
            Ok(NativeRegistration {
                key,
                instance,
                lease,
                cmds: cmd_tx,
                events: Arc::new(Mutex::new(ev_rx)),
                closed,
            })
        })
        .await
    }

    /// Subscribes to the instances of `service` that pass `filter`.
    #[napi]
    pub async fn subscribe(
        &self,
        service: String,
        namespace: Option<String>,
        filter: Option<FilterOpts>,
    ) -> napi::Result<NativeSubscription> {
        let c = self.live()?;
        let filter = crate::checks::filter(filter)?;
        let mut registry = Registry::new(c);
        if let Some(ns) = namespace {
            registry = registry.with_namespace(ns);
        }
        let closed = self.closed.child_token();
        guard(async move {
            let sub = registry
                .subscribe_with(&service, filter)
                .await
                .map_err(errors::discovery)?;
            let current = Arc::new(StdMutex::new((sub.current(), sub.revision())));
            let (tx, rx) = mpsc::channel(EVENT_QUEUE);
            let reading = Arc::new(Reading::default());
            tokio::spawn(run_subscription(
                sub,
                tx,
                current.clone(),
                reading.clone(),
                closed.clone(),
            ));
            Ok(NativeSubscription {
                current,
                events: Arc::new(Mutex::new(rx)),
                reading,
                closed,
            })
        })
        .await
    }
}

/// A live registration.
#[napi]
pub struct NativeRegistration {
    key: String,
    instance: Arc<StdMutex<ServiceInstance>>,
    lease: Arc<StdMutex<String>>,
    cmds: mpsc::UnboundedSender<Cmd>,
    events: Arc<Mutex<mpsc::Receiver<RegEvent>>>,
    closed: CancellationToken,
}

#[napi]
impl NativeRegistration {
    /// The entry's key.
    #[napi(getter)]
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// The instance as last written.
    #[napi(getter)]
    pub fn instance(&self) -> Instance {
        self.instance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .into()
    }

    /// The lease the entry is on now (decimal).
    #[napi(getter)]
    pub fn lease(&self) -> String {
        self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The next event; `null` once closed.
    #[napi]
    pub async fn next_event(&self) -> napi::Result<Option<RegEvent>> {
        let (events, closed) = (self.events.clone(), self.closed.clone());
        guard(async move {
            let mut rx = events.lock().await;
            tokio::select! {
                biased;
                _ = closed.cancelled() => Ok(None),
                e = rx.recv() => Ok(e),
            }
        })
        .await
    }

    /// Sets the health and rewrites the entry.
    #[napi]
    pub async fn set_health(&self, health_: String) -> napi::Result<()> {
        let h = health(&health_)?;
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::SetHealth(h, tx))
            .map_err(|_| errors::closed())?;
        let r = rx.await.map_err(|_| errors::closed())?;
        r.map_err(errors::discovery)
    }

    /// Reports the state of the TTL check `check` ("passing" | "warning" |
    /// "critical", with a note as its output); it holds for the check's TTL.
    #[napi]
    pub async fn update_ttl(
        &self,
        check: String,
        health_: String,
        note: Option<String>,
    ) -> napi::Result<()> {
        let h = health(&health_)?;
        let (tx, rx) = oneshot::channel();
        let cmd = Cmd::UpdateTtl {
            check,
            health: h,
            note: note.unwrap_or_default(),
            done: tx,
        };
        self.cmds.send(cmd).map_err(|_| errors::closed())?;
        let r = rx.await.map_err(|_| errors::closed())?;
        r.map_err(check_error)
    }

    /// Deregisters now (revokes the lease, deleting the entry). A second
    /// call is a no-op.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Close(tx)).is_err() {
            self.closed.cancel();
            return Ok(());
        }
        let r = rx.await;
        self.closed.cancel();
        match r {
            Ok(r) => r.map_err(errors::discovery),
            Err(_) => Ok(()),
        }
    }
}

/// Owns the subscription and keeps `current` up to date. Until JS first
/// asks for an event it only follows changes (so a user of `current()`
/// alone fills no queue); from then on it reads the toolkit's event stream,
/// which starts with the instances present then (as "added"), and forwards
/// every event, waiting for JS when the queue is full (an iterator must
/// not miss a removal).
async fn run_subscription(
    mut sub: Subscription,
    events: mpsc::Sender<SvcEvent>,
    current: Arc<StdMutex<(Vec<ServiceInstance>, i64)>>,
    reading: Arc<Reading>,
    closed: CancellationToken,
) {
    let update = |sub: &Subscription| {
        *current.lock().unwrap_or_else(|p| p.into_inner()) = (sub.current(), sub.revision());
    };
    loop {
        tokio::select! {
            _ = closed.cancelled() => return,
            _ = reading.start.notified() => break,
            _ = sub.changed() => update(&sub),
        }
    }
    loop {
        let ev = tokio::select! {
            _ = closed.cancelled() => return,
            ev = sub.next_event() => ev,
        };
        let Some(ev) = ev else { return };
        update(&sub);
        let (kind, inst) = match ev {
            ServiceEvent::Added(i) => ("added", i),
            ServiceEvent::Updated(i) => ("updated", i),
            ServiceEvent::Removed(i) => ("removed", i),
        };
        let ev = SvcEvent {
            kind: kind.into(),
            instance: inst.into(),
        };
        tokio::select! {
            _ = closed.cancelled() => return,
            sent = events.send(ev) => if sent.is_err() { return },
        }
    }
}

/// Whether JS has started reading a subscription's events.
#[derive(Default)]
pub(crate) struct Reading {
    started: AtomicBool,
    start: Notify,
}

/// A change to a service's instance set.
#[napi(object, object_from_js = false)]
pub struct SvcEvent {
    /// "added" | "updated" | "removed"
    #[napi(js_name = "type")]
    pub kind: String,
    pub instance: Instance,
}

/// The live instance set of one service.
#[napi]
pub struct NativeSubscription {
    current: Arc<StdMutex<(Vec<ServiceInstance>, i64)>>,
    events: Arc<Mutex<mpsc::Receiver<SvcEvent>>>,
    /// Started by the first `next_event()`: from then on every event is queued.
    reading: Arc<Reading>,
    closed: CancellationToken,
}

#[napi]
impl NativeSubscription {
    /// The instances live now.
    #[napi]
    pub fn current(&self) -> Vec<Instance> {
        let c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        c.0.iter().cloned().map(Instance::from).collect()
    }

    /// The store revision `current()` reflects.
    #[napi(getter)]
    pub fn revision(&self) -> i64 {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// The next change (the instances present at start come first, as
    /// "added"); `null` once closed.
    #[napi]
    pub async fn next_event(&self) -> napi::Result<Option<SvcEvent>> {
        if !self.reading.started.swap(true, Ordering::AcqRel) {
            // A stored permit if the task is busy: it starts reading next.
            self.reading.start.notify_one();
        }
        let (events, closed) = (self.events.clone(), self.closed.clone());
        guard(async move {
            let mut rx = events.lock().await;
            tokio::select! {
                biased;
                _ = closed.cancelled() => Ok(None),
                e = rx.recv() => Ok(e),
            }
        })
        .await
    }

    /// Stops the subscription.
    #[napi]
    pub fn close(&self) {
        self.closed.cancel();
    }
}

impl Drop for NativeSubscription {
    /// A collected subscription stops its task.
    fn drop(&mut self) {
        self.closed.cancel();
    }
}
