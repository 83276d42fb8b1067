//! The MVCC store over redb: read views, write batches, recovery, compaction.
//!
//! Lock order: `db` before `state`. `db` is write-locked only by defragment;
//! `state` is write-locked by the applier for the length of one batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_proto::mvccpb::{event::EventType, Event, KeyValue};
use parking_lot::{RwLock, RwLockReadGuard};
use prost::Message;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, Table};

use super::recover::load;
pub use super::recover::Recovered;
use super::{Index, KeyHistory, MvccError, Revision};
use crate::storage::schema::{KV, LEASES, META, META_COMPACT, META_REVISION};

const KIND_PUT: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;

/// The mutable part of the store, guarded by one lock.
#[derive(Debug, Default)]
pub struct State {
    pub index: Index,
    pub rev: i64,
    pub compact_rev: i64,
}

/// Revisioned key-value store.
pub struct Store {
    db: RwLock<Database>,
    state: RwLock<State>,
    path: PathBuf,
    /// File size as of the last commit: quota checks read it on every write,
    /// so it is refreshed once per applied batch instead of stat'ed per request.
    size: std::sync::atomic::AtomicI64,
}

/// Values read from META, in the order asked for.
pub type MetaValues = Vec<Option<Vec<u8>>>;

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
        if let (Some(latest), Some((last, _))) = (&hist.latest, hist.revs.last()) {
            if *last == r {
                return Ok(Some(latest.clone()));
            }
        }
        Ok(self.fetch(r)?.map(Arc::new))
    }
}

pub(crate) fn encode_row(kind: u8, kv: &KeyValue) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1 + kv.encoded_len());
    buf.push(kind);
    // Encoding into a Vec cannot fail.
    let _ = kv.encode(&mut buf);
    buf
}

pub(crate) fn decode_row(rev: Revision, bytes: &[u8]) -> Result<(bool, KeyValue), MvccError> {
    let corrupt = || MvccError::Corrupt(format!("{}.{}", rev.main, rev.sub));
    let (kind, body) = bytes.split_first().ok_or_else(corrupt)?;
    let kv = KeyValue::decode(body).map_err(|_| corrupt())?;
    match *kind {
        KIND_PUT => Ok((false, kv)),
        KIND_TOMBSTONE => Ok((true, kv)),
        _ => Err(corrupt()),
    }
}

