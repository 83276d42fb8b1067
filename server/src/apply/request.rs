//! Applies one decoded `InternalRequest` inside a batch.

use std::collections::BTreeSet;

use kv_proto::etcdserverpb::alarm_request::AlarmAction;
use kv_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, CompactionRequest, CompactionResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, ResponseHeader,
};
use kv_proto::kvpb::{internal_request::Request, InternalRequest};
use parking_lot::Mutex;
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};
use redb::{Key, Table, TableDefinition, Value, WriteTransaction};

use super::Applied;
use crate::error::{KvError, KvResult};
use crate::lease::{Lessor, MAX_LEASE_TTL};
use crate::mvcc::store::MetaTable;
use crate::mvcc::{MvccError, ReadView, WriteBatch};
use crate::raft::RaftResponse;
use crate::storage::schema::{ALARMS, LEASES, MEMBERS};
use crate::txn;

/// The tables of one applied batch besides KV. LEASES, ALARMS and MEMBERS
/// are opened on first use: most batches (puts, deletes, txns) touch none
/// of them, and every table opened costs a lookup in redb's table tree and
/// a root update at commit.
pub struct Tables<'a, 't> {
    wtx: &'t WriteTransaction,
    leases: Option<Table<'t, i64, i64>>,
    members: Option<Table<'t, u64, &'static [u8]>>,
    alarms: Option<Table<'t, (u64, i32), ()>>,
    pub alarms_mem: &'a Mutex<BTreeSet<(u64, i32)>>,
    pub meta: &'a mut MetaTable<'t>,
    pub auth: &'a crate::auth::AuthStore,
}

impl<'a, 't> Tables<'a, 't> {
    /// Tables of the batch in `wtx`; META is the one the commit holds open.
    pub fn new(
        wtx: &'t WriteTransaction,
        meta: &'a mut MetaTable<'t>,
        alarms_mem: &'a Mutex<BTreeSet<(u64, i32)>>,
        auth: &'a crate::auth::AuthStore,
    ) -> Self {
        Tables {
            wtx,
            leases: None,
            members: None,
            alarms: None,
            alarms_mem,
            meta,
            auth,
        }
    }

    fn leases(&mut self) -> KvResult<&mut Table<'t, i64, i64>> {
        open_once(&mut self.leases, self.wtx, LEASES)
    }

    fn members(&mut self) -> KvResult<&mut Table<'t, u64, &'static [u8]>> {
        open_once(&mut self.members, self.wtx, MEMBERS)
    }

    fn alarms(&mut self) -> KvResult<&mut Table<'t, (u64, i32), ()>> {
        open_once(&mut self.alarms, self.wtx, ALARMS)
    }
}

/// The table in `slot`, opened in `wtx` if this batch has not opened it yet.
fn open_once<'s, 't, K: Key + 'static, V: Value + 'static>(
    slot: &'s mut Option<Table<'t, K, V>>,
    wtx: &'t WriteTransaction,
    def: TableDefinition<K, V>,
) -> KvResult<&'s mut Table<'t, K, V>> {
    let table = match slot.take() {
        Some(t) => t,
        None => wtx
            .open_table(def)
            .map_err(|e| KvError::Mvcc(MvccError::from(e)))?,
    };
    Ok(slot.insert(table))
}

/// Applies one entry: a batch of requests, each with its own revision. The
/// outer error is fatal (storage failed); the inner ones are the requests' own
/// answers.
pub fn apply(
    b: &mut WriteBatch,
    lessor: &mut Lessor,
    t: &mut Tables,
    bytes: &[u8],
) -> Result<RaftResponse, MvccError> {
    let requests = match split_batch(bytes) {
        Ok(requests) => requests,
        Err(e) => {
            let err = KvError::Internal(format!("undecodable log entry: {e}"));
            return Ok(RaftResponse(vec![Err(err)]));
        }
    };
    let mut out = Vec::with_capacity(requests.len());
    for req in requests {
        let req = match req {
            Ok(req) => req,
            Err(e) => {
                out.push(Err(KvError::InvalidArgument(format!(
                    "request cannot be decoded: {e}"
                ))));
                continue;
            }
        };
        b.begin();
        let result = dispatch(b, lessor, t, req);
        let rev = b.end();
        out.push(match result {
            Err(KvError::Mvcc(e @ (MvccError::Storage(_) | MvccError::Corrupt(_)))) => {
                return Err(e)
            }
            Err(e) => Err(e),
            Ok(mut applied) => {
                set_revision(&mut applied, rev);
                Ok(applied)
            }
        });
    }
    Ok(RaftResponse(out))
}

