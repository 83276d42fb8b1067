//! Tests of index.rs.

use super::*;

fn hist(revs: &[(i64, bool)]) -> KeyHistory {
    KeyHistory {
        revs: revs
            .iter()
            .map(|(m, t)| (Revision::new(*m, 0), *t))
            .collect(),
        ..KeyHistory::default()
    }
}

#[test]
fn live_at_respects_tombstones() {
    let h = hist(&[(2, false), (4, true), (6, false)]);
    assert_eq!(h.live_at(1), None);
    assert_eq!(h.live_at(3), Some(Revision::new(2, 0)));
    assert_eq!(h.live_at(5), None);
    assert_eq!(h.live_at(9), Some(Revision::new(6, 0)));
}

#[test]
fn compact_keeps_what_reads_need() {
    let mut h = hist(&[(2, false), (3, false), (4, true), (6, false)]);
    assert_eq!(h.compact(3).len(), 1); // rev 2 dropped, 3 kept for reads at 3
    assert_eq!(h.live_at(3), Some(Revision::new(3, 0)));
    assert_eq!(h.compact(5).len(), 2); // 3 and the tombstone 4
    assert_eq!(h.revs.len(), 1);
}

#[test]
fn compaction_drops_exactly_what_the_keep_set_leaves_out() {
    let mut idx = Index::default();
    // a: put 2, put 3, tombstone 4, put 6; b: put 5 (sub 1), tombstone 7.
    for (k, m, s, t) in [
        (b"a", 2, 0, false),
        (b"a", 3, 0, false),
        (b"a", 4, 0, true),
        (b"b", 5, 1, false),
        (b"a", 6, 0, false),
        (b"b", 7, 0, true),
    ] {
        idx.entry(k).revs.push((Revision::new(m, s), t));
    }
    let all: HashSet<u128> = idx
        .range(&[0], &[0])
        .flat_map(|(_, h)| h.revs.iter().map(|(r, _)| r.to_key()))
        .collect();
    let mut dropped = idx.compact(5);
    dropped.sort();
    // a's 2 and 3 are shadowed, its tombstone 4 ends a life: all go;
    // b's put at 5 is what a read at 5 sees: kept.
    let want = [2, 3, 4].map(|m| Revision::new(m, 0));
    assert_eq!(dropped, want);
    let keep = idx.kept_at(5);
    assert_eq!(keep, HashSet::from([Revision::new(5, 1).to_key()]));
    // Dropped and kept split the rows at or below 5 exactly.
    let below: HashSet<u128> = all
        .into_iter()
        .filter(|k| Revision::from_key(*k).main <= 5)
        .collect();
    let mut rebuilt = keep.clone();
    rebuilt.extend(dropped.iter().map(|r| r.to_key()));
    assert_eq!(rebuilt, below);
    assert!(idx.get(b"b").is_some_and(|h| h.holds(Revision::new(5, 1))));
    assert!(!idx.get(b"a").is_some_and(|h| h.holds(Revision::new(3, 0))));
    // Compacting again at the same revision drops nothing more.
    assert!(idx.compact(5).is_empty());
}

/// Keys with histories of every shape: puts, tombstones ending a
/// life at or below `main`, re-creations, keys all above it.
fn mixed(main: i64) -> Index {
    let mut idx = Index::default();
    let mut rev = 2;
    for k in 0..50u32 {
        let key = format!("k{k:02}").into_bytes();
        for v in 0..(k % 7) {
            // Every third key's every third change deletes it.
            let tomb = k.is_multiple_of(3) && v % 3 == 2;
            idx.entry(&key).revs.push((Revision::new(rev, 0), tomb));
            rev += if k.is_multiple_of(2) { 1 } else { 3 };
        }
    }
    assert!(rev > main, "history reaches past the compaction");
    idx
}

/// Every key with its revisions.
type Keys = Vec<(Vec<u8>, Vec<(Revision, bool)>)>;

fn revs_of(idx: &Index) -> Keys {
    idx.range(&[0], &[0])
        .map(|(k, h)| (k.clone(), h.revs.clone()))
        .collect()
}

#[test]
fn compacting_in_steps_leaves_what_one_pass_leaves() {
    let main = 200;
    let mut whole = mixed(main);
    let before = mixed(main);
    let keep = before.kept_at(main);
    let mut want = whole.compact(main);
    want.sort();
    for step in [1, 3, 7, 1000] {
        let mut idx = mixed(main);
        let (mut dropped, mut after, mut steps) = (Vec::new(), None, 0);
        loop {
            steps += 1;
            after = idx.compact_some(main, after.as_deref(), step, &mut dropped);
            // Half-way, the keep set and what reads see are unchanged.
            assert_eq!(idx.kept_at(main), keep, "step {step}");
            for (k, h) in before.range(&[0], &[0]) {
                let now = idx.get(k).map(|h| h.kept(main).to_vec());
                let kept = h.kept(main);
                assert_eq!(now.unwrap_or_default(), kept, "step {step}");
                for (r, _) in &h.revs {
                    let seen = idx.get(k).is_some_and(|n| n.keeps(*r, main));
                    assert_eq!(seen, h.keeps(*r, main));
                    let prev = idx.get(k).and_then(|n| n.kept_before(*r, main));
                    assert_eq!(prev, h.kept_before(*r, main));
                }
                for at in main..main + 400 {
                    let live = idx.get(k).and_then(|n| n.live_at(at));
                    assert_eq!(live, h.live_at(at), "read at {at}, step {step}");
                }
            }
            if after.is_none() {
                break;
            }
        }
        assert_eq!(steps, before.len().div_ceil(step), "steps of {step}");
        dropped.sort();
        assert_eq!(dropped, want, "step {step}");
        assert_eq!(revs_of(&idx), revs_of(&whole), "step {step}");
    }
    // Compacting at a then b leaves what b alone does.
    let mut twice = mixed(main);
    twice.compact(main / 2);
    twice.compact(main);
    assert_eq!(revs_of(&twice), revs_of(&whole));
}

