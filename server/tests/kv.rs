//! KV service: Put / Range / DeleteRange semantics, run against kvd and
//! etcd with the same steps and compared.

mod common;

use common::*;
use etcd_client::{DeleteOptions, GetOptions, PutOptions};

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
