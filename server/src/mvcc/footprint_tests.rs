//! Tests of footprint.rs against redb's own count of its pages.

use super::*;
use crate::mvcc::{Store, WriteBatch};
use crate::storage::schema::KV;

/// Pages redb has allocated, after a durable commit made every freed page
/// reusable.
fn allocated(store: &Store) -> u64 {
    store.write(true, |_, _| Ok(())).unwrap();
    store
        .write(false, |_, wtx| Ok(wtx.stats()?.allocated_pages() * PAGE))
        .unwrap()
}

fn put_rows(store: &Store, rows: usize, value: usize, per_commit: usize) {
    let mut done = 0;
    while done < rows {
        store
            .write(false, |st, wtx| {
                let mut kv = wtx.open_table(KV)?;
                let mut b = WriteBatch::new(st, &mut kv);
                for _ in 0..per_commit.min(rows - done) {
                    b.begin();
                    b.put(format!("key/{:08}", done).as_bytes(), vec![7; value], 0)?;
                    b.end();
                    done += 1;
                }
                Ok(())
            })
            .unwrap();
    }
}

#[test]
fn the_count_follows_redbs_pages_for_small_and_large_rows() {
    for (value, rows) in [
        (8, 40_000),
        (256, 10_000),
        (1500, 3_000),
        (3000, 1_000),
        (20_000, 150),
        (200_000, 20),
    ] {
        let d = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&d.path().join("db")).unwrap();
        assert_eq!(allocated(&store), EMPTY_STORE_BYTES, "an empty store");
        put_rows(&store, rows, value, 50);
        let actual = allocated(&store) - EMPTY_STORE_BYTES;
        let counted = store.footprint().in_use();
        let ratio = counted as f64 / actual as f64;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "{rows} rows of {value} bytes: counted {counted}, redb holds {actual} ({ratio:.2})"
        );
        assert_eq!(store.footprint().high_water(), counted);
        // A restart counts the rows again, to the same figure.
        drop(store);
        let (store, recovered) = Store::open(&d.path().join("db")).unwrap();
        assert_eq!(recovered.row_bytes, counted);
        assert_eq!(store.footprint().in_use(), counted);
    }
}

#[test]
fn compaction_lowers_the_count_and_defragment_the_mark() {
    let d = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(&d.path().join("db")).unwrap();
    store.compactor().attach();
    // 100 keys written 50 times each: revisions 2..=5001.
    for round in 0..50 {
        store
            .write(false, |st, wtx| {
                let mut kv = wtx.open_table(KV)?;
                let mut b = WriteBatch::new(st, &mut kv);
                for k in 0..100 {
                    b.begin();
                    b.put(format!("k{k:03}").as_bytes(), vec![round as u8; 256], 0)?;
                    b.end();
                }
                Ok(())
            })
            .unwrap();
    }
    let full = store.footprint().in_use();
    store
        .write(false, |st, wtx| {
            let mut kv = wtx.open_table(KV)?;
            WriteBatch::new(st, &mut kv).compact(4901)
        })
        .unwrap();
    while store.compact_step().unwrap() == crate::mvcc::compactor::Step::More {}
    // Of 5000 rows, each key's newest and its newest at the compaction
    // revision are left: 200 (rows differ in size by a varint byte or two).
    let left = store.footprint().in_use();
    assert!(left > full / 30 && left < full / 20, "{left} of {full}");
    assert_eq!(store.footprint().high_water(), full);
    let file = store.db_size() as u64;
    assert_eq!(store.quota_size(), (EMPTY_STORE_BYTES + full).min(file));
    assert_eq!(
        store.size_in_use() as u64,
        (EMPTY_STORE_BYTES + left).min(file)
    );
    store.defragment().unwrap();
    assert_eq!(store.footprint().high_water(), left);
    assert!(store.quota_size() <= EMPTY_STORE_BYTES + left);
}
