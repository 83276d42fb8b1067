//! Tests of compactor.rs.

use super::*;
use crate::mvcc::{ReadView, WriteBatch};
use kv_proto::etcdserverpb::RangeRequest;
use kv_proto::mvccpb::{Event, KeyValue};
use redb::ReadableTable;

/// 2500 rows over 10 keys (revisions 2..=2501).
fn fill(store: &Store) {
    for i in 0..2500 {
        store
            .write(false, |st, wtx| {
                let mut kv = wtx.open_table(KV)?;
                let mut b = WriteBatch::new(st, &mut kv);
                b.begin();
                b.put(format!("k{}", i % 10).as_bytes(), vec![i as u8], 0)?;
                b.end();
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

fn drain(store: &Store) -> usize {
    let mut steps = 0;
    while store.compact_step().unwrap() == Step::More {
        steps += 1;
    }
    steps + 1
}

#[test]
fn rows_go_in_batches_after_the_apply_and_reads_below_fail_at_once() {
    let d = tempfile::tempdir().unwrap();
    let (reference, _) = Store::open(&d.path().join("ref")).unwrap();
    fill(&reference);
    compact(&reference, 2000); // not attached: deleted within the write
    assert_eq!(rows(&reference), 10 + 501);

    let (store, _) = Store::open(&d.path().join("db")).unwrap();
    store.compactor().attach();
    fill(&store);
    compact(&store, 2000);
    assert_eq!(store.compact_rev(), 2000);
    assert!(store.snapshot().index().get(b"k0").is_some());
    // Recorded, nothing deleted yet: 1989 rows wait.
    assert_eq!(rows(&store), 2500);
    assert_eq!(store.compactor().backlog(), 1989);
    // The hash ignores rows waiting for deletion.
    assert_eq!(
        store.hash_kv(2400).unwrap(),
        reference.hash_kv(2400).unwrap()
    );
    let finished = store.compactor().finished(2000);
    assert_eq!(drain(&store), 2, "1989 rows in batches of {BATCH_ROWS}");
    assert_eq!(rows(&store), 10 + 501);
    assert_eq!(
        store.hash_kv(2400).unwrap(),
        reference.hash_kv(2400).unwrap()
    );
    // Resolved: every row of that compaction is gone.
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(5), finished)
                .await
                .expect("finished")
        });
}

/// KEYS keys put three times each, every fifth deleted in between.
fn fill_keys(store: &Store, keys: usize) {
    for round in 0..3 {
        store
            .write(false, |st, wtx| {
                let mut kv = wtx.open_table(KV)?;
                let mut b = WriteBatch::new(st, &mut kv);
                for k in 0..keys {
                    let key = format!("k{k:05}");
                    b.begin();
                    if round == 1 && k.is_multiple_of(5) {
                        b.delete(key.as_bytes())?;
                    } else {
                        b.put(key.as_bytes(), vec![round as u8; 8], 0)?;
                    }
                    b.end();
                }
                Ok(())
            })
            .unwrap();
    }
}

/// Everything a read or a watch sees at `rev` and from `rev` on.
fn seen(store: &Store, rev: i64) -> (Vec<KeyValue>, Vec<Event>, (u32, i64, i64)) {
    let req = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision: rev,
        ..Default::default()
    };
    let kvs = crate::txn::range(&store.snapshot(), &req).unwrap().kvs;
    let head = store.current_rev();
    let from = if rev > 0 { rev } else { head };
    let events = store.history(from, head, &[0], &[0], true).unwrap();
    (kvs, events, store.hash_kv(0).unwrap())
}

#[test]
fn the_index_is_compacted_in_steps_with_writes_between() {
    let keys = 3 * INDEX_STEP_KEYS + 10;
    let d = tempfile::tempdir().unwrap();
    // Not attached: compacted whole within the write, as before.
    let (reference, _) = Store::open(&d.path().join("ref")).unwrap();
    let (store, _) = Store::open(&d.path().join("db")).unwrap();
    store.compactor().attach();
    fill_keys(&reference, keys);
    fill_keys(&store, keys);
    // The compaction revision is a delete (a tombstone the compaction
    // drops) in the middle of the second round.
    let at = 1 + keys as i64 + 5 * 300 + 1;
    compact(&reference, at);
    compact(&store, at);
    let want = seen(&reference, at);
    let head = seen(&reference, 0);
    assert!(want
        .1
        .iter()
        .all(|e| e.kv.as_ref().unwrap().mod_revision > at));
    // Applied: reads below fail, nothing of the index compacted yet.
    assert_eq!(store.compact_rev(), at);
    assert!(store.compactor().indexing());
    assert_eq!(store.compactor().backlog(), 0);
    let below = RangeRequest {
        key: b"k00000".to_vec(),
        revision: at - 1,
        ..Default::default()
    };
    assert!(matches!(
        crate::txn::range(&store.snapshot(), &below),
        Err(crate::error::KvError::Mvcc(MvccError::Compacted))
    ));
    let mut steps = 0;
    while store.compactor().indexing() {
        assert_eq!(seen(&store, at), want, "after {steps} index steps");
        assert_eq!(seen(&store, 0), head, "after {steps} index steps");
        assert_eq!(store.compact_step().unwrap(), Step::More);
        steps += 1;
    }
    assert_eq!(steps, keys.div_ceil(INDEX_STEP_KEYS));
    drain(&store);
    assert_eq!(seen(&store, at), want);
    assert_eq!(rows(&store), rows(&reference));
    assert_eq!(index(&store), index(&reference));
}

