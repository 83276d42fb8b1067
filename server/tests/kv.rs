//! KV service: Put / Range / DeleteRange semantics, run against kvd and
//! etcd with the same steps and compared.

mod common;

use common::*;
use etcd_client::{DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget};

async fn put(c: &mut etcd_client::Client, k: &str, v: &str) -> i64 {
    let r = c.put(k, v, None).await.expect("put");
    rev(r.header())
}

#[tokio::test]
async fn put_get_prev_kv_and_revisions() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();

        // A fresh store is at revision 1, like etcd.
        let r = c.get("a", None).await.unwrap();
        assert_eq!(rev(r.header()), 1, "[{kind}] fresh store revision");
        assert_eq!(r.kvs().len(), 0);
        assert_eq!(r.count(), 0);
        assert!(!r.more());

        let r1 = put(&mut c, "a", "1").await;
        assert_eq!(r1, 2, "[{kind}] first put gets revision 2");
        let g = c.get("a", None).await.unwrap();
        assert_eq!(rev(g.header()), r1);
        assert_eq!(g.count(), 1);
        let kv = &g.kvs()[0];
        assert_eq!(
            (
                kv.key(),
                kv.value(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease()
            ),
            (&b"a"[..], &b"1"[..], r1, r1, 1, 0),
            "[{kind}] first put"
        );
        t.push(kv_rel(kv, 1));

        // prev_kv on an existing key returns the previous pair.
        let p = c
            .put("a", "2", Some(PutOptions::new().with_prev_key()))
            .await
            .unwrap();
        let r2 = rev(p.header());
        assert_eq!(r2, r1 + 1);
        let prev = p.prev_key().expect("prev_kv present");
        assert_eq!(
            (
                prev.value(),
                prev.create_revision(),
                prev.mod_revision(),
                prev.version()
            ),
            (&b"1"[..], r1, r1, 1),
            "[{kind}] prev_kv"
        );
        t.push(kv_rel(prev, 1));

        // prev_kv on a new key: absent.
        let p = c
            .put("b", "x", Some(PutOptions::new().with_prev_key()))
            .await
            .unwrap();
        assert!(p.prev_key().is_none(), "[{kind}] prev_kv of new key");
        // Without prev_kv requested: absent.
        let p = c.put("b", "y", None).await.unwrap();
        assert!(p.prev_key().is_none());
        let r4 = rev(p.header());
        assert_eq!(r4, r2 + 2);

        let g = c.get("a", None).await.unwrap();
        let kv = &g.kvs()[0];
        assert_eq!(
            (
                kv.value(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version()
            ),
            (&b"2"[..], r1, r2, 2),
            "[{kind}] after second put"
        );
        let g = c.get("b", None).await.unwrap();
        let kv = &g.kvs()[0];
        assert_eq!(
            (
                kv.value(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version()
            ),
            (&b"y"[..], r2 + 1, r4, 2)
        );

        // Same value again still creates a new revision and version.
        let r5 = put(&mut c, "b", "y").await;
        assert_eq!(r5, r4 + 1);
        let g = c.get("b", None).await.unwrap();
        assert_eq!(g.kvs()[0].version(), 3);
        assert_eq!(g.kvs()[0].mod_revision(), r5);

        // Binary keys and values, and an empty value.
        let bin_key = vec![0u8, 0xff, 0x10, b'k'];
        c.put(bin_key.clone(), vec![0u8, 1, 2, 0xfe], None)
            .await
            .unwrap();
        c.put("empty", "", None).await.unwrap();
        let g = c.get(bin_key.clone(), None).await.unwrap();
        assert_eq!(g.kvs()[0].value(), &[0u8, 1, 2, 0xfe][..]);
        let g = c.get("empty", None).await.unwrap();
        assert_eq!(g.count(), 1);
        assert_eq!(g.kvs()[0].value(), b"");
        t.push(kv_rel(&g.kvs()[0], 1));
        t
    })
    .await;
}

