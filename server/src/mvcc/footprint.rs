//! How much of the backend kvd's rows occupy, for the space quota.
//!
//! etcd checks `--quota-backend-bytes` against bbolt's file size, and bbolt
//! grows its file in small steps, so there the file size is the data's high
//! water mark. redb doubles its file below 4 GiB and adds whole 4 GiB regions
//! above, so its file is up to twice the pages in use: checked against the
//! file, kvd refused writes with ~60% of the data etcd holds under the same
//! quota. redb 4 does not report its pages in use cheaply (`stats()` walks
//! every page: seconds at a few GB), so kvd counts them itself: each KV row's
//! share of redb's pages ([`row_bytes`]) is added when the row is written and
//! taken off when compaction deletes it. The quota reads the high water mark
//! of that count (freed pages are reused, as bbolt's are, but the mark only
//! falls with a defragment, as bbolt's file only shrinks then).
//!
//! ```
//! use kvd::mvcc::footprint::{row_bytes, Footprint};
//! let f = Footprint::default();
//! f.add(row_bytes(300));
//! f.remove(row_bytes(300));
//! assert_eq!(f.in_use(), 0);
//! assert_eq!(f.high_water(), row_bytes(300));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

/// redb's page size (its default, which kvd keeps).
const PAGE: u64 = 4096;
/// A KV row's key (a u128 revision) and its value's end offset in a leaf.
const ENTRY_OVERHEAD: u64 = 16 + 4;
/// Rows up to this size share leaves; larger ones get pages of their own.
const SHARED_LEAF_MAX: u64 = PAGE / 2;
/// What an empty store occupies: redb's header and the pages of kvd's
/// (empty) tables. Never 0, as bbolt's in-use size never is (clients print
/// `dbSizeInUse` only when it is not 0).
pub const EMPTY_STORE_BYTES: u64 = 6 * PAGE;

/// The bytes of redb pages one KV row of `len` encoded bytes occupies.
///
/// Rows are appended in revision order, which redb packs into full leaves;
/// a leaf's unusable tail (less than one row) is spread over its rows. A
/// row that does not share a leaf takes a power-of-two run of pages (redb
/// allocates pages by order).
pub fn row_bytes(len: usize) -> u64 {
    let entry = len as u64 + ENTRY_OVERHEAD;
    if entry <= SHARED_LEAF_MAX {
        let per_leaf = (PAGE - 8) / entry;
        return PAGE.div_ceil(per_leaf.max(1));
    }
    (entry + 8).next_power_of_two().max(PAGE)
}

/// The count of row bytes in use and its high water mark.
#[derive(Debug, Default)]
pub struct Footprint {
    in_use: AtomicU64,
    high_water: AtomicU64,
}

impl Footprint {
    /// Rows written (and committed).
    pub fn add(&self, bytes: u64) {
        let now = self.in_use.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.high_water.fetch_max(now, Ordering::Relaxed);
    }

    /// Rows deleted (and committed): their pages are free for new rows.
    pub fn remove(&self, bytes: u64) {
        let _ = self
            .in_use
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(bytes))
            });
    }

    /// Counted afresh (a restart or a snapshot install scanned the rows).
    pub fn reset(&self, bytes: u64) {
        self.in_use.store(bytes, Ordering::Relaxed);
        self.high_water.store(bytes, Ordering::Relaxed);
    }

    /// A defragment rewrote the file without its free pages.
    pub fn settle(&self) {
        self.high_water
            .store(self.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    pub fn high_water(&self) -> u64 {
        self.high_water.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[path = "footprint_tests.rs"]
mod tests;
