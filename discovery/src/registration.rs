//! A live registration and its background task: keeps the entry on a lease,
//! writes it again on a new lease when the lease is lost, and on the same
//! lease when the key is deleted behind its back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use kv_client::retry::Backoff;
use kv_client::{Client, Compare, CompareOp, LeaseLost, PutOptions, Txn, TxnOp};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::check::{self, Check, CheckState};
use crate::ownkey::OwnKey;
use crate::session::Session;
use crate::{Error, Health, Result, ServiceInstance};

/// Writes the entry, spawns its keeper and returns the handle.
pub(crate) async fn start(
    client: &Client,
    key: String,
    ttl: i64,
    instance: ServiceInstance,
    checks: Vec<Check>,
) -> Result<Registration> {
    let (session, written) = write_entry(client, &key, &instance, ttl).await?;
    let written_health = StdMutex::new(instance.health);
    let lease = Arc::new(AtomicI64::new(session.lease_id()));
    let shared = Arc::new(StdMutex::new(instance));
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let checks = (!checks.is_empty()).then(|| check::spawn(checks, &cmd_tx));
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
    let _ = ev_tx.try_send(RegistrationEvent::Registered {
        lease: session.lease_id(),
    });
    let task = Task {
        client: client.clone(),
        key: key.clone(),
        ttl,
        instance: shared.clone(),
        lease: lease.clone(),
        events: ev_tx,
        written_health,
    };
    let own = OwnKey::new(client, &key, written);
    tokio::spawn(task.run(session, own, cmd_rx));
    Ok(Registration {
        key,
        instance: shared,
        lease,
        cmds: cmd_tx,
        events: ev_rx,
        checks,
    })
}

/// How many registration events are kept for the reader (older ones are
/// dropped when it does not keep up).
const EVENT_QUEUE: usize = 64;

/// What happened to a [`Registration`].
///
/// ```
/// use kv_discovery::RegistrationEvent;
/// let e = RegistrationEvent::Reregistered { lease: 7 };
/// assert!(matches!(e, RegistrationEvent::Reregistered { .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrationEvent {
    /// The entry was first written, on this lease.
    Registered {
        /// The lease ID.
        lease: i64,
    },
    /// The lease was lost; the entry is (or soon will be) gone until
    /// re-registered.
    LeaseLost {
        /// The lost lease's ID.
        lease: i64,
        /// Why.
        reason: LeaseLost,
    },
    /// A write of the entry failed: an attempt to re-register, or the
    /// write of a check's state change. It is retried with backoff (a
    /// state change until it lands or a newer one replaces it).
    RetryFailed {
        /// The error.
        error: Error,
    },
    /// The entry was written again: on a new lease after the old one was
    /// lost, or on the same lease after the key was deleted behind the
    /// registration's back (one event per rewrite).
    Reregistered {
        /// The lease the entry is now on (new, or the same one).
        lease: i64,
    },
    /// The entry was rewritten with a new health.
    HealthChanged {
        /// The new health.
        health: Health,
    },
}

pub(crate) enum Cmd {
    SetHealth(Health, oneshot::Sender<Result<()>>),
    Close(oneshot::Sender<Result<()>>),
    /// The checks' states after one changed: one write.
    Checks(BTreeMap<String, CheckState>),
    /// A check stayed critical past its `deregister_critical_after`.
    Deregister(String),
}

