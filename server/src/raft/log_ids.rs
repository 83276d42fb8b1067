//! Per-entry bookkeeping of the raft log, a few bytes per entry.
//!
//! A raft log is contiguous, and its leader changes only with a new term,
//! so an entry's id needs no storage of its own: its index is its position,
//! and its leader that of the run of entries it falls in. A map keyed by
//! index cost ~50 bytes per entry for the ids and ~56 more for the record
//! positions; with etcd's 100 000 entries between snapshots that was 10 MiB
//! of a member's memory (docs/benchmarks.md, session 28).

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};

use openraft::CommittedLeaderId;

use super::types::{LogId, NodeId};

/// A value per entry of a contiguous run of log indexes, with each entry's
/// id. `V = ()` keeps the ids alone.
#[derive(Debug)]
pub(crate) struct LogIds<V> {
    /// Index of `vals[0]`.
    first: u64,
    vals: VecDeque<V>,
    /// Each run of entries of one leader: its first index and the leader,
    /// oldest first. The first run starts at or before `first`.
    leaders: VecDeque<(u64, CommittedLeaderId<NodeId>)>,
}

impl<V> Default for LogIds<V> {
    fn default() -> Self {
        LogIds {
            first: 0,
            vals: VecDeque::new(),
            leaders: VecDeque::new(),
        }
    }
}

impl<V> LogIds<V> {
    /// One past the last index held.
    fn end(&self) -> u64 {
        self.first + self.vals.len() as u64
    }

    /// Adds the entry `id`, replacing any held at its index and after (a
    /// conflicting suffix). An index past the end (a gap, which a raft log
    /// never has) starts the run afresh there: nothing before a gap could
    /// be read in order anyway.
    pub(crate) fn push(&mut self, id: LogId, v: V) {
        if id.index < self.end() {
            self.truncate(id.index);
        }
        if self.vals.is_empty() || id.index != self.end() {
            self.vals.clear();
            self.leaders.clear();
            self.first = id.index;
        }
        if self.leaders.back().map(|(_, l)| l) != Some(&id.leader_id) {
            self.leaders.push_back((id.index, id.leader_id));
        }
        self.vals.push_back(v);
    }

    /// Forgets entries at `at` and above.
    pub(crate) fn truncate(&mut self, at: u64) {
        let keep = at.saturating_sub(self.first);
        if keep < self.vals.len() as u64 {
            self.vals.truncate(keep as usize);
        }
        while self.leaders.back().is_some_and(|&(i, _)| i >= at) {
            self.leaders.pop_back();
        }
        if self.vals.is_empty() {
            self.leaders.clear();
        }
    }

    /// Forgets entries up to and including `upto`.
    pub(crate) fn purge(&mut self, upto: u64) {
        let from = upto.saturating_add(1);
        if from >= self.end() {
            self.vals.clear();
            self.leaders.clear();
            self.first = from;
            return;
        }
        if from > self.first {
            self.vals.drain(..(from - self.first) as usize);
            self.first = from;
        }
        while self.leaders.get(1).is_some_and(|&(i, _)| i <= self.first) {
            self.leaders.pop_front();
        }
    }

    fn id_at(&self, index: u64) -> LogId {
        // Runs start in increasing index order; the first starts at or
        // before every index held.
        let run = self.leaders.partition_point(|&(i, _)| i <= index);
        let leader = self.leaders[run.saturating_sub(1)].1;
        LogId::new(leader, index)
    }

    /// The id and value of the entry at `index`, if held.
    pub(crate) fn get(&self, index: u64) -> Option<(LogId, &V)> {
        let v = self
            .vals
            .get(usize::try_from(index.checked_sub(self.first)?).ok()?)?;
        Some((self.id_at(index), v))
    }

    /// The first index held.
    pub(crate) fn first(&self) -> Option<u64> {
        (!self.vals.is_empty()).then_some(self.first)
    }

