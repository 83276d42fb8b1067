//! The `simple` format: etcdctl's default, human readable lines.

use std::io::Write;

use kv_client::cluster::MemberListResponse;
use kv_client::lease::{
    LeaseGrantResponse, LeaseListResponse, LeaseRevokeResponse, LeaseTtlResponse,
};
use kv_client::maintenance::ActiveAlarm;
use kv_client::{DeleteResponse, GetResponse, KeyValue, PutResponse};

use super::{io_err, PrintOptions, Printer};
use kv_client::{MemberAddResponse, MemberChangeResponse, TxnOpResponse, TxnResponse, WatchBatch};

use crate::commands::endpoint::{EpHash, EpHealth, EpStatus};
use crate::commands::lease::KeepAlive;
use crate::commands::member::Change;
use crate::exit::ExitError;

/// Prints plain lines.
pub struct SimplePrinter {
    /// Options such as `--print-value-only`.
    pub opts: PrintOptions,
}

fn print_kv(w: &mut dyn Write, opts: PrintOptions, kv: &KeyValue) -> std::io::Result<()> {
    let bytes = |w: &mut dyn Write, b: &[u8]| {
        if opts.hex {
            b.iter().try_for_each(|x| write!(w, "\\x{x:02x}"))
        } else {
            w.write_all(b)
        }
    };
    if !opts.value_only {
        bytes(w, &kv.key)?;
        w.write_all(b"\n")?;
    }
    bytes(w, &kv.value)?;
    w.write_all(b"\n")
}

impl SimplePrinter {
    /// The options for printing whole pairs (`--print-value-only` applies
    /// to `get` only).
    fn all(&self) -> PrintOptions {
        PrintOptions {
            value_only: false,
            ..self.opts
        }
    }
}

