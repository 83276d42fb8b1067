//! Put, DeleteRange and Txn inside an applied write batch.
//!
//! Every request is checked in full before its first change (etcd's
//! check-then-apply), so an error never leaves half a request applied.

use kv_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use kv_proto::etcdserverpb::request_op::Request;
use kv_proto::etcdserverpb::response_op::Response;
use kv_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use kv_proto::mvccpb::KeyValue;

use super::range::{range, read_rev};
use crate::error::{KvError, KvResult};
use crate::mvcc::{KeyHistory, ReadView, WriteBatch};

/// What the write path needs from the lease table: existence and key attachment.
pub trait LeaseBook {
    fn exists(&self, id: i64) -> bool;
    fn attach(&mut self, id: i64, key: &[u8]);
    fn detach(&mut self, id: i64, key: &[u8]);
}

fn empty_header() -> Option<ResponseHeader> {
    Some(ResponseHeader::default())
}

fn check_put(b: &WriteBatch, leases: &dyn LeaseBook, r: &PutRequest) -> KvResult<()> {
    if (r.ignore_value || r.ignore_lease) && !b.index().get(&r.key).is_some_and(|h| h.is_live()) {
        return Err(KvError::KeyNotFound);
    }
    if r.lease != 0 && !leases.exists(r.lease) {
        return Err(KvError::LeaseNotFound);
    }
    Ok(())
}

/// Applies a put whose checks passed.
fn do_put(b: &mut WriteBatch, leases: &mut dyn LeaseBook, r: &PutRequest) -> KvResult<PutResponse> {
    crate::metrics::mvcc_put();
    // Read only when needed: the index keeps no copy of most values.
    let cur = if r.ignore_value || r.ignore_lease {
        b.current(&r.key)?
    } else {
        None
    };
    let value = match (&cur, r.ignore_value) {
        (Some(c), true) => c.value.clone(),
        _ => r.value.clone(),
    };
    let lease = match (&cur, r.ignore_lease) {
        (Some(c), true) => c.lease,
        _ => r.lease,
    };
    let prev = b.put(&r.key, value, lease)?;
    if let Some(p) = &prev {
        if p.lease != 0 && p.lease != lease {
            leases.detach(p.lease, &r.key);
        }
    }
    if lease != 0 {
        leases.attach(lease, &r.key);
    }
    Ok(PutResponse {
        header: empty_header(),
        prev_kv: if r.prev_kv {
            prev.map(|p| (*p).clone())
        } else {
            None
        },
    })
}

/// A standalone Put request.
pub fn put(
    b: &mut WriteBatch,
    leases: &mut dyn LeaseBook,
    r: &PutRequest,
) -> KvResult<PutResponse> {
    check_put(b, leases, r)?;
    do_put(b, leases, r)
}

/// A DeleteRange request (always valid once its shape was checked).
pub fn delete_range(
    b: &mut WriteBatch,
    leases: &mut dyn LeaseBook,
    r: &DeleteRangeRequest,
) -> KvResult<DeleteRangeResponse> {
    crate::metrics::mvcc_delete();
    let mut prev_kvs = Vec::new();
    let keys = b.live_keys(&r.key, &r.range_end);
    for key in &keys {
        if let Some(p) = b.delete(key)? {
            if p.lease != 0 {
                leases.detach(p.lease, key);
            }
            if r.prev_kv {
                prev_kvs.push((*p).clone());
            }
        }
    }
    Ok(DeleteRangeResponse {
        header: empty_header(),
        deleted: keys.len() as i64,
        prev_kvs,
    })
}

/// The fields of a key's value that a compare other than VALUE reads.
#[derive(Debug, Default, Clone, Copy)]
struct Meta {
    version: i64,
    create_revision: i64,
    mod_revision: i64,
    lease: i64,
}

impl Meta {
    fn of(kv: &KeyValue) -> Self {
        Meta {
            version: kv.version,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            lease: kv.lease,
        }
    }
}

