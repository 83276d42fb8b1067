//! Leases: grant, time-to-live, list, keep-alive, revoke, expiry, and a
//! lease surviving a restart with its TTL renewed.

mod common;

use std::time::Duration;

use common::*;
use etcd_client::{
    Client, EventType, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions,
    WatchOptions,
};

async fn ttl_of(c: &mut Client, id: i64) -> i64 {
    c.lease_time_to_live(id, None).await.unwrap().ttl()
}

async fn lease_ids(c: &mut Client) -> Vec<i64> {
    let mut ids: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn grant_time_to_live_and_list() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        assert_eq!(
            lease_ids(&mut c).await,
            Vec::<i64>::new(),
            "[{kind}] no leases at start"
        );

        let g = c.lease_grant(60, None).await.unwrap();
        let auto_id = g.id();
        assert!(auto_id > 0, "[{kind}] server-chosen lease id {auto_id}");
        assert_eq!(g.ttl(), 60, "[{kind}] granted TTL");
        assert_eq!(g.error(), "");
        assert_eq!(
            rev(g.header()),
            1,
            "[{kind}] a grant does not add a revision"
        );

        let g = c
            .lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234)))
            .await
            .unwrap();
        assert_eq!((g.id(), g.ttl()), (0x1234, 30), "[{kind}] grant with id");

        // Two server-chosen ids differ.
        let g2 = c.lease_grant(45, None).await.unwrap();
        assert!(g2.id() > 0 && g2.id() != auto_id, "[{kind}] distinct ids");

        c.put("lk2", "b", Some(PutOptions::new().with_lease(0x1234)))
            .await
            .unwrap();
        c.put("lk1", "a", Some(PutOptions::new().with_lease(0x1234)))
            .await
            .unwrap();
        c.put("free", "c", None).await.unwrap();

        let r = c
            .lease_time_to_live(0x1234, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .unwrap();
        let mut ks: Vec<String> = r
            .keys()
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        ks.sort();
        assert_eq!(ks, ["lk1", "lk2"], "[{kind}] keys of the lease");
        assert_eq!(
            (r.id(), r.granted_ttl()),
            (0x1234, 30),
            "[{kind}] time-to-live"
        );
        assert!(
            (28..=30).contains(&r.ttl()),
            "[{kind}] remaining ttl {}",
            r.ttl()
        );
        // Without with_keys: no keys.
        let r = c.lease_time_to_live(0x1234, None).await.unwrap();
        assert!(r.keys().is_empty(), "[{kind}] keys only on request");
        let r = c
            .lease_time_to_live(auto_id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .unwrap();
        assert!(r.keys().is_empty(), "[{kind}] lease without keys");
        assert_eq!(r.granted_ttl(), 60);

        let mut want = vec![auto_id, 0x1234, g2.id()];
        want.sort();
        assert_eq!(lease_ids(&mut c).await, want, "[{kind}] leases list");
        let g = c.get("lk1", None).await.unwrap();
        assert_eq!(g.kvs()[0].lease(), 0x1234);

        // Keep-alive of an unknown lease is refused (TTL 0 from the server).
        assert!(
            c.lease_keep_alive(0x999).await.is_err(),
            "[{kind}] keep-alive of unknown lease"
        );
        t.push(format!("{ks:?}"));
        t
    })
    .await;
}

#[tokio::test]
async fn keep_alive_extends_ttl() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let id = c.lease_grant(10, None).await.unwrap().id();
        c.put("ka", "v", Some(PutOptions::new().with_lease(id)))
            .await
            .unwrap();
        // Let the TTL visibly run down.
        let mut cc = c.clone();
        let low = wait_until("ttl to drop to 8", WAIT_TIMEOUT, || {
            let mut c = cc.clone();
            async move {
                let ttl = ttl_of(&mut c, id).await;
                (ttl <= 8).then_some(ttl)
            }
        })
        .await;
        assert!(low > 0, "[{kind}] lease expired too early ({low})");

        let (mut keeper, mut stream) = c.lease_keep_alive(id).await.unwrap();
        assert_eq!(keeper.id(), id);
        // The first response was consumed by lease_keep_alive; send another.
        keeper.keep_alive().await.unwrap();
        let resp = within(
            "keep-alive response",
            Duration::from_secs(10),
            stream.message(),
        )
        .await
        .unwrap()
        .expect("keep-alive response");
        assert_eq!(
            (resp.id(), resp.ttl()),
            (id, 10),
            "[{kind}] keep-alive response"
        );
        let after = ttl_of(&mut cc, id).await;
        assert!(
            after >= 9,
            "[{kind}] ttl after keep-alive {after} (was {low})"
        );
        // Still attached.
        let g = cc.get("ka", None).await.unwrap();
        assert_eq!(g.kvs()[0].lease(), id);
        vec![format!("{}", resp.ttl())]
    })
    .await;
}

