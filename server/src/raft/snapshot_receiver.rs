//! The receiving end of InstallSnapshot: chunks are checked and written to a
//! file in the data dir as they arrive, never gathered in memory, and never
//! sized from a number on the wire.
//!
//! openraft's own receiver seeks its in-memory cursor to whatever offset a
//! chunk names, so one chunk at offset 2^44 allocated 16 TiB. Here a chunk is
//! accepted only at exactly the offset where the previous one ended (the
//! leader sends them in order and restarts from 0 after a mismatch), and
//! the total is capped. Once the last chunk is in, the file itself is
//! handed to openraft as a whole snapshot (the snapshot data type is a file).

use std::path::PathBuf;

use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::SnapshotSegmentId;
use tokio::io::AsyncWriteExt;

use super::types::{NodeId, Raft, TypeConfig};

/// The file a snapshot is received into, under `<data-dir>/member/snap`.
const PART_FILE: &str = "receiving.snap.part";

/// Why a chunk was refused outright (answered as a gRPC error, not a raft one).
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(
        "snapshot chunk at offset {offset} with {len} bytes exceeds the {max}-byte snapshot limit"
    )]
    TooLarge { offset: u64, len: usize, max: u64 },
    #[error("receiving snapshot into {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// What a chunk returns to the sender, as openraft's RPC expects it.
pub type ChunkResult =
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;

struct Receiving {
    snapshot_id: String,
    file: tokio::fs::File,
    /// Bytes written so far: the only offset the next chunk may have.
    offset: u64,
}

/// One member's snapshot receiver (one snapshot at a time, like openraft's).
pub struct SnapshotReceiver {
    dir: PathBuf,
    max_bytes: u64,
    current: tokio::sync::Mutex<Option<Receiving>>,
}

impl SnapshotReceiver {
    /// Receives into `dir`; a snapshot larger than `max_bytes` is refused.
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        SnapshotReceiver {
            dir,
            max_bytes,
            current: tokio::sync::Mutex::new(None),
        }
    }

    fn io(&self, e: std::io::Error) -> ReceiveError {
        ReceiveError::Io(self.dir.join(PART_FILE), e)
    }

    /// Takes one chunk: checks the sender's vote and the chunk's place,
    /// appends it to the file, and installs the snapshot after the last one.
    pub async fn receive(
        &self,
        raft: &Raft,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<ChunkResult, ReceiveError> {
        let my_vote = raft.metrics().borrow().vote;
        if !matches!(
            req.vote.partial_cmp(&my_vote),
            Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
        ) {
            // A stale leader: answer with our vote, as openraft does.
            return Ok(Ok(InstallSnapshotResponse { vote: my_vote }));
        }
        let len = req.data.len();
        let end = req
            .offset
            .checked_add(len as u64)
            .filter(|end| *end <= self.max_bytes)
            .ok_or(ReceiveError::TooLarge {
                offset: req.offset,
                len,
                max: self.max_bytes,
            })?;
        let mut current = self.current.lock().await;
        let same = current
            .as_ref()
            .is_some_and(|r| r.snapshot_id == req.meta.snapshot_id);
        if req.offset == 0 {
            // A new snapshot, or the sender starting this one over.
            *current = Some(self.start(&req.meta.snapshot_id).await?);
        } else if !same || current.as_ref().map(|r| r.offset) != Some(req.offset) {
            let expect = if same {
                current.as_ref().map(|r| r.offset).unwrap_or(0)
            } else {
                0
            };
            return Ok(Err(RaftError::APIError(
                InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                    expect: SnapshotSegmentId {
                        id: req.meta.snapshot_id.clone(),
                        offset: expect,
                    },
                    got: SnapshotSegmentId {
                        id: req.meta.snapshot_id.clone(),
                        offset: req.offset,
                    },
                }),
            )));
        }
        let Some(r) = current.as_mut() else {
            return Err(self.io(std::io::Error::other("no snapshot being received")));
        };
        r.file.write_all(&req.data).await.map_err(|e| self.io(e))?;
        r.offset = end;
        if !req.done {
            return Ok(Ok(InstallSnapshotResponse { vote: my_vote }));
        }
        let Some(mut r) = current.take() else {
            return Err(self.io(std::io::Error::other("no snapshot being received")));
        };
        drop(current);
        r.file.flush().await.map_err(|e| self.io(e))?;
        r.file.sync_all().await.map_err(|e| self.io(e))?;
        drop(r);
        // The state machine installs from the file itself (a second handle,
        // for reading); the name goes at once, so a failed install leaves
        // nothing behind.
        let path = self.dir.join(PART_FILE);
        let file = tokio::fs::File::open(&path).await.map_err(|e| self.io(e))?;
        let _ = tokio::fs::remove_file(&path).await;
        tracing::info!(snapshot = %req.meta.snapshot_id, bytes = end, "received snapshot");
        let snapshot = openraft::Snapshot {
            meta: req.meta,
            snapshot: Box::new(super::snapshot_file::SnapshotFile::ready(file)),
        };
        Ok(match raft.install_full_snapshot(req.vote, snapshot).await {
            Ok(resp) => Ok(InstallSnapshotResponse { vote: resp.vote }),
            Err(fatal) => Err(RaftError::Fatal(fatal)),
        })
    }

    async fn start(&self, snapshot_id: &str) -> Result<Receiving, ReceiveError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| self.io(e))?;
        let file = tokio::fs::File::create(self.dir.join(PART_FILE))
            .await
            .map_err(|e| self.io(e))?;
        Ok(Receiving {
            snapshot_id: snapshot_id.to_string(),
            file,
            offset: 0,
        })
    }
}
