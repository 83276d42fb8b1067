//! Txn: compares on every target with every operator, ranges in compares,
//! success/failure branches, nested txns, per-op responses and revision
//! accounting. Run against kvd and etcd with the same steps.

mod common;

use common::*;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};

/// A readable, revision-relative description of a txn response.
fn describe(r: &TxnResponse) -> String {
    let ops: Vec<String> = r.op_responses().iter().map(describe_op).collect();
    format!("succeeded={} [{}]", r.succeeded(), ops.join(", "))
}

fn describe_op(op: &TxnOpResponse) -> String {
    match op {
        TxnOpResponse::Put(p) => match p.prev_key() {
            Some(kv) => format!("put(prev={})", kv_rel(kv, 0)),
            None => "put".to_string(),
        },
        TxnOpResponse::Get(g) => format!(
            "get(count={} more={} kvs={:?})",
            g.count(),
            g.more(),
            g.kvs().iter().map(|kv| kv_rel(kv, 0)).collect::<Vec<_>>()
        ),
        TxnOpResponse::Delete(d) => format!(
            "delete(deleted={} prev={:?})",
            d.deleted(),
            d.prev_kvs()
                .iter()
                .map(|kv| kv_rel(kv, 0))
                .collect::<Vec<_>>()
        ),
        TxnOpResponse::Txn(t) => format!("txn({})", describe(t)),
    }
}

/// The header revisions of the (leaf) op responses, recursively: etcd sets
/// each one to the txn's revision.
fn sub_revisions(r: &TxnResponse) -> Vec<i64> {
    let mut out = Vec::new();
    for op in r.op_responses() {
        let h = match &op {
            TxnOpResponse::Put(p) => p.header().cloned(),
            TxnOpResponse::Get(g) => g.header().cloned(),
            TxnOpResponse::Delete(d) => d.header().cloned(),
            TxnOpResponse::Txn(t) => {
                // etcd 3.4 leaves a nested txn's own header revision 0:
                // only its ops are checked.
                out.extend(sub_revisions(t));
                continue;
            }
        };
        out.push(h.map(|h| h.revision()).unwrap_or(-1));
    }
    out
}

async fn current_rev(c: &mut Client) -> i64 {
    rev(c.get("\0", None).await.unwrap().header())
}

async fn check(c: &mut Client, cmp: Compare) -> bool {
    c.txn(Txn::new().when([cmp])).await.unwrap().succeeded()
}