#[tokio::test]
async fn revoke_deletes_attached_keys_in_one_revision() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        let id = c
            .lease_grant(300, Some(LeaseGrantOptions::new().with_id(7)))
            .await
            .unwrap()
            .id();
        let other = c.lease_grant(300, None).await.unwrap().id();
        for k in ["r/c", "r/a", "r/b"] {
            c.put(k, "v", Some(PutOptions::new().with_lease(id)))
                .await
                .unwrap();
        }
        c.put("r/free", "v", None).await.unwrap();
        let p = c
            .put("r/other", "v", Some(PutOptions::new().with_lease(other)))
            .await
            .unwrap();
        let before = rev(p.header());
        assert_eq!(before, 6);

        let mut w = c
            .watch(
                "r/",
                Some(WatchOptions::new().with_prefix().with_prev_key()),
            )
            .await
            .unwrap();
        let created = within("created", Duration::from_secs(10), w.message())
            .await
            .unwrap()
            .unwrap();
        assert!(created.created());

        let r = c.lease_revoke(id).await.unwrap();
        assert_eq!(
            rev(r.header()),
            before + 1,
            "[{kind}] revoke is one revision"
        );
        let g = c
            .get("r/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        assert_eq!(
            keys(g.kvs()),
            ["r/free", "r/other"],
            "[{kind}] keys left after revoke"
        );
        assert_eq!(rev(g.header()), before + 1);

        let mut evs = Vec::new();
        while evs.len() < 3 {
            let r = within("delete events", Duration::from_secs(10), w.message())
                .await
                .unwrap()
                .unwrap();
            for e in r.events() {
                assert_eq!(e.event_type(), EventType::Delete, "[{kind}]");
                let kv = e.kv().unwrap();
                evs.push((
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.mod_revision(),
                ));
                assert_eq!(e.prev_kv().map(|p| p.lease()), Some(id));
            }
        }
        evs.sort();
        assert_eq!(
            evs,
            [
                ("r/a".to_string(), before + 1),
                ("r/b".to_string(), before + 1),
                ("r/c".to_string(), before + 1)
            ],
            "[{kind}] delete events of the revoke"
        );
        // The lease is gone.
        let r = c.lease_time_to_live(id, None).await.unwrap();
        assert_eq!(r.ttl(), -1, "[{kind}] ttl of a revoked lease");
        assert_eq!(
            lease_ids(&mut c).await,
            [other],
            "[{kind}] leases after revoke"
        );
        // A put with the revoked lease fails.
        let e = c
            .put("r/x", "v", Some(PutOptions::new().with_lease(id)))
            .await;
        t.push(expect_grpc_err(
            kind,
            e,
            tonic::Code::NotFound,
            "etcdserver: requested lease not found",
        ));
        // Revoking a lease without keys does not add a revision.
        let empty = c.lease_grant(300, None).await.unwrap().id();
        let r = c.lease_revoke(empty).await.unwrap();
        assert_eq!(
            rev(r.header()),
            before + 1,
            "[{kind}] revoke of a lease without keys"
        );
        t.push(format!("{evs:?}"));
        t
    })
    .await;
}

#[tokio::test]
async fn expiry_deletes_attached_keys() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let id = c.lease_grant(2, None).await.unwrap().id();
        c.put("e/1", "v", Some(PutOptions::new().with_lease(id)))
            .await
            .unwrap();
        c.put("e/2", "v", Some(PutOptions::new().with_lease(id)))
            .await
            .unwrap();
        let p = c.put("e/3", "stays", None).await.unwrap();
        let before = rev(p.header());

        let cc = c.clone();
        wait_until("leased keys to expire", Duration::from_secs(20), || {
            let mut c = cc.clone();
            async move {
                let g = c
                    .get("e/", Some(GetOptions::new().with_prefix()))
                    .await
                    .unwrap();
                (g.count() == 1).then_some(())
            }
        })
        .await;
        let g = c
            .get("e/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        assert_eq!(keys(g.kvs()), ["e/3"], "[{kind}] after expiry");
        assert_eq!(
            rev(g.header()),
            before + 1,
            "[{kind}] expiry deletes in one revision"
        );
        let r = c.lease_time_to_live(id, None).await.unwrap();
        assert_eq!(r.ttl(), -1, "[{kind}] expired lease ttl");
        assert!(
            !lease_ids(&mut c).await.contains(&id),
            "[{kind}] expired lease listed"
        );
        vec!["expired".to_string()]
    })
    .await;
}

#[tokio::test]
async fn lease_survives_restart_with_renewed_ttl() {
    each_kind(|kind| async move {
        let mut srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let id = c
            .lease_grant(20, Some(LeaseGrantOptions::new().with_id(0xabc)))
            .await
            .unwrap()
            .id();
        c.put("keep", "v", Some(PutOptions::new().with_lease(id)))
            .await
            .unwrap();
        let cc = c.clone();
        wait_until("ttl to drop to 17", WAIT_TIMEOUT, || {
            let mut c = cc.clone();
            async move { (ttl_of(&mut c, id).await <= 17).then_some(()) }
        })
        .await;
        drop((c, cc));
        srv.restart().await;
        let mut c = srv.client().await;
        let r = c
            .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .unwrap();
        assert_eq!(r.granted_ttl(), 20, "[{kind}] granted ttl after restart");
        assert!(
            r.ttl() >= 18,
            "[{kind}] ttl renewed on restart: {}",
            r.ttl()
        );
        assert_eq!(r.keys(), [b"keep".to_vec()], "[{kind}] keys after restart");
        assert_eq!(lease_ids(&mut c).await, [id]);
        let g = c.get("keep", None).await.unwrap();
        assert_eq!(g.kvs()[0].lease(), id, "[{kind}] key still leased");
        // The restored lease can still be revoked, deleting its key.
        c.lease_revoke(id).await.unwrap();
        assert_eq!(c.get("keep", None).await.unwrap().count(), 0);
        vec![]
    })
    .await;
}
