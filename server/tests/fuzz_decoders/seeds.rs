//! Generated seed inputs of every fuzz target (see `write_seed_corpus`).

use std::collections::{BTreeMap, BTreeSet};

use kv_proto::etcdserverpb::{
    compare, request_op, AlarmRequest, CompactionRequest, Compare, DeleteRangeRequest,
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use kv_proto::kvpb::{internal_request::Request, InternalBatch, InternalRequest, MemberAttributes};
use kv_proto::mvccpb::KeyValue;
use kvd::fuzzing;
use kvd::raft::types::{Entry, SnapshotMeta, StoredMembership, TypeConfig};
use kvd::raft::RaftRequest;
use openraft::error::{Fatal, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, Vote};
use prost::Message;

/// A WAL segment whose one record purges up to log index u64::MAX.
pub(crate) fn purge_at_the_last_index() -> Vec<u8> {
    let id = LogId::new(CommittedLeaderId::new(1, 1), u64::MAX);
    let mut rec = vec![3u8];
    rec.extend_from_slice(&serde_json::to_vec(&id).unwrap());
    wal_segment(&[rec])
}

fn put(k: &str, v: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        lease,
        prev_kv: true,
        ..Default::default()
    }
}

fn op(r: request_op::Request) -> RequestOp {
    RequestOp { request: Some(r) }
}

fn sample_txn() -> TxnRequest {
    let inner = TxnRequest {
        compare: vec![Compare {
            key: b"b".to_vec(),
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Version as i32,
            target_union: Some(compare::TargetUnion::Version(0)),
            range_end: vec![],
        }],
        success: vec![op(request_op::Request::RequestPut(put("b", "2", 0)))],
        failure: vec![op(request_op::Request::RequestRange(RangeRequest {
            key: b"b".to_vec(),
            ..Default::default()
        }))],
    };
    TxnRequest {
        compare: vec![Compare {
            key: b"a".to_vec(),
            result: compare::CompareResult::Greater as i32,
            target: compare::CompareTarget::Mod as i32,
            target_union: Some(compare::TargetUnion::ModRevision(1)),
            range_end: b"c".to_vec(),
        }],
        success: vec![
            op(request_op::Request::RequestPut(put("a", "1", 0))),
            op(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: b"x".to_vec(),
                    range_end: b"z".to_vec(),
                    prev_kv: true,
                },
            )),
            op(request_op::Request::RequestTxn(inner)),
        ],
        failure: vec![op(request_op::Request::RequestRange(RangeRequest {
            key: b"a".to_vec(),
            range_end: vec![0],
            limit: 10,
            ..Default::default()
        }))],
    }
}

fn batch(reqs: Vec<Request>) -> Vec<u8> {
    InternalBatch {
        requests: reqs
            .into_iter()
            .enumerate()
            .map(|(i, r)| InternalRequest {
                id: i as u64 + 1,
                request: Some(r),
            })
            .collect(),
    }
    .encode_to_vec()
}

fn membership() -> Membership<u64, BasicNode> {
    let nodes: BTreeMap<u64, BasicNode> = [1, 2, 3]
        .into_iter()
        .map(|i| (i, BasicNode::new(format!("http://127.0.0.1:{}", 2380 + i))))
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(2, 1), index)
}

/// A WAL segment (first byte: "newest segment") of `records`.
fn wal_segment(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![1u8];
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(r).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// A log store entry record, as `raft::log_store` writes it.
fn wal_entry(index: u64, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![1u8];
    for v in [2u64, 1, index] {
        r.extend_from_slice(&v.to_le_bytes());
    }
    r.push(kind);
    r.extend_from_slice(body);
    r
}

pub(crate) fn snap_record(out: &mut Vec<u8>, table: u8, k: &[u8], v: &[u8]) {
    out.push(table);
    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v);
}

fn row(kind: u8, key: &str, value: &str, rev: i64) -> Vec<u8> {
    let kv = KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision: 2,
        mod_revision: rev,
        version: 1,
        lease: 0,
    };
    let mut v = vec![kind];
    v.extend_from_slice(&kv.encode_to_vec());
    v
}

fn rev_key(main: i64, sub: i64) -> u128 {
    kvd::mvcc::Revision::new(main, sub).to_key()
}

/// The record section of a snapshot holding every table.
fn snapshot_body() -> Vec<u8> {
    let mut b = Vec::new();
    snap_record(
        &mut b,
        1,
        &rev_key(2, 0).to_le_bytes(),
        &row(0, "a", "1", 2),
    );
    snap_record(
        &mut b,
        1,
        &rev_key(3, 0).to_le_bytes(),
        &row(0, "b", "2", 3),
    );
    snap_record(&mut b, 1, &rev_key(4, 0).to_le_bytes(), &row(1, "a", "", 4));
    snap_record(&mut b, 2, b"revision", &4i64.to_le_bytes());
    snap_record(&mut b, 2, b"compact", &(-1i64).to_le_bytes());
    let applied = serde_json::to_vec(&Some(log_id(9))).unwrap();
    snap_record(&mut b, 2, b"applied", &applied);
    let m = StoredMembership::new(Some(log_id(1)), membership());
    snap_record(&mut b, 2, b"membership", &serde_json::to_vec(&m).unwrap());
    snap_record(&mut b, 3, &7i64.to_le_bytes(), &60i64.to_le_bytes());
    let mut alarm = 1u64.to_le_bytes().to_vec();
    alarm.extend_from_slice(&1i32.to_le_bytes());
    snap_record(&mut b, 4, &alarm, &[]);
    let attrs = MemberAttributes {
        id: 1,
        name: "m1".into(),
        client_urls: vec!["http://127.0.0.1:2379".into()],
    };
    snap_record(&mut b, 5, &1u64.to_le_bytes(), &attrs.encode_to_vec());
    b
}

