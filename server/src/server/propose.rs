//! Group commit for proposals: requests proposed concurrently ride in one raft
//! entry. openraft 0.9's core appends one entry at a time and waits for its
//! flush before taking the next, so without batching here every write would
//! pay for its own fsync.

use std::sync::Arc;
use std::time::Duration;

use kv_proto::kvpb::{InternalBatch, InternalRequest};
use openraft::error::{ClientWriteError, RaftError};
use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::apply::Applied;
use crate::error::{KvError, KvResult};
use crate::raft::types::Raft;
use crate::raft::RaftRequest;

/// Most requests in one entry.
const MAX_BATCH_REQUESTS: usize = 1024;
/// Stop adding requests to an entry once it holds this many bytes.
const MAX_BATCH_BYTES: usize = 2 << 20;
/// How long a proposer waits for its entry to be applied (etcd: 5 s plus
/// two election timeouts by default).
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(7);
/// Entries submitted to raft and not yet applied: two lets the next append
/// run while the previous entry is applied.
const MAX_INFLIGHT: usize = 2;

struct Pending {
    req: InternalRequest,
    size: usize,
    tx: oneshot::Sender<KvResult<Applied>>,
}

pub struct Proposer {
    tx: mpsc::UnboundedSender<Pending>,
}

fn map_raft_error(e: RaftError<u64, ClientWriteError<u64, openraft::BasicNode>>) -> KvError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => KvError::NoLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            KvError::Internal(e.to_string())
        }
        RaftError::Fatal(_) => KvError::Stopped,
    }
}

impl Proposer {
    pub fn start(raft: Raft) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_INFLIGHT));
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = rx.recv().await else { return };
                let mut size = first.size;
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH_REQUESTS && size < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(p) => {
                            size += p.size;
                            batch.push(p);
                        }
                        Err(_) => break,
                    }
                }
                let raft = raft.clone();
                tokio::spawn(async move {
                    submit(&raft, batch).await;
                    drop(permit);
                });
            }
        });
        Proposer { tx }
    }

    /// Proposes one request (already size-checked) and waits for its applied
    /// result. Without a quorum an entry never commits: after
    /// [`PROPOSE_TIMEOUT`] the caller gets etcd's "request timed out" (the
    /// entry may still commit later, as with etcd).
    pub async fn propose(&self, req: InternalRequest, size: usize) -> KvResult<Applied> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Pending { req, size, tx })
            .map_err(|_| KvError::Stopped)?;
        match tokio::time::timeout(PROPOSE_TIMEOUT, rx).await {
            Ok(r) => r.map_err(|_| KvError::Stopped)?,
            Err(_) => Err(KvError::Timeout),
        }
    }
}

async fn submit(raft: &Raft, batch: Vec<Pending>) {
    let (requests, waiters): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.req, p.tx)).unzip();
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
            let e = map_raft_error(e);
            for w in waiters {
                let _ = w.send(Err(e.clone()));
            }
        }
    }
}
