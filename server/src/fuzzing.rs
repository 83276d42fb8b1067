//! Entry points for fuzzing every decoder of bytes that come from the network
//! or the disk, shared by the libFuzzer targets (`fuzz/`, nightly) and the
//! corpus replay test (`tests/fuzz_decoders.rs`, stable), so both exercise
//! exactly the server's own code paths.
//!
//! Each function takes arbitrary bytes and must return for every input: an
//! `Err` for bad input is fine, a panic, a hang or an allocation sized by the
//! input is a bug. The functions also panic on a broken invariant that would
//! otherwise go unnoticed (a re-encoded message that decodes differently, a
//! validated request that makes apply fail fatally).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use kv_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};
use kv_proto::kvpb::{internal_request::Request, InternalBatch, InternalRequest, RaftMessage};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload};
use prost::Message;
use tokio::io::{AsyncRead, ReadBuf};

use crate::apply::{Core, StateMachine};
use crate::header::HeaderSource;
use crate::mvcc::{Revision, Store};
use crate::raft::types::{Entry, NodeId, TypeConfig};
use crate::raft::RaftRequest;
use crate::txn::{self, Limits};

/// Client request validation: `data` decoded as each request kind a client
/// sends (prost, as tonic does), then checked as the gRPC handlers check it.
pub fn client_request(data: &[u8]) {
    // A small op limit from the input reaches the subtraction paths too.
    let small = Limits {
        max_txn_ops: usize::from(data.first().copied().unwrap_or(0)),
    };
    if let Ok(t) = TxnRequest::decode(data) {
        let _ = txn::check_txn_shape(&t, Limits::default());
        let _ = txn::check_txn_shape(&t, small);
    }
    if let Ok(p) = PutRequest::decode(data) {
        let _ = txn::check_put(&p);
    }
    if let Ok(r) = RangeRequest::decode(data) {
        let _ = txn::check_range(&r);
    }
    if let Ok(d) = DeleteRangeRequest::decode(data) {
        let _ = txn::check_delete(&d);
    }
}

/// Whether a member accepts `req` for proposal: the shape checks of
/// `Node::check_forwarded` (quota and size checks need a running node).
fn accepted(req: &InternalRequest) -> bool {
    match &req.request {
        Some(Request::Put(p)) => txn::check_put(p).is_ok(),
        Some(Request::DeleteRange(d)) => txn::check_delete(d).is_ok(),
        Some(Request::Txn(t)) => txn::check_txn_shape(t, Limits::default()).is_ok(),
        Some(
            Request::LeaseGrant(_)
            | Request::Compaction(_)
            | Request::LeaseRevoke(_)
            | Request::Alarm(_)
            | Request::MemberAttributes(_),
        ) => true,
        Some(Request::Auth(_)) => true,
        Some(Request::Authed(a)) => a.request.as_ref().is_some_and(|r| accepted(r)),
        Some(Request::LeaseCheckpoint(_)) | None => false,
    }
}

/// A per-process scratch directory for a target's store: in /dev/shm when
/// there is one (commits are not slowed by a disk), else the temp dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("kvd-fuzz-{name}-{}", std::process::id()))
}

/// Applies raft entries to a real store through the state machine, as a
/// follower applies what its leader replicated.
pub struct Applier {
    dir: PathBuf,
    sm: StateMachine,
    index: u64,
}

/// Applies this many entries before starting over on a fresh store, so a
/// long fuzzing run does not grow the store (and its in-memory index) forever.
const APPLIES_PER_STORE: u64 = 256;

