//! The live set of a service's instances, fed by a watch.
//!
//! [`Subscription::start`] reads the prefix at some revision R and watches
//! from R + 1, so no change is missed or seen twice. The client's watch
//! resumes by itself after member failures; if the history it needs was
//! compacted meanwhile, the subscription reads a fresh snapshot and reports
//! the difference to what it held as ordinary events.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll, Waker};

use futures::{Stream, StreamExt};
use kv_client::{Client, EventType, GetOptions, KeyValue, WatchOptions, WatchStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tower::discover::Change;

use crate::{Error, Health, Result, ServiceFilter, ServiceInstance};

/// A change to the set of instances.
///
/// ```
/// # fn f(e: kv_discovery::ServiceEvent) {
/// use kv_discovery::ServiceEvent;
/// match e {
///     ServiceEvent::Added(i) | ServiceEvent::Updated(i) => println!("up: {}", i.id),
///     ServiceEvent::Removed(i) => println!("gone: {}", i.id),
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceEvent {
    /// A new instance (the initial snapshot is reported as `Added` too).
    Added(ServiceInstance),
    /// An instance's entry changed (health, metadata, ...).
    Updated(ServiceInstance),
    /// An instance is gone (deregistered, or its lease ended); the last
    /// known entry.
    Removed(ServiceInstance),
}

#[derive(Default)]
struct State {
    /// Instances by key.
    set: BTreeMap<Vec<u8>, ServiceInstance>,
    /// The revision the set is at.
    revision: i64,
    /// Events not yet read; `None` until the stream is first polled (so a
    /// subscription used only through `current()` queues nothing).
    queue: Option<VecDeque<ServiceEvent>>,
    waker: Option<Waker>,
}

struct Shared {
    state: StdMutex<State>,
    changed: Notify,
    /// Entries it rejects count as absent.
    filter: ServiceFilter,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The live set of a service's instances ([`current`](Subscription::current)),
/// and a [`Stream`] of [`ServiceEvent`]s: first the instances present when
/// the stream is first polled (as `Added`), then each change. Dropping it
/// stops the watch.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
/// use futures::StreamExt;
/// let mut sub = kv_discovery::Registry::new(client).subscribe("api").await?;
/// println!("now: {:?}", sub.current().iter().map(|i| &i.id).collect::<Vec<_>>());
/// while let Some(event) = sub.next().await {
///     println!("{event:?}");
/// }
/// # Ok(())
/// # }
/// ```
pub struct Subscription {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Subscribes to every instance under `prefix` (see
    /// [`Registry::subscribe`](crate::Registry::subscribe)). Returns once
    /// the initial snapshot is read and the watch is running.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
    /// let sub = kv_discovery::Subscription::start(client, "kv/services/api/".into()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(client: Client, prefix: String) -> Result<Subscription> {
        Subscription::start_filtered(client, prefix, ServiceFilter::new()).await
    }

    /// Subscribes to the instances under `prefix` that pass `filter` (see
    /// [`Registry::subscribe_with`](crate::Registry::subscribe_with)): an
    /// instance that stops passing is reported `Removed`, one that starts
    /// passing `Added`.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
    /// use kv_discovery::{HealthFilter, ServiceFilter, Subscription};
    /// let filter = ServiceFilter::new().with_tag("v2").with_health(HealthFilter::Passing);
    /// let sub = Subscription::start_filtered(client, "kv/services/web/".into(), filter).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start_filtered(
        client: Client,
        prefix: String,
        filter: ServiceFilter,
    ) -> Result<Subscription> {
        let shared = Arc::new(Shared {
            state: StdMutex::new(State::default()),
            changed: Notify::new(),
            filter,
        });
        let watch = snapshot(&client, &prefix, &shared).await?;
        let task = tokio::spawn(follow(client, prefix, shared.clone(), watch));
        Ok(Subscription { shared, task })
    }

    /// The instances live now, by ID order of their keys.
    ///
    /// ```no_run
    /// # fn f(sub: kv_discovery::Subscription) {
    /// for inst in sub.current() {
    ///     println!("{} {:?} {}", inst.id, inst.addrs, inst.health);
    /// }
    /// # }
    /// ```
    pub fn current(&self) -> Vec<ServiceInstance> {
        self.shared.lock().set.values().cloned().collect()
    }

    /// The next event (the same as `StreamExt::next`, without needing the
    /// trait). Never `None`: the subscription retries failures itself.
    ///
    /// ```no_run
    /// # async fn demo(mut sub: kv_discovery::Subscription) {
    /// while let Some(e) = sub.next_event().await {
    ///     println!("{e:?}");
    /// }
    /// # }
    /// ```
    pub async fn next_event(&mut self) -> Option<ServiceEvent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The store revision [`current`](Self::current) reflects.
    pub fn revision(&self) -> i64 {
        self.shared.lock().revision
    }

    /// Waits until the set changes (or its revision moves).
    ///
    /// ```no_run
    /// # async fn demo(sub: kv_discovery::Subscription) {
    /// sub.changed().await;
    /// println!("{} instances", sub.current().len());
    /// # }
    /// ```
    pub async fn changed(&self) {
        self.shared.changed.notified().await
    }

    /// The subscription as a [`tower::discover::Discover`] of the instances
    /// that are not [`Health::Critical`], keyed by instance ID, each turned
    /// into a service by `make`. A critical instance is removed from the
    /// balancer and inserted again when it recovers; an updated one is
    /// re-inserted (replacing the old service).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
    /// use tower::discover::Discover;
    /// let sub = kv_discovery::Registry::new(client).subscribe("api").await?;
    /// let discover = sub.into_discover(|inst| inst.addrs.first().cloned().unwrap_or_default());
    /// fn is_discover<D: Discover>(_: &D) {}
    /// is_discover(&discover);
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_discover<S, F>(self, make: F) -> ServiceDiscover<F>
    where
        F: FnMut(&ServiceInstance) -> S,
    {
        ServiceDiscover {
            sub: self,
            make,
            live: HashSet::new(),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for Subscription {
    type Item = ServiceEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ServiceEvent>> {
        let mut st = self.shared.lock();
        let st = &mut *st;
        let queue = st
            .queue
            .get_or_insert_with(|| st.set.values().cloned().map(ServiceEvent::Added).collect());
        match queue.pop_front() {
            Some(e) => Poll::Ready(Some(e)),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// A [`Subscription`] as a [`tower::discover::Discover`]: a stream of
/// `Result<Change<String, S>, Error>` (see [`Subscription::into_discover`]).
/// It never yields an error: failures are retried inside the subscription.
pub struct ServiceDiscover<F> {
    sub: Subscription,
    make: F,
    /// IDs currently inserted in the balancer.
    live: HashSet<String>,
}

impl<F> ServiceDiscover<F> {
    /// The underlying subscription (for [`Subscription::current`]).
    pub fn subscription(&self) -> &Subscription {
        &self.sub
    }
}

impl<S, F> Stream for ServiceDiscover<F>
where
    F: FnMut(&ServiceInstance) -> S + Unpin,
{
    type Item = std::result::Result<Change<String, S>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let event = match this.sub.poll_next_unpin(cx) {
                Poll::Ready(Some(e)) => e,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            let (inst, up) = match event {
                ServiceEvent::Added(i) | ServiceEvent::Updated(i) => {
                    let up = i.health != Health::Critical;
                    (i, up)
                }
                ServiceEvent::Removed(i) => (i, false),
            };
            if up {
                this.live.insert(inst.id.clone());
                let svc = (this.make)(&inst);
                return Poll::Ready(Some(Ok(Change::Insert(inst.id, svc))));
            }
            if this.live.remove(&inst.id) {
                return Poll::Ready(Some(Ok(Change::Remove(inst.id))));
            }
        }
    }
}

/// Decodes a stored instance; `None` (with a warning) if it is not one.
pub(crate) fn decode(kv: &KeyValue) -> Option<ServiceInstance> {
    match serde_json::from_slice(&kv.value) {
        Ok(inst) => Some(inst),
        Err(e) => {
            let key = String::from_utf8_lossy(&kv.key);
            tracing::warn!(%key, %e, "ignoring a malformed service entry");
            None
        }
    }
}

/// Reads the prefix, replaces the set with it (queueing the difference as
/// events) and starts watching from the revision after the read.
async fn snapshot(client: &Client, prefix: &str, shared: &Shared) -> Result<WatchStream> {
    let resp = client.get(prefix, GetOptions::new().with_prefix()).await?;
    let rev = resp.revision();
    let watch = client
        .watch(
            prefix,
            WatchOptions::new()
                .with_prefix()
                .with_start_revision(rev + 1),
        )
        .await?;
    let fresh: BTreeMap<Vec<u8>, ServiceInstance> = resp
        .kvs()
        .iter()
        .filter_map(|kv| decode(kv).map(|i| (kv.key.clone(), i)))
        .filter(|(_, i)| shared.filter.matches(i))
        .collect();
    let mut st = shared.lock();
    let old = std::mem::take(&mut st.set);
    for (key, inst) in &old {
        if !fresh.contains_key(key) {
            push(&mut st, ServiceEvent::Removed(inst.clone()));
        }
    }
    for (key, inst) in &fresh {
        match old.get(key) {
            None => push(&mut st, ServiceEvent::Added(inst.clone())),
            Some(prev) if prev != inst => push(&mut st, ServiceEvent::Updated(inst.clone())),
            Some(_) => {}
        }
    }
    st.set = fresh;
    st.revision = rev;
    wake(&mut st);
    drop(st);
    shared.changed.notify_waiters();
    Ok(watch)
}

fn push(st: &mut State, event: ServiceEvent) {
    if let Some(q) = st.queue.as_mut() {
        q.push_back(event);
    }
}

fn wake(st: &mut State) {
    if let Some(w) = st.waker.take() {
        w.wake();
    }
}

/// Applies watch events until the watch fails, then re-snapshots (with
/// backoff) and goes on. Runs until the subscription is dropped.
async fn follow(client: Client, prefix: String, shared: Arc<Shared>, mut watch: WatchStream) {
    let mut backoff = crate::util::backoff(&client);
    loop {
        while let Some(batch) = watch.next().await {
            match batch {
                Ok(batch) => {
                    backoff.reset();
                    apply(&shared, batch.revision(), batch.events());
                }
                Err(e) => {
                    // Compacted (after a long disconnect) or canceled: the
                    // events in between are gone; a snapshot replaces them.
                    tracing::info!(%prefix, %e, "subscription watch ended; re-reading the set");
                    break;
                }
            }
        }
        loop {
            match snapshot(&client, &prefix, &shared).await {
                Ok(w) => {
                    watch = w;
                    break;
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::debug!(%prefix, %e, ?wait, "subscription snapshot failed");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

fn apply(shared: &Shared, revision: i64, events: &[kv_client::Event]) {
    let mut st = shared.lock();
    for event in events {
        let Some(kv) = event.kv.as_ref() else {
            continue;
        };
        match event.r#type() {
            EventType::Put => {
                let Some(inst) = decode(kv).filter(|i| shared.filter.matches(i)) else {
                    // A malformed or filtered-out entry counts as absent.
                    if let Some(old) = st.set.remove(&kv.key) {
                        push(&mut st, ServiceEvent::Removed(old));
                    }
                    continue;
                };
                match st.set.insert(kv.key.clone(), inst.clone()) {
                    None => push(&mut st, ServiceEvent::Added(inst)),
                    Some(old) if old != inst => push(&mut st, ServiceEvent::Updated(inst)),
                    Some(_) => {}
                }
            }
            EventType::Delete => {
                if let Some(old) = st.set.remove(&kv.key) {
                    push(&mut st, ServiceEvent::Removed(old));
                }
            }
        }
    }
    st.revision = st.revision.max(revision);
    wake(&mut st);
    drop(st);
    shared.changed.notify_waiters();
}
