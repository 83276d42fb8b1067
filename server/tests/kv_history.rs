//! KV service: sort order and target, revision filters and historical reads,
//! run against kvd and etcd with the same steps and compared.

mod common;

use common::*;
use etcd_client::{GetOptions, SortOrder, SortTarget};

#[tokio::test]
async fn sort_order_and_target() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        // Distinct key order, create order, mod order, version and value
        // order so that every sort target gives a distinct ordering.
        // create order: s3, s1, s2 ; mod order: s1, s3(v2), s2(v3)...
        c.put("s3", "m", None).await.unwrap(); // s3 v1
        c.put("s1", "z", None).await.unwrap(); // s1 v1
        c.put("s2", "a", None).await.unwrap(); // s2 v1
        c.put("s2", "a", None).await.unwrap(); // s2 v2
        c.put("s3", "m", None).await.unwrap(); // s3 v2
        c.put("s3", "m", None).await.unwrap(); // s3 v3
        c.put("s1", "z", None).await.unwrap(); // s1 v2, last modified
                                               // key:      s1 < s2 < s3
                                               // create:   s3 < s1 < s2
                                               // mod:      s2 < s3 < s1
                                               // version:  s1=2, s2=2, s3=3 -> make them distinct:
        c.put("s2", "a", None).await.unwrap(); // s2 v3 ; mod: s3 < s1 < s2
        c.put("s3", "m", None).await.unwrap(); // s3 v4 ; mod: s1 < s2 < s3
                                               // version: s1=2 < s2=3 < s3=4 ; value: s2(a) < s3(m) < s1(z)
                                               // mod: s1 < s2 < s3 ; create: s3 < s1 < s2

        let cc = c.clone();
        let sorted = move |target: SortTarget, order: SortOrder, limit: i64| {
            let mut c = cc.clone();
            async move {
                let r = c
                    .get(
                        "s",
                        Some(
                            GetOptions::new()
                                .with_prefix()
                                .with_sort(target, order)
                                .with_limit(limit),
                        ),
                    )
                    .await
                    .unwrap();
                (keys(r.kvs()), r.count(), r.more())
            }
        };
        use SortOrder::{Ascend, Descend};
        use SortTarget::{Create, Key, Mod, Value, Version};
        let cases: Vec<(SortTarget, SortOrder, [&str; 3])> = vec![
            (Key, Ascend, ["s1", "s2", "s3"]),
            (Key, Descend, ["s3", "s2", "s1"]),
            (Key, SortOrder::None, ["s1", "s2", "s3"]),
            (Create, Ascend, ["s3", "s1", "s2"]),
            (Create, Descend, ["s2", "s1", "s3"]),
            (Mod, Ascend, ["s1", "s2", "s3"]),
            (Mod, Descend, ["s3", "s2", "s1"]),
            (Version, Ascend, ["s1", "s2", "s3"]),
            (Version, Descend, ["s3", "s2", "s1"]),
            (Value, Ascend, ["s2", "s3", "s1"]),
            (Value, Descend, ["s1", "s3", "s2"]),
        ];
        for (target, order, want) in cases {
            let got = sorted(target, order, 0).await;
            assert_eq!(
                got,
                (want.iter().map(|s| s.to_string()).collect(), 3, false),
                "[{kind}] sort {target:?} {order:?}"
            );
            // Sorting applies before the limit.
            let got = sorted(target, order, 2).await;
            assert_eq!(
                got,
                (want[..2].iter().map(|s| s.to_string()).collect(), 3, true),
                "[{kind}] sort {target:?} {order:?} limit 2"
            );
            t.push(format!("{target:?} {order:?} {:?}", got.0));
        }
        // Sort order NONE with a non-key target sorts ascending (etcd).
        let got = sorted(Value, SortOrder::None, 0).await;
        assert_eq!(got.0, ["s2", "s3", "s1"], "[{kind}] sort Value None");
        let got = sorted(Create, SortOrder::None, 2).await;
        assert_eq!(
            got,
            (vec!["s3".to_string(), "s1".to_string()], 3, true),
            "[{kind}] sort Create None limit 2"
        );
        t
    })
    .await;
}

