//! Writes a follower hands to its leader. The batcher (propose.rs) routes
//! a batch here when another member leads: requests that queued while a
//! call was in flight ride together in one `ProposeBatch` call, so a busy
//! follower pays one peer round trip per batch rather than per write
//! (etcd's followers likewise batch proposals into raft messages). On the
//! leader they enter the same bounded queue as its own clients' requests.

use kv_proto::kvpb::internal_request::Request;
use kv_proto::kvpb::{InternalBatch, InternalRequest};
use prost::Message;

use super::peer::from_wire;
use super::propose::{Pending, PROPOSE_TIMEOUT};
use super::Node;
use crate::error::{KvError, KvResult};
use crate::raft::network::Network;
use crate::raft::NodeId;
use crate::txn;

/// Most writes in one call (the leader refuses more).
pub(super) const MAX_BATCH_REQUESTS: usize = 512;
/// Calls in flight at once; more writes wait and batch up meanwhile.
pub(super) const MAX_INFLIGHT: usize = 4;

/// Hands `batch` to `leader` in one `ProposeBatch` call and answers each
/// waiter with its result. The byte permits are released when the batch
/// drops: once the leader has answered (or the call failed).
pub(super) async fn send(net: &Network, (leader, addr): (NodeId, String), batch: Vec<Pending>) {
    let mut requests = Vec::with_capacity(batch.len());
    let mut waiters = Vec::with_capacity(batch.len());
    let mut _permits = Vec::with_capacity(batch.len());
    for p in batch {
        requests.push(p.req);
        waiters.push(p.tx);
        _permits.push(p.bytes);
    }
    let result = match net.client(leader, &addr) {
        Err(_) => Err(KvError::NoLeader),
        Ok(mut client) => {
            let call = client.propose_batch(InternalBatch { requests });
            match tokio::time::timeout(PROPOSE_TIMEOUT, call).await {
                Ok(Ok(resp)) => Ok(resp.into_inner().results),
                Ok(Err(_)) => Err(KvError::NoLeader),
                Err(_) => Err(KvError::Timeout),
            }
        }
    };
    match result {
        Ok(results) if results.len() == waiters.len() => {
            for (w, r) in waiters.into_iter().zip(results) {
                let _ = w.send(from_wire(r));
            }
        }
        Ok(results) => {
            let e = KvError::Internal(format!(
                "{} results for {} forwarded requests",
                results.len(),
                waiters.len()
            ));
            for w in waiters {
                let _ = w.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for w in waiters {
                let _ = w.send(Err(e.clone()));
            }
        }
    }
}

impl Node {
    /// Checks a proposal another member forwarded exactly as this member
    /// checks its own clients' requests (size, keys and shape, quota), with
    /// the same functions: the leader never trusts the sender's checks. A
    /// request kind kvd never forwards is refused.
    pub(super) async fn check_forwarded(&self, req: &InternalRequest) -> KvResult<()> {
        if req.encoded_len() > self.max_request_bytes {
            return Err(KvError::RequestTooLarge);
        }
        match &req.request {
            Some(Request::Put(p)) => {
                txn::check_put(p)?;
                self.check_space().await
            }
            Some(Request::DeleteRange(d)) => txn::check_delete(d),
            Some(Request::Txn(t)) => {
                txn::check_txn_shape(t, self.limits)?;
                if super::kv::has_put(t) {
                    self.check_space().await?;
                }
                Ok(())
            }
            Some(Request::LeaseGrant(_)) => self.check_space().await,
            Some(
                Request::Compaction(_)
                | Request::LeaseRevoke(_)
                | Request::Alarm(_)
                | Request::MemberAttributes(_),
            ) => Ok(()),
            // Auth changes are checked when applied (root only, etcd's texts).
            Some(Request::Auth(_)) => Ok(()),
            Some(Request::Authed(a)) => match a.request.as_ref() {
                Some(inner) if !matches!(inner.request, Some(Request::Authed(_))) => {
                    Box::pin(self.check_forwarded(inner)).await
                }
                _ => Err(KvError::InvalidArgument(
                    "not a request a member forwards".to_string(),
                )),
            },
            // Checkpoints are the leader's own; an empty request is nothing.
            Some(Request::LeaseCheckpoint(_)) | None => Err(KvError::InvalidArgument(
                "not a request a member forwards".to_string(),
            )),
        }
    }
}
