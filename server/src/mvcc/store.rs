//! The MVCC store over redb: opening and recovery, read views, the write
//! transaction of an applied batch (its mutations are in batch.rs, the row
//! encoding in row.rs), export and import, hashes.
//!
//! Lock order: `db` before `state`. `db` is write-locked only by defragment;
//! `state` is write-locked by the applier for the length of one batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_proto::mvccpb::{event::EventType, Event, KeyValue};
use parking_lot::{RwLock, RwLockReadGuard};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};

pub(super) mod behind;
mod defrag;
mod hash;

use self::behind::Behind;
use super::compactor::{Compactor, Step, BATCH_ROWS, INDEX_STEP_KEYS};
use super::footprint::{Footprint, EMPTY_STORE_BYTES};
use super::recover::load;
pub use super::recover::Recovered;
use super::row::{decode_row, fetch_put};
use super::{Index, KeyHistory, MvccError, Revision};
use crate::storage::schema::{KV, LEASES, META, META_COMPACT, META_REVISION};

/// The mutable part of the store, guarded by one lock.
#[derive(Debug, Default)]
pub struct State {
    pub index: Index,
    pub rev: i64,
    pub compact_rev: i64,
    /// A compaction applied in this batch (its revision; the compactor
    /// compacts the index once committed), or the recovery's (with the
    /// rows its pass over the rebuilt index dropped).
    pub pending: Option<(i64, Vec<Revision>)>,
    /// Row bytes ([`super::footprint::row_bytes`]) this batch wrote, added
    /// to the store's footprint once it commits.
    pub written: u64,
}

/// Revisioned key-value store.
pub struct Store {
    db: RwLock<Database>,
    state: RwLock<State>,
    path: PathBuf,
    /// File size as of a recent commit: quota checks read it on every write,
    /// so it is refreshed after commits (at most every 10 ms), not per request.
    size: std::sync::atomic::AtomicI64,
    /// When a commit last refreshed `size` (see `refresh_size_after_commit`).
    size_checked: parking_lot::Mutex<std::time::Instant>,
    /// Held shared by long reads on an owned transaction (exports, hashes)
    /// and exclusive by defragment, whose swap closes the old file (defrag.rs).
    /// tokio's lock is fair: while a defragment waits, new reads queue behind it.
    read_gate: Arc<tokio::sync::RwLock<()>>,
    /// Deletes compacted rows in the background (compactor.rs).
    compactor: Compactor,
    /// The KV rows' share of the file, for the quota (footprint.rs).
    footprint: Footprint,
    /// The write transaction kept open across applied batches (behind.rs).
    behind: Behind,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Before the database closes: a transaction must not outlive it.
        self.behind.close();
    }
}

/// Values read from META, in the order asked for.
pub type MetaValues = Vec<Option<Vec<u8>>>;

/// The META table inside a write transaction.
pub type MetaTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;

/// Writes the revision and compaction revision every commit leaves in META.
fn record_revisions(meta: &mut MetaTable<'_>, state: &State) -> Result<(), MvccError> {
    meta.insert(META_REVISION, state.rev.to_le_bytes().as_slice())?;
    meta.insert(META_COMPACT, state.compact_rev.to_le_bytes().as_slice())?;
    Ok(())
}

