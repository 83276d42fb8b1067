//! Maintenance and cluster queries: status, alarms, hashes, defragment,
//! snapshot, member list.

use kv_proto::etcdserverpb::alarm_request::AlarmAction;
use kv_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, DefragmentResponse, HashKvResponse, HashResponse,
    MemberListResponse, StatusResponse,
};
use kv_proto::kvpb::internal_request::Request;
use sha2::{Digest, Sha256};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::leadership::leads;
use super::Node;
use crate::apply::Applied;
use crate::error::{KvError, KvResult};
use crate::mvcc::{MvccError, Store};

/// The etcd API version kvd implements, reported by Status so clients that
/// gate features on the server version treat kvd as an etcd 3.5 server.
pub const API_VERSION: &str = "3.5.0";

/// A Maintenance.Snapshot being sent: the store and its padding in `file`
/// (`len` bytes, read from the start), then `digest`.
pub struct SnapshotFile {
    pub file: std::fs::File,
    pub len: u64,
    pub digest: [u8; 32],
}

/// A writer that hashes what goes through it.
struct Hashing<W: Write> {
    inner: W,
    sha: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.sha.update(&b[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn export_to_file(store: &Store, dir: &Path) -> KvResult<SnapshotFile> {
    let io =
        |e: std::io::Error| KvError::Internal(format!("snapshot file in {}: {e}", dir.display()));
    let path = dir.join(format!(
        "maintenance-snapshot.{:016x}.tmp",
        rand::random::<u64>()
    ));
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io)?;
    // Unlinked at once: the file lives only as long as the open handle, so
    // neither an error nor a crash leaves it behind.
    std::fs::remove_file(&path).map_err(io)?;
    let mut out = Hashing {
        inner: std::io::BufWriter::new(file.try_clone().map_err(io)?),
        sha: Sha256::new(),
    };
    // An owned read transaction: the export may take long on a large
    // store, and writers must not wait for it.
    let read = store.read_txn()?;
    let written = crate::storage::snapshot::export_to(&read.txn, &mut out)
        .map_err(|e| MvccError::Storage(e.to_string()))?;
    drop(read);
    // etcdctl checks that the stream minus its 32-byte digest is a whole
    // number of 512-byte pages (true of etcd's bolt files): pad to that.
    let pad = (512 - written % 512) % 512;
    out.write_all(&vec![0u8; pad as usize]).map_err(io)?;
    out.flush().map_err(io)?;
    let digest = out.sha.finalize().into();
    let mut file = file;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(SnapshotFile {
        file,
        len: written + pad,
        digest,
    })
}

/// A leader transfer gives up after this many election timeouts.
const TRANSFER_TIMEOUTS: u32 = 5;

impl Node {
    pub fn status(&self) -> StatusResponse {
        let leader = self.leader_id().unwrap_or(0);
        let rx = self.raft.metrics();
        let m = rx.borrow();
        let db_size = self.core.store.db_size();
        StatusResponse {
            header: self.header(0),
            version: API_VERSION.to_string(),
            db_size,
            leader,
            raft_index: m.last_log_index.unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            errors: self
                .core
                .alarms
                .lock()
                .iter()
                .map(|(member, alarm)| format!("memberID:{member} alarm:{alarm}"))
                .collect(),
            db_size_in_use: db_size,
            is_learner: false,
        }
    }

    pub(super) async fn alarm_activate(&self, alarm: i32) -> KvResult<()> {
        self.alarm(AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.member_id(),
            alarm,
        })
        .await
        .map(|_| ())
    }

    /// GET is answered locally; ACTIVATE and DEACTIVATE go through the log.
    pub async fn alarm(&self, req: AlarmRequest) -> KvResult<AlarmResponse> {
        if req.action == AlarmAction::Get as i32 {
            let alarms = self
                .core
                .alarms
                .lock()
                .iter()
                .filter(|(_, a)| req.alarm == 0 || *a == req.alarm)
                .map(|(member_id, alarm)| AlarmMember {
                    member_id: *member_id,
                    alarm: *alarm,
                })
                .collect();
            return Ok(AlarmResponse {
                header: self.header(0),
                alarms,
            });
        }
        match self.propose(Request::Alarm(req)).await? {
            Applied::Alarm(mut r) => {
                self.fill(&mut r.header);
                Ok(r)
            }
            other => Err(KvError::Internal(format!("unexpected {other:?}"))),
        }
    }

    pub async fn defragment(&self) -> KvResult<DefragmentResponse> {
        self.check_admin()?;
        let store = self.core.store.clone();
        tokio::task::spawn_blocking(move || store.defragment())
            .await
            .map_err(|e| KvError::Internal(e.to_string()))??;
        Ok(DefragmentResponse {
            header: self.header(0),
        })
    }

    pub async fn hash(&self) -> KvResult<HashResponse> {
        self.check_admin()?;
        let store = self.core.store.clone();
        let hash = tokio::task::spawn_blocking(move || store.hash_all())
            .await
            .map_err(|e| KvError::Internal(e.to_string()))??;
        Ok(HashResponse {
            header: self.header(0),
            hash,
        })
    }

    pub async fn hash_kv(&self, revision: i64) -> KvResult<HashKvResponse> {
        self.check_admin()?;
        let store = self.core.store.clone();
        let (hash, compact_revision, hash_revision) =
            tokio::task::spawn_blocking(move || store.hash_kv(revision))
                .await
                .map_err(|e| KvError::Internal(e.to_string()))??;
        Ok(HashKvResponse {
            header: self.header(0),
            hash,
            compact_revision,
            hash_revision,
        })
    }

    /// A consistent copy of the whole store, zero-padded to 512 bytes and
    /// followed by its sha256, as etcd's snapshots are. It is exported to an
    /// unlinked temporary file in the data dir (the space goes back when the
    /// file is closed) and read from there in chunks, so a snapshot costs a
    /// chunk of memory, not the size of the database.
    pub async fn snapshot_file(&self) -> KvResult<SnapshotFile> {
        self.check_admin()?;
        let store = self.core.store.clone();
        let dir = self.member_dir.clone();
        tokio::task::spawn_blocking(move || export_to_file(&store, &dir))
            .await
            .map_err(|e| KvError::Internal(e.to_string()))?
    }

    pub fn member_list(&self) -> KvResult<MemberListResponse> {
        // etcd answers MemberList with a header whose revision is 0.
        let mut header = self.header(0);
        if let Some(h) = header.as_mut() {
            h.revision = 0;
        }
        let mut members = self.members_now()?;
        // Until this member's published attributes are applied, its own
        // entry is filled from its flags.
        for m in members
            .iter_mut()
            .filter(|m| m.id == self.member_id() && m.name.is_empty())
        {
            m.name = self.name.clone();
            if let Some(me) = self.members.iter().find(|x| x.id == m.id) {
                m.client_ur_ls = me.client_urls.clone();
            }
        }
        Ok(MemberListResponse { header, members })
    }

    /// Leader transfer: the leader asks `target` to campaign and waits for
    /// it to win.
    /// Hands leadership to `target` (etcd's MoveLeader).
    ///
    /// openraft 0.9 has no leader transfer, so kvd does it by hand: new
    /// proposals and reads wait and heartbeats stop, so the leader goes
    /// quiet; once `target` holds every entry and the voters' leader lease
    /// has run out, `target` is told to campaign. Its log is as long as
    /// anyone's, so it wins; this member then forwards the waiting requests
    /// to it. The other members' election timers (election.rs) run far
    /// longer than this pause, so they do not compete.
    pub async fn move_leader(&self, target: u64) -> KvResult<()> {
        self.check_admin()?;
        let me = self.member_id();
        self.ensure_leader(KvError::NotLeader)?;
        if target == me {
            return Ok(());
        }
        let member = self
            .members_now()?
            .into_iter()
            .find(|m| m.id == target)
            .ok_or(KvError::BadLeaderTransferee)?;
        if member.is_learner {
            return Err(KvError::BadLeaderTransferee);
        }
        let addr = member.peer_ur_ls.join(",");
        let quiet = self.transfer.write().await;
        self.raft.runtime_config().heartbeat(false);
        let deadline = Instant::now() + self.election_timeout * TRANSFER_TIMEOUTS;
        let result = self.hand_over(target, &addr, deadline).await;
        self.raft.runtime_config().heartbeat(true);
        drop(quiet);
        match &result {
            Ok(()) => tracing::info!(target = %format!("{target:x}"), "leadership handed over"),
            Err(e) => tracing::warn!(error = %e, "leadership transfer failed"),
        }
        result
    }

    async fn hand_over(&self, target: u64, addr: &str, deadline: Instant) -> KvResult<()> {
        let left = || deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(left()))
            .metrics(
                |m| {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&target).copied().flatten())
                        .map(|l| l.index);
                    matched.is_some() && matched >= m.last_log_index
                },
                "transferee caught up",
            )
            .await
            .map_err(|_| KvError::LeaderTransferTimeout)?;
        let hb = self.heartbeat_interval.as_millis() as u64;
        let lease = Duration::from_millis(super::election::raft_timeouts(hb).1 + hb);
        let mut client = self
            .network
            .client(target, addr)
            .map_err(|_| KvError::BadLeaderTransferee)?;
        loop {
            tokio::time::sleep(lease.min(left())).await;
            if left().is_zero() {
                return Err(KvError::LeaderTransferTimeout);
            }
            let asked = client
                .start_election(kv_proto::kvpb::StartElectionRequest {})
                .await;
            if let Err(e) = asked {
                tracing::debug!(error = %e, "asking the transferee to campaign");
                continue;
            }
            let won = self
                .raft
                .wait(Some((lease * 2).min(left())))
                .metrics(|m| leads(m, target), "transferee elected")
                .await;
            if won.is_ok() {
                return Ok(());
            }
        }
    }
}
