//! Defragment: rewrites the store file without its free pages, as etcd's
//! defrag copies bbolt into a new file, but while writes go on.
//!
//! redb's in-place `compact()` held every reader and writer off for the
//! whole rewrite (5.4 s at 1M keys) and left much of the file in place.
//! Here the rows are copied into a new file (`member/db.defrag`) from a read
//! transaction while the applier keeps writing; catch-up rounds copy the
//! rows written meanwhile (revisions only grow, so they are the rows above
//! the last round's revision) and delete the rows the background compactor
//! deleted meanwhile (it records them for us). Only the last, short tail,
//! the small tables and the swap run with the store locked: the new file is
//! made durable, renamed over the live one (the commit point: a crash before
//! it leaves the old file and a stray copy that the next open or defragment
//! deletes), and its handle replaces the old one. The index in memory is
//! unchanged: the new file holds exactly the rows the old one did.

use std::path::{Path, PathBuf};
use std::time::Instant;

use redb::{
    Database, Durability, ReadTransaction, ReadableTable, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::Store;
use crate::mvcc::compactor::Recording;
use crate::mvcc::{MvccError, Revision};
use crate::storage::schema::{ALARMS, KV, LEASES, MEMBERS, META};
use crate::storage::snapshot::{sync_parent, BACKEND_CACHE_BYTES};

/// Row bytes copied per write transaction of the new file: few commits,
/// while redb's cache bounds the memory each one holds.
const COPY_BATCH_BYTES: usize = 64 << 20;
/// Catch-up rounds outside the lock, at most.
const CATCH_UP_ROUNDS: usize = 4;
/// A round that copied fewer rows than this ends the catch-up: the rest is
/// copied under the lock, where it costs about as much as another round.
const SHORT_TAIL_ROWS: u64 = 5_000;

impl Store {
    /// Rewrites the store file without free pages. Reads and writes go on
    /// while the rows are copied; they wait only for the last rows written,
    /// the small tables and the swap of the files. The caller holds
    /// [`Store::read_gate`] exclusively: the old file's handle is closed at
    /// the end, which would cut an owned read short (and two defragments
    /// would share the new file's path).
    pub fn defragment(&self) -> Result<(), MvccError> {
        let tmp = defrag_path(&self.path);
        discard_defrag(&tmp)?;
        let result = self.defragment_into(&tmp);
        if result.is_err() {
            // Best effort: the next open or defragment removes it too.
            let _ = discard_defrag(&tmp);
        }
        result
    }

    fn defragment_into(&self, tmp: &Path) -> Result<(), MvccError> {
        let started = Instant::now();
        let size_before = self.db_size();
        // Started before the first read, so every row the compactor deletes
        // after that read is in the log.
        let recording = self.compactor.record_deletions();
        let fresh = redb::Builder::new()
            .set_cache_size(BACKEND_CACHE_BYTES)
            .create(tmp)?;

        let (rtx, mut copied_rev) = self.read_at_head()?;
        let mut rows = copy_kv(&rtx, &fresh, 0)?;
        drop(rtx);
        delete_recorded(&fresh, &recording)?;
        for _ in 0..CATCH_UP_ROUNDS {
            let (rtx, rev) = self.read_at_head()?;
            let n = copy_kv(
                &rtx,
                &fresh,
                Revision::first_key(copied_rev.saturating_add(1)),
            )?;
            drop(rtx);
            rows += n;
            copied_rev = rev;
            delete_recorded(&fresh, &recording)?;
            if n < SHORT_TAIL_ROWS {
                break;
            }
        }
        // Flushed here, not under the lock: the copy's commits were not
        // durable, and the first durable one writes all their pages out.
        let mut wtx = fresh.begin_write()?;
        wtx.set_durability(Durability::Immediate)?;
        wtx.commit()?;
        let copied = started.elapsed();

        // Every reader and writer waits from here to the swap (the
        // compactor's batches too: they take `db` shared).
        let mut db = self.db.write();
        let locked = Instant::now();
        let mut tail = 0;
        {
            // The applier's open transaction goes into the old file first:
            // the tail copied below must hold it, and none may outlive the
            // old handle.
            let rtx = self.behind.begin_read(&db)?;
            check_tables(&rtx)?;
            let mut wtx = fresh.begin_write()?;
            wtx.set_durability(Durability::Immediate)?;
            tail += copy_kv_in(
                &rtx,
                &wtx,
                Revision::first_key(copied_rev.saturating_add(1)),
                usize::MAX,
                &mut None,
            )?;
            delete_recorded_in(&wtx, &recording)?;
            replace_table(&rtx, &wtx, META)?;
            replace_table(&rtx, &wtx, LEASES)?;
            replace_table(&rtx, &wtx, ALARMS)?;
            replace_table(&rtx, &wtx, MEMBERS)?;
            drop(rtx);
            wtx.commit()?;
        }
        drop(recording);
        std::fs::rename(tmp, &self.path)?;
        // The new file is live from the rename on: swap the handles even if
        // the directory sync fails (the old handle's file is unlinked).
        let old = std::mem::replace(&mut *db, fresh);
        let synced = sync_parent(&self.path).map_err(|e| MvccError::Storage(e.to_string()));
        drop(db);
        let stalled = locked.elapsed();
        // Closing the old file (unlinked, nothing reads it) writes to it:
        // not while the others wait.
        drop(old);
        self.refresh_size();
        self.footprint.settle();
        tracing::info!(
            took = ?started.elapsed(),
            copying = ?copied,
            writes_held = ?stalled,
            rows = rows + tail,
            tail_rows = tail,
            size_before,
            size_after = self.db_size(),
            "defragmented the backend"
        );
        synced
    }

    /// A read transaction of the last commit with that commit's revision
    /// (no write is under way while `state` is held).
    fn read_at_head(&self) -> Result<(ReadTransaction, i64), MvccError> {
        let db = self.db.read();
        let state = self.state.read();
        Ok((self.behind.begin_read(&db)?, state.rev))
    }
}

/// Where a defragment builds the new store file (`member/db.defrag`).
pub(super) fn defrag_path(live: &Path) -> PathBuf {
    let mut name = live.file_name().unwrap_or_default().to_os_string();
    name.push(".defrag");
    live.with_file_name(name)
}

/// Removes a copy a defragment left behind (a crash or an error before the
/// swap); nothing there is not an error.
pub(super) fn discard_defrag(path: &Path) -> Result<(), MvccError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(file = %path.display(), "removed an unfinished defragment's copy");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(MvccError::Storage(format!("{}: {e}", path.display()))),
    }
}

