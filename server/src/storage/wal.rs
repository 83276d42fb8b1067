//! Append-only, checksummed record files ("segments") for the raft log.
//!
//! A record is `[len: u32 LE][crc32: u32 LE][payload]`. Records are opaque bytes:
//! the raft log store decides what they mean. Segments are named
//! `<seq:016x>.wal` and read in order on open.
//!
//! Recovery rule (etcd's): only a genuinely torn write at the end of the newest
//! segment is dropped, because only an append that never finished its fsync
//! (so was never acknowledged) can leave one. Torn means the record runs past
//! the end of the file, or its length field is zero (space never written), or
//! its checksum fails *and* one of its 512-byte sectors is all zeros (a sector
//! the crash never wrote); and only zeros may follow it. A complete record
//! failing its checksum is
//! corruption of data that may have been acknowledged: like a bad record
//! anywhere else it stops the open with an error naming the file and offset.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::raft::failpoint::{self, WalPoint};

const HEADER: usize = 8;
/// An fdatasync slower than this is logged (etcd's warnSyncDuration).
const SLOW_FSYNC: std::time::Duration = std::time::Duration::from_secs(1);
/// The smallest unit a disk writes atomically; a torn write leaves whole
/// sectors unwritten (zero) in a file that was extended but not filled.
const SECTOR: usize = 512;
/// Upper bound on one record; anything larger in a length field is corruption.
const MAX_RECORD: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal: io error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("wal: corrupt record in {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One segment file on disk.
#[derive(Debug, Clone)]
pub struct Segment {
    pub seq: u64,
    pub path: PathBuf,
}

/// The writer side of the WAL: appends to the newest segment.
pub struct Wal {
    dir: PathBuf,
    segments: Vec<Segment>,
    out: BufWriter<File>,
    active_len: u64,
}

/// One record read back at open, with where it starts (for error messages).
pub struct Record {
    pub offset: u64,
    pub payload: Vec<u8>,
}

/// Result of opening a WAL directory: the writer plus every record per segment, in order.
pub struct Opened {
    pub wal: Wal,
    /// (segment sequence number, path, records) per segment.
    pub records: Vec<(u64, PathBuf, Vec<Record>)>,
}

impl Wal {
    /// Opens (or creates) the WAL in `dir`, validating every record, and
    /// returns them all (tests; kvd itself streams them with [`Wal::open_with`]).
    pub fn open(dir: &Path) -> Result<Opened, WalError> {
        let mut records: Vec<(u64, PathBuf, Vec<Record>)> = Vec::new();
        let wal = Wal::open_with(dir, |seq, path, offset, payload| {
            if records.last().map(|r| r.0) != Some(seq) {
                records.push((seq, path.to_path_buf(), Vec::new()));
            }
            if let Some(last) = records.last_mut() {
                last.2.push(Record {
                    offset,
                    payload: payload.to_vec(),
                });
            }
            Ok(())
        })?;
        Ok(Opened { wal, records })
    }

    /// Opens (or creates) the WAL in `dir`, validating every record and
    /// handing each to `visit` (segment sequence number, segment path,
    /// offset, payload) in order, one segment in memory at a time.
    pub fn open_with(
        dir: &Path,
        mut visit: impl FnMut(u64, &Path, u64, &[u8]) -> Result<(), WalError>,
    ) -> Result<Wal, WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut segments = list_segments(dir)?;
        if segments.is_empty() {
            let seg = Segment {
                seq: 1,
                path: dir.join(segment_name(1)),
            };
            File::create(&seg.path).map_err(io_err(&seg.path))?;
            sync_dir(dir)?;
            segments.push(seg);
        }
        let last = segments.len() - 1;
        let mut active_len = 0;
        for (i, seg) in segments.iter().enumerate() {
            let mut buf = Vec::new();
            File::open(&seg.path)
                .and_then(|mut f| f.read_to_end(&mut buf))
                .map_err(io_err(&seg.path))?;
            let good_len = each_record(&buf, i == last, &seg.path, |offset, payload| {
                visit(seg.seq, &seg.path, offset, payload)
            })?;
            if i == last {
                active_len = good_len;
            }
        }
        let active = &segments[last].path;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(active)
            .map_err(io_err(active))?;
        // Drop a torn tail so new records follow the last good one.
        file.set_len(active_len).map_err(io_err(active))?;
        let mut file = file;
        file.seek(SeekFrom::Start(active_len))
            .map_err(io_err(active))?;
        file.sync_all().map_err(io_err(active))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            segments,
            out: BufWriter::with_capacity(1 << 20, file),
            active_len,
        })
    }

    /// Buffers one record; it is durable only after [`Wal::sync`], and
    /// readable with [`read_record_at`] from then on. Returns where it
    /// starts: (segment sequence number, offset).
    pub fn append(&mut self, payload: &[u8]) -> Result<(u64, u64), WalError> {
        let mut head = [0u8; HEADER];
        head[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        let path = self.active_path().to_path_buf();
        let at = (
            self.segments.last().map(|s| s.seq).unwrap_or(0),
            self.active_len,
        );
        if failpoint::wal(WalPoint::Write).map_err(io_err(&path))? {
            return Ok(at);
        }
        self.out.write_all(&head).map_err(io_err(&path))?;
        self.out.write_all(payload).map_err(io_err(&path))?;
        self.active_len += (HEADER + payload.len()) as u64;
        Ok(at)
    }

    /// Flushes buffered records and fdatasyncs the active segment.
    pub fn sync(&mut self) -> Result<(), WalError> {
        let _timer = crate::metrics::wal_fsync();
        let path = self.active_path().to_path_buf();
        // Timed from here so the test hook's `wal-fsync=sleep(N)` (a slow
        // disk) counts; the flush before the fdatasync is small.
        let started = std::time::Instant::now();
        failpoint::wal(WalPoint::Fsync).map_err(io_err(&path))?;
        self.out.flush().map_err(io_err(&path))?;
        self.out.get_ref().sync_data().map_err(io_err(&path))?;
        let took = started.elapsed();
        if took > SLOW_FSYNC {
            // etcd's warning, with its message and fields.
            tracing::warn!(
                took = ?took,
                expected_duration = ?SLOW_FSYNC,
                path = %path.display(),
                "slow fdatasync"
            );
        }
        Ok(())
    }

    /// Bytes in the active segment.
    pub fn active_len(&self) -> u64 {
        self.active_len
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Syncs the active segment and starts a new one. Returns the new sequence number.
    pub fn rotate(&mut self) -> Result<u64, WalError> {
        self.sync()?;
        let seq = self.segments.last().map(|s| s.seq + 1).unwrap_or(1);
        let path = self.dir.join(segment_name(seq));
        let file = File::create(&path).map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        self.out = BufWriter::with_capacity(1 << 20, file);
        self.active_len = 0;
        self.segments.push(Segment { seq, path });
        Ok(seq)
    }

    /// Deletes sealed segments with sequence numbers below `seq`.
    pub fn remove_before(&mut self, seq: u64) -> Result<(), WalError> {
        let active = self.segments.last().map(|s| s.seq).unwrap_or(0);
        let mut kept = Vec::with_capacity(self.segments.len());
        for seg in self.segments.drain(..) {
            if seg.seq < seq && seg.seq != active {
                fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            } else {
                kept.push(seg);
            }
        }
        self.segments = kept;
        sync_dir(&self.dir)
    }

    fn active_path(&self) -> &Path {
        // `segments` is never empty after `open`.
        self.segments
            .last()
            .map(|s| s.path.as_path())
            .unwrap_or(self.dir.as_path())
    }
}

/// The path of segment `seq` in the WAL directory `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_name(seq))
}

