//! Checks that the generated types put bytes on the wire exactly where etcd
//! does (field numbers, wire types, enum values) and that gRPC paths match.

use kv_proto::etcdserverpb::{
    compare, watch_create_request, watch_request, Compare, DowngradeInfo, HashKvResponse,
    LeaseTimeToLiveResponse, Member, RangeRequest, RangeResponse, RangeStreamResponse,
    ResponseHeader, StatusResponse, WatchCreateRequest, WatchRequest, WatchResponse,
};
use kv_proto::kvpb::{internal_request, InternalRequest};
use kv_proto::{authpb, etcdserverpb, mvccpb, v3electionpb, v3lockpb};
use prost::Message;

fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(m: &M, expected: &[u8]) {
    let bytes = m.encode_to_vec();
    assert_eq!(bytes, expected, "encoding of {m:?}");
    assert_eq!(&M::decode(bytes.as_slice()).unwrap(), m);
}

#[test]
fn range_request() {
    let req = RangeRequest {
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
        limit: 5,
        revision: 7,
        ..Default::default()
    };
    // key=1 (len), range_end=2 (len), limit=3 (varint), revision=4 (varint)
    roundtrip(&req, &[0x0a, 1, b'a', 0x12, 1, b'b', 0x18, 5, 0x20, 7]);

    let req = RangeRequest {
        sort_order: etcdserverpb::range_request::SortOrder::Descend as i32,
        sort_target: etcdserverpb::range_request::SortTarget::Value as i32,
        serializable: true,
        keys_only: true,
        count_only: true,
        min_mod_revision: 1,
        max_mod_revision: 2,
        min_create_revision: 3,
        max_create_revision: 4,
        ..Default::default()
    };
    roundtrip(
        &req,
        &[
            0x28, 2, 0x30, 4, 0x38, 1, 0x40, 1, 0x48, 1, 0x50, 1, 0x58, 2, 0x60, 3, 0x68, 4,
        ],
    );
}

#[test]
fn key_value_and_event() {
    let kv = mvccpb::KeyValue {
        key: b"k".to_vec(),
        create_revision: 2,
        mod_revision: 3,
        version: 4,
        value: b"v".to_vec(),
        lease: 6,
    };
    let kv_bytes = [
        0x0a, 1, b'k', 0x10, 2, 0x18, 3, 0x20, 4, 0x2a, 1, b'v', 0x30, 6,
    ];
    roundtrip(&kv, &kv_bytes);

    let ev = mvccpb::Event {
        r#type: mvccpb::event::EventType::Delete as i32,
        kv: Some(kv.clone()),
        prev_kv: None,
    };
    let mut expected = vec![0x08, 1, 0x12, kv_bytes.len() as u8];
    expected.extend_from_slice(&kv_bytes);
    roundtrip(&ev, &expected);
}

#[test]
fn compare_range_end_is_field_64() {
    let cmp = Compare {
        result: compare::CompareResult::NotEqual as i32,
        target: compare::CompareTarget::Lease as i32,
        key: b"k".to_vec(),
        range_end: b"z".to_vec(),
        target_union: Some(compare::TargetUnion::Lease(9)),
    };
    // result=1, target=2, key=3, lease=8 (oneof), range_end=64 (tag 514 = 0x82 0x04)
    roundtrip(
        &cmp,
        &[
            0x08, 3, 0x10, 4, 0x1a, 1, b'k', 0x40, 9, 0x82, 0x04, 1, b'z',
        ],
    );
}

#[test]
fn watch_messages() {
    let req = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"a".to_vec(),
                start_revision: 3,
                progress_notify: true,
                filters: vec![watch_create_request::FilterType::Nodelete as i32],
                prev_kv: true,
                watch_id: 5,
                fragment: true,
                ..Default::default()
            },
        )),
    };
    let inner = [
        0x0a, 1, b'a', 0x18, 3, 0x20, 1, 0x2a, 1, 1, 0x30, 1, 0x38, 5, 0x40, 1,
    ];
    let mut expected = vec![0x0a, inner.len() as u8];
    expected.extend_from_slice(&inner);
    roundtrip(&req, &expected);

    let progress = WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            etcdserverpb::WatchProgressRequest {},
        )),
    };
    roundtrip(&progress, &[0x1a, 0]);

    let resp = WatchResponse {
        header: Some(ResponseHeader {
            revision: 1,
            ..Default::default()
        }),
        watch_id: 2,
        created: true,
        canceled: true,
        compact_revision: 5,
        cancel_reason: "x".into(),
        fragment: true,
        events: vec![mvccpb::Event::default()],
    };
    roundtrip(
        &resp,
        &[
            0x0a, 2, 0x18, 1, 0x10, 2, 0x18, 1, 0x20, 1, 0x28, 5, 0x32, 1, b'x', 0x38, 1, 0x5a, 0,
        ],
    );
}

