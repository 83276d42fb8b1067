//! Whole-store snapshots: every table in one checksummed byte stream.
//!
//! Used for raft snapshots (a member far behind is sent one) and for
//! Maintenance.Snapshot. Layout: `KVSNAP01`, then records
//! `[table u8][klen u32][key][vlen u32][value]`, then `0xFF` and a crc32 of
//! everything before it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

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

/// The tables of an import, open in one write transaction.
struct Tables<'t> {
    kv: redb::Table<'t, u128, &'static [u8]>,
    meta: redb::Table<'t, &'static str, &'static [u8]>,
    leases: redb::Table<'t, i64, i64>,
    alarms: redb::Table<'t, (u64, i32), ()>,
    members: redb::Table<'t, u64, &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(wtx: &'t WriteTransaction) -> Result<Self, SnapshotError> {
        Ok(Tables {
            kv: wtx.open_table(KV)?,
            meta: wtx.open_table(META)?,
            leases: wtx.open_table(LEASES)?,
            alarms: wtx.open_table(ALARMS)?,
            members: wtx.open_table(MEMBERS)?,
        })
    }

    /// Inserts one snapshot record into its table.
    fn insert(&mut self, table: u8, k: &[u8], v: &[u8]) -> Result<(), SnapshotError> {
        match table {
            T_KV => {
                self.kv.insert(u128::from_le_bytes(fixed(k)?), v)?;
            }
            T_META => {
                let name =
                    std::str::from_utf8(k).map_err(|_| SnapshotError::Malformed("meta key"))?;
                self.meta.insert(name, v)?;
            }
            T_LEASES => {
                self.leases
                    .insert(i64::from_le_bytes(fixed(k)?), i64::from_le_bytes(fixed(v)?))?;
            }
            T_ALARMS => {
                let k: [u8; 12] = fixed(k)?;
                let member = u64::from_le_bytes(fixed(&k[..8])?);
                let alarm = i32::from_le_bytes(fixed(&k[8..])?);
                self.alarms.insert((member, alarm), ())?;
            }
            T_MEMBERS => {
                self.members.insert(u64::from_le_bytes(fixed(k)?), v)?;
            }
            _ => return Err(SnapshotError::Malformed("unknown table")),
        }
        Ok(())
    }
}

/// Replaces every table in `wtx` with the snapshot in `data` (`total`
/// bytes from its current position): one pass to check the crc, then, back
/// at the start, a second to import. Memory is one record at a time (plus
/// the transaction's pages: a large snapshot goes through
/// [`import_to_file`] instead).
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
    let mut tables = Tables::open(wtx)?;
    let mut r = Reader::new(std::io::BufReader::with_capacity(1 << 16, data), total);
    r.magic()?;
    while let Some((table, k, v)) = r.record()? {
        tables.insert(table, &k, &v)?;
    }
    Ok(())
}

/// Records imported per commit by [`import_to_file`]: a batch's pages are
/// what its transaction holds until the commit hands them to the cache.
const IMPORT_BATCH_BYTES: u64 = 8 << 20;
/// redb's cache for the live store and for a file being imported (which
/// becomes the live store). Its write buffer is held at half of it, the
/// rest written out, so this bounds the store's memory: redb's default,
/// 1 GiB, kept every page a write or an import touched in the process.
/// Reads at the head come from the in-memory index; older pages from the
/// kernel's page cache, outside kvd's RSS, as bbolt's mmap serves etcd.
/// 8 MiB pays for jemalloc's extra peak RSS (src/main.rs) at no measured
/// cost: at 1M keys the load, range, restart and compaction figures held
/// and peak RSS fell (docs/benchmarks.md).
pub const BACKEND_CACHE_BYTES: usize = 8 << 20;