/// Reads back the record that starts at `offset` of the segment at `path`
/// (as [`Wal::append`] returned it), checking its length and checksum.
pub fn read_record_at(path: &Path, offset: u64) -> Result<Vec<u8>, WalError> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path).map_err(io_err(path))?;
    let mut buf = vec![0u8; HEADER];
    file.read_exact_at(&mut buf, offset).map_err(io_err(path))?;
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let corrupt = |reason: String| WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    // Checked before the allocation: the length comes from the disk.
    if len > MAX_RECORD {
        return Err(corrupt(Bad::TooLong(len).reason()));
    }
    buf.resize(HEADER + len, 0);
    file.read_exact_at(&mut buf[HEADER..], offset + HEADER as u64)
        .map_err(io_err(path))?;
    let (payload, _) = parse_record(&buf).map_err(|bad| corrupt(bad.reason()))?;
    Ok(payload.to_vec())
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.wal")
}

fn list_segments(dir: &Path) -> Result<Vec<Segment>, WalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".wal") else {
            continue;
        };
        if let Ok(seq) = u64::from_str_radix(stem, 16) {
            out.push(Segment {
                seq,
                path: entry.path(),
            });
        }
    }
    out.sort_by_key(|s| s.seq);
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Why a record failed to parse.
enum Bad {
    /// The header or payload runs past the end of the file.
    Short(String),
    /// A zero length field: space that was never written.
    Zero,
    /// A length no record can have.
    TooLong(usize),
    /// A complete record (of this payload length) failing its checksum.
    Checksum(usize),
}

