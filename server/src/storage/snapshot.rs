//! Whole-store snapshots: every table in one checksummed byte stream.
//!
//! Used for raft snapshots (a member far behind is sent one) and for
//! Maintenance.Snapshot. Layout: `KVSNAP01`, then records
//! `[table u8][klen u32][key][vlen u32][value]`, then `0xFF` and a crc32 of
//! everything before it.

use std::io::Write;

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::schema::{ALARMS, KV, LEASES, MEMBERS, META};

const MAGIC: &[u8] = b"KVSNAP01";
const END: u8 = 0xFF;
const T_KV: u8 = 1;
const T_META: u8 = 2;
const T_LEASES: u8 = 3;
const T_ALARMS: u8 = 4;
const T_MEMBERS: u8 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot: storage error: {0}")]
    Storage(String),
    #[error("snapshot: malformed data: {0}")]
    Malformed(&'static str),
    #[error("snapshot: writing: {0}")]
    Io(String),
}

impl<E: Into<redb::Error>> From<E> for SnapshotError {
    fn from(e: E) -> Self {
        SnapshotError::Storage(e.into().to_string())
    }
}

/// Writes records to `out`, keeping the crc and the length as it goes, so a
/// snapshot is never gathered in memory to be checksummed.
struct Sink<'w, W: Write> {
    out: &'w mut W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Sink<'_, W> {
    fn put(&mut self, b: &[u8]) -> Result<(), SnapshotError> {
        self.crc.update(b);
        self.len += b.len() as u64;
        self.out
            .write_all(b)
            .map_err(|e| SnapshotError::Io(e.to_string()))
    }

    fn rec(&mut self, table: u8, k: &[u8], v: &[u8]) -> Result<(), SnapshotError> {
        let too_long = |_| SnapshotError::Malformed("record longer than 4 GiB");
        let klen = u32::try_from(k.len()).map_err(too_long)?;
        let vlen = u32::try_from(v.len()).map_err(too_long)?;
        self.put(&[table])?;
        self.put(&klen.to_le_bytes())?;
        self.put(k)?;
        self.put(&vlen.to_le_bytes())?;
        self.put(v)
    }
}

/// Serializes every table visible to `rtx` into memory.
pub fn export(rtx: &ReadTransaction) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Vec::new();
    export_to(rtx, &mut out)?;
    Ok(out)
}

/// Streams every table visible to `rtx` to `out`, one record at a time;
/// returns the bytes written.
pub fn export_to<W: Write>(rtx: &ReadTransaction, out: &mut W) -> Result<u64, SnapshotError> {
    let mut sink = Sink {
        out,
        crc: crc32fast::Hasher::new(),
        len: 0,
    };
    sink.put(MAGIC)?;
    for row in rtx.open_table(KV)?.iter()? {
        let (k, v) = row?;
        sink.rec(T_KV, &k.value().to_le_bytes(), v.value())?;
    }
    for row in rtx.open_table(META)?.iter()? {
        let (k, v) = row?;
        sink.rec(T_META, k.value().as_bytes(), v.value())?;
    }
    for row in rtx.open_table(LEASES)?.iter()? {
        let (k, v) = row?;
        sink.rec(T_LEASES, &k.value().to_le_bytes(), &v.value().to_le_bytes())?;
    }
    for row in rtx.open_table(ALARMS)?.iter()? {
        let (k, _) = row?;
        let (member, alarm) = k.value();
        let mut key = member.to_le_bytes().to_vec();
        key.extend_from_slice(&alarm.to_le_bytes());
        sink.rec(T_ALARMS, &key, &[])?;
    }
    for row in rtx.open_table(MEMBERS)?.iter()? {
        let (k, v) = row?;
        sink.rec(T_MEMBERS, &k.value().to_le_bytes(), v.value())?;
    }
    sink.put(&[END])?;
    let crc = sink.crc.clone().finalize();
    sink.put(&crc.to_le_bytes())?;
    Ok(sink.len)
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(SnapshotError::Malformed("length overflow"))?;
        let s = self
            .buf
            .get(self.at..end)
            .ok_or(SnapshotError::Malformed("truncated"))?;
        self.at = end;
        Ok(s)
    }
    fn len(&mut self) -> Result<usize, SnapshotError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], SnapshotError> {
    b.try_into()
        .map_err(|_| SnapshotError::Malformed("bad key size"))
}

/// Checks the crc that follows the END marker. Bytes after the crc (padding
/// added for etcdctl, see `Node::snapshot_file`) are ignored.
fn verify(data: &[u8]) -> Result<(), SnapshotError> {
    let mut r = Reader {
        buf: data,
        at: MAGIC.len(),
    };
    loop {
        if r.take(1)?[0] == END {
            break;
        }
        let klen = r.len()?;
        r.take(klen)?;
        let vlen = r.len()?;
        r.take(vlen)?;
    }
    let body_end = r.at;
    let crc = r.take(4)?;
    if crc32fast::hash(&data[..body_end]).to_le_bytes() != crc {
        return Err(SnapshotError::Malformed("checksum mismatch"));
    }
    Ok(())
}

/// Replaces every table in `wtx` with the snapshot's contents.
pub fn import(wtx: &WriteTransaction, data: &[u8]) -> Result<(), SnapshotError> {
    if !data.starts_with(MAGIC) {
        return Err(SnapshotError::Malformed("not a kvd snapshot"));
    }
    verify(data)?;
    wtx.delete_table(KV)?;
    wtx.delete_table(META)?;
    wtx.delete_table(LEASES)?;
    wtx.delete_table(ALARMS)?;
    wtx.delete_table(MEMBERS)?;
    let mut kv = wtx.open_table(KV)?;
    let mut meta = wtx.open_table(META)?;
    let mut leases = wtx.open_table(LEASES)?;
    let mut alarms = wtx.open_table(ALARMS)?;
    let mut members = wtx.open_table(MEMBERS)?;
    let mut r = Reader {
        buf: data,
        at: MAGIC.len(),
    };
    loop {
        let table = r.take(1)?[0];
        if table == END {
            break;
        }
        let klen = r.len()?;
        let k = r.take(klen)?;
        let vlen = r.len()?;
        let v = r.take(vlen)?;
        match table {
            T_KV => {
                kv.insert(u128::from_le_bytes(fixed(k)?), v)?;
            }
            T_META => {
                let name =
                    std::str::from_utf8(k).map_err(|_| SnapshotError::Malformed("meta key"))?;
                meta.insert(name, v)?;
            }
            T_LEASES => {
                leases.insert(i64::from_le_bytes(fixed(k)?), i64::from_le_bytes(fixed(v)?))?;
            }
            T_ALARMS => {
                let k: [u8; 12] = fixed(k)?;
                let member = u64::from_le_bytes(fixed(&k[..8])?);
                let alarm = i32::from_le_bytes(fixed(&k[8..])?);
                alarms.insert((member, alarm), ())?;
            }
            T_MEMBERS => {
                members.insert(u64::from_le_bytes(fixed(k)?), v)?;
            }
            _ => return Err(SnapshotError::Malformed("unknown table")),
        }
    }
    Ok(())
}