#[tokio::test]
async fn compares_every_target_and_operator() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        let lease = c
            .lease_grant(
                120,
                Some(etcd_client::LeaseGrantOptions::new().with_id(1000)),
            )
            .await
            .unwrap()
            .id();
        assert_eq!(lease, 1000);
        c.put("other", "x", None).await.unwrap(); // rev 2
        c.put("k", "m", None).await.unwrap(); // rev 3: create
        c.put("other", "y", None).await.unwrap(); // rev 4
        c.put("k", "m", Some(PutOptions::new().with_lease(lease)))
            .await
            .unwrap(); // rev 5: mod, version 2
        let g = c.get("k", None).await.unwrap();
        let kv = &g.kvs()[0];
        assert_eq!(
            (
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease()
            ),
            (3, 5, 2, 1000),
            "[{kind}] fixture"
        );
        let before = current_rev(&mut c).await;

        use CompareOp::{Equal, Greater, Less, NotEqual};
        // (operator, result when target < / == / > the actual value)
        let ops = [
            (Equal, [false, true, false]),
            (Greater, [true, false, false]),
            (Less, [false, false, true]),
            (NotEqual, [true, false, true]),
        ];
        // Numeric targets: (name, actual, constructor)
        type Mk = fn(&'static str, CompareOp, i64) -> Compare;
        let numeric: [(&str, i64, Mk); 4] = [
            ("version", 2, |k, op, v| Compare::version(k, op, v)),
            ("create", 3, |k, op, v| Compare::create_revision(k, op, v)),
            ("mod", 5, |k, op, v| Compare::mod_revision(k, op, v)),
            ("lease", 1000, |k, op, v| Compare::lease(k, op, v)),
        ];
        for (name, actual, mk) in numeric {
            for (op, want) in ops {
                // "target < actual" means the compare's operand is below the
                // key's value, e.g. version(k) > 1 holds.
                let got = [
                    check(&mut c, mk("k", op, actual - 1)).await,
                    check(&mut c, mk("k", op, actual)).await,
                    check(&mut c, mk("k", op, actual + 1)).await,
                ];
                // The compare reads "key_value OP operand".
                let want_kv_op_operand = [want[0], want[1], want[2]];
                assert_eq!(
                    got, want_kv_op_operand,
                    "[{kind}] {name}(k)={actual} {op:?} operand [actual-1, actual, actual+1]"
                );
                t.push(format!("{name} {op:?} {got:?}"));
            }
        }
        // Value compares are bytewise; the key's value is "m".
        for (op, want) in ops {
            let got = [
                check(&mut c, Compare::value("k", op, "l")).await,
                check(&mut c, Compare::value("k", op, "m")).await,
                check(&mut c, Compare::value("k", op, "ma")).await,
            ];
            assert_eq!(got, want, "[{kind}] value(k)=\"m\" {op:?} [l, m, ma]");
            t.push(format!("value {op:?} {got:?}"));
        }

        // A missing key: version/create/mod/lease compare as 0 ...
        assert!(
            check(&mut c, Compare::version("nope", Equal, 0)).await,
            "[{kind}] missing version == 0"
        );
        assert!(
            check(&mut c, Compare::create_revision("nope", Equal, 0)).await,
            "[{kind}] missing create == 0"
        );
        assert!(
            check(&mut c, Compare::mod_revision("nope", Less, 1)).await,
            "[{kind}] missing mod < 1"
        );
        assert!(
            check(&mut c, Compare::lease("nope", Equal, 0)).await,
            "[{kind}] missing lease == 0"
        );
        assert!(
            !check(&mut c, Compare::version("nope", Greater, 0)).await,
            "[{kind}] missing version > 0"
        );
        // ... but a value compare on a missing key always fails.
        for op in [Equal, Greater, Less, NotEqual] {
            assert!(
                !check(&mut c, Compare::value("nope", op, "")).await,
                "[{kind}] value compare {op:?} on a missing key must fail"
            );
            assert!(
                !check(&mut c, Compare::value("nope", op, "x")).await,
                "[{kind}] value compare {op:?} \"x\" on a missing key must fail"
            );
        }
        // Several compares are ANDed.
        assert!(
            check2(
                &mut c,
                Compare::version("k", Equal, 2),
                Compare::value("k", Equal, "m")
            )
            .await,
            "[{kind}] AND of two true compares"
        );
        assert!(
            !check2(
                &mut c,
                Compare::version("k", Equal, 2),
                Compare::value("k", Equal, "x")
            )
            .await,
            "[{kind}] AND with one false compare"
        );
        // No compares at all: success.
        assert!(
            c.txn(Txn::new()).await.unwrap().succeeded(),
            "[{kind}] empty txn"
        );

        // None of these read-only txns changed the revision.
        assert_eq!(
            current_rev(&mut c).await,
            before,
            "[{kind}] read-only txns keep the revision"
        );
        t
    })
    .await;
}

async fn check2(c: &mut Client, a: Compare, b: Compare) -> bool {
    c.txn(Txn::new().when([a, b])).await.unwrap().succeeded()
}

