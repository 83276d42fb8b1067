//! The in-memory key index: per key, its revisions (puts and tombstones),
//! what a put needs of the current value (create revision, version, lease),
//! and the current value itself only while a bounded cache of recently
//! written values holds it. Other values are read from the backend by
//! revision: memory grows with the keys and revisions, not with the values.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Weak};

use kv_proto::mvccpb::KeyValue;

use super::Revision;

/// Bytes of recently written values the index keeps in memory (counted
/// with their allocations): puts to a working set this size and reads of
/// it never touch the backend. A million keys of 256 bytes held ~430 MiB
/// when every current value stayed in memory.
pub const VALUE_CACHE_BYTES: usize = 16 << 20;

/// What a put needs of a live key's current value to write the next one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub create_revision: i64,
    /// 1 for the put that created the key; never 0 for a live key.
    pub version: i64,
    pub lease: i64,
}

/// One key's history, oldest first.
#[derive(Debug, Default, Clone)]
pub struct KeyHistory {
    /// (revision, is_tombstone), ascending.
    pub revs: Vec<(Revision, bool)>,
    /// The current value's metadata; `version == 0` while the key is not
    /// alive (an `Option` would take 8 more bytes per key).
    live: Live,
    /// The value at the newest revision while the value cache holds it.
    cached: Option<Arc<KeyValue>>,
}

impl KeyHistory {
    /// The current value's metadata, if the key is alive.
    pub fn live(&self) -> Option<Live> {
        (self.live.version != 0).then_some(self.live)
    }

    /// Whether the key exists now (its newest revision is a put).
    pub fn is_live(&self) -> bool {
        self.live.version != 0
    }

    /// The revision of the current value, if the key is alive.
    pub fn newest_put(&self) -> Option<Revision> {
        match self.revs.last() {
            Some((r, false)) => Some(*r),
            _ => None,
        }
    }

    /// The value at `rev` if it is the current value and still cached.
    pub fn cached_at(&self, rev: Revision) -> Option<&Arc<KeyValue>> {
        self.cached
            .as_ref()
            .filter(|_| self.newest_put() == Some(rev))
    }

    /// The newest revision at or before `main`, if the key existed then.
    pub fn live_at(&self, main: i64) -> Option<Revision> {
        let pos = self.revs.partition_point(|(r, _)| r.main <= main);
        match pos.checked_sub(1).map(|i| self.revs[i]) {
            Some((r, false)) => Some(r),
            _ => None,
        }
    }

    /// The revision of the change just before `rev` (for an event's prev_kv).
    pub fn live_before(&self, rev: Revision) -> Option<Revision> {
        let pos = self.revs.partition_point(|(r, _)| *r < rev);
        match pos.checked_sub(1).map(|i| self.revs[i]) {
            Some((r, false)) => Some(r),
            _ => None,
        }
    }

    /// Whether `rev` is one of this key's revisions.
    pub fn holds(&self, rev: Revision) -> bool {
        self.revs.binary_search_by(|(r, _)| r.cmp(&rev)).is_ok()
    }

    /// Drops history older than `main` that no read at or above `main` can see.
    /// Returns the dropped revisions.
    fn compact(&mut self, main: i64) -> Vec<Revision> {
        // Keep the newest revision <= main (a read at `main` needs it) unless it is a tombstone.
        let pos = self.revs.partition_point(|(r, _)| r.main <= main);
        if pos == 0 {
            return Vec::new();
        }
        let keep_from = match self.revs[pos - 1] {
            (_, true) => pos,
            (_, false) => pos - 1,
        };
        let dropped: Vec<Revision> = self.revs.drain(..keep_from).map(|(r, _)| r).collect();
        if self.revs.is_empty() {
            // Free the allocation: the key goes from the index anyway.
            self.revs = Vec::new();
        }
        dropped
    }
}

/// The order in which the index's cached values go, oldest first, and
/// their bytes. The index holds the values; the queue only refers to them,
/// so a value overwritten or deleted is freed at once and its entry (dead:
/// it no longer upgrades) is skipped when its turn comes.
#[derive(Debug)]
struct ValueCache {
    order: VecDeque<Weak<KeyValue>>,
    /// Bytes of the values the index holds cached.
    bytes: usize,
    /// How many values the index holds cached (the live entries of `order`).
    held: usize,
    budget: usize,
}

impl ValueCache {
    /// Memory one cached value holds: its shared allocation, key and
    /// value buffers (with the allocator's per-block overhead) and its slot.
    fn cost(kv: &KeyValue) -> usize {
        const ALLOC_OVERHEAD: usize = 16;
        std::mem::size_of::<KeyValue>()
            + 2 * std::mem::size_of::<usize>()
            + kv.key.capacity()
            + kv.value.capacity()
            + 3 * ALLOC_OVERHEAD
            + std::mem::size_of::<Weak<KeyValue>>()
    }

    fn add(&mut self, kv: &Arc<KeyValue>) {
        self.bytes += Self::cost(kv);
        self.held += 1;
        self.order.push_back(Arc::downgrade(kv));
        // Dead entries keep a small allocation each: drop them once they
        // outnumber the live ones (amortized O(1) per put).
        if self.order.len() > 2 * self.held + 1024 {
            self.order.retain(|w| w.strong_count() > 0);
        }
    }