/// Anything reads can run against: a read snapshot or an open write batch.
pub trait ReadView {
    /// The revision reads at "now" see.
    fn rev(&self) -> i64;
    fn compact_rev(&self) -> i64;
    fn index(&self) -> &Index;
    /// Loads the put stored at `rev`.
    fn fetch(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError>;

    /// The value of `hist` as of main revision `main`.
    fn value_at(&self, hist: &KeyHistory, main: i64) -> Result<Option<Arc<KeyValue>>, MvccError> {
        let Some(r) = hist.live_at(main) else {
            return Ok(None);
        };
        if let Some(kv) = hist.cached_at(r) {
            return Ok(Some(kv.clone()));
        }
        Ok(self.fetch(r)?.map(Arc::new))
    }

    /// [`value_at`](Self::value_at) without the value, for keys-only reads:
    /// a key's current version is described by the index alone, so only an
    /// older one is read from the backend (a 1 MiB value read to be thrown
    /// away cost a loaded member its answers to everything else).
    fn key_at(
        &self,
        key: &[u8],
        hist: &KeyHistory,
        main: i64,
    ) -> Result<Option<Arc<KeyValue>>, MvccError> {
        let Some(r) = hist.live_at(main) else {
            return Ok(None);
        };
        match hist.live() {
            Some(live) if hist.newest_put() == Some(r) => Ok(Some(Arc::new(KeyValue {
                key: key.to_vec(),
                create_revision: live.create_revision,
                mod_revision: r.main,
                version: live.version,
                value: Vec::new(),
                lease: live.lease,
            }))),
            _ => self.value_at(hist, main),
        }
    }
}

impl Store {
    /// Opens or creates the store file and rebuilds the in-memory index.
    pub fn open(path: &Path) -> Result<(Store, Recovered), MvccError> {
        // A snapshot import that a crash cut short: never swapped in, so
        // the live file is still the whole old store.
        crate::storage::snapshot::discard_import(&installing_path(path))
            .map_err(|e| MvccError::Storage(e.to_string()))?;
        // Likewise a defragment's copy (defrag.rs).
        defrag::discard_defrag(&defrag::defrag_path(path))?;
        let db = redb::Builder::new()
            .set_cache_size(crate::storage::snapshot::BACKEND_CACHE_BYTES)
            .create(path)?;
        let wtx = db.begin_write()?;
        wtx.open_table(KV)?;
        wtx.open_table(META)?;
        wtx.open_table(LEASES)?;
        wtx.open_table(crate::storage::schema::ALARMS)?;
        wtx.open_table(crate::storage::schema::MEMBERS)?;
        wtx.commit()?;
        let store = Store {
            db: RwLock::new(db),
            state: RwLock::new(State::default()),
            path: path.to_path_buf(),
            size: std::sync::atomic::AtomicI64::new(0),
            size_checked: parking_lot::Mutex::new(std::time::Instant::now()),
            read_gate: Arc::default(),
            compactor: Compactor::default(),
            footprint: Footprint::default(),
            behind: Behind::default(),
        };
        let recovered = store.reload()?;
        Ok((store, recovered))
    }

    /// Rebuilds the index and counters from disk (after open or a snapshot install).
    pub fn reload(&self) -> Result<Recovered, MvccError> {
        let db = self.db.read();
        self.behind.settle()?;
        let (mut st, recovered) = load(&db)?;
        self.footprint.reset(recovered.row_bytes);
        let (rev, dropped) = st.pending.take().unwrap_or((st.compact_rev, Vec::new()));
        self.compactor.reset(rev, dropped);
        *self.state.write() = st;
        drop(db);
        // The rows wait for the background compactor (or the next write,
        // offline): a restart does not delete them before serving.
        self.refresh_size();
        Ok(recovered)
    }

    /// Commits the batches the open write transaction carries (see
    /// behind.rs), so redb's committed state holds every applied write.
    /// Every read of redb does this itself.
    pub fn settle(&self) -> Result<(), MvccError> {
        self.behind.settle()
    }

    /// A consistent read view at the current revision.
    pub fn snapshot(&self) -> Snapshot<'_> {
        let db = self.db.read();
        let state = self.state.read();
        Snapshot {
            db,
            state,
            behind: &self.behind,
            txn: std::cell::OnceCell::new(),
            kv: std::cell::OnceCell::new(),
        }
    }

