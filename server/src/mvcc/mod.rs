//! Revisioned key-value storage with etcd's MVCC semantics.
//!
//! One global revision per committed mutation; each key keeps its history of
//! revisions (a delete leaves a tombstone); reads can target any revision not
//! yet compacted. The index in memory holds revisions, not values: the
//! recently written values are cached beside it within a fixed budget
//! (index.rs), every other read goes to the backend by revision.

mod batch;
pub mod compactor;
pub mod footprint;
mod index;
mod recover;
mod revision;
pub(crate) mod row;
pub(crate) mod store;

pub use batch::WriteBatch;
pub use index::{in_range, Index, KeyHistory, Live, VALUE_CACHE_BYTES};
pub use revision::Revision;
pub use store::{ReadView, Recovered, Snapshot, Store};

/// Errors of the MVCC layer. The wire layer maps them to etcd's statuses.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
    #[error("storage: {0}")]
    Storage(String),
    #[error("storage: corrupt record at revision {0}")]
    Corrupt(String),
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for MvccError {
            fn from(e: $t) -> Self {
                MvccError::Storage(e.to_string())
            }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::StorageError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError,
    redb::DatabaseError,
    redb::CompactionError,
    redb::SetDurabilityError,
    std::io::Error
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::schema::KV;

    fn put(store: &Store, key: &[u8], fail: bool) -> Result<(), MvccError> {
        store.write(false, |st, wtx| {
            let mut kv = wtx.open_table(KV)?;
            let mut b = WriteBatch::new(st, &mut kv);
            b.begin();
            b.put(key, b"v".to_vec(), 0)?;
            b.end();
            if fail {
                // Stands for a commit that fails after the index changed.
                return Err(MvccError::Storage("injected".into()));
            }
            Ok(())
        })
    }

    #[test]
    fn a_snapshot_import_swaps_the_whole_store_in() {
        use redb::ReadableTable;
        let d = tempfile::tempdir().unwrap();
        let (src, _) = Store::open(&d.path().join("src")).unwrap();
        put(&src, b"new", false).unwrap();
        let mut snap = Vec::new();
        src.export_durable(&[], &mut snap).unwrap();
        let path = d.path().join("db");
        let (store, _) = Store::open(&path).unwrap();
        put(&store, b"old", false).unwrap();
        // An export in flight (holding the read gate) finishes on the old
        // store before the swap closes it.
        let gate = store.read_gate().try_read_owned().unwrap();
        let export = store.read_txn().unwrap();
        let finish = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let rows = export.txn.open_table(KV).unwrap().iter().unwrap().count();
            drop(export);
            drop(gate);
            rows
        });
        store.import(&snap).unwrap();
        assert_eq!(finish.join().unwrap(), 1, "the export read the old store");
        assert!(store.snapshot().index().get(b"new").is_some());
        assert!(store.snapshot().index().get(b"old").is_none());
        assert!(!d.path().join("db.installing").exists());
        drop(store);
        let (store, _) = Store::open(&path).unwrap();
        assert!(store.snapshot().index().get(b"new").is_some(), "on disk");
    }

    #[test]
    fn an_interrupted_snapshot_import_is_discarded_at_open() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        {
            let (store, _) = Store::open(&path).unwrap();
            put(&store, b"a", false).unwrap();
        }
        std::fs::write(d.path().join("db.installing"), b"half an import").unwrap();
        let (store, _) = Store::open(&path).unwrap();
        assert!(!d.path().join("db.installing").exists());
        assert!(
            store.snapshot().index().get(b"a").is_some(),
            "the old store stays"
        );
    }

    #[test]
    fn values_the_index_does_not_hold_are_read_from_the_backend() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        {
            let (store, _) = Store::open(&path).unwrap();
            put(&store, b"a", false).unwrap();
        }
        // Reopened: the index is rebuilt with revisions only, no values.
        let (store, _) = Store::open(&path).unwrap();
        let snap = store.snapshot();
        let h = snap.index().get(b"a").expect("indexed");
        let rev = h.newest_put().expect("alive");
        assert!(h.cached_at(rev).is_none());
        let kv = snap.value_at(h, snap.rev()).unwrap().expect("read back");
        assert_eq!((kv.value.as_slice(), kv.version), (b"v".as_slice(), 1));
        let created = kv.create_revision;
        drop(snap);
        store
            .write(false, |st, wtx| {
                let mut table = wtx.open_table(KV)?;
                let mut b = WriteBatch::new(st, &mut table);
                b.begin();
                // The previous value comes back from disk for the event's
                // prev_kv; version and create revision from the index.
                let prev = b.put(b"a", b"w".to_vec(), 0)?.expect("was alive");
                b.end();
                assert_eq!(prev.value, b"v");
                let ev = &b.events[0];
                let now = ev.kv.as_ref().expect("kv");
                assert_eq!((now.version, now.create_revision), (2, created));
                assert_eq!(
                    ev.prev_kv.as_ref().map(|p| p.value.as_slice()),
                    Some(&b"v"[..])
                );
                b.begin();
                let gone = b.delete(b"a")?.expect("was alive");
                b.end();
                assert_eq!(gone.value, b"w");
                assert!(b.delete(b"a")?.is_none(), "already deleted");
                Ok(())
            })
            .unwrap();
        drop(store);
        // And after another restart the key stays deleted, its put readable
        // at its revision.
        let (store, _) = Store::open(&path).unwrap();
        let snap = store.snapshot();
        let h = snap.index().get(b"a").expect("indexed");
        assert!(h.live().is_none());
        let old = snap.value_at(h, snap.rev() - 1).unwrap().expect("history");
        assert_eq!((old.value.as_slice(), old.version), (b"w".as_slice(), 2));
    }

    #[test]
    fn reads_of_the_backend_see_every_applied_batch() {
        use redb::ReadableTableMetadata;
        let d = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&d.path().join("db")).unwrap();
        for k in [b"a", b"b", b"c"] {
            // Not committed yet: they ride in the open transaction.
            put(&store, k, false).unwrap();
        }
        let read = store.read_txn().unwrap();
        assert_eq!(read.txn.open_table(KV).unwrap().len().unwrap(), 3);
        assert_eq!(read.rev, store.current_rev());
        drop(read);
        put(&store, b"d", false).unwrap();
        let (hash, _, rev) = store.hash_kv(0).unwrap();
        assert_eq!(rev, store.current_rev());
        let (reference, _) = Store::open(&d.path().join("ref")).unwrap();
        for k in [b"a", b"b", b"c", b"d"] {
            put(&reference, k, false).unwrap();
            reference.settle().unwrap();
        }
        assert_eq!(reference.hash_kv(0).unwrap().0, hash);
        put(&store, b"e", false).unwrap();
        let mut snap = Vec::new();
        store.export_durable(&[], &mut snap).unwrap();
        let (copy, _) = Store::open(&d.path().join("copy")).unwrap();
        copy.import(&snap).unwrap();
        assert!(copy.snapshot().index().get(b"e").is_some());
    }

    #[test]
    fn a_failed_write_leaves_no_change_in_memory() {
        let d = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&d.path().join("db")).unwrap();
        put(&store, b"a", false).unwrap();
        // Committed: a failure in a transaction still carrying "a" (which a
        // client may have been told about) would stop the process instead.
        store.settle().unwrap();
        let rev = store.current_rev();
        assert!(put(&store, b"b", true).is_err());
        assert_eq!(store.current_rev(), rev);
        let snap = store.snapshot();
        assert!(snap.index().get(b"b").is_none());
        assert!(snap.index().get(b"a").is_some());
        drop(snap);
        // And the store goes on from the committed state.
        put(&store, b"c", false).unwrap();
        assert_eq!(store.current_rev(), rev + 1);
    }
}
