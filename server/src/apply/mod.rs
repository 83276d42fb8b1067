//! The state machine: the only code that changes the store. Each batch of
//! committed raft entries is applied in one redb transaction that also records
//! the last applied log id and membership, then its events go to watchers.

mod auth;
pub mod replies;
mod request;
mod snapshot;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftLogId, StorageIOError};
use parking_lot::Mutex;

use crate::lease::Lessor;
use crate::mvcc::{MvccError, Recovered, Store, WriteBatch};
use crate::raft::snapshot_file::SnapshotFile;
use crate::raft::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership};
use crate::raft::{RaftResponse, TypeConfig};
use crate::storage::schema::{KV, META_APPLIED, META_MEMBERSHIP};
use crate::watch::WatchHub;

/// The applier's result type lives with the raft types (a raft response
/// carries it), so raft/ never depends on apply/.
pub use crate::raft::types::Applied;
pub use snapshot::SnapshotBuilder;

#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod conformance;
#[cfg(test)]
mod replies_tests;

/// How often an applied batch is also made durable in redb. Between these the
/// raft log (fsynced before every ack) is what makes writes durable; restart
/// replays the log from the last durable point.
const DURABLE_EVERY: Duration = Duration::from_secs(5);

/// State shared between the applier and the read paths.
pub struct Core {
    pub store: Arc<Store>,
    pub lessor: Arc<Mutex<Lessor>>,
    pub hub: Arc<WatchHub>,
    /// Active alarms: (member id, alarm type).
    pub alarms: Mutex<BTreeSet<(u64, i32)>>,
    /// Users, roles, permissions and tokens (changed only by the applier).
    pub auth: Arc<crate::auth::AuthStore>,
    /// Every member ID ever removed from the configuration (etcd's
    /// "removed" set): applied through the log and kept in META, so every
    /// member and every snapshot carries it. Never shrinks.
    pub removed: Mutex<BTreeSet<u64>>,
    /// Notified (to current waiters) whenever `removed` changes: the
    /// removal wait (node/removal.rs) sleeps on it, not on raft's metrics.
    pub removed_changed: tokio::sync::Notify,
    /// The callers of this member's proposals, answered by the applier.
    pub replies: Arc<replies::Replies>,
}

/// An entry applied slower than this is logged (etcd's default
/// --experimental-warning-apply-duration).
const SLOW_APPLY: Duration = Duration::from_millis(100);

/// etcd's "apply request took too long" warning. The summary names the
/// entry and its size, never its keys or values (they may be secrets).
fn warn_slow_apply(took: Duration, index: u64, bytes: &[u8]) {
    if took > SLOW_APPLY {
        tracing::warn!(
            took = ?took,
            expected_duration = ?SLOW_APPLY,
            request = %format_args!("raft entry {index}, {} bytes", bytes.len()),
            "apply request took too long"
        );
    }
}

pub use crate::storage::schema::META_REMOVED;

/// IDs in `prev`'s configuration that `next` no longer has.
fn removed_by(prev: &StoredMembership, next: &StoredMembership) -> Vec<u64> {
    let kept: BTreeSet<u64> = next.nodes().map(|(id, _)| *id).collect();
    prev.nodes()
        .map(|(id, _)| *id)
        .filter(|id| !kept.contains(id))
        .collect()
}

impl Core {
    pub fn new(
        store: Arc<Store>,
        header: Arc<crate::header::HeaderSource>,
        election_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Core {
            hub: WatchHub::new(store.clone(), header),
            store,
            lessor: Arc::new(Mutex::new(Lessor::new(election_timeout))),
            alarms: Mutex::new(BTreeSet::new()),
            auth: Arc::default(),
            removed: Mutex::new(BTreeSet::new()),
            removed_changed: tokio::sync::Notify::new(),
            replies: Arc::default(),
        })
    }

    /// Loads leases (with fresh deadlines) and alarms recovered from disk.
    pub fn restore(&self, rec: &Recovered) {
        // Read the store before taking the lessor: the applier locks them in that order.
        let leased = self.store.leased_keys();
        let mut lessor = self.lessor.lock();
        lessor.clear();
        for (id, ttl) in &rec.leases {
            lessor.grant(*id, *ttl);
        }
        for (lease, key) in leased {
            crate::txn::LeaseBook::attach(&mut *lessor, lease, &key);
        }
        *self.alarms.lock() = rec.alarms.iter().copied().collect();
        match meta_json::<BTreeSet<u64>>(rec, META_REMOVED) {
            Ok(ids) => {
                *self.removed.lock() = ids.unwrap_or_default();
                self.removed_changed.notify_waiters();
            }
            // Kept as it was rather than emptied: forgetting removed IDs
            // would let a removed member's messages in again.
            Err(e) => tracing::error!(error = %e, "removed member IDs unreadable"),
        }
        if let Err(e) = self.auth.restore(&rec.meta) {
            tracing::error!(error = %e, "auth state unreadable: every request is refused");
        }
    }
}

