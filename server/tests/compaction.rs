//! Compaction: reads below the compacted revision and above the current one
//! fail with etcd's exact errors; compaction keeps the current state.

mod common;

use common::*;
use etcd_client::{CompactionOptions, GetOptions, Txn, TxnOp};
use tonic::Code;

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";

#[tokio::test]
async fn compacted_and_future_revisions() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        // revs 2..=6: k=1..5 ; rev 7: put gone ; rev 8: delete gone
        for i in 1..=5 {
            c.put("k", i.to_string(), None).await.unwrap();
        }
        c.put("gone", "x", None).await.unwrap();
        let d = c.delete("gone", None).await.unwrap();
        assert_eq!(rev(d.header()), 8, "[{kind}] setup revisions");

        // Reads at old revisions work before compaction.
        let g = c
            .get("k", Some(GetOptions::new().with_revision(2)))
            .await
            .unwrap();
        assert_eq!(kv_pairs(g.kvs()), [("k".into(), "1".into())]);

        let r = c.compact(4, None).await.unwrap();
        assert_eq!(
            rev(r.header()),
            8,
            "[{kind}] compaction does not add a revision"
        );

        // Below the compacted revision: OutOfRange, compacted.
        for old in [1, 2, 3] {
            t.push(expect_grpc_err(
                kind,
                c.get("k", Some(GetOptions::new().with_revision(old))).await,
                Code::OutOfRange,
                COMPACTED,
            ));
        }
        // At the compacted revision: still readable.
        let g = c
            .get("k", Some(GetOptions::new().with_revision(4)))
            .await
            .unwrap();
        assert_eq!(
            kv_pairs(g.kvs()),
            [("k".into(), "3".into())],
            "[{kind}] read at the compacted revision"
        );
        let kv = &g.kvs()[0];
        assert_eq!(
            (kv.create_revision(), kv.mod_revision(), kv.version()),
            (2, 4, 3)
        );
        // Above it: fine, including the delete's tombstone.
        let g = c
            .get("gone", Some(GetOptions::new().with_revision(7)))
            .await
            .unwrap();
        assert_eq!(g.count(), 1, "[{kind}] gone at 7");
        let g = c
            .get("gone", Some(GetOptions::new().with_revision(8)))
            .await
            .unwrap();
        assert_eq!(g.count(), 0, "[{kind}] gone at 8");
        // The current state is intact, and versions are unchanged.
        let g = c.get("k", None).await.unwrap();
        let kv = &g.kvs()[0];
        assert_eq!(
            (
                kv.value(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version()
            ),
            (&b"5"[..], 2, 6, 5),
            "[{kind}] current state after compaction"
        );

        // A future revision: OutOfRange, future.
        t.push(expect_grpc_err(
            kind,
            c.get("k", Some(GetOptions::new().with_revision(9))).await,
            Code::OutOfRange,
            FUTURE,
        ));
        t.push(expect_grpc_err(
            kind,
            c.get(
                "k",
                Some(GetOptions::new().with_revision(1000).with_prefix()),
            )
            .await,
            Code::OutOfRange,
            FUTURE,
        ));
        // The same inside a txn.
        t.push(expect_grpc_err(
            kind,
            c.txn(Txn::new().and_then([TxnOp::get("k", Some(GetOptions::new().with_revision(2)))]))
                .await,
            Code::OutOfRange,
            COMPACTED,
        ));
        t.push(expect_grpc_err(
            kind,
            c.txn(
                Txn::new().and_then([TxnOp::get("k", Some(GetOptions::new().with_revision(50)))]),
            )
            .await,
            Code::OutOfRange,
            FUTURE,
        ));

        // Compacting at a future revision, at the same revision, and below.
        t.push(expect_grpc_err(
            kind,
            c.compact(9, None).await,
            Code::OutOfRange,
            FUTURE,
        ));
        t.push(expect_grpc_err(
            kind,
            c.compact(100, None).await,
            Code::OutOfRange,
            FUTURE,
        ));
        t.push(expect_grpc_err(
            kind,
            c.compact(4, None).await,
            Code::OutOfRange,
            COMPACTED,
        ));
        t.push(expect_grpc_err(
            kind,
            c.compact(3, None).await,
            Code::OutOfRange,
            COMPACTED,
        ));

        // Physical compaction up to the current revision.
        let r = c
            .compact(8, Some(CompactionOptions::new().with_physical()))
            .await
            .unwrap();
        assert_eq!(rev(r.header()), 8);
        t.push(expect_grpc_err(
            kind,
            c.get("k", Some(GetOptions::new().with_revision(7))).await,
            Code::OutOfRange,
            COMPACTED,
        ));
        let g = c
            .get("", Some(GetOptions::new().with_all_keys().with_revision(8)))
            .await
            .unwrap();
        assert_eq!(
            kv_pairs(g.kvs()),
            [("k".into(), "5".into())],
            "[{kind}] state at 8"
        );
        // Writes continue after the compacted revision.
        let p = c.put("k", "6", None).await.unwrap();
        assert_eq!(rev(p.header()), 9);
        let g = c.get("k", None).await.unwrap();
        assert_eq!(g.kvs()[0].version(), 6, "[{kind}] version after compaction");
        t
    })
    .await;
}

#[tokio::test]
async fn compaction_survives_restart() {
    each_kind(|kind| async move {
        let mut srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        for i in 1..=4 {
            c.put("k", i.to_string(), None).await.unwrap();
        }
        c.compact(4, None).await.unwrap();
        drop(c);
        srv.restart().await;
        let mut c = srv.client().await;
        t.push(expect_grpc_err(
            kind,
            c.get("k", Some(GetOptions::new().with_revision(3))).await,
            Code::OutOfRange,
            COMPACTED,
        ));
        let g = c
            .get("k", Some(GetOptions::new().with_revision(4)))
            .await
            .unwrap();
        assert_eq!(
            kv_pairs(g.kvs()),
            [("k".into(), "3".into())],
            "[{kind}] at 4 after restart"
        );
        let g = c.get("k", None).await.unwrap();
        assert_eq!(
            (g.kvs()[0].value(), g.kvs()[0].version(), rev(g.header())),
            (&b"4"[..], 4, 5),
            "[{kind}] current after restart"
        );
        t
    })
    .await;
}