/// The requests of one entry (an encoded `InternalBatch`), each decoded on
/// its own: one that does not decode (nested deeper than prost's recursion
/// limit, say) fails alone instead of failing every request batched with it.
/// Only a broken frame (which kvd never writes) fails the whole entry.
fn split_batch(bytes: &[u8]) -> Result<Vec<Result<InternalRequest, DecodeError>>, String> {
    // InternalBatch's only field: `repeated InternalRequest requests = 1`.
    const REQUESTS_FIELD: u32 = 1;
    let mut buf = bytes;
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (tag, wire_type) = encoding::decode_key(&mut buf).map_err(|e| e.to_string())?;
        if tag != REQUESTS_FIELD || wire_type != WireType::LengthDelimited {
            encoding::skip_field(wire_type, tag, &mut buf, DecodeContext::default())
                .map_err(|e| e.to_string())?;
            continue;
        }
        let len = encoding::decode_varint(&mut buf).map_err(|e| e.to_string())?;
        let len = usize::try_from(len).map_err(|_| "request length overflows".to_string())?;
        if len > buf.len() {
            return Err("request runs past the entry".to_string());
        }
        let (one, rest) = buf.split_at(len);
        out.push(InternalRequest::decode(one));
        buf = rest;
    }
    Ok(out)
}

fn set_revision(a: &mut Applied, revision: i64) {
    let h = match a {
        Applied::None => return,
        Applied::Put(r) => &mut r.header,
        Applied::DeleteRange(r) => &mut r.header,
        Applied::Txn(r) => &mut r.header,
        Applied::Compaction(r) => &mut r.header,
        Applied::LeaseGrant(r) => &mut r.header,
        Applied::LeaseRevoke(r) => &mut r.header,
        Applied::Alarm(r) => &mut r.header,
    };
    *h = Some(ResponseHeader {
        revision,
        ..Default::default()
    });
}

fn storage(e: redb::StorageError) -> KvError {
    KvError::Mvcc(MvccError::Storage(e.to_string()))
}

pub(super) fn dispatch(
    b: &mut WriteBatch,
    lessor: &mut Lessor,
    t: &mut Tables,
    req: InternalRequest,
) -> KvResult<Applied> {
    match req.request {
        Some(Request::Put(r)) => txn::put(b, lessor, &r).map(Applied::Put),
        Some(Request::DeleteRange(r)) => txn::delete_range(b, lessor, &r).map(Applied::DeleteRange),
        Some(Request::Txn(r)) => txn::txn(b, lessor, &r).map(Applied::Txn),
        Some(Request::Compaction(r)) => compact(b, &r),
        Some(Request::LeaseGrant(r)) => grant(lessor, t, &r),
        Some(Request::LeaseRevoke(r)) => revoke(b, lessor, t, &r),
        Some(Request::Alarm(r)) => alarm(t, &r),
        Some(Request::MemberAttributes(a)) => {
            t.members()?
                .insert(a.id, a.encode_to_vec().as_slice())
                .map_err(storage)?;
            Ok(Applied::None)
        }
        // Checkpoints only matter for long leases across leader changes; TTLs are
        // renewed in full on every leader change instead (see Lessor::refresh_all).
        Some(Request::LeaseCheckpoint(_)) => Ok(Applied::None),
        Some(Request::Auth(a)) => super::auth::change(t, None, &a),
        Some(Request::Authed(a)) => super::auth::authed(b, lessor, t, *a),
        None => Err(KvError::InvalidArgument("empty internal request".into())),
    }
}

