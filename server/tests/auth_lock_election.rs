//! Auth on the v3lock and v3election services, kvd against etcd 3.4 with
//! the etcd-client crate (which calls those services, unlike etcdctl's
//! client-side recipes): a lock or candidacy is a key under its name, so a
//! user needs write (and read) permission there; read-only and role-less
//! users are refused with etcd's error, and nothing of theirs is left.

mod common;

use common::*;
use etcd_client::{Client, ConnectOptions, LockOptions, Permission};

async fn as_user(srv: &Server, user: &str, pw: &str) -> Client {
    let opts = ConnectOptions::new().with_user(user, pw);
    Client::connect([srv.endpoint()], Some(opts)).await.unwrap()
}

fn shown<T>(r: Result<T, etcd_client::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(etcd_client::Error::GRpcStatus(s)) => format!("{:?}: {}", s.code(), s.message()),
        Err(e) => format!("error {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_election_need_permission_on_their_keys() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let c = srv.client().await;
        let mut a = c.auth_client();
        a.user_add("root", "rpw", None).await.unwrap();
        a.role_add("root").await.unwrap();
        a.user_grant_role("root", "root").await.unwrap();
        a.role_add("rw").await.unwrap();
        a.role_grant_permission("rw", Permission::read_write("lk/").with_prefix())
            .await
            .unwrap();
        a.role_add("ro").await.unwrap();
        a.role_grant_permission("ro", Permission::read("lk/").with_prefix())
            .await
            .unwrap();
        for (u, role) in [("alice", Some("rw")), ("bob", Some("ro")), ("carol", None)] {
            a.user_add(u, "pw", None).await.unwrap();
            if let Some(r) = role {
                a.user_grant_role(u, r).await.unwrap();
            }
        }
        a.auth_enable().await.unwrap();

        let mut t = Vec::new();
        for user in ["alice", "bob", "carol"] {
            let mut cl = as_user(&srv, user, "pw").await;
            let lease = cl.lease_grant(60, None).await.unwrap().id();
            let opts = LockOptions::new().with_lease(lease);
            let lock = cl.lock("lk/m", Some(opts)).await;
            let held = lock.as_ref().ok().map(|l| l.key().to_vec());
            t.push(format!("{user} lock: {}", shown(lock)));
            if let Some(k) = held {
                t.push(format!("{user} unlock: {}", shown(cl.unlock(k).await)));
            }
            let camp = cl.campaign("lk/e", user, lease).await;
            let leader = camp.as_ref().ok().and_then(|r| r.leader().cloned());
            t.push(format!("{user} campaign: {}", shown(camp)));
            if let Some(l) = leader {
                let r = cl
                    .proclaim(
                        "v2",
                        Some(etcd_client::ProclaimOptions::new().with_leader(l.clone())),
                    )
                    .await;
                t.push(format!("{user} proclaim: {}", shown(r)));
                let r = cl.leader("lk/e").await.map(|r| {
                    r.kv()
                        .map(|kv| kv.value_str().unwrap_or_default().to_string())
                });
                t.push(format!("{user} leader: {r:?}", r = r.ok().flatten()));
                let r = cl
                    .resign(Some(etcd_client::ResignOptions::new().with_leader(l)))
                    .await;
                t.push(format!("{user} resign: {}", shown(r)));
            }
            // Nothing of a refused user is left under the names.
            let mut root = as_user(&srv, "root", "rpw").await;
            let left = root
                .get("lk/", Some(etcd_client::GetOptions::new().with_prefix()))
                .await
                .unwrap();
            t.push(format!("after {user}: {} keys under lk/", left.kvs().len()));
        }
        for l in &t {
            eprintln!("[{kind}] {l}");
        }
        t
    })
    .await;
}
