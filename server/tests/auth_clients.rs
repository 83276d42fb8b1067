//! Auth through the `etcd-client` crate against kvd: the user and role
//! APIs, token expiry under a short --auth-token-ttl with the client's own
//! refresh, a 3-member cluster (users and revokes seen by every member at
//! once), and auth state across restart.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::*;
use etcd_client::{Client, ConnectOptions, GetOptions, Permission, RoleRevokePermissionOptions};

fn opts() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10))
}

async fn as_user(endpoint: String, user: &str, pw: &str) -> Client {
    let o = opts().with_user(user, pw).with_auto_token_refresh(true);
    Client::connect([endpoint], Some(o))
        .await
        .expect("authenticated connect")
}

/// root (role root), reader (READ on [a, c)), auth enabled.
async fn setup(c: &mut Client) {
    c.user_add("root", "rootpw", None).await.unwrap();
    c.role_add("root").await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.role_add("ro").await.unwrap();
    c.role_grant_permission("ro", Permission::read("a").with_range_end("c"))
        .await
        .unwrap();
    c.user_add("reader", "rpw", None).await.unwrap();
    c.user_grant_role("reader", "ro").await.unwrap();
    c.put("a1", "v1", None).await.unwrap();
    c.auth_enable().await.unwrap();
}

fn status_of(e: etcd_client::Error) -> (tonic::Code, String) {
    match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a gRPC status: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_user_and_role_apis_against_kvd() {
    kvd_only(|| async {
        let srv = Server::start_with(Kind::Kvd, Options::default().arg("bcrypt-cost", 4)).await;
        let mut c = srv.client().await;
        setup(&mut c).await;
        // Unauthenticated once enabled.
        let (code, msg) = status_of(c.get("a1", None).await.unwrap_err());
        assert_eq!(
            (code, msg.as_str()),
            (
                tonic::Code::InvalidArgument,
                "etcdserver: user name is empty"
            )
        );

        let mut root = as_user(srv.endpoint(), "root", "rootpw").await;
        let users = root.user_list().await.unwrap();
        assert_eq!(users.users(), ["reader", "root"]);
        let roles = root.role_list().await.unwrap();
        assert_eq!(roles.roles(), ["ro", "root"]);
        let u = root.user_get("reader").await.unwrap();
        assert_eq!(u.roles(), ["ro"]);
        let r = root.role_get("ro").await.unwrap();
        assert_eq!(r.permissions().len(), 1);
        assert_eq!(r.permissions()[0].key(), b"a");
        assert_eq!(r.permissions()[0].range_end(), b"c");

        let mut reader = as_user(srv.endpoint(), "reader", "rpw").await;
        let got = reader.get("a1", None).await.unwrap();
        assert_eq!(got.kvs()[0].value(), b"v1");
        let (code, msg) = status_of(reader.put("a1", "x", None).await.unwrap_err());
        assert_eq!(
            (code, msg.as_str()),
            (
                tonic::Code::PermissionDenied,
                "etcdserver: permission denied"
            )
        );
        let (code, _) = status_of(reader.user_list().await.unwrap_err());
        assert_eq!(code, tonic::Code::PermissionDenied);

        // A wrong password is refused with etcd's text.
        let bad = Client::connect([srv.endpoint()], Some(opts().with_user("reader", "nope"))).await;
        let (code, msg) = status_of(bad.err().expect("wrong password refused"));
        assert_eq!(
            (code, msg.as_str()),
            (
                tonic::Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password"
            )
        );

        // A changed password ends the user's sessions.
        root.user_change_password("reader", "rpw2").await.unwrap();
        let (code, msg) = status_of(
            Client::connect([srv.endpoint()], Some(opts().with_user("reader", "rpw")))
                .await
                .err()
                .expect("old password refused"),
        );
        assert_eq!(code, tonic::Code::InvalidArgument, "{msg}");
        let mut reader2 = as_user(srv.endpoint(), "reader", "rpw2").await;
        reader2.get("a1", None).await.unwrap();

        root.user_revoke_role("reader", "ro").await.unwrap();
        let (code, _) = status_of(reader2.get("a1", None).await.unwrap_err());
        assert_eq!(code, tonic::Code::PermissionDenied);
        root.user_delete("reader").await.unwrap();
        root.role_delete("ro").await.unwrap();
        assert_eq!(root.user_list().await.unwrap().users(), ["root"]);
        root.auth_disable().await.unwrap();
        c.get("a1", None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_and_the_client_refreshes() {
    kvd_only(|| async {
        let o = Options::default()
            .arg("bcrypt-cost", 4)
            .arg("auth-token-ttl", 1);
        let srv = Server::start_with(Kind::Kvd, o).await;
        let mut c = srv.client().await;
        setup(&mut c).await;
        let mut reader = as_user(srv.endpoint(), "reader", "rpw").await;
        // Used more often than the TTL: the token stays alive.
        for _ in 0..6 {
            reader.get("a1", None).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Idle past the TTL: the token expires; a client without refresh
        // gets etcd's "invalid auth token", one with refresh carries on.
        let plain = opts().with_user("reader", "rpw");
        let mut no_refresh = Client::connect([srv.endpoint()], Some(plain))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (code, msg) = status_of(no_refresh.get("a1", None).await.unwrap_err());
        assert_eq!(
            (code, msg.as_str()),
            (
                tonic::Code::Unauthenticated,
                "etcdserver: invalid auth token"
            )
        );
        let got = reader.get("a1", None).await.unwrap();
        assert_eq!(got.kvs()[0].value(), b"v1");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_users_tokens_and_revokes() {
    kvd_only(|| async {
        let cluster = Cluster::start_with(3, &["--bcrypt-cost=4"]).await;
        let mut c0 = cluster.client(0).await;
        setup(&mut c0).await;
        // Added on member 0, authenticated on member 2.
        let mut reader = as_user(cluster.endpoint(2), "reader", "rpw").await;
        let got = reader.get("a1", None).await.unwrap();
        assert_eq!(got.kvs()[0].value(), b"v1");
        let mut root1 = as_user(cluster.endpoint(1), "root", "rootpw").await;
        // A write through a follower is re-checked where it is applied.
        root1.put("a2", "v2", None).await.unwrap();
        root1
            .role_revoke_permission(
                "ro",
                "a",
                Some(RoleRevokePermissionOptions::new().with_range_end("c")),
            )
            .await
            .unwrap();
        // Revoked on member 1; member 2 refuses at once (its linearizable
        // read waits for the revoke to be applied there).
        let (code, _) = status_of(reader.get("a1", None).await.unwrap_err());
        assert_eq!(code, tonic::Code::PermissionDenied);
        let (code, _) = status_of(
            reader
                .get("a1", Some(GetOptions::new().with_serializable()))
                .await
                .unwrap_err(),
        );
        assert_eq!(code, tonic::Code::PermissionDenied);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_state_survives_restart() {
    kvd_only(|| async {
        let mut cluster = Cluster::start_with(1, &["--bcrypt-cost=4"]).await;
        let mut c = cluster.client(0).await;
        setup(&mut c).await;
        drop(c);
        // kvd makes applied state durable in redb at most every 5 s and
        // replays the raft log after it on restart: wait past that and
        // write once more, so the auth rows are read back from the store
        // rather than rebuilt from the log.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let mut root = as_user(cluster.endpoint(0), "root", "rootpw").await;
        root.put("durable", "x", None).await.unwrap();
        drop(root);
        cluster.kill9(0);
        cluster.spawn(0);
        // The harness's readiness probe reads without credentials: wait
        // with root's instead.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ok = async {
                let o = opts().with_user("root", "rootpw");
                let mut r = Client::connect([cluster.endpoint(0)], Some(o)).await.ok()?;
                r.get("a1", None).await.ok()
            };
            if ok.await.is_some() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not ready\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut anon = cluster.client(0).await;
        let (code, msg) = status_of(anon.get("a1", None).await.unwrap_err());
        assert_eq!(
            (code, msg.as_str()),
            (
                tonic::Code::InvalidArgument,
                "etcdserver: user name is empty"
            )
        );
        let mut reader = as_user(cluster.endpoint(0), "reader", "rpw").await;
        reader.get("a1", None).await.unwrap();
        let (code, _) = status_of(reader.put("a1", "x", None).await.unwrap_err());
        assert_eq!(code, tonic::Code::PermissionDenied);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_state_reaches_a_member_through_a_snapshot() {
    kvd_only(|| async {
        let flags = [
            "--bcrypt-cost=4",
            "--snapshot-count=50",
            "--experimental-snapshot-catchup-entries=10",
        ];
        let mut c = Cluster::start_with(3, &flags).await;
        let leader = c.leader().await;
        let lagger = (leader + 1) % 3;
        let writer = (leader + 2) % 3;
        // The lagger sees none of the auth setup in its log.
        c.kill9(lagger);
        let mut w = c.client(writer).await;
        setup(&mut w).await;
        let mut root = as_user(c.endpoint(writer), "root", "rootpw").await;
        for n in 0..300 {
            root.put(format!("s{n:03}"), "v", None).await.expect("put");
        }
        c.spawn(lagger);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut reader = loop {
            let try_reader = async {
                let o = opts().with_user("reader", "rpw");
                let mut r = Client::connect([c.endpoint(lagger)], Some(o)).await.ok()?;
                let serializable = Some(GetOptions::new().with_serializable());
                r.get("a1", serializable).await.ok()?;
                Some(r)
            };
            if let Some(r) = try_reader.await {
                break r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "lagger never served the reader\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let log = std::fs::read_to_string(c.log_path(lagger)).unwrap_or_default();
        assert!(
            log.contains("installed snapshot from the leader"),
            "the lagger caught up from a snapshot\n{}",
            c.logs()
        );
        let (code, _) = status_of(reader.put("a1", "x", None).await.unwrap_err());
        assert_eq!(code, tonic::Code::PermissionDenied);
        let mut anon = c.client(lagger).await;
        let serializable = Some(GetOptions::new().with_serializable());
        let (code, msg) = status_of(anon.get("a1", serializable).await.unwrap_err());
        assert_eq!(
            (code, msg.as_str()),
            (
                tonic::Code::InvalidArgument,
                "etcdserver: user name is empty"
            )
        );
    })
    .await;
}