/// An HPACK literal (no indexing, new name) header field.
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    for s in [name, value] {
        assert!(s.len() < 127);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
}

fn h2_frame(ty: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[ty, flags]);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn h2_stream(authority: &str, split: bool) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    literal(&mut block, ":authority", authority);
    literal(&mut block, ":path", "/etcdserverpb.KV/Put");
    block.push(0x40); // incremental indexing, new name
    block.push(2);
    block.extend_from_slice(b"te");
    block.push(8);
    block.extend_from_slice(b"trailers");
    block.push(0xbe); // the field just added to the dynamic table
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS
    if split {
        let (a, b) = block.split_at(block.len() / 2);
        out.extend(h2_frame(
            0x1,
            0x8 | 0x20,
            1,
            &[[2u8].as_slice(), &[0, 0, 0, 0, 16], a, &[0, 0]].concat(),
        ));
        out.extend(h2_frame(0x9, 0x4, 1, b));
    } else {
        out.extend(h2_frame(0x1, 0x4, 1, &block));
    }
    out.extend(h2_frame(0x0, 0x1, 1, &[0, 0, 0, 0, 2, 8, 1])); // DATA
    out.extend(h2_frame(0x1, 0x5, 3, &block)); // a second stream
    out
}

pub(crate) fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let txn = sample_txn();
    let mut s = vec![
        ("client_request", "txn", txn.encode_to_vec()),
        ("client_request", "put", put("k", "v", 5).encode_to_vec()),
        (
            "client_request",
            "range",
            RangeRequest {
                key: b"a".to_vec(),
                range_end: b"b".to_vec(),
                revision: 3,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    ];
    let all = vec![
        Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 7 }),
        Request::Put(put("a", "1", 7)),
        Request::Put(put("b", "2", 0)),
        Request::Txn(txn),
        Request::DeleteRange(DeleteRangeRequest {
            key: b"a".to_vec(),
            range_end: vec![0],
            prev_kv: true,
        }),
        Request::Compaction(CompactionRequest {
            revision: 3,
            physical: false,
        }),
        Request::LeaseRevoke(LeaseRevokeRequest { id: 7 }),
        Request::Alarm(AlarmRequest {
            action: 1,
            member_id: 1,
            alarm: 1,
        }),
        Request::MemberAttributes(MemberAttributes {
            id: 1,
            name: "m1".into(),
            client_urls: vec!["http://127.0.0.1:2379".into()],
        }),
        Request::LeaseCheckpoint(LeaseCheckpointRequest {
            checkpoints: vec![LeaseCheckpoint {
                id: 7,
                remaining_ttl: 30,
            }],
        }),
    ];
    s.push(("apply", "batch-all-kinds", batch(all)));
    s.push(("apply", "put", batch(vec![Request::Put(put("k", "v", 0))])));
    s.push((
        "apply",
        "txn-and-compact",
        batch(vec![
            Request::Put(put("a", "0", 0)),
            Request::Txn(sample_txn()),
            Request::Compaction(CompactionRequest {
                revision: 2,
                physical: true,
            }),
        ]),
    ));
    let body = snapshot_body();
    s.push(("snapshot", "full", fuzzing::frame_snapshot(&body)));
    s.push(("snapshot", "body", body));
    s.push(("snapshot", "empty", fuzzing::frame_snapshot(&[])));
    let mut lease = Vec::new();
    snap_record(&mut lease, 3, &7i64.to_le_bytes(), &i64::MAX.to_le_bytes());
    s.push(("snapshot", "regression-lease-ttl-max", lease));
    let mut r = rev_key(2, 0).to_be_bytes().to_vec();
    r.extend(row(0, "a", "1", 2));
    s.push(("mvcc_row", "put", r));
    let mut r = rev_key(5, 1).to_be_bytes().to_vec();
    r.extend(row(1, "b", "", 5));
    s.push(("mvcc_row", "tombstone", r));
    let mut r = rev_key(6, 0).to_be_bytes().to_vec();
    r.push(0);
    s.push(("mvcc_row", "empty-value", r));
    let entries = vec![
        wal_entry(1, 0, &[]),
        wal_entry(2, 2, &serde_json::to_vec(&membership()).unwrap()),
        wal_entry(3, 1, &batch(vec![Request::Put(put("a", "1", 0))])),
        [
            vec![4u8],
            serde_json::to_vec(&Vote::new_committed(2, 1)).unwrap(),
        ]
        .concat(),
        [vec![2u8], 3u64.to_le_bytes().to_vec()].concat(),
        [vec![3u8], serde_json::to_vec(&log_id(1)).unwrap()].concat(),
    ];
    let seg = wal_segment(&entries);
    let mut torn = seg.clone();
    torn.truncate(seg.len() - 5);
    s.push(("wal", "segment", seg));
    s.push(("wal", "torn-tail", torn));
    s.push(("wal", "one-entry", wal_segment(&entries[2..3])));
    s.push((
        "wal",
        "regression-purge-index-max",
        purge_at_the_last_index(),
    ));
    s.push((
        "peer_message",
        "regression-nested-error-response",
        nested_error_response(20_000),
    ));
    let entry = |i: u64, payload| Entry {
        log_id: log_id(i),
        payload,
    };
    let ae = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(log_id(3)),
        entries: vec![
            entry(4, EntryPayload::Blank),
            entry(
                5,
                EntryPayload::Normal(RaftRequest {
                    bytes: batch(vec![Request::Put(put("a", "1", 0))]),
                }),
            ),
            entry(6, EntryPayload::Membership(membership())),
        ],
        leader_commit: Some(log_id(3)),
    };
    let msg = |kind: u8, body: Vec<u8>| [vec![kind], body].concat();
    let ser = |v: &dyn erased::Ser| v.ser();
    s.push(("peer_message", "append-entries", msg(0, ser(&ae))));
    let vote = VoteRequest::new(Vote::new(3, 2), Some(log_id(6)));
    s.push(("peer_message", "vote", msg(1, ser(&vote))));
    let snap = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(9)),
            last_membership: StoredMembership::new(Some(log_id(1)), membership()),
            snapshot_id: "2-1-9-1".into(),
        },
        offset: 0,
        data: fuzzing::frame_snapshot(&snapshot_body()),
        done: true,
    };
    s.push(("peer_message", "install-snapshot", msg(2, ser(&snap))));
    let r: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
        Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(4))));
    s.push(("peer_message", "append-response", msg(3, ser(&r))));
    let r: Result<VoteResponse<u64>, RaftError<u64>> = Ok(VoteResponse {
        vote: Vote::new(3, 2),
        vote_granted: true,
        last_log_id: Some(log_id(6)),
    });
    s.push(("peer_message", "vote-response", msg(4, ser(&r))));
    let r: Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> =
        Err(RaftError::Fatal(Fatal::Stopped));
    s.push(("peer_message", "snapshot-error", msg(5, ser(&r))));
    let r: Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> =
        Ok(InstallSnapshotResponse {
            vote: Vote::new_committed(2, 1),
        });
    s.push(("peer_message", "snapshot-response", msg(5, ser(&r))));
    let payload = RaftRequest {
        bytes: b"payload".to_vec(),
    };
    s.push(("peer_message", "payload-bincode", msg(6, ser(&payload))));
    s.push((
        "peer_message",
        "payload-json",
        msg(7, serde_json::to_vec(&payload).unwrap()),
    ));
    // hpack: first byte 0 = default read sizes; 3 = three size bytes follow.
    s.push((
        "hpack",
        "url-authority",
        [vec![0], h2_stream("http://127.0.0.1:2379", false)].concat(),
    ));
    s.push((
        "hpack",
        "plain-authority",
        [vec![0], h2_stream("127.0.0.1:2379", false)].concat(),
    ));
    s.push((
        "hpack",
        "split-padded-small-reads",
        [vec![3, 1, 9, 200], h2_stream("https://h:1/p", true)].concat(),
    ));
    s
}