#[tokio::test]
async fn compare_with_range_end() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        use CompareOp::{Equal, Greater, Less, NotEqual};
        c.put("r/1", "a", None).await.unwrap();
        c.put("r/2", "b", None).await.unwrap();
        c.put("r/2", "b", None).await.unwrap(); // r/2 version 2
        c.put("s", "c", None).await.unwrap();

        // Every key in the range must satisfy the compare.
        let cases: Vec<(&str, Compare, bool)> = vec![
            (
                "version(r/*) > 0",
                Compare::version("r/", Greater, 0).with_prefix(),
                true,
            ),
            (
                "version(r/*) == 1",
                Compare::version("r/", Equal, 1).with_prefix(),
                false,
            ),
            (
                "version(r/*) < 3",
                Compare::version("r/", Less, 3).with_prefix(),
                true,
            ),
            (
                "version(r/*) != 2",
                Compare::version("r/", NotEqual, 2).with_prefix(),
                false,
            ),
            (
                "value(r/*) < c",
                Compare::value("r/", Less, "c").with_prefix(),
                true,
            ),
            (
                "value(r/*) == a",
                Compare::value("r/", Equal, "a").with_prefix(),
                false,
            ),
            (
                "create(r/*) > 1",
                Compare::create_revision("r/", Greater, 1).with_prefix(),
                true,
            ),
            (
                "mod(r/*) < 4",
                Compare::mod_revision("r/", Less, 4).with_prefix(),
                false,
            ),
            // [r/1, r/2) holds only r/1
            (
                "version([r/1,r/2)) == 1",
                Compare::version("r/1", Equal, 1).with_range("r/2"),
                true,
            ),
            (
                "value([r/1,r/2)) == a",
                Compare::value("r/1", Equal, "a").with_range("r/2"),
                true,
            ),
            // [r/1, t) includes s too
            (
                "value([r/1,t)) < c",
                Compare::value("r/1", Less, "c").with_range("t"),
                false,
            ),
            (
                "value([r/1,t)) < d",
                Compare::value("r/1", Less, "d").with_range("t"),
                true,
            ),
            // from-key range "\0"
            (
                "version(>= r/2) == 2",
                Compare::version("r/2", Equal, 2).with_range("\0"),
                false,
            ),
            (
                "version(>= r/2) > 0",
                Compare::version("r/2", Greater, 0).with_range("\0"),
                true,
            ),
        ];
        for (name, cmp, want) in cases {
            let got = check(&mut c, cmp).await;
            assert_eq!(got, want, "[{kind}] {name}");
            t.push(format!("{name}: {got}"));
        }
        t
    })
    .await;
}

