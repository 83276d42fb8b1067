//! Group commit for proposals: requests proposed concurrently ride in one raft
//! entry. openraft 0.9's core appends one entry at a time and waits for its
//! flush before taking the next, so without batching here every write would
//! pay for its own fsync.

use std::sync::Arc;
use std::time::Duration;

use kv_proto::kvpb::{InternalBatch, InternalRequest};
use prost::Message;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::apply::Applied;
use crate::error::{KvError, KvResult};
use crate::raft::types::Raft;
use crate::raft::RaftRequest;

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

struct Pending {
    req: InternalRequest,
    size: usize,
    tx: oneshot::Sender<KvResult<Applied>>,
    /// This request's share of [`MAX_QUEUED_BYTES`], held until it is applied.
    bytes: OwnedSemaphorePermit,
}

pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    bytes: Arc<Semaphore>,
}

impl Proposer {
    pub fn start(raft: Raft) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(MAX_QUEUED_REQUESTS);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_INFLIGHT));
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = rx.recv().await else { return };
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
                    if batch.len() < MAX_BATCH_REQUESTS && size < MAX_BATCH_BYTES {
                        next = rx.try_recv().ok();
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                let raft = raft.clone();
                tokio::spawn(async move {
                    submit(&raft, batch).await;
                    drop(permit);
                });
            }
        });
        Proposer {
            tx,
            bytes: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)),
        }
    }

    /// Proposes one request (already size-checked) and waits for its applied
    /// result. Without a quorum an entry never commits: after
    /// [`PROPOSE_TIMEOUT`] the caller gets etcd's "request timed out" (the
    /// entry may still commit later, as with etcd).
    pub async fn propose(&self, req: InternalRequest, size: usize) -> KvResult<Applied> {
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
        };
        self.tx.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => KvError::TooManyRequests,
            mpsc::error::TrySendError::Closed(_) => KvError::Stopped,
        })?;
        match tokio::time::timeout(PROPOSE_TIMEOUT, rx).await {
            Ok(r) => r.map_err(|_| KvError::Stopped)?,
            Err(_) => Err(KvError::Timeout),
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
            let e = super::leadership::write_error(e);
            for w in waiters {
                let _ = w.send(Err(e.clone()));
            }
        }
    }
}
