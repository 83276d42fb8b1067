//! A tonic channel that balances over a service's live instances.
//!
//! [`channel`] (or [`ChannelBuilder`]) subscribes to a service and keeps one
//! HTTP/2 connection per live instance; each call goes to the connected
//! instance with the fewest calls in flight (ties in turn). Instances are
//! added, replaced and removed as they register, change address or health,
//! or go away, without restarting anything.
//!
//! Why not tonic's `Channel::balance_channel`: its endpoints connect lazily
//! and a dead one stays in the balancer, failing every call routed to it
//! with a connect error, until discovery removes it (a lease TTL later).
//! Here an instance whose connection drops, or whose call fails at the
//! transport level, stops being chosen at once and is reconnected in the
//! background with backoff; it is chosen again only once connected. So a
//! killed instance fails only the calls in flight to it at that moment.
//!
//! ```no_run
//! # async fn demo(registry: kv_discovery::Registry) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use kv_discovery::{HealthFilter, ServiceFilter};
//! use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
//!
//! let filter = ServiceFilter::new().with_health(HealthFilter::PassingOrWarning);
//! let channel = kv_discovery::grpc::channel(&registry, "greeter", filter, |ep| {
//!     ep.timeout(Duration::from_secs(5)).connect_timeout(Duration::from_secs(1))
//! })
//! .await?;
//! let mut client = HealthClient::new(channel);
//! let reply = client.check(HealthCheckRequest { service: String::new() }).await?;
//! # Ok(())
//! # }
//! ```

mod conn;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::transport::Endpoint;
use tower::{Service, ServiceExt};

use crate::{Health, Registry, Result, ServiceEvent, ServiceFilter, ServiceInstance, Subscription};
use conn::Member;

/// The error type of [`BalancedChannel`] calls: a transport error, or a
/// [`tonic::Status`] `UNAVAILABLE` when no instance was reachable in time
/// (tonic clients turn both into a `Status`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a call waits for a connected instance by default.
pub const DEFAULT_WAIT_FOR_INSTANCE: Duration = Duration::from_secs(5);

type Configure = Arc<dyn Fn(Endpoint) -> Endpoint + Send + Sync>;
type Address = Arc<dyn Fn(&ServiceInstance) -> Option<String> + Send + Sync>;

/// A balanced channel over the live instances of `service` that pass
/// `filter` (critical ones are never used), each connection built from
/// `Endpoint::from_shared("http://<first address>")` passed through
/// `configure` (timeouts, keepalive, TLS, ...). See the [module
/// docs](self) for an example; [`ChannelBuilder`] has more options.
pub async fn channel(
    registry: &Registry,
    service: &str,
    filter: ServiceFilter,
    configure: impl Fn(Endpoint) -> Endpoint + Send + Sync + 'static,
) -> Result<BalancedChannel> {
    ChannelBuilder::new(registry.clone(), service)
        .filter(filter)
        .endpoint(configure)
        .connect()
        .await
}

/// Options of a [`BalancedChannel`].
///
/// ```no_run
/// # async fn demo(registry: kv_discovery::Registry) -> kv_discovery::Result<()> {
/// use std::time::Duration;
/// use kv_discovery::grpc::ChannelBuilder;
/// let channel = ChannelBuilder::new(registry, "greeter")
///     .endpoint(|ep| ep.http2_keep_alive_interval(Duration::from_secs(10)))
///     .address(|inst| inst.metadata.get("grpc").cloned())
///     .wait_for_instance(Duration::from_secs(1))
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
pub struct ChannelBuilder {
    registry: Registry,
    service: String,
    filter: ServiceFilter,
    configure: Configure,
    address: Address,
    wait: Duration,
}

impl ChannelBuilder {
    /// A channel over every non-critical instance of `service`, over
    /// plaintext HTTP/2 to each instance's first address.
    pub fn new(registry: Registry, service: impl Into<String>) -> ChannelBuilder {
        ChannelBuilder {
            registry,
            service: service.into(),
            filter: ServiceFilter::new(),
            configure: Arc::new(|ep| ep),
            address: Arc::new(|inst| inst.addrs.first().cloned()),
            wait: DEFAULT_WAIT_FOR_INSTANCE,
        }
    }