/// A live registration. Dropping it revokes its lease in the background
/// (best effort); [`close`](Registration::close) does it now.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
/// use kv_discovery::{Health, Registry, RegistrationEvent, ServiceInstance};
/// let mut reg = Registry::new(client).register(ServiceInstance::new("api", "127.0.0.1:8080")).await?;
/// reg.set_health(Health::Warning).await?;
/// while let Some(event) = reg.next_event().await {
///     if let RegistrationEvent::Reregistered { lease } = event {
///         println!("back on lease {lease:x}");
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Registration {
    key: String,
    instance: Arc<StdMutex<ServiceInstance>>,
    lease: Arc<AtomicI64>,
    cmds: mpsc::UnboundedSender<Cmd>,
    events: mpsc::Receiver<RegistrationEvent>,
    /// The health checks it runs (stopped when it is dropped).
    checks: Option<check::Checks>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

impl Registration {
    /// The entry's key.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// The instance as last written (or to be written).
    pub fn instance(&self) -> ServiceInstance {
        lock(&self.instance).clone()
    }
    /// The lease the entry is currently on.
    pub fn lease_id(&self) -> i64 {
        self.lease.load(Ordering::SeqCst)
    }

    /// The next event; `None` once the background task has stopped.
    pub async fn next_event(&mut self) -> Option<RegistrationEvent> {
        self.events.recv().await
    }

    /// Sets the health and rewrites the entry (while re-registering, the
    /// new health is written with the next registration). With health
    /// checks, the next check state change replaces it.
    pub async fn set_health(&self, health: Health) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::SetHealth(health, tx))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Reports the state of the TTL check `check` (see [`Check::ttl`]): it
    /// holds for the check's TTL; without a new report the check turns
    /// critical. Only a change of state is written.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
    /// use std::time::Duration;
    /// use kv_discovery::{Check, Health, Registry, ServiceInstance};
    /// let reg = Registry::new(client)
    ///     .register_with_checks(
    ///         ServiceInstance::new("worker", "10.0.0.5:0"),
    ///         [Check::ttl("heartbeat", Duration::from_secs(15))],
    ///     )
    ///     .await?;
    /// reg.update_ttl("heartbeat", Health::Passing, "queue drained").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn update_ttl(
        &self,
        check: &str,
        health: Health,
        output: impl Into<String>,
    ) -> Result<()> {
        if self.cmds.is_closed() {
            // Closed, or deregistered by a check critical for too long.
            return Err(Error::Closed);
        }
        match &self.checks {
            Some(c) => c.update_ttl(check, health, output.into()).await,
            None => Err(Error::UnknownCheck(check.to_string())),
        }
    }

    /// Deregisters now: revokes the lease, deleting the entry.
    pub async fn close(self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Close(tx)).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

