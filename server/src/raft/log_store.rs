//! The raft log on our WAL: records on disk, the newest entries also in
//! memory for reads (raft/log_cache.rs). One writer thread owns the files;
//! it drains every queued append, writes them, fdatasyncs once and then
//! acknowledges them all (group commit).

#![allow(clippy::result_large_err)] // openraft's StorageError is large by design.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    CommittedLeaderId, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader,
    StorageIOError,
};
use parking_lot::Mutex;

use super::log_cache::{self, Loc, Locs, LogMem};
use super::types::{Entry, LogId, RaftRequest, StorageError, TypeConfig, Vote};
use crate::storage::wal::{Wal, WalError};

/// Start a new segment once the active one passes this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Most queued operations written under one fsync.
const MAX_GROUP: usize = 4096;

const REC_ENTRY: u8 = 1;
const REC_TRUNCATE: u8 = 2;
const REC_PURGE: u8 = 3;
const REC_VOTE: u8 = 4;

const PAYLOAD_BLANK: u8 = 0;
const PAYLOAD_NORMAL: u8 = 1;
const PAYLOAD_MEMBERSHIP: u8 = 2;

/// What [`replay`] rebuilds: the log as the member reads it, each segment's
/// highest index, and where each entry's record lies.
pub(crate) type Replayed = (LogMem, BTreeMap<u64, u64>, Locs);
/// (segment sequence number, path, records), as [`Wal::open`] reads them.
pub(crate) type SegmentRecords = (u64, std::path::PathBuf, Vec<crate::storage::wal::Record>);

enum Op {
    Write {
        records: Vec<Vec<u8>>,
        max_index: u64,
        flushed: Option<LogFlushed<TypeConfig>>,
        done: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    },
}

/// The raft log store; clones share the same log.
#[derive(Clone)]
pub struct LogStore {
    mem: Arc<Mutex<LogMem>>,
    locs: Arc<Mutex<Locs>>,
    dir: PathBuf,
    tx: mpsc::Sender<Op>,
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn get_u64(buf: &[u8], at: usize) -> Option<u64> {
    buf.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
}

fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    buf.push(REC_ENTRY);
    put_u64(&mut buf, e.log_id.leader_id.term);
    put_u64(&mut buf, e.log_id.leader_id.node_id);
    put_u64(&mut buf, e.log_id.index);
    match &e.payload {
        EntryPayload::Blank => buf.push(PAYLOAD_BLANK),
        EntryPayload::Normal(r) => {
            buf.push(PAYLOAD_NORMAL);
            buf.extend_from_slice(&r.bytes);
        }
        EntryPayload::Membership(m) => {
            buf.push(PAYLOAD_MEMBERSHIP);
            // Serializing plain data to a Vec cannot fail.
            buf.extend_from_slice(&serde_json::to_vec(m).unwrap_or_default());
        }
    }
    buf
}

/// The log id in an entry record's fixed header.
fn entry_log_id(buf: &[u8]) -> Option<LogId> {
    Some(openraft::LogId::new(
        CommittedLeaderId::new(get_u64(buf, 1)?, get_u64(buf, 9)?),
        get_u64(buf, 17)?,
    ))
}

fn decode_entry(buf: &[u8]) -> Result<Entry, String> {
    let term = get_u64(buf, 1).ok_or("short entry")?;
    let node = get_u64(buf, 9).ok_or("short entry")?;
    let index = get_u64(buf, 17).ok_or("short entry")?;
    let kind = *buf.get(25).ok_or("short entry")?;
    let body = &buf[26..];
    let payload = match kind {
        PAYLOAD_BLANK => EntryPayload::Blank,
        PAYLOAD_NORMAL => EntryPayload::Normal(RaftRequest {
            bytes: body.to_vec(),
        }),
        PAYLOAD_MEMBERSHIP => {
            EntryPayload::Membership(serde_json::from_slice(body).map_err(|e| e.to_string())?)
        }
        k => return Err(format!("unknown payload kind {k}")),
    };
    Ok(Entry {
        log_id: openraft::LogId::new(CommittedLeaderId::new(term, node), index),
        payload,
    })
}

fn json_record<T: serde::Serialize>(kind: u8, v: &T) -> Vec<u8> {
    let mut buf = vec![kind];
    buf.extend_from_slice(&serde_json::to_vec(v).unwrap_or_default());
    buf
}

fn io_error(verb: ErrorVerb, e: impl ToString) -> StorageError {
    StorageIOError::new(
        ErrorSubject::Logs,
        verb,
        openraft::AnyError::error(e.to_string()),
    )
    .into()
}

/// Rebuilds the in-memory log (entries, vote, purge point) and each
/// segment's highest index from the records read back from disk; a record
/// that does not decode is an error naming its file and offset.
pub(crate) fn replay(records: &[SegmentRecords]) -> Result<Replayed, WalError> {
    let mut r = Replay::default();
    for (seq, path, records) in records {
        for record in records {
            r.record(*seq, path, record.offset, &record.payload)?;
        }
    }
    Ok((r.mem, r.seg_max, r.locs))
}