    /// Uses only the instances that pass `filter` (tags, metadata, health).
    pub fn filter(mut self, filter: ServiceFilter) -> ChannelBuilder {
        self.filter = filter;
        self
    }

    /// Applies `configure` to each instance's [`Endpoint`] (the template:
    /// timeouts, keepalive, concurrency limit, TLS if tonic has it).
    pub fn endpoint(
        mut self,
        configure: impl Fn(Endpoint) -> Endpoint + Send + Sync + 'static,
    ) -> ChannelBuilder {
        self.configure = Arc::new(configure);
        self
    }

    /// Chooses the address to dial for an instance (default: its first
    /// address); `host:port` gets `http://` in front, a URI is used as
    /// given. `None` leaves the instance out.
    pub fn address(
        mut self,
        address: impl Fn(&ServiceInstance) -> Option<String> + Send + Sync + 'static,
    ) -> ChannelBuilder {
        self.address = Arc::new(address);
        self
    }

    /// How long a call waits for a connected instance before failing with
    /// `UNAVAILABLE` (default [`DEFAULT_WAIT_FOR_INSTANCE`]).
    pub fn wait_for_instance(mut self, wait: Duration) -> ChannelBuilder {
        self.wait = wait;
        self
    }

    /// Subscribes (returning once the initial set is read) and starts
    /// connecting to the instances.
    pub async fn connect(self) -> Result<BalancedChannel> {
        let sub = self
            .registry
            .subscribe_with(&self.service, self.filter)
            .await?;
        let (ready, _) = watch::channel(0u64);
        let pool = Arc::new(Pool {
            service: self.service,
            members: StdMutex::new(BTreeMap::new()),
            next: AtomicUsize::new(0),
            ready,
            wait: self.wait,
        });
        let (stop, stopped) = oneshot::channel();
        let follower = Follower {
            pool: pool.clone(),
            configure: self.configure,
            address: self.address,
            client: self.registry.client().clone(),
        };
        tokio::spawn(follower.run(sub, stopped));
        Ok(BalancedChannel {
            pool,
            _stop: Arc::new(stop),
        })
    }
}

/// A tonic transport over a service's live instances: pass it to any
/// generated client (`FooClient::new(channel)`). Cheap to clone; the
/// subscription and connections end when the last clone is dropped.
#[derive(Clone)]
pub struct BalancedChannel {
    pool: Arc<Pool>,
    /// Dropped with the last clone, which stops the follower task.
    _stop: Arc<oneshot::Sender<()>>,
}

impl std::fmt::Debug for BalancedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalancedChannel")
            .field("service", &self.pool.service)
            .field("instances", &self.instances())
            .finish()
    }
}

/// One instance as the channel sees it ([`BalancedChannel::instances`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceState {
    /// The instance ID.
    pub id: String,
    /// The URI dialled.
    pub uri: String,
    /// Whether it is connected, so calls may go to it.
    pub connected: bool,
    /// Calls sent to it whose response headers have not arrived yet.
    pub in_flight: usize,
    /// Calls sent to it so far.
    pub calls: u64,
}

impl BalancedChannel {
    /// The instances in the balancer now, by ID.
    pub fn instances(&self) -> Vec<InstanceState> {
        self.pool
            .lock()
            .values()
            .map(|e| e.member.state())
            .collect()
    }

    /// The service balanced over.
    pub fn service(&self) -> &str {
        &self.pool.service
    }
}

impl Service<http::Request<Body>> for BalancedChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Response, BoxError>> + Send>>;

    /// Always ready: the instance is chosen, and waited for, per call.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let pool = self.pool.clone();
        Box::pin(async move {
            let (member, generation, channel) = pool.pick_or_wait().await?;
            let _in_flight = member.begin_call();
            let result = async {
                let mut channel = channel;
                channel.ready().await?;
                channel.call(req).await
            }
            .await;
            result.map_err(|e| {
                member.call_failed(generation, &e);
                e.into()
            })
        })
    }
}

