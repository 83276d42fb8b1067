//! Batched read barriers: one leadership check serves every read that arrived
//! before it started (etcd's linearizable read loop).

use tokio::sync::{mpsc, oneshot};

use crate::error::{KvError, KvResult};
use crate::raft::types::Raft;

type Waiter = oneshot::Sender<KvResult<()>>;

pub struct ReadIndex {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl ReadIndex {
    pub fn start(raft: Raft) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while let Ok(w) = rx.try_recv() {
                    batch.push(w);
                }
                let result = match raft.ensure_linearizable().await {
                    Ok(_) => Ok(()),
                    Err(openraft::error::RaftError::APIError(_)) => Err(KvError::NoLeader),
                    Err(openraft::error::RaftError::Fatal(_)) => Err(KvError::Stopped),
                };
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
