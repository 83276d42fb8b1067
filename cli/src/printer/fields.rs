//! The `fields` format: one `"Field" : value` line per response field.

use std::io::Write;

use kv_client::cluster::MemberListResponse;
use kv_client::lease::{
    LeaseGrantResponse, LeaseListResponse, LeaseRevokeResponse, LeaseTtlResponse,
};
use kv_client::{DeleteResponse, GetResponse, KeyValue, PutResponse, ResponseHeader};
use kv_client::{TxnOpResponse, TxnResponse, WatchBatch};

use super::{io_err, Printer};
use crate::commands::endpoint::{EpHash, EpStatus};
use crate::commands::lease::KeepAlive;
use crate::exit::ExitError;

/// Prints `"Field" : value` lines.
pub struct FieldsPrinter;

/// Quotes like Go's `%q` for the common cases.
pub fn go_quote(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn hdr(w: &mut dyn Write, h: Option<&ResponseHeader>) -> std::io::Result<()> {
    let h = h.cloned().unwrap_or_default();
    writeln!(w, "\"ClusterID\" : {}", h.cluster_id)?;
    writeln!(w, "\"MemberID\" : {}", h.member_id)?;
    writeln!(w, "\"Revision\" : {}", h.revision)?;
    writeln!(w, "\"RaftTerm\" : {}", h.raft_term)
}

fn kv(w: &mut dyn Write, pfx: &str, kv: &KeyValue) -> std::io::Result<()> {
    writeln!(w, "\"{pfx}Key\" : {}", go_quote(&kv.key))?;
    writeln!(w, "\"{pfx}CreateRevision\" : {}", kv.create_revision)?;
    writeln!(w, "\"{pfx}ModRevision\" : {}", kv.mod_revision)?;
    writeln!(w, "\"{pfx}Version\" : {}", kv.version)?;
    writeln!(w, "\"{pfx}Value\" : {}", go_quote(&kv.value))?;
    writeln!(w, "\"{pfx}Lease\" : {}", kv.lease)
}

impl Printer for FieldsPrinter {
    fn name(&self) -> &'static str {
        "fields"
    }

    fn auth(
        &self,
        w: &mut dyn Write,
        out: &crate::commands::auth::AuthOutput,
    ) -> Result<(), ExitError> {
        super::auth::fields(w, out)
    }

    fn put(&self, w: &mut dyn Write, r: &PutResponse) -> Result<(), ExitError> {
        (|| {
            hdr(w, r.header())?;
            if let Some(p) = r.prev_kv() {
                kv(w, "Prev", p)?;
            }
            Ok(())
        })()
        .map_err(io_err)
    }

    fn get(&self, w: &mut dyn Write, r: &GetResponse) -> Result<(), ExitError> {
        (|| {
            hdr(w, r.header())?;
            for k in r.kvs() {
                kv(w, "", k)?;
            }
            writeln!(w, "\"More\" : {}", r.more())?;
            writeln!(w, "\"Count\" : {}", r.count())
        })()
        .map_err(io_err)
    }

    fn del(&self, w: &mut dyn Write, r: &DeleteResponse) -> Result<(), ExitError> {
        (|| {
            hdr(w, r.header())?;
            writeln!(w, "\"Deleted\" : {}", r.deleted())?;
            for k in r.prev_kvs() {
                kv(w, "Prev", k)?;
            }
            Ok(())
        })()
        .map_err(io_err)
    }

    fn txn(&self, w: &mut dyn Write, r: &TxnResponse) -> Result<(), ExitError> {
        hdr(w, r.header()).map_err(io_err)?;
        writeln!(w, "\"Succeeded\" : {}", r.succeeded()).map_err(io_err)?;
        for op in r.op_responses() {
            match &op {
                TxnOpResponse::Put(p) => self.put(w, p)?,
                TxnOpResponse::Get(g) => self.get(w, g)?,
                TxnOpResponse::Delete(d) => self.del(w, d)?,
                TxnOpResponse::Txn(t) => self.txn(w, t)?,
            }
        }
        Ok(())
    }

    fn watch(&self, w: &mut dyn Write, b: &WatchBatch) -> Result<(), ExitError> {
        (|| {
            hdr(w, Some(b.header()))?;
            for e in b.events() {
                writeln!(w, "\"Type\" : {}", e.r#type().as_str_name())?;
                if let Some(p) = &e.prev_kv {
                    kv(w, "Prev", p)?;
                }
                kv(w, "", &e.kv.clone().unwrap_or_default())?;
            }
            Ok(())
        })()
        .map_err(io_err)
    }

    fn keep_alive(&self, w: &mut dyn Write, k: &KeepAlive) -> Result<(), ExitError> {
        (|| {
            hdr(w, k.header.as_ref())?;
            writeln!(w, "\"ID\" : {}", k.id)?;
            writeln!(w, "\"TTL\" : {}", k.ttl)
        })()
        .map_err(io_err)
    }

    fn lease_grant(&self, w: &mut dyn Write, r: &LeaseGrantResponse) -> Result<(), ExitError> {
        (|| {
            hdr(w, r.0.header.as_ref())?;
            writeln!(w, "\"ID\" : {}", r.id())?;
            writeln!(w, "\"TTL\" : {}", r.ttl())
        })()
        .map_err(io_err)
    }

    fn lease_revoke(
        &self,
        w: &mut dyn Write,
        _id: i64,
        r: &LeaseRevokeResponse,
    ) -> Result<(), ExitError> {
        hdr(w, r.0.header.as_ref()).map_err(io_err)
    }

    fn lease_list(&self, w: &mut dyn Write, r: &LeaseListResponse) -> Result<(), ExitError> {
        (|| {
            hdr(w, r.header())?;
            for id in r.ids() {
                writeln!(w, "\"ID\" : {id}")?;
            }
            Ok(())
        })()
        .map_err(io_err)
    }

    fn lease_ttl(
        &self,
        w: &mut dyn Write,
        r: &LeaseTtlResponse,
        _k: bool,
    ) -> Result<(), ExitError> {
        (|| {
            hdr(w, r.0.header.as_ref())?;
            writeln!(w, "\"ID\" : {}", r.0.id)?;
            writeln!(w, "\"TTL\" : {}", r.ttl())?;
            writeln!(w, "\"GrantedTTL\" : {}", r.granted_ttl())?;
            for k in r.keys() {
                writeln!(w, "\"Key\" : {}", go_quote(k))?;
            }
            Ok(())
        })()
        .map_err(io_err)
    }

    fn hash_kv(&self, w: &mut dyn Write, hs: &[EpHash]) -> Result<(), ExitError> {
        (|| {
            for h in hs {
                hdr(w, h.resp.header())?;
                writeln!(w, "\"Endpoint\" : {}", go_quote(h.ep.as_bytes()))?;
                writeln!(w, "\"Hash\" : {}", h.resp.hash())?;
                writeln!(w)?;
            }
            Ok(())
        })()
        .map_err(io_err)
    }

    fn endpoint_status(&self, w: &mut dyn Write, st: &[EpStatus]) -> Result<(), ExitError> {
        (|| {
            for s in st {
                let r = &s.resp.0;
                hdr(w, r.header.as_ref())?;
                writeln!(w, "\"Version\" : {}", go_quote(r.version.as_bytes()))?;
                writeln!(w, "\"DBSize\" : {}", r.db_size)?;
                writeln!(w, "\"Leader\" : {}", r.leader)?;
                writeln!(w, "\"IsLearner\" : {}", r.is_learner)?;
                writeln!(w, "\"RaftIndex\" : {}", r.raft_index)?;
                writeln!(w, "\"RaftTerm\" : {}", r.raft_term)?;
                writeln!(w, "\"RaftAppliedIndex\" : {}", r.raft_applied_index)?;
                writeln!(w, "\"Errors\" : [{}]", r.errors.join(" "))?;
                writeln!(w, "\"Endpoint\" : {}", go_quote(s.ep.as_bytes()))?;
                writeln!(w)?;
            }
            Ok(())
        })()
        .map_err(io_err)
    }

    fn member_list(&self, w: &mut dyn Write, r: &MemberListResponse) -> Result<(), ExitError> {
        (|| {
            hdr(w, r.0.header.as_ref())?;
            for m in r.members() {
                writeln!(w, "\"ID\" : {}", m.id)?;
                writeln!(w, "\"Name\" : {}", go_quote(m.name.as_bytes()))?;
                for u in &m.peer_ur_ls {
                    writeln!(w, "\"PeerURL\" : {}", go_quote(u.as_bytes()))?;
                }
                for u in &m.client_ur_ls {
                    writeln!(w, "\"ClientURL\" : {}", go_quote(u.as_bytes()))?;
                }
                writeln!(w, "\"IsLearner\" : {}", m.is_learner)?;
                writeln!(w)?;
            }
            Ok(())
        })()
        .map_err(io_err)
    }
}