/// Copies the KV rows from key `from` on into `fresh`, in non-durable
/// transactions of [`COPY_BATCH_BYTES`]; returns how many.
fn copy_kv(rtx: &ReadTransaction, fresh: &Database, from: u128) -> Result<u64, MvccError> {
    let mut next = Some(from);
    let mut rows = 0;
    while next.is_some() {
        let mut wtx = fresh.begin_write()?;
        wtx.set_durability(Durability::None)?;
        let start = next.take().unwrap_or_default();
        rows += copy_kv_in(rtx, &wtx, start, COPY_BATCH_BYTES, &mut next)?;
        wtx.commit()?;
    }
    Ok(rows)
}

/// Copies KV rows from key `from` on within `wtx` until `budget` bytes;
/// sets `resume` to the first key left when the budget ran out.
fn copy_kv_in(
    rtx: &ReadTransaction,
    wtx: &WriteTransaction,
    from: u128,
    budget: usize,
    resume: &mut Option<u128>,
) -> Result<u64, MvccError> {
    let src = rtx.open_table(KV)?;
    let mut dst = wtx.open_table(KV)?;
    let mut bytes = 0usize;
    let mut rows = 0;
    for row in src.range(from..)? {
        let (k, v) = row?;
        if bytes >= budget {
            *resume = Some(k.value());
            break;
        }
        bytes += 16 + v.value().len();
        dst.insert(k.value(), v.value())?;
        rows += 1;
    }
    Ok(rows)
}

/// Deletes from `fresh` the rows the compactor deleted since the last call.
fn delete_recorded(fresh: &Database, recording: &Recording<'_>) -> Result<(), MvccError> {
    let wtx = fresh.begin_write()?;
    delete_recorded_in(&wtx, recording)?;
    wtx.commit()?;
    Ok(())
}

fn delete_recorded_in(wtx: &WriteTransaction, recording: &Recording<'_>) -> Result<(), MvccError> {
    let deleted = recording.take();
    if deleted.is_empty() {
        return Ok(());
    }
    let mut kv = wtx.open_table(KV)?;
    for r in deleted {
        kv.remove(r.to_key())?;
    }
    Ok(())
}

