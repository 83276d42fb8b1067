//! Recovery: the in-memory index, counters and the small tables rebuilt from
//! the backend's last commit, decoded strictly (a malformed value is an
//! error, never "absent").

use redb::{Database, ReadableDatabase, ReadableTable};

use super::row::decode_row;
use super::store::State;
use super::{MvccError, Revision};
use crate::lease::MAX_LEASE_TTL;
use crate::storage::schema::{ALARMS, KV, LEASES, META, META_COMPACT, META_REVISION};

/// What a restart needs besides the key index.
pub struct Recovered {
    pub leases: Vec<(i64, i64)>,
    pub alarms: Vec<(u64, i32)>,
    pub meta: Vec<(String, Vec<u8>)>,
    /// The KV rows' share of the backend ([`super::footprint::row_bytes`]).
    pub row_bytes: u64,
}

/// A counter from META: `default` when absent (a fresh store), an error
/// when it is not the 8 bytes the applier writes.
fn read_i64(
    bytes: Option<redb::AccessGuard<'_, &'static [u8]>>,
    key: &str,
    default: i64,
) -> Result<i64, MvccError> {
    let Some(g) = bytes else {
        return Ok(default);
    };
    let raw: [u8; 8] = g
        .value()
        .try_into()
        .map_err(|_| MvccError::Storage(format!("meta {key}: expected 8 bytes")))?;
    Ok(i64::from_le_bytes(raw))
}

/// Reads the index, counters and the other tables from the last commit.
/// The index comes back compacted at the stored compaction revision, with
/// the rows it dropped in `State::pending`.
pub(super) fn load(db: &Database) -> Result<(State, Recovered), MvccError> {
    let rtx = db.begin_read()?;
    let kv = rtx.open_table(KV)?;
    let meta = rtx.open_table(META)?;
    let mut st = State {
        rev: read_i64(meta.get(META_REVISION)?, META_REVISION, INITIAL_REV)?.max(INITIAL_REV),
        compact_rev: read_i64(meta.get(META_COMPACT)?, META_COMPACT, NO_COMPACTION)?,
        ..State::default()
    };
    let mut row_bytes = 0;
    for row in kv.iter()? {
        let (k, v) = row?;
        row_bytes += super::footprint::row_bytes(v.value().len());
        let rev = Revision::from_key(k.value());
        let (tomb, value) = decode_row(rev, v.value())?;
        st.rev = st.rev.max(rev.main);
        if tomb {
            st.index.tombstone(&value.key, rev);
        } else {
            st.index.put_uncached(rev, &value);
        }
    }
    // Rows below the compaction revision that a crash (or a snapshot taken
    // mid-compaction) left behind: dropped from the index again; the
    // caller queues their deletion (compactor.rs).
    if st.compact_rev > 0 {
        let dropped = st.index.compact(st.compact_rev);
        st.pending = Some((st.compact_rev, dropped));
    }
    let leases = rtx
        .open_table(LEASES)?
        .iter()?
        .map(|r| r.map(|(k, v)| (k.value(), v.value())))
        .collect::<Result<Vec<_>, _>>()?;
    // The applier never stores a TTL above the granted limit; a larger one
    // (from a damaged file or a forged snapshot) would overflow the lease's
    // deadline (`Instant + ttl`) and panic when the lessor is restored.
    if let Some((id, ttl)) = leases.iter().find(|(_, ttl)| *ttl > MAX_LEASE_TTL) {
        return Err(MvccError::Storage(format!(
            "lease {id:x}: stored ttl {ttl} exceeds {MAX_LEASE_TTL}"
        )));
    }
    let alarms = rtx
        .open_table(ALARMS)?
        .iter()?
        .map(|r| r.map(|(k, _)| k.value()))
        .collect::<Result<Vec<_>, _>>()?;
    let meta = meta
        .iter()?
        .map(|r| r.map(|(k, v)| (k.value().to_string(), v.value().to_vec())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        st,
        Recovered {
            leases,
            alarms,
            meta,
            row_bytes,
        },
    ))
}

/// etcd's store starts at revision 1 (the first write gets 2) and reports
/// compaction revision -1 until the first compaction.
const INITIAL_REV: i64 = 1;
const NO_COMPACTION: i64 = -1;
