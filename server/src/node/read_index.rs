//! Batched read barriers: one leadership check serves every read that arrived
//! before it started (etcd's linearizable read loop).
//!
//! Two loops per member. The leader's check ([`LeaderChecks`]) asks raft to
//! confirm its leadership (a heartbeat round to a quorum) once for all that
//! waits when it starts: this member's reads and the followers' ReadIndex
//! calls, as etcd's readIndex loop answers every pending request from one
//! round. The read loop ([`ReadIndex`]) gets the index for this member's
//! reads, from that check while it leads or from the leader over the peer
//! API while it follows, and leaves the wait for local apply to the batch
//! itself, so the next batch's call does not wait behind it. The leader's
//! check never waits for a peer call: two members that each take the other
//! for the leader cannot hold each other's reads up.

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

type ReadWaiter = oneshot::Sender<KvResult<()>>;

/// Who waits for a leadership check: a read on this member, or a
/// follower's ReadIndex call (told apart only for the debug log).
enum Asker {
    Local(oneshot::Sender<KvResult<u64>>),
    Peer(oneshot::Sender<KvResult<u64>>),
}

pub struct ReadIndex {
    reads: mpsc::UnboundedSender<ReadWaiter>,
    checks: LeaderChecks,
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

fn applied_index(m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>) -> u64 {
    m.last_applied.map(|l| l.index).unwrap_or(0)
}

/// Waits until this member applied `index`. Reads the applied index from
/// raft's metrics in place: openraft's `Wait` clones the whole metrics on
/// every look.
async fn wait_applied(raft: &Raft, index: u64) -> KvResult<()> {
    let mut rx = raft.metrics();
    let reached = async move {
        loop {
            if applied_index(&rx.borrow_and_update()) >= index {
                return Ok(());
            }
            // The sender goes away only when raft stopped.
            rx.changed().await.map_err(|_| KvError::Stopped)?;
        }
    };
    tokio::time::timeout(READ_TIMEOUT, reached)
        .await
        .map_err(|_| KvError::Timeout)?
}

/// This member's batched leadership checks.
#[derive(Clone)]
struct LeaderChecks {
    tx: mpsc::UnboundedSender<Asker>,
}

impl LeaderChecks {
    fn start(raft: Raft, watermark: u64) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Asker>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while let Ok(a) = rx.try_recv() {
                    batch.push(a);
                }
                // Without a quorum the check never completes: etcd answers
                // "request timed out" then, and so do we.
                let index = tokio::time::timeout(READ_TIMEOUT, leader_read_index(&raft, watermark))
                    .await
                    .unwrap_or(Err(KvError::Timeout));
                let peers = batch.iter().filter(|a| matches!(a, Asker::Peer(_))).count();
                tracing::debug!(
                    askers = batch.len(),
                    peers,
                    ok = index.is_ok(),
                    "read index: leadership check"
                );
                for a in batch.drain(..) {
                    let (Asker::Local(w) | Asker::Peer(w)) = a;
                    let _ = w.send(index.clone());
                }
            }
        });
        LeaderChecks { tx }
    }

    /// The read index from a leadership check that starts after this call.
    async fn index(&self, asker: fn(oneshot::Sender<KvResult<u64>>) -> Asker) -> KvResult<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(asker(tx)).map_err(|_| KvError::Stopped)?;
        rx.await.map_err(|_| KvError::Stopped)?
    }
}

/// The index this member's reads must wait for: from this member's check
/// while it leads, else from the leader.
async fn read_index(
    raft: &Raft,
    net: &Network,
    me: NodeId,
    checks: &LeaderChecks,
) -> KvResult<u64> {
    let (leader, addr) = match route_of(raft, me)? {
        Route::Leader { id, peer_addr } => (id, peer_addr),
        Route::Local => return checks.index(Asker::Local).await,
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
    Ok(resp.index)
}

fn answer(batch: Vec<ReadWaiter>, result: KvResult<()>) {
    crate::metrics::read_index(&result);
    for w in batch {
        let _ = w.send(result.clone());
    }
}

impl ReadIndex {
    pub fn start(raft: Raft, net: Network, me: NodeId, watermark: u64) -> Self {
        let checks = LeaderChecks::start(raft.clone(), watermark);
        let (tx, mut rx) = mpsc::unbounded_channel::<ReadWaiter>();
        let leader = checks.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while let Ok(w) = rx.try_recv() {
                    batch.push(w);
                }
                match read_index(&raft, &net, me, &leader).await {
                    Ok(index) if applied_index(&raft.metrics().borrow()) >= index => {
                        answer(batch, Ok(()))
                    }
                    // Behind: this batch waits on its own while the next
                    // one's index is fetched.
                    Ok(index) => {
                        let raft = raft.clone();
                        tokio::spawn(async move {
                            let result = wait_applied(&raft, index).await;
                            answer(batch, result);
                        });
                    }
                    Err(e) => answer(batch, Err(e)),
                }
            }
        });
        ReadIndex { reads: tx, checks }
    }

    /// Resolves once a read started now would be linearizable.
    pub async fn wait(&self) -> KvResult<()> {
        let (tx, rx) = oneshot::channel();
        self.reads.send(tx).map_err(|_| KvError::Stopped)?;
        rx.await.map_err(|_| KvError::Stopped)?
    }

    /// The leader's answer to a follower's ReadIndex call: the read index
    /// from a leadership check that starts after the call arrived, shared
    /// with whatever else waits for that check.
    pub async fn leader_index(&self) -> KvResult<u64> {
        self.checks.index(Asker::Peer).await
    }
}