impl Store {
    /// Opens or creates the store file and rebuilds the in-memory index.
    pub fn open(path: &Path) -> Result<(Store, Recovered), MvccError> {
        let db = Database::create(path)?;
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
        };
        let recovered = store.reload()?;
        Ok((store, recovered))
    }

    /// Rebuilds the index and counters from disk (after open or a snapshot install).
    pub fn reload(&self) -> Result<Recovered, MvccError> {
        let db = self.db.read();
        let (st, recovered) = load(&db)?;
        *self.state.write() = st;
        drop(db);
        self.refresh_size();
        Ok(recovered)
    }

    /// A consistent read view at the current revision.
    pub fn snapshot(&self) -> Snapshot<'_> {
        let db = self.db.read();
        let state = self.state.read();
        Snapshot {
            db,
            state,
            txn: std::cell::OnceCell::new(),
        }
    }

    /// Runs `f` inside one redb write transaction with the state locked.
    /// `durable` forces an fsync of this and every earlier commit.
    pub fn write<R>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut State, &redb::WriteTransaction) -> Result<R, MvccError>,
    ) -> Result<R, MvccError> {
        let db = self.db.read();
        let mut state = self.state.write();
        let result = (|| {
            let mut wtx = db.begin_write()?;
            wtx.set_durability(if durable {
                redb::Durability::Immediate
            } else {
                redb::Durability::None
            })?;
            let out = f(&mut state, &wtx)?;
            {
                let mut meta = wtx.open_table(META)?;
                meta.insert(META_REVISION, state.rev.to_le_bytes().as_slice())?;
                meta.insert(META_COMPACT, state.compact_rev.to_le_bytes().as_slice())?;
            }
            wtx.commit()?;
            Ok(out)
        })();
        if let Err(e) = &result {
            // `f` changed the index as it went: put back the last committed
            // state before any reader can see changes that are not on disk.
            tracing::error!(error = %e, "backend commit failed; restoring the index from the last commit");
            match load(&db) {
                Ok((st, _)) => *state = st,
                Err(e2) => {
                    // No committed state to fall back to: serving this index
                    // would show writes that are not on disk. Exit as etcd's
                    // backend does on a failed commit; a restart recovers.
                    tracing::error!(error = %e2, "cannot reload the index after a failed commit; exiting");
                    std::process::exit(1);
                }
            }
        }
        drop(state);
        drop(db);
        self.refresh_size();
        result
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

    fn refresh_size(&self) {
        let len = std::fs::metadata(&self.path)
            .map(|m| m.len() as i64)
            .unwrap_or(0);
        self.size.store(len, std::sync::atomic::Ordering::Relaxed);
    }

    /// Rewrites the file without free pages. Blocks every other access while it runs.
    pub fn defragment(&self) -> Result<(), MvccError> {
        let mut db = self.db.write();
        // A durable commit first so compaction can reclaim pages freed by non-durable ones.
        let mut wtx = db.begin_write()?;
        wtx.set_durability(redb::Durability::Immediate)?;
        wtx.commit()?;
        while db.compact()? {}
        drop(db);
        self.refresh_size();
        Ok(())
    }

    /// Runs `f` with a read transaction over the raw tables, holding the
    /// state lock throughout: only for short reads (writers wait meanwhile).
    pub fn with_read_txn<R>(
        &self,
        f: impl FnOnce(&ReadTransaction, &State) -> Result<R, MvccError>,
    ) -> Result<R, MvccError> {
        let db = self.db.read();
        let state = self.state.read();
        let rtx = db.begin_read()?;
        f(&rtx, &state)
    }

    /// A read transaction of the last committed state with that state's
    /// revision and compaction revision, taken under a brief lock and owned
    /// by the caller: long reads (exports, hashes) run on it while writers
    /// go on. (A defragment meanwhile fails: redb cannot compact under a
    /// live read.)
    pub fn read_txn(&self) -> Result<OwnedRead, MvccError> {
        let db = self.db.read();
        let state = self.state.read();
        Ok(OwnedRead {
            txn: db.begin_read()?,
            rev: state.rev,
            compact_rev: state.compact_rev,
        })
    }

    /// Makes every earlier commit durable and streams exactly that state to
    /// `out`; returns the bytes written and the META values named in `keys`
    /// as of that state.
    pub fn export_durable<W: std::io::Write>(
        &self,
        keys: &[&str],
        out: &mut W,
    ) -> Result<(u64, MetaValues), MvccError> {
        let rtx = {
            let db = self.db.read();
            let _state = self.state.write();
            let mut wtx = db.begin_write()?;
            wtx.set_durability(redb::Durability::Immediate)?;
            wtx.commit()?;
            db.begin_read()?
        };
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
        {
            let db = self.db.read();
            let _state = self.state.write();
            let mut wtx = db.begin_write()?;
            wtx.set_durability(redb::Durability::Immediate)?;
            crate::storage::snapshot::import_from(&wtx, data, len)
                .map_err(|e| MvccError::Storage(e.to_string()))?;
            wtx.commit()?;
        }
        self.reload()
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
                h.latest
                    .as_ref()
                    .filter(|kv| kv.lease != 0)
                    .map(|kv| (kv.lease, k.clone()))
            })
            .collect()
    }

    /// crc32 over every row up to main revision `rev` (0 = current), with the
    /// compaction revision: equal on members holding the same history.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), MvccError> {
        let read = self.read_txn()?;
        let rev = if rev <= 0 { read.rev } else { rev };
        if rev > read.rev {
            return Err(MvccError::FutureRev);
        }
        if rev < read.compact_rev {
            return Err(MvccError::Compacted);
        }
        let mut h = crc32fast::Hasher::new();
        let kv = read.txn.open_table(KV)?;
        for row in kv.range(..Revision::first_key(rev.saturating_add(1)))? {
            let (k, v) = row?;
            h.update(&k.value().to_be_bytes());
            h.update(v.value());
        }
        Ok((h.finalize(), read.compact_rev, rev))
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

    /// crc32 of every table: the whole backend (streamed through the
    /// hasher, never gathered in memory).
    pub fn hash_all(&self) -> Result<u32, MvccError> {
        let read = self.read_txn()?;
        let mut h = CrcWriter(crc32fast::Hasher::new());
        crate::storage::snapshot::export_to(&read.txn, &mut h)
            .map_err(|e| MvccError::Storage(e.to_string()))?;
        Ok(h.0.finalize())
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
            let prev_kv = if with_prev {
                let prev = snap
                    .state
                    .index
                    .get(&value.key)
                    .and_then(|h| h.live_before(rev));
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

/// An owned read transaction and the revisions of the state it sees.
pub struct OwnedRead {
    pub txn: ReadTransaction,
    pub rev: i64,
    pub compact_rev: i64,
}

/// A writer that only feeds a crc32.
struct CrcWriter(crc32fast::Hasher);

impl std::io::Write for CrcWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A read view: the state lock held for its lifetime, a redb read txn opened on first need.
pub struct Snapshot<'a> {
    db: RwLockReadGuard<'a, Database>,
    state: RwLockReadGuard<'a, State>,
    txn: std::cell::OnceCell<ReadTransaction>,
}

impl Snapshot<'_> {
    fn txn(&self) -> Result<&ReadTransaction, MvccError> {
        if let Some(t) = self.txn.get() {
            return Ok(t);
        }
        let t = self.db.begin_read()?;
        Ok(self.txn.get_or_init(|| t))
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
        let table = self.txn()?.open_table(KV)?;
        fetch_put(&table, rev)
    }
}