#[test]
fn maintenance_and_cluster_fields() {
    let hkv = HashKvResponse {
        header: None,
        hash: 1,
        compact_revision: 2,
        hash_revision: 3,
    };
    roundtrip(&hkv, &[0x10, 1, 0x18, 2, 0x20, 3]);

    let st = StatusResponse {
        raft_applied_index: 7,
        errors: vec!["e".into()],
        db_size_in_use: 9,
        is_learner: true,
        ..Default::default()
    };
    roundtrip(&st, &[0x38, 7, 0x42, 1, b'e', 0x48, 9, 0x50, 1]);

    // etcd 3.6's additions: storageVersion 11, dbSizeQuota 12, downgradeInfo 13.
    let st = StatusResponse {
        storage_version: "v".into(),
        db_size_quota: 5,
        downgrade_info: Some(DowngradeInfo {
            enabled: true,
            target_version: "t".into(),
        }),
        ..Default::default()
    };
    roundtrip(
        &st,
        &[0x5a, 1, b'v', 0x60, 5, 0x6a, 5, 0x08, 1, 0x12, 1, b't'],
    );

    // etcd 3.7's RangeStreamResponse: range_response = 1.
    let chunk = RangeStreamResponse {
        range_response: Some(RangeResponse {
            count: 2,
            ..Default::default()
        }),
    };
    roundtrip(&chunk, &[0x0a, 2, 0x20, 2]);

    let m = Member {
        id: 1,
        name: "n".into(),
        peer_ur_ls: vec!["p".into()],
        client_ur_ls: vec!["c".into()],
        is_learner: true,
    };
    roundtrip(
        &m,
        &[
            0x08, 1, 0x12, 1, b'n', 0x1a, 1, b'p', 0x22, 1, b'c', 0x28, 1,
        ],
    );

    let ttl = LeaseTimeToLiveResponse {
        header: None,
        id: 1,
        ttl: 2,
        granted_ttl: 3,
        keys: vec![b"k".to_vec()],
    };
    roundtrip(&ttl, &[0x10, 1, 0x18, 2, 0x20, 3, 0x2a, 1, b'k']);

    let snap = etcdserverpb::SnapshotResponse {
        header: None,
        remaining_bytes: 4,
        blob: b"b".to_vec(),
        version: "3.6.0".to_string(),
    };
    roundtrip(
        &snap,
        &[
            0x10, 4, 0x1a, 1, b'b', 0x22, 5, b'3', b'.', b'6', b'.', b'0',
        ],
    );

    let alarm = etcdserverpb::AlarmRequest {
        action: etcdserverpb::alarm_request::AlarmAction::Deactivate as i32,
        member_id: 3,
        alarm: etcdserverpb::AlarmType::Corrupt as i32,
    };
    roundtrip(&alarm, &[0x08, 2, 0x10, 3, 0x18, 2]);
}

#[test]
fn auth_records() {
    let perm = authpb::Permission {
        perm_type: authpb::permission::Type::Readwrite as i32,
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
    };
    roundtrip(&perm, &[0x08, 2, 0x12, 1, b'a', 0x1a, 1, b'b']);

    let add = etcdserverpb::AuthUserAddRequest {
        name: "u".into(),
        password: "p".into(),
        options: Some(authpb::UserAddOptions { no_password: true }),
        hashed_password: "h".into(),
    };
    roundtrip(
        &add,
        &[
            0x0a, 1, b'u', 0x12, 1, b'p', 0x1a, 2, 0x08, 1, 0x22, 1, b'h',
        ],
    );
}

#[test]
fn lock_and_election() {
    let lock = v3lockpb::LockRequest {
        name: b"l".to_vec(),
        lease: 3,
    };
    roundtrip(&lock, &[0x0a, 1, b'l', 0x10, 3]);

    let key = v3electionpb::LeaderKey {
        name: b"e".to_vec(),
        key: b"k".to_vec(),
        rev: 3,
        lease: 4,
    };
    roundtrip(&key, &[0x0a, 1, b'e', 0x12, 1, b'k', 0x18, 3, 0x20, 4]);
}

#[test]
fn internal_request() {
    let req = InternalRequest {
        id: 1,
        request: Some(internal_request::Request::Put(etcdserverpb::PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            lease: 0,
            prev_kv: true,
            ignore_value: false,
            ignore_lease: true,
        })),
    };
    roundtrip(
        &req,
        &[
            0x08, 1, 0x12, 10, 0x0a, 1, b'k', 0x12, 1, b'v', 0x20, 1, 0x30, 1,
        ],
    );

    let alarm = InternalRequest {
        id: 2,
        request: Some(internal_request::Request::Alarm(
            etcdserverpb::AlarmRequest::default(),
        )),
    };
    roundtrip(&alarm, &[0x08, 2, 0x4a, 0]);
}