    /// The last entry's id.
    pub(crate) fn last(&self) -> Option<LogId> {
        let index = self.end().checked_sub(1)?;
        (!self.vals.is_empty()).then(|| self.id_at(index))
    }

    /// The entries held within `range`, in index order.
    pub(crate) fn range<RB: RangeBounds<u64>>(
        &self,
        range: RB,
    ) -> impl Iterator<Item = (LogId, &V)> + '_ {
        let lo = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(self.first);
        let hi = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        }
        .min(self.end());
        (lo..hi.max(lo)).filter_map(move |i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn ids(l: &LogIds<u64>) -> Vec<(u64, u64, u64)> {
        l.range(..)
            .map(|(id, v)| (id.leader_id.term, id.index, *v))
            .collect()
    }

    #[test]
    fn ids_follow_the_leader_runs() {
        let mut l = LogIds::default();
        assert_eq!(l.last(), None);
        for i in 1..=3 {
            l.push(id(1, i), i * 10);
        }
        for i in 4..=5 {
            l.push(id(2, i), i * 10);
        }
        assert_eq!(l.last(), Some(id(2, 5)));
        assert_eq!(l.get(3), Some((id(1, 3), &30)));
        assert_eq!(l.get(4), Some((id(2, 4), &40)));
        assert_eq!(l.get(0), None);
        assert_eq!(l.get(6), None);
        assert_eq!(
            l.range(2..=4).map(|(id, _)| id).collect::<Vec<_>>(),
            vec![id(1, 2), id(1, 3), id(2, 4)]
        );
        assert_eq!(l.range(7..).count(), 0);
        assert_eq!(l.range(..1).count(), 0);
        assert_eq!(l.leaders.len(), 2);
    }

    #[test]
    fn a_conflicting_suffix_is_replaced() {
        let mut l = LogIds::default();
        for i in 1..=5 {
            l.push(id(1, i), i);
        }
        // A new leader overwrites from index 4 on.
        l.push(id(3, 4), 40);
        assert_eq!(ids(&l), vec![(1, 1, 1), (1, 2, 2), (1, 3, 3), (3, 4, 40)]);
        l.truncate(2);
        assert_eq!(ids(&l), vec![(1, 1, 1)]);
        assert_eq!(l.leaders.len(), 1);
        l.truncate(1);
        assert_eq!(l.last(), None);
        assert!(l.leaders.is_empty());
        l.push(id(4, 1), 7);
        assert_eq!(ids(&l), vec![(4, 1, 7)]);
    }

    #[test]
    fn purging_keeps_the_newer_entries_ids() {
        let mut l = LogIds::default();
        for i in 1..=3 {
            l.push(id(1, i), i);
        }
        for i in 4..=6 {
            l.push(id(2, i), i);
        }
        l.purge(4);
        assert_eq!(ids(&l), vec![(2, 5, 5), (2, 6, 6)]);
        assert_eq!(l.leaders.len(), 1);
        l.purge(2); // already gone: nothing changes
        assert_eq!(l.vals.len(), 2);
        // Purged past the end (a snapshot ahead of the log): the next
        // entry starts a fresh run.
        l.purge(10);
        assert_eq!(l.last(), None);
        l.push(id(3, 11), 11);
        assert_eq!(ids(&l), vec![(3, 11, 11)]);
    }

    #[test]
    fn a_gap_starts_afresh() {
        let mut l = LogIds::default();
        l.push(id(1, 1), 1);
        l.push(id(1, 5), 5);
        assert_eq!(ids(&l), vec![(1, 5, 5)]);
    }

    #[test]
    fn ids_alone_take_no_room_per_entry() {
        let mut l: LogIds<()> = LogIds::default();
        for i in 1..=100_000 {
            l.push(id(1 + i / 50_000, i), ());
        }
        assert_eq!(l.leaders.len(), 3);
        assert_eq!(l.get(60_000).map(|(id, _)| id), Some(id(2, 60_000)));
        assert_eq!(l.vals.capacity(), usize::MAX);
    }
}
