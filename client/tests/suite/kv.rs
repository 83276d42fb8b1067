//! KV, transactions, maintenance and cluster calls against both servers.

use kv_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse,
};

use crate::{Kind, Server, fast_config, on_both};

on_both!(
    put_get_prefix,
    txn_branches,
    large_response,
    status_and_members,
    dead_endpoint_is_skipped,
);

fn keys(kvs: &[kv_client::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

async fn put_get_prefix(kind: Kind) {
    let server = Server::start(kind).await;
    let c = server.client().await;

    let first = c.put("a/1", "one", None).await.unwrap();
    c.put("a/2", "two", None).await.unwrap();
    c.put("b", "bee", None).await.unwrap();
    let prev = c
        .put("a/1", "uno", PutOptions::new().with_prev_kv())
        .await
        .unwrap();
    assert_eq!(prev.prev_kv().unwrap().value, b"one");
    assert_eq!(prev.revision(), first.revision() + 3);

    let one = c.get("a/1", None).await.unwrap();
    assert_eq!(one.kvs().len(), 1);
    assert_eq!(one.kvs()[0].value, b"uno");
    assert_eq!(one.kvs()[0].version, 2);
    assert_eq!(one.kvs()[0].create_revision, first.revision());

    let dir = c.get("a/", GetOptions::new().with_prefix()).await.unwrap();
    assert_eq!(keys(dir.kvs()), ["a/1", "a/2"]);
    assert_eq!(dir.count(), 2);

    let limited = c
        .get(
            "a/",
            GetOptions::new()
                .with_prefix()
                .with_limit(1)
                .with_sort(SortTarget::Key, SortOrder::Descend),
        )
        .await
        .unwrap();
    assert_eq!(keys(limited.kvs()), ["a/2"]);
    assert!(limited.more());

    let old = c
        .get("a/1", GetOptions::new().with_revision(first.revision()))
        .await
        .unwrap();
    assert_eq!(old.kvs()[0].value, b"one");

    let count = c
        .get("", GetOptions::new().with_from_key().with_count_only())
        .await
        .unwrap();
    assert_eq!(count.count(), 3);
    assert!(count.kvs().is_empty());

    let ser = c
        .get("b", GetOptions::new().with_serializable().with_keys_only())
        .await
        .unwrap();
    assert_eq!(keys(ser.kvs()), ["b"]);
    assert!(ser.kvs()[0].value.is_empty());

    let del = c
        .delete("a/", DeleteOptions::new().with_prefix().with_prev_kv())
        .await
        .unwrap();
    assert_eq!(del.deleted(), 2);
    assert_eq!(keys(del.prev_kvs()), ["a/1", "a/2"]);
    assert!(c.get("a/1", None).await.unwrap().kvs().is_empty());
}

async fn txn_branches(kind: Kind) {
    let server = Server::start(kind).await;
    let c = server.client().await;

    // Create-if-absent: succeeds once, then falls to the else branch.
    let create = || {
        Txn::new()
            .when([Compare::create_revision("lock", CompareOp::Equal, 0)])
            .and_then([TxnOp::put("lock", "me", None)])
            .or_else([TxnOp::get("lock", None)])
    };
    let won = c.txn(create()).await.unwrap();
    assert!(won.succeeded());
    assert!(matches!(won.op_responses()[..], [TxnOpResponse::Put(_)]));
    let lost = c.txn(create()).await.unwrap();
    assert!(!lost.succeeded());
    match &lost.op_responses()[..] {
        [TxnOpResponse::Get(g)] => assert_eq!(g.kvs()[0].value, b"me"),
        other => panic!("unexpected responses {other:?}"),
    }

    // Compare-and-swap on the value, with a nested txn and a delete.
    let cas = Txn::new()
        .when([
            Compare::value("lock", CompareOp::Equal, "me"),
            Compare::version("lock", CompareOp::Greater, 0),
        ])
        .and_then([
            TxnOp::put("lock", "you", None),
            TxnOp::txn(Txn::new().and_then([TxnOp::put("other", "x", None)])),
            TxnOp::delete("nothing", None),
        ]);
    let resp = c.txn(cas).await.unwrap();
    assert!(resp.succeeded());
    assert_eq!(resp.op_responses().len(), 3);
    let both = c
        .txn(Txn::new().and_then([
            TxnOp::get("lock", None),
            TxnOp::get("", GetOptions::new().with_from_key().with_count_only()),
        ]))
        .await
        .unwrap();
    match &both.op_responses()[..] {
        [TxnOpResponse::Get(lock), TxnOpResponse::Get(all)] => {
            assert_eq!(lock.kvs()[0].value, b"you");
            assert_eq!(all.count(), 2);
        }
        other => panic!("unexpected responses {other:?}"),
    }

    // Compares over a prefix.
    let none_old = Txn::new().when([Compare::mod_revision("", CompareOp::Less, 1).with_prefix()]);
    assert!(!c.txn(none_old).await.unwrap().succeeded());
}

/// A Range answer over 4 MiB (gRPC's usual limit) must decode.
async fn large_response(kind: Kind) {
    let server = Server::start(kind).await;
    let c = server.client().await;
    let value = vec![b'x'; 1 << 20]; // below etcd's 1.5 MiB request limit
    for i in 0..5 {
        c.put(format!("big/{i}"), value.clone(), None)
            .await
            .unwrap();
    }
    let all = c
        .get("big/", GetOptions::new().with_prefix())
        .await
        .unwrap();
    assert_eq!(all.kvs().len(), 5);
    assert!(all.kvs().iter().all(|kv| kv.value.len() == 1 << 20));
}

async fn status_and_members(kind: Kind) {
    let server = Server::start(kind).await;
    let c = server.client().await;
    let st = c.status().await.unwrap();
    assert_ne!(st.leader(), 0);
    assert!(!st.version().is_empty());
    let members = c.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    assert_eq!(members.members()[0].name, "n1");
    assert!(c.alarm_list().await.unwrap().is_empty());
}

/// With a dead endpoint next to a live one, every call still succeeds: a
/// failed connection means the request was never sent, so even writes are
/// retried (and the balancer picks again).
async fn dead_endpoint_is_skipped(kind: Kind) {
    let server = Server::start(kind).await;
    let dead = kv_robustness::ports::free_port().expect("a free loopback port");
    let fast = fast_config(server.endpoint());
    let config = kv_client::ClientConfig::new([format!("127.0.0.1:{dead}"), server.endpoint()])
        .with_connect_timeout(fast.connect_timeout())
        .with_request_timeout(fast.request_timeout())
        .with_retry(fast.retry().clone());
    let c = kv_client::Client::connect(config).await.unwrap();
    for i in 0..20 {
        let put = c.put(format!("d/{i}"), "v", None).await.unwrap();
        let got = c.get(format!("d/{i}"), None).await.unwrap();
        assert_eq!(got.kvs()[0].mod_revision, put.revision());
    }
    let all = c
        .get("d/", GetOptions::new().with_prefix().with_count_only())
        .await
        .unwrap();
    assert_eq!(all.count(), 20, "a write was applied twice or lost");
}
