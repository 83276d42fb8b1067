//! Registering service instances, and finding them.
//!
//! A [`Registration`] writes its instance at
//! `<namespace>/services/<service>/<id>` on its own lease, and a background
//! task keeps it there: when the lease is lost (not renewed within its TTL
//! during a partition, revoked, expired), it grants a new lease and writes
//! the entry again, reporting each step as a [`RegistrationEvent`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use kv_client::{Client, DeleteOptions, GetOptions, LeaseLost, PutOptions};
use tokio::sync::{mpsc, oneshot};

use crate::instance::check_segment;
use crate::session::Session;
use crate::subscription::Subscription;
use crate::util::Backoff;
use crate::{Error, Health, Result, ServiceInstance};

/// The default key namespace.
pub const DEFAULT_NAMESPACE: &str = "kv";
/// The default TTL of a registration's lease, in seconds: a dead instance
/// disappears within this time.
pub const DEFAULT_REGISTRATION_TTL: i64 = 10;

/// Where services are registered: a client, a key namespace and a TTL.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
/// use kv_discovery::{Registry, ServiceInstance};
/// let registry = Registry::new(client).with_namespace("prod").with_ttl(5);
/// let reg = registry.register(ServiceInstance::new("api", "10.0.0.1:80")).await?;
/// for inst in registry.list("api").await? {
///     println!("{} {:?}", inst.id, inst.addrs);
/// }
/// reg.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Registry {
    client: Client,
    namespace: String,
    ttl: i64,
}

impl Registry {
    /// A registry in [`DEFAULT_NAMESPACE`] with [`DEFAULT_REGISTRATION_TTL`].
    pub fn new(client: Client) -> Registry {
        Registry {
            client,
            namespace: DEFAULT_NAMESPACE.to_string(),
            ttl: DEFAULT_REGISTRATION_TTL,
        }
    }
    /// Uses another key namespace (a key prefix without trailing `/`).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Registry {
        self.namespace = namespace.into();
        self
    }
    /// Uses another lease TTL (seconds) for registrations.
    pub fn with_ttl(mut self, ttl: i64) -> Registry {
        self.ttl = ttl;
        self
    }
    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The key prefix of a service's instances: `<namespace>/services/<service>/`.
    ///
    /// ```no_run
    /// # fn f(client: kv_client::Client) {
    /// let r = kv_discovery::Registry::new(client);
    /// assert_eq!(r.service_prefix("api"), "kv/services/api/");
    /// # }
    /// ```
    pub fn service_prefix(&self, service: &str) -> String {
        format!("{}/services/{service}/", self.namespace)
    }

    /// The key of one instance.
    pub fn instance_key(&self, service: &str, id: &str) -> String {
        format!("{}{id}", self.service_prefix(service))
    }

    /// Registers `instance` and keeps it registered until the returned
    /// [`Registration`] is closed or dropped. Returns once the entry is
    /// written.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
    /// use kv_discovery::{Registry, ServiceInstance};
    /// let reg = Registry::new(client).register(ServiceInstance::new("api", "127.0.0.1:8080")).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn register(&self, instance: ServiceInstance) -> Result<Registration> {
        check_segment(&instance.service)?;
        check_segment(&instance.id)?;
        let key = self.instance_key(&instance.service, &instance.id);
        let session = write_entry(&self.client, &key, &instance, self.ttl).await?;
        let lease = Arc::new(AtomicI64::new(session.lease_id()));
        let shared = Arc::new(StdMutex::new(instance));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let _ = ev_tx.try_send(RegistrationEvent::Registered {
            lease: session.lease_id(),
        });
        let task = Task {
            client: self.client.clone(),
            key: key.clone(),
            ttl: self.ttl,
            instance: shared.clone(),
            lease: lease.clone(),
            events: ev_tx,
        };
        tokio::spawn(task.run(session, cmd_rx));
        Ok(Registration {
            key,
            instance: shared,
            lease,
            cmds: cmd_tx,
            events: ev_rx,
        })
    }

    /// The instances of `service` registered now.
    ///
    /// ```no_run
    /// # async fn demo(r: kv_discovery::Registry) -> kv_discovery::Result<()> {
    /// let n = r.list("api").await?.len();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list(&self, service: &str) -> Result<Vec<ServiceInstance>> {
        check_segment(service)?;
        let resp = self
            .client
            .get(
                self.service_prefix(service),
                GetOptions::new().with_prefix(),
            )
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(crate::subscription::decode)
            .collect())
    }

    /// Deletes an instance's entry; returns whether it existed. A live
    /// owner keeps running: it writes the entry again when its lease is
    /// lost or its health is set; stop the owner to remove it for good.
    ///
    /// ```no_run
    /// # async fn demo(r: kv_discovery::Registry) -> kv_discovery::Result<()> {
    /// let existed = r.deregister("api", "api-1").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn deregister(&self, service: &str, id: &str) -> Result<bool> {
        check_segment(service)?;
        check_segment(id)?;
        let resp = self
            .client
            .delete(self.instance_key(service, id), DeleteOptions::new())
            .await?;
        Ok(resp.deleted() > 0)
    }

    /// Subscribes to the live set of `service`'s instances: see
    /// [`Subscription`].
    ///
    /// ```no_run
    /// # async fn demo(r: kv_discovery::Registry) -> kv_discovery::Result<()> {
    /// let sub = r.subscribe("api").await?;
    /// println!("{} instances", sub.current().len());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe(&self, service: &str) -> Result<Subscription> {
        check_segment(service)?;
        Subscription::start(self.client.clone(), self.service_prefix(service)).await
    }
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
    /// An attempt to re-register failed; it is retried with backoff.
    RetryFailed {
        /// The error.
        error: Error,
    },
    /// The entry was written again on a new lease.
    Reregistered {
        /// The new lease ID.
        lease: i64,
    },
    /// The entry was rewritten with a new health.
    HealthChanged {
        /// The new health.
        health: Health,
    },
}