impl Applier {
    /// A state machine over a fresh store in `dir` (created, and emptied first).
    pub fn new(dir: &Path) -> Result<Self, String> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("snap")).map_err(|e| e.to_string())?;
        let (store, rec) = Store::open(&dir.join("db")).map_err(|e| e.to_string())?;
        let core = Core::new(
            Arc::new(store),
            Arc::new(HeaderSource::new(1, 1)),
            Duration::from_secs(1),
        );
        core.restore(&rec);
        let sm = StateMachine::open(core, &rec, dir.join("snap")).map_err(|e| e.to_string())?;
        Ok(Applier {
            dir: dir.to_path_buf(),
            sm,
            index: 0,
        })
    }

    /// Applies `data` as one normal entry (an encoded `InternalBatch`).
    /// Bad requests get their own error answers; a fatal (storage) error is
    /// returned, and panics if every request in the entry would have been
    /// accepted for proposal.
    pub fn apply(&mut self, data: &[u8]) -> Result<(), String> {
        if self.index >= APPLIES_PER_STORE {
            *self = Applier::new(&self.dir)?;
        }
        self.index += 1;
        let entry = Entry {
            log_id: openraft::LogId::new(CommittedLeaderId::new(1, 1), self.index),
            payload: EntryPayload::Normal(RaftRequest {
                bytes: data.to_vec(),
            }),
        };
        match futures::executor::block_on(self.sm.apply(vec![entry])) {
            Ok(resp) => {
                assert_eq!(resp.len(), 1, "one response per entry");
                Ok(())
            }
            Err(e) => {
                let valid =
                    InternalBatch::decode(data).is_ok_and(|b| b.requests.iter().all(accepted));
                assert!(!valid, "an accepted request failed apply fatally: {e}");
                // The member stops on a fatal error; so does this one.
                *self = Applier::new(&self.dir)?;
                Err(e.to_string())
            }
        }
    }
}

/// Imports snapshots into a real store, then decodes everything a restart
/// reads from it (rows, counters, meta JSON, leases, alarms).
pub struct SnapshotImporter {
    dir: PathBuf,
    store: Arc<Store>,
}

impl SnapshotImporter {
    /// An importer over a fresh store in `dir` (created, and emptied first).
    pub fn new(dir: &Path) -> Result<Self, String> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("snap")).map_err(|e| e.to_string())?;
        let (store, _) = Store::open(&dir.join("db")).map_err(|e| e.to_string())?;
        Ok(SnapshotImporter {
            dir: dir.to_path_buf(),
            store: Arc::new(store),
        })
    }

    /// Imports `data`. Input that does not start with the snapshot magic
    /// is taken as the record section and framed with the magic, end marker
    /// and a valid checksum, so the fuzzer reaches the record decoding that
    /// sits behind the crc.
    pub fn import(&self, data: &[u8]) -> Result<(), String> {
        let framed;
        let snap = if data.starts_with(SNAPSHOT_MAGIC) {
            data
        } else {
            framed = frame_snapshot(data);
            &framed
        };
        let rec = self.store.import(snap).map_err(|e| e.to_string())?;
        let core = Core::new(
            self.store.clone(),
            Arc::new(HeaderSource::new(1, 1)),
            Duration::from_secs(1),
        );
        core.restore(&rec);
        StateMachine::open(core, &rec, self.dir.join("snap")).map_err(|e| e.to_string())?;
        Ok(())
    }
}

const SNAPSHOT_MAGIC: &[u8] = b"KVSNAP01";

/// `KVSNAP01`, `body`, the end marker and the crc of all of it.
pub fn frame_snapshot(body: &[u8]) -> Vec<u8> {
    let mut out = SNAPSHOT_MAGIC.to_vec();
    out.extend_from_slice(body);
    out.push(0xFF);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// One redb KV row: the first 16 bytes are the revision key, the rest the value.
pub fn mvcc_row(data: &[u8]) {
    let mut key = [0u8; 16];
    let n = data.len().min(16);
    key[..n].copy_from_slice(&data[..n]);
    let rev = Revision::from_key(u128::from_be_bytes(key));
    let _ = crate::mvcc::row::decode_row(rev, &data[n..]);
}

/// One WAL segment: the record framing, then every record decoded as the
/// raft log store replays it. The first byte says whether it is the newest
/// segment (where a torn tail is tolerated). Returns how many records the
/// segment held, or why it was refused.
pub fn wal_segment(data: &[u8]) -> Result<usize, String> {
    let (flags, seg) = data.split_first().ok_or("empty input")?;
    let path = Path::new("0000000000000001.wal");
    let (records, _) =
        crate::storage::wal::parse_segment(seg, flags & 1 == 1, path).map_err(|e| e.to_string())?;
    let n = records.len();
    crate::raft::log_store::replay(&[(1, path.to_path_buf(), records)])
        .map_err(|e| e.to_string())?;
    Ok(n)
}

/// Decodes `data` as `T` with bincode; if it decodes, checks that encoding
/// it again and decoding that gives the same bytes.
fn bincode_round_trip<T>(data: &[u8]) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let v: T = bincode::deserialize(data).ok()?;
    let again = bincode::serialize(&v).expect("a decoded message re-encodes");
    let back: T = bincode::deserialize(&again).expect("a re-encoded message decodes");
    let third = bincode::serialize(&back).expect("a decoded message re-encodes");
    assert_eq!(again, third, "bincode round trip changed the message");
    Some(v)
}

