//! Whole-store snapshots: every table in one checksummed byte stream.
//!
//! Used for raft snapshots (a member far behind is sent one) and for
//! Maintenance.Snapshot. Layout: `KVSNAP01`, then records
//! `[table u8][klen u32][key][vlen u32][value]`, then `0xFF` and a crc32 of
//! everything before it.

use std::io::{Read, Seek, SeekFrom, Write};

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

/// One record: (table, key, value).
type Record = (u8, Vec<u8>, Vec<u8>);

/// Reads a snapshot record by record from any byte source, never trusting
/// a length before checking it against what is left of the input.
struct Reader<R: Read> {
    inner: R,
    /// Bytes left in the input: no length read from it may exceed this.
    left: u64,
    crc: crc32fast::Hasher,
}

impl<R: Read> Reader<R> {
    fn new(inner: R, total: u64) -> Self {
        Reader {
            inner,
            left: total,
            crc: crc32fast::Hasher::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, SnapshotError> {
        if n as u64 > self.left {
            return Err(SnapshotError::Malformed("truncated"));
        }
        let mut buf = vec![0u8; n];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => SnapshotError::Malformed("truncated"),
                _ => SnapshotError::Io(e.to_string()),
            })?;
        self.left -= n as u64;
        self.crc.update(&buf);
        Ok(buf)
    }

    fn byte(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }

    fn len(&mut self) -> Result<usize, SnapshotError> {
        let b: [u8; 4] = fixed(&self.take(4)?)?;
        Ok(u32::from_le_bytes(b) as usize)
    }

    /// The next record: `None` at the END marker.
    fn record(&mut self) -> Result<Option<Record>, SnapshotError> {
        let table = self.byte()?;
        if table == END {
            return Ok(None);
        }
        let klen = self.len()?;
        let k = self.take(klen)?;
        let vlen = self.len()?;
        let v = self.take(vlen)?;
        Ok(Some((table, k, v)))
    }

    fn magic(&mut self) -> Result<(), SnapshotError> {
        if self.left < MAGIC.len() as u64 || self.take(MAGIC.len())? != MAGIC {
            return Err(SnapshotError::Malformed("not a kvd snapshot"));
        }
        Ok(())
    }
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], SnapshotError> {
    b.try_into()
        .map_err(|_| SnapshotError::Malformed("bad key size"))
}

/// Checks the magic and the crc that follows the END marker, reading `data`
/// once. Bytes after the crc (padding added for etcdctl, see
/// `Node::snapshot_file`) are ignored.
pub fn verify_from<R: Read>(data: R, total: u64) -> Result<(), SnapshotError> {
    let mut r = Reader::new(std::io::BufReader::with_capacity(1 << 16, data), total);
    r.magic()?;
    while r.record()?.is_some() {}
    let want = r.crc.clone().finalize().to_le_bytes();
    if r.take(4)? != want {
        return Err(SnapshotError::Malformed("checksum mismatch"));
    }
    Ok(())
}

/// [`verify_from`] over bytes in memory.
pub fn verify(data: &[u8]) -> Result<(), SnapshotError> {
    verify_from(data, data.len() as u64)
}

/// Replaces every table in `wtx` with the snapshot in `data` (`total`
/// bytes from its current position): one pass to check the crc, then, back
/// at the start, a second to import. Memory is one record at a time.
pub fn import_from<R: Read + Seek>(
    wtx: &WriteTransaction,
    data: &mut R,
    total: u64,
) -> Result<(), SnapshotError> {
    let io = |e: std::io::Error| SnapshotError::Io(e.to_string());
    let start = data.stream_position().map_err(io)?;
    verify_from(&mut *data, total)?;
    data.seek(SeekFrom::Start(start)).map_err(io)?;
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
    let mut r = Reader::new(std::io::BufReader::with_capacity(1 << 16, data), total);
    r.magic()?;
    while let Some((table, k, v)) = r.record()? {
        match table {
            T_KV => {
                kv.insert(u128::from_le_bytes(fixed(&k)?), v.as_slice())?;
            }
            T_META => {
                let name =
                    std::str::from_utf8(&k).map_err(|_| SnapshotError::Malformed("meta key"))?;
                meta.insert(name, v.as_slice())?;
            }
            T_LEASES => {
                leases.insert(
                    i64::from_le_bytes(fixed(&k)?),
                    i64::from_le_bytes(fixed(&v)?),
                )?;
            }
            T_ALARMS => {
                let k: [u8; 12] = fixed(&k)?;
                let member = u64::from_le_bytes(fixed(&k[..8])?);
                let alarm = i32::from_le_bytes(fixed(&k[8..])?);
                alarms.insert((member, alarm), ())?;
            }
            T_MEMBERS => {
                members.insert(u64::from_le_bytes(fixed(&k)?), v.as_slice())?;
            }
            _ => return Err(SnapshotError::Malformed("unknown table")),
        }
    }
    Ok(())
}

/// [`import_from`] over bytes in memory.
pub fn import(wtx: &WriteTransaction, data: &[u8]) -> Result<(), SnapshotError> {
    import_from(wtx, &mut std::io::Cursor::new(data), data.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    /// A store with one KV row, exported.
    fn exported() -> (tempfile::TempDir, Database, Vec<u8>) {
        let d = tempfile::tempdir().expect("tempdir");
        let db = Database::create(d.path().join("db")).expect("db");
        let wtx = db.begin_write().expect("write");
        wtx.open_table(KV)
            .expect("table")
            .insert(7, b"v".as_slice())
            .expect("insert");
        wtx.open_table(META).expect("meta");
        wtx.open_table(LEASES).expect("leases");
        wtx.open_table(ALARMS).expect("alarms");
        wtx.open_table(MEMBERS).expect("members");
        wtx.commit().expect("commit");
        let data = export(&db.begin_read().expect("read")).expect("export");
        (d, db, data)
    }

    #[test]
    fn import_reads_a_stream_and_checks_every_length() {
        let (_d, db, data) = exported();
        let wtx = db.begin_write().expect("write");
        // Padding after the crc (as Maintenance snapshots carry) is ignored.
        let mut padded = data.clone();
        padded.extend_from_slice(&[0u8; 100]);
        import(&wtx, &padded).expect("import");
        // A record length far past the end: an error, never an allocation
        // of that size.
        let mut huge = data.clone();
        huge[MAGIC.len() + 1..MAGIC.len() + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = import(&wtx, &huge).expect_err("length past the end");
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut flipped = data.clone();
        let last_value = data.len() - 1 - 4 - 1;
        flipped[last_value] ^= 1;
        assert!(verify(&flipped).is_err(), "a flipped byte is caught");
        assert!(import(&wtx, &data[..data.len() - 2]).is_err(), "truncated");
        assert!(import(&wtx, b"KVSNAP0").is_err(), "no magic");
    }
}