    /// `kv` is no longer cached by the index.
    fn forget(&mut self, kv: &KeyValue) {
        self.bytes -= Self::cost(kv);
        self.held -= 1;
    }
}
/// True if `key` lies in etcd's range `[start, end)`, where an empty `end` means
/// just `start` and `end == [0]` means every key >= `start`.
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        return key == start;
    }
    if key < start {
        return false;
    }
    end == [0] || key < end
}

/// Ordered map from key to history.
#[derive(Debug)]
pub struct Index {
    keys: BTreeMap<Vec<u8>, KeyHistory>,
    cache: ValueCache,
}

impl Default for Index {
    fn default() -> Self {
        Index::with_cache_budget(VALUE_CACHE_BYTES)
    }
}

impl Index {
    /// An empty index caching at most `bytes` of recently written values.
    pub fn with_cache_budget(bytes: usize) -> Self {
        Index {
            keys: BTreeMap::new(),
            cache: ValueCache {
                order: VecDeque::new(),
                bytes: 0,
                held: 0,
                budget: bytes,
            },
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&KeyHistory> {
        self.keys.get(key)
    }

    pub fn entry(&mut self, key: &[u8]) -> &mut KeyHistory {
        if !self.keys.contains_key(key) {
            self.keys.insert(key.to_vec(), KeyHistory::default());
        }
        // Present: inserted just above if it was missing.
        self.keys.entry(key.to_vec()).or_default()
    }

    /// Records the put of `kv` (its key) at `rev`, and caches its value.
    pub fn put(&mut self, rev: Revision, kv: Arc<KeyValue>) {
        let h = self.record(&kv.key, rev, false);
        h.live = live_of(&kv);
        if let Some(old) = h.cached.replace(kv.clone()) {
            self.cache.forget(&old);
        }
        self.cache.add(&kv);
        self.evict();
    }

    /// Records a put at `rev` without caching its value (recovery: the
    /// values read back would only push each other out).
    pub fn put_uncached(&mut self, rev: Revision, kv: &KeyValue) {
        let h = self.record(&kv.key, rev, false);
        h.live = live_of(kv);
        if let Some(old) = h.cached.take() {
            self.cache.forget(&old);
        }
    }

    /// Records the deletion of `key` at `rev` (a tombstone).
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) {
        let h = self.record(key, rev, true);
        h.live = Live::default();
        if let Some(old) = h.cached.take() {
            self.cache.forget(&old);
        }
    }

    fn record(&mut self, key: &[u8], rev: Revision, tomb: bool) -> &mut KeyHistory {
        let h = self.entry(key);
        h.revs.push((rev, tomb));
        h
    }

    /// Drops the oldest cached values until the cache is within its budget.
    fn evict(&mut self) {
        while self.cache.bytes > self.cache.budget {
            let Some(entry) = self.cache.order.pop_front() else {
                break;
            };
            // Dead: overwritten or deleted since, no longer counted.
            let Some(kv) = entry.upgrade() else {
                continue;
            };
            if let Some(h) = self.keys.get_mut(kv.key.as_slice()) {
                if h.cached.as_ref().is_some_and(|c| Arc::ptr_eq(c, &kv)) {
                    h.cached = None;
                    self.cache.forget(&kv);
                }
            }
        }
    }

    /// Keys in etcd's `[start, end)` range, ascending.
    pub fn range<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a KeyHistory)> + 'a> {
        if end.is_empty() {
            return Box::new(self.keys.get_key_value(start).into_iter());
        }
        let lower = Bound::Included(start.to_vec());
        if end == [0] {
            return Box::new(self.keys.range((lower, Bound::Unbounded)));
        }
        if end <= start {
            return Box::new(std::iter::empty());
        }
        Box::new(self.keys.range((lower, Bound::Excluded(end.to_vec()))))
    }

    /// Compacts every key at `main`; returns revisions whose rows may be deleted.
    pub fn compact(&mut self, main: i64) -> Vec<Revision> {
        let mut dropped = Vec::new();
        self.keys.retain(|_, h| {
            dropped.extend(h.compact(main));
            !h.revs.is_empty()
        });
        dropped
    }

    /// The row keys at or below `main` the index holds: after a compaction
    /// at `main`, the rows it keeps (etcd's keep set), whatever of the rest
    /// the background deletion has reached.
    pub fn kept_at(&self, main: i64) -> HashSet<u128> {
        let mut keep = HashSet::new();
        for h in self.keys.values() {
            for (r, _) in h.revs.iter().take_while(|(r, _)| r.main <= main) {
                keep.insert(r.to_key());
            }
        }
        keep
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes of values the cache holds now (at most its budget).
    pub fn cached_bytes(&self) -> usize {
        self.cache.bytes
    }
}

fn live_of(kv: &KeyValue) -> Live {
    Live {
        create_revision: kv.create_revision,
        // A put's version is at least 1 (etcd's): 0 would read as "not alive".
        version: kv.version.max(1),
        lease: kv.lease,
    }
}

#[cfg(test)]
mod tests {
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
        let all: HashSet<u128> = idx.kept_at(i64::MAX);
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
}
