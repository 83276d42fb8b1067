//! Raft snapshots of the state machine. The state machine is the store,
//! durable on its own, so a snapshot is no copy of it: building one makes
//! the store's state durable and reports where that state is (the applied
//! log id and membership recorded in it), which lets openraft drop the log
//! up to there. Bytes exist only when a member must be sent the state: the
//! store is exported then (see [`crate::raft::snapshot_file`]), from the
//! read transaction the snapshot's meta was read from, so the two agree.
//!
//! etcd works the same way: its raft snapshot is a small record, and the
//! database sent to a follower is taken from the live backend at send time.
//! Earlier kvd versions exported the whole store into `<data-dir>/member/snap`
//! at every snapshot (twice the disk, and a full copy every
//! `--snapshot-count` entries); [`remove_stale_files`] deletes those at start.

use std::io::{BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::RaftSnapshotBuilder;
use redb::ReadTransaction;
use tokio::sync::OwnedRwLockReadGuard;

use super::{sm_error, Core};
use crate::mvcc::{MvccError, Store};
use crate::raft::snapshot_file::SnapshotFile;
use crate::raft::types::{LogId, SnapshotMeta, StorageError, StoredMembership};
use crate::raft::TypeConfig;
use crate::storage::schema::{META, META_APPLIED, META_MEMBERSHIP};

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot: {0} in the store's META is undecodable: {1}")]
    StoreMeta(&'static str, String),
    #[error("snapshot: {0}")]
    Store(#[from] MvccError),
}

impl From<redb::StorageError> for SnapshotFileError {
    fn from(e: redb::StorageError) -> Self {
        SnapshotFileError::Store(e.into())
    }
}

impl From<redb::TableError> for SnapshotFileError {
    fn from(e: redb::TableError) -> Self {
        SnapshotFileError::Store(e.into())
    }
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
        // Shared with other long reads, exclusive with a defragment (redb
        // cannot compact under a live read transaction).
        let gate = store.read_gate().read_owned().await;
        let dir = self.dir.clone();
        let snap = tokio::task::spawn_blocking(move || {
            // Durable first, and the meta read from exactly that state:
            // openraft purges the log up to it, so the store must not lose
            // it in a crash.
            let rtx = store.durable_read()?;
            snapshot_of(rtx, gate, dir)
        })
        .await
        .map_err(sm_error)?
        .map_err(sm_error)?;
        let index = snap.meta.last_log_id.map_or(0, |l| l.index);
        tracing::info!(index, snapshot = %snap.meta.snapshot_id, "saved snapshot");
        Ok(snap)
    }
}

/// The store's last committed state as a snapshot; `None` while nothing
/// was ever applied. Exported only if read.
pub async fn current(
    store: &Arc<Store>,
    dir: &Path,
) -> Result<Option<openraft::Snapshot<TypeConfig>>, SnapshotFileError> {
    let gate = store.read_gate().read_owned().await;
    let rtx = store.read_txn()?.txn;
    let snap = snapshot_of(rtx, gate, dir.to_path_buf())?;
    Ok(snap.meta.last_log_id.is_some().then_some(snap))
}

/// The snapshot of the state `rtx` sees: its meta now, its bytes exported
/// from `rtx` when first read (`gate` held until then).
fn snapshot_of(
    rtx: ReadTransaction,
    gate: OwnedRwLockReadGuard<()>,
    dir: PathBuf,
) -> Result<openraft::Snapshot<TypeConfig>, SnapshotFileError> {
    let (last_log_id, last_membership) = {
        let meta = rtx.open_table(META)?;
        let applied = meta.get(META_APPLIED)?.map(|g| g.value().to_vec());
        let membership = meta.get(META_MEMBERSHIP)?.map(|g| g.value().to_vec());
        let last_log_id: Option<LogId> =
            store_meta::<Option<LogId>>(applied.as_deref(), META_APPLIED)?.flatten();
        let last_membership: StoredMembership =
            store_meta(membership.as_deref(), META_MEMBERSHIP)?.unwrap_or_default();
        (last_log_id, last_membership)
    };
    // Named by the state it holds (openraft expects the snapshot it built
    // back from get_current_snapshot); a transfer restarted under the same
    // name starts at offset 0, which the receiver takes as a new one.
    let snapshot_id = match &last_log_id {
        Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
        None => "empty".to_string(),
    };
    let meta = SnapshotMeta {
        last_log_id,
        last_membership,
        snapshot_id,
    };
    let export = Box::new(move || {
        let _gate = gate;
        export_file(&rtx, &dir)
    });
    Ok(openraft::Snapshot {
        meta,
        snapshot: Box::new(SnapshotFile::lazy(export)),
    })
}

/// Exports the state `rtx` sees into an unnamed file in `dir` (on the data
/// disk; gone with its last handle, even after a crash), rewound.
fn export_file(rtx: &ReadTransaction, dir: &Path) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    let f = tempfile::tempfile_in(dir)?;
    let mut out = BufWriter::with_capacity(1 << 16, f);
    let len = crate::storage::snapshot::export_to(rtx, &mut out).map_err(std::io::Error::other)?;
    let mut f = out.into_inner().map_err(|e| e.into_error())?;
    f.seek(SeekFrom::Start(0))?;
    tracing::info!(bytes = len, "exported the store for a snapshot");
    Ok(f)
}

/// A META value the applier wrote: `None` when absent, an error naming the
/// key when present but undecodable (never read as "absent").
fn store_meta<T: serde::de::DeserializeOwned>(
    v: Option<&[u8]>,
    key: &'static str,
) -> Result<Option<T>, SnapshotFileError> {
    match v {
        None => Ok(None),
        Some(b) => serde_json::from_slice(b)
            .map(Some)
            .map_err(|e| SnapshotFileError::StoreMeta(key, e.to_string())),
    }
}

/// Removes what earlier versions kept in the snapshot directory (a copy of
/// the store per snapshot, its meta, partial files): the store itself is
/// durable at or past every snapshot they describe, so nothing is lost.
pub fn remove_stale_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let stale = name == "current.snap"
            || name == "current.snap.tmp"
            || name == "openraft-receiving.part"
            || (name.starts_with("snap-") && (name.ends_with(".data") || name.ends_with(".tmp")));
        if !stale {
            continue;
        }
        match std::fs::remove_file(e.path()) {
            Ok(()) => tracing::info!(file = %e.path().display(), "removed an old snapshot file"),
            Err(err) => {
                tracing::warn!(file = %e.path().display(), error = %err, "removing an old snapshot file")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_files_go_and_others_stay() {
        let d = tempfile::tempdir().expect("tempdir");
        for n in [
            "current.snap",
            "snap-00ab.data",
            "snap-00ab.tmp",
            "openraft-receiving.part",
            "receiving.snap.part",
        ] {
            std::fs::write(d.path().join(n), b"x").expect("write");
        }
        remove_stale_files(d.path());
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .expect("read dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // The receiver's part file is its own (truncated when a transfer starts).
        assert_eq!(left, ["receiving.snap.part"]);
        remove_stale_files(&d.path().join("missing"));
    }

    #[test]
    fn meta_is_decoded_strictly() {
        let e = store_meta::<Option<LogId>>(Some(b"{\"leader_id"), META_APPLIED)
            .expect_err("undecodable applied id");
        assert!(e.to_string().contains(META_APPLIED), "{e}");
        assert!(store_meta::<Option<LogId>>(None, META_APPLIED)
            .expect("absent")
            .is_none());
    }
}
