//! `snapshot restore` (issue 14): a new kvd data dir from an etcd v3
//! snapshot file, written by etcd (`etcdctl snapshot save`, `etcdutl`) or by
//! kvd's Maintenance.Snapshot.
//!
//! What the file carries goes into `member/db` through the store's own
//! writers: every MVCC row (puts and tombstones, with their revisions,
//! versions and leases) in kvd's row encoding, the compaction (run by the
//! store's compaction, so rows an unfinished etcd compaction left behind go
//! too), leases, alarms, users, roles and the auth flag and revision. What
//! it does not carry, as with etcd's restore: the members and the cluster
//! ID (they come from the flags; kvd derives them at first start, as for a
//! new cluster) and the raft log (the restored member starts a new one).
//!
//! The dir is built under a temporary name beside the target and renamed
//! into place only when complete and fsynced: a refused or failed restore
//! leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Parser;
use kv_etcdsnap::{OpenOptions, Snapshot};
use kv_proto::etcdserverpb::AlarmMember;
use kv_proto::mvccpb::KeyValue;
use prost::Message;

use super::schema::{ALARMS, KV, LEASES, META};
use crate::auth::state::{AuthState, Dirty};
use crate::config::{parse_url, Config};
use crate::lease::MAX_LEASE_TTL;
use crate::mvcc::row::{encode_row, KIND_PUT, KIND_TOMBSTONE};
use crate::mvcc::{MvccError, Revision, Store, WriteBatch};

/// Rows written per store commit: bounds the memory a large snapshot needs.
const BATCH_BYTES: usize = 8 << 20;

/// What `snapshot restore` is asked to do (etcdctl 3.4's flags).
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    /// The snapshot file.
    pub snapshot: PathBuf,
    /// The data dir to create; `<name>.kvd` when `None` (kvd's default).
    pub data_dir: Option<PathBuf>,
    /// A dedicated raft log directory; must not exist yet (kvd creates it at start).
    pub wal_dir: Option<PathBuf>,
    /// This member's name.
    pub name: String,
    /// `name=peer-url,...` of the new cluster.
    pub initial_cluster: String,
    /// The new cluster's token.
    pub initial_cluster_token: String,
    /// This member's peer URLs, as in `--initial-cluster`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// Accept a file without (or with a wrong) SHA-256 trailer.
    pub skip_hash_check: bool,
}

impl RestoreConfig {
    /// The data dir the restore creates.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.kvd", self.name)))
    }
}

/// What a restore carried into the new data dir.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// The data dir created.
    pub data_dir: PathBuf,
    /// The store's revision.
    pub revision: i64,
    /// The compaction revision (-1: none).
    pub compact_revision: i64,
    /// MVCC rows (every revision of every key, tombstones included).
    pub rows: u64,
    pub leases: u64,
    pub users: u64,
    pub roles: u64,
    pub alarms: u64,
    pub auth_enabled: bool,
}

/// Why a restore was refused or failed. The texts are etcdctl's where it
/// has the case.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("data-dir {0:?} exists")]
    DataDirExists(String),
    #[error("wal-dir {0:?} exists")]
    WalDirExists(String),
    #[error("{0}")]
    Flags(String),
    #[error("open {0}: {1}")]
    Open(String, String),
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    #[error("expected sha256 {}, got {}", go_bytes(.expected), go_bytes(.got))]
    HashMismatch { expected: Vec<u8>, got: Vec<u8> },
    #[error("invalid snapshot: {0}")]
    Snapshot(kv_etcdsnap::Error),
    #[error("invalid snapshot: {0}")]
    Invalid(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("building the data dir: {0}")]
    Store(#[from] MvccError),
}

/// A byte slice as Go's `%v` prints it (`[1 2 3]`), as in etcd's hash text.
fn go_bytes(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(u8::to_string).collect();
    format!("[{}]", parts.join(" "))
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn snapshot_error(e: kv_etcdsnap::Error) -> RestoreError {
    match e {
        kv_etcdsnap::Error::NoTrailer(_) => RestoreError::MissingHash,
        kv_etcdsnap::Error::HashMismatch { expected, actual } => RestoreError::HashMismatch {
            expected: unhex(&expected),
            got: unhex(&actual),
        },
        e => RestoreError::Snapshot(e),
    }
}

fn invalid(e: impl std::fmt::Display) -> RestoreError {
    RestoreError::Invalid(e.to_string())
}

/// Checks the bootstrap flags as kvd will read them at first start (and as
/// etcd's VerifyBootstrap does): this member is in `--initial-cluster`, with
/// the peer URLs it advertises, and every URL parses.
fn check_flags(cfg: &RestoreConfig) -> Result<(), RestoreError> {
    let flags = RestoreError::Flags;
    let kvd = Config::try_parse_from([
        "kvd".to_string(),
        format!("--name={}", cfg.name),
        format!("--initial-cluster={}", cfg.initial_cluster),
        format!("--initial-cluster-token={}", cfg.initial_cluster_token),
        format!(
            "--initial-advertise-peer-urls={}",
            cfg.initial_advertise_peer_urls.join(",")
        ),
    ])
    .map_err(|e| flags(e.to_string()))?;
    let members = kvd.initial_members().map_err(|e| flags(e.to_string()))?;
    for url in members.iter().flat_map(|(_, urls)| urls) {
        parse_url(url).map_err(|e| flags(e.to_string()))?;
    }
    let mine: Vec<&String> = members
        .iter()
        .filter(|(n, _)| *n == cfg.name)
        .flat_map(|(_, urls)| urls)
        .collect();
    let mut want = mine.clone();
    want.sort();
    let mut have: Vec<&String> = cfg.initial_advertise_peer_urls.iter().collect();
    have.sort();
    if want != have {
        return Err(flags(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
            cfg.name,
            mine.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
            cfg.initial_advertise_peer_urls.join(",")
        )));
    }
    Ok(())
}

