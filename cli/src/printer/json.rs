//! The `json` format: the response as Go's encoding/json renders etcd's
//! protobuf structs (protobuf field names, `omitempty`, bytes as base64,
//! integers as numbers).

use std::io::Write;

use kv_client::cluster::{Member, MemberListResponse};
use kv_client::lease::{
    LeaseGrantResponse, LeaseListResponse, LeaseRevokeResponse, LeaseTtlResponse,
};
use kv_client::maintenance::ActiveAlarm;
use kv_client::{DeleteResponse, GetResponse, KeyValue, PutResponse, ResponseHeader};
use kv_client::{MemberAddResponse, MemberChangeResponse, TxnResponse, WatchBatch};

use super::{io_err, Printer};
use crate::commands::endpoint::{EpHash, EpHealth, EpStatus};
use crate::commands::lease::KeepAlive;
use crate::commands::member::Change;
use crate::exit::ExitError;

/// Prints one JSON object per response.
pub struct JsonPrinter;

/// Builds one JSON object, leaving out zero fields like `omitempty`.
pub(super) struct Obj(Vec<String>);

impl Obj {
    pub(super) fn new() -> Self {
        Obj(Vec::new())
    }

    pub(super) fn num(&mut self, name: &str, v: impl Into<i128>) -> &mut Self {
        let v = v.into();
        if v != 0 {
            self.0.push(format!("\"{name}\":{v}"));
        }
        self
    }

    pub(super) fn bool(&mut self, name: &str, v: bool) -> &mut Self {
        if v {
            self.0.push(format!("\"{name}\":true"));
        }
        self
    }

    pub(super) fn bytes(&mut self, name: &str, v: &[u8]) -> &mut Self {
        if !v.is_empty() {
            self.0.push(format!("\"{name}\":\"{}\"", base64(v)));
        }
        self
    }

    pub(super) fn raw(&mut self, name: &str, v: Option<String>) -> &mut Self {
        if let Some(v) = v {
            self.0.push(format!("\"{name}\":{v}"));
        }
        self
    }

    pub(super) fn finish(&self) -> String {
        format!("{{{}}}", self.0.join(","))
    }
}

pub(super) fn header(h: Option<&ResponseHeader>) -> Option<String> {
    h.map(|h| {
        Obj::new()
            .num("cluster_id", h.cluster_id)
            .num("member_id", h.member_id)
            .num("revision", h.revision)
            .num("raft_term", h.raft_term)
            .finish()
    })
}

pub(super) fn kv(kv: &KeyValue) -> String {
    Obj::new()
        .bytes("key", &kv.key)
        .num("create_revision", kv.create_revision)
        .num("mod_revision", kv.mod_revision)
        .num("version", kv.version)
        .bytes("value", &kv.value)
        .num("lease", kv.lease)
        .finish()
}

pub(super) fn kv_list(kvs: &[KeyValue]) -> Option<String> {
    if kvs.is_empty() {
        return None;
    }
    Some(format!(
        "[{}]",
        kvs.iter().map(kv).collect::<Vec<_>>().join(",")
    ))
}

pub(super) fn put_json(r: &PutResponse) -> String {
    Obj::new()
        .raw("header", header(r.header()))
        .raw("prev_kv", r.prev_kv().map(kv))
        .finish()
}

pub(super) fn get_json(r: &GetResponse) -> String {
    Obj::new()
        .raw("header", header(r.header()))
        .raw("kvs", kv_list(r.kvs()))
        .bool("more", r.more())
        .num("count", r.count())
        .finish()
}

pub(super) fn del_json(r: &DeleteResponse) -> String {
    Obj::new()
        .raw("header", header(r.header()))
        .num("deleted", r.deleted())
        .raw("prev_kvs", kv_list(r.prev_kvs()))
        .finish()
}

/// A JSON string.
pub(super) fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The header's fields inlined into the object (clientv3's lease answers
/// embed `*ResponseHeader`).
fn inline_header(h: Option<&ResponseHeader>) -> Obj {
    let h = h.cloned().unwrap_or_default();
    let mut o = Obj::new();
    o.num("cluster_id", h.cluster_id)
        .num("member_id", h.member_id)
        .num("revision", h.revision)
        .num("raft_term", h.raft_term);
    o
}

fn member(m: &Member) -> String {
    let strs = |v: &[String]| {
        (!v.is_empty()).then(|| {
            let q: Vec<String> = v.iter().map(|s| quote(s)).collect();
            format!("[{}]", q.join(","))
        })
    };
    let mut o = Obj::new();
    o.num("ID", m.id);
    if !m.name.is_empty() {
        o.raw("name", Some(quote(&m.name)));
    }
    o.raw("peerURLs", strs(&m.peer_ur_ls))
        .raw("clientURLs", strs(&m.client_ur_ls))
        .bool("isLearner", m.is_learner)
        .finish()
}

fn members(ms: &[Member]) -> Option<String> {
    let list: Vec<String> = ms.iter().map(member).collect();
    (!list.is_empty()).then(|| format!("[{}]", list.join(",")))
}

/// Standard base64 with padding, as Go's encoding/json writes `[]byte`.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn emit(w: &mut dyn Write, s: String) -> Result<(), ExitError> {
    writeln!(w, "{s}").map_err(io_err)
}

