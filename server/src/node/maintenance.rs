//! Maintenance and cluster queries: status, alarms, hashes, defragment,
//! snapshot, member list.

use kv_proto::etcdserverpb::alarm_request::AlarmAction;
use kv_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, DefragmentResponse, DowngradeInfo, HashKvResponse,
    HashResponse, MemberListResponse, StatusResponse,
};
use kv_proto::kvpb::internal_request::Request;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::leadership::leads;
use super::Node;
use crate::apply::Applied;
use crate::error::{KvError, KvResult};
use crate::mvcc::Store;

/// The etcd API version kvd implements, reported by Status so clients that
/// gate features on the server version (kube-apiserver: watch progress
/// requests, RangeStream) treat kvd as the etcd 3.7 server it follows.
pub const API_VERSION: &str = "3.7.0";

/// A Maintenance.Snapshot being sent: the bbolt database in `file` (`len`
/// bytes, read from the start), then `digest`.
pub struct SnapshotFile {
    pub file: std::fs::File,
    pub len: u64,
    pub digest: [u8; 32],
}

/// Test builds: while the file named by `KVD_FAILPOINT_EXPORT_PAUSE`
/// exists, a Maintenance.Snapshot export waits (at most a minute) holding
/// its read transaction, after creating `<file>.reached`: tests use it to
/// run other requests against an export in flight.
#[cfg(feature = "failpoints")]
fn export_pause() {
    let Some(path) = std::env::var_os("KVD_FAILPOINT_EXPORT_PAUSE").map(std::path::PathBuf::from)
    else {
        return;
    };
    if !path.exists() {
        return;
    }
    let mut reached = path.clone().into_os_string();
    reached.push(".reached");
    let _ = std::fs::write(reached, b"");
    let until = Instant::now() + Duration::from_secs(60);
    while path.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
fn export_pause() {}

/// Exports the store to an unlinked file in `dir`. `gate` (the store's read
/// gate, held shared) is let go as soon as the read transaction ends.
fn export_to_file(
    store: &Store,
    dir: &Path,
    gate: tokio::sync::OwnedRwLockReadGuard<()>,
) -> KvResult<SnapshotFile> {
    let io =
        |e: std::io::Error| KvError::Internal(format!("snapshot file in {}: {e}", dir.display()));
    let file = unlinked_file(dir, "maintenance-snapshot").map_err(io)?;
    // The writer spools the `key` bucket's pages here (bbolt's first pages
    // name the root, known only at the end).
    let scratch = unlinked_file(dir, "maintenance-snapshot-pages").map_err(io)?;
    let out = std::io::BufWriter::new(file.try_clone().map_err(io)?);
    // An owned read transaction: the export may take long on a large
    // store, and writers must not wait for it.
    // Read before the transaction begins: a compaction finished by then has
    // no rows left in what it sees.
    let compaction_done = store.compactor().finished_through();
    let read = store.read_txn()?;
    export_pause();
    // etcd's format (a bbolt file, then its SHA-256), so etcd's tools read it.
    let (out, len) = crate::storage::etcd_format::export(&read.txn, out, scratch, compaction_done)?;
    drop(read);
    drop(gate);
    out.into_inner()
        .map_err(|e| io(e.into_error()))?
        .flush()
        .map_err(io)?;
    let mut file = file;
    let mut digest = [0u8; 32];
    file.seek(SeekFrom::Start(len)).map_err(io)?;
    file.read_exact(&mut digest).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(SnapshotFile { file, len, digest })
}

/// A new file in `dir`, unlinked at once: it lives only as long as its open
/// handle, so neither an error nor a crash leaves it behind.
fn unlinked_file(dir: &Path, what: &str) -> std::io::Result<std::fs::File> {
    let path = dir.join(format!("{what}.{:016x}.tmp", rand::random::<u64>()));
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// A leader transfer gives up after this many election timeouts.
const TRANSFER_TIMEOUTS: u32 = 5;

impl Node {
    pub fn status(&self) -> StatusResponse {
        let leader = self.leader_id().unwrap_or(0);
        let rx = self.raft.metrics();
        let m = rx.borrow();
        let db_size = self.core.store.db_size();
        let is_learner = m
            .membership_config
            .membership()
            .learner_ids()
            .any(|id| id == m.id);
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
            db_size_in_use: self.core.store.size_in_use(),
            is_learner,
            storage_version: API_VERSION.to_string(),
            db_size_quota: self.quota_bytes.min(i64::MAX as u64) as i64,
            downgrade_info: Some(DowngradeInfo::default()),
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
        // The swap at the end closes the old file under any owned read:
        // wait for the exports and hashes in flight (each holds the gate
        // only while it reads the store, never while a client reads its
        // stream), and hold off new ones meanwhile, as etcd's defrag waits
        // for its read transactions. It also keeps defragments one at a
        // time. Client reads and writes go on while the store is copied.
        let gate = store.read_gate().write_owned().await;
        tokio::task::spawn_blocking(move || {
            let _gate = gate;
            store.defragment()
        })
        .await
        .map_err(|e| KvError::Internal(e.to_string()))??;
        // etcd's DefragmentResponse carries no header.
        Ok(DefragmentResponse { header: None })
    }

    pub async fn hash(&self) -> KvResult<HashResponse> {
        self.check_admin()?;
        let store = self.core.store.clone();
        let gate = store.read_gate().read_owned().await;
        let hash = tokio::task::spawn_blocking(move || {
            let _gate = gate;
            store.hash_all()
        })
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
        let gate = store.read_gate().read_owned().await;
        let (hash, compact_revision, hash_revision) = tokio::task::spawn_blocking(move || {
            let _gate = gate;
            store.hash_kv(revision)
        })
        .await
        .map_err(|e| KvError::Internal(e.to_string()))??;
        Ok(HashKvResponse {
            header: self.header(0),
            hash,
            compact_revision,
            hash_revision,
        })
    }

    /// A consistent copy of the whole store in etcd's v3 snapshot format (a
    /// bbolt database followed by its sha256; storage/etcd_format.rs), so
    /// etcdctl/etcdutl `snapshot status|restore` read it. It is exported to an
    /// unlinked temporary file in the data dir (the space goes back when the
    /// file is closed) and read from there in chunks, so a snapshot costs a
    /// chunk of memory, not the size of the database.
    pub async fn snapshot_file(&self) -> KvResult<SnapshotFile> {
        self.check_admin()?;
        let store = self.core.store.clone();
        let dir = self.member_dir.clone();
        let gate = store.read_gate().read_owned().await;
        tokio::task::spawn_blocking(move || export_to_file(&store, &dir, gate))
            .await
            .map_err(|e| KvError::Internal(e.to_string()))?
    }

    /// The header of every Cluster service answer: etcd's cluster server
    /// fills the cluster and member IDs and the raft term, never a revision.
    pub fn cluster_header(&self) -> Option<kv_proto::etcdserverpb::ResponseHeader> {
        let mut header = self.header(0);
        if let Some(h) = header.as_mut() {
            h.revision = 0;
        }
        header
    }

    pub fn member_list(&self) -> KvResult<MemberListResponse> {
        let header = self.cluster_header();
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

    /// The voters other than this member, the most up-to-date first (by
    /// this leader's replication progress): whom to hand leadership to at
    /// shutdown (see `crate::shutdown`). Empty when this is the only voter.
    pub fn transfer_candidates(&self) -> Vec<u64> {
        let me = self.member_id();
        let rx = self.raft.metrics();
        let m = rx.borrow();
        let mut voters: Vec<(u64, u64)> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != me)
            .map(|id| {
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).copied().flatten())
                    .map_or(0, |l| l.index);
                (id, matched)
            })
            .collect();
        voters.sort_by_key(|v| std::cmp::Reverse(v.1));
        voters.into_iter().map(|(id, _)| id).collect()
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
