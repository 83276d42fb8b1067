//! etcd's server-side concurrency services, v3lockpb.Lock and
//! v3electionpb.Election, driven through the `etcd-client` crate against kvd
//! and etcd (same transcript), plus a lock taken through a cluster follower.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::*;
use etcd_client::{Client, GetOptions, LockOptions, ProclaimOptions, ResignOptions};
use tokio::task::JoinHandle;

/// Long enough that no lease in these tests expires by itself.
const TTL: i64 = 60;
/// How long a waiter is left blocked before we check it is still waiting.
/// Only a lower bound on "still blocked": a longer machine stall cannot make
/// the check fail, only weaker.
const STILL_BLOCKED: Duration = Duration::from_millis(300);

/// Prints a transcript (shown with --nocapture, and on failure) and returns it.
fn shown(kind: Kind, t: Vec<String>) -> Vec<String> {
    for line in &t {
        eprintln!("[{kind}] {line}");
    }
    t
}

/// A client error as a transcript line: gRPC code and exact message.
fn err_line(e: &etcd_client::Error) -> String {
    let (code, msg) = grpc_status(e);
    format!("{code:?}: {msg}")
}

/// Replaces each lease id (as etcd prints it in keys: lowercase hex) by a
/// stable name, so transcripts compare across servers.
struct Masks(Vec<(String, String)>);

impl Masks {
    fn new() -> Self {
        Masks(Vec::new())
    }

    fn add(&mut self, lease: i64, name: &str) {
        self.0.push((format!("{lease:x}"), name.to_string()));
    }

    fn key(&self, key: &[u8]) -> String {
        let mut s = String::from_utf8_lossy(key).into_owned();
        for (hex, name) in &self.0 {
            if let Some(rest) = s.strip_suffix(hex.as_str()) {
                s = format!("{rest}<{name}>");
            }
        }
        s
    }
}

async fn grant(c: &mut Client) -> i64 {
    c.lease_grant(TTL, None).await.expect("grant").id()
}

/// Keys under `prefix`, oldest creation first.
async fn waiters(c: &mut Client, prefix: &str) -> usize {
    let opts = GetOptions::new().with_prefix().with_count_only();
    c.get(prefix, Some(opts)).await.expect("get").count() as usize
}

/// Waits until `n` keys exist under `prefix` (a waiter has queued itself).
async fn wait_waiters(c: &mut Client, prefix: &str, n: usize) {
    wait_until(&format!("{n} keys under {prefix}"), WAIT_TIMEOUT, || {
        let mut c = c.clone();
        let prefix = prefix.to_string();
        async move { (waiters(&mut c, &prefix).await == n).then_some(()) }
    })
    .await;
}

fn spawn_lock(c: &Client, name: &str, lease: i64) -> JoinHandle<Result<(Vec<u8>, i64), String>> {
    let mut lc = c.lock_client();
    let name = name.to_string();
    tokio::spawn(async move {
        lc.lock(name, Some(LockOptions::new().with_lease(lease)))
            .await
            .map(|r| (r.key().to_vec(), rev(r.header())))
            .map_err(|e| err_line(&e))
    })
}

/// Asserts a spawned waiter is still blocked after a while.
async fn still_blocked<T>(what: &str, h: &JoinHandle<T>) {
    tokio::time::sleep(STILL_BLOCKED).await;
    assert!(!h.is_finished(), "{what} finished while it should wait");
}

#[tokio::test]
async fn lock_excludes_until_unlock() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut lc = c.lock_client();
        let mut m = Masks::new();
        let mut t = Vec::new();
        let (l1, l2) = (grant(&mut c).await, grant(&mut c).await);
        m.add(l1, "l1");
        m.add(l2, "l2");

        let r = lc
            .lock("mylock", Some(LockOptions::new().with_lease(l1)))
            .await
            .unwrap();
        t.push(format!("lock1 {} rev {}", m.key(r.key()), rev(r.header())));
        let key1 = r.key().to_vec();
        let kv = c.get(key1.clone(), None).await.unwrap();
        let kv = &kv.kvs()[0];
        t.push(format!(
            "held value={:?} lease_is_l1={}",
            kv.value_str().unwrap(),
            kv.lease() == l1
        ));
        // Locking again with the same lease is the same acquisition.
        let r = lc
            .lock("mylock", Some(LockOptions::new().with_lease(l1)))
            .await
            .unwrap();
        t.push(format!("relock {} rev {}", m.key(r.key()), rev(r.header())));

        let second = spawn_lock(&c, "mylock", l2);
        wait_waiters(&mut c, "mylock/", 2).await;
        still_blocked("second lock", &second).await;

        let u = lc.unlock(key1).await.unwrap();
        t.push(format!("unlock1 rev {}", rev(u.header())));
        let (key2, r2) = within("second lock", WAIT_TIMEOUT, second)
            .await
            .unwrap()
            .unwrap();
        t.push(format!("lock2 {} rev {r2}", m.key(&key2)));
        let u = lc.unlock(key2.clone()).await.unwrap();
        t.push(format!("unlock2 rev {}", rev(u.header())));
        // Unlocking a key that is gone is not an error.
        let u = lc.unlock(key2).await.unwrap();
        t.push(format!("unlock again rev {}", rev(u.header())));
        shown(kind, t)
    })
    .await;
}