impl Printer for SimplePrinter {
    fn name(&self) -> &'static str {
        "simple"
    }

    fn auth(
        &self,
        w: &mut dyn Write,
        out: &crate::commands::auth::AuthOutput,
    ) -> Result<(), ExitError> {
        super::auth::simple(w, out)
    }

    fn put(&self, w: &mut dyn Write, r: &PutResponse) -> Result<(), ExitError> {
        writeln!(w, "OK").map_err(io_err)?;
        if let Some(kv) = r.prev_kv() {
            print_kv(w, self.all(), kv).map_err(io_err)?;
        }
        Ok(())
    }

    fn get(&self, w: &mut dyn Write, r: &GetResponse) -> Result<(), ExitError> {
        for kv in r.kvs() {
            print_kv(w, self.opts, kv).map_err(io_err)?;
        }
        Ok(())
    }

    fn del(&self, w: &mut dyn Write, r: &DeleteResponse) -> Result<(), ExitError> {
        writeln!(w, "{}", r.deleted()).map_err(io_err)?;
        for kv in r.prev_kvs() {
            print_kv(w, self.all(), kv).map_err(io_err)?;
        }
        Ok(())
    }

    fn lease_grant(&self, w: &mut dyn Write, r: &LeaseGrantResponse) -> Result<(), ExitError> {
        writeln!(w, "lease {:x} granted with TTL({}s)", r.id(), r.ttl()).map_err(io_err)
    }

    fn lease_revoke(
        &self,
        w: &mut dyn Write,
        id: i64,
        _r: &LeaseRevokeResponse,
    ) -> Result<(), ExitError> {
        writeln!(w, "lease {id:x} revoked").map_err(io_err)
    }

    fn lease_ttl(
        &self,
        w: &mut dyn Write,
        r: &LeaseTtlResponse,
        keys: bool,
    ) -> Result<(), ExitError> {
        let id = r.0.id;
        if r.granted_ttl() == 0 && r.ttl() == -1 {
            return writeln!(w, "lease {id:x} already expired").map_err(io_err);
        }
        let mut txt = format!(
            "lease {id:x} granted with TTL({}s), remaining({}s)",
            r.granted_ttl(),
            r.ttl()
        );
        if keys {
            let ks: Vec<String> = r
                .keys()
                .iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect();
            txt.push_str(&format!(", attached keys([{}])", ks.join(" ")));
        }
        writeln!(w, "{txt}").map_err(io_err)
    }

    fn alarm_list(&self, w: &mut dyn Write, alarms: &[ActiveAlarm]) -> Result<(), ExitError> {
        for a in alarms {
            writeln!(
                w,
                "memberID:{} alarm:{}",
                a.member_id,
                a.alarm.as_str_name()
            )
            .map_err(io_err)?;
        }
        Ok(())
    }

    fn member_list(&self, w: &mut dyn Write, r: &MemberListResponse) -> Result<(), ExitError> {
        for row in super::member_rows(r) {
            writeln!(w, "{}", row.join(", ")).map_err(io_err)?;
        }
        Ok(())
    }

    fn endpoint_health(
        &self,
        _w: &mut dyn Write,
        err: &mut dyn Write,
        hs: &[EpHealth],
    ) -> Result<(), ExitError> {
        for h in hs {
            if h.error.is_empty() {
                writeln!(
                    err,
                    "{} is healthy: successfully committed proposal: took = {}",
                    h.ep,
                    super::go_duration(h.took)
                )
            } else {
                writeln!(err, "{} is unhealthy: {}", h.ep, h.error)
            }
            .map_err(io_err)?;
        }
        Ok(())
    }

    fn endpoint_status(&self, w: &mut dyn Write, st: &[EpStatus]) -> Result<(), ExitError> {
        for row in super::status_rows(st) {
            writeln!(w, "{}", row.join(", ")).map_err(io_err)?;
        }
        Ok(())
    }

    fn txn(&self, w: &mut dyn Write, r: &TxnResponse) -> Result<(), ExitError> {
        let verdict = if r.succeeded() { "SUCCESS" } else { "FAILURE" };
        writeln!(w, "{verdict}").map_err(io_err)?;
        for op in r.op_responses() {
            writeln!(w).map_err(io_err)?;
            match &op {
                TxnOpResponse::Put(p) => self.put(w, p)?,
                TxnOpResponse::Get(g) => self.get(w, g)?,
                TxnOpResponse::Delete(d) => self.del(w, d)?,
                TxnOpResponse::Txn(t) => {
                    writeln!(w, "unexpected response {t:?}").map_err(io_err)?
                }
            }
        }
        Ok(())
    }

    fn watch(&self, w: &mut dyn Write, b: &WatchBatch) -> Result<(), ExitError> {
        for e in b.events() {
            writeln!(w, "{}", e.r#type().as_str_name()).map_err(io_err)?;
            if let Some(p) = &e.prev_kv {
                print_kv(w, self.all(), p).map_err(io_err)?;
            }
            if let Some(kv) = &e.kv {
                print_kv(w, self.all(), kv).map_err(io_err)?;
            }
        }
        Ok(())
    }

    fn keep_alive(&self, w: &mut dyn Write, k: &KeepAlive) -> Result<(), ExitError> {
        writeln!(w, "lease {:016x} keepalived with TTL({})", k.id, k.ttl).map_err(io_err)
    }

    fn lease_expired(&self, w: &mut dyn Write, id: i64) -> Result<(), ExitError> {
        writeln!(w, "lease {id:016x} expired or revoked.").map_err(io_err)
    }

    fn member_add(
        &self,
        w: &mut dyn Write,
        r: &MemberAddResponse,
        name: &str,
    ) -> Result<(), ExitError> {
        let cluster = r.header().map_or(0, |h| h.cluster_id);
        let Some(new) = r.member() else {
            return Ok(());
        };
        (|| {
            writeln!(w, "Member {:16x} added to cluster {cluster:16x}", new.id)?;
            let mut conf = Vec::new();
            for m in r.members() {
                let n = if m.id == new.id { name } else { &m.name };
                for u in &m.peer_ur_ls {
                    conf.push(format!("{n}={u}"));
                }
            }
            writeln!(w)?;
            writeln!(w, "ETCD_NAME=\"{name}\"")?;
            writeln!(w, "ETCD_INITIAL_CLUSTER=\"{}\"", conf.join(","))?;
            writeln!(
                w,
                "ETCD_INITIAL_ADVERTISE_PEER_URLS=\"{}\"",
                new.peer_ur_ls.join(",")
            )?;
            writeln!(w, "ETCD_INITIAL_CLUSTER_STATE=\"existing\"")
        })()
        .map_err(io_err)
    }

    fn member_change(
        &self,
        w: &mut dyn Write,
        change: Change,
        id: u64,
        r: &MemberChangeResponse,
    ) -> Result<(), ExitError> {
        let cluster = r.header().map_or(0, |h| h.cluster_id);
        writeln!(
            w,
            "Member {id:16x} {} cluster {cluster:16x}",
            change.phrase()
        )
        .map_err(io_err)
    }

    fn hash_kv(&self, w: &mut dyn Write, hs: &[EpHash]) -> Result<(), ExitError> {
        for h in hs {
            writeln!(w, "{}, {}", h.ep, h.resp.hash()).map_err(io_err)?;
        }
        Ok(())
    }

    fn lease_list(&self, w: &mut dyn Write, r: &LeaseListResponse) -> Result<(), ExitError> {
        let ids = r.ids();
        (|| {
            writeln!(w, "found {} leases", ids.len())?;
            for id in &ids {
                writeln!(w, "{id:x}")?;
            }
            Ok(())
        })()
        .map_err(io_err)
    }
}