#[test]
fn a_step_goes_on_after_keys_written_and_removed_meanwhile() {
    let mut idx = Index::default();
    for (k, m, t) in [
        (b"a", 2, false),
        (b"b", 3, false),
        (b"b", 4, true),
        (b"c", 5, false),
    ] {
        idx.entry(k).revs.push((Revision::new(m, 0), t));
    }
    let mut dropped = Vec::new();
    let after = idx.compact_some(6, None, 2, &mut dropped);
    // "b" went (its life ended at 4); the pass goes on after it.
    assert_eq!(after.as_deref(), Some(&b"b"[..]));
    assert!(idx.get(b"b").is_none());
    // A write between two steps, ahead of the cursor and behind it.
    idx.entry(b"b").revs.push((Revision::new(7, 0), false));
    idx.entry(b"d").revs.push((Revision::new(8, 0), false));
    assert_eq!(idx.compact_some(6, after.as_deref(), 2, &mut dropped), None);
    assert_eq!(dropped, [3, 4].map(|m| Revision::new(m, 0)));
    assert_eq!(idx.len(), 4);
}

fn kv(key: &[u8], rev: i64, version: i64) -> Arc<KeyValue> {
    Arc::new(KeyValue {
        key: key.to_vec(),
        create_revision: 2,
        mod_revision: rev,
        version,
        value: vec![7; 100],
        lease: 5,
    })
}

#[test]
fn the_value_cache_stays_within_its_budget() {
    let one = ValueCache::cost(&kv(b"k00", 2, 1));
    let mut idx = Index::with_cache_budget(3 * one);
    for i in 0..10i64 {
        let key = format!("k{i:02}").into_bytes();
        idx.put(Revision::new(2 + i, 0), kv(&key, 2 + i, 1));
        assert!(idx.cached_bytes() <= 3 * one);
    }
    // The three newest values are cached, the rest only indexed; every
    // key keeps what a put needs of its current value.
    for i in 0..10i64 {
        let h = idx.get(format!("k{i:02}").as_bytes()).expect("indexed");
        let rev = Revision::new(2 + i, 0);
        assert_eq!(h.cached_at(rev).is_some(), i >= 7, "key {i}");
        let live = h.live().expect("alive");
        assert_eq!((live.create_revision, live.version, live.lease), (2, 1, 5));
    }
    // An overwrite replaces the cached value (the old one is freed, not
    // counted) and pushes no other value out.
    idx.put(Revision::new(20, 0), kv(b"k09", 20, 2));
    let h = idx.get(b"k09").expect("indexed");
    assert!(h.cached_at(Revision::new(11, 0)).is_none());
    assert_eq!(
        h.cached_at(Revision::new(20, 0)).map(|v| v.version),
        Some(2)
    );
    assert_eq!(idx.cached_bytes(), 3 * one);
    for i in [7i64, 8] {
        let h = idx.get(format!("k{i:02}").as_bytes()).expect("indexed");
        assert!(h.cached_at(Revision::new(2 + i, 0)).is_some(), "key {i}");
    }
    // A tombstone drops the value and the key's liveness.
    idx.tombstone(b"k09", Revision::new(21, 0));
    let h = idx.get(b"k09").expect("indexed");
    assert!(h.live().is_none() && h.newest_put().is_none());
    assert!(h.cached_at(Revision::new(20, 0)).is_none());
}

#[test]
fn rewriting_a_few_keys_keeps_the_cache_small() {
    let mut idx = Index::with_cache_budget(1 << 30);
    for i in 0..20_000i64 {
        let key = format!("k{}", i % 10).into_bytes();
        idx.put(Revision::new(2 + i, 0), kv(&key, 2 + i, 1));
    }
    // Ten values held, whatever the budget; the queue of dead entries
    // stays bounded too.
    let one = ValueCache::cost(&kv(b"k0", 2, 1));
    assert_eq!((idx.cache.held, idx.cached_bytes()), (10, 10 * one));
    assert!(idx.cache.order.len() <= 2 * 10 + 1024 + 1);
}

#[test]
fn a_zero_budget_caches_nothing() {
    let mut idx = Index::with_cache_budget(0);
    idx.put(Revision::new(2, 0), kv(b"a", 2, 1));
    assert_eq!(idx.cached_bytes(), 0);
    let h = idx.get(b"a").expect("indexed");
    assert!(h.cached_at(Revision::new(2, 0)).is_none());
    assert_eq!(h.newest_put(), Some(Revision::new(2, 0)));
}

#[test]
fn ranges() {
    assert!(in_range(b"a", b"a", b""));
    assert!(!in_range(b"ab", b"a", b""));
    assert!(in_range(b"zz", b"a", b"\0"));
    assert!(in_range(b"ab", b"a", b"b"));
    assert!(!in_range(b"b", b"a", b"b"));
}