/// Replaces `def` in `wtx` with its rows in `rtx` (the small tables, copied
/// whole under the lock).
fn replace_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    rtx: &ReadTransaction,
    wtx: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<(), MvccError> {
    wtx.delete_table(def)?;
    let mut dst = wtx.open_table(def)?;
    let src = rtx.open_table(def)?;
    for row in src.iter()? {
        let (k, v) = row?;
        dst.insert(k.value(), v.value())?;
    }
    Ok(())
}

/// Refuses a store with a table this copy does not know (one added to the
/// schema but not here would be lost).
fn check_tables(rtx: &ReadTransaction) -> Result<(), MvccError> {
    let known = [
        KV.name(),
        META.name(),
        LEASES.name(),
        ALARMS.name(),
        MEMBERS.name(),
    ];
    for t in rtx.list_tables()? {
        if !known.contains(&t.name()) {
            return Err(MvccError::Storage(format!(
                "defragment does not know table {:?}; refusing to drop it",
                t.name()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::compactor::Step;
    use crate::mvcc::WriteBatch;

    const ROWS: usize = 20_000;

    /// ROWS rows over 10 keys (revisions 2..=ROWS+1), 100 per commit.
    fn fill(store: &Store) {
        for chunk in 0..ROWS / 100 {
            store
                .write(false, |st, wtx| {
                    let mut kv = wtx.open_table(KV)?;
                    let mut b = WriteBatch::new(st, &mut kv);
                    for i in chunk * 100..(chunk + 1) * 100 {
                        b.begin();
                        b.put(format!("k{}", i % 10).as_bytes(), vec![i as u8; 64], 0)?;
                        b.end();
                    }
                    Ok(())
                })
                .unwrap();
        }
    }

    fn compact(store: &Store, rev: i64) {
        store
            .write(false, |st, wtx| {
                let mut kv = wtx.open_table(KV)?;
                WriteBatch::new(st, &mut kv).compact(rev)
            })
            .unwrap();
    }

    fn rows(store: &Store) -> usize {
        store
            .with_read_txn(|rtx, _| Ok(rtx.open_table(KV)?.iter()?.count()))
            .unwrap()
    }

    /// The background compactor deletes rows while the defragment copies:
    /// the copy must not bring them back.
    #[test]
    fn rows_the_compactor_deletes_during_the_copy_stay_deleted() {
        let d = tempfile::tempdir().unwrap();
        for round in 0..3 {
            let path = d.path().join(format!("db{round}"));
            let (store, _) = Store::open(&path).unwrap();
            store.compactor().attach();
            fill(&store);
            let head = store.current_rev();
            compact(&store, head - 1000);
            let hash = store.hash_kv(head).unwrap();
            assert!(store.compactor().backlog() > 10 * crate::mvcc::compactor::BATCH_ROWS);
            std::thread::scope(|s| {
                s.spawn(|| while store.compact_step().unwrap() == Step::More {});
                store.defragment().unwrap();
            });
            while store.compact_step().unwrap() == Step::More {}
            // 1000 rows above the compaction, and the one each key keeps at it.
            assert_eq!(rows(&store), 1000 + 10, "round {round}");
            assert_eq!(store.hash_kv(head).unwrap(), hash, "round {round}");
            assert!(!defrag_path(&path).exists());
            drop(store);
            let (store, _) = Store::open(&path).unwrap();
            assert_eq!(rows(&store), 1000 + 10, "round {round}, reopened");
            assert_eq!(store.compactor().backlog(), 0);
        }
    }

    /// Writes committed while the defragment copies are in the new file.
    #[test]
    fn writes_during_the_copy_are_in_the_new_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        let (store, _) = Store::open(&path).unwrap();
        fill(&store);
        std::thread::scope(|s| {
            s.spawn(|| fill(&store));
            for _ in 0..5 {
                store.defragment().unwrap();
            }
        });
        let head = store.current_rev();
        assert_eq!(head, 1 + 2 * ROWS as i64);
        assert_eq!(rows(&store), 2 * ROWS);
        let hash = store.hash_kv(head).unwrap();
        drop(store);
        let (store, _) = Store::open(&path).unwrap();
        assert_eq!(store.current_rev(), head);
        assert_eq!(store.hash_kv(head).unwrap(), hash);
    }

    /// A copy a crash left behind is removed when the store opens.
    #[test]
    fn open_removes_a_stray_copy() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        std::fs::write(defrag_path(&path), b"half a copy").unwrap();
        let (_store, _) = Store::open(&path).unwrap();
        assert!(!defrag_path(&path).exists());
    }
}
