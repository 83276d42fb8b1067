//! The in-memory key index: per key, its revisions (puts and tombstones) and
//! the current value when the key is alive.

use std::collections::BTreeMap;
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
    fn ranges() {
        assert!(in_range(b"a", b"a", b""));
        assert!(!in_range(b"ab", b"a", b""));
        assert!(in_range(b"zz", b"a", b"\0"));
        assert!(in_range(b"ab", b"a", b"b"));
        assert!(!in_range(b"b", b"a", b"b"));
    }
}