pub struct StateMachine {
    core: Arc<Core>,
    applied: Option<LogId>,
    membership: StoredMembership,
    snap_dir: PathBuf,
    last_durable: Instant,
}

/// A META value written by the applier: absent on a fresh store, an error
/// when present but undecodable (read as "absent", a lost applied index
/// would re-apply the whole log onto the store).
fn meta_json<T: serde::de::DeserializeOwned>(
    rec: &Recovered,
    key: &str,
) -> Result<Option<T>, MvccError> {
    match rec.meta.iter().find(|(k, _)| k == key) {
        None => Ok(None),
        Some((_, v)) => serde_json::from_slice(v)
            .map(Some)
            .map_err(|e| MvccError::Storage(format!("undecodable {key} in meta: {e}"))),
    }
}

pub(crate) fn sm_error(e: impl ToString) -> StorageError {
    StorageIOError::write_state_machine(openraft::AnyError::error(e.to_string())).into()
}

impl StateMachine {
    /// The state machine over a recovered store, resuming after its last
    /// applied entry.
    pub fn open(core: Arc<Core>, rec: &Recovered, snap_dir: PathBuf) -> Result<Self, MvccError> {
        snapshot::remove_stale_files(&snap_dir);
        Ok(StateMachine {
            applied: meta_json::<Option<LogId>>(rec, META_APPLIED)?.flatten(),
            membership: meta_json(rec, META_MEMBERSHIP)?.unwrap_or_default(),
            core,
            snap_dir,
            last_durable: Instant::now(),
        })
    }

    /// [`StateMachine::open`] on a store known to be fresh (tests).
    #[cfg(test)]
    pub fn new(core: Arc<Core>, rec: &Recovered, snap_dir: PathBuf) -> Self {
        Self::open(core, rec, snap_dir).expect("a fresh store has valid meta")
    }

