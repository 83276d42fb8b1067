//! The readers-writer lock and the semaphore against real servers.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use kv_client::{Client, GetOptions};
use kv_discovery::Session;
use kv_discovery::recipes::{RwMutex, Semaphore};

use crate::{Kind, Server, WAIT, fast_config, on_both, within};

on_both!(
    rwmutex_writers_exclude_everyone,
    rwmutex_readers_share_and_block_writers,
    semaphore_never_exceeds_its_limit,
    semaphore_slot_freed_by_revoked_lease,
    semaphore_slot_freed_by_killed_process,
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

/// Env var naming the endpoint for [`semaphore_child_holder`].
const CHILD_ENDPOINT: &str = "KV_RECIPES_CHILD_ENDPOINT";

/// Not a test by itself: the holder process of
/// `semaphore_slot_freed_by_killed_process`, which runs this test binary
/// again with only this (ignored) test and kills it.
#[tokio::test]
#[ignore = "helper process, started by semaphore_slot_freed_by_killed_process"]
async fn semaphore_child_holder() {
    let Ok(endpoint) = std::env::var(CHILD_ENDPOINT) else {
        return;
    };
    let client = Client::connect(fast_config(endpoint)).await.unwrap();
    let session = Session::with_ttl(&client, 2).await.unwrap();
    let p = Semaphore::new(&session, "killed", 1)
        .unwrap()
        .acquire()
        .await
        .unwrap();
    println!("HOLDING {}", p.key());
    // Hold until killed (bounded, in case the parent vanished).
    tokio::time::sleep(Duration::from_secs(120)).await;
}

async fn semaphore_slot_freed_by_killed_process(kind: Kind) {
    let server = Server::start(kind).await;
    let exe = std::env::current_exe().unwrap();
    let mut child = KillOnDrop(
        Command::new(exe)
            .args([
                "recipes_sync::semaphore_child_holder",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENDPOINT, server.endpoint())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let key = within(
        "the child to hold",
        WAIT,
        tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(|l| l.ok())
                // libtest prints the test name on the same line first.
                .find_map(|l| l.split_once("HOLDING ").map(|(_, k)| k.to_string()))
        }),
    )
    .await
    .unwrap();
    let Some(key) = key else {
        panic!("[{kind}] the child exited without holding");
    };
    let client = server.client().await;
    assert_eq!(client.get(key.as_str(), None).await.unwrap().kvs().len(), 1);
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
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let p = within("the slot of the killed holder", WAIT, waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        client
            .get(key.as_str(), None)
            .await
            .unwrap()
            .kvs()
            .is_empty()
    );
    p.release().await.unwrap();
}

/// Kills the child process if the test ends early (a failed assertion).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