/// Type erasure for the seed encoder (bincode, as the peer code writes).
mod erased {
    pub trait Ser {
        fn ser(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn ser(&self) -> Vec<u8> {
            bincode::serialize(self).expect("encode")
        }
    }
}

/// A peer's error response whose `AnyError` source chain is `depth` deep
/// (10 bytes a level), as the network client decodes it.
pub(crate) fn nested_error_response(depth: usize) -> Vec<u8> {
    use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
    let leaf = AnyError::error("m");
    let leaf_bytes = bincode::serialize(&leaf).unwrap();
    let io = StorageIOError::<u64>::new(ErrorSubject::Store, ErrorVerb::Read, leaf);
    let r: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
        Err(RaftError::Fatal(Fatal::StorageError(StorageError::IO {
            source: io,
        })));
    let all = bincode::serialize(&r).unwrap();
    let at = all
        .windows(leaf_bytes.len())
        .position(|w| w == leaf_bytes.as_slice())
        .expect("the AnyError inside");
    let mut out = vec![3u8];
    out.extend_from_slice(&all[..at]);
    for _ in 0..depth {
        out.push(0); // typ: None
        out.extend_from_slice(&0u64.to_le_bytes()); // msg: ""
        out.push(1); // source: Some(..)
    }
    out.extend_from_slice(&leaf_bytes);
    for _ in 0..depth {
        out.extend_from_slice(&0u64.to_le_bytes()); // context: []
        out.push(0); // backtrace: None
    }
    out.extend_from_slice(&all[at + leaf_bytes.len()..]);
    out
}