fn decide(c: &Compare, ord: std::cmp::Ordering) -> bool {
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

/// A compare of any target but VALUE.
fn compare_meta(c: &Compare, m: Meta) -> bool {
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    let want = match (&c.target_union, target) {
        (Some(TargetUnion::Version(v)), CompareTarget::Version) => *v,
        (Some(TargetUnion::CreateRevision(v)), CompareTarget::Create) => *v,
        (Some(TargetUnion::ModRevision(v)), CompareTarget::Mod) => *v,
        (Some(TargetUnion::Lease(v)), CompareTarget::Lease) => *v,
        _ => 0,
    };
    let have = match target {
        CompareTarget::Version => m.version,
        CompareTarget::Create => m.create_revision,
        CompareTarget::Mod => m.mod_revision,
        _ => m.lease,
    };
    decide(c, have.cmp(&want))
}

/// A VALUE compare.
fn compare_value(c: &Compare, kv: &KeyValue) -> bool {
    let v: &[u8] = match &c.target_union {
        Some(TargetUnion::Value(v)) => v,
        _ => &[],
    };
    decide(c, kv.value.as_slice().cmp(v))
}

/// What a non-VALUE compare reads of `hist` at `rev`: from the index when
/// that is the key's current value (the index keeps its version, create
/// revision and lease, and its revision is the mod revision), so a compare
/// never reads a value the cache dropped from the backend; from the stored
/// value for an older revision. `None` if the key did not exist at `rev`.
fn meta_at(view: &impl ReadView, hist: &KeyHistory, rev: i64) -> KvResult<Option<Meta>> {
    let Some(r) = hist.live_at(rev) else {
        return Ok(None);
    };
    if let Some(live) = hist.live().filter(|_| hist.newest_put() == Some(r)) {
        return Ok(Some(Meta {
            version: live.version,
            create_revision: live.create_revision,
            mod_revision: r.main,
            lease: live.lease,
        }));
    }
    Ok(view.value_at(hist, rev)?.map(|kv| Meta::of(&kv)))
}

/// Whether the key of `hist` satisfies `c` at `rev`; `None` if the key did
/// not exist then.
fn compare_key(
    view: &impl ReadView,
    c: &Compare,
    hist: &KeyHistory,
    rev: i64,
) -> KvResult<Option<bool>> {
    if c.target == CompareTarget::Value as i32 {
        return Ok(view.value_at(hist, rev)?.map(|kv| compare_value(c, &kv)));
    }
    Ok(meta_at(view, hist, rev)?.map(|m| compare_meta(c, m)))
}

/// An absent key compares as a zero KeyValue, except that VALUE compares fail.
fn compare_absent(c: &Compare) -> bool {
    c.target != CompareTarget::Value as i32 && compare_meta(c, Meta::default())
}

/// etcd's rule: every key in the compare's range must satisfy it; if none
/// exists, [`compare_absent`].
fn compare(view: &impl ReadView, c: &Compare) -> KvResult<bool> {
    let rev = view.rev();
    // One key, the usual compare: looked up without a range iterator (a
    // boxed one per call).
    if c.range_end.is_empty() {
        let Some(hist) = view.index().get(&c.key) else {
            return Ok(compare_absent(c));
        };
        return Ok(compare_key(view, c, hist, rev)?.unwrap_or_else(|| compare_absent(c)));
    }
    let mut any = false;
    for (_, hist) in view.index().range(&c.key, &c.range_end) {
        match compare_key(view, c, hist, rev)? {
            None => continue,
            Some(false) => return Ok(false),
            Some(true) => any = true,
        }
    }
    Ok(any || compare_absent(c))
}

/// Evaluates every compare on the path through nested txns before anything runs.
fn path(view: &impl ReadView, t: &TxnRequest, out: &mut Vec<bool>) -> KvResult<()> {
    let mut ok = true;
    for c in &t.compare {
        if !compare(view, c)? {
            ok = false;
            break;
        }
    }
    out.push(ok);
    for op in if ok { &t.success } else { &t.failure } {
        if let Some(Request::RequestTxn(inner)) = &op.request {
            path(view, inner, out)?;
        }
    }
    Ok(())
}

fn check_path(
    b: &WriteBatch,
    leases: &dyn LeaseBook,
    t: &TxnRequest,
    p: &mut std::slice::Iter<'_, bool>,
) -> KvResult<()> {
    let ok = *p.next().unwrap_or(&false);
    for op in if ok { &t.success } else { &t.failure } {
        match &op.request {
            Some(Request::RequestRange(r)) if r.revision != 0 => {
                read_rev(b, r.revision)?;
            }
            Some(Request::RequestPut(r)) => check_put(b, leases, r)?,
            Some(Request::RequestTxn(inner)) => check_path(b, leases, inner, p)?,
            _ => {}
        }
    }
    Ok(())
}

/// Where a txn's ops run: a write batch (every op) or a read view (ranges
/// only), so one executor serves both.
trait Target {
    /// The revision an op sees now: the txn's start until it first writes,
    /// then its new revision (etcd reports this in each op's header).
    fn rev(&self) -> i64;
    fn range(&self, r: &RangeRequest) -> KvResult<RangeResponse>;
    fn put(&mut self, r: &PutRequest) -> KvResult<PutResponse>;
    fn delete(&mut self, r: &DeleteRangeRequest) -> KvResult<DeleteRangeResponse>;
}

struct Writer<'x, 'a, 't> {
    b: &'x mut WriteBatch<'a, 't>,
    leases: &'x mut dyn LeaseBook,
}