#[test]
fn service_names() {
    use etcdserverpb::*;
    use tonic::server::NamedService;
    fn name<T: NamedService>() -> &'static str {
        T::NAME
    }
    assert_eq!(name::<kv_server::KvServer<()>>(), "etcdserverpb.KV");
    assert_eq!(
        name::<watch_server::WatchServer<()>>(),
        "etcdserverpb.Watch"
    );
    assert_eq!(
        name::<lease_server::LeaseServer<()>>(),
        "etcdserverpb.Lease"
    );
    assert_eq!(
        name::<cluster_server::ClusterServer<()>>(),
        "etcdserverpb.Cluster"
    );
    assert_eq!(
        name::<maintenance_server::MaintenanceServer<()>>(),
        "etcdserverpb.Maintenance"
    );
    assert_eq!(name::<auth_server::AuthServer<()>>(), "etcdserverpb.Auth");
    assert_eq!(
        name::<v3lockpb::lock_server::LockServer<()>>(),
        "v3lockpb.Lock"
    );
    assert_eq!(
        name::<v3electionpb::election_server::ElectionServer<()>>(),
        "v3electionpb.Election"
    );
}

/// Every RPC path must appear in both the generated client and server code.
#[test]
fn method_paths() {
    let generated = [
        include_str!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs")),
        include_str!(concat!(env!("OUT_DIR"), "/v3lockpb.rs")),
        include_str!(concat!(env!("OUT_DIR"), "/v3electionpb.rs")),
    ]
    .concat();
    let paths = [
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.KV/RangeStream",
        "/etcdserverpb.KV/Put",
        "/etcdserverpb.KV/DeleteRange",
        "/etcdserverpb.KV/Txn",
        "/etcdserverpb.KV/Compact",
        "/etcdserverpb.Watch/Watch",
        "/etcdserverpb.Lease/LeaseGrant",
        "/etcdserverpb.Lease/LeaseRevoke",
        "/etcdserverpb.Lease/LeaseKeepAlive",
        "/etcdserverpb.Lease/LeaseTimeToLive",
        "/etcdserverpb.Lease/LeaseLeases",
        "/etcdserverpb.Cluster/MemberAdd",
        "/etcdserverpb.Cluster/MemberRemove",
        "/etcdserverpb.Cluster/MemberUpdate",
        "/etcdserverpb.Cluster/MemberList",
        "/etcdserverpb.Cluster/MemberPromote",
        "/etcdserverpb.Maintenance/Alarm",
        "/etcdserverpb.Maintenance/Status",
        "/etcdserverpb.Maintenance/Defragment",
        "/etcdserverpb.Maintenance/Hash",
        "/etcdserverpb.Maintenance/HashKV",
        "/etcdserverpb.Maintenance/Snapshot",
        "/etcdserverpb.Maintenance/MoveLeader",
        "/etcdserverpb.Maintenance/Downgrade",
        "/etcdserverpb.Auth/AuthEnable",
        "/etcdserverpb.Auth/AuthDisable",
        "/etcdserverpb.Auth/AuthStatus",
        "/etcdserverpb.Auth/Authenticate",
        "/etcdserverpb.Auth/UserAdd",
        "/etcdserverpb.Auth/UserGet",
        "/etcdserverpb.Auth/UserList",
        "/etcdserverpb.Auth/UserDelete",
        "/etcdserverpb.Auth/UserChangePassword",
        "/etcdserverpb.Auth/UserGrantRole",
        "/etcdserverpb.Auth/UserRevokeRole",
        "/etcdserverpb.Auth/RoleAdd",
        "/etcdserverpb.Auth/RoleGet",
        "/etcdserverpb.Auth/RoleList",
        "/etcdserverpb.Auth/RoleDelete",
        "/etcdserverpb.Auth/RoleGrantPermission",
        "/etcdserverpb.Auth/RoleRevokePermission",
        "/v3lockpb.Lock/Lock",
        "/v3lockpb.Lock/Unlock",
        "/v3electionpb.Election/Campaign",
        "/v3electionpb.Election/Proclaim",
        "/v3electionpb.Election/Leader",
        "/v3electionpb.Election/Observe",
        "/v3electionpb.Election/Resign",
    ];
    for p in paths {
        let quoted = format!("\"{p}\"");
        assert_eq!(
            generated.matches(&quoted).count(),
            2,
            "{p} should appear once in the client and once in the server"
        );
    }
    // No RPC we did not list.
    assert_eq!(
        generated.matches("PathAndQuery::from_static(").count(),
        paths.len()
    );
}
