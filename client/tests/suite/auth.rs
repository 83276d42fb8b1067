//! User/password auth with token renewal, against kvd and etcd 3.4. Both
//! run with simple tokens that expire after `TOKEN_TTL_SECS` of disuse, so
//! expiry happens within the test.

use std::time::Duration;

use futures::StreamExt;
use kv_client::auth::PermissionType;
use kv_client::kv::prefix_end;
use kv_client::{Client, Error, WatchOptions};

use crate::cluster::Cluster;
use crate::{Kind, WAIT, on_both, within};

/// The servers' `--auth-token-ttl`, in seconds.
const TOKEN_TTL_SECS: u64 = 2;
/// Idle time after which a token has surely expired: the TTL plus etcd's
/// one-second expiry sweep plus margin.
const EXPIRED_AFTER: Duration = Duration::from_secs(TOKEN_TTL_SECS + 2);

/// One member with short-lived simple tokens, a `root` user and an
/// `alice` user who may read and write `app/`, and auth enabled.
async fn with_auth(kind: Kind) -> Cluster {
    let ttl = format!("--auth-token-ttl={TOKEN_TTL_SECS}");
    let mut flags = vec!["--auth-token=simple", ttl.as_str()];
    if kind == Kind::Kvd {
        // bcrypt's default cost is slow in a debug build.
        flags.push("--bcrypt-cost=4");
    }
    let cluster = Cluster::start(kind, 1, &flags, None).await;
    let admin = cluster.member_client(0).await;
    admin.user_add("root", "rootpw").await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("app").await.unwrap();
    admin
        .role_grant_permission(
            "app",
            "app/",
            Some(prefix_end(b"app/")),
            PermissionType::Readwrite,
        )
        .await
        .unwrap();
    admin.user_add("alice", "alicepw").await.unwrap();
    admin.user_grant_role("alice", "app").await.unwrap();
    admin.auth_enable().await.unwrap();
    cluster
}

on_both!(
    expired_token_is_renewed,
    streams_survive_token_expiry,
    wrong_password_is_auth_failed,
);

async fn alice(cluster: &Cluster) -> Client {
    Client::connect(cluster.config().with_user("alice", "alicepw"))
        .await
        .unwrap()
}

async fn expired_token_is_renewed(kind: Kind) {
    let cluster = with_auth(kind).await;
    let c = alice(&cluster).await;
    assert_eq!(c.authentications(), 1);
    c.put("app/a", "1", None).await.unwrap();

    // Permissions apply: the token is really sent.
    assert_eq!(
        c.put("other", "x", None).await.unwrap_err(),
        Error::PermissionDenied
    );
    let anonymous = cluster.member_client(0).await;
    let e = anonymous.get("app/a", None).await.unwrap_err();
    assert_eq!(e.stable_code(), "user_empty", "{e:?}");

    // After expiry a request still succeeds, through one new token.
    tokio::time::sleep(EXPIRED_AFTER).await;
    let got = c.get("app/a", None).await.unwrap();
    assert_eq!(got.kvs()[0].value, b"1");
    assert_eq!(c.authentications(), 2);

    // Writes too, and concurrent requests share one refresh.
    tokio::time::sleep(EXPIRED_AFTER).await;
    let puts = (0..8).map(|i| {
        let c = c.clone();
        async move { c.put(format!("app/{i}"), "v", None).await }
    });
    for r in futures::future::join_all(puts).await {
        r.unwrap();
    }
    assert_eq!(c.authentications(), 3);
}

async fn streams_survive_token_expiry(kind: Kind) {
    let cluster = with_auth(kind).await;
    let c = alice(&cluster).await;
    let mut w = c
        .watch("app/", WatchOptions::new().with_prefix())
        .await
        .unwrap();
    // A lease kept alive over its own stream, through the expiries.
    let lease = c.lease_grant(2).await.unwrap().id();
    let keeper = c.lease_keeper(lease).await.unwrap();
    let before = c.authentications();

    tokio::time::sleep(EXPIRED_AFTER).await;
    let rev = c.put("app/w", "x", None).await.unwrap().revision();
    assert_eq!(c.authentications(), before + 1, "token was not renewed");
    let batch = within("the event after expiry", WAIT, w.next())
        .await
        .expect("watch ended")
        .expect("watch error");
    let kv = batch.events()[0].kv.as_ref().unwrap();
    assert_eq!((kv.key.as_slice(), kv.mod_revision), (&b"app/w"[..], rev));

    // A new watch on the stream opened with the now expired token:
    // etcd refuses the create there, so the stream is reopened with a
    // fresh token and both watches go on.
    tokio::time::sleep(EXPIRED_AFTER).await;
    let mut w2 = c.watch("app/x", WatchOptions::new()).await.unwrap();
    let rev = c.put("app/x", "1", None).await.unwrap().revision();
    for w in [&mut w, &mut w2] {
        let batch = within("an event after the reopen", WAIT, w.next())
            .await
            .expect("watch ended")
            .expect("watch error");
        let kv = batch.events()[0].kv.as_ref().unwrap();
        assert_eq!((kv.key.as_slice(), kv.mod_revision), (&b"app/x"[..], rev));
    }
    assert_eq!(keeper.lost_reason(), None);
    assert!(c.lease_time_to_live(lease, false).await.unwrap().ttl() > 0);
}

async fn wrong_password_is_auth_failed(kind: Kind) {
    let cluster = with_auth(kind).await;
    let e = Client::connect(cluster.config().with_user("alice", "wrong"))
        .await
        .unwrap_err();
    assert_eq!(e, Error::AuthFailed);
    assert_eq!(
        e.to_string(),
        "etcdserver: authentication failed, invalid user ID or password"
    );
    assert_eq!(e.stable_code(), "auth_failed");
    // The right password still works.
    let c = alice(&cluster).await;
    assert!(c.get("app/none", None).await.unwrap().kvs().is_empty());
}
