//! The `json` format: the response as Go's encoding/json renders etcd's
//! protobuf structs (protobuf field names, `omitempty`, bytes as base64,
//! integers as numbers).

use std::io::Write;

use kv_client::cluster::MemberListResponse;
use kv_client::maintenance::ActiveAlarm;
use kv_client::{DeleteResponse, GetResponse, KeyValue, PutResponse, ResponseHeader};

use super::{io_err, Printer};
use crate::commands::endpoint::EpHealth;
use crate::exit::ExitError;

/// Prints one JSON object per response.
pub struct JsonPrinter;

/// Builds one JSON object, leaving out zero fields like `omitempty`.
struct Obj(Vec<String>);

impl Obj {
    fn new() -> Self {
        Obj(Vec::new())
    }

    fn num(&mut self, name: &str, v: impl Into<i128>) -> &mut Self {
        let v = v.into();
        if v != 0 {
            self.0.push(format!("\"{name}\":{v}"));
        }
        self
    }

    fn bool(&mut self, name: &str, v: bool) -> &mut Self {
        if v {
            self.0.push(format!("\"{name}\":true"));
        }
        self
    }

    fn bytes(&mut self, name: &str, v: &[u8]) -> &mut Self {
        if !v.is_empty() {
            self.0.push(format!("\"{name}\":\"{}\"", base64(v)));
        }
        self
    }

    fn raw(&mut self, name: &str, v: Option<String>) -> &mut Self {
        if let Some(v) = v {
            self.0.push(format!("\"{name}\":{v}"));
        }
        self
    }

    fn finish(&self) -> String {
        format!("{{{}}}", self.0.join(","))
    }
}

fn header(h: Option<&ResponseHeader>) -> Option<String> {
    h.map(|h| {
        Obj::new()
            .num("cluster_id", h.cluster_id)
            .num("member_id", h.member_id)
            .num("revision", h.revision)
            .num("raft_term", h.raft_term)
            .finish()
    })
}

fn kv(kv: &KeyValue) -> String {
    Obj::new()
        .bytes("key", &kv.key)
        .num("create_revision", kv.create_revision)
        .num("mod_revision", kv.mod_revision)
        .num("version", kv.version)
        .bytes("value", &kv.value)
        .num("lease", kv.lease)
        .finish()
}

fn kv_list(kvs: &[KeyValue]) -> Option<String> {
    if kvs.is_empty() {
        return None;
    }
    Some(format!(
        "[{}]",
        kvs.iter().map(kv).collect::<Vec<_>>().join(",")
    ))
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

    fn put(&self, w: &mut dyn Write, r: &PutResponse) -> Result<(), ExitError> {
        let s = Obj::new()
            .raw("header", header(r.header()))
            .raw("prev_kv", r.prev_kv().map(kv))
            .finish();
        emit(w, s)
    }

    fn get(&self, w: &mut dyn Write, r: &GetResponse) -> Result<(), ExitError> {
        let s = Obj::new()
            .raw("header", header(r.header()))
            .raw("kvs", kv_list(r.kvs()))
            .bool("more", r.more())
            .num("count", r.count())
            .finish();
        emit(w, s)
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
        let strs = |v: &[String]| {
            (!v.is_empty()).then(|| {
                let q: Vec<String> = v
                    .iter()
                    .map(|s| serde_json::Value::String(s.clone()).to_string())
                    .collect();
                format!("[{}]", q.join(","))
            })
        };
        let members: Vec<String> = r
            .members()
            .iter()
            .map(|m| {
                let mut o = Obj::new();
                o.num("ID", m.id);
                if !m.name.is_empty() {
                    o.raw(
                        "name",
                        Some(serde_json::Value::String(m.name.clone()).to_string()),
                    );
                }
                o.raw("peerURLs", strs(&m.peer_ur_ls))
                    .raw("clientURLs", strs(&m.client_ur_ls))
                    .bool("isLearner", m.is_learner)
                    .finish()
            })
            .collect();
        let list = (!members.is_empty()).then(|| format!("[{}]", members.join(",")));
        let s = Obj::new()
            .raw("header", header(r.0.header.as_ref()))
            .raw("members", list)
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
        let s = Obj::new()
            .raw("header", header(r.header()))
            .num("deleted", r.deleted())
            .raw("prev_kvs", kv_list(r.prev_kvs()))
            .finish();
        emit(w, s)
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