fn compact(b: &mut WriteBatch, r: &CompactionRequest) -> KvResult<Applied> {
    if r.revision <= b.compact_rev() {
        return Err(MvccError::Compacted.into());
    }
    if r.revision > b.rev() {
        return Err(MvccError::FutureRev.into());
    }
    // Timed by the compactor, which deletes the rows (mvcc/compactor.rs).
    b.compact(r.revision)?;
    Ok(Applied::Compaction(CompactionResponse::default()))
}

fn grant(lessor: &mut Lessor, t: &mut Tables, r: &LeaseGrantRequest) -> KvResult<Applied> {
    if r.id <= 0 {
        return Err(KvError::InvalidArgument("lease id must be positive".into()));
    }
    if r.ttl > MAX_LEASE_TTL {
        return Err(KvError::LeaseTtlTooLarge);
    }
    if crate::txn::LeaseBook::exists(lessor, r.id) {
        return Err(KvError::LeaseExists);
    }
    let ttl = lessor.grant(r.id, r.ttl).ttl;
    crate::metrics::lease_granted();
    t.leases()?.insert(r.id, ttl).map_err(storage)?;
    Ok(Applied::LeaseGrant(LeaseGrantResponse {
        header: None,
        id: r.id,
        ttl,
        error: String::new(),
    }))
}

fn revoke(
    b: &mut WriteBatch,
    lessor: &mut Lessor,
    t: &mut Tables,
    r: &LeaseRevokeRequest,
) -> KvResult<Applied> {
    let keys = lessor.revoke(r.id).ok_or(KvError::LeaseNotFound)?;
    crate::metrics::lease_revoked();
    // Sorted keys, one revision: every member produces the same history.
    for key in &keys {
        b.delete(key)?;
    }
    t.leases()?.remove(r.id).map_err(storage)?;
    Ok(Applied::LeaseRevoke(LeaseRevokeResponse::default()))
}

fn alarm(t: &mut Tables, r: &AlarmRequest) -> KvResult<Applied> {
    let key = (r.member_id, r.alarm);
    // A copy of the reference: the lock guard must not borrow `t`, whose
    // ALARMS table may still have to be opened below.
    let alarms_mem = t.alarms_mem;
    let mut mem = alarms_mem.lock();
    let alarms = match AlarmAction::try_from(r.action) {
        Ok(AlarmAction::Activate) => {
            t.alarms()?.insert(key, ()).map_err(storage)?;
            mem.insert(key);
            vec![key]
        }
        Ok(AlarmAction::Deactivate) => {
            t.alarms()?.remove(key).map_err(storage)?;
            if mem.remove(&key) {
                vec![key]
            } else {
                vec![]
            }
        }
        _ => mem
            .iter()
            .filter(|(_, a)| r.alarm == 0 || *a == r.alarm)
            .copied()
            .collect(),
    };
    Ok(Applied::Alarm(AlarmResponse {
        header: None,
        alarms: alarms
            .into_iter()
            .map(|(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_proto::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};
    use kv_proto::kvpb::InternalBatch;

    fn put(id: u64) -> InternalRequest {
        InternalRequest {
            id,
            request: Some(Request::Put(PutRequest {
                key: format!("k{id}").into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn an_undecodable_request_fails_alone() {
        let mut deep = TxnRequest::default();
        for _ in 0..60 {
            deep = TxnRequest {
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestTxn(deep)),
                }],
                ..Default::default()
            };
        }
        let poison = InternalRequest {
            id: 2,
            request: Some(Request::Txn(deep)),
        };
        let bytes = InternalBatch {
            requests: vec![put(1), poison, put(3)],
        }
        .encode_to_vec();
        assert!(InternalBatch::decode(bytes.as_slice()).is_err());
        let split = split_batch(&bytes).unwrap();
        assert_eq!(split.len(), 3);
        assert_eq!(split[0].as_ref().unwrap().id, 1);
        assert!(split[1].is_err());
        assert_eq!(split[2].as_ref().unwrap().id, 3);
    }
}
