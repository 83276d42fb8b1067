//! The `simple` format: etcdctl's default, human readable lines.

use std::io::Write;

use kv_client::cluster::MemberListResponse;
use kv_client::lease::{LeaseGrantResponse, LeaseRevokeResponse, LeaseTtlResponse};
use kv_client::maintenance::ActiveAlarm;
use kv_client::{DeleteResponse, GetResponse, KeyValue, PutResponse};

use super::{io_err, PrintOptions, Printer};
use crate::commands::endpoint::{EpHealth, EpStatus};
use crate::exit::ExitError;

/// Prints plain lines.
pub struct SimplePrinter {
    /// Options such as `--print-value-only`.
    pub opts: PrintOptions,
}

fn print_kv(w: &mut dyn Write, value_only: bool, kv: &KeyValue) -> std::io::Result<()> {
    if !value_only {
        w.write_all(&kv.key)?;
        w.write_all(b"\n")?;
    }
    w.write_all(&kv.value)?;
    w.write_all(b"\n")
}

impl Printer for SimplePrinter {
    fn name(&self) -> &'static str {
        "simple"
    }

    fn put(&self, w: &mut dyn Write, r: &PutResponse) -> Result<(), ExitError> {
        writeln!(w, "OK").map_err(io_err)?;
        if let Some(kv) = r.prev_kv() {
            print_kv(w, false, kv).map_err(io_err)?;
        }
        Ok(())
    }

    fn get(&self, w: &mut dyn Write, r: &GetResponse) -> Result<(), ExitError> {
        for kv in r.kvs() {
            print_kv(w, self.opts.value_only, kv).map_err(io_err)?;
        }
        Ok(())
    }

    fn del(&self, w: &mut dyn Write, r: &DeleteResponse) -> Result<(), ExitError> {
        writeln!(w, "{}", r.deleted()).map_err(io_err)?;
        for kv in r.prev_kvs() {
            print_kv(w, false, kv).map_err(io_err)?;
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

    fn lease_list(&self, w: &mut dyn Write, ids: &[i64]) -> Result<(), ExitError> {
        (|| {
            writeln!(w, "found {} leases", ids.len())?;
            for id in ids {
                writeln!(w, "{id:x}")?;
            }
            Ok(())
        })()
        .map_err(io_err)
    }
}