/// [`replay`] one record at a time, as [`Wal::open_with`] reads them.
#[derive(Default)]
struct Replay {
    mem: LogMem,
    locs: Locs,
    seg_max: BTreeMap<u64, u64>,
}

impl Replay {
    fn record(&mut self, seq: u64, path: &Path, offset: u64, rec: &[u8]) -> Result<(), WalError> {
        let corrupt = |reason: String| WalError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        let (mem, locs) = (&mut self.mem, &mut self.locs);
        match rec.first() {
            Some(&REC_ENTRY) => {
                let e = decode_entry(rec).map_err(corrupt)?;
                let max = self.seg_max.entry(seq).or_default();
                *max = (*max).max(e.log_id.index);
                locs.insert(Loc {
                    log_id: e.log_id,
                    seq,
                    offset,
                });
                mem.insert(e, rec.len());
                mem.evict(locs);
            }
            Some(&REC_TRUNCATE) => {
                let at = get_u64(rec, 1).ok_or_else(|| corrupt("short truncate".into()))?;
                mem.truncate(at);
                locs.truncate(at);
            }
            Some(&REC_PURGE) => {
                let id: LogId =
                    serde_json::from_slice(&rec[1..]).map_err(|e| corrupt(e.to_string()))?;
                // A forged index of u64::MAX would overflow the `+ 1`.
                if id.index == u64::MAX {
                    return Err(corrupt("purge index out of range".into()));
                }
                mem.purge(id);
                locs.purge(id.index);
            }
            Some(&REC_VOTE) => {
                mem.vote =
                    Some(serde_json::from_slice(&rec[1..]).map_err(|e| corrupt(e.to_string()))?);
            }
            _ => return Err(corrupt("unknown record type".into())),
        }
        Ok(())
    }
}

impl LogStore {
    /// Opens the log in `dir`, replaying every record, and starts the writer thread.
    pub fn open(dir: &Path) -> Result<LogStore, WalError> {
        let mut r = Replay::default();
        let wal = Wal::open_with(dir, |seq, path, offset, rec| {
            r.record(seq, path, offset, rec)
        })?;
        let Replay { mem, locs, seg_max } = r;
        let locs = Arc::new(Mutex::new(locs));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            wal,
            locs: locs.clone(),
            seg_max,
            vote: mem.vote,
            purged: mem.purged,
            failed: None,
        };
        std::thread::Builder::new()
            .name("kvd-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| WalError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
        Ok(LogStore {
            mem: Arc::new(Mutex::new(mem)),
            locs,
            dir: dir.to_path_buf(),
            tx,
        })
    }

    fn submit(&self, records: Vec<Vec<u8>>, max_index: u64) -> Result<(), StorageError> {
        self.tx
            .send(Op::Write {
                records,
                max_index,
                flushed: None,
                done: None,
            })
            .map_err(|_| io_error(ErrorVerb::Write, "wal writer stopped"))
    }

    async fn submit_and_wait(
        &self,
        records: Vec<Vec<u8>>,
        verb: ErrorVerb,
    ) -> Result<(), StorageError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Op::Write {
                records,
                max_index: 0,
                flushed: None,
                done: Some(done),
            })
            .map_err(|_| io_error(verb, "wal writer stopped"))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_error(verb, e)),
            Err(_) => Err(io_error(verb, "wal writer stopped")),
        }
    }
}

struct Writer {
    wal: Wal,
    /// Shared with readers; updated once the records are durable.
    locs: Arc<Mutex<Locs>>,
    /// Highest entry index written to each segment.
    seg_max: BTreeMap<u64, u64>,
    vote: Option<Vote>,
    purged: Option<LogId>,
    /// The first write or fsync error. After one, nothing more is written:
    /// the file may end in a partial record and the kernel may have dropped
    /// dirty pages (a later fsync can succeed without them), so no later
    /// write could be trusted. Every later operation fails with this error;
    /// raft stops and kvd exits (etcd treats a WAL error as fatal too), and a
    /// restart recovers from what is really on disk.
    failed: Option<String>,
}

