//! etcd's server-side concurrency recipes, behind the v3lock and v3election
//! services. A lock or a candidacy is the key `name/<lease id in hex>`,
//! attached to that lease; the holder is the key with the lowest create
//! revision under `name/`, and a waiter waits until every older key is
//! deleted. Like etcd (which runs its client recipes in-process), everything
//! here goes through the facade: proposed txns, linearizable ranges and watch
//! hub subscriptions, so it works the same on followers.
//!
//! A waiter whose caller goes away (the RPC is cancelled, its future dropped)
//! deletes its own queued key, as etcd's mutex and election do; a key that
//! was already held stays until Unlock/Resign or until its lease ends.

mod election;
mod mutex;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use kv_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use kv_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use kv_proto::etcdserverpb::request_op::Request as Op;
use kv_proto::etcdserverpb::response_op::Response as OpResponse;
use kv_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, TxnRequest, TxnResponse, WatchCreateRequest, WatchResponse,
};
use kv_proto::mvccpb::event::EventType;
use kv_proto::v3electionpb::LeaderKey;

use super::Node;
use crate::error::KvError;
use crate::mvcc::MvccError;
use crate::watch::{StreamHandle, WatchHub};

/// TTL of the lease etcd grants when a Lock or Campaign names lease 0
/// (its client session default, never kept alive afterwards).
pub const SESSION_TTL: i64 = 60;

/// Failures of the recipes. The texts are etcd's; every one of them reaches
/// etcd's clients as gRPC `Unknown` (see `api::lock::recipe_status`).
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("election: not leader")]
    NotLeader,
    #[error("election: no leader")]
    NoLeader,
    /// etcd 3.5+: the waiter's own key vanished (lease gone) while it waited.
    #[error("mutex: session is expired")]
    SessionExpired,
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    #[error("lost watcher waiting for delete")]
    LostWatcher,
}

pub type RecipeResult<T> = Result<T, RecipeError>;

/// A lock now held by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Locked {
    pub header: Option<ResponseHeader>,
    pub key: Vec<u8>,
}

/// A campaign that won.
#[derive(Debug, Clone, PartialEq)]
pub struct Elected {
    pub header: Option<ResponseHeader>,
    pub leader: LeaderKey,
}

/// The range end covering every key that starts with `prefix` (etcd's
/// `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `name/`, the directory of one lock or election.
fn dir(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// `dir` + the lease id as Go's `%x` prints an int64.
fn lease_key(dir: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    let mut k = dir.to_vec();
    k.extend_from_slice(hex.as_bytes());
    k
}

fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

fn op(request: Op) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

fn put(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    op(Op::RequestPut(PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    }))
}

fn get(key: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }
}

fn delete(key: &[u8]) -> RequestOp {
    op(Op::RequestDeleteRange(DeleteRangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }))
}

/// The key under `dir` with the lowest (`First`) or highest create revision.
fn by_create(dir: &[u8], order: SortOrder, max_create_revision: i64) -> RangeRequest {
    RangeRequest {
        key: dir.to_vec(),
        range_end: prefix_end(dir),
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        limit: 1,
        max_create_revision,
        ..Default::default()
    }
}

/// The `i`th response of a txn, when it is a range.
fn range_at(resp: &TxnResponse, i: usize) -> Option<&RangeResponse> {
    match resp.responses.get(i)?.response.as_ref()? {
        OpResponse::ResponseRange(r) => Some(r),
        _ => None,
    }
}

fn missing(what: &str) -> RecipeError {
    KvError::Internal(format!("txn response lacks {what}")).into()
}

/// One watcher on the hub, removed when dropped (so a cancelled wait leaves
/// nothing behind).
struct Subscription {
    hub: Arc<WatchHub>,
    handle: StreamHandle,
}

impl Subscription {
    fn open(hub: &Arc<WatchHub>, key: &[u8], range_end: Vec<u8>, start_revision: i64) -> Self {
        let handle = hub.open_stream();
        hub.create(
            handle.id,
            &WatchCreateRequest {
                key: key.to_vec(),
                range_end,
                start_revision,
                ..Default::default()
            },
        );
        Subscription {
            hub: hub.clone(),
            handle,
        }
    }

    /// The next response that carries events.
    async fn next(&mut self) -> RecipeResult<WatchResponse> {
        loop {
            let r = self
                .handle
                .rx
                .recv()
                .await
                .ok_or(RecipeError::LostWatcher)?;
            self.handle.pending.fetch_sub(1, Ordering::AcqRel);
            if r.canceled {
                return Err(if r.compact_revision > 0 {
                    KvError::Mvcc(MvccError::Compacted).into()
                } else {
                    RecipeError::LostWatcher
                });
            }
            if !r.events.is_empty() {
                return Ok(r);
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.close_stream(self.handle.id);
    }
}

/// A txn to run if the waiting caller goes away (dropped before `disarm`).
struct Cleanup {
    node: Arc<Node>,
    txn: Option<TxnRequest>,
}

impl Cleanup {
    fn new(node: &Arc<Node>, txn: TxnRequest) -> Self {
        Cleanup {
            node: node.clone(),
            txn: Some(txn),
        }
    }

    fn disarm(mut self) {
        self.txn = None;
    }

    /// Runs the cleanup now; its own failure is only logged, as etcd ignores it.
    async fn run(mut self) {
        if let Some(t) = self.txn.take() {
            if let Err(e) = self.node.txn(t).await {
                tracing::warn!(error = %e, "concurrency cleanup failed");
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(t) = self.txn.take() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let node = self.node.clone();
        rt.spawn(async move {
            if let Err(e) = node.txn(t).await {
                tracing::warn!(error = %e, "cleanup after a cancelled wait failed");
            }
        });
    }
}

impl Node {
    /// The lease a request names; 0 means a fresh one, as etcd's session does.
    async fn session_lease(&self, lease: i64) -> RecipeResult<i64> {
        if lease != 0 {
            return Ok(lease);
        }
        let r = self
            .lease_grant(LeaseGrantRequest {
                ttl: SESSION_TTL,
                id: 0,
            })
            .await?;
        Ok(r.id)
    }

    /// Waits until no key under `dir` has a create revision at or below
    /// `max_create_rev` (etcd's `waitDeletes`): repeatedly watch the newest
    /// such key for its deletion. Returns the last read's header.
    async fn wait_deletes(
        &self,
        dir: &[u8],
        max_create_rev: i64,
    ) -> RecipeResult<Option<ResponseHeader>> {
        loop {
            let last = self
                .range(by_create(dir, SortOrder::Descend, max_create_rev))
                .await?;
            let Some(kv) = last.kvs.first() else {
                return Ok(last.header);
            };
            let from = last.header.as_ref().map_or(0, |h| h.revision);
            let mut sub = Subscription::open(self.hub(), &kv.key, Vec::new(), from);
            'deleted: loop {
                let wr = sub.next().await?;
                for ev in &wr.events {
                    if ev.r#type == EventType::Delete as i32 {
                        break 'deleted;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_like_etcd() {
        assert_eq!(
            lease_key(b"lk/", 0x694d77aa9e3b2a0b),
            b"lk/694d77aa9e3b2a0b"
        );
        assert_eq!(lease_key(b"lk/", -26), b"lk/-1a");
        assert_eq!(prefix_end(b"lk/"), b"lk0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
