//! One printer per output format. Printers only format responses; they
//! never make RPCs (commands do, see [`crate::commands`]).

pub mod auth;
pub mod fields;
pub mod json;
pub mod json_more;
pub mod protobuf;
pub mod simple;
pub mod table;

use std::io::Write;

use kv_client::cluster::MemberListResponse;
use kv_client::lease::{
    LeaseGrantResponse, LeaseListResponse, LeaseRevokeResponse, LeaseTtlResponse,
};
use kv_client::maintenance::ActiveAlarm;
use kv_client::{DeleteResponse, GetResponse, PutResponse};

use kv_client::{MemberAddResponse, MemberChangeResponse, TxnResponse, WatchBatch};

use crate::commands::endpoint::{EpHash, EpHealth, EpStatus};
use crate::commands::lease::KeepAlive;
use crate::commands::member::Change;
use crate::commands::Output;
use crate::exit::ExitError;
use crate::global::OutputFormat;

/// Printer options that some commands set (e.g. `get --print-value-only`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PrintOptions {
    /// Print only values (simple format).
    pub value_only: bool,
    /// Print keys and values as `\xNN` escapes (simple format, `--hex`).
    pub hex: bool,
}

/// Formats command outputs. Every method defaults to "not supported".
pub trait Printer {
    /// The format's name, used in "not supported" errors.
    fn name(&self) -> &'static str;

    /// Prints a `put` answer.
    fn put(&self, _w: &mut dyn Write, _r: &PutResponse) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints a `get` answer.
    fn get(&self, _w: &mut dyn Write, _r: &GetResponse) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints a `del` answer.
    fn del(&self, _w: &mut dyn Write, _r: &DeleteResponse) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints a `lease grant` answer.
    fn lease_grant(&self, _w: &mut dyn Write, _r: &LeaseGrantResponse) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints a `lease revoke` answer for lease `id`.
    fn lease_revoke(
        &self,
        _w: &mut dyn Write,
        _id: i64,
        _r: &LeaseRevokeResponse,
    ) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints a `lease timetolive` answer; `keys` if they were asked for.
    fn lease_ttl(
        &self,
        _w: &mut dyn Write,
        _r: &LeaseTtlResponse,
        _keys: bool,
    ) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints a `compaction` result (the same in every format, as in etcdctl).
    fn compaction(&self, w: &mut dyn Write, rev: i64) -> Result<(), ExitError> {
        writeln!(w, "compacted revision {rev}").map_err(io_err)
    }

