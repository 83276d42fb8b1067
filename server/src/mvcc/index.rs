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

    /// Whether `rev` is one of this key's revisions.
    pub fn holds(&self, rev: Revision) -> bool {
        self.revs.binary_search_by(|(r, _)| r.cmp(&rev)).is_ok()
    }

    /// The history a compaction at `compact` leaves: what reads at or above
    /// it may see, whether or not the background pass (compactor.rs) has
    /// reached this key yet.
    pub fn kept(&self, compact: i64) -> &[(Revision, bool)] {
        &self.revs[self.kept_from(compact)..]
    }

    /// Whether `rev` is one of the revisions a compaction at `compact` keeps.
    pub fn keeps(&self, rev: Revision, compact: i64) -> bool {
        self.kept(compact)
            .binary_search_by(|(r, _)| r.cmp(&rev))
            .is_ok()
    }

    /// The put just before `rev` among the revisions a compaction at
    /// `compact` keeps (an event's prev_kv), if the key was alive then.
    pub fn kept_before(&self, rev: Revision, compact: i64) -> Option<Revision> {
        let kept = self.kept(compact);
        let pos = kept.partition_point(|(r, _)| *r < rev);
        match pos.checked_sub(1).map(|i| kept[i]) {
            Some((r, false)) => Some(r),
            _ => None,
        }
    }

    /// The position of the first revision a compaction at `main` keeps:
    /// the newest at or below `main` (a read at `main` needs it) unless it
    /// is a tombstone, and every later one. Compacting at `a` then at
    /// `b > a` leaves what compacting at `b` alone does.
    fn kept_from(&self, main: i64) -> usize {
        let pos = self.revs.partition_point(|(r, _)| r.main <= main);
        match pos.checked_sub(1).map(|i| self.revs[i]) {
            None | Some((_, true)) => pos,
            Some((_, false)) => pos - 1,
        }
    }

    /// Drops history older than `main` that no read at or above `main` can
    /// see, adding the dropped revisions to `out`.
    fn compact_into(&mut self, main: i64, out: &mut Vec<Revision>) {
        let keep_from = self.kept_from(main);
        if keep_from == 0 {
            return;
        }
        out.extend(self.revs.drain(..keep_from).map(|(r, _)| r));
        if self.revs.is_empty() {
            // Free the allocation: the key goes from the index anyway.
            self.revs = Vec::new();
        }
    }

    #[cfg(test)]
    fn compact(&mut self, main: i64) -> Vec<Revision> {
        let mut out = Vec::new();
        self.compact_into(main, &mut out);
        out
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

    /// Compacts every key at `main` in one pass (recovery, before serving);
    /// returns revisions whose rows may be deleted.
    pub fn compact(&mut self, main: i64) -> Vec<Revision> {
        let mut dropped = Vec::new();
        self.keys.retain(|_, h| {
            h.compact_into(main, &mut dropped);
            !h.revs.is_empty()
        });
        dropped
    }

    /// Compacts at `main` the keys after `after` (from the first key when
    /// `None`), at most `max_keys` of them, adding the dropped revisions
    /// to `dropped`. Returns the key to go on after, `None` once the last
    /// key is done. Keys created meanwhile need nothing: their revisions
    /// are all above `main`.
    pub fn compact_some(
        &mut self,
        main: i64,
        after: Option<&[u8]>,
        max_keys: usize,
        dropped: &mut Vec<Revision>,
    ) -> Option<Vec<u8>> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut emptied = Vec::new();
        let mut keys = self.keys.range_mut::<[u8], _>((lower, Bound::Unbounded));
        let mut last = None;
        for (k, h) in keys.by_ref().take(max_keys) {
            h.compact_into(main, dropped);
            if h.revs.is_empty() {
                emptied.push(k.clone());
            }
            last = Some(k);
        }
        let next = if keys.next().is_some() {
            last.cloned()
        } else {
            None
        };
        for k in emptied {
            self.keys.remove(&k);
        }
        next
    }

    /// The row keys at or below `main` that a compaction at `main` keeps
    /// (etcd's keep set): the same whatever of the index the background
    /// pass has compacted and whatever of the rows it has deleted.
    pub fn kept_at(&self, main: i64) -> HashSet<u128> {
        let mut keep = HashSet::new();
        for h in self.keys.values() {
            for (r, _) in h.kept(main).iter().take_while(|(r, _)| r.main <= main) {
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
#[path = "index_tests.rs"]
mod tests;