impl Target for Writer<'_, '_, '_> {
    fn rev(&self) -> i64 {
        ReadView::rev(&*self.b)
    }
    fn range(&self, r: &RangeRequest) -> KvResult<RangeResponse> {
        range(&*self.b, r)
    }
    fn put(&mut self, r: &PutRequest) -> KvResult<PutResponse> {
        do_put(self.b, self.leases, r)
    }
    fn delete(&mut self, r: &DeleteRangeRequest) -> KvResult<DeleteRangeResponse> {
        delete_range(self.b, self.leases, r)
    }
}

struct Reader<'v, V>(&'v V);

impl<V: ReadView> Target for Reader<'_, V> {
    fn rev(&self) -> i64 {
        self.0.rev()
    }
    fn range(&self, r: &RangeRequest) -> KvResult<RangeResponse> {
        range(self.0, r)
    }
    fn put(&mut self, _: &PutRequest) -> KvResult<PutResponse> {
        Err(KvError::Internal("write in a read-only txn".into()))
    }
    fn delete(&mut self, _: &DeleteRangeRequest) -> KvResult<DeleteRangeResponse> {
        Err(KvError::Internal("write in a read-only txn".into()))
    }
}

fn exec(
    tgt: &mut impl Target,
    t: &TxnRequest,
    p: &mut std::slice::Iter<'_, bool>,
) -> KvResult<TxnResponse> {
    let ok = *p.next().unwrap_or(&false);
    let ops: &[RequestOp] = if ok { &t.success } else { &t.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let resp = match &op.request {
            Some(Request::RequestRange(r)) => {
                let mut resp = tgt.range(r)?;
                resp.header = at(tgt.rev());
                Response::ResponseRange(resp)
            }
            Some(Request::RequestPut(r)) => {
                let mut resp = tgt.put(r)?;
                resp.header = at(tgt.rev());
                Response::ResponsePut(resp)
            }
            Some(Request::RequestDeleteRange(r)) => {
                let mut resp = tgt.delete(r)?;
                resp.header = at(tgt.rev());
                Response::ResponseDeleteRange(resp)
            }
            Some(Request::RequestTxn(inner)) => Response::ResponseTxn(exec(tgt, inner, p)?),
            None => return Err(KvError::KeyNotFound),
        };
        responses.push(ResponseOp {
            response: Some(resp),
        });
    }
    Ok(TxnResponse {
        header: empty_header(),
        succeeded: ok,
        responses,
    })
}

/// A Txn request: compares, then the chosen branch, all in one revision.
pub fn txn(
    b: &mut WriteBatch,
    leases: &mut dyn LeaseBook,
    t: &TxnRequest,
) -> KvResult<TxnResponse> {
    crate::metrics::mvcc_txn();
    let mut p = Vec::new();
    path(b, t, &mut p)?;
    check_path(b, leases, t, &mut p.iter())?;
    exec(&mut Writer { b, leases }, t, &mut p.iter())
}

/// True if no branch of `t` (at any depth) writes: such a txn needs no proposal.
pub fn is_read_only(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) => true,
            Some(Request::RequestTxn(inner)) => is_read_only(inner),
            _ => false,
        })
}

/// True if every range in `t` asked for a serializable read.
pub fn is_serializable(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(r)) => r.serializable,
            Some(Request::RequestTxn(inner)) => is_serializable(inner),
            _ => true,
        })
}

/// A txn that [`is_read_only`], evaluated against a read view.
pub fn read_txn(view: &impl ReadView, t: &TxnRequest) -> KvResult<TxnResponse> {
    crate::metrics::mvcc_txn();
    let mut p = Vec::new();
    path(view, t, &mut p)?;
    let mut resp = exec(&mut Reader(view), t, &mut p.iter())?;
    resp.header = Some(ResponseHeader {
        revision: view.rev(),
        ..Default::default()
    });
    Ok(resp)
}

/// A header carrying only a revision (the member fills the rest at the top).
fn at(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}
