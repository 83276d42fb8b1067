//! The in-memory key index: per key, its revisions (puts and tombstones) and
//! the current value when the key is alive.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use kv_proto::mvccpb::KeyValue;

use super::Revision;

/// One key's history, oldest first.
#[derive(Debug, Default, Clone)]
pub struct KeyHistory {
    /// (revision, is_tombstone), ascending.
    pub revs: Vec<(Revision, bool)>,
    /// The value at the newest revision, if that revision is a put.
    pub latest: Option<Arc<KeyValue>>,
}

impl KeyHistory {
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
        self.revs.drain(..keep_from).map(|(r, _)| r).collect()
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
#[derive(Debug, Default)]
pub struct Index {
    keys: BTreeMap<Vec<u8>, KeyHistory>,
}

impl Index {
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
            latest: None,
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

    #[test]
    fn ranges() {
        assert!(in_range(b"a", b"a", b""));
        assert!(!in_range(b"ab", b"a", b""));
        assert!(in_range(b"zz", b"a", b"\0"));
        assert!(in_range(b"ab", b"a", b"b"));
        assert!(!in_range(b"b", b"a", b"b"));
    }
}
