//! The one batcher for proposals, local and forwarded. Every request this
//! member proposes waits in one bounded queue; concurrent requests leave it
//! together, routed when they leave (node/leadership.rs): on the leader
//! they ride in one raft entry (group commit: openraft 0.9's core appends
//! one entry at a time and waits for its flush before taking the next, so
//! without batching every write would pay for its own fsync); on a follower
//! they ride to the leader in one `ProposeBatch` call (forward.rs), whose
//! requests then enter the leader's queue like its own clients' requests.

use std::sync::Arc;
use std::time::Duration;

use kv_proto::kvpb::{InternalBatch, InternalRequest};
use prost::Message;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::forward;
use super::leadership::{route_of, Route};
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
    pub(super) tx: oneshot::Sender<KvResult<Applied>>,
    /// This request's share of [`MAX_QUEUED_BYTES`], held until it is applied.
    pub(super) bytes: OwnedSemaphorePermit,
    /// Whether a follower may hand it to the leader: not a request another
    /// member forwarded here (it is never forwarded twice).
    pub(super) may_forward: bool,
}

pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    bytes: Arc<Semaphore>,
}

impl Proposer {
    /// Starts the batcher of member `me`.
    pub fn start(raft: Raft, net: Network, me: NodeId) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(MAX_QUEUED_REQUESTS);
        tokio::spawn(async move {
            let local_slots = Arc::new(Semaphore::new(MAX_INFLIGHT));
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
                        tokio::spawn(async move {
                            submit(&raft, batch).await;
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
        Proposer {
            tx,
            bytes: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)),
        }
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

async fn submit(raft: &Raft, batch: Vec<Pending>) {
    // The byte permits are released when `_permits` drops: after the entry
    // is applied (or has failed).
    let mut waiters = Vec::with_capacity(batch.len());
    let mut requests = Vec::with_capacity(batch.len());
    let mut _permits = Vec::with_capacity(batch.len());
    for p in batch {
        requests.push(p.req);
        waiters.push(p.tx);
        _permits.push(p.bytes);
    }
    crate::metrics::batch(requests.len());
    let bytes = InternalBatch { requests }.encode_to_vec();
    match raft.client_write(RaftRequest { bytes }).await {
        Ok(resp) => {
            let results = resp.data.0;
            if results.len() != waiters.len() {
                let e = KvError::Internal(format!(
                    "{} results for {} requests",
                    results.len(),
                    waiters.len()
                ));
                for w in waiters {
                    let _ = w.send(Err(e.clone()));
                }
                return;
            }
            for (w, r) in waiters.into_iter().zip(results) {
                let _ = w.send(r);
            }
        }
        Err(e) => {
            crate::metrics::proposals_failed(waiters.len());
            let e = super::leadership::write_error(e);
            for w in waiters {
                let _ = w.send(Err(e.clone()));
            }
        }
    }
}
