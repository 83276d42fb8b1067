//! The readers-writer lock and the semaphore against real servers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use kv_client::{Client, GetOptions};
use kv_discovery::Session;
use kv_discovery::recipes::{RwMutex, RwMutexGuard, Semaphore};
use tokio::task::JoinHandle;

use crate::child::{self, Child};
use crate::{Kind, Server, WAIT, on_both, within};

on_both!(
    rwmutex_writers_exclude_everyone,
    rwmutex_readers_share_and_block_writers,
    semaphore_never_exceeds_its_limit,
    semaphore_slot_freed_by_revoked_lease,
    semaphore_slot_freed_by_killed_process,
    rwmutex_write_lock_freed_by_killed_process,
    rwmutex_read_lock_freed_by_killed_process,
);

/// Reads the shared counter, waits, writes it + 1: loses updates unless
/// writers exclude each other.
async fn bump(client: &Client) {
    let r = client.get("counter", None).await.unwrap();
    let n: u64 = std::str::from_utf8(&r.kvs()[0].value)
        .unwrap()
        .parse()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    client
        .put("counter", (n + 1).to_string(), None)
        .await
        .unwrap();
}

async fn rwmutex_writers_exclude_everyone(kind: Kind) {
    const READERS: usize = 3;
    const WRITERS: usize = 3;
    const ROUNDS: usize = 4;
    let server = Server::start(kind).await;
    let client = server.client().await;
    client.put("counter", "0", None).await.unwrap();
    let readers = Arc::new(AtomicI64::new(0));
    let writer = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..READERS + WRITERS {
        let client = server.client().await;
        let (readers, writer) = (readers.clone(), writer.clone());
        tasks.push(tokio::spawn(async move {
            let session = Session::with_ttl(&client, 10).await.unwrap();
            let lock = RwMutex::new(&session, "rw");
            for _ in 0..ROUNDS {
                if i < READERS {
                    let g = lock.read().await.unwrap();
                    assert!(g.key().starts_with("rw/read/"));
                    readers.fetch_add(1, Ordering::SeqCst);
                    assert!(!writer.load(Ordering::SeqCst), "reader overlaps a writer");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    readers.fetch_sub(1, Ordering::SeqCst);
                    g.unlock().await.unwrap();
                } else {
                    let g = lock.write().await.unwrap();
                    assert!(g.key().starts_with("rw/write/"));
                    assert!(!writer.swap(true, Ordering::SeqCst), "two writers overlap");
                    assert_eq!(
                        readers.load(Ordering::SeqCst),
                        0,
                        "writer overlaps a reader"
                    );
                    bump(&client).await;
                    writer.store(false, Ordering::SeqCst);
                    g.unlock().await.unwrap();
                }
            }
            session.close().await.unwrap();
        }));
    }
    for t in tasks {
        within("a contender", WAIT * 3, t).await.unwrap();
    }
    let r = client.get("counter", None).await.unwrap();
    assert_eq!(
        r.kvs()[0].value,
        (WRITERS * ROUNDS).to_string().as_bytes(),
        "[{kind}] lost updates"
    );
    let left = client
        .get("rw/", GetOptions::new().with_prefix())
        .await
        .unwrap();
    assert!(left.kvs().is_empty(), "[{kind}] lock keys left");
}

