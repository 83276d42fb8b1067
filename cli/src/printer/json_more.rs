//! JSON renderings of the composite answers (txn, watch, per-endpoint
//! lists), kept apart from `json.rs` to keep files short.

use kv_client::{Event, TxnOpResponse, TxnResponse, WatchBatch};

use super::json::{del_json, get_json, header, kv, put_json, quote, Obj};
use crate::commands::endpoint::{EpHash, EpStatus};

/// A txn answer; each op answer is wrapped as Go renders the protobuf oneof
/// (`{"Response":{"ResponsePut":{...}}}`).
pub fn txn(r: &TxnResponse) -> String {
    let ops: Vec<String> = r
        .op_responses()
        .iter()
        .map(|op| {
            let (name, body) = match op {
                TxnOpResponse::Put(p) => ("ResponsePut", put_json(p)),
                TxnOpResponse::Get(g) => ("ResponseRange", get_json(g)),
                TxnOpResponse::Delete(d) => ("ResponseDeleteRange", del_json(d)),
                TxnOpResponse::Txn(t) => ("ResponseTxn", txn(t)),
            };
            format!("{{\"Response\":{{\"{name}\":{body}}}}}")
        })
        .collect();
    Obj::new()
        .raw("header", header(r.header()))
        .bool("succeeded", r.succeeded())
        .raw(
            "responses",
            (!ops.is_empty()).then(|| format!("[{}]", ops.join(","))),
        )
        .finish()
}

fn event(e: &Event) -> String {
    Obj::new()
        .num("type", e.r#type)
        .raw("kv", e.kv.as_ref().map(kv))
        .raw("prev_kv", e.prev_kv.as_ref().map(kv))
        .finish()
}

/// A watch answer as clientv3's `WatchResponse` (exported fields only).
pub fn watch(b: &WatchBatch) -> String {
    let events = if b.events().is_empty() {
        "null".to_string()
    } else {
        let list: Vec<String> = b.events().iter().map(event).collect();
        format!("[{}]", list.join(","))
    };
    format!(
        "{{\"Header\":{},\"Events\":{events},\"CompactRevision\":0,\"Canceled\":false,\"Created\":false}}",
        header(Some(b.header())).unwrap_or_default()
    )
}

/// `endpoint hashkv`: one object per endpoint.
pub fn hash_kv(hs: &[EpHash]) -> String {
    let items: Vec<String> = hs
        .iter()
        .map(|h| {
            // Only the fields etcd 3.4's HashKVResponse has.
            let body = Obj::new()
                .raw("header", header(h.resp.header()))
                .num("hash", h.resp.hash())
                .num("compact_revision", h.resp.compact_revision())
                .finish();
            format!("{{\"Endpoint\":{},\"HashKV\":{body}}}", quote(&h.ep))
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// `endpoint status`: one object per endpoint, with the protobuf's JSON
/// field names.
pub fn endpoint_status(st: &[EpStatus]) -> String {
    let items: Vec<String> = st
        .iter()
        .map(|s| {
            let r = &s.resp.0;
            let mut o = Obj::new();
            o.raw("header", header(r.header.as_ref()));
            if !r.version.is_empty() {
                o.raw("version", Some(quote(&r.version)));
            }
            o.num("dbSize", r.db_size)
                .num("leader", r.leader)
                .num("raftIndex", r.raft_index)
                .num("raftTerm", r.raft_term)
                .num("raftAppliedIndex", r.raft_applied_index);
            if !r.errors.is_empty() {
                let es: Vec<String> = r.errors.iter().map(|e| quote(e)).collect();
                o.raw("errors", Some(format!("[{}]", es.join(","))));
            }
            o.num("dbSizeInUse", r.db_size_in_use)
                .bool("isLearner", r.is_learner);
            format!(
                "{{\"Endpoint\":{},\"Status\":{}}}",
                quote(&s.ep),
                o.finish()
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}