#[tokio::test]
async fn ignore_value_and_ignore_lease() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        let lease = c.lease_grant(60, None).await.unwrap().id();

        c.put("k", "v1", Some(PutOptions::new().with_lease(lease)))
            .await
            .unwrap();
        let g = c.get("k", None).await.unwrap();
        assert_eq!(g.kvs()[0].lease(), lease, "[{kind}] lease attached");

        // ignore_value + ignore_lease: both kept, new revision and version.
        let p = c
            .put(
                "k",
                "",
                Some(
                    PutOptions::new()
                        .with_ignore_value()
                        .with_ignore_lease()
                        .with_prev_key(),
                ),
            )
            .await
            .unwrap();
        assert_eq!(p.prev_key().unwrap().value(), b"v1");
        let g = c.get("k", None).await.unwrap();
        let kv = &g.kvs()[0];
        assert_eq!(
            (kv.value(), kv.lease(), kv.version(), kv.mod_revision()),
            (&b"v1"[..], lease, 2, rev(p.header())),
            "[{kind}] ignore_value+ignore_lease"
        );
        t.push(kv_rel(kv, 1));

        // ignore_lease alone: new value, lease kept.
        c.put("k", "v2", Some(PutOptions::new().with_ignore_lease()))
            .await
            .unwrap();
        let g = c.get("k", None).await.unwrap();
        let kv = &g.kvs()[0];
        assert_eq!(
            (kv.value(), kv.lease(), kv.version()),
            (&b"v2"[..], lease, 3),
            "[{kind}] ignore_lease"
        );

        // ignore_value alone with no lease given: value kept, lease detached.
        c.put("k", "", Some(PutOptions::new().with_ignore_value()))
            .await
            .unwrap();
        let g = c.get("k", None).await.unwrap();
        let kv = &g.kvs()[0];
        assert_eq!(
            (kv.value(), kv.lease(), kv.version()),
            (&b"v2"[..], 0, 4),
            "[{kind}] ignore_value detaches lease when none given"
        );
        t.push(kv_rel(kv, 1));
        let ttl = c
            .lease_time_to_live(
                lease,
                Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
            )
            .await
            .unwrap();
        assert!(ttl.keys().is_empty(), "[{kind}] key detached from lease");

        // ignore_value with a lease: value kept, lease attached.
        c.put(
            "k",
            "",
            Some(PutOptions::new().with_ignore_value().with_lease(lease)),
        )
        .await
        .unwrap();
        let g = c.get("k", None).await.unwrap();
        assert_eq!(
            (g.kvs()[0].value(), g.kvs()[0].lease()),
            (&b"v2"[..], lease)
        );
        // A plain put drops the lease.
        c.put("k", "v3", None).await.unwrap();
        let g = c.get("k", None).await.unwrap();
        assert_eq!((g.kvs()[0].value(), g.kvs()[0].lease()), (&b"v3"[..], 0));
        t.push(kv_rel(&g.kvs()[0], 1));
        t
    })
    .await;
}

/// Loads keys a, b, b1, b2, c, d/1, d/2 in this order.
async fn load_range_fixture(c: &mut etcd_client::Client) {
    for (k, v) in [
        ("a", "va"),
        ("b", "vb"),
        ("b1", "vb1"),
        ("b2", "vb2"),
        ("c", "vc"),
        ("d/1", "vd1"),
        ("d/2", "vd2"),
    ] {
        c.put(k, v, None).await.unwrap();
    }
}

