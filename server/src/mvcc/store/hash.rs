//! Checksums of the backend: `hash_kv` (etcd's HashKV, compared across
//! members) and `hash_all` (every table, etcd's Hash).

use super::{MvccError, OwnedRead, Revision, Store};
use crate::storage::schema::KV;

impl Store {
    /// crc32 over every row up to main revision `rev` (0 = current), with the
    /// compaction revision: equal on members holding the same history.
    /// Rows at or below the compaction revision count only if the index
    /// keeps them (etcd's keep set), so the hash does not depend on how far
    /// each member's background deletion got.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), MvccError> {
        let (read, keep) = {
            let db = self.db.read();
            let state = self.state.read();
            // Idle before the read begins: every dropped row is gone from
            // what it sees, and no compaction commits while `state` is held.
            let keep = (!self.compactor.is_idle()).then(|| state.index.kept_at(state.compact_rev));
            let read = OwnedRead {
                txn: self.behind.begin_read(&db)?,
                rev: state.rev,
                compact_rev: state.compact_rev,
            };
            (read, keep)
        };
        let rev = if rev <= 0 { read.rev } else { rev };
        if rev > read.rev {
            return Err(MvccError::FutureRev);
        }
        if rev < read.compact_rev {
            return Err(MvccError::Compacted);
        }
        let mut h = crc32fast::Hasher::new();
        let kv = read.txn.open_table(KV)?;
        let kept_below = Revision::first_key(read.compact_rev.saturating_add(1));
        for row in kv.range(..Revision::first_key(rev.saturating_add(1)))? {
            let (k, v) = row?;
            if let Some(keep) = &keep {
                if k.value() < kept_below && !keep.contains(&k.value()) {
                    continue;
                }
            }
            h.update(&k.value().to_be_bytes());
            h.update(v.value());
        }
        Ok((h.finalize(), read.compact_rev, rev))
    }

    /// crc32 of every table: the whole backend (streamed through the
    /// hasher, never gathered in memory).
    pub fn hash_all(&self) -> Result<u32, MvccError> {
        let read = self.read_txn()?;
        let mut h = CrcWriter(crc32fast::Hasher::new());
        crate::storage::snapshot::export_to(&read.txn, &mut h)
            .map_err(|e| MvccError::Storage(e.to_string()))?;
        Ok(h.0.finalize())
    }
}

/// A writer that only feeds a crc32.
struct CrcWriter(crc32fast::Hasher);

impl std::io::Write for CrcWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
