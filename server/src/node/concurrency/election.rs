//! The election recipe (etcd's `concurrency.Election`, as the v3election
//! service runs it).

use std::sync::Arc;

use kv_proto::etcdserverpb::range_request::SortOrder;
use kv_proto::etcdserverpb::request_op::Request as Op;
use kv_proto::etcdserverpb::{ResponseHeader, TxnRequest};
use kv_proto::mvccpb::event::EventType;
use kv_proto::v3electionpb::{LeaderKey, LeaderResponse};
use tokio::sync::mpsc;

use super::{
    by_create, created_at, delete, dir, get, lease_key, missing, op, prefix_end, put, range_at,
    Cleanup, Elected, RecipeError, RecipeResult, Subscription,
};
use crate::node::Node;

impl Node {
    /// Campaigns in election `name` with `value`; returns once elected.
    pub async fn campaign(
        self: &Arc<Self>,
        name: &[u8],
        lease: i64,
        value: &[u8],
    ) -> RecipeResult<Elected> {
        let lease = self.session_lease(lease).await?;
        let dir = dir(name);
        let key = lease_key(&dir, lease);
        let resp = self
            .txn(TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![put(&key, value, lease)],
                failure: vec![op(Op::RequestRange(get(&key)))],
            })
            .await?;
        let mut rev = resp.header.as_ref().map_or(0, |h| h.revision);
        if !resp.succeeded {
            let kv = range_at(&resp, 0)
                .and_then(|r| r.kvs.first())
                .ok_or_else(|| missing("the candidate key"))?;
            rev = kv.create_revision;
            // Already a candidate with another value: announce the new one.
            if kv.value != value {
                if let Err(e) = self.proclaim_at(&key, rev, lease, value).await {
                    let _ = self.resign_at(&key, rev).await;
                    return Err(e);
                }
            }
        }
        // Only a cancelled caller withdraws; other failures keep the candidacy (as etcd).
        let withdraw = Cleanup::new(self, resign_txn(&key, rev));
        let waited = self.wait_deletes(&dir, rev - 1).await;
        withdraw.disarm();
        waited?;
        Ok(Elected {
            header: resp.header,
            leader: LeaderKey {
                name: name.to_vec(),
                key,
                rev,
                lease,
            },
        })
    }

    async fn proclaim_at(
        &self,
        key: &[u8],
        rev: i64,
        lease: i64,
        value: &[u8],
    ) -> RecipeResult<Option<ResponseHeader>> {
        let resp = self
            .txn(TxnRequest {
                compare: vec![created_at(key, rev)],
                success: vec![put(key, value, lease)],
                failure: Vec::new(),
            })
            .await?;
        if !resp.succeeded {
            return Err(RecipeError::NotLeader);
        }
        Ok(resp.header)
    }

    async fn resign_at(&self, key: &[u8], rev: i64) -> RecipeResult<Option<ResponseHeader>> {
        Ok(self.txn(resign_txn(key, rev)).await?.header)
    }

    /// Sets a new value while `leader` still leads.
    pub async fn proclaim(
        &self,
        leader: Option<LeaderKey>,
        value: &[u8],
    ) -> RecipeResult<Option<ResponseHeader>> {
        let leader = leader.ok_or(RecipeError::MissingLeaderKey)?;
        let lease = self.session_lease(leader.lease).await?;
        self.proclaim_at(&leader.key, leader.rev, lease, value)
            .await
    }

    /// Gives up leadership (or a candidacy); a key that no longer matches is
    /// left alone and is not an error.
    pub async fn resign(&self, leader: Option<LeaderKey>) -> RecipeResult<Option<ResponseHeader>> {
        let leader = leader.ok_or(RecipeError::MissingLeaderKey)?;
        // etcd opens a session for the leader's lease first (granting one for 0).
        self.session_lease(leader.lease).await?;
        self.resign_at(&leader.key, leader.rev).await
    }

    /// The current leader of election `name`.
    pub async fn election_leader(&self, name: &[u8]) -> RecipeResult<LeaderResponse> {
        let r = self
            .range(by_create(&dir(name), SortOrder::Ascend, 0))
            .await?;
        let kv = r.kvs.into_iter().next().ok_or(RecipeError::NoLeader)?;
        Ok(LeaderResponse {
            header: r.header,
            kv: Some(kv),
        })
    }

    /// Streams the leader of election `name` and each change of it, until
    /// the receiver is dropped or a read/watch fails.
    pub fn observe(self: &Arc<Self>, name: &[u8]) -> mpsc::Receiver<LeaderResponse> {
        let (tx, rx) = mpsc::channel(1);
        let node = self.clone();
        let dir = dir(name);
        tokio::spawn(async move {
            tokio::select! {
                _ = tx.closed() => {}
                r = node.observe_loop(&dir, &tx) => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "election observe ended");
                    }
                }
            }
        });
        rx
    }

    async fn observe_loop(
        &self,
        dir: &[u8],
        tx: &mpsc::Sender<LeaderResponse>,
    ) -> RecipeResult<()> {
        loop {
            let first = self.range(by_create(dir, SortOrder::Ascend, 0)).await?;
            let (header, kv) = match first.kvs.into_iter().next() {
                Some(kv) => (first.header, kv),
                None => {
                    // No leader: the first key put under the directory is one.
                    let from = first.header.as_ref().map_or(0, |h| h.revision);
                    let mut sub = Subscription::open(self.hub(), dir, prefix_end(dir), from);
                    loop {
                        let wr = sub.next().await?;
                        let put = wr
                            .events
                            .into_iter()
                            .find(|e| e.r#type == EventType::Put as i32)
                            .and_then(|e| e.kv);
                        if let Some(kv) = put {
                            let mut h = wr.header;
                            if let Some(h) = h.as_mut() {
                                h.revision = kv.mod_revision;
                            }
                            break (h, kv);
                        }
                    }
                }
            };
            let from = header.as_ref().map_or(0, |h| h.revision) + 1;
            let mut sub = Subscription::open(self.hub(), &kv.key, Vec::new(), from);
            let sent = LeaderResponse {
                header,
                kv: Some(kv),
            };
            if tx.send(sent).await.is_err() {
                return Ok(());
            }
            // Report the leader's new values until its key is deleted.
            'deleted: loop {
                let wr = sub.next().await?;
                for ev in wr.events {
                    if ev.r#type == EventType::Delete as i32 {
                        break 'deleted;
                    }
                    let changed = LeaderResponse {
                        header: wr.header,
                        kv: ev.kv,
                    };
                    if tx.send(changed).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn resign_txn(key: &[u8], rev: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![created_at(key, rev)],
        success: vec![delete(key)],
        failure: Vec::new(),
    }
}
