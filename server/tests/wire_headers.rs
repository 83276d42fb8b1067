//! Response headers where etcd sends none, or a zero revision: Defragment
//! and MoveLeader answer without a header; the response that cancels a watch
//! for compaction has a header whose revision is 0. Compared with etcd 3.4
//! and, when built, etcd v3.7.3, through a client generated from our .proto
//! (it shows a missing header as None, where etcd-client hides it).

mod common;

use common::{Kind, Options, Server};
use kv_proto::etcdserverpb::kv_client::KvClient;
use kv_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use kv_proto::etcdserverpb::watch_client::WatchClient;
use kv_proto::etcdserverpb::watch_request::RequestUnion;
use kv_proto::etcdserverpb::{
    CompactionRequest, DefragmentRequest, MoveLeaderRequest, PutRequest, ResponseHeader,
    StatusRequest, WatchCreateRequest, WatchRequest,
};

/// What a header says, without the volatile IDs.
fn shape(h: &Option<ResponseHeader>, base: i64) -> String {
    match h {
        None => "no header".to_string(),
        Some(h) if h.revision == 0 => format!("header rev=0 ids={}", h.member_id != 0),
        Some(h) => format!(
            "header rev=base+{} ids={}",
            h.revision - base,
            h.member_id != 0
        ),
    }
}

async fn run(kind: Kind, opts: Options) -> Vec<String> {
    let srv = Server::start_with(kind, opts).await;
    let ch = common::channel(srv.endpoint()).await;
    let mut kv = KvClient::new(ch.clone());
    let mut m = MaintenanceClient::new(ch.clone());
    let mut t = Vec::new();
    let mut base = 0;
    for i in 0..5 {
        let r = kv
            .put(PutRequest {
                key: b"k".to_vec(),
                value: vec![b'0' + i],
                ..Default::default()
            })
            .await
            .expect("put")
            .into_inner();
        if base == 0 {
            base = r.header.expect("header").revision;
        }
    }
    let r = kv
        .compact(CompactionRequest {
            revision: base + 3,
            physical: true,
        })
        .await
        .expect("compact")
        .into_inner();
    t.push(format!("compact: {}", shape(&r.header, base)));

    let r = m.defragment(DefragmentRequest {}).await.expect("defrag");
    t.push(format!(
        "defragment: {}",
        shape(&r.into_inner().header, base)
    ));

    let me = m
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .header
        .expect("status header")
        .member_id;
    let r = m
        .move_leader(MoveLeaderRequest { target_id: me })
        .await
        .expect("move leader to itself");
    t.push(format!(
        "move leader: {}",
        shape(&r.into_inner().header, base)
    ));

    // A watch from a compacted revision is created, then canceled.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"k".to_vec(),
            start_revision: base + 1,
            ..Default::default()
        })),
    })
    .await
    .expect("send create");
    let mut w = WatchClient::new(ch)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    for _ in 0..2 {
        let r = w.message().await.expect("watch response").expect("open");
        t.push(format!(
            "watch created={} canceled={} compact_revision={}: {}",
            r.created,
            r.canceled,
            match r.compact_revision {
                0 => "0".to_string(),
                c => format!("base+{}", c - base),
            },
            shape(&r.header, base)
        ));
        if r.canceled {
            break;
        }
    }
    drop(tx);
    eprintln!("[{kind}] {}", t.join("\n"));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_where_etcd_sends_none_or_revision_zero() {
    let kvd = run(Kind::Kvd, Options::default()).await;
    assert!(kvd.contains(&"defragment: no header".to_string()));
    assert!(kvd.contains(&"move leader: no header".to_string()));
    common::compare_with_etcds(&kvd, run).await;
}
