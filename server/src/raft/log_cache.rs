//! The raft log as the rest of the member reads it: every entry's id, the
//! newest entries decoded in memory up to [`CACHE_BYTES`], and where each
//! durable entry's record lies in the WAL. Older entries are read back from
//! disk on demand (only a follower that fell behind asks for them).
//!
//! Why bounded by bytes: etcd keeps every entry since its last snapshot in
//! memory, but an etcd entry is one request; a kvd entry carries a batch of
//! up to 1024 of them (node/propose.rs), so a count of entries (the snapshot
//! policy) does not bound memory: 100 000 batched entries could hold
//! gigabytes.

use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::path::Path;

use super::log_ids::LogIds;
use super::types::{Entry, LogId, Vote};
use crate::storage::wal::{self, WalError};

/// Decoded entries kept in memory, newest first to stay. 4 MiB holds about
/// half a second of entries at 25k puts/s of 300 bytes, far more than an
/// in-step follower lags by; 8 MiB cost 3-5 MiB of peak RSS on the put
/// workloads (13 MiB over three members) for no measurable CPU saving.
pub(crate) const CACHE_BYTES: usize = 4 << 20;

/// Where a durable entry's record starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loc {
    pub log_id: LogId,
    pub seq: u64,
    pub offset: u64,
}

/// Record positions of the entries written and fsynced, kept by the WAL
/// writer in the order it writes (so a truncate and a re-append of the same
/// index can never be seen out of order).
#[derive(Default)]
pub(crate) struct Locs(LogIds<(u64, u64)>);

impl Locs {
    pub(crate) fn insert(&mut self, loc: Loc) {
        self.0.push(loc.log_id, (loc.seq, loc.offset));
    }

    /// Forgets entries at `at` and above.
    pub(crate) fn truncate(&mut self, at: u64) {
        self.0.truncate(at);
    }

    /// Forgets entries up to and including `upto`.
    pub(crate) fn purge(&mut self, upto: u64) {
        self.0.purge(upto);
    }

    fn get(&self, index: u64) -> Option<Loc> {
        let (log_id, &(seq, offset)) = self.0.get(index)?;
        Some(Loc {
            log_id,
            seq,
            offset,
        })
    }
}

/// What the rest of the member sees of the log.
#[derive(Default)]
pub(crate) struct LogMem {
    /// Every entry in the log.
    ids: LogIds<()>,
    /// The newest entries, with their encoded size.
    cache: BTreeMap<u64, (Entry, usize)>,
    cached_bytes: usize,
    pub(crate) purged: Option<LogId>,
    pub(crate) vote: Option<Vote>,
}

/// One entry of a read: in memory, or to be read back from disk.
enum Slot {
    Mem(Entry),
    Disk(Loc),
}

impl LogMem {
    pub(crate) fn insert(&mut self, e: Entry, size: usize) {
        let index = e.log_id.index;
        self.ids.push(e.log_id, ());
        // The cache holds only entries the ids hold: a re-append replaced
        // `index` and after, and a gap started the ids afresh at `index`
        // (older entries left in the cache would block `evict`).
        let replaced = self.cache.split_off(&index);
        self.drop_cached(replaced);
        if self.ids.first() == Some(index) {
            let older = std::mem::take(&mut self.cache);
            self.drop_cached(older);
        }
        self.cache.insert(index, (e, size));
        self.cached_bytes += size;
    }

    fn drop_cached(&mut self, dropped: BTreeMap<u64, (Entry, usize)>) {
        self.cached_bytes -= dropped.values().map(|(_, n)| n).sum::<usize>();
    }

    /// Drops entries at `at` and above (a conflicting suffix).
    pub(crate) fn truncate(&mut self, at: u64) {
        self.ids.truncate(at);
        let dropped = self.cache.split_off(&at);
        self.drop_cached(dropped);
    }

    /// Drops entries up to and including `upto`.
    pub(crate) fn purge(&mut self, upto: LogId) {
        let after = upto.index.saturating_add(1);
        self.ids.purge(upto.index);
        let kept = self.cache.split_off(&after);
        let dropped = std::mem::replace(&mut self.cache, kept);
        self.drop_cached(dropped);
        self.purged = Some(upto);
    }

