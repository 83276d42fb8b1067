//! The one batcher for proposals, local and forwarded. Every request this
//! member proposes waits in one bounded queue; concurrent requests leave it
//! together, routed when they leave (node/leadership.rs): on the leader
//! they ride in one raft entry (group commit: openraft 0.9's core appends
//! one entry at a time and waits for its flush before taking the next, so
//! without batching every write would pay for its own fsync); on a follower
//! they ride to the leader in one `ProposeBatch` call (forward.rs), whose
//! requests then enter the leader's queue like its own clients' requests.
//!
//! A lone request skips the queue: on the leader, with no entry in flight
//! and nothing queued, the caller's own task proposes it. Queueing it would
//! cost two task hand-offs (batcher, submit task) for no batching gain; the
//! sequential single-client put is bound by exactly these hops.
//!
//! Either way the callers hear their results from the applier itself
//! (apply/replies.rs): they are registered before their entry is proposed
//! and answered right after the commit that applied it, not through
//! RaftCore's reply (and the submit task's relay). openraft's reply still
//! answers errors, and frees the entry's slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kv_proto::kvpb::InternalRequest;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::forward;
use super::leadership::{route_of, Route};
use crate::apply::replies::{self, Replies, Tag, Waiter};
use crate::apply::Applied;
use crate::error::{KvError, KvResult};
use crate::raft::network::Network;
use crate::raft::types::Raft;
use crate::raft::{NodeId, RaftRequest};

/// Most requests in one entry.
const MAX_BATCH_REQUESTS: usize = 1024;
/// Stop adding requests to an entry once it holds this many bytes.
pub(super) const MAX_BATCH_BYTES: usize = 2 << 20;
/// How long a proposer waits for its entry to be applied (etcd: 5 s plus
/// two election timeouts by default).
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(7);
/// Entries submitted to raft and not yet applied: two lets the next append
/// run while the previous entry is applied.
const MAX_INFLIGHT: usize = 2;
/// Most requests waiting for an entry. Clients can queue faster than raft
/// commits; past this they get etcd's "too many requests" instead of the
/// queue (and kvd's memory) growing without bound.
pub const MAX_QUEUED_REQUESTS: usize = 8 * MAX_BATCH_REQUESTS;
/// Most request bytes waiting for an entry or in flight in one.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

pub(super) struct Pending {
    pub(super) req: InternalRequest,
    pub(super) size: usize,
    pub(super) tx: Waiter,
    /// This request's share of [`MAX_QUEUED_BYTES`], held until it is applied.
    pub(super) bytes: OwnedSemaphorePermit,
    /// Whether a follower may hand it to the leader: not a request another
    /// member forwarded here (it is never forwarded twice).
    pub(super) may_forward: bool,
}

pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    bytes: Arc<Semaphore>,
    raft: Raft,
    me: NodeId,
    /// Entries in flight on the leader, shared by the batcher and the
    /// direct path so both stay within [`MAX_INFLIGHT`].
    local_slots: Arc<Semaphore>,
    /// Where callers wait for the applier (shared with it).
    replies: Arc<Replies>,
}

