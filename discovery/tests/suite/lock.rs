//! The mutex against real servers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use kv_client::{Txn, TxnOp};
use kv_discovery::{Error, Mutex, Session};

use crate::{Kind, Server, WAIT, on_both, within};

on_both!(
    contenders_increment_a_counter_exactly,
    try_lock_and_canceled_waiters,
    lost_session_fails_the_owner_guard,
);

async fn contenders_increment_a_counter_exactly(kind: Kind) {
    const TASKS: usize = 4;
    const ROUNDS: usize = 5;
    let server = Server::start(kind).await;
    let client = server.client().await;
    client.put("counter", "0", None).await.unwrap();
    let inside = Arc::new(AtomicBool::new(false));
    let tokens = Arc::new(StdMutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        // Each contender has its own client and session, like a process.
        let client = server.client().await;
        let (inside, tokens) = (inside.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            let session = Session::with_ttl(&client, 10).await.unwrap();
            let m = Mutex::new(&session, "counter-lock");
            for _ in 0..ROUNDS {
                let guard = m.lock().await.unwrap();
                assert!(!inside.swap(true, Ordering::SeqCst), "two holders overlap");
                tokens.lock().unwrap().push(guard.fencing_token());
                // Read-modify-write with no other protection than the lock.
                let n: u64 = {
                    let r = client.get("counter", None).await.unwrap();
                    std::str::from_utf8(&r.kvs()[0].value)
                        .unwrap()
                        .parse()
                        .unwrap()
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
                client
                    .put("counter", (n + 1).to_string(), None)
                    .await
                    .unwrap();
                inside.store(false, Ordering::SeqCst);
                guard.unlock().await.unwrap();
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
        (TASKS * ROUNDS).to_string().as_bytes(),
        "[{kind}]"
    );
    let tokens = tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), TASKS * ROUNDS);
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "[{kind}] tokens {tokens:?}"
    );
    let left = client
        .get("counter-lock/", kv_client::GetOptions::new().with_prefix())
        .await
        .unwrap();
    assert!(left.kvs().is_empty(), "[{kind}] lock keys left behind");
}

async fn try_lock_and_canceled_waiters(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let s1 = Session::with_ttl(&client, 10).await.unwrap();
    let s2 = Session::with_ttl(&client, 10).await.unwrap();
    let m1 = Mutex::new(&s1, "tl");
    let m2 = Mutex::new(&s2, "tl");
    let g1 = m1.try_lock().await.unwrap();
    assert_eq!(g1.key(), format!("tl/{:x}", s1.lease_id()));
    assert_eq!(m2.try_lock().await.unwrap_err(), Error::Locked);
    // try_lock withdrew its key.
    assert!(client.get(m2.key(), None).await.unwrap().kvs().is_empty());
    // A waiter that gives up withdraws too.
    let e = m2
        .lock_timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(e, Error::Client(kv_client::Error::Timeout));
    within("the waiter key to go", WAIT, async {
        while !client.get(m2.key(), None).await.unwrap().kvs().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // A waiter gets the lock when the holder releases it.
    let waiter = tokio::spawn(async move { m2.lock().await.map(|g| (g.fencing_token(), g)) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "[{kind}] acquired a held lock");
    let t1 = g1.fencing_token();
    g1.unlock().await.unwrap();
    let (t2, g2) = within("the waiter", WAIT, waiter).await.unwrap().unwrap();
    assert!(t2 > t1);
    g2.unlock().await.unwrap();
}

async fn lost_session_fails_the_owner_guard(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let s1 = Session::with_ttl(&client, 10).await.unwrap();
    let s2 = Session::with_ttl(&client, 10).await.unwrap();
    let g1 = Mutex::new(&s1, "fence").lock().await.unwrap();
    let waiter = {
        let m2 = Mutex::new(&s2, "fence");
        tokio::spawn(async move { m2.lock().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The holder's lease ends while it still runs.
    client.lease_revoke(s1.lease_id()).await.unwrap();
    within("the holder to learn", WAIT, g1.session_lost()).await;
    let g2 = within("the next holder", WAIT, waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(g2.fencing_token() > g1.fencing_token());
    // The old holder's guarded write is refused.
    let txn = Txn::new()
        .when([g1.is_owner()])
        .and_then([TxnOp::put("fenced", "old holder", None)]);
    assert!(!client.txn(txn).await.unwrap().succeeded());
    let txn = Txn::new()
        .when([g2.is_owner()])
        .and_then([TxnOp::put("fenced", "new holder", None)]);
    assert!(client.txn(txn).await.unwrap().succeeded());
}