#[tokio::test]
async fn lock_order_follows_create_revision() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut lc = c.lock_client();
        let mut m = Masks::new();
        let mut t = Vec::new();
        let mut leases = Vec::new();
        for i in 1..=3 {
            let l = grant(&mut c).await;
            m.add(l, &format!("l{i}"));
            leases.push(l);
        }
        let r = lc
            .lock("q", Some(LockOptions::new().with_lease(leases[0])))
            .await
            .unwrap();
        let key1 = r.key().to_vec();
        let w2 = spawn_lock(&c, "q", leases[1]);
        wait_waiters(&mut c, "q/", 2).await;
        let w3 = spawn_lock(&c, "q", leases[2]);
        wait_waiters(&mut c, "q/", 3).await;

        lc.unlock(key1).await.unwrap();
        let (key2, r2) = within("lock 2", WAIT_TIMEOUT, w2).await.unwrap().unwrap();
        t.push(format!("first waiter {} rev {r2}", m.key(&key2)));
        still_blocked("third lock", &w3).await;
        lc.unlock(key2).await.unwrap();
        let (key3, r3) = within("lock 3", WAIT_TIMEOUT, w3).await.unwrap().unwrap();
        t.push(format!("second waiter {} rev {r3}", m.key(&key3)));
        shown(kind, t)
    })
    .await;
}

#[tokio::test]
async fn lease_revoke_releases_and_expires_locks() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut lc = c.lock_client();
        let mut m = Masks::new();
        let mut t = Vec::new();
        let (l1, l2, l3) = (
            grant(&mut c).await,
            grant(&mut c).await,
            grant(&mut c).await,
        );
        m.add(l1, "l1");
        m.add(l2, "l2");
        m.add(l3, "l3");
        lc.lock("rv", Some(LockOptions::new().with_lease(l1)))
            .await
            .unwrap();
        let w2 = spawn_lock(&c, "rv", l2);
        wait_waiters(&mut c, "rv/", 2).await;
        let w3 = spawn_lock(&c, "rv", l3);
        wait_waiters(&mut c, "rv/", 3).await;

        // The holder's lease goes: the next waiter gets the lock.
        let r = c.lease_revoke(l1).await.unwrap();
        t.push(format!("revoke l1 rev {}", rev(r.header())));
        let (key2, r2) = within("lock 2", WAIT_TIMEOUT, w2).await.unwrap().unwrap();
        t.push(format!("after revoke {} rev {r2}", m.key(&key2)));

        // A waiter whose own lease goes while it waits.
        let r = c.lease_revoke(l3).await.unwrap();
        t.push(format!("revoke l3 rev {}", rev(r.header())));
        still_blocked("lock 3", &w3).await;
        let u = lc.unlock(key2).await.unwrap();
        t.push(format!("unlock2 rev {}", rev(u.header())));
        let out = within("lock 3", WAIT_TIMEOUT, w3).await.unwrap();
        // etcd 3.5+ reports the lost key; Debian's etcd 3.4.23 still
        // answers as if the lock were held. kvd follows 3.5.
        match kind {
            Kvd => assert_eq!(
                out,
                Err("Unknown: mutex: session is expired".to_string()),
                "[kvd] waiter whose lease was revoked"
            ),
            Etcd => {
                let (k, r) = out.expect("etcd 3.4 grants the expired waiter");
                assert_eq!((m.key(&k), r), ("rv/<l3>".to_string(), 7));
            }
        }
        t.push(format!("keys left {}", waiters(&mut c, "rv/").await));
        shown(kind, t)
    })
    .await;
}