#[tokio::test]
async fn ranges_prefix_from_key_limit_count() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        load_range_fixture(&mut c).await;

        let cc = c.clone();
        let get = move |key: &'static str, opts: GetOptions| {
            let mut c = cc.clone();
            async move { c.get(key, Some(opts)).await.unwrap() }
        };

        // [b, c)
        let r = get("b", GetOptions::new().with_range("c")).await;
        assert_eq!(keys(r.kvs()), ["b", "b1", "b2"], "[{kind}] [b,c)");
        assert_eq!((r.count(), r.more()), (3, false));
        // [b1, d/2) excludes the end.
        let r = get("b1", GetOptions::new().with_range("d/2")).await;
        assert_eq!(keys(r.kvs()), ["b1", "b2", "c", "d/1"], "[{kind}] [b1,d/2)");
        // prefix
        let r = get("b", GetOptions::new().with_prefix()).await;
        assert_eq!(
            kv_pairs(r.kvs()),
            [
                ("b".into(), "vb".into()),
                ("b1".into(), "vb1".into()),
                ("b2".into(), "vb2".into())
            ]
        );
        let r = get("d/", GetOptions::new().with_prefix()).await;
        assert_eq!(keys(r.kvs()), ["d/1", "d/2"], "[{kind}] prefix d/");
        let r = get("zz", GetOptions::new().with_prefix()).await;
        assert_eq!((r.kvs().len(), r.count()), (0, 0));
        // from key: range_end "\0"
        let r = get("b2", GetOptions::new().with_from_key()).await;
        assert_eq!(keys(r.kvs()), ["b2", "c", "d/1", "d/2"], "[{kind}] from b2");
        // all keys: key "\0", range_end "\0"
        let r = get("", GetOptions::new().with_all_keys()).await;
        assert_eq!(
            keys(r.kvs()),
            ["a", "b", "b1", "b2", "c", "d/1", "d/2"],
            "[{kind}] all keys"
        );
        assert_eq!(r.count(), 7);
        // A range whose end is not after the key is empty.
        let r = get("c", GetOptions::new().with_range("b")).await;
        assert_eq!((r.kvs().len(), r.count()), (0, 0), "[{kind}] end < key");

        // limit, more, count
        let r = get("", GetOptions::new().with_all_keys().with_limit(3)).await;
        assert_eq!(keys(r.kvs()), ["a", "b", "b1"], "[{kind}] limit 3");
        assert_eq!(
            (r.count(), r.more()),
            (7, true),
            "[{kind}] limit 3 count/more"
        );
        let r = get("", GetOptions::new().with_all_keys().with_limit(7)).await;
        assert_eq!(
            (r.kvs().len(), r.count(), r.more()),
            (7, 7, false),
            "[{kind}] limit == count"
        );
        let r = get("", GetOptions::new().with_all_keys().with_limit(6)).await;
        assert_eq!(
            (r.kvs().len(), r.count(), r.more()),
            (6, 7, true),
            "[{kind}] limit == count-1"
        );
        let r = get("b", GetOptions::new().with_prefix().with_limit(100)).await;
        assert_eq!((r.kvs().len(), r.count(), r.more()), (3, 3, false));
        let r = get("b", GetOptions::new().with_prefix().with_limit(0)).await;
        assert_eq!(
            (r.kvs().len(), r.count(), r.more()),
            (3, 3, false),
            "[{kind}] limit 0 = none"
        );

        // keys_only / count_only
        let r = get("b", GetOptions::new().with_prefix().with_keys_only()).await;
        assert_eq!(keys(r.kvs()), ["b", "b1", "b2"]);
        assert!(
            r.kvs().iter().all(|kv| kv.value().is_empty()),
            "[{kind}] keys_only values"
        );
        assert!(
            r.kvs()
                .iter()
                .all(|kv| kv.version() == 1 && kv.create_revision() > 1),
            "[{kind}] keys_only keeps metadata"
        );
        t.push(kv_rel(&r.kvs()[0], 1));
        let r = get("", GetOptions::new().with_all_keys().with_count_only()).await;
        assert_eq!(
            (r.kvs().len(), r.count(), r.more()),
            (0, 7, false),
            "[{kind}] count_only"
        );
        let r = get(
            "b",
            GetOptions::new()
                .with_prefix()
                .with_count_only()
                .with_limit(1),
        )
        .await;
        assert_eq!(
            (r.kvs().len(), r.count()),
            (0, 3),
            "[{kind}] count_only+limit"
        );

        // serializable reads see the same data
        let r = get("b", GetOptions::new().with_prefix().with_serializable()).await;
        assert_eq!(keys(r.kvs()), ["b", "b1", "b2"], "[{kind}] serializable");
        assert_eq!(rev(r.header()), 8);
        let r = get("a", GetOptions::new().with_serializable()).await;
        assert_eq!(kv_pairs(r.kvs()), [("a".into(), "va".into())]);
        t.push(format!("{:?}", keys(r.kvs())));
        t
    })
    .await;
}

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