/// Creates a kvd data dir from the snapshot `cfg` names. Nothing is left
/// behind on failure.
pub fn restore(cfg: &RestoreConfig) -> Result<Restored, RestoreError> {
    check_flags(cfg)?;
    let data_dir = cfg.data_dir();
    // etcdctl 3.4 refuses any existing dir; an empty one (a fresh volume)
    // is accepted, as etcd 3.5+ does.
    if let Ok(mut entries) = std::fs::read_dir(&data_dir) {
        if entries.next().is_some() {
            return Err(RestoreError::DataDirExists(data_dir.display().to_string()));
        }
    } else if data_dir.exists() {
        return Err(RestoreError::DataDirExists(data_dir.display().to_string()));
    }
    if let Some(w) = &cfg.wal_dir {
        if w.exists() {
            return Err(RestoreError::WalDirExists(w.display().to_string()));
        }
    }
    let path = cfg.snapshot.display().to_string();
    if let Err(e) = std::fs::metadata(&cfg.snapshot) {
        return Err(RestoreError::Open(path, go_io_text(&e)));
    }
    let opts = OpenOptions {
        skip_hash_check: cfg.skip_hash_check,
    };
    let snap = Snapshot::open_with(&cfg.snapshot, opts).map_err(snapshot_error)?;

    let staging = staging_dir(&data_dir);
    let result = build(&snap, &staging.join("member"))
        .and_then(|r| publish(&staging, &data_dir).map(|()| r));
    match result {
        Ok(mut r) => {
            r.data_dir = data_dir;
            Ok(r)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Go's wording of an open error (`no such file or directory`).
fn go_io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

/// `<parent>/.<name>.restoring-<pid>`: on the target's file system, so the
/// final rename is atomic.
fn staging_dir(data_dir: &Path) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".to_string());
    data_dir.with_file_name(format!(".{name}.restoring-{}", std::process::id()))
}

/// fsyncs the staged dir and renames it to `data_dir` (replacing an empty dir).
fn publish(staging: &Path, data_dir: &Path) -> Result<(), RestoreError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e| RestoreError::Io(p, e)
    };
    let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
    sync(&staging.join("member")).map_err(io(staging))?;
    sync(staging).map_err(io(staging))?;
    std::fs::rename(staging, data_dir).map_err(io(data_dir))?;
    crate::storage::snapshot::sync_parent(data_dir)
        .map_err(|e| RestoreError::Io(data_dir.display().to_string(), std::io::Error::other(e)))
}