impl Bad {
    fn reason(&self) -> String {
        match self {
            Bad::Short(r) => r.clone(),
            Bad::Zero => "empty record".to_string(),
            Bad::TooLong(len) => format!("record length {len} exceeds limit"),
            Bad::Checksum(_) => "checksum mismatch".to_string(),
        }
    }
}

/// Reads every record of one segment; returns them and the length of the valid prefix.
/// Parses the bytes of one segment (`path` only names it in errors); returns
/// its records and the length of the valid prefix. `is_last`: the newest
/// segment, whose torn tail is dropped instead of being an error.
pub(crate) fn parse_segment(
    buf: &[u8],
    is_last: bool,
    path: &Path,
) -> Result<(Vec<Record>, u64), WalError> {
    let mut records = Vec::new();
    let good_len = each_record(buf, is_last, path, |offset, payload| {
        records.push(Record {
            offset,
            payload: payload.to_vec(),
        });
        Ok(())
    })?;
    Ok((records, good_len))
}

/// [`parse_segment`], handing each record (offset, payload) to `f` instead
/// of collecting them.
fn each_record(
    buf: &[u8],
    is_last: bool,
    path: &Path,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), WalError>,
) -> Result<u64, WalError> {
    let mut off = 0usize;
    while off < buf.len() {
        match parse_record(&buf[off..]) {
            Ok((payload, used)) => {
                f(off as u64, payload)?;
                off += used;
            }
            Err(bad) => {
                if is_last && is_torn_tail(buf, off, &bad) {
                    tracing::warn!(file = %path.display(), offset = off, reason = %bad.reason(), "dropping a torn write at the end of the log (never acknowledged)");
                    return Ok(off as u64);
                }
                return Err(WalError::Corrupt {
                    path: path.to_path_buf(),
                    offset: off as u64,
                    reason: bad.reason(),
                });
            }
        }
    }
    Ok(off as u64)
}

/// Whether the bad record at `bad_at` is a torn write. A crash mid-append
/// leaves a prefix of the last write, or sectors of zeros where the file was
/// extended but not yet written; never a complete record with wrong bytes,
/// and nothing but zeros after the damage (anything else is damage in the
/// middle). Linear in the file: a damaged segment cannot stall a start.
fn is_torn_tail(buf: &[u8], bad_at: usize, bad: &Bad) -> bool {
    let zeros_from = |at: usize| buf.get(at..).is_some_and(|t| t.iter().all(|b| *b == 0));
    match bad {
        // It runs to the end of the file.
        Bad::Short(_) => true,
        Bad::Zero => zeros_from(bad_at),
        Bad::Checksum(len) => {
            has_zero_sector(buf, bad_at, *len) && zeros_from(bad_at + HEADER + len)
        }
        // Complete, with a length kvd never writes: not a torn append.
        Bad::TooLong(_) => false,
    }
}

/// Whether the `len`-byte payload of the complete record at `at` holds a
/// sector-aligned (by file offset) chunk that is all zeros: a sector the
/// crash never wrote.
fn has_zero_sector(buf: &[u8], at: usize, len: usize) -> bool {
    let start = at + HEADER;
    let end = (start + len).min(buf.len());
    let mut pos = start;
    while pos < end {
        let chunk_end = ((pos / SECTOR + 1) * SECTOR).min(end);
        if buf[pos..chunk_end].iter().all(|b| *b == 0) {
            return true;
        }
        pos = chunk_end;
    }
    false
}

