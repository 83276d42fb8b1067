//! Raft snapshots of the state machine, kept as files in `<data-dir>/member/snap`:
//! the snapshot bytes in `snap-<random>.data` and, naming that file, its
//! meta in `current.snap`. openraft sends a snapshot by seeking and reading
//! its data (one chunk at a time), so the data file is exactly the snapshot
//! and neither building, sending nor installing one holds it in memory.
//!
//! Replacing a snapshot writes the new data file first and the meta last
//! (each fsynced and renamed into place), then removes older data files: a
//! crash in between leaves the previous meta naming its intact data file.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::RaftSnapshotBuilder;
use serde::{Deserialize, Serialize};

use super::{sm_error, Core};
use crate::mvcc::MvccError;
use crate::raft::types::{LogId, SnapshotMeta, StorageError, StoredMembership};
use crate::raft::TypeConfig;
use crate::storage::schema::{META_APPLIED, META_MEMBERSHIP};

/// The meta of the current snapshot, naming its data file: [`META_MAGIC`]
/// then JSON. Earlier versions kept the whole snapshot in this file as
/// `[meta len u32][meta][data]` (told apart by the magic, which as a
/// length would be absurd) and are converted when loaded.
const META_FILE: &str = "current.snap";
const META_MAGIC: &[u8] = b"KVSNAPMETA1\n";
const DATA_PREFIX: &str = "snap-";
const DATA_SUFFIX: &str = ".data";
/// A meta larger than this is not one kvd wrote (it is a few hundred bytes
/// per member).
const MAX_META_BYTES: u64 = 16 << 20;

