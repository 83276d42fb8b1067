//! Batched read barriers: one leadership check serves every read that arrived
//! before it started (etcd's linearizable read loop). On a follower the check
//! is the leader's read index, fetched over the peer API, then a local wait
//! until this member has applied that far.

use std::time::Duration;

use kv_proto::kvpb::ReadIndexRequest;
use tokio::sync::{mpsc, oneshot};

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

/// The leader's address as this member knows it.
pub fn leader_addr(raft: &Raft) -> Option<(NodeId, String)> {
    let rx = raft.metrics();
    let m = rx.borrow();
    let leader = m.current_leader?;
    let addr = m
        .membership_config
        .membership()
        .get_node(&leader)?
        .addr
        .clone();
    Some((leader, addr))
}

async fn read_point(raft: &Raft, net: &Network, me: NodeId) -> KvResult<()> {
    let Some((leader, addr)) = leader_addr(raft) else {
        return Err(KvError::NoLeader);
    };
    if leader == me {
        return match raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(openraft::error::RaftError::APIError(_)) => Err(KvError::NoLeader),
            Err(openraft::error::RaftError::Fatal(_)) => Err(KvError::Stopped),
        };
    }
    let mut client = net.client(leader, &addr).map_err(|_| KvError::NoLeader)?;
    let resp = tokio::time::timeout(READ_TIMEOUT, client.read_index(ReadIndexRequest {}))
        .await
        .map_err(|_| KvError::Timeout)?
        .map_err(|_| KvError::NoLeader)?
        .into_inner();
    if let Some(e) = resp.error {
        return Err(from_peer_error(&e));
    }
    raft.wait(Some(READ_TIMEOUT))
        .applied_index_at_least(Some(resp.index), "read index")
        .await
        .map(|_| ())
        .map_err(|_| KvError::Timeout)
}

impl ReadIndex {
    pub fn start(raft: Raft, net: Network, me: NodeId) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while let Ok(w) = rx.try_recv() {
                    batch.push(w);
                }
                let result = read_point(&raft, &net, me).await;
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