fn parse_record(buf: &[u8]) -> Result<(&[u8], usize), Bad> {
    if buf.len() < HEADER {
        return Err(Bad::Short(format!("short header ({} bytes)", buf.len())));
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 {
        // Zero-filled space (preallocated or never written) is not a record.
        return Err(Bad::Zero);
    }
    let end = HEADER + len;
    if end > buf.len() {
        return Err(Bad::Short(format!("record of {len} bytes cut short")));
    }
    if len > MAX_RECORD {
        return Err(Bad::TooLong(len));
    }
    let payload = &buf[HEADER..end];
    if crc32fast::hash(payload) != crc {
        return Err(Bad::Checksum(len));
    }
    Ok((payload, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, recs: &[&[u8]]) {
        let mut w = Wal::open(dir).unwrap().wal;
        for r in recs {
            w.append(r).unwrap();
        }
        w.sync().unwrap();
    }

    fn payloads(o: &Opened, seg: usize) -> Vec<Vec<u8>> {
        o.records[seg].2.iter().map(|r| r.payload.clone()).collect()
    }

    fn only_segment(dir: &Path) -> PathBuf {
        list_segments(dir).unwrap().pop().unwrap().path
    }

    #[test]
    fn round_trip_and_reopen_appends() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &[b"a", b"bb"]);
        write(d.path(), &[b"ccc"]);
        let o = Wal::open(d.path()).unwrap();
        assert_eq!(
            payloads(&o, 0),
            vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]
        );
    }

    #[test]
    fn torn_tail_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &[b"one", b"two"]);
        let p = only_segment(d.path());
        let len = fs::metadata(&p).unwrap().len();
        // Cut the last record in half.
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 2)
            .unwrap();
        let o = Wal::open(d.path()).unwrap();
        assert_eq!(payloads(&o, 0), vec![b"one".to_vec()]);
        // And the file can be appended to again.
        let mut w = o.wal;
        w.append(b"three").unwrap();
        w.sync().unwrap();
        let o = Wal::open(d.path()).unwrap();
        assert_eq!(payloads(&o, 0), vec![b"one".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &[b"one"]);
        let p = only_segment(d.path());
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[5, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0])
            .unwrap();
        let o = Wal::open(d.path()).unwrap();
        assert_eq!(payloads(&o, 0).len(), 1);
    }

    #[test]
    fn corruption_in_the_middle_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &[b"first-record", b"second-record"]);
        let p = only_segment(d.path());
        let mut bytes = fs::read(&p).unwrap();
        bytes[HEADER + 2] ^= 0xff; // flip a byte inside the first payload
        fs::write(&p, &bytes).unwrap();
        let err = Wal::open(d.path()).err().unwrap().to_string();
        assert!(err.contains(&p.display().to_string()), "{err}");
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn checksum_mismatch_in_the_last_record_is_corruption() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &[b"first-record", b"acknowledged-last-record"]);
        let p = only_segment(d.path());
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x01; // one bit inside the last, complete payload
        fs::write(&p, &bytes).unwrap();
        let err = Wal::open(d.path())
            .err()
            .expect("must not open")
            .to_string();
        assert!(err.contains(&p.display().to_string()), "{err}");
        assert!(err.contains("checksum"), "{err}");
        let offset = HEADER + b"first-record".len();
        assert!(err.contains(&format!("offset {offset}")), "{err}");
    }

    #[test]
    fn zero_sector_in_the_last_record_is_torn() {
        let d = tempfile::tempdir().unwrap();
        let big = vec![7u8; 3 * SECTOR];
        write(d.path(), &[b"one", &big]);
        let p = only_segment(d.path());
        let mut bytes = fs::read(&p).unwrap();
        // The crash never wrote the record's second sector.
        bytes[SECTOR..2 * SECTOR].fill(0);
        fs::write(&p, &bytes).unwrap();
        let o = Wal::open(d.path()).unwrap();
        assert_eq!(payloads(&o, 0), vec![b"one".to_vec()]);
    }

    #[test]
    fn damage_followed_by_data_is_corruption() {
        let d = tempfile::tempdir().unwrap();
        let big = vec![7u8; 3 * SECTOR];
        write(d.path(), &[b"one", &big, b"after"]);
        let p = only_segment(d.path());
        let mut bytes = fs::read(&p).unwrap();
        // A zero sector in the middle record, a valid record after it.
        bytes[SECTOR..2 * SECTOR].fill(0);
        fs::write(&p, &bytes).unwrap();
        let err = Wal::open(d.path())
            .err()
            .expect("must not open")
            .to_string();
        assert!(err.contains("checksum"), "{err}");
        // A zero length field followed by something other than zeros.
        write_fresh(d.path(), &[b"one"]);
        let p = only_segment(d.path());
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]).unwrap();
        let err = Wal::open(d.path())
            .err()
            .expect("must not open")
            .to_string();
        assert!(err.contains("empty record"), "{err}");
    }

    fn write_fresh(dir: &Path, recs: &[&[u8]]) {
        for seg in list_segments(dir).unwrap() {
            fs::remove_file(seg.path).unwrap();
        }
        write(dir, recs);
    }

    #[test]
    fn rotate_and_remove() {
        let d = tempfile::tempdir().unwrap();
        let mut w = Wal::open(d.path()).unwrap().wal;
        w.append(b"x").unwrap();
        let seq = w.rotate().unwrap();
        w.append(b"y").unwrap();
        w.sync().unwrap();
        w.remove_before(seq).unwrap();
        let o = Wal::open(d.path()).unwrap();
        assert_eq!(o.records.len(), 1);
        assert_eq!(payloads(&o, 0), vec![b"y".to_vec()]);
    }
}
