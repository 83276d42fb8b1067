//! KV requests: validation, then a local read or a proposal.

use kv_proto::etcdserverpb::request_op::Request as Op;
use kv_proto::etcdserverpb::{
    AlarmType, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use kv_proto::kvpb::internal_request::Request;

use super::Node;
use crate::apply::Applied;
use crate::error::{KvError, KvResult};
use crate::txn;

fn unexpected(a: Applied) -> KvError {
    KvError::Internal(format!("unexpected apply result {a:?}"))
}

pub(super) fn has_put(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Op::RequestPut(_)) => true,
            Some(Op::RequestTxn(inner)) => has_put(inner),
            _ => false,
        })
}

impl Node {
    /// Refuses writes that grow the store once it is over quota (NOSPACE).
    pub(super) async fn check_space(&self) -> KvResult<()> {
        let nospace = AlarmType::Nospace as i32;
        if self.core.alarms.lock().iter().any(|(_, a)| *a == nospace) {
            return Err(KvError::NoSpace);
        }
        // The rows' share of the file, not the file: redb grows it in
        // doublings (mvcc/footprint.rs).
        if self.core.store.quota_size() > self.quota_bytes {
            tracing::warn!(
                quota = self.quota_bytes,
                "backend over quota; raising NOSPACE alarm"
            );
            self.alarm_activate(nospace).await?;
            return Err(KvError::NoSpace);
        }
        Ok(())
    }

    /// What every range read passes first: its shape, the read barrier
    /// (unless serializable), then permission.
    pub(super) async fn admit_range(&self, req: &RangeRequest) -> KvResult<()> {
        txn::check_range(req)?;
        if !req.serializable {
            self.read_barrier().await?;
        }
        // After the barrier: a permission revoked before this read began is
        // applied here by now.
        self.core
            .auth
            .check(|s, who| crate::auth::check::range(s, who, req))
            .map_err(KvError::Auth)
    }

    pub async fn range(&self, req: RangeRequest) -> KvResult<RangeResponse> {
        self.admit_range(&req).await?;
        let snap = self.core.store.snapshot();
        let mut resp = txn::range(&snap, &req)?;
        drop(snap);
        self.fill(&mut resp.header);
        Ok(resp)
    }

    pub async fn put(&self, req: PutRequest) -> KvResult<PutResponse> {
        txn::check_put(&req)?;
        self.check_space().await?;
        match self.propose(Request::Put(req)).await? {
            Applied::Put(mut r) => {
                self.fill(&mut r.header);
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_range(&self, req: DeleteRangeRequest) -> KvResult<DeleteRangeResponse> {
        txn::check_delete(&req)?;
        match self.propose(Request::DeleteRange(req)).await? {
            Applied::DeleteRange(mut r) => {
                self.fill(&mut r.header);
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn txn(&self, req: TxnRequest) -> KvResult<TxnResponse> {
        txn::check_txn_shape(&req, self.limits)?;
        if txn::is_read_only(&req) {
            // etcd serves read-only txns locally, after a read barrier unless
            // every range in them is serializable.
            if !txn::is_serializable(&req) {
                self.read_barrier().await?;
            }
            self.core
                .auth
                .check(|s, who| crate::auth::check::txn(s, who, &req))
                .map_err(KvError::Auth)?;
            let snap = self.core.store.snapshot();
            let mut resp = txn::read_txn(&snap, &req)?;
            drop(snap);
            self.fill(&mut resp.header);
            return Ok(resp);
        }
        if has_put(&req) {
            self.check_space().await?;
        }
        match self.propose(Request::Txn(req)).await? {
            Applied::Txn(mut r) => {
                self.fill(&mut r.header);
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Applying a compaction makes older revisions unreadable at once; its
    /// rows are deleted in the background. With `physical`, the answer
    /// waits until this member deleted them (etcd's semantics).
    pub async fn compact(&self, req: CompactionRequest) -> KvResult<CompactionResponse> {
        let (rev, physical) = (req.revision, req.physical);
        match self.propose(Request::Compaction(req)).await? {
            Applied::Compaction(mut r) => {
                if physical {
                    self.core.store.compactor().finished(rev).await;
                }
                self.fill(&mut r.header);
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }
}
