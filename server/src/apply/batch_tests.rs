//! One applied batch touching every table the applier writes: LEASES,
//! ALARMS and MEMBERS are opened lazily (at most once per batch) and META
//! is shared with the store's commit, so each must take its writes, be
//! usable again later in the same batch, and come back after a restart.

use std::sync::Arc;
use std::time::Duration;

use kv_proto::etcdserverpb::alarm_request::AlarmAction;
use kv_proto::etcdserverpb::{
    AlarmRequest, AlarmType, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
};
use kv_proto::kvpb::{internal_request::Request, InternalBatch, InternalRequest, MemberAttributes};
use openraft::{CommittedLeaderId, EntryPayload};
use prost::Message;

use super::*;
use crate::header::HeaderSource;
use crate::mvcc::ReadView;
use crate::raft::types::RaftRequest;

fn open(dir: &std::path::Path) -> (Arc<Core>, StateMachine, Recovered) {
    let (store, rec) = Store::open(&dir.join("db")).expect("open store");
    let core = Core::new(
        Arc::new(store),
        Arc::new(HeaderSource::new(1, 1)),
        Duration::from_secs(1),
    );
    core.restore(&rec);
    let sm = StateMachine::open(core.clone(), &rec, dir.join("snap")).expect("state machine");
    (core, sm, rec)
}

fn entry(index: u64, requests: Vec<Request>) -> Entry {
    let batch = InternalBatch {
        requests: requests
            .into_iter()
            .map(|r| InternalRequest {
                id: 0,
                request: Some(r),
            })
            .collect(),
    };
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(RaftRequest {
            bytes: batch.encode_to_vec(),
        }),
    }
}

fn grant(id: i64) -> Request {
    Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id })
}

fn put(key: &str, lease: i64) -> Request {
    Request::Put(PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        lease,
        ..Default::default()
    })
}

fn member(id: u64) -> Request {
    Request::MemberAttributes(MemberAttributes {
        id,
        name: format!("m{id}"),
        client_urls: vec![],
    })
}

fn alarm(action: AlarmAction, member_id: u64) -> Request {
    Request::Alarm(AlarmRequest {
        action: action as i32,
        member_id,
        alarm: AlarmType::Nospace as i32,
    })
}

/// Every request answered without an error.
fn all_ok(out: &[RaftResponse]) {
    for resp in out {
        for r in &resp.0 {
            assert!(r.is_ok(), "request failed: {r:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_writes_every_table_once_opened_and_a_restart_reads_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (core, mut sm, _) = open(dir.path());
    // Two entries in one apply (one transaction): each lazily opened table
    // is used again after its first use, in the same entry and the next.
    let out = sm
        .apply([
            entry(1, vec![grant(7), put("a", 7), member(1), grant(8)]),
            entry(
                2,
                vec![
                    alarm(AlarmAction::Activate, 1),
                    member(2),
                    Request::LeaseRevoke(LeaseRevokeRequest { id: 7 }),
                    alarm(AlarmAction::Activate, 2),
                    alarm(AlarmAction::Deactivate, 1),
                    put("b", 8),
                ],
            ),
        ])
        .await
        .expect("apply");
    all_ok(&out);
    assert_eq!(*core.alarms.lock(), [(2, AlarmType::Nospace as i32)].into());
    // A batch of puts alone (no other table opened) still moves the applied
    // index and the revision.
    all_ok(
        &sm.apply([entry(3, vec![put("c", 0)])])
            .await
            .expect("apply"),
    );
    let rev = core.store.current_rev();
    // put a, revoke (deletes a), put b, put c: four revisions after 1.
    assert_eq!(rev, 5);
    drop(sm);
    drop(core);

    let (core, sm, rec) = open(dir.path());
    assert_eq!(rec.leases, vec![(8, 60)]);
    assert_eq!(rec.alarms, vec![(2, AlarmType::Nospace as i32)]);
    let members: Vec<u64> = core
        .store
        .member_attributes()
        .expect("members")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(members, vec![1, 2]);
    assert_eq!(core.store.current_rev(), rev);
    assert_eq!(sm.applied.map(|l| l.index), Some(3));
    let snap = core.store.snapshot();
    let live: Vec<&[u8]> = [&b"a"[..], b"b", b"c"]
        .into_iter()
        .filter(|k| snap.index().get(k).is_some_and(|h| h.is_live()))
        .collect();
    assert_eq!(live, vec![&b"b"[..], b"c"]);
    drop(snap);
    // The lease still holds its key after the restart.
    assert!(core.lessor.lock().get(8).is_some_and(|l| l.keys.len() == 1));
}

/// A request refused after its batch opened a table lazily fails alone:
/// the writes before and after it in the same batch are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_leaves_the_rest_of_the_batch_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (core, mut sm, _) = open(dir.path());
    // The second grant of lease 7 is refused (exists); the first stays.
    let out = sm
        .apply([entry(1, vec![grant(7), grant(7), member(3)])])
        .await
        .expect("apply");
    let answers = &out[0].0;
    assert!(answers[0].is_ok() && answers[1].is_err() && answers[2].is_ok());
    drop(sm);
    drop(core);
    let (core, _sm, rec) = open(dir.path());
    assert_eq!(rec.leases, vec![(7, 60)]);
    assert_eq!(core.store.member_attributes().expect("members").len(), 1);
}