/// A response as the network client decodes it; one that decodes must
/// round-trip.
fn response<Resp, E>(body: &[u8])
where
    Resp: serde::Serialize + serde::de::DeserializeOwned,
    E: serde::Serialize + serde::de::DeserializeOwned,
{
    if crate::raft::network::decode_response::<Resp, E>(body).is_ok() {
        let _ = bincode_round_trip::<Result<Resp, E>>(body);
    }
}

/// A peer message: the first byte picks the kind, the rest is its bincode
/// body. Requests go through the peer service's own decoder; responses as
/// the network client decodes them; then the entry payload encoding.
pub fn peer_message(data: &[u8]) {
    let Some((kind, body)) = data.split_first() else {
        return;
    };
    let msg = RaftMessage {
        data: body.to_vec(),
    };
    match kind % 8 {
        0 => {
            if let Ok(rpc) = crate::node::peer::decode::<AppendEntriesRequest<TypeConfig>>(&msg) {
                let _ = bincode_round_trip::<AppendEntriesRequest<TypeConfig>>(body);
                for e in &rpc.entries {
                    if let EntryPayload::Normal(r) = &e.payload {
                        let _ = InternalBatch::decode(r.bytes.as_slice());
                    }
                }
            }
        }
        1 => {
            let _ = crate::node::peer::decode::<VoteRequest<NodeId>>(&msg);
            let _ = bincode_round_trip::<VoteRequest<NodeId>>(body);
        }
        2 => {
            let _ = crate::node::peer::decode::<InstallSnapshotRequest<TypeConfig>>(&msg);
            let _ = bincode_round_trip::<InstallSnapshotRequest<TypeConfig>>(body);
        }
        3 => response::<AppendEntriesResponse<NodeId>, RaftError<NodeId>>(body),
        4 => response::<VoteResponse<NodeId>, RaftError<NodeId>>(body),
        5 => response::<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>(
            body,
        ),
        6 => {
            let _ = bincode_round_trip::<RaftRequest>(body);
        }
        _ => {
            // The payload encoding through a self-describing format (the
            // membership and vote records of the log are JSON).
            let _ = serde_json::from_slice::<RaftRequest>(body);
            let _ =
                serde_json::from_slice::<openraft::Membership<NodeId, openraft::BasicNode>>(body);
        }
    }
}

/// An in-memory connection that hands out its bytes in chunks of varying size.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let pick = self.sizes.get(self.turn % self.sizes.len().max(1)).copied();
        self.turn += 1;
        // Chunk sizes from 1 byte to past one frame's worth.
        let want = match pick {
            Some(s) if s < 128 => usize::from(s) + 1,
            Some(s) => usize::from(s) * 160,
            None => 4096,
        };
        let n = want.min(self.data.len()).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// The HTTP/2 `:authority` rewriter: the first byte says how many of the
/// following bytes choose read sizes; the rest is what a client sends.
/// Reads the rewritten stream to its end (or error) with a bounded number
/// of polls: every poll must make progress.
pub fn hpack_stream(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (sizes, input) = rest.split_at(usize::from(n % 16).min(rest.len()));
    let conn = Chunked {
        data: input,
        sizes,
        turn: 0,
    };
    let mut fix = crate::api::authority::AuthorityFix::new(conn);
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut storage = vec![0u8; 16_384 + 9];
    let mut out_len = 0usize;
    // Every poll ends the stream or hands out at least one byte, so only
    // endless output could keep this loop going. Re-encoding may expand a
    // block (a one-byte table reference becomes a literal), but at most to
    // h2's header list limit per block: the output stays proportional.
    let out_bound = 2048 * input.len() + 65_536;
    for i in 0.. {
        let cap = storage.len().min(
            sizes
                .get(i % sizes.len().max(1))
                .map_or(4096, |s| 1 + usize::from(*s) * 64),
        );
        let mut buf = ReadBuf::new(&mut storage[..cap]);
        match Pin::new(&mut fix).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return,
            Poll::Ready(Ok(())) => out_len += buf.filled().len(),
            Poll::Ready(Err(_)) => return,
            Poll::Pending => panic!("an in-memory stream never blocks"),
        }
        assert!(
            out_len <= out_bound,
            "AuthorityFix output grows without bound"
        );
    }
}