async fn rwmutex_readers_share_and_block_writers(kind: Kind) {
    let server = Server::start(kind).await;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let c = server.client().await;
        sessions.push(Session::with_ttl(&c, 10).await.unwrap());
    }
    let lock = |i: usize| RwMutex::new(&sessions[i], "shared");
    let r1 = lock(0).read().await.unwrap();
    // A second reader gets in while the first holds.
    let r2 = within("a second reader", WAIT, lock(1).read())
        .await
        .unwrap();
    let w = {
        let l = lock(2);
        tokio::spawn(async move { l.write().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A reader arriving after a waiting writer queues behind it.
    let r3 = {
        let l = lock(3);
        tokio::spawn(async move { l.read().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !w.is_finished(),
        "[{kind}] writer got in with readers inside"
    );
    r1.unlock().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !w.is_finished(),
        "[{kind}] writer got in with a reader inside"
    );
    r2.unlock().await.unwrap();
    let wg = within("the writer", WAIT, w).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !r3.is_finished(),
        "[{kind}] reader got in with a writer inside"
    );
    wg.unlock().await.unwrap();
    let rg = within("the last reader", WAIT, r3).await.unwrap().unwrap();
    rg.unlock().await.unwrap();
}

async fn semaphore_never_exceeds_its_limit(kind: Kind) {
    const LIMIT: u32 = 2;
    const TASKS: usize = 5;
    const ROUNDS: usize = 3;
    let server = Server::start(kind).await;
    let holders = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let client = server.client().await;
        let (holders, peak) = (holders.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let session = Session::with_ttl(&client, 10).await.unwrap();
            let sem = Semaphore::new(&session, "sem", LIMIT).unwrap();
            for _ in 0..ROUNDS {
                let p = sem.acquire().await.unwrap();
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(now <= LIMIT as usize, "{now} holders");
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                p.release().await.unwrap();
            }
            session.close().await.unwrap();
        }));
    }
    for t in tasks {
        within("a contender", WAIT * 3, t).await.unwrap();
    }
    // Deterministically: exactly LIMIT permits are free at once.
    let client = server.client().await;
    let s = Session::with_ttl(&client, 10).await.unwrap();
    let sem = Semaphore::new(&s, "sem", LIMIT).unwrap();
    let a = sem.try_acquire().await.unwrap().expect("first permit");
    let b = sem.try_acquire().await.unwrap().expect("second permit");
    assert!(
        sem.try_acquire().await.unwrap().is_none(),
        "[{kind}] third permit"
    );
    a.release().await.unwrap();
    b.release().await.unwrap();
    let left = client
        .get("sem/", GetOptions::new().with_prefix())
        .await
        .unwrap();
    assert!(left.kvs().is_empty(), "[{kind}] semaphore keys left");
}