#[tokio::test]
async fn delete_tombstones_and_recreate() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        let r1 = put(&mut c, "x", "1").await; // 2
        let r2 = put(&mut c, "x", "2").await; // 3
        put(&mut c, "y1", "a").await; // 4
        put(&mut c, "y2", "b").await; // 5
        put(&mut c, "y3", "c").await; // 6
        assert_eq!((r1, r2), (2, 3));

        // Delete one key with prev_kv.
        let d = c
            .delete("x", Some(DeleteOptions::new().with_prev_key()))
            .await
            .unwrap();
        let r3 = rev(d.header());
        assert_eq!((r3, d.deleted()), (7, 1), "[{kind}] delete x");
        assert_eq!(d.prev_kvs().len(), 1);
        let p = &d.prev_kvs()[0];
        assert_eq!(
            (
                p.key(),
                p.value(),
                p.create_revision(),
                p.mod_revision(),
                p.version()
            ),
            (&b"x"[..], &b"2"[..], 2, 3, 2),
            "[{kind}] delete prev_kv"
        );
        t.push(kv_rel(p, 1));
        assert_eq!(c.get("x", None).await.unwrap().count(), 0);

        // Deleting a missing key: nothing deleted, no new revision.
        let d = c
            .delete("x", Some(DeleteOptions::new().with_prev_key()))
            .await
            .unwrap();
        assert_eq!(
            (rev(d.header()), d.deleted(), d.prev_kvs().len()),
            (7, 0, 0),
            "[{kind}] delete missing"
        );

        // Tombstone: reads before the delete still see the key.
        let g = c
            .get("x", Some(GetOptions::new().with_revision(6)))
            .await
            .unwrap();
        assert_eq!(
            kv_pairs(g.kvs()),
            [("x".into(), "2".into())],
            "[{kind}] x at 6"
        );
        let g = c
            .get("x", Some(GetOptions::new().with_revision(2)))
            .await
            .unwrap();
        assert_eq!(
            kv_pairs(g.kvs()),
            [("x".into(), "1".into())],
            "[{kind}] x at 2"
        );
        let g = c
            .get("x", Some(GetOptions::new().with_revision(7)))
            .await
            .unwrap();
        assert_eq!(g.count(), 0, "[{kind}] x at 7 (deleted)");

        // Re-create: new create_revision, version restarts at 1.
        let r4 = put(&mut c, "x", "3").await;
        assert_eq!(r4, 8);
        let g = c.get("x", None).await.unwrap();
        let kv = &g.kvs()[0];
        assert_eq!(
            (kv.create_revision(), kv.mod_revision(), kv.version()),
            (8, 8, 1),
            "[{kind}] re-created x"
        );
        t.push(kv_rel(kv, 1));
        let r5 = put(&mut c, "x", "4").await;
        let g = c.get("x", None).await.unwrap();
        assert_eq!(
            (
                g.kvs()[0].create_revision(),
                g.kvs()[0].mod_revision(),
                g.kvs()[0].version()
            ),
            (8, r5, 2)
        );

        // Range delete: one revision for all keys, prev_kvs in key order.
        let d = c
            .delete(
                "y",
                Some(DeleteOptions::new().with_prefix().with_prev_key()),
            )
            .await
            .unwrap();
        assert_eq!(
            (rev(d.header()), d.deleted()),
            (r5 + 1, 3),
            "[{kind}] range delete"
        );
        assert_eq!(
            kv_pairs(d.prev_kvs()),
            [
                ("y1".into(), "a".into()),
                ("y2".into(), "b".into()),
                ("y3".into(), "c".into())
            ]
        );
        // Without prev_kv: count only.
        put(&mut c, "z1", "a").await;
        put(&mut c, "z2", "a").await;
        let d = c
            .delete("z1", Some(DeleteOptions::new().with_range("z3")))
            .await
            .unwrap();
        assert_eq!(
            (d.deleted(), d.prev_kvs().len()),
            (2, 0),
            "[{kind}] delete range no prev"
        );
        let d = c
            .delete("", Some(DeleteOptions::new().with_all_keys()))
            .await
            .unwrap();
        assert_eq!(d.deleted(), 1, "[{kind}] delete all keys (x only left)");
        let cur = rev(d.header());
        let g = c
            .get("", Some(GetOptions::new().with_all_keys()))
            .await
            .unwrap();
        assert_eq!(g.count(), 0);
        // The deleted y keys are visible at the revision before their delete.
        let g = c
            .get("y", Some(GetOptions::new().with_prefix().with_revision(r5)))
            .await
            .unwrap();
        assert_eq!(
            keys(g.kvs()),
            ["y1", "y2", "y3"],
            "[{kind}] y before delete"
        );
        t.push(format!("final revision {cur}"));
        t
    })
    .await;
}