/// Builds a complete store file at `path` from the snapshot in `data`
/// (`total` bytes from its current position), replacing anything there:
/// a checksum pass, then the import in batches of [`IMPORT_BATCH_BYTES`],
/// each its own non-durable commit, the last durable; then the file and
/// its directory are fsynced. Memory stays bounded whatever the snapshot's
/// size. Returns the file's open handle (reopening it would cost a pass
/// over the file); the caller swaps it in. Until then the live store is
/// untouched, so a failure or crash leaves it whole.
pub fn import_to_file<R: Read + Seek>(
    path: &Path,
    data: &mut R,
    total: u64,
) -> Result<redb::Database, SnapshotError> {
    let io = |e: std::io::Error| SnapshotError::Io(format!("{}: {e}", path.display()));
    let start = data.stream_position().map_err(io)?;
    verify_from(&mut *data, total)?;
    data.seek(SeekFrom::Start(start)).map_err(io)?;
    discard_import(path)?;
    let db = redb::Builder::new()
        .set_cache_size(BACKEND_CACHE_BYTES)
        .create(path)?;
    let mut r = Reader::new(std::io::BufReader::with_capacity(1 << 16, data), total);
    r.magic()?;
    let mut done = false;
    while !done {
        let mut wtx = db.begin_write()?;
        wtx.set_durability(redb::Durability::None)?;
        {
            // Opened in every batch, so even an empty snapshot's tables exist.
            let mut tables = Tables::open(&wtx)?;
            let mut batch = 0u64;
            while batch < IMPORT_BATCH_BYTES {
                let Some((table, k, v)) = r.record()? else {
                    done = true;
                    break;
                };
                batch += (k.len() + v.len()) as u64;
                tables.insert(table, &k, &v)?;
            }
        }
        if done {
            // The checksum again, over what was imported: the file could
            // have changed since the first pass.
            let want = r.crc.clone().finalize().to_le_bytes();
            if r.take(4)? != want {
                return Err(SnapshotError::Malformed("checksum mismatch"));
            }
            wtx.set_durability(redb::Durability::Immediate)?;
        }
        wtx.commit()?;
    }
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    sync_parent(path)?;
    Ok(db)
}

/// Removes a store file an import left behind (a crash or an error before
/// it was swapped in); nothing there is not an error.
pub fn discard_import(path: &Path) -> Result<(), SnapshotError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(file = %path.display(), "removed an unfinished snapshot import");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::Io(format!("{}: {e}", path.display()))),
    }
}

/// fsyncs the directory holding `path`, making a create or rename there durable.
pub fn sync_parent(path: &Path) -> Result<(), SnapshotError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SnapshotError::Io(format!("{}: {e}", dir.display())))
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
    fn import_to_file_builds_a_whole_store_in_batches() {
        let (d, _db, mut data) = exported();
        // More than one batch: rows of 1 MiB past IMPORT_BATCH_BYTES.
        let big = vec![7u8; 1 << 20];
        let src = Database::create(d.path().join("src")).expect("db");
        let wtx = src.begin_write().expect("write");
        {
            let mut kv = wtx.open_table(KV).expect("kv");
            for n in 0..12u128 {
                kv.insert(n, big.as_slice()).expect("insert");
            }
        }
        wtx.open_table(META).expect("meta");
        wtx.open_table(LEASES).expect("leases");
        wtx.open_table(ALARMS).expect("alarms");
        wtx.open_table(MEMBERS).expect("members");
        wtx.commit().expect("commit");
        let many = export(&src.begin_read().expect("read")).expect("export");
        let path = d.path().join("db.installing");
        // A leftover from an interrupted import is replaced.
        std::fs::write(&path, b"half an import").expect("leftover");
        let db = import_to_file(&path, &mut std::io::Cursor::new(&many), many.len() as u64)
            .expect("import");
        let rtx = db.begin_read().expect("read");
        assert_eq!(
            rtx.open_table(KV)
                .expect("kv")
                .iter()
                .expect("iter")
                .count(),
            12
        );
        assert_eq!(export(&rtx).expect("export"), many, "the same store");
        drop(rtx);
        drop(db);
        // A damaged snapshot is refused before anything is written.
        let last = data.len() - 6;
        data[last] ^= 1;
        discard_import(&path).expect("discard");
        let e = import_to_file(&path, &mut std::io::Cursor::new(&data), data.len() as u64)
            .expect_err("a flipped byte");
        assert!(e.to_string().contains("checksum"), "{e}");
        assert!(!path.exists(), "nothing is created for a bad snapshot");
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