/// Every key with its revisions.
type Keys = Vec<(Vec<u8>, Vec<(Revision, bool)>)>;

fn index(store: &Store) -> Keys {
    let snap = store.snapshot();
    snap.index()
        .range(&[0], &[0])
        .map(|(k, h)| (k.clone(), h.revs.clone()))
        .collect()
}

fn each_request(store: &Store, f: impl Fn(&mut WriteBatch) -> Result<(), MvccError>) {
    store
        .write(false, |st, wtx| {
            let mut kv = wtx.open_table(KV)?;
            let mut b = WriteBatch::new(st, &mut kv);
            b.begin();
            f(&mut b)?;
            b.end();
            Ok(())
        })
        .unwrap();
}

#[test]
fn writes_between_index_steps_are_kept() {
    let keys = 2 * INDEX_STEP_KEYS;
    let d = tempfile::tempdir().unwrap();
    let (reference, _) = Store::open(&d.path().join("ref")).unwrap();
    let (store, _) = Store::open(&d.path().join("db")).unwrap();
    store.compactor().attach();
    fill_keys(&reference, keys);
    fill_keys(&store, keys);
    // Two keys whose whole history the compaction drops (it ends in
    // a tombstone), one behind the first step and one ahead of it.
    let gone = [500, INDEX_STEP_KEYS + 500].map(|k| format!("k{k:05}"));
    for s in [&reference, &store] {
        for key in &gone {
            each_request(s, |b| b.delete(key.as_bytes()).map(drop));
        }
    }
    let at = reference.current_rev();
    compact(&reference, at);
    compact(&store, at);
    assert_eq!(store.compact_step().unwrap(), Step::More);
    assert!(store.compactor().indexing(), "one step of two");
    assert!(store.snapshot().index().get(gone[0].as_bytes()).is_none());
    assert!(store.snapshot().index().get(gone[1].as_bytes()).is_some());
    // Between two steps: keys behind the pass and ahead of it deleted
    // and created again, the two gone keys created again, a new key.
    let touched = [0, 3, keys - 5, keys - 3, keys + 1].map(|k| format!("k{k:05}"));
    for s in [&reference, &store] {
        for key in &touched {
            each_request(s, |b| b.delete(key.as_bytes()).map(drop));
        }
        for key in touched.iter().chain(&gone) {
            each_request(s, |b| b.put(key.as_bytes(), b"new".to_vec(), 0).map(drop));
        }
    }
    assert_eq!(seen(&store, at), seen(&reference, at));
    assert_eq!(seen(&store, at + 1), seen(&reference, at + 1));
    drain(&store);
    assert_eq!(seen(&store, at), seen(&reference, at));
    assert_eq!(rows(&store), rows(&reference));
    assert_eq!(index(&store), index(&reference));
    for key in touched.iter().chain(&gone) {
        let h = store
            .snapshot()
            .index()
            .get(key.as_bytes())
            .cloned()
            .unwrap();
        let l = h.live().unwrap();
        let put = h.newest_put().unwrap().main;
        assert_eq!((l.version, l.create_revision), (1, put), "{key}");
    }
}

#[test]
fn a_restart_queues_the_rows_a_crash_left() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("db");
    {
        let (store, _) = Store::open(&path).unwrap();
        store.compactor().attach();
        fill(&store);
        compact(&store, 2000);
        // One batch deleted, then the "crash".
        assert_eq!(store.compact_step().unwrap(), Step::More);
        assert_eq!(rows(&store), 2500 - BATCH_ROWS);
    }
    let (store, _) = Store::open(&path).unwrap();
    assert_eq!(store.compact_rev(), 2000);
    // Whatever of the deletion reached the disk, the rest is queued.
    assert!(rows(&store) > 10 + 501);
    assert_eq!(store.compactor().backlog(), rows(&store) - (10 + 501));
    // The rebuilt index holds only what reads at 2000 and above need.
    let h = store.snapshot().index().get(b"k8").cloned().unwrap();
    assert_eq!(h.revs.first().map(|(r, _)| r.main), Some(2000));
    drain(&store);
    assert_eq!(rows(&store), 10 + 501);
    assert!(store.compactor().is_idle());
}
