//! The revision in each op's header inside a write txn, as etcd reports it:
//! a range reads at the revision the txn has reached when it runs (the
//! txn's start before any write, its new revision after one), a put at the
//! new revision, a delete at the new one only if the txn has changed
//! something by then, a nested txn's own header at 0. kvd used to stamp
//! every op with the txn's final revision. Compared with etcd 3.4 and, when
//! built, etcd v3.7.3.

mod common;

use common::{Kind, Options, Server};
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse, TxnResponse};

fn op_revs(r: &TxnResponse, base: i64) -> String {
    let revs: Vec<String> = r
        .op_responses()
        .iter()
        .map(|op| match op {
            TxnOpResponse::Put(p) => format!("put@{}", common::rev(p.header()) - base),
            TxnOpResponse::Get(g) => format!("get@{}", common::rev(g.header()) - base),
            TxnOpResponse::Delete(d) => format!("del@{}", common::rev(d.header()) - base),
            TxnOpResponse::Txn(t) => format!(
                "txn@{}({})",
                common::rev(t.header()).max(base) - base,
                op_revs(t, base)
            ),
        })
        .collect();
    revs.join(" ")
}

async fn run(kind: Kind, opts: Options) -> Vec<String> {
    let srv = Server::start_with(kind, opts).await;
    let mut c = srv.client().await;
    common::put(&mut c, "c", "1").await;
    let base = common::put(&mut c, "a", "1").await;
    let mut t = Vec::new();
    let txns = [
        (
            "get, put, get, delete missing, delete",
            vec![
                TxnOp::get("a", None),
                TxnOp::put("a", "2", None),
                TxnOp::get("a", None),
                TxnOp::delete("missing", None),
                TxnOp::delete("c", None),
            ],
        ),
        (
            "delete missing first, then get",
            vec![TxnOp::delete("missing", None), TxnOp::get("a", None)],
        ),
        (
            "nested: get, then a txn that puts, then get",
            vec![
                TxnOp::get("b", None),
                TxnOp::txn(
                    Txn::new().and_then([TxnOp::get("b", None), TxnOp::put("b", "1", None)]),
                ),
                TxnOp::get("b", None),
            ],
        ),
    ];
    for (name, ops) in txns {
        let head = c
            .get("a", None)
            .await
            .expect("get")
            .header()
            .map_or(0, |h| h.revision());
        let resp = c.txn(Txn::new().and_then(ops)).await.expect("txn");
        t.push(format!(
            "{name}: txn@{} [{}]",
            common::rev(resp.header()) - head,
            op_revs(&resp, head)
        ));
    }
    // A write txn whose taken branch only reads: nothing changes.
    let head = c
        .get("a", None)
        .await
        .expect("get")
        .header()
        .map_or(0, |h| h.revision());
    let resp = c
        .txn(
            Txn::new()
                .when([Compare::version("zzz", CompareOp::Greater, 5)])
                .and_then([TxnOp::put("zzz", "x", None)])
                .or_else([TxnOp::get("a", None), TxnOp::delete("missing", None)]),
        )
        .await
        .expect("txn");
    t.push(format!(
        "failure branch reads only: txn@{} [{}]",
        common::rev(resp.header()) - head,
        op_revs(&resp, head)
    ));
    assert!(base > 0);
    eprintln!("[{kind}] {}", t.join("\n"));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_headers_carry_the_revision_each_op_saw() {
    let kvd = run(Kind::Kvd, Options::default()).await;
    assert_eq!(
        kvd[0],
        "get, put, get, delete missing, delete: txn@1 [get@0 put@1 get@1 del@1 del@1]"
    );
    common::compare_with_etcds(&kvd, run).await;
}
