//! Batched read barriers: one leadership check serves every read that arrived
//! before it started (etcd's linearizable read loop). On a follower the check
//! is the leader's read index, fetched over the peer API, then a local wait
//! until this member has applied that far.

use std::time::Duration;

use kv_proto::kvpb::ReadIndexRequest;
use tokio::sync::{mpsc, oneshot};

use super::leadership::{route_of, Route};
use super::peer::from_peer_error;
use crate::error::{KvError, KvResult};
use crate::raft::network::Network;
use crate::raft::types::Raft;
use crate::raft::NodeId;

/// How long a read waits for the leader's answer and for local apply.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

type Waiter = oneshot::Sender<KvResult<()>>;

pub struct ReadIndex {
    tx: mpsc::UnboundedSender<Waiter>,
}

/// The index a read on this leader must wait for: openraft's read index,
/// and at least `watermark` (the log this member had when it restarted as
/// leader).
pub async fn leader_read_index(raft: &Raft, watermark: u64) -> KvResult<u64> {
    match raft.get_read_log_id().await {
        Ok((read, _)) => Ok(read.map(|l| l.index).unwrap_or(0).max(watermark)),
        Err(openraft::error::RaftError::APIError(_)) => Err(KvError::NoLeader),
        Err(openraft::error::RaftError::Fatal(_)) => Err(KvError::Stopped),
    }
}

async fn wait_applied(raft: &Raft, index: u64) -> KvResult<()> {
    raft.wait(Some(READ_TIMEOUT))
        .applied_index_at_least(Some(index), "read index")
        .await
        .map(|_| ())
        .map_err(|_| KvError::Timeout)
}

async fn read_point(raft: &Raft, net: &Network, me: NodeId, watermark: u64) -> KvResult<()> {
    let (leader, addr) = match route_of(raft, me)? {
        Route::Leader { id, peer_addr } => (id, peer_addr),
        Route::Local => {
            // Without a quorum the leadership check never completes: etcd answers
            // "request timed out" then, and so do we.
            let index = tokio::time::timeout(READ_TIMEOUT, leader_read_index(raft, watermark))
                .await
                .map_err(|_| KvError::Timeout)??;
            return wait_applied(raft, index).await;
        }
    };
    let mut client = net.client(leader, &addr).map_err(|_| KvError::NoLeader)?;
    let resp = tokio::time::timeout(READ_TIMEOUT, client.read_index(ReadIndexRequest {}))
        .await
        .map_err(|_| KvError::Timeout)?
        .map_err(|_| KvError::NoLeader)?
        .into_inner();
    if let Some(e) = resp.error {
        return Err(from_peer_error(&e));
    }
    wait_applied(raft, resp.index).await
}

impl ReadIndex {
    pub fn start(raft: Raft, net: Network, me: NodeId, watermark: u64) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while let Ok(w) = rx.try_recv() {
                    batch.push(w);
                }
                let result = read_point(&raft, &net, me, watermark).await;
                crate::metrics::read_index(&result);
                for w in batch {
                    let _ = w.send(result.clone());
                }
            }
        });
        ReadIndex { tx }
    }

    /// Resolves once a read started now would be linearizable.
    pub async fn wait(&self) -> KvResult<()> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| KvError::Stopped)?;
        rx.await.map_err(|_| KvError::Stopped)?
    }
}