    /// Entries decoded in memory (tests).
    #[cfg(test)]
    pub(crate) fn cached_len(&self) -> usize {
        self.cache.len()
    }

    pub(crate) fn last_log_id(&self) -> Option<LogId> {
        self.ids.last().or(self.purged)
    }

    /// Drops the oldest decoded entries past [`CACHE_BYTES`], each only once
    /// its record is durable on disk (the newest one always stays).
    pub(crate) fn evict(&mut self, locs: &Locs) {
        while self.cached_bytes > CACHE_BYTES && self.cache.len() > 1 {
            let Some((&index, (e, _))) = self.cache.first_key_value() else {
                break;
            };
            match locs.get(index) {
                Some(loc) if loc.log_id == e.log_id => {
                    if let Some((_, n)) = self.cache.remove(&index) {
                        self.cached_bytes -= n;
                    }
                }
                // Not written yet: nothing newer is either.
                _ => break,
            }
        }
    }

    /// The entries in `range`, in order, stopping at the first one the log
    /// does not have. Entries no longer in memory are read back from the
    /// segments in `dir`, after the caller drops its locks (see [`read`]).
    fn slots<RB: RangeBounds<u64>>(&self, range: RB, locs: &Locs) -> Vec<Slot> {
        let mut out = Vec::new();
        for (id, ()) in self.ids.range(range) {
            if let Some((e, _)) = self.cache.get(&id.index) {
                out.push(Slot::Mem(e.clone()));
                continue;
            }
            match locs.get(id.index) {
                Some(loc) if loc.log_id == id => out.push(Slot::Disk(loc)),
                _ => break,
            }
        }
        out
    }
}

/// Reads the entries in `range`: locks `mem` and `locs` only to find them,
/// then decodes those on disk. A segment deleted meanwhile (the entries were
/// purged) ends the read early, as a purge in memory would.
pub(crate) fn read<RB: RangeBounds<u64>>(
    mem: &parking_lot::Mutex<LogMem>,
    locs: &parking_lot::Mutex<Locs>,
    dir: &Path,
    range: RB,
    decode: impl Fn(&[u8]) -> Result<Entry, String>,
) -> Result<Vec<Entry>, WalError> {
    let slots = {
        let mem = mem.lock();
        let locs = locs.lock();
        mem.slots(range, &locs)
    };
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            Slot::Mem(e) => out.push(e),
            Slot::Disk(loc) => {
                let path = wal::segment_path(dir, loc.seq);
                let rec = match wal::read_record_at(&path, loc.offset) {
                    Ok(rec) => rec,
                    Err(WalError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        break;
                    }
                    Err(e) => return Err(e),
                };
                let e = decode(&rec).map_err(|reason| WalError::Corrupt {
                    path: path.clone(),
                    offset: loc.offset,
                    reason,
                })?;
                if e.log_id != loc.log_id {
                    return Err(WalError::Corrupt {
                        path,
                        offset: loc.offset,
                        reason: format!("expected entry {}, found {}", loc.log_id, e.log_id),
                    });
                }
                out.push(e);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: openraft::LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn cached(m: &LogMem) -> (Vec<u64>, usize) {
        (m.cache.keys().copied().collect(), m.cached_bytes)
    }

    #[test]
    fn the_cache_holds_only_what_the_ids_hold() {
        let mut m = LogMem::default();
        for i in 1..=5 {
            m.insert(entry(1, i), 10);
        }
        assert_eq!(cached(&m), (vec![1, 2, 3, 4, 5], 50));
        // A new leader's entry at 3 replaces 3..=5.
        m.insert(entry(2, 3), 7);
        assert_eq!(cached(&m), (vec![1, 2, 3], 27));
        assert_eq!(m.last_log_id(), Some(entry(2, 3).log_id));
        // A gap (after a snapshot install) starts afresh: nothing older
        // stays to hold the cache's first place, which `evict` waits on.
        m.insert(entry(2, 100), 9);
        assert_eq!(cached(&m), (vec![100], 9));
        let ids: Vec<u64> = m.ids.range(..).map(|(id, ())| id.index).collect();
        assert_eq!(ids, vec![100]);
        m.truncate(100);
        assert_eq!(cached(&m), (vec![], 0));
    }
}
