//! The applier answers the callers this member registered for an entry
//! (replies.rs), right after the commit that applied it, with openraft not
//! involved at all: the state machine is driven directly here, so nothing
//! but the applier can answer. Real redb store on disk.

use std::sync::Arc;
use std::time::Duration;

use kv_proto::etcdserverpb::PutRequest;
use kv_proto::kvpb::{internal_request::Request, InternalBatch, InternalRequest, LogEntry};
use openraft::{CommittedLeaderId, EntryPayload};
use prost::Message;
use tokio::sync::oneshot;

use super::replies::{encode_entry, tag_of, Registration, Tag, Waiter, MAX_WAITING};
use super::*;
use crate::error::{KvError, KvResult};
use crate::header::HeaderSource;
use crate::mvcc::ReadView;
use crate::raft::types::RaftRequest;

const ME: u64 = 7;

fn open(dir: &std::path::Path) -> (Arc<Core>, StateMachine) {
    let (store, rec) = Store::open(&dir.join("db")).expect("open store");
    let core = Core::new(
        Arc::new(store),
        Arc::new(HeaderSource::new(1, ME)),
        Duration::from_secs(1),
    );
    core.restore(&rec);
    core.replies.bind(ME);
    let sm = StateMachine::open(core.clone(), &rec, dir.join("snap")).expect("state machine");
    (core, sm)
}

fn put(key: &str) -> InternalRequest {
    InternalRequest {
        id: 0,
        request: Some(Request::Put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })),
    }
}

fn entry(index: u64, bytes: Vec<u8>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(RaftRequest { bytes }),
    }
}

type Answer = oneshot::Receiver<KvResult<Applied>>;

fn waiters(n: usize) -> (Vec<Waiter>, Vec<Answer>) {
    (0..n).map(|_| oneshot::channel()).unzip()
}

fn register(core: &Core, w: Vec<Waiter>) -> Registration {
    core.replies
        .register(w)
        .unwrap_or_else(|_| panic!("registered"))
}

fn revision(a: Result<KvResult<Applied>, oneshot::error::TryRecvError>) -> i64 {
    match a {
        Ok(Ok(Applied::Put(r))) => r.header.map(|h| h.revision).unwrap_or(-1),
        other => panic!("not a put's result: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applier_answers_registered_callers_after_the_commit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (core, mut sm) = open(dir.path());
    let (w, mut answers) = waiters(2);
    let mut reg = register(&core, w);
    let bytes = encode_entry(Some(reg.tag()), &[put("a"), put("b")]);
    let out = sm.apply([entry(1, bytes)]).await.expect("apply");

    // Each caller has its own result, and the write is visible by then.
    assert_eq!(revision(answers[0].try_recv()), 2);
    assert_eq!(revision(answers[1].try_recv()), 3);
    let snap = core.store.snapshot();
    assert!(snap.index().get(b"b").is_some_and(|h| h.is_live()));
    drop(snap);
    // openraft's reply carries nothing more to answer, and the
    // registration is gone: nobody is answered twice.
    assert!(out[0].0.is_empty());
    assert!(reg.take().is_none());
    assert_eq!(core.replies.registered(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_members_entries_and_untagged_ones_are_left_to_openraft() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (core, mut sm) = open(dir.path());
    let (w, mut answers) = waiters(1);
    let reg = register(&core, w);
    // The same id proposed by another member, and an entry in the format
    // written before tags (an old log): neither is this caller's.
    let other = Tag {
        proposer: ME + 1,
        ..reg.tag()
    };
    let old = InternalBatch {
        requests: vec![put("y")],
    }
    .encode_to_vec();
    let out = sm
        .apply([
            entry(1, encode_entry(Some(other), &[put("x")])),
            entry(2, old),
        ])
        .await
        .expect("apply");
    assert!(answers[0].try_recv().is_err(), "answered for another entry");
    assert_eq!(out[0].0.len(), 1, "openraft's reply keeps the result");
    assert_eq!(out[1].0.len(), 1);
    assert_eq!(core.replies.registered(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_registration_is_gone_and_its_entry_answers_nobody() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (core, mut sm) = open(dir.path());
    let (w, _answers) = waiters(1);
    let tag = register(&core, w).tag();
    assert_eq!(core.replies.registered(), 0);
    let out = sm
        .apply([entry(1, encode_entry(Some(tag), &[put("a")]))])
        .await
        .expect("apply");
    assert_eq!(out[0].0.len(), 1, "left to openraft's reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_count_that_does_not_match_is_an_error_to_each_caller() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (core, mut sm) = open(dir.path());
    let (w, mut answers) = waiters(2);
    let reg = register(&core, w);
    let out = sm
        .apply([entry(1, encode_entry(Some(reg.tag()), &[put("a")]))])
        .await
        .expect("apply");
    for a in &mut answers {
        assert!(matches!(a.try_recv(), Ok(Err(KvError::Internal(_)))));
    }
    assert!(out[0].0.is_empty());
}

#[test]
fn the_registry_is_bounded() {
    let replies = Arc::new(super::replies::Replies::default());
    let (w, _a) = waiters(1);
    assert!(replies.register(w).is_err(), "no member bound yet");
    replies.bind(ME);
    let regs: Vec<_> = (0..MAX_WAITING)
        .map(|_| {
            replies
                .register(waiters(1).0)
                .unwrap_or_else(|_| panic!("registered"))
        })
        .collect();
    let (w, _a) = waiters(1);
    let back = replies.register(w).err().expect("full: not registered");
    assert_eq!(back.len(), 1, "the waiters come back to be answered");
    drop(regs);
    assert_eq!(replies.registered(), 0);
}

#[test]
fn tagged_entries_decode_as_batches_and_old_ones_have_no_tag() {
    let tag = Tag {
        proposer: ME,
        reply_to: u64::MAX,
    };
    let requests = vec![put("a"), put("b")];
    let bytes = encode_entry(Some(tag), &requests);
    assert_eq!(tag_of(&bytes), tag);
    let batch = InternalBatch::decode(bytes.as_slice()).expect("an InternalBatch");
    assert_eq!(batch.requests, requests);
    let e = LogEntry::decode(bytes.as_slice()).expect("a LogEntry");
    assert_eq!((e.proposer, e.reply_to), (ME, u64::MAX));
    let old = InternalBatch { requests }.encode_to_vec();
    assert_eq!(tag_of(&old), Tag::default());
    assert_eq!(tag_of(&[]), Tag::default());
    // Untagged, encode_entry writes exactly what InternalBatch did.
    assert_eq!(encode_entry(None, &batch.requests), old);
}
