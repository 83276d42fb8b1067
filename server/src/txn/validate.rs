//! Request shape checks done before a request is proposed, as etcd's gRPC
//! layer does: empty keys, ignore_* misuse, op limits, overlapping writes.

use std::collections::HashSet;

use kv_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use kv_proto::etcdserverpb::request_op::Request;
use kv_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::error::{KvError, KvResult};

/// Deepest txn nesting accepted (a txn without txns inside has depth 1).
///
/// etcd sets no such bound (its decoders allow far deeper messages), but
/// kvd's decoder, prost, stops at 100 nested messages, and each txn level is
/// two of them (TxnRequest, RequestOp). A client's TxnRequest is decoded at
/// the top, so gRPC takes up to 50 levels; in the raft log and in a
/// forwarded batch it sits two messages lower (batch, InternalRequest), so
/// 49 is the most that decodes at apply (unit test
/// `deepest_txn_that_decodes_at_apply`). 32 leaves room for more wrapping,
/// and no real client nests anywhere near it.
pub const MAX_TXN_DEPTH: usize = 32;

/// Tunables of request validation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most operations in one txn branch (etcd's --max-txn-ops).
    pub max_txn_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_txn_ops: 128 }
    }
}

pub fn check_range(r: &RangeRequest) -> KvResult<()> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    // Unknown enum numbers are refused as etcd does, not read as defaults.
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(KvError::InvalidSortOption);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> KvResult<()> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> KvResult<()> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_ops: usize, depth: usize) -> KvResult<()> {
    match &op.request {
        Some(Request::RequestRange(r)) => check_range(r),
        Some(Request::RequestPut(r)) => check_put(r),
        Some(Request::RequestDeleteRange(r)) => check_delete(r),
        Some(Request::RequestTxn(t)) => check_ops(t, max_ops, depth + 1),
        // An empty op: etcd answers "key not found".
        None => Err(KvError::KeyNotFound),
    }
}

/// `depth` is the nesting level of `t` (1 for the request itself).
fn check_ops(t: &TxnRequest, max_ops: usize, depth: usize) -> KvResult<()> {
    if depth > MAX_TXN_DEPTH {
        return Err(too_deep());
    }
    let opc = t.compare.len().max(t.success.len()).max(t.failure.len());
    if opc > max_ops {
        return Err(KvError::TooManyOps);
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(KvError::EmptyKey);
    }
    for op in t.success.iter().chain(&t.failure) {
        check_op(op, max_ops - opc, depth)?;
    }
    Ok(())
}

/// Full shape check of a txn: limits, keys, and no key written twice on one path.
pub fn check_txn_shape(t: &TxnRequest, limits: Limits) -> KvResult<()> {
    check_ops(t, limits.max_txn_ops, 1)?;
    intervals(&t.success)?;
    intervals(&t.failure)?;
    Ok(())
}

fn too_deep() -> KvError {
    KvError::InvalidArgument(format!(
        "txn request nested too deeply: more than {MAX_TXN_DEPTH} levels"
    ))
}

