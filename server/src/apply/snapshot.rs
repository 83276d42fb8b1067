//! Raft snapshots of the state machine, kept as one file in `<data-dir>/member/snap`.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::RaftSnapshotBuilder;

use super::{sm_error, Core};
use crate::raft::types::{LogId, SnapshotMeta, StorageError, StoredMembership};
use crate::raft::TypeConfig;
use crate::storage::schema::{META_APPLIED, META_MEMBERSHIP};

const FILE: &str = "current.snap";

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
        let (data, vals) = tokio::task::spawn_blocking(move || {
            store.export_durable(&[META_APPLIED, META_MEMBERSHIP])
        })
        .await
        .map_err(sm_error)?
        .map_err(sm_error)?;
        let last_log_id: Option<LogId> = vals.first().and_then(parse);
        let last_membership: StoredMembership = vals.get(1).and_then(parse).unwrap_or_default();
        let snapshot_id = match &last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        save(&self.dir, &meta, &data).map_err(sm_error)?;
        Ok(openraft::Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: &Option<Vec<u8>>) -> Option<T> {
    v.as_deref().and_then(|b| serde_json::from_slice(b).ok())
}

/// Writes the snapshot atomically: temp file, fsync, rename, fsync dir.
pub fn save(dir: &Path, meta: &SnapshotMeta, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let meta_json = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&(meta_json.len() as u32).to_le_bytes())?;
    f.write_all(&meta_json)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

pub fn load(dir: &Path) -> std::io::Result<Option<openraft::Snapshot<TypeConfig>>> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = || std::io::Error::other(format!("malformed snapshot file {}", path.display()));
    let len = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(bad)? as usize;
    let meta_bytes = bytes.get(4..4 + len).ok_or_else(bad)?;
    let meta: SnapshotMeta = serde_json::from_slice(meta_bytes).map_err(|_| bad())?;
    Ok(Some(openraft::Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(bytes[4 + len..].to_vec())),
    }))
}