/// Sets the checks' states and the instance's health: the worst of them.
fn apply_checks(inst: &mut ServiceInstance, states: BTreeMap<String, CheckState>) {
    inst.health = states
        .values()
        .map(|s| s.health)
        .fold(Health::Passing, check::worse);
    inst.checks = states;
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Grants a session and writes the entry on it; returns the session and
/// the revision of the write.
async fn write_entry(
    client: &Client,
    key: &str,
    instance: &ServiceInstance,
    ttl: i64,
) -> Result<(Session, i64)> {
    let json = instance.to_json()?;
    let session = Session::with_ttl(client, ttl).await?;
    let put = client
        .put(key, json, PutOptions::new().with_lease(session.lease_id()))
        .await;
    match put {
        Ok(resp) => Ok((session, resp.revision())),
        Err(e) => {
            let _ = session.close().await;
            Err(e.into())
        }
    }
}

/// The background task of one registration.
struct Task {
    client: Client,
    key: String,
    ttl: i64,
    instance: Arc<StdMutex<ServiceInstance>>,
    lease: Arc<AtomicI64>,
    events: mpsc::Sender<RegistrationEvent>,
    /// The health in the entry as last written (for `HealthChanged`).
    written_health: StdMutex<Health>,
}

/// A check state change whose write failed, to be written again: the
/// registration's task retries it itself (one write at a time), so it
/// lands even when no further state change comes to carry it.
struct PendingWrite {
    backoff: Backoff,
    at: Instant,
}

/// Resolves when the pending write is due; never without one.
async fn due(pending: &Option<PendingWrite>) {
    match pending {
        Some(p) => tokio::time::sleep_until(p.at).await,
        None => std::future::pending().await,
    }
}

impl Task {
    fn emit(&self, event: RegistrationEvent) {
        tracing::debug!(key = %self.key, ?event, "registration");
        // A full queue means nobody reads events: dropping is fine.
        let _ = self.events.try_send(event);
    }

    async fn run(
        self,
        mut session: Session,
        mut own: OwnKey,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ) {
        let mut pending: Option<PendingWrite> = None;
        loop {
            let lost = tokio::select! {
                reason = session.lost() => reason,
                () = due(&pending) => {
                    self.write_checks(&session, &mut pending).await;
                    continue;
                }
                () = own.deleted() => match self.rewrite(&session).await {
                    Ok(Some(rev)) => {
                        // The whole entry, pending check states included.
                        pending = None;
                        own.rewritten(rev);
                        continue;
                    }
                    Ok(None) => continue,
                    // The delete was the lease's own expiry (seen before
                    // the keeper noticed): re-register on a new lease.
                    Err(Error::Client(kv_client::Error::LeaseNotFound)) => LeaseLost::NotFound,
                    Err(e) => {
                        tracing::debug!(key = %self.key, %e, "rewrite failed; retrying");
                        own.retry_later();
                        continue;
                    }
                },
                cmd = cmds.recv() => match cmd {
                    None => return, // dropped: the session's drop revokes
                    Some(Cmd::Close(reply)) => {
                        let _ = reply.send(session.close().await);
                        return;
                    }
                    Some(Cmd::SetHealth(health, reply)) => {
                        let r = self.set_health(&session, health).await;
                        if r.is_ok() {
                            pending = None;
                        }
                        let _ = reply.send(r.map(|_| ()));
                        continue;
                    }
                    Some(Cmd::Checks(states)) => {
                        // The newer states replace any pending ones: the
                        // write below carries them, or is retried.
                        apply_checks(&mut lock(&self.instance), states);
                        self.write_checks(&session, &mut pending).await;
                        continue;
                    }
                    Some(Cmd::Deregister(check)) => {
                        tracing::info!(key = %self.key, %check, "deregistered: check critical too long");
                        let _ = session.close().await;
                        return;
                    }
                },
            };
            let old = session.lease_id();
            self.emit(RegistrationEvent::LeaseLost {
                lease: old,
                reason: lost,
            });
            // The old lease may still exist (we only missed its renewals):
            // dropping the session revokes it so the old entry goes too.
            drop(session);
            // Re-registering writes the whole entry, pending states included.
            pending = None;
            match self.reregister(&mut cmds).await {
                Some((s, rev, stale)) => {
                    session = s;
                    own.rewritten(rev);
                    if stale {
                        pending = Some(PendingWrite {
                            backoff: crate::util::backoff(&self.client),
                            at: Instant::now(),
                        });
                    }
                }
                None => return,
            }
        }
    }

    /// Writes the entry again on the current lease if it is still absent;
    /// the revision of the write, or `None` if someone re-created it first.
    async fn rewrite(&self, session: &Session) -> Result<Option<i64>> {
        let json = lock(&self.instance).to_json()?;
        let key = self.key.as_str();
        let put = PutOptions::new().with_lease(session.lease_id());
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, json, put)]);
        let resp = self.client.txn(txn).await?;
        if !resp.succeeded() {
            return Ok(None);
        }
        tracing::info!(key = %self.key, "entry deleted behind the registration's back; rewritten");
        self.emit(RegistrationEvent::Reregistered {
            lease: session.lease_id(),
        });
        self.written(lock(&self.instance).health);
        Ok(Some(resp.revision()))
    }

    async fn set_health(&self, session: &Session, health: Health) -> Result<i64> {
        let json = {
            let mut inst = lock(&self.instance);
            inst.health = health;
            inst.to_json()?
        };
        let opts = PutOptions::new().with_lease(session.lease_id());
        let resp = self.client.put(self.key.as_str(), json, opts).await?;
        *lock(&self.written_health) = health;
        self.emit(RegistrationEvent::HealthChanged { health });
        Ok(resp.revision())
    }

    /// Notes that the entry now holds `health`; reports `HealthChanged` if
    /// that differs from what it held.
    fn written(&self, health: Health) {
        let before = std::mem::replace(&mut *lock(&self.written_health), health);
        if health != before {
            self.emit(RegistrationEvent::HealthChanged { health });
        }
    }

    /// Writes the entry with the checks' current states (applied by
    /// [`apply_checks`]); reports `HealthChanged` if the written health
    /// changed. A failed write is reported (`RetryFailed`) and left in
    /// `pending` with its next attempt after a backoff wait; a successful
    /// one clears it.
    async fn write_checks(&self, session: &Session, pending: &mut Option<PendingWrite>) {
        let (json, after) = {
            let inst = lock(&self.instance);
            (inst.to_json(), inst.health)
        };
        let result = match json {
            Ok(json) => {
                let opts = PutOptions::new().with_lease(session.lease_id());
                self.client
                    .put(self.key.as_str(), json, opts)
                    .await
                    .map_err(Error::from)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => {
                *pending = None;
                self.written(after);
            }
            Err(error) => {
                tracing::warn!(key = %self.key, %error, "writing a check state change failed; retrying");
                let p = pending.get_or_insert_with(|| PendingWrite {
                    backoff: crate::util::backoff(&self.client),
                    at: Instant::now(),
                });
                p.at = Instant::now() + p.backoff.next_delay();
                self.emit(RegistrationEvent::RetryFailed { error });
            }
        }
    }

    /// Re-registers with backoff until it works; `None` if closed meanwhile.
    /// A command that arrives while re-registering: a health change is
    /// kept for the next write; false means stop (closed or dropped).
    fn between_attempts(&self, cmd: Option<Cmd>) -> bool {
        match cmd {
            None => false,
            Some(Cmd::Close(reply)) => {
                let _ = reply.send(Ok(()));
                false
            }
            Some(Cmd::SetHealth(health, reply)) => {
                lock(&self.instance).health = health;
                let _ = reply.send(Ok(()));
                true
            }
            Some(Cmd::Checks(states)) => {
                apply_checks(&mut lock(&self.instance), states);
                true
            }
            Some(Cmd::Deregister(_)) => false,
        }
    }

    /// Re-registers; the new session, the revision of the write, and
    /// whether a change made meanwhile is still to be written.
    async fn reregister(
        &self,
        cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    ) -> Option<(Session, i64, bool)> {
        let mut backoff = crate::util::backoff(&self.client);
        loop {
            let instance = lock(&self.instance).clone();
            let attempt = write_entry(&self.client, &self.key, &instance, self.ttl);
            tokio::pin!(attempt);
            let result = loop {
                tokio::select! {
                    r = &mut attempt => break r,
                    cmd = cmds.recv() => if !self.between_attempts(cmd) {
                        return None;
                    },
                }
            };
            match result {
                Ok((session, mut written)) => {
                    self.written(instance.health);
                    // A change during the attempt was not written yet.
                    let wanted = lock(&self.instance).clone();
                    let mut stale = false;
                    if wanted != instance {
                        match self.set_health(&session, wanted.health).await {
                            Ok(rev) => written = rev,
                            Err(_) => stale = true,
                        }
                    }
                    self.lease.store(session.lease_id(), Ordering::SeqCst);
                    self.emit(RegistrationEvent::Reregistered {
                        lease: session.lease_id(),
                    });
                    return Some((session, written, stale));
                }
                Err(error) => {
                    self.emit(RegistrationEvent::RetryFailed { error });
                    let wait = backoff.next_delay();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        cmd = cmds.recv() => if !self.between_attempts(cmd) {
                            return None;
                        },
                    }
                }
            }
        }
    }
}