impl Proposer {
    /// Starts the batcher of member `me`; its callers are answered through
    /// `replies`, the applier's.
    pub fn start(raft: Raft, net: Network, me: NodeId, replies: Arc<Replies>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(MAX_QUEUED_REQUESTS);
        let local_slots = Arc::new(Semaphore::new(MAX_INFLIGHT));
        replies.bind(me);
        let proposer = Proposer {
            tx,
            bytes: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)),
            raft: raft.clone(),
            me,
            local_slots: local_slots.clone(),
            replies: replies.clone(),
        };
        tokio::spawn(async move {
            let forward_slots = Arc::new(Semaphore::new(forward::MAX_INFLIGHT));
            loop {
                let Some(first) = rx.recv().await else { return };
                let slots = match route_of(&raft, me) {
                    Ok(Route::Leader { .. }) => &forward_slots,
                    _ => &local_slots,
                };
                // Requests queue (and batch up) while the calls in flight run.
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                // Routed as it leaves the queue: the leader may have changed
                // while it waited.
                let route = route_of(&raft, me);
                let max_requests = match route {
                    Ok(Route::Leader { .. }) => forward::MAX_BATCH_REQUESTS,
                    _ => MAX_BATCH_REQUESTS,
                };
                let mut size = 0;
                let mut batch = Vec::new();
                let mut next = Some(first);
                while let Some(p) = next.take() {
                    // A caller that gave up (timed out, went away) was never
                    // told its write happened: drop it rather than propose it.
                    if !p.tx.is_closed() {
                        size += p.size;
                        batch.push(p);
                    }
                    if batch.len() < max_requests && size < MAX_BATCH_BYTES {
                        next = rx.try_recv().ok();
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                match route {
                    Ok(Route::Local) => {
                        let raft = raft.clone();
                        let replies = replies.clone();
                        tokio::spawn(async move {
                            submit(&raft, &replies, batch).await;
                            drop(permit);
                        });
                    }
                    Ok(Route::Leader { id, peer_addr }) => {
                        // A forwarded request reached a member that no longer
                        // leads: the follower that sent it learns "no leader".
                        let (batch, refused): (Vec<_>, Vec<_>) =
                            batch.into_iter().partition(|p| p.may_forward);
                        for p in refused {
                            let _ = p.tx.send(Err(KvError::NoLeader));
                        }
                        if batch.is_empty() {
                            continue;
                        }
                        crate::metrics::forwarded(batch.len());
                        let net = net.clone();
                        tokio::spawn(async move {
                            forward::send(&net, (id, peer_addr), batch).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        for p in batch {
                            let _ = p.tx.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        proposer
    }

    /// Proposes one request (already size-checked) and waits for its applied
    /// result: on the leader through raft, from a follower through the
    /// leader (unless `may_forward` is false: then only a leader proposes
    /// it). Without a quorum an entry never commits: after
    /// [`PROPOSE_TIMEOUT`] the caller gets etcd's "request timed out" (the
    /// entry may still commit later, as with etcd).
    pub async fn propose(
        &self,
        req: InternalRequest,
        size: usize,
        may_forward: bool,
    ) -> KvResult<Applied> {
        let _pending = crate::metrics::proposal();
        let (tx, rx) = oneshot::channel();
        // A request larger than the whole budget still gets in, alone.
        let share = size.clamp(1, MAX_QUEUED_BYTES) as u32;
        let bytes = match self.bytes.clone().try_acquire_many_owned(share) {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => return Err(KvError::TooManyRequests),
            Err(TryAcquireError::Closed) => return Err(KvError::Stopped),
        };
        if let Some(slot) = self.direct_slot() {
            return self.propose_direct(req, slot, bytes).await;
        }
        let pending = Pending {
            req,
            size,
            tx,
            bytes,
            may_forward,
        };
        self.tx.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => KvError::TooManyRequests,
            mpsc::error::TrySendError::Closed(_) => KvError::Stopped,
        })?;
        match tokio::time::timeout(PROPOSE_TIMEOUT, rx).await {
            Ok(r) => r.map_err(|_| KvError::Stopped)?,
            Err(_) => {
                crate::metrics::proposals_failed(1);
                Err(KvError::Timeout)
            }
        }
    }
}

/// One entry's raft write, still running: if the caller stops waiting (the
/// applier answered it, its timeout, or its client going away drops it),
/// the write finishes in a task of its own, holding its entry slot and byte
/// share until openraft answers, so entries in flight stay bounded by
/// [`MAX_INFLIGHT`] as on the batcher's path.
struct DirectWrite {
    write: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    held: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

impl Drop for DirectWrite {
    fn drop(&mut self) {
        if let (Some(mut write), Some(held)) = (self.write.take(), self.held.take()) {
            // openraft may have answered already: then no task is needed.
            if write.as_mut().now_or_never().is_some() {
                return;
            }
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    write.await;
                    drop(held);
                });
            }
        }
    }
}

impl Proposer {
    /// An entry slot for the direct path: only on the leader, only when
    /// nothing is queued (it would be overtaken) and no entry is in flight.
    /// Under load an entry is nearly always in flight, so requests keep
    /// batching: a one-request entry would take one of the few slots.
    fn direct_slot(&self) -> Option<OwnedSemaphorePermit> {
        if self.tx.capacity() != self.tx.max_capacity()
            || self.local_slots.available_permits() != MAX_INFLIGHT
        {
            return None;
        }
        if !matches!(route_of(&self.raft, self.me), Ok(Route::Local)) {
            return None;
        }
        self.local_slots.clone().try_acquire_owned().ok()
    }

    /// Proposes `req` as an entry of its own from the caller's task.
    async fn propose_direct(
        &self,
        req: InternalRequest,
        slot: OwnedSemaphorePermit,
        bytes: OwnedSemaphorePermit,
    ) -> KvResult<Applied> {
        let (tx, mut rx) = oneshot::channel();
        let (raft, replies) = (self.raft.clone(), self.replies.clone());
        let mut inflight = DirectWrite {
            write: Some(Box::pin(async move {
                answer_entry(&raft, &replies, vec![req], vec![tx]).await;
            })),
            held: Some((slot, bytes)),
        };
        let run = async {
            if let Some(write) = inflight.write.as_mut() {
                tokio::select! {
                    biased;
                    // The applier answered: openraft's reply is awaited
                    // by DirectWrite's drop, off the caller's path.
                    r = &mut rx => return r,
                    () = write => {}
                }
            }
            // openraft answered (an error, or a result the applier did not
            // send): the slot and bytes free now.
            inflight.write = None;
            inflight.held = None;
            rx.await
        };
        match tokio::time::timeout(PROPOSE_TIMEOUT, run).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(KvError::Stopped),
            Err(_) => {
                crate::metrics::proposals_failed(1);
                Err(KvError::Timeout)
            }
        }
    }
}

/// Proposes `requests` as one raft entry tagged `tag` and returns what
/// openraft's reply carries: the applied results, one per request in
/// order, or none when the applier answered the callers itself.
async fn write_entry(
    raft: &Raft,
    tag: Option<Tag>,
    requests: Vec<InternalRequest>,
) -> KvResult<Vec<KvResult<Applied>>> {
    let n = requests.len();
    crate::metrics::batch(n);
    let bytes = replies::encode_entry(tag, &requests);
    match raft.client_write(RaftRequest { bytes }).await {
        Ok(resp) => Ok(resp.data.0),
        Err(e) => {
            crate::metrics::proposals_failed(n);
            Err(super::leadership::write_error(e))
        }
    }
}

/// Proposes `requests` as one raft entry; `waiters[i]` gets request i's
/// result. They are registered first, so the applier answers them once the
/// entry is applied; whoever it did not answer (openraft's error, or a
/// full registry) is answered here from openraft's reply. Returns when
/// openraft has answered.
async fn answer_entry(
    raft: &Raft,
    replies: &Arc<Replies>,
    requests: Vec<InternalRequest>,
    waiters: Vec<Waiter>,
) {
    let (mut registration, mut left) = match replies.register(waiters) {
        Ok(r) => (Some(r), Vec::new()),
        Err(waiters) => (None, waiters),
    };
    let tag = registration.as_ref().map(|r| r.tag());
    let result = write_entry(raft, tag, requests).await;
    if let Some(waiters) = registration.as_mut().and_then(|r| r.take()) {
        left = waiters;
    }
    match result {
        Ok(results) => replies::send(left, results),
        Err(e) => {
            for w in left {
                let _ = w.send(Err(e.clone()));
            }
        }
    }
}

async fn submit(raft: &Raft, replies: &Arc<Replies>, batch: Vec<Pending>) {
    // The byte permits are released when `_permits` drops: after openraft
    // answered (the entry is applied, or has failed).
    let mut waiters = Vec::with_capacity(batch.len());
    let mut requests = Vec::with_capacity(batch.len());
    let mut _permits = Vec::with_capacity(batch.len());
    for p in batch {
        requests.push(p.req);
        waiters.push(p.tx);
        _permits.push(p.bytes);
    }
    answer_entry(raft, replies, requests, waiters).await;
}