fn fetch_put(
    table: &impl ReadableTable<u128, &'static [u8]>,
    rev: Revision,
) -> Result<Option<KeyValue>, MvccError> {
    match table.get(rev.to_key())? {
        Some(v) => match decode_row(rev, v.value())? {
            (false, kv) => Ok(Some(kv)),
            (true, _) => Ok(None),
        },
        None => Ok(None),
    }
}

/// Mutations of one applied batch; every change of one request shares a main revision.
pub struct WriteBatch<'a, 't> {
    state: &'a mut State,
    kv: &'a mut Table<'t, u128, &'static [u8]>,
    main: i64,
    sub: i64,
    /// Events produced so far, in revision order.
    pub events: Vec<Event>,
}

impl<'a, 't> WriteBatch<'a, 't> {
    pub fn new(state: &'a mut State, kv: &'a mut Table<'t, u128, &'static [u8]>) -> Self {
        let main = state.rev + 1;
        WriteBatch {
            state,
            kv,
            main,
            sub: 0,
            events: Vec::new(),
        }
    }

    /// Starts the next request: its changes get the next main revision.
    pub fn begin(&mut self) {
        self.main = self.state.rev + 1;
        self.sub = 0;
    }

    /// Ends the request; the store revision moves only if something changed.
    pub fn end(&mut self) -> i64 {
        if self.sub > 0 {
            self.state.rev = self.main;
        }
        self.state.rev
    }

    fn next_rev(&mut self) -> Revision {
        let r = Revision::new(self.main, self.sub);
        self.sub += 1;
        r
    }

    /// Writes `key`; returns the previous value if the key was alive.
    pub fn put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
    ) -> Result<Option<Arc<KeyValue>>, MvccError> {
        let rev = self.next_rev();
        let prev = self.state.index.get(key).and_then(|h| h.latest.clone());
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (rev.main, 1),
        };
        let kv = Arc::new(KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: rev.main,
            version,
            value,
            lease,
        });
        self.kv
            .insert(rev.to_key(), encode_row(KIND_PUT, &kv).as_slice())?;
        let h = self.state.index.entry(key);
        h.revs.push((rev, false));
        h.latest = Some(kv.clone());
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some((*kv).clone()),
            prev_kv: prev.as_deref().cloned(),
        });
        Ok(prev)
    }

    /// Deletes a live `key` (leaving a tombstone); returns its last value.
    pub fn delete(&mut self, key: &[u8]) -> Result<Option<Arc<KeyValue>>, MvccError> {
        let Some(prev) = self.state.index.get(key).and_then(|h| h.latest.clone()) else {
            return Ok(None);
        };
        let rev = self.next_rev();
        let tomb = KeyValue {
            key: key.to_vec(),
            mod_revision: rev.main,
            ..KeyValue::default()
        };
        self.kv
            .insert(rev.to_key(), encode_row(KIND_TOMBSTONE, &tomb).as_slice())?;
        let h = self.state.index.entry(key);
        h.revs.push((rev, true));
        h.latest = None;
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(tomb),
            prev_kv: Some((*prev).clone()),
        });
        Ok(Some(prev))
    }

    /// Live keys in `[key, end)` at the head of this batch.
    pub fn live_keys(&self, key: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        self.state
            .index
            .range(key, end)
            .filter(|(_, h)| h.latest.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Compacts history at `main`: older revisions become unreadable and their rows are deleted.
    pub fn compact(&mut self, main: i64) -> Result<(), MvccError> {
        for rev in self.state.index.compact(main) {
            self.kv.remove(rev.to_key())?;
        }
        self.state.compact_rev = self.state.compact_rev.max(main);
        Ok(())
    }
}

impl ReadView for WriteBatch<'_, '_> {
    fn rev(&self) -> i64 {
        if self.sub > 0 {
            self.main
        } else {
            self.state.rev
        }
    }
    fn compact_rev(&self) -> i64 {
        self.state.compact_rev
    }
    fn index(&self) -> &Index {
        &self.state.index
    }
    fn fetch(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        fetch_put(&*self.kv, rev)
    }
}