    /// Runs `f` inside one redb write transaction with the state locked.
    /// `durable` forces an fsync of this and every earlier commit. `f` may
    /// open any table, META included (it must close it again by returning).
    pub fn write<R>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut State, &redb::WriteTransaction) -> Result<R, MvccError>,
    ) -> Result<R, MvccError> {
        self.commit_with(durable, |state, wtx| {
            let out = f(state, wtx)?;
            record_revisions(&mut wtx.open_table(META)?, state)?;
            Ok(out)
        })
    }

    /// [`Store::write`] with META opened once for the whole commit and handed
    /// to `f` (which must not open it again): the applier writes its applied
    /// index there, and each `open_table` costs a lookup in redb's table tree
    /// plus a root update at commit.
    pub fn write_with_meta<R, F>(&self, durable: bool, f: F) -> Result<R, MvccError>
    where
        F: for<'t> FnOnce(
            &mut State,
            &'t redb::WriteTransaction,
            &mut MetaTable<'t>,
        ) -> Result<R, MvccError>,
    {
        self.commit_with(durable, |state, wtx| {
            let mut meta = wtx.open_table(META)?;
            let out = f(state, wtx, &mut meta)?;
            record_revisions(&mut meta, state)?;
            Ok(out)
        })
    }

    /// One write transaction with the state locked: `body` makes the
    /// changes (and records the revisions), then the commit; a failure
    /// anywhere puts the index back to the last commit.
    fn commit_with<R>(
        &self,
        durable: bool,
        body: impl FnOnce(&mut State, &redb::WriteTransaction) -> Result<R, MvccError>,
    ) -> Result<R, MvccError> {
        let db = self.db.read();
        let mut state = self.state.write();
        let mut slot = self.behind.lock();
        let mut carries = false;
        let result = (|| {
            let taken = Behind::take(&mut slot, &db)?;
            carries = taken.carries();
            let out = body(&mut state, &taken.wtx)?;
            // Test builds only: a commit failing here must stop the member
            // (run for every batch, as if each were committed on its own).
            crate::raft::failpoint::backend_commit()?;
            self.footprint.add(std::mem::take(&mut state.written));
            // A compaction is recorded durably before its rows go (as
            // etcd's ForceCommit of the scheduled revision).
            let now = durable || state.pending.is_some();
            if !now && !taken.due() {
                taken.keep(&mut slot);
                return Ok(out);
            }
            taken.commit(now)?;
            if let Some((rev, dropped)) = state.pending.take() {
                self.compactor.push(rev, dropped);
            }
            Ok(out)
        })();
        if let Err(e) = &result {
            if carries {
                // Batches already answered went with the transaction.
                behind::fatal(e);
            }
            // `body` changed the index as it went: put back the last committed
            // state before any reader can see changes that are not on disk.
            tracing::error!(error = %e, "backend commit failed; restoring the index from the last commit");
            match load(&db) {
                // Its dropped rows are queued already (or were never committed).
                Ok((st, _)) => {
                    *state = State {
                        pending: None,
                        ..st
                    }
                }
                Err(e2) => {
                    // No committed state to fall back to: serving this index
                    // would show writes that are not on disk. Exit as etcd's
                    // backend does on a failed commit; a restart recovers.
                    tracing::error!(error = %e2, "fatal storage error: cannot reload the index after a failed commit; exiting (restart recovers from disk)");
                    std::process::exit(1);
                }
            }
        }
        drop(slot);
        drop(state);
        drop(db);
        self.run_compaction();
        self.refresh_size_after_commit();
        result
    }

    /// Deletes queued compacted rows here when that is cheap: all of them
    /// without a background compactor (offline tools, tests), else one
    /// batch when no more than one is queued (a small compaction finishes
    /// with its apply). Failures leave the rows queued.
    fn run_compaction(&self) {
        let result = if !self.compactor.attached() {
            loop {
                match self
                    .compactor
                    .step(&self.db, &self.state, &self.footprint, &self.behind)
                {
                    Ok(Step::More) => continue,
                    other => break other,
                }
            }
        } else if !self.compactor.is_idle() {
            // At most one index step (a small index) and one batch of rows:
            // waits for the background task's step if it runs (the same
            // work), so a small compaction ends with its apply.
            let mut result = Ok(Step::More);
            for _ in 0..2 {
                let small = if self.compactor.indexing() {
                    // Never waits: a lock held now is the background
                    // task's index step, over a large index.
                    self.state
                        .try_read()
                        .is_some_and(|st| st.index.len() <= INDEX_STEP_KEYS)
                } else {
                    !self.compactor.is_idle() && self.compactor.backlog() <= BATCH_ROWS
                };
                if !small || result.is_err() {
                    break;
                }
                result = self
                    .compactor
                    .step(&self.db, &self.state, &self.footprint, &self.behind);
            }
            result
        } else {
            return;
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "deleting compacted rows failed; they stay queued");
        }
    }

    /// Compacts the next keys of the index, or deletes the next batch of
    /// compacted rows (the background compactor's step).
    pub fn compact_step(&self) -> Result<Step, MvccError> {
        self.compactor
            .step(&self.db, &self.state, &self.footprint, &self.behind)
    }

    /// The background deletion of compacted rows.
    pub fn compactor(&self) -> &Compactor {
        &self.compactor
    }

    pub fn current_rev(&self) -> i64 {
        self.state.read().rev
    }

    pub fn compact_rev(&self) -> i64 {
        self.state.read().compact_rev
    }

    /// Size of the backing file in bytes.
    pub fn db_size(&self) -> i64 {
        self.size.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What the space quota is checked against: the high water mark of the
    /// bytes the rows occupy, never more than the file (footprint.rs).
    pub fn quota_size(&self) -> u64 {
        (EMPTY_STORE_BYTES + self.footprint.high_water()).min(self.db_size().max(0) as u64)
    }

    /// The rows' share of the file (footprint.rs).
    pub fn footprint(&self) -> &Footprint {
        &self.footprint
    }

    /// The bytes the rows occupy now (etcd's dbSizeInUse), at most the file.
    pub fn size_in_use(&self) -> i64 {
        let in_use = EMPTY_STORE_BYTES + self.footprint.in_use();
        (in_use.min(i64::MAX as u64) as i64).min(self.db_size())
    }

    /// [`Store::refresh_size`] after a commit, at most once per
    /// `SIZE_CHECK_EVERY` (a stat per commit was one syscall per put).
    /// The file grows in steps (redb doubles it, then adds whole regions);
    /// a quota check reading a size that old lets in at most that much
    /// more, as etcd's check before proposing lets in what is in flight.
    fn refresh_size_after_commit(&self) {
        const SIZE_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(10);
        let mut checked = self.size_checked.lock();
        if checked.elapsed() >= SIZE_CHECK_EVERY {
            *checked = std::time::Instant::now();
            drop(checked);
            self.refresh_size();
        }
    }

    fn refresh_size(&self) {
        let len = std::fs::metadata(&self.path)
            .map(|m| m.len() as i64)
            .unwrap_or(0);
        self.size.store(len, std::sync::atomic::Ordering::Relaxed);
    }

    /// The gate between long reads and defragment: hold it shared for the
    /// life of an [`OwnedRead`] (or an export), exclusive around [`Store::defragment`].
    pub fn read_gate(&self) -> Arc<tokio::sync::RwLock<()>> {
        self.read_gate.clone()
    }

    /// Runs `f` with a read transaction over the raw tables, holding the
    /// state lock throughout: only for short reads (writers wait meanwhile).
    pub fn with_read_txn<R>(
        &self,
        f: impl FnOnce(&ReadTransaction, &State) -> Result<R, MvccError>,
    ) -> Result<R, MvccError> {
        let db = self.db.read();
        let state = self.state.read();
        let rtx = self.behind.begin_read(&db)?;
        f(&rtx, &state)
    }

    /// A read transaction of the last committed state with that state's
    /// revision and compaction revision, taken under a brief lock and owned
    /// by the caller: long reads (exports, hashes) run on it while writers
    /// go on. (A defragment meanwhile fails, redb cannot compact under a
    /// live read: hold [`Store::read_gate`] shared while it lives.)
    pub fn read_txn(&self) -> Result<OwnedRead, MvccError> {
        let db = self.db.read();
        let state = self.state.read();
        Ok(OwnedRead {
            txn: self.behind.begin_read(&db)?,
            rev: state.rev,
            compact_rev: state.compact_rev,
        })
    }

    /// Makes every earlier commit durable and returns a read transaction of
    /// exactly that state (no later commit can slip in between). Hold
    /// [`Store::read_gate`] shared while it lives.
    pub fn durable_read(&self) -> Result<ReadTransaction, MvccError> {
        let db = self.db.read();
        let _state = self.state.write();
        let mut slot = self.behind.lock();
        Behind::take(&mut slot, &db)?.commit(true)?;
        Ok(db.begin_read()?)
    }

    /// Makes every earlier commit durable and streams exactly that state to
    /// `out`; returns the bytes written and the META values named in `keys`
    /// as of that state.
    pub fn export_durable<W: std::io::Write>(
        &self,
        keys: &[&str],
        out: &mut W,
    ) -> Result<(u64, MetaValues), MvccError> {
        let rtx = self.durable_read()?;
        let meta = rtx.open_table(META)?;
        let mut vals = Vec::with_capacity(keys.len());
        for k in keys {
            vals.push(meta.get(*k)?.map(|g| g.value().to_vec()));
        }
        let len = crate::storage::snapshot::export_to(&rtx, out)
            .map_err(|e| MvccError::Storage(e.to_string()))?;
        Ok((len, vals))
    }

    /// Replaces the whole store with the snapshot in `data` (`len` bytes
    /// from its current position), durably, and reloads the index. The
    /// snapshot is read twice (checksum, then import), never held in memory.
    pub fn import_from<R: std::io::Read + std::io::Seek>(
        &self,
        data: &mut R,
        len: u64,
    ) -> Result<Recovered, MvccError> {
        // Built beside the live file in bounded memory, then swapped in:
        // one write transaction held every page of a large store in memory.
        let installing = installing_path(&self.path);
        let fresh =
            crate::storage::snapshot::import_to_file(&installing, data, len).map_err(|e| {
                let _ = crate::storage::snapshot::discard_import(&installing);
                MvccError::Storage(e.to_string())
            })?;
        // Dropping the old handle closes its file under any owned read
        // (an export would fail with DatabaseClosed): wait for those, as
        // defragment does. Callers are on a blocking thread (block_in_place).
        let gate = self.read_gate.clone();
        let _no_reads = gate.blocking_write();
        self.swap_in(&installing, fresh)
    }

    /// Makes the complete, durable store file at `new` (open as `fresh`)
    /// the live one: with every reader and writer held off, renames it over
    /// the live file and fsyncs the directory (the rename is the commit
    /// point: a crash before it leaves the old store, after it the new
    /// one), rebuilds the index from it and puts it in place of the old
    /// handle. No reader sees the new file with the old index. The handle
    /// keeps the import's small cache until the next restart: reading the
    /// store through redb's 1 GiB default would keep every page in memory.
    fn swap_in(&self, new: &Path, fresh: Database) -> Result<Recovered, MvccError> {
        let mut db = self.db.write();
        let mut state = self.state.write();
        // Committed into the old file: no transaction may outlive it.
        self.behind.settle()?;
        std::fs::rename(new, &self.path)?;
        crate::storage::snapshot::sync_parent(&self.path)
            .map_err(|e| MvccError::Storage(e.to_string()))?;
        // The old index goes first: both at once would be twice the store.
        // (Past the rename, a failure here stops the member anyway.)
        *state = State::default();
        let (mut st, recovered) = load(&fresh)?;
        let (rev, dropped) = st.pending.take().unwrap_or((st.compact_rev, Vec::new()));
        self.compactor.reset(rev, dropped);
        // No owned read is live (the caller holds the read gate), so
        // closing the old, now unlinked, file cuts no export short.
        let old = std::mem::replace(&mut *db, fresh);
        drop(old);
        *state = st;
        drop(state);
        drop(db);
        self.run_compaction();
        self.refresh_size();
        Ok(recovered)
    }

    /// [`Store::import_from`] over bytes in memory.
    pub fn import(&self, data: &[u8]) -> Result<Recovered, MvccError> {
        self.import_from(&mut std::io::Cursor::new(data), data.len() as u64)
    }

    /// (lease, key) for every live key attached to a lease.
    pub fn leased_keys(&self) -> Vec<(i64, Vec<u8>)> {
        let st = self.state.read();
        st.index
            .range(&[0], &[0])
            .filter_map(|(k, h)| {
                h.live()
                    .filter(|l| l.lease != 0)
                    .map(|l| (l.lease, k.clone()))
            })
            .collect()
    }

    /// Every published member attribute record: (member id, encoded attributes).
    pub fn member_attributes(&self) -> Result<Vec<(u64, Vec<u8>)>, MvccError> {
        self.with_read_txn(|rtx, _| {
            let t = rtx.open_table(crate::storage::schema::MEMBERS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Events in `[from, to]` main revisions for keys in `[key, end)`, for watch catch-up.
    pub fn history(
        &self,
        from: i64,
        to: i64,
        key: &[u8],
        end: &[u8],
        with_prev: bool,
    ) -> Result<Vec<Event>, MvccError> {
        let snap = self.snapshot();
        if from < snap.state.compact_rev {
            return Err(MvccError::Compacted);
        }
        let rtx = snap.txn()?;
        let kv = rtx.open_table(KV)?;
        let mut out = Vec::new();
        for row in kv.range(Revision::first_key(from)..Revision::first_key(to.saturating_add(1)))? {
            let (k, v) = row?;
            let rev = Revision::from_key(k.value());
            let (tomb, value) = decode_row(rev, v.value())?;
            if !super::in_range(&value.key, key, end) {
                continue;
            }
            // A row compaction drops that the background pass has not
            // reached yet (only at the compaction revision itself: `from`
            // is not below it) is not history any more. What the compaction
            // keeps, not what the index holds yet: the same on every member.
            let compact = snap.state.compact_rev;
            if rev.main <= compact
                && !snap
                    .state
                    .index
                    .get(&value.key)
                    .is_some_and(|h| h.keeps(rev, compact))
            {
                continue;
            }
            let prev_kv = if with_prev {
                let prev = snap
                    .state
                    .index
                    .get(&value.key)
                    .and_then(|h| h.kept_before(rev, compact));
                match prev {
                    Some(p) => snap.fetch(p)?,
                    None => None,
                }
            } else {
                None
            };
            out.push(Event {
                r#type: if tomb {
                    EventType::Delete
                } else {
                    EventType::Put
                } as i32,
                kv: Some(value),
                prev_kv,
            });
        }
        Ok(out)
    }
}

/// Where a snapshot import builds the store file that replaces `live`
/// (`member/db.installing` beside `member/db`).
fn installing_path(live: &Path) -> PathBuf {
    let mut name = live.file_name().unwrap_or_default().to_os_string();
    name.push(".installing");
    live.with_file_name(name)
}

/// An owned read transaction and the revisions of the state it sees.
pub struct OwnedRead {
    pub txn: ReadTransaction,
    pub rev: i64,
    pub compact_rev: i64,
}

/// A read view: the state lock held for its lifetime, a redb read txn opened on first need.
pub struct Snapshot<'a> {
    db: RwLockReadGuard<'a, Database>,
    state: RwLockReadGuard<'a, State>,
    behind: &'a Behind,
    txn: std::cell::OnceCell<ReadTransaction>,
    /// The `kv` table of `txn`, opened once: a range reads one row per key
    /// whose value the index does not cache.
    kv: std::cell::OnceCell<redb::ReadOnlyTable<u128, &'static [u8]>>,
}

impl Snapshot<'_> {
    fn txn(&self) -> Result<&ReadTransaction, MvccError> {
        if let Some(t) = self.txn.get() {
            return Ok(t);
        }
        let t = self.behind.begin_read(&self.db)?;
        Ok(self.txn.get_or_init(|| t))
    }

    fn kv(&self) -> Result<&redb::ReadOnlyTable<u128, &'static [u8]>, MvccError> {
        if let Some(t) = self.kv.get() {
            return Ok(t);
        }
        let t = self.txn()?.open_table(KV)?;
        Ok(self.kv.get_or_init(|| t))
    }
}

impl ReadView for Snapshot<'_> {
    fn rev(&self) -> i64 {
        self.state.rev
    }
    fn compact_rev(&self) -> i64 {
        self.state.compact_rev
    }
    fn index(&self) -> &Index {
        &self.state.index
    }
    fn fetch(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        fetch_put(self.kv()?, rev)
    }
}