#[tokio::test]
async fn lock_errors_and_implicit_lease() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut lc = c.lock_client();
        let mut t = Vec::new();
        let r = lc
            .lock("nl", Some(LockOptions::new().with_lease(0x7777)))
            .await;
        t.push(format!("missing lease: {}", err_line(&r.unwrap_err())));
        t.push(format!("keys left {}", waiters(&mut c, "nl/").await));
        let r = lc.unlock("").await;
        t.push(format!("unlock empty key: {}", err_line(&r.unwrap_err())));

        // Lease 0: the server grants a session lease of its own.
        let r = lc.lock("implicit", None).await.unwrap();
        let key = r.key().to_vec();
        let got = c.get(key.clone(), None).await.unwrap();
        let lease = got.kvs()[0].lease();
        let hex = String::from_utf8_lossy(&key).into_owned();
        t.push(format!(
            "implicit key named by its lease: {}",
            hex == format!("implicit/{lease:x}")
        ));
        let ttl = c.lease_time_to_live(lease, None).await.unwrap();
        t.push(format!("implicit lease granted ttl {}", ttl.granted_ttl()));
        t.push(format!("rev {}", rev(r.header())));
        shown(kind, t)
    })
    .await;
}

#[tokio::test]
async fn cancelled_lock_leaves_no_key() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut lc = c.lock_client();
        let mut t = Vec::new();
        let (l1, l2) = (grant(&mut c).await, grant(&mut c).await);
        let r = lc
            .lock("cx", Some(LockOptions::new().with_lease(l1)))
            .await
            .unwrap();
        let w = spawn_lock(&c, "cx", l2);
        wait_waiters(&mut c, "cx/", 2).await;
        // The caller goes away: its queued key is removed (etcd's mutex
        // deletes its key when the wait fails).
        w.abort();
        let _ = w.await;
        wait_waiters(&mut c, "cx/", 1).await;
        let got = c
            .get("cx/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        t.push(format!("holder kept: {}", got.kvs()[0].key() == r.key()));

        // Same for a candidate that stops campaigning (etcd resigns it).
        let mut ec = c.election_client();
        let r = ec.campaign("ce", "a", l1).await.unwrap();
        let mut ec2 = c.election_client();
        let w = tokio::spawn(async move { ec2.campaign("ce", "b", l2).await });
        wait_waiters(&mut c, "ce/", 2).await;
        w.abort();
        let _ = w.await;
        wait_waiters(&mut c, "ce/", 1).await;
        let got = ec.leader("ce").await.unwrap();
        t.push(format!(
            "leader kept: {}",
            got.kv().unwrap().key() == r.leader().unwrap().key()
        ));
        shown(kind, t)
    })
    .await;
}

fn leader_line(m: &Masks, r: &etcd_client::LeaderResponse) -> String {
    let kv = r.kv().expect("leader kv");
    format!(
        "{}={} c{} m{} rev {}",
        m.key(kv.key()),
        String::from_utf8_lossy(kv.value()),
        kv.create_revision(),
        kv.mod_revision(),
        rev(r.header())
    )
}