impl Printer for JsonPrinter {
    fn name(&self) -> &'static str {
        "json"
    }

    fn auth(
        &self,
        w: &mut dyn Write,
        out: &crate::commands::auth::AuthOutput,
    ) -> Result<(), ExitError> {
        super::auth::json(w, out)
    }

    fn put(&self, w: &mut dyn Write, r: &PutResponse) -> Result<(), ExitError> {
        emit(w, put_json(r))
    }

    fn get(&self, w: &mut dyn Write, r: &GetResponse) -> Result<(), ExitError> {
        emit(w, get_json(r))
    }

    fn alarm_list(&self, w: &mut dyn Write, alarms: &[ActiveAlarm]) -> Result<(), ExitError> {
        let list = (!alarms.is_empty()).then(|| {
            let items: Vec<String> = alarms
                .iter()
                .map(|a| {
                    Obj::new()
                        .num("memberID", a.member_id)
                        .num("alarm", a.alarm as i32)
                        .finish()
                })
                .collect();
            format!("[{}]", items.join(","))
        });
        emit(w, Obj::new().raw("alarms", list).finish())
    }

    fn member_list(&self, w: &mut dyn Write, r: &MemberListResponse) -> Result<(), ExitError> {
        let s = Obj::new()
            .raw("header", header(r.0.header.as_ref()))
            .raw("members", members(r.members()))
            .finish();
        emit(w, s)
    }

    fn endpoint_health(
        &self,
        w: &mut dyn Write,
        _err: &mut dyn Write,
        hs: &[EpHealth],
    ) -> Result<(), ExitError> {
        let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let items: Vec<String> = hs
            .iter()
            .map(|h| {
                let mut o = Obj::new();
                o.raw("endpoint", Some(q(&h.ep)))
                    .raw("health", Some(h.health.to_string()))
                    .raw("took", Some(q(&super::go_duration(h.took))));
                if !h.error.is_empty() {
                    o.raw("error", Some(q(&h.error)));
                }
                o.finish()
            })
            .collect();
        emit(w, format!("[{}]", items.join(",")))
    }

    fn del(&self, w: &mut dyn Write, r: &DeleteResponse) -> Result<(), ExitError> {
        emit(w, del_json(r))
    }

    fn txn(&self, w: &mut dyn Write, r: &TxnResponse) -> Result<(), ExitError> {
        emit(w, super::json_more::txn(r))
    }

    fn watch(&self, w: &mut dyn Write, b: &WatchBatch) -> Result<(), ExitError> {
        emit(w, super::json_more::watch(b))
    }

    fn keep_alive(&self, w: &mut dyn Write, k: &KeepAlive) -> Result<(), ExitError> {
        let mut o = inline_header(k.header.as_ref());
        o.raw("ID", Some(k.id.to_string()))
            .raw("TTL", Some(k.ttl.to_string()));
        emit(w, o.finish())
    }

    fn lease_grant(&self, w: &mut dyn Write, r: &LeaseGrantResponse) -> Result<(), ExitError> {
        let mut o = inline_header(r.0.header.as_ref());
        o.raw("ID", Some(r.id().to_string()))
            .raw("TTL", Some(r.ttl().to_string()))
            .raw("Error", Some(quote(&r.0.error)));
        emit(w, o.finish())
    }

    fn lease_list(&self, w: &mut dyn Write, r: &LeaseListResponse) -> Result<(), ExitError> {
        // etcdctl prints `[]` (not null, not omitted) when there are none.
        let ls: Vec<String> = r
            .ids()
            .iter()
            .map(|id| format!("{{\"id\":{id}}}"))
            .collect();
        let mut o = inline_header(r.header());
        o.raw("leases", Some(format!("[{}]", ls.join(","))));
        emit(w, o.finish())
    }

    fn lease_revoke(
        &self,
        w: &mut dyn Write,
        _id: i64,
        r: &LeaseRevokeResponse,
    ) -> Result<(), ExitError> {
        emit(
            w,
            Obj::new()
                .raw("header", header(r.0.header.as_ref()))
                .finish(),
        )
    }

    fn lease_ttl(
        &self,
        w: &mut dyn Write,
        r: &LeaseTtlResponse,
        _k: bool,
    ) -> Result<(), ExitError> {
        let keys = if r.keys().is_empty() {
            "null".to_string()
        } else {
            let ks: Vec<String> = r
                .keys()
                .iter()
                .map(|k| format!("\"{}\"", base64(k)))
                .collect();
            format!("[{}]", ks.join(","))
        };
        let mut o = inline_header(r.0.header.as_ref());
        o.raw("id", Some(r.0.id.to_string()))
            .raw("ttl", Some(r.ttl().to_string()))
            .raw("granted-ttl", Some(r.granted_ttl().to_string()))
            .raw("keys", Some(keys));
        emit(w, o.finish())
    }

    fn member_add(
        &self,
        w: &mut dyn Write,
        r: &MemberAddResponse,
        _name: &str,
    ) -> Result<(), ExitError> {
        let s = Obj::new()
            .raw("header", header(r.header()))
            .raw("member", r.member().map(member))
            .raw("members", members(r.members()))
            .finish();
        emit(w, s)
    }

    fn member_change(
        &self,
        w: &mut dyn Write,
        _change: Change,
        _id: u64,
        r: &MemberChangeResponse,
    ) -> Result<(), ExitError> {
        let s = Obj::new()
            .raw("header", header(r.header()))
            .raw("members", members(r.members()))
            .finish();
        emit(w, s)
    }

    fn hash_kv(&self, w: &mut dyn Write, hs: &[EpHash]) -> Result<(), ExitError> {
        emit(w, super::json_more::hash_kv(hs))
    }

    fn endpoint_status(&self, w: &mut dyn Write, st: &[EpStatus]) -> Result<(), ExitError> {
        emit(w, super::json_more::endpoint_status(st))
    }
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_go() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"\xff\xfe\xfd\xfc"), "//79/A==");
    }
}