/// Writes the snapshot's contents into a new store at `member_dir/db`.
fn build(snap: &Snapshot, member_dir: &Path) -> Result<Restored, RestoreError> {
    std::fs::create_dir_all(member_dir)
        .map_err(|e| RestoreError::Io(member_dir.display().to_string(), e))?;
    let (store, _) = Store::open(&member_dir.join("db"))?;
    let mut out = Restored::default();

    // Rows, in revision order, a batch per commit.
    let mut rows = snap.rows().map_err(snapshot_error)?.peekable();
    let mut last: Option<Revision> = None;
    while rows.peek().is_some() {
        store.write(false, |st, wtx| {
            let mut kv = wtx.open_table(KV)?;
            let mut bytes = 0usize;
            while bytes < BATCH_BYTES {
                let Some(row) = rows.next() else { break };
                let row = row.map_err(|e| MvccError::Storage(format!("invalid snapshot: {e}")))?;
                let rev = Revision::new(row.rev.main, row.rev.sub);
                check_row(&row, rev, last).map_err(MvccError::Storage)?;
                last = Some(rev);
                // etcd's tombstone holds the key alone; kvd's also its revision.
                let (kind, value) = if row.tombstone {
                    let tomb = KeyValue {
                        key: row.kv.key,
                        mod_revision: rev.main,
                        ..KeyValue::default()
                    };
                    (KIND_TOMBSTONE, tomb)
                } else {
                    (KIND_PUT, row.kv)
                };
                let enc = encode_row(kind, &value);
                bytes += enc.len();
                kv.insert(rev.to_key(), enc.as_slice())?;
                st.rev = st.rev.max(rev.main);
                out.rows += 1;
            }
            Ok(())
        })?;
    }

    let meta = snap.meta().map_err(snapshot_error)?;
    let compact = meta
        .scheduled_compact_rev
        .into_iter()
        .chain(meta.finished_compact_rev)
        .max();
    let leases = snap.leases().map_err(snapshot_error)?;
    // The alarm bucket's keys are the marshaled alarms; values are empty.
    let alarms = snap.keys_or_empty(kv_etcdsnap::BUCKET_ALARM)?;
    let auth = auth_state(snap)?;

    // The index over the rows just written: the compaction reads it.
    store.reload()?;
    store.write(true, |st, wtx| {
        {
            let mut kv = wtx.open_table(KV)?;
            let mut b = WriteBatch::new(st, &mut kv);
            if let Some(c) = compact.filter(|c| *c > 0) {
                // The store's own compaction: also removes rows an
                // interrupted etcd compaction (scheduled > finished) left.
                b.compact(c)?;
            }
        }
        // etcd's revision never goes below its compaction.
        st.rev = st.rev.max(st.compact_rev);
        let mut lt = wtx.open_table(LEASES)?;
        for l in &leases {
            if l.id == 0 || l.ttl > MAX_LEASE_TTL {
                return Err(MvccError::Storage(format!(
                    "invalid snapshot: lease {:x} with ttl {}",
                    l.id, l.ttl
                )));
            }
            lt.insert(l.id, l.ttl)?;
        }
        let mut at = wtx.open_table(ALARMS)?;
        for v in &alarms {
            let a = AlarmMember::decode(v.as_slice())
                .map_err(|e| MvccError::Storage(format!("invalid snapshot: alarm: {e}")))?;
            at.insert((a.member_id, a.alarm), ())?;
        }
        let mut mt = wtx.open_table(META)?;
        let mut dirty = vec![Dirty::Enabled, Dirty::Revision];
        dirty.extend(auth.users.keys().cloned().map(Dirty::User));
        dirty.extend(auth.roles.keys().cloned().map(Dirty::Role));
        for d in &dirty {
            if let (k, Some(v)) = auth.row(d) {
                mt.insert(k.as_str(), v.as_slice())?;
            }
        }
        out.revision = st.rev;
        out.compact_revision = st.compact_rev;
        Ok(())
    })?;
    out.leases = leases.len() as u64;
    out.alarms = alarms.len() as u64;
    out.users = auth.users.len() as u64;
    out.roles = auth.roles.len() as u64;
    out.auth_enabled = auth.enabled;
    drop(store);
    Ok(out)
}

/// A row is refused when its revision is not after the previous one or
/// its value contradicts its revision (kvd's reads rely on both).
fn check_row(row: &kv_etcdsnap::Row, rev: Revision, last: Option<Revision>) -> Result<(), String> {
    let bad = |why: &str| format!("invalid snapshot: row {}.{}: {why}", rev.main, rev.sub);
    if rev.main < 1 || rev.sub < 0 {
        return Err(bad("revision out of range"));
    }
    if last.is_some_and(|l| l >= rev) {
        return Err(bad("revisions out of order"));
    }
    if row.kv.key.is_empty() {
        return Err(bad("empty key"));
    }
    if !row.tombstone
        && (row.kv.mod_revision != rev.main
            || row.kv.create_revision < 1
            || row.kv.create_revision > rev.main
            || row.kv.version < 1)
    {
        return Err(bad(
            "revisions or version of the value do not match its row",
        ));
    }
    Ok(())
}

/// Users, roles, the enabled flag and the auth revision as kvd's auth state.
fn auth_state(snap: &Snapshot) -> Result<AuthState, RestoreError> {
    let info = snap.auth().map_err(snapshot_error)?;
    let mut users = BTreeMap::new();
    for u in snap.users().map_err(snapshot_error)? {
        let name = String::from_utf8(u.name.clone()).map_err(|_| invalid("user name not UTF-8"))?;
        users.insert(name, u);
    }
    let mut roles = BTreeMap::new();
    for r in snap.roles().map_err(snapshot_error)? {
        let name = String::from_utf8(r.name.clone()).map_err(|_| invalid("role name not UTF-8"))?;
        roles.insert(name, r);
    }
    Ok(AuthState {
        enabled: info.enabled,
        // etcd's auth store starts at revision 1, as kvd's.
        revision: info.revision.max(1),
        users,
        roles,
    })
}

/// Keys of a bucket the snapshot may not have.
trait KeysOrEmpty {
    fn keys_or_empty(&self, bucket: &[u8]) -> Result<Vec<Vec<u8>>, RestoreError>;
}

impl KeysOrEmpty for Snapshot {
    fn keys_or_empty(&self, bucket: &[u8]) -> Result<Vec<Vec<u8>>, RestoreError> {
        if !self.bucket_names().any(|b| b == bucket) {
            return Ok(Vec::new());
        }
        self.records(bucket)
            .map_err(snapshot_error)?
            .map(|r| r.map(|(k, _)| k).map_err(snapshot_error))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(go_bytes(&[1, 22, 255]), "[1 22 255]");
        assert_eq!(unhex("01ff10"), vec![1, 255, 16]);
        let e = RestoreError::DataDirExists("a.kvd".into());
        assert_eq!(e.to_string(), "data-dir \"a.kvd\" exists");
    }
}