#[tokio::test]
async fn branches_and_op_responses() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        use CompareOp::Equal;
        c.put("a", "1", None).await.unwrap(); // 2
        c.put("b", "2", None).await.unwrap(); // 3
        c.put("c", "3", None).await.unwrap(); // 4

        let ops_then = || {
            vec![
                TxnOp::put("a", "10", Some(PutOptions::new().with_prev_key())),
                TxnOp::get("a", None),
                TxnOp::get("", Some(GetOptions::new().with_all_keys().with_count_only())),
                TxnOp::delete("b", Some(DeleteOptions::new().with_prev_key())),
                TxnOp::get("b", None),
                TxnOp::put("d", "4", None),
            ]
        };
        let ops_else = || {
            vec![
                TxnOp::get("a", Some(GetOptions::new().with_prefix().with_keys_only())),
                TxnOp::put("e", "5", Some(PutOptions::new().with_prev_key())),
            ]
        };

        // Failure branch.
        let r = c
            .txn(
                Txn::new()
                    .when([Compare::value("a", Equal, "nope")])
                    .and_then(ops_then())
                    .or_else(ops_else()),
            )
            .await
            .unwrap();
        assert_eq!(rev(r.header()), 5, "[{kind}] one revision for the failure branch");
        let d = describe(&r);
        assert_eq!(
            d,
            "succeeded=false [get(count=1 more=false kvs=[\"a= c2 m2 v1 lease=false\"]), put]",
            "[{kind}] failure branch responses"
        );
        t.push(d);

        // Success branch: the reads see the txn's own earlier writes.
        let r = c
            .txn(
                Txn::new()
                    .when([Compare::value("a", Equal, "1"), Compare::version("e", Equal, 1)])
                    .and_then(ops_then())
                    .or_else(ops_else()),
            )
            .await
            .unwrap();
        assert_eq!(rev(r.header()), 6, "[{kind}] one revision for the success branch");
        assert_eq!(sub_revisions(&r), [6; 6], "[{kind}] op response header revisions");
        let d = describe(&r);
        assert_eq!(
            d,
            "succeeded=true [put(prev=a=1 c2 m2 v1 lease=false), \
             get(count=1 more=false kvs=[\"a=10 c2 m6 v2 lease=false\"]), \
             get(count=4 more=false kvs=[]), \
             delete(deleted=1 prev=[\"b=2 c3 m3 v1 lease=false\"]), \
             get(count=0 more=false kvs=[]), put]",
            "[{kind}] success branch responses"
        );
        t.push(d);
        // Every write of the txn has the same mod revision.
        let g = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
        let all: Vec<String> = g.kvs().iter().map(|kv| kv_rel(kv, 0)).collect();
        assert_eq!(
            all,
            [
                "a=10 c2 m6 v2 lease=false",
                "c=3 c4 m4 v1 lease=false",
                "d=4 c6 m6 v1 lease=false",
                "e=5 c5 m5 v1 lease=false"
            ],
            "[{kind}] store after txn"
        );
        // The deleted key is visible at the revision before the txn.
        let g = c.get("b", Some(GetOptions::new().with_revision(5))).await.unwrap();
        assert_eq!(kv_pairs(g.kvs()), [("b".into(), "2".into())]);

        // Several writes to the same key are not allowed, but a put then a
        // delete of different keys plus reads is one revision.
        let r = c
            .txn(Txn::new().and_then([
                TxnOp::put("x1", "1", None),
                TxnOp::put("x2", "2", None),
                TxnOp::delete("c", None),
                TxnOp::get("x", Some(GetOptions::new().with_prefix())),
            ]))
            .await
            .unwrap();
        assert_eq!(rev(r.header()), 7, "[{kind}] multi-write txn is one revision");
        let d = describe(&r);
        assert_eq!(
            d,
            "succeeded=true [put, put, delete(deleted=1 prev=[]), \
             get(count=2 more=false kvs=[\"x1=1 c7 m7 v1 lease=false\", \"x2=2 c7 m7 v1 lease=false\"])]",
            "[{kind}] multi-write txn"
        );
        t.push(d);

        // Read-only txn: no revision change.
        let r = c
            .txn(Txn::new().and_then([TxnOp::get("x1", None), TxnOp::get("zz", None)]))
            .await
            .unwrap();
        assert_eq!(rev(r.header()), 7, "[{kind}] read-only txn");
        assert_eq!(sub_revisions(&r), [7, 7], "[{kind}] read-only op response header revisions");
        // A txn whose only write deletes a missing key changes nothing.
        let r = c
            .txn(Txn::new().and_then([TxnOp::delete("missing", None)]))
            .await
            .unwrap();
        assert_eq!(rev(r.header()), 7, "[{kind}] no-op delete txn");
        assert_eq!(describe(&r), "succeeded=true [delete(deleted=0 prev=[])]");
        // Empty failure branch taken: no revision change.
        let r = c
            .txn(
                Txn::new()
                    .when([Compare::version("x1", Equal, 5)])
                    .and_then([TxnOp::put("x1", "nope", None)]),
            )
            .await
            .unwrap();
        assert_eq!(
            (r.succeeded(), rev(r.header()), r.op_responses().len()),
            (false, 7, 0),
            "[{kind}] empty failure branch"
        );
        assert_eq!(current_rev(&mut c).await, 7);
        t
    })
    .await;
}