    fn apply_batch(&mut self, entries: Vec<Entry>) -> Result<Vec<RaftResponse>, MvccError> {
        let durable = self.last_durable.elapsed() >= DURABLE_EVERY;
        let core = &self.core;
        let current = &self.membership;
        let mut out = Vec::with_capacity(entries.len());
        let mut applied = self.applied;
        // Set only by a batch that applies a membership change (most change
        // none): META keeps the membership of the commit that applied it.
        let mut next_membership: Option<StoredMembership> = None;
        let mut removed: Option<BTreeSet<u64>> = None;
        // Entries (index in `out`) whose callers wait on this member.
        let mut tagged = Vec::new();
        // META is opened once per commit (the store writes the revision
        // there too); LEASES, ALARMS and MEMBERS only if a request needs them.
        let result = core.store.write_with_meta(durable, |state, wtx, meta| {
            let mut kv = wtx.open_table(KV)?;
            let mut tables = request::Tables::new(wtx, meta, &core.alarms, &core.auth);
            let mut lessor = core.lessor.lock();
            let mut batch = WriteBatch::new(state, &mut kv);
            for entry in &entries {
                let _slow = crate::metrics::apply();
                applied = Some(*entry.get_log_id());
                let resp = match &entry.payload {
                    EntryPayload::Blank => RaftResponse::default(),
                    EntryPayload::Membership(m) => {
                        let next = StoredMembership::new(applied, m.clone());
                        let gone = removed_by(next_membership.as_ref().unwrap_or(current), &next);
                        if !gone.is_empty() {
                            let set = removed.get_or_insert_with(|| core.removed.lock().clone());
                            set.extend(gone);
                            let json = serde_json::to_vec(&*set).unwrap_or_default();
                            tables.meta.insert(META_REMOVED, json.as_slice())?;
                        }
                        next_membership = Some(next);
                        RaftResponse::default()
                    }
                    EntryPayload::Normal(req) => {
                        let tag = replies::tag_of(&req.bytes);
                        if tag.reply_to != 0 {
                            tagged.push((out.len(), tag));
                        }
                        let started = Instant::now();
                        let resp =
                            request::apply(&mut batch, &mut lessor, &mut tables, &req.bytes)?;
                        warn_slow_apply(started.elapsed(), entry.get_log_id().index, &req.bytes);
                        resp
                    }
                };
                out.push(resp);
            }
            let rev = batch.end();
            let events = std::mem::take(&mut batch.events);
            drop(batch);
            // Serializing plain data into a Vec cannot fail.
            let applied_json = serde_json::to_vec(&applied).unwrap_or_default();
            tables.meta.insert(META_APPLIED, applied_json.as_slice())?;
            if let Some(membership) = &next_membership {
                let membership_json = serde_json::to_vec(membership).unwrap_or_default();
                tables
                    .meta
                    .insert(META_MEMBERSHIP, membership_json.as_slice())?;
            }
            Ok((rev, events))
        });
        let (rev, events) = match result {
            Ok(v) => v,
            Err(e) => {
                // The store put its index back; leases and alarms were changed
                // in memory too: restore them from the last commit as well.
                if let Ok(rec) = self.core.store.reload() {
                    self.core.restore(&rec);
                }
                return Err(e);
            }
        };
        if durable {
            self.last_durable = Instant::now();
        }
        self.applied = applied;
        if let Some(membership) = next_membership {
            self.membership = membership;
        }
        if let Some(set) = removed {
            *self.core.removed.lock() = set;
            self.core.removed_changed.notify_waiters();
        }
        if !events.is_empty() {
            self.core.hub.publish(rev, events);
        }
        // Committed and visible: the waiting callers hear from here, not
        // through RaftCore (replies.rs).
        for (i, tag) in tagged {
            self.core.replies.answer(tag, &mut out[i].0);
        }
        Ok(out)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<RaftResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let fail = |e: MvccError| {
            tracing::error!(error = %e, "apply failed; the member must stop");
            sm_error(e)
        };
        let mut rest = entries.into_iter();
        let mut out = Vec::new();
        // Test builds only (failpoint `apply-entry=sleep(N)`): a slow applier,
        // one entry at a time, so the apply-lag refusal can be tested.
        while let Some(delay) = crate::raft::failpoint::apply_entry_delay() {
            let Some(entry) = rest.next() else { break };
            tokio::time::sleep(delay).await;
            out.extend(self.apply_batch(vec![entry]).map_err(fail)?);
        }
        let rest: Vec<Entry> = rest.collect();
        if out.is_empty() {
            return self.apply_batch(rest).map_err(fail);
        }
        if !rest.is_empty() {
            out.extend(self.apply_batch(rest).map_err(fail)?);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder::new(self.core.clone(), self.snap_dir.clone())
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        // kvd receives snapshots itself (raft/snapshot_receiver.rs); this is
        // openraft's own path, given an unnamed file as well.
        let dir = self.snap_dir.clone();
        let file = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            tempfile::tempfile_in(&dir)
        })
        .await
        .map_err(sm_error)?
        .map_err(sm_error)?;
        Ok(Box::new(SnapshotFile::ready(tokio::fs::File::from_std(
            file,
        ))))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        tracing::info!(snapshot = %meta.snapshot_id, "installing snapshot from the leader");
        let mut file = snapshot.into_std().await.map_err(sm_error)?;
        let store = self.core.store.clone();
        // Read from the file twice (checksum, then import), never gathered
        // in memory. The store is the snapshot from then on: nothing else
        // is kept (see snapshot.rs).
        let (rec, len) = tokio::task::block_in_place(|| {
            use std::io::{Seek, SeekFrom};
            let len = file.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
            file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
            let rec = store
                .import_from(&mut file, len)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((rec, len))
        })
        .map_err(sm_error)?;
        self.core.restore(&rec);
        self.core.hub.reset(self.core.store.current_rev());
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.last_durable = Instant::now();
        tracing::info!(snapshot = %meta.snapshot_id, bytes = len, "installed snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::Snapshot<TypeConfig>>, StorageError> {
        snapshot::current(&self.core.store, &self.snap_dir)
            .await
            .map_err(sm_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recovered(applied: Option<&[u8]>) -> Recovered {
        Recovered {
            leases: vec![],
            alarms: vec![],
            meta: applied
                .map(|v| vec![(META_APPLIED.to_string(), v.to_vec())])
                .unwrap_or_default(),
            row_bytes: 0,
        }
    }

    #[test]
    fn meta_is_decoded_strictly() {
        let absent = meta_json::<Option<LogId>>(&recovered(None), META_APPLIED).unwrap();
        assert!(absent.is_none());
        let null = meta_json::<Option<LogId>>(&recovered(Some(b"null")), META_APPLIED).unwrap();
        assert_eq!(null, Some(None));
        // Corrupt: an error, not "nothing applied yet" (which would replay
        // the whole log onto the store).
        let bad = meta_json::<Option<LogId>>(&recovered(Some(b"{\"leader_id")), META_APPLIED);
        assert!(bad.is_err());
    }
}