    /// Prints `alarm list`.
    fn alarm_list(&self, _w: &mut dyn Write, _alarms: &[ActiveAlarm]) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints `member list`.
    fn member_list(&self, _w: &mut dyn Write, _r: &MemberListResponse) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints `endpoint health`; the simple format writes to `err`, as
    /// etcdctl does.
    fn endpoint_health(
        &self,
        _w: &mut dyn Write,
        _err: &mut dyn Write,
        _hs: &[EpHealth],
    ) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints `endpoint status`.
    fn endpoint_status(&self, _w: &mut dyn Write, _st: &[EpStatus]) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints `lease list`.
    fn lease_list(&self, _w: &mut dyn Write, _r: &LeaseListResponse) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints a `txn` answer.
    fn txn(&self, _w: &mut dyn Write, _r: &TxnResponse) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints one batch of `watch` events.
    fn watch(&self, _w: &mut dyn Write, _b: &WatchBatch) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints one `lease keep-alive` renewal.
    fn keep_alive(&self, _w: &mut dyn Write, _k: &KeepAlive) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Says that `lease keep-alive` found the lease gone (only the simple
    /// format says anything, as in etcdctl).
    fn lease_expired(&self, _w: &mut dyn Write, _id: i64) -> Result<(), ExitError> {
        Ok(())
    }

    /// Prints `member add`'s answer; `name` is the new member's name.
    fn member_add(
        &self,
        _w: &mut dyn Write,
        _r: &MemberAddResponse,
        _name: &str,
    ) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints `member remove|update|promote`'s answer for member `id`.
    fn member_change(
        &self,
        _w: &mut dyn Write,
        _change: Change,
        _id: u64,
        _r: &MemberChangeResponse,
    ) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints `endpoint hashkv`.
    fn hash_kv(&self, _w: &mut dyn Write, _hs: &[EpHash]) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints an `auth`, `user` or `role` answer (see [`auth::print`] for
    /// the parts that are the same in every format).
    fn auth(
        &self,
        _w: &mut dyn Write,
        _out: &crate::commands::auth::AuthOutput,
    ) -> Result<(), ExitError> {
        Err(unsupported(self.name()))
    }

    /// Prints `version` (the same in every format, as in etcdctl).
    fn version(&self, w: &mut dyn Write, version: &str, api: &str) -> Result<(), ExitError> {
        writeln!(w, "kvctl version: {version}\nAPI version: {api}").map_err(io_err)
    }
}

fn unsupported(name: &str) -> ExitError {
    ExitError::bad_feature(format!("{name} not supported as output format"))
}

/// An I/O failure while writing output.
pub(crate) fn io_err(e: std::io::Error) -> ExitError {
    ExitError::new(6, e.to_string())
}

/// The column names of `member list`.
pub const MEMBER_HEADER: [&str; 6] = [
    "ID",
    "STATUS",
    "NAME",
    "PEER ADDRS",
    "CLIENT ADDRS",
    "IS LEARNER",
];

/// The cells of `member list`, as etcdctl's `makeMemberListTable`.
pub fn member_rows(r: &MemberListResponse) -> Vec<Vec<String>> {
    r.members()
        .iter()
        .map(|m| {
            let status = if m.name.is_empty() {
                "unstarted"
            } else {
                "started"
            };
            vec![
                format!("{:x}", m.id),
                status.to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

/// Formats a duration as Go's `time.Duration.String` does (e.g. `1.01217ms`).
pub fn go_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    let (unit, div) = if ns < 1_000 {
        return format!("{ns}ns");
    } else if ns < 1_000_000 {
        ("µs", 1_000)
    } else if ns < 1_000_000_000 {
        ("ms", 1_000_000)
    } else {
        ("s", 1_000_000_000)
    };
    let int = ns / div;
    let frac = ns % div;
    if frac == 0 {
        return format!("{int}{unit}");
    }
    let digits = div.to_string().len() - 1;
    let f = format!("{frac:0digits$}");
    format!("{int}.{}{unit}", f.trim_end_matches('0'))
}

/// The column names of `endpoint status`.
pub const STATUS_HEADER: [&str; 10] = [
    "ENDPOINT",
    "ID",
    "VERSION",
    "DB SIZE",
    "IS LEADER",
    "IS LEARNER",
    "RAFT TERM",
    "RAFT INDEX",
    "RAFT APPLIED INDEX",
    "ERRORS",
];

/// The cells of `endpoint status`, as etcdctl's `makeEndpointStatusTable`.
pub fn status_rows(st: &[EpStatus]) -> Vec<Vec<String>> {
    st.iter()
        .map(|s| {
            let r = &s.resp.0;
            let id = r.header.as_ref().map_or(0, |h| h.member_id);
            vec![
                s.ep.clone(),
                format!("{id:x}"),
                r.version.clone(),
                humanize_bytes(r.db_size.max(0) as u64),
                (id == r.leader).to_string(),
                r.is_learner.to_string(),
                r.raft_term.to_string(),
                r.raft_index.to_string(),
                r.raft_applied_index.to_string(),
                r.errors.join(", "),
            ]
        })
        .collect()
}

/// Formats a size as go-humanize's `Bytes` (SI units: `25 kB`, `1.2 MB`).
pub fn humanize_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let val = (n as f64 / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

/// The printer for a format.
pub fn new_printer(format: OutputFormat, opts: PrintOptions) -> Box<dyn Printer> {
    match format {
        OutputFormat::Simple => Box::new(simple::SimplePrinter { opts }),
        OutputFormat::Json => Box::new(json::JsonPrinter),
        OutputFormat::Fields => Box::new(fields::FieldsPrinter),
        OutputFormat::Table => Box::new(table::TablePrinter),
        OutputFormat::Protobuf => Box::new(protobuf::ProtobufPrinter),
    }
}

/// Prints any command output with `printer`.
pub fn print(
    printer: &dyn Printer,
    w: &mut dyn Write,
    err: &mut dyn Write,
    out: &Output,
) -> Result<(), ExitError> {
    match out {
        Output::LeaseList(r) => printer.lease_list(w, r),
        Output::EndpointHealth(hs) => printer.endpoint_health(w, err, hs),
        Output::EndpointStatus(st) => printer.endpoint_status(w, st),
        Output::Put(r) => printer.put(w, r),
        Output::Get(r) => printer.get(w, r),
        Output::Del(r) => printer.del(w, r),
        Output::LeaseGrant(r) => printer.lease_grant(w, r),
        Output::LeaseRevoke(id, r) => printer.lease_revoke(w, *id, r),
        Output::LeaseTimeToLive(r, keys) => printer.lease_ttl(w, r, *keys),
        Output::Compaction(rev) => printer.compaction(w, *rev),
        Output::AlarmList(a) => printer.alarm_list(w, a),
        Output::MemberList(r) => printer.member_list(w, r),
        Output::Version {
            version,
            api_version,
        } => printer.version(w, version, api_version),
        Output::Txn(r) => printer.txn(w, r),
        Output::Prompt(p) => writeln!(w, "{p}").map_err(io_err),
        Output::Notice(n) => writeln!(err, "{n}").map_err(io_err),
        Output::Watch(b) => printer.watch(w, b),
        Output::KeepAlive(k) => printer.keep_alive(w, k),
        Output::LeaseExpired(id) => printer.lease_expired(w, *id),
        Output::MemberAdd(r, name) => printer.member_add(w, r, name),
        Output::MemberChange(c, id, r) => printer.member_change(w, *c, *id, r),
        Output::AlarmDisarm(a) => printer.alarm_list(w, a),
        Output::HashKv(hs) => printer.hash_kv(w, hs),
        Output::Auth(a) => auth::print(printer, w, a),
        // kv-client does not hand out MoveLeader's response; etcd's has
        // no fields set (so etcdctl's JSON is `{}`), and only simple and
        // json print it.
        Output::MoveLeader(from, to) => match printer.name() {
            "simple" => {
                writeln!(w, "Leadership transferred from {from:x} to {to:x}").map_err(io_err)
            }
            "json" => writeln!(w, "{{}}").map_err(io_err),
            name => Err(unsupported(name)),
        },
        // The same in every format, as in etcdctl.
        Output::MirrorTotal(n) => writeln!(w, "{n}").map_err(io_err),
        Output::SnapshotSaved(path) => writeln!(w, "Snapshot saved at {path}").map_err(io_err),
        Output::SnapshotStatus(st) => w
            .write_all(crate::commands::snapshot_status::render(printer.name(), st).as_bytes())
            .map_err(io_err),
        Output::Defrag(list) => {
            for (ep, failed) in list {
                match failed {
                    None => writeln!(w, "Finished defragmenting etcd member[{ep}]"),
                    Some(e) => writeln!(err, "Failed to defragment etcd member[{ep}] ({e})"),
                }
                .map_err(io_err)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn bytes_like_go_humanize() {
        use super::humanize_bytes;
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(24576), "25 kB");
        assert_eq!(humanize_bytes(1_234_567), "1.2 MB");
    }

    #[test]
    fn durations_like_go() {
        assert_eq!(go_duration(Duration::from_nanos(1_012_170)), "1.01217ms");
        assert_eq!(go_duration(Duration::from_nanos(500)), "500ns");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::from_micros(20)), "20µs");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
    }
}