/// A deleted range; `end == None` is a single key, `Some([0])` is "to the end".
struct Del {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Del {
    fn covers(&self, k: &[u8]) -> bool {
        match &self.end {
            None => k == self.start.as_slice(),
            Some(e) => k >= self.start.as_slice() && (e.as_slice() == [0] || k < e.as_slice()),
        }
    }
}

/// Puts and deletes of one list of ops (and the txns nested in it); errors on
/// a key put twice or put inside a deleted range on the same execution path.
fn intervals(ops: &[RequestOp]) -> KvResult<(HashSet<Vec<u8>>, Vec<Del>)> {
    let mut dels: Vec<Del> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Del {
                start: d.key.clone(),
                end: (!d.range_end.is_empty()).then(|| d.range_end.clone()),
            }),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    let clash = |puts: &HashSet<Vec<u8>>, dels: &[Del], k: &[u8]| {
        puts.contains(k) || dels.iter().any(|d| d.covers(k))
    };
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (then_puts, then_dels) = intervals(&t.success)?;
        let (else_puts, else_dels) = intervals(&t.failure)?;
        for k in &then_puts {
            if clash(&puts, &dels, k) {
                return Err(KvError::DuplicateKey);
            }
        }
        for k in &else_puts {
            // The two branches exclude each other, so a key in both is fine.
            let dup_put = puts.contains(k) && !then_puts.contains(k);
            if dup_put || dels.iter().any(|d| d.covers(k)) {
                return Err(KvError::DuplicateKey);
            }
        }
        puts.extend(then_puts);
        puts.extend(else_puts);
        dels.extend(then_dels);
        dels.extend(else_dels);
    }
    for op in ops {
        if let Some(Request::RequestPut(p)) = &op.request {
            if clash(&puts, &dels, &p.key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(p.key.clone());
        }
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }

    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    #[test]
    fn duplicate_puts_and_overlaps() {
        let l = Limits::default();
        assert!(check_txn_shape(&txn(vec![put("a"), put("b")], vec![]), l).is_ok());
        assert!(matches!(
            check_txn_shape(&txn(vec![put("a"), put("a")], vec![]), l),
            Err(KvError::DuplicateKey)
        ));
        assert!(matches!(
            check_txn_shape(&txn(vec![put("b"), del("a", "c")], vec![]), l),
            Err(KvError::DuplicateKey)
        ));
        // Same key in success and failure is fine.
        assert!(check_txn_shape(&txn(vec![put("a")], vec![put("a")]), l).is_ok());
        // Nested: both branches may put the same key.
        let nested = RequestOp {
            request: Some(Request::RequestTxn(txn(vec![put("x")], vec![put("x")]))),
        };
        assert!(check_txn_shape(&txn(vec![nested.clone()], vec![]), l).is_ok());
        assert!(matches!(
            check_txn_shape(&txn(vec![nested, put("x")], vec![]), l),
            Err(KvError::DuplicateKey)
        ));
    }

    /// A txn `depth` levels deep, a put at the bottom.
    fn nested(depth: usize) -> TxnRequest {
        let mut t = txn(vec![put("k")], vec![]);
        for _ in 1..depth {
            t = txn(
                vec![RequestOp {
                    request: Some(Request::RequestTxn(t)),
                }],
                vec![],
            );
        }
        t
    }

    #[test]
    fn deepest_txn_that_decodes_at_apply() {
        use kv_proto::kvpb::{internal_request, InternalBatch, InternalRequest};
        use prost::Message;
        let decodes = |depth: usize| {
            let batch = InternalBatch {
                requests: vec![InternalRequest {
                    id: 1,
                    request: Some(internal_request::Request::Txn(nested(depth))),
                }],
            };
            InternalBatch::decode(batch.encode_to_vec().as_slice()).is_ok()
        };
        let deepest = (1..=60).take_while(|d| decodes(*d)).last().unwrap();
        assert_eq!(
            deepest, 49,
            "prost's recursion limit moved: revisit MAX_TXN_DEPTH"
        );
        assert!(MAX_TXN_DEPTH + 8 <= deepest);
        let l = Limits::default();
        assert!(check_txn_shape(&nested(MAX_TXN_DEPTH), l).is_ok());
        let err = check_txn_shape(&nested(MAX_TXN_DEPTH + 1), l).unwrap_err();
        assert!(matches!(err, KvError::InvalidArgument(_)), "{err:?}");
    }

    #[test]
    fn too_many_ops() {
        let ops: Vec<_> = (0..129).map(|i| put(&format!("k{i}"))).collect();
        assert!(matches!(
            check_txn_shape(&txn(ops, vec![]), Limits::default()),
            Err(KvError::TooManyOps)
        ));
    }
}
