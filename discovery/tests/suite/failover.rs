//! A 3-member cluster whose members are killed and restarted meanwhile:
//! every increment made under the mutex counts exactly once, and a
//! subscription keeps the exact set through the watch resumes.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use kv_client::{Client, Compare, CompareOp, Txn, TxnOp};
use kv_discovery::{Mutex, Session};

use crate::cluster::Cluster;
use crate::{Kind, WAIT, on_both, within};

on_both!(
    counter_survives_member_kills,
    subscription_survives_member_kills
);

const TASKS: usize = 3;
const ROUNDS: usize = 6;

/// The counter as stored: `<count>:<id of the increment that wrote it>`.
fn parse(v: &[u8]) -> (u64, String) {
    let s = std::str::from_utf8(v).unwrap();
    let (n, id) = s.split_once(':').unwrap();
    (n.parse().unwrap(), id.to_string())
}

async fn counter_survives_member_kills(kind: Kind) {
    let mut cluster = Cluster::start(kind, 3, &[], None).await;
    let client = Client::connect(cluster.config()).await.unwrap();
    client.put("counter", "0:init", None).await.unwrap();
    let holder = Arc::new(AtomicI64::new(0));
    let tokens = Arc::new(StdMutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let client = Client::connect(cluster.config()).await.unwrap();
        let (holder, tokens) = (holder.clone(), tokens.clone());
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            // At least ROUNDS increments, and on until the kills are over.
            let mut round = 0;
            while round < ROUNDS || !stop.load(Ordering::SeqCst) {
                increment(&client, &format!("t{t}r{round}"), &holder, &tokens).await;
                round += 1;
            }
            round
        }));
    }
    // Kill and restart each member in turn while the contenders run.
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cluster.kill9(i);
        tokio::time::sleep(Duration::from_millis(700)).await;
        cluster.restart(i).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for t in tasks {
        total += within("a contender", WAIT * 4, t).await.unwrap();
    }
    let r = client.get("counter", None).await.unwrap();
    assert_eq!(parse(&r.kvs()[0].value).0, total as u64, "[{kind}]");
    assert!(total >= TASKS * ROUNDS);
    let tokens = tokens.lock().unwrap().clone();
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "[{kind}] {tokens:?}"
    );
}

/// One increment under the lock, retried through failures until it is
/// known to have landed exactly once.
async fn increment(client: &Client, op: &str, holder: &AtomicI64, tokens: &StdMutex<Vec<i64>>) {
    loop {
        let Ok(session) = Session::with_ttl(client, 10).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let m = Mutex::new(&session, "counter-lock");
        let guard = match m.lock().await {
            Ok(g) => g,
            Err(_) => {
                let _ = session.close().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let me = session.lease_id();
        let prev = holder.swap(me, Ordering::SeqCst);
        if prev != 0 {
            // Overlap is allowed only once the previous holder's lease died.
            let ttl = loop {
                if let Ok(r) = client.lease_time_to_live(prev, false).await {
                    break r.ttl();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert_eq!(ttl, -1, "two live holders overlap");
        }
        tokens.lock().unwrap().push(guard.fencing_token());
        // Hold the lock a while, so the member kills hit holders too.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let done = write_once(client, op, &guard).await;
        let _ = holder.compare_exchange(me, 0, Ordering::SeqCst, Ordering::SeqCst);
        let _ = guard.unlock().await;
        let _ = session.close().await;
        if done {
            return;
        }
    }
}

/// Read-modify-write of the counter, fenced by the lock. `true` once our
/// write is known to have landed; `false` if it surely never will.
async fn write_once(client: &Client, op: &str, guard: &kv_discovery::LockGuard) -> bool {
    let Ok(r) = client.get("counter", None).await else {
        return false;
    };
    let kv = &r.kvs()[0];
    let (n, _) = parse(&kv.value);
    let txn = || {
        Txn::new()
            .when([
                guard.is_owner(),
                Compare::mod_revision("counter", CompareOp::Equal, kv.mod_revision),
            ])
            .and_then([TxnOp::put("counter", format!("{}:{op}", n + 1), None)])
    };
    let mut outcome = client.txn(txn()).await;
    loop {
        match outcome {
            Ok(resp) if resp.succeeded() => return true,
            // The compare failed: the counter moved (perhaps by an earlier
            // attempt of ours), or our lock key is gone, which is final.
            Ok(_) => return settled(client, op, kv.mod_revision).await.unwrap_or(false),
            // Unknown outcome: the counter tells whether our write landed.
            Err(_) => match settled(client, op, kv.mod_revision).await {
                Some(landed) => return landed,
                // Still unwritten: the attempt may yet be applied (a timed-out
                // request can still sit in a server's queue), so a read alone
                // cannot say it never will. The same compare-on-mod-revision
                // txn succeeds at most once, so sending it again settles it.
                None => outcome = client.txn(txn()).await,
            },
        }
    }
}

/// Whether our write landed, once the counter has moved past `after`: it
/// could only be the first write after `after` (the txn compared that mod
/// revision). `None` while the counter is still at `after`.
async fn settled(client: &Client, op: &str, after: i64) -> Option<bool> {
    loop {
        let Ok(r) = client.get("counter", None).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if r.kvs()[0].mod_revision == after {
            return None;
        }
        let opts = kv_client::WatchOptions::new().with_start_revision(after + 1);
        let Ok(mut w) = client.watch("counter", opts).await else {
            continue;
        };
        if let Some(Ok(batch)) = futures::StreamExt::next(&mut w).await
            && let Some(kv) = batch.events().first().and_then(|e| e.kv.as_ref())
        {
            return Some(parse(&kv.value).1 == op);
        }
    }
}

async fn subscription_survives_member_kills(kind: Kind) {
    use kv_discovery::{Registry, ServiceEvent, ServiceInstance};
    use std::collections::BTreeMap;

    let mut cluster = Cluster::start(kind, 3, &[], None).await;
    let client = Client::connect(cluster.config()).await.unwrap();
    let registry = Registry::new(client.clone()).with_ttl(10);
    let mut sub = registry.subscribe("svc").await.unwrap();
    let mut model = BTreeMap::new();
    let mut regs = Vec::new();
    for i in 0..3 {
        // Change the set while member i is down, and after it is back.
        cluster.kill9(i);
        for j in 0..2 {
            let inst = ServiceInstance::new("svc", "127.0.0.1:1").with_id(format!("m{i}-{j}"));
            let reg = loop {
                match registry.register(inst.clone()).await {
                    Ok(r) => break r,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            regs.push(reg);
        }
        cluster.restart(i).await;
        let gone = regs.remove(0);
        let id = gone.instance().id;
        loop {
            if registry.deregister("svc", &id).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(gone);
    }
    let want: Vec<String> = regs.iter().map(|r| r.instance().id).collect();
    within("the subscription to hold the final set", WAIT, async {
        loop {
            let event = sub.next_event().await.expect("subscription ended");
            match event {
                ServiceEvent::Added(i) | ServiceEvent::Updated(i) => {
                    model.insert(i.id.clone(), i);
                }
                ServiceEvent::Removed(i) => {
                    model.remove(&i.id);
                }
            }
            if model.keys().cloned().collect::<Vec<_>>() == want {
                break;
            }
        }
    })
    .await;
    let current: Vec<String> = sub.current().into_iter().map(|i| i.id).collect();
    assert_eq!(current, want, "[{kind}]");
}