/// Why a snapshot could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot file {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("snapshot meta {0}: undecodable: {1}")]
    Meta(PathBuf, String),
    #[error("snapshot meta {0} names {1:?}, which is no snapshot data file")]
    BadName(PathBuf, String),
    #[error("snapshot data {0} holds {1} bytes where its meta says {2}")]
    Length(PathBuf, u64, u64),
    #[error("snapshot: {0} in the store's META is undecodable: {1}")]
    StoreMeta(&'static str, String),
    #[error("snapshot: {0}")]
    Store(#[from] MvccError),
}

/// What `snapshot.meta` holds.
#[derive(Serialize, Deserialize)]
struct Stored {
    meta: SnapshotMeta,
    /// The data file, in the same directory.
    data: String,
    /// Its length in bytes.
    len: u64,
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotFileError + '_ {
    move |e| SnapshotFileError::Io(path.to_path_buf(), e)
}

pub struct SnapshotBuilder {
    core: Arc<Core>,
    dir: PathBuf,
}

impl SnapshotBuilder {
    pub fn new(core: Arc<Core>, dir: PathBuf) -> Self {
        SnapshotBuilder { core, dir }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<openraft::Snapshot<TypeConfig>, StorageError> {
        let store = self.core.store.clone();
        let gate = store.read_gate();
        let dir = self.dir.clone();
        let (meta, file) = tokio::task::spawn_blocking(move || {
            let (name, path) = new_data_file(&dir)?;
            let tmp = path.with_extension("tmp");
            let f = File::create(&tmp).map_err(io_at(&tmp))?;
            let mut out = BufWriter::with_capacity(1 << 16, f);
            let (len, vals) = {
                // The export reads on an owned transaction: a defragment
                // waits for it (redb cannot compact under a live read).
                let _gate = gate.blocking_read();
                store.export_durable(&[META_APPLIED, META_MEMBERSHIP], &mut out)?
            };
            let f = out
                .into_inner()
                .map_err(|e| SnapshotFileError::Io(tmp.clone(), e.into_error()))?;
            f.sync_all().map_err(io_at(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io_at(&path))?;
            let last_log_id: Option<LogId> =
                store_meta::<Option<LogId>>(vals.first(), META_APPLIED)?.flatten();
            let last_membership: StoredMembership =
                store_meta(vals.get(1), META_MEMBERSHIP)?.unwrap_or_default();
            let snapshot_id = match &last_log_id {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
                None => "empty".to_string(),
            };
            let meta = SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id,
            };
            commit(&dir, &meta, name, len)?;
            let file = File::open(&path).map_err(io_at(&path))?;
            Ok::<_, SnapshotFileError>((meta, file))
        })
        .await
        .map_err(sm_error)?
        .map_err(sm_error)?;
        Ok(openraft::Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

/// A META value the applier wrote: `None` when absent, an error naming the
/// key when present but undecodable (never read as "absent").
fn store_meta<T: serde::de::DeserializeOwned>(
    v: Option<&Option<Vec<u8>>>,
    key: &'static str,
) -> Result<Option<T>, SnapshotFileError> {
    match v.and_then(|v| v.as_deref()) {
        None => Ok(None),
        Some(b) => serde_json::from_slice(b)
            .map(Some)
            .map_err(|e| SnapshotFileError::StoreMeta(key, e.to_string())),
    }
}

/// A fresh, unused data file name in `dir` and its path.
fn new_data_file(dir: &Path) -> Result<(String, PathBuf), SnapshotFileError> {
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let name = format!("{DATA_PREFIX}{:016x}{DATA_SUFFIX}", rand::random::<u64>());
    let path = dir.join(&name);
    Ok((name, path))
}

/// Makes `name` (already durable in `dir`) the current snapshot: writes
/// its meta atomically, then removes every other data file.
fn commit(
    dir: &Path,
    meta: &SnapshotMeta,
    name: String,
    len: u64,
) -> Result<(), SnapshotFileError> {
    let stored = Stored {
        meta: meta.clone(),
        data: name.clone(),
        len,
    };
    let meta_path = dir.join(META_FILE);
    let json = serde_json::to_vec(&stored)
        .map_err(|e| SnapshotFileError::Meta(meta_path.clone(), e.to_string()))?;
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let mut f = File::create(&tmp).map_err(io_at(&tmp))?;
    f.write_all(META_MAGIC).map_err(io_at(&tmp))?;
    f.write_all(&json).map_err(io_at(&tmp))?;
    f.sync_all().map_err(io_at(&tmp))?;
    std::fs::rename(&tmp, &meta_path).map_err(io_at(&meta_path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))?;
    // Older snapshots are garbage now; a failure to remove one only costs space.
    let entries = std::fs::read_dir(dir).map_err(io_at(dir))?;
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        let stale = n != name.as_str()
            && n.starts_with(DATA_PREFIX)
            && (n.ends_with(DATA_SUFFIX) || n.ends_with(".tmp"));
        if stale {
            if let Err(err) = std::fs::remove_file(e.path()) {
                tracing::warn!(file = %e.path().display(), error = %err, "removing an old snapshot");
            }
        }
    }
    Ok(())
}

/// Saves the snapshot read from `data` (from its start to its end) as the
/// current one, copying it file to file.
pub fn save_from(
    dir: &Path,
    meta: &SnapshotMeta,
    data: &mut File,
) -> Result<(), SnapshotFileError> {
    let (name, path) = new_data_file(dir)?;
    let tmp = path.with_extension("tmp");
    let mut out = File::create(&tmp).map_err(io_at(&tmp))?;
    data.seek(SeekFrom::Start(0)).map_err(io_at(&tmp))?;
    let len = std::io::copy(data, &mut out).map_err(io_at(&tmp))?;
    out.sync_all().map_err(io_at(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_at(&path))?;
    commit(dir, meta, name, len)
}

/// The current snapshot, its data opened for reading; `None` if there is
/// none. Corruption (an undecodable meta, a data file missing or of another
/// length) is an error, not "no snapshot".
pub fn load(dir: &Path) -> Result<Option<openraft::Snapshot<TypeConfig>>, SnapshotFileError> {
    let meta_path = dir.join(META_FILE);
    let mut f = match File::open(&meta_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SnapshotFileError::Io(meta_path, e)),
    };
    let total = f.metadata().map_err(io_at(&meta_path))?.len();
    let mut magic = [0u8; META_MAGIC.len()];
    let is_meta = total >= magic.len() as u64
        && f.read_exact(&mut magic).is_ok()
        && magic.as_slice() == META_MAGIC;
    if !is_meta {
        f.seek(SeekFrom::Start(0)).map_err(io_at(&meta_path))?;
        upgrade_legacy(dir, f, total)?;
        return load_meta(dir);
    }
    if total > MAX_META_BYTES {
        return Err(SnapshotFileError::Meta(
            meta_path,
            format!("{total} bytes is no snapshot meta"),
        ));
    }
    drop(f);
    load_meta(dir)
}

/// Reads the current `current.snap` (in the meta layout) and opens the
/// data file it names.
fn load_meta(dir: &Path) -> Result<Option<openraft::Snapshot<TypeConfig>>, SnapshotFileError> {
    let meta_path = dir.join(META_FILE);
    let bytes = std::fs::read(&meta_path).map_err(io_at(&meta_path))?;
    let json = bytes
        .strip_prefix(META_MAGIC)
        .ok_or_else(|| SnapshotFileError::Meta(meta_path.clone(), "no meta magic".into()))?;
    let stored: Stored = serde_json::from_slice(json)
        .map_err(|e| SnapshotFileError::Meta(meta_path.clone(), e.to_string()))?;
    let plain = stored.data.starts_with(DATA_PREFIX)
        && stored.data.ends_with(DATA_SUFFIX)
        && !stored.data.contains(['/', '\\'])
        && !stored.data.contains("..");
    if !plain {
        return Err(SnapshotFileError::BadName(meta_path, stored.data));
    }
    let path = dir.join(&stored.data);
    let file = File::open(&path).map_err(io_at(&path))?;
    let len = file.metadata().map_err(io_at(&path))?.len();
    if len != stored.len {
        return Err(SnapshotFileError::Length(path, len, stored.len));
    }
    Ok(Some(openraft::Snapshot {
        meta: stored.meta,
        snapshot: Box::new(tokio::fs::File::from_std(file)),
    }))
}

/// Converts a snapshot in the single-file layout of earlier versions
/// (`f`, `total` bytes, at its start): its data is copied to a data file
/// and `current.snap` replaced by the meta naming it.
fn upgrade_legacy(dir: &Path, mut f: File, total: u64) -> Result<(), SnapshotFileError> {
    let path = dir.join(META_FILE);
    let mut len = [0u8; 4];
    f.read_exact(&mut len).map_err(io_at(&path))?;
    let len = u64::from(u32::from_le_bytes(len));
    if len > MAX_META_BYTES || len + 4 > total {
        return Err(SnapshotFileError::Meta(
            path,
            format!("meta length {len} in a {total}-byte file"),
        ));
    }
    let mut json = vec![0u8; len as usize];
    f.read_exact(&mut json).map_err(io_at(&path))?;
    let meta: SnapshotMeta = serde_json::from_slice(&json)
        .map_err(|e| SnapshotFileError::Meta(path.clone(), e.to_string()))?;
    let (name, data_path) = new_data_file(dir)?;
    let tmp = data_path.with_extension("tmp");
    let mut out = File::create(&tmp).map_err(io_at(&tmp))?;
    let copied = std::io::copy(&mut f, &mut out).map_err(io_at(&tmp))?;
    out.sync_all().map_err(io_at(&tmp))?;
    std::fs::rename(&tmp, &data_path).map_err(io_at(&data_path))?;
    commit(dir, &meta, name, copied)?;
    tracing::info!(file = %path.display(), "converted a snapshot to the data + meta layout");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str) -> SnapshotMeta {
        SnapshotMeta {
            snapshot_id: id.to_string(),
            ..Default::default()
        }
    }

    async fn read_all(s: openraft::Snapshot<TypeConfig>) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        let mut f = s.snapshot;
        f.read_to_end(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn saved_snapshots_load_and_replace_each_other() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(load(d.path()).expect("empty dir").is_none());
        let src = d.path().join("src");
        for (id, bytes) in [("a", b"first".as_slice()), ("b", b"second".as_slice())] {
            std::fs::write(&src, bytes).expect("write");
            let mut f = File::open(&src).expect("open");
            save_from(d.path(), &meta(id), &mut f).expect("save");
            let s = load(d.path()).expect("load").expect("a snapshot");
            assert_eq!(s.meta.snapshot_id, id);
            assert_eq!(read_all(s).await, bytes);
        }
        let data_files = std::fs::read_dir(d.path())
            .expect("read dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(DATA_SUFFIX))
            .count();
        assert_eq!(data_files, 1, "the older data file is removed");
    }

    #[tokio::test]
    async fn a_legacy_single_file_snapshot_is_converted() {
        let d = tempfile::tempdir().expect("tempdir");
        let json = serde_json::to_vec(&meta("old")).expect("json");
        let mut legacy = (json.len() as u32).to_le_bytes().to_vec();
        legacy.extend_from_slice(&json);
        legacy.extend_from_slice(b"payload");
        std::fs::write(d.path().join(META_FILE), legacy).expect("write");
        let s = load(d.path()).expect("load").expect("a snapshot");
        assert_eq!(s.meta.snapshot_id, "old");
        assert_eq!(read_all(s).await, b"payload");
        // Converted once: loaded again, from the new layout.
        let bytes = std::fs::read(d.path().join(META_FILE)).expect("read");
        assert!(bytes.starts_with(META_MAGIC));
        let s = load(d.path()).expect("load").expect("a snapshot");
        assert_eq!(read_all(s).await, b"payload");
    }

    #[test]
    fn corruption_is_an_error_naming_what_is_bad() {
        let d = tempfile::tempdir().expect("tempdir");
        let meta_file = |json: &str| {
            let mut b = META_MAGIC.to_vec();
            b.extend_from_slice(json.as_bytes());
            std::fs::write(d.path().join(META_FILE), b).expect("write");
        };
        meta_file("{\"meta\":");
        let e = load(d.path()).expect_err("undecodable meta").to_string();
        assert!(
            e.contains("current.snap") && e.contains("undecodable"),
            "{e}"
        );
        let escape = serde_json::json!({"meta": meta("x"), "data": "../../etc/passwd", "len": 1});
        meta_file(&escape.to_string());
        let e = load(d.path())
            .expect_err("a path outside the dir")
            .to_string();
        assert!(e.contains("no snapshot data file"), "{e}");
        let missing = serde_json::json!({"meta": meta("x"), "data": "snap-00.data", "len": 1});
        meta_file(&missing.to_string());
        assert!(load(d.path()).is_err(), "a missing data file is an error");
        std::fs::write(d.path().join("snap-00.data"), b"abc").expect("write");
        let e = load(d.path()).expect_err("wrong length").to_string();
        assert!(e.contains("3 bytes") && e.contains("says 1"), "{e}");
        let bad = Some(b"{\"leader_id".to_vec());
        let e = store_meta::<Option<LogId>>(Some(&bad), META_APPLIED)
            .expect_err("undecodable applied id");
        assert!(e.to_string().contains(META_APPLIED), "{e}");
        assert!(store_meta::<Option<LogId>>(Some(&None), META_APPLIED)
            .expect("absent")
            .is_none());
    }
}