enum Cmd {
    SetHealth(Health, oneshot::Sender<Result<()>>),
    Close(oneshot::Sender<Result<()>>),
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
    /// new health is written with the next registration).
    pub async fn set_health(&self, health: Health) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::SetHealth(health, tx))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Deregisters now: revokes the lease, deleting the entry.
    pub async fn close(self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Close(tx)).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Grants a session and writes the entry on it.
async fn write_entry(
    client: &Client,
    key: &str,
    instance: &ServiceInstance,
    ttl: i64,
) -> Result<Session> {
    let json = instance.to_json()?;
    let session = Session::with_ttl(client, ttl).await?;
    let put = client
        .put(key, json, PutOptions::new().with_lease(session.lease_id()))
        .await;
    match put {
        Ok(_) => Ok(session),
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
}

impl Task {
    fn emit(&self, event: RegistrationEvent) {
        tracing::debug!(key = %self.key, ?event, "registration");
        // A full queue means nobody reads events: dropping is fine.
        let _ = self.events.try_send(event);
    }

    async fn run(self, mut session: Session, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        loop {
            tokio::select! {
                reason = session.lost() => {
                    let old = session.lease_id();
                    self.emit(RegistrationEvent::LeaseLost { lease: old, reason });
                    // The old lease may still exist (we only missed its
                    // renewals): revoke it so the old entry goes too.
                    drop(session);
                    match self.reregister(&mut cmds).await {
                        Some(s) => session = s,
                        None => return,
                    }
                }
                cmd = cmds.recv() => match cmd {
                    None => return, // dropped: the session's drop revokes
                    Some(Cmd::Close(reply)) => {
                        let _ = reply.send(session.close().await);
                        return;
                    }
                    Some(Cmd::SetHealth(health, reply)) => {
                        let _ = reply.send(self.set_health(&session, health).await);
                    }
                },
            }
        }
    }

    async fn set_health(&self, session: &Session, health: Health) -> Result<()> {
        let json = {
            let mut inst = lock(&self.instance);
            inst.health = health;
            inst.to_json()?
        };
        let opts = PutOptions::new().with_lease(session.lease_id());
        self.client.put(self.key.as_str(), json, opts).await?;
        self.emit(RegistrationEvent::HealthChanged { health });
        Ok(())
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
        }
    }

    async fn reregister(&self, cmds: &mut mpsc::UnboundedReceiver<Cmd>) -> Option<Session> {
        let mut backoff = Backoff::new(&self.client);
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
                Ok(session) => {
                    // A health set during the attempt was not written yet.
                    let wanted = lock(&self.instance).health;
                    if wanted != instance.health {
                        let _ = self.set_health(&session, wanted).await;
                    }
                    self.lease.store(session.lease_id(), Ordering::SeqCst);
                    self.emit(RegistrationEvent::Reregistered {
                        lease: session.lease_id(),
                    });
                    return Some(session);
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