#[tokio::test]
async fn revision_filters_and_history() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        // rev 2: f1 ; rev 3: f2 ; rev 4: f3 ; rev 5: f1 again ; rev 6: f2 again
        let r_f1 = put(&mut c, "f1", "a").await;
        let r_f2 = put(&mut c, "f2", "a").await;
        let r_f3 = put(&mut c, "f3", "a").await;
        let r_f1b = put(&mut c, "f1", "b").await;
        let r_f2b = put(&mut c, "f2", "b").await;
        assert_eq!(
            [r_f1, r_f2, r_f3, r_f1b, r_f2b],
            [2, 3, 4, 5, 6],
            "[{kind}] revisions"
        );

        let cc = c.clone();
        let q = move |opts: GetOptions| {
            let mut c = cc.clone();
            async move {
                let r = c.get("f", Some(opts.with_prefix())).await.unwrap();
                (keys(r.kvs()), r.count())
            }
        };
        // count reflects the whole range, not the filters.
        assert_eq!(
            q(GetOptions::new().with_min_mod_revision(5)).await,
            (vec!["f1".to_string(), "f2".to_string()], 3),
            "[{kind}] min_mod 5"
        );
        assert_eq!(
            q(GetOptions::new().with_max_mod_revision(4)).await.0,
            ["f3"],
            "[{kind}] max_mod 4"
        );
        assert_eq!(
            q(GetOptions::new().with_min_create_revision(3)).await.0,
            ["f2", "f3"],
            "[{kind}] min_create 3"
        );
        assert_eq!(
            q(GetOptions::new().with_max_create_revision(3)).await.0,
            ["f1", "f2"],
            "[{kind}] max_create 3"
        );
        assert_eq!(
            q(GetOptions::new()
                .with_min_create_revision(3)
                .with_max_create_revision(3))
            .await
            .0,
            ["f2"],
            "[{kind}] create == 3"
        );
        assert_eq!(
            q(GetOptions::new()
                .with_min_mod_revision(5)
                .with_max_create_revision(2))
            .await
            .0,
            ["f1"],
            "[{kind}] min_mod 5 + max_create 2"
        );
        assert_eq!(
            q(GetOptions::new().with_min_mod_revision(7)).await,
            (vec![], 3),
            "[{kind}] min_mod 7"
        );
        // Filters combine with limit: the limit applies after filtering.
        let r = c
            .get(
                "f",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_min_mod_revision(4)
                        .with_limit(1),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            (keys(r.kvs()), r.more()),
            (vec!["f1".to_string()], true),
            "[{kind}] filter + limit"
        );

        // Historical reads of the whole prefix.
        let cc = c.clone();
        let at = move |rv: i64| {
            let mut c = cc.clone();
            async move {
                let r = c
                    .get("f", Some(GetOptions::new().with_prefix().with_revision(rv)))
                    .await
                    .unwrap();
                assert_eq!(rev(r.header()), 6, "header revision is the current one");
                kv_pairs(r.kvs())
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(at(1).await, Vec::<String>::new(), "[{kind}] at rev 1");
        assert_eq!(at(2).await, ["f1=a"], "[{kind}] at rev 2");
        assert_eq!(at(4).await, ["f1=a", "f2=a", "f3=a"], "[{kind}] at rev 4");
        assert_eq!(at(5).await, ["f1=b", "f2=a", "f3=a"], "[{kind}] at rev 5");
        assert_eq!(at(6).await, ["f1=b", "f2=b", "f3=a"], "[{kind}] at rev 6");
        let r = c
            .get("f1", Some(GetOptions::new().with_revision(4)))
            .await
            .unwrap();
        let kv = &r.kvs()[0];
        assert_eq!(
            (kv.create_revision(), kv.mod_revision(), kv.version()),
            (2, 2, 1),
            "[{kind}] f1 at rev 4"
        );
        // Historical + count_only + limit
        let r = c
            .get(
                "f",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_revision(3)
                        .with_count_only(),
                ),
            )
            .await
            .unwrap();
        assert_eq!(r.count(), 2, "[{kind}] count at rev 3");
        t.push(format!("{:?}", at(5).await));
        t
    })
    .await;
}