struct Entry {
    member: Arc<Member>,
    /// The member's connection task; aborted when the entry goes.
    task: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Pool {
    service: String,
    /// By instance ID.
    members: StdMutex<BTreeMap<String, Entry>>,
    /// Round-robin start for ties.
    next: AtomicUsize,
    /// Bumped whenever an instance becomes connected.
    ready: watch::Sender<u64>,
    wait: Duration,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify_ready(&self) {
        self.ready.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The connected instance with the fewest calls in flight; ties go
    /// round-robin among the connected ones.
    fn pick(&self) -> Option<(Arc<Member>, u64, tonic::transport::Channel)> {
        let connected: Vec<_> = self
            .lock()
            .values()
            .filter_map(|e| e.member.channel().map(|(g, c)| (e.member.clone(), g, c)))
            .collect();
        if connected.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % connected.len();
        let n = connected.len();
        let best = (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| (connected[i].0.in_flight(), (i + n - start) % n))?;
        connected.into_iter().nth(best)
    }

    async fn pick_or_wait(
        &self,
    ) -> std::result::Result<(Arc<Member>, u64, tonic::transport::Channel), BoxError> {
        let mut ready = self.ready.subscribe();
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            // Marked seen before picking, so a connection made after the
            // pick wakes the wait below.
            ready.borrow_and_update();
            if let Some(picked) = self.pick() {
                return Ok(picked);
            }
            match tokio::time::timeout_at(deadline, ready.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => {
                    let msg = format!("no reachable instance of service {:?}", self.service);
                    return Err(Box::new(tonic::Status::unavailable(msg)));
                }
            }
        }
    }
}

/// Applies subscription events to the pool until the channel is dropped.
struct Follower {
    pool: Arc<Pool>,
    configure: Configure,
    address: Address,
    /// For the reconnect backoff policy.
    client: kv_client::Client,
}

impl Follower {
    async fn run(self, mut sub: Subscription, mut stopped: oneshot::Receiver<()>) {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                event = sub.next_event() => match event {
                    Some(event) => self.apply(event),
                    // Never happens: the subscription retries by itself.
                    None => break,
                },
            }
        }
        tracing::debug!(service = %self.pool.service, "balanced channel closed");
        // Dropping the entries aborts their connection tasks.
        self.pool.lock().clear();
    }

    fn apply(&self, event: ServiceEvent) {
        let inst = match event {
            ServiceEvent::Added(i) | ServiceEvent::Updated(i) => i,
            ServiceEvent::Removed(i) => {
                self.remove(&i.id, "deregistered");
                return;
            }
        };
        if inst.health == Health::Critical {
            self.remove(&inst.id, "critical");
            return;
        }
        let Some(endpoint) = self.endpoint(&inst) else {
            self.remove(&inst.id, "no usable address");
            return;
        };
        let uri = endpoint.uri().to_string();
        let mut members = self.pool.lock();
        if members.get(&inst.id).is_some_and(|e| e.member.uri() == uri) {
            // Health or metadata changed only: keep the connection.
            return;
        }
        tracing::info!(service = %self.pool.service, id = %inst.id, %uri, "instance added to the balancer");
        let member = Arc::new(Member::new(inst.id.clone(), uri));
        let task = tokio::spawn(conn::supervise(
            member.clone(),
            endpoint,
            Arc::downgrade(&self.pool),
            crate::util::backoff(&self.client),
        ));
        // Replacing an entry drops (and aborts) the old connection task;
        // calls in flight on it finish on their own channel clone.
        members.insert(inst.id, Entry { member, task });
    }

    fn remove(&self, id: &str, why: &str) {
        if self.pool.lock().remove(id).is_some() {
            tracing::info!(service = %self.pool.service, %id, why, "instance removed from the balancer");
        }
    }

    fn endpoint(&self, inst: &ServiceInstance) -> Option<Endpoint> {
        let addr = (self.address)(inst)?;
        let uri = if addr.contains("://") {
            addr
        } else {
            format!("http://{addr}")
        };
        match Endpoint::from_shared(uri) {
            Ok(ep) => Some((self.configure)(ep)),
            Err(e) => {
                tracing::warn!(service = %self.pool.service, id = %inst.id, %e, "unusable instance address");
                None
            }
        }
    }
}