#[tokio::test]
async fn election_campaign_proclaim_resign_observe() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut ec = c.election_client();
        let mut m = Masks::new();
        let mut t = Vec::new();
        let (l1, l2) = (grant(&mut c).await, grant(&mut c).await);
        m.add(l1, "l1");
        m.add(l2, "l2");

        let r = ec.leader("nobody").await;
        t.push(format!("empty leader: {}", err_line(&r.unwrap_err())));

        // Observing before anyone campaigns: the first leader is reported.
        // (The call itself returns only once there is a leader to report.)
        let (otx, mut orx) = tokio::sync::mpsc::unbounded_channel();
        let mut oc = c.election_client();
        let observer = tokio::spawn(async move {
            let mut obs = oc.observe("elec").await?;
            while let Some(r) = obs.message().await? {
                if otx.send(r).is_err() {
                    break;
                }
            }
            Ok::<_, etcd_client::Error>(())
        });

        let r = ec.campaign("elec", "v1", l1).await.unwrap();
        let lk1 = r.leader().unwrap().clone();
        t.push(format!(
            "campaign1 name={} key={} rev={} lease_is_l1={} hdr {}",
            String::from_utf8_lossy(lk1.name()),
            m.key(lk1.key()),
            lk1.rev(),
            lk1.lease() == l1,
            rev(r.header())
        ));
        let r = ec.leader("elec").await.unwrap();
        t.push(format!("leader {}", leader_line(&m, &r)));

        let mut ec2 = c.election_client();
        let second = tokio::spawn(async move { ec2.campaign("elec", "v2", l2).await });
        wait_waiters(&mut c, "elec/", 2).await;
        still_blocked("second campaign", &second).await;

        let r = ec
            .proclaim("v1b", Some(ProclaimOptions::new().with_leader(lk1.clone())))
            .await
            .unwrap();
        t.push(format!("proclaim rev {}", rev(r.header())));
        let r = ec
            .resign(Some(ResignOptions::new().with_leader(lk1.clone())))
            .await
            .unwrap();
        t.push(format!("resign rev {}", rev(r.header())));
        let r = within("second campaign", WAIT_TIMEOUT, second)
            .await
            .unwrap()
            .unwrap();
        let lk2 = r.leader().unwrap().clone();
        t.push(format!(
            "campaign2 key={} rev={} hdr {}",
            m.key(lk2.key()),
            lk2.rev(),
            rev(r.header())
        ));
        let r = ec.leader("elec").await.unwrap();
        t.push(format!("leader {}", leader_line(&m, &r)));

        for _ in 0..3 {
            let r = within("observe", WAIT_TIMEOUT, orx.recv())
                .await
                .expect("observe stream open");
            t.push(format!("observed {}", leader_line(&m, &r)));
        }

        // The old leader key no longer leads.
        let r = ec
            .proclaim(
                "late",
                Some(ProclaimOptions::new().with_leader(lk1.clone())),
            )
            .await;
        t.push(format!("stale proclaim: {}", err_line(&r.unwrap_err())));
        let r = ec
            .resign(Some(ResignOptions::new().with_leader(lk1.clone())))
            .await;
        t.push(format!(
            "stale resign: {:?}",
            r.map(|r| rev(r.header())).map_err(|e| err_line(&e))
        ));
        let r = ec.proclaim("nokey", None).await;
        t.push(format!(
            "proclaim without leader: {}",
            err_line(&r.unwrap_err())
        ));
        let r = ec.resign(None).await;
        t.push(format!(
            "resign without leader: {}",
            err_line(&r.unwrap_err())
        ));
        let r = ec.campaign("other", "x", 0x7777).await;
        t.push(format!(
            "campaign missing lease: {}",
            err_line(&r.unwrap_err())
        ));

        // Campaigning again with the leader's lease and a new value proclaims it.
        let r = ec.campaign("elec", "v2b", l2).await.unwrap();
        let lk = r.leader().unwrap();
        t.push(format!(
            "recampaign key={} rev={} hdr {}",
            m.key(lk.key()),
            lk.rev(),
            rev(r.header())
        ));
        let r = within("observe", WAIT_TIMEOUT, orx.recv())
            .await
            .expect("observe stream open");
        t.push(format!("observed {}", leader_line(&m, &r)));
        let r = ec
            .resign(Some(ResignOptions::new().with_leader(lk.clone())))
            .await
            .unwrap();
        t.push(format!("resign2 rev {}", rev(r.header())));
        let r = ec.leader("elec").await;
        t.push(format!("no leader left: {}", err_line(&r.unwrap_err())));
        observer.abort();
        shown(kind, t)
    })
    .await;
}

#[tokio::test]
async fn lock_through_a_follower() {
    kvd_only(|| async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let mut f1 = cluster.client(followers[0]).await;
        let mut f2 = cluster.client(followers[1]).await;
        let mut lead = cluster.client(leader).await;
        let l1 = grant(&mut f1).await;
        let l2 = grant(&mut f2).await;

        let r = f1
            .lock_client()
            .lock("fl", Some(LockOptions::new().with_lease(l1)))
            .await
            .unwrap();
        assert_eq!(r.key(), format!("fl/{l1:x}").as_bytes());
        let key1 = r.key().to_vec();
        let w = spawn_lock(&f2, "fl", l2);
        wait_waiters(&mut lead, "fl/", 2).await;
        still_blocked("follower lock", &w).await;
        let u = lead.lock_client().unlock(key1).await.unwrap();
        let (key2, r2) = within("follower lock", WAIT_TIMEOUT, w)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(key2, format!("fl/{l2:x}").as_bytes());
        assert!(r2 >= rev(u.header()), "lock after the unlock");

        let mut ec = f2.election_client();
        let r = ec.campaign("fe", "v", l2).await.unwrap();
        let got = lead.election_client().leader("fe").await.unwrap();
        assert_eq!(got.kv().unwrap().key(), r.leader().unwrap().key());
        let mut obs = f1.election_client().observe("fe").await.unwrap();
        let seen = within("observe on a follower", WAIT_TIMEOUT, obs.message())
            .await
            .unwrap()
            .expect("a leader");
        assert_eq!(seen.kv().unwrap().value(), b"v");
        ec.proclaim(
            "v2",
            Some(ProclaimOptions::new().with_leader(r.leader().unwrap().clone())),
        )
        .await
        .unwrap();
        let seen = within("observe on a follower", WAIT_TIMEOUT, obs.message())
            .await
            .unwrap()
            .expect("the new value");
        assert_eq!(seen.kv().unwrap().value(), b"v2");
    })
    .await;
}