/// What a written record changes in [`Locs`].
enum Written {
    Entry(Loc),
    Truncate(u64),
    Purge(u64),
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut ops = vec![first];
            while ops.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            let result = match &self.failed {
                Some(e) => Err(e.clone()),
                None => self.write(&ops).map_err(|e| e.to_string()),
            };
            if let (Err(e), None) = (&result, &self.failed) {
                tracing::error!(error = %e, "raft log write failed: nothing more is written, this member stops");
                self.failed = Some(e.clone());
            }
            for op in ops {
                let Op::Write { flushed, done, .. } = op;
                if let Some(f) = flushed {
                    f.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                if let Some(d) = done {
                    let _ = d.send(result.clone());
                }
            }
        }
    }

    fn write(&mut self, ops: &[Op]) -> Result<(), WalError> {
        // Applied to `locs` in write order once the fsync succeeded.
        let mut written = Vec::new();
        for Op::Write {
            records, max_index, ..
        } in ops
        {
            for rec in records {
                let (seq, offset) = self.wal.append(rec)?;
                match rec.first() {
                    Some(&REC_VOTE) => self.vote = serde_json::from_slice(&rec[1..]).ok(),
                    Some(&REC_PURGE) => {
                        self.purged = serde_json::from_slice(&rec[1..]).ok();
                        if let Some(p) = self.purged {
                            written.push(Written::Purge(p.index));
                        }
                    }
                    Some(&REC_TRUNCATE) => {
                        if let Some(at) = get_u64(rec, 1) {
                            written.push(Written::Truncate(at));
                        }
                    }
                    Some(&REC_ENTRY) => {
                        if let Some(log_id) = entry_log_id(rec) {
                            written.push(Written::Entry(Loc {
                                log_id,
                                seq,
                                offset,
                            }));
                        }
                    }
                    _ => {}
                }
            }
            if let Some(seg) = self.wal.segments().last() {
                let m = self.seg_max.entry(seg.seq).or_default();
                *m = (*m).max(*max_index);
            }
        }
        self.wal.sync()?;
        let purged_now = written.iter().any(|w| matches!(w, Written::Purge(_)));
        {
            let mut locs = self.locs.lock();
            for w in written {
                match w {
                    Written::Entry(loc) => locs.insert(loc),
                    Written::Truncate(at) => locs.truncate(at),
                    Written::Purge(upto) => locs.purge(upto),
                }
            }
        }
        if self.wal.active_len() > SEGMENT_BYTES {
            self.rotate()?;
        } else if purged_now && self.purged_segments().is_some() {
            // Free the disk at the purge, not at the next rotation (up to
            // 64 MiB of writes later: a whole load's log at scale). Safe
            // now: the purge record was just synced into the active
            // segment, which also holds the vote (restated when it was
            // started, appended there since).
            self.remove_purged_segments()?;
        }
        Ok(())
    }

    /// The newest sealed segment such that it and every older one hold only
    /// purged entries, if any.
    fn purged_segments(&self) -> Option<u64> {
        let purged = self.purged.map(|p| p.index).unwrap_or(0);
        let active = self.wal.segments().last().map(|s| s.seq).unwrap_or(0);
        self.wal
            .segments()
            .iter()
            .take_while(|s| {
                s.seq != active && self.seg_max.get(&s.seq).copied().unwrap_or(0) <= purged
            })
            .map(|s| s.seq)
            .last()
    }

    /// Deletes the segments [`Self::purged_segments`] names. The latest
    /// vote and purge point must be in the active segment (durably) before.
    fn remove_purged_segments(&mut self) -> Result<(), WalError> {
        if let Some(seq) = self.purged_segments() {
            self.wal.remove_before(seq + 1)?;
            self.seg_max.retain(|s, _| *s > seq);
        }
        Ok(())
    }

    /// Starts a new segment that restates vote and purge point, then drops
    /// sealed segments holding only purged entries.
    fn rotate(&mut self) -> Result<(), WalError> {
        self.wal.rotate()?;
        if let Some(v) = &self.vote {
            self.wal.append(&json_record(REC_VOTE, v))?;
        }
        if let Some(p) = &self.purged {
            self.wal.append(&json_record(REC_PURGE, p))?;
        }
        self.wal.sync()?;
        self.remove_purged_segments()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        log_cache::read(&self.mem, &self.locs, &self.dir, range, decode_entry)
            .map_err(|e| io_error(ErrorVerb::Read, e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let mem = self.mem.lock();
        let last = mem.last_log_id();
        Ok(LogState {
            last_purged_log_id: mem.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.submit_and_wait(vec![json_record(REC_VOTE, vote)], ErrorVerb::Write)
            .await?;
        self.mem.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.mem.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        let mut max_index = 0;
        {
            let mut mem = self.mem.lock();
            for e in entries {
                let rec = encode_entry(&e);
                max_index = max_index.max(e.log_id.index);
                mem.insert(e, rec.len());
                records.push(rec);
            }
            mem.evict(&self.locs.lock());
        }
        self.tx
            .send(Op::Write {
                records,
                max_index,
                flushed: Some(callback),
                done: None,
            })
            .map_err(|_| io_error(ErrorVerb::Write, "wal writer stopped"))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.mem.lock().truncate(log_id.index);
        let mut rec = vec![REC_TRUNCATE];
        put_u64(&mut rec, log_id.index);
        // Ordered before any later append by the single writer.
        self.submit(vec![rec], 0)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.mem.lock().purge(log_id);
        self.submit(vec![json_record(REC_PURGE, &log_id)], 0)
    }
}

#[cfg(test)]
#[path = "log_store_tests.rs"]
mod tests;