#[tokio::test]
async fn nested_txns() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        use CompareOp::{Equal, Greater};
        c.put("n", "1", None).await.unwrap(); // 2

        let inner_ok = Txn::new()
            .when([Compare::value("n", Equal, "1")])
            .and_then([TxnOp::put("in1", "a", None), TxnOp::get("n", None)])
            .or_else([TxnOp::put("in1", "b", None)]);
        let inner_fail = Txn::new()
            .when([Compare::version("n", Greater, 10)])
            .and_then([TxnOp::put("in2", "a", None)])
            .or_else([
                TxnOp::put("in2", "b", None),
                TxnOp::txn(Txn::new().and_then([TxnOp::put("deep", "d", None)])),
            ]);
        let r = c
            .txn(
                Txn::new()
                    .when([Compare::create_revision("n", Equal, 2)])
                    .and_then([
                        TxnOp::put("out", "o", None),
                        TxnOp::txn(inner_ok),
                        TxnOp::txn(inner_fail),
                        TxnOp::get("", Some(GetOptions::new().with_all_keys().with_keys_only())),
                    ]),
            )
            .await
            .unwrap();
        assert_eq!(rev(r.header()), 3, "[{kind}] nested txn is one revision");
        assert_eq!(sub_revisions(&r), [3; 6], "[{kind}] nested op response header revisions");
        let d = describe(&r);
        assert_eq!(
            d,
            "succeeded=true [put, \
             txn(succeeded=true [put, get(count=1 more=false kvs=[\"n=1 c2 m2 v1 lease=false\"])]), \
             txn(succeeded=false [put, txn(succeeded=true [put])]), \
             get(count=5 more=false kvs=[\"deep= c3 m3 v1 lease=false\", \"in1= c3 m3 v1 lease=false\", \
             \"in2= c3 m3 v1 lease=false\", \"n= c2 m2 v1 lease=false\", \"out= c3 m3 v1 lease=false\"])]",
            "[{kind}] nested responses"
        );
        t.push(d);
        let g = c.get("in", Some(GetOptions::new().with_prefix())).await.unwrap();
        assert_eq!(
            kv_pairs(g.kvs()),
            [("in1".into(), "a".into()), ("in2".into(), "b".into())]
        );
        // Nested read-only txn: no revision change.
        let r = c
            .txn(Txn::new().and_then([TxnOp::txn(
                Txn::new().and_then([TxnOp::get("out", None)]),
            )]))
            .await
            .unwrap();
        assert_eq!(rev(r.header()), 3, "[{kind}] nested read-only txn");
        t.push(describe(&r));
        t
    })
    .await;
}

#[tokio::test]
async fn txn_put_delete_with_leases_and_ignore_flags() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        use CompareOp::{Equal, NotEqual};
        let lease = c
            .lease_grant(120, Some(etcd_client::LeaseGrantOptions::new().with_id(77)))
            .await
            .unwrap()
            .id();
        let r = c
            .txn(Txn::new().and_then([
                TxnOp::put("l1", "v", Some(PutOptions::new().with_lease(lease))),
                TxnOp::put("l2", "v", None),
            ]))
            .await
            .unwrap();
        assert!(r.succeeded());
        assert!(
            check(&mut c, Compare::lease("l1", Equal, 77)).await,
            "[{kind}] lease(l1) == 77"
        );
        assert!(
            check(&mut c, Compare::lease("l2", Equal, 0)).await,
            "[{kind}] lease(l2) == 0"
        );
        assert!(
            !check(&mut c, Compare::lease("l", NotEqual, 0).with_prefix()).await,
            "[{kind}] lease(l*) != 0 fails because of l2"
        );
        // ignore_value/ignore_lease inside a txn
        let r = c
            .txn(
                Txn::new().and_then([TxnOp::put(
                    "l1",
                    "",
                    Some(
                        PutOptions::new()
                            .with_ignore_value()
                            .with_ignore_lease()
                            .with_prev_key(),
                    ),
                )]),
            )
            .await
            .unwrap();
        let d = describe(&r);
        assert_eq!(
            d, "succeeded=true [put(prev=l1=v c2 m2 v1 lease=true)]",
            "[{kind}]"
        );
        t.push(d);
        let g = c.get("l1", None).await.unwrap();
        assert_eq!(
            (g.kvs()[0].value(), g.kvs()[0].lease(), g.kvs()[0].version()),
            (&b"v"[..], 77, 2),
            "[{kind}] ignore flags in txn"
        );
        t
    })
    .await;
}