async fn semaphore_slot_freed_by_revoked_lease(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let s1 = Session::with_ttl(&client, 10).await.unwrap();
    let s2 = Session::with_ttl(&server.client().await, 10).await.unwrap();
    let held = Semaphore::new(&s1, "one", 1)
        .unwrap()
        .acquire()
        .await
        .unwrap();
    let waiter = {
        let sem = Semaphore::new(&s2, "one", 1).unwrap();
        tokio::spawn(async move { sem.acquire().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "[{kind}] two holders of one permit");
    // The holder's lease ends while it still runs.
    client.lease_revoke(s1.lease_id()).await.unwrap();
    let p = within("the waiter", WAIT, waiter).await.unwrap().unwrap();
    let txn = kv_client::Txn::new()
        .when([held.is_holder()])
        .and_then([kv_client::TxnOp::put("fenced", "old", None)]);
    assert!(
        !client.txn(txn).await.unwrap().succeeded(),
        "[{kind}] fencing"
    );
    p.release().await.unwrap();
}

/// Not a test by itself: the holder process of the killed-holder tests,
/// which run this test binary again with only this (ignored) test. Its
/// argument: `semaphore`, `read` or `write`.
#[tokio::test]
#[ignore = "helper process, started by the killed-holder tests"]
async fn sync_child_holder() {
    let Some((endpoint, what)) = child::role() else {
        return;
    };
    let session = child::session(&endpoint).await;
    let lock = RwMutex::new(&session, "killed-rw");
    // Each arm holds until killed: nothing is released.
    match what.as_str() {
        "semaphore" => {
            let sem = Semaphore::new(&session, "killed", 1).unwrap();
            let p = sem.acquire().await.unwrap();
            child::say("HOLDING", p.key());
            child::hold().await;
        }
        "read" => {
            let g = lock.read().await.unwrap();
            child::say("HOLDING", g.key());
            child::hold().await;
        }
        "write" => {
            let g = lock.write().await.unwrap();
            child::say("HOLDING", g.key());
            child::hold().await;
        }
        other => panic!("unknown child role {other}"),
    }
}

/// Starts a child holding `what` and returns it with its key.
async fn child_holding(server: &Server, what: &str) -> (Child, String) {
    let mut c = Child::spawn("recipes_sync::sync_child_holder", &server.endpoint(), what);
    let key = c.expect("HOLDING").await;
    (c, key)
}

async fn semaphore_slot_freed_by_killed_process(kind: Kind) {
    let server = Server::start(kind).await;
    let (mut child, key) = child_holding(&server, "semaphore").await;
    let client = server.client().await;
    assert!(child::exists(&client, &key).await);
    let s = Session::with_ttl(&client, 10).await.unwrap();
    let sem = Semaphore::new(&s, "killed", 1).unwrap();
    assert!(
        sem.try_acquire().await.unwrap().is_none(),
        "[{kind}] slot free while held"
    );
    let waiter = {
        let sem = sem.clone();
        tokio::spawn(async move { sem.acquire().await })
    };
    // SIGKILL: no cleanup runs in the child; only its lease expiry frees
    // the slot.
    child.kill();
    let p = within("the slot of the killed holder", WAIT, waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(!child::exists(&client, &key).await);
    p.release().await.unwrap();
}

/// Takes `lock` (for writing if `write`) in a task that also tells whether
/// the killed child's `key` still existed right after it got the lock.
fn lock_in_task(
    client: &Client,
    lock: RwMutex,
    write: bool,
    key: &str,
) -> JoinHandle<(RwMutexGuard, bool)> {
    let (client, key) = (client.clone(), key.to_string());
    tokio::spawn(async move {
        let g = if write {
            lock.write().await
        } else {
            lock.read().await
        };
        let early = child::exists(&client, &key).await;
        (g.unwrap(), early)
    })
}

async fn rwmutex_write_lock_freed_by_killed_process(kind: Kind) {
    let server = Server::start(kind).await;
    let (mut child, key) = child_holding(&server, "write").await;
    assert!(key.starts_with("killed-rw/write/"), "[{kind}] {key}");
    let client = server.client().await;
    let rs = Session::with_ttl(&server.client().await, 10).await.unwrap();
    let ws = Session::with_ttl(&server.client().await, 10).await.unwrap();
    // A reader, then a writer, queue behind the child's write lock.
    let reader = lock_in_task(&client, RwMutex::new(&rs, "killed-rw"), false, &key);
    child::keys_under(&client, "killed-rw/read/", 1).await;
    let writer = lock_in_task(&client, RwMutex::new(&ws, "killed-rw"), true, &key);
    child::keys_under(&client, "killed-rw/write/", 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !reader.is_finished() && !writer.is_finished(),
        "[{kind}] locked beside the child's write lock"
    );
    // SIGKILL: only the child's lease expiry removes its key.
    child.kill();
    let (r, early) = within("the reader", WAIT, reader).await.unwrap();
    assert!(
        !early,
        "[{kind}] reader got in before the killed writer's key expired"
    );
    // The writer queued behind the reader, so it waits for it too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!writer.is_finished(), "[{kind}] writer overlaps a reader");
    r.unlock().await.unwrap();
    let (w, early) = within("the writer", WAIT, writer).await.unwrap();
    assert!(!early, "[{kind}] writer got in before the key expired");
    w.unlock().await.unwrap();
    rs.close().await.unwrap();
    ws.close().await.unwrap();
    child::keys_under(&client, "killed-rw/", 0).await;
}

async fn rwmutex_read_lock_freed_by_killed_process(kind: Kind) {
    let server = Server::start(kind).await;
    let (mut child, key) = child_holding(&server, "read").await;
    assert!(key.starts_with("killed-rw/read/"), "[{kind}] {key}");
    let client = server.client().await;
    let s = Session::with_ttl(&server.client().await, 10).await.unwrap();
    let lock = RwMutex::new(&s, "killed-rw");
    // Readers share with the child.
    let r = within("a reader beside the child", WAIT, lock.read())
        .await
        .unwrap();
    r.unlock().await.unwrap();
    let writer = lock_in_task(&client, lock, true, &key);
    child::keys_under(&client, "killed-rw/write/", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !writer.is_finished(),
        "[{kind}] writer got in beside the child's read lock"
    );
    child.kill();
    let (w, early) = within("the writer", WAIT, writer).await.unwrap();
    assert!(
        !early,
        "[{kind}] writer got in before the killed reader's key expired"
    );
    w.unlock().await.unwrap();
    s.close().await.unwrap();
    child::keys_under(&client, "killed-rw/", 0).await;
}
