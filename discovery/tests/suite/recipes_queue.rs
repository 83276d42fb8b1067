//! Queues and barriers (etcd's recipes layout) against real servers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kv_client::{Client, GetOptions};
use kv_discovery::Session;
use kv_discovery::recipes::{Barrier, Dequeued, DoubleBarrier, PriorityQueue, Queue, RecipeError};

use crate::child::{self, Child};
use crate::{Kind, Server, WAIT, fast_config, on_both, within};

on_both!(
    queue_items_leave_once_in_order_under_concurrent_consumers,
    priority_queue_serves_lowest_priority_first,
    barrier_releases_every_waiter,
    double_barrier_enters_with_n_and_leaves_when_all_left,
    queue_killed_consumer_loses_no_item,
    priority_queue_killed_consumer_loses_no_item,
);

const STOP: &[u8] = b"stop";

async fn queue_items_leave_once_in_order_under_concurrent_consumers(kind: Kind) {
    const ITEMS: usize = 40;
    const CONSUMERS: usize = 4;
    let server = Server::start(kind).await;
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        // Each consumer has its own client, like a process.
        let q = Queue::new(&server.client().await, "jobs");
        consumers.push(tokio::spawn(async move {
            let mut got: Vec<Dequeued> = Vec::new();
            loop {
                let item = q.dequeue_item().await.unwrap();
                if item.value == STOP {
                    return got;
                }
                got.push(item);
            }
        }));
    }
    let producer = Queue::new(&server.client().await, "jobs");
    for i in 0..ITEMS {
        let key = producer.enqueue(format!("item-{i:03}")).await.unwrap();
        let nanos = key.strip_prefix("jobs/").unwrap();
        assert!(nanos.parse::<u128>().is_ok(), "[{kind}] key {key}");
        if i % 10 == 0 {
            // Let consumers drain to empty and wait on the watch too.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    // FIFO puts every stop after every item.
    for _ in 0..CONSUMERS {
        producer.enqueue(STOP).await.unwrap();
    }
    let mut all = Vec::new();
    for c in consumers {
        let got = within("a consumer", WAIT, c).await.unwrap();
        // Each consumer sees its items in enqueue order.
        assert!(
            got.windows(2).all(|w| w[0].value < w[1].value),
            "[{kind}] consumer order"
        );
        all.extend(got);
    }
    // Every item exactly once...
    let mut values: Vec<_> = all.iter().map(|d| d.value.clone()).collect();
    values.sort();
    let want: Vec<_> = (0..ITEMS)
        .map(|i| format!("item-{i:03}").into_bytes())
        .collect();
    assert_eq!(values, want, "[{kind}] items lost or duplicated");
    // ...and claimed, across consumers, in enqueue order.
    all.sort_by_key(|d| d.claimed);
    let claimed: Vec<_> = all.iter().map(|d| d.value.clone()).collect();
    assert_eq!(claimed, want, "[{kind}] claim order");
    let client = server.client().await;
    let left = client
        .get("jobs/", GetOptions::new().with_prefix())
        .await
        .unwrap();
    assert!(left.kvs().is_empty(), "[{kind}] items left");
}

async fn priority_queue_serves_lowest_priority_first(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let q = PriorityQueue::new(&client, "pq");
    let priorities = [5u16, 1, 3, 1, 0, 5, 3, 0, 1];
    let mut want = Vec::new();
    for (i, p) in priorities.iter().enumerate() {
        let value = format!("p{p}-{i}");
        let key = q.enqueue(&value, *p).await.unwrap();
        let n_same = want.iter().filter(|(pp, _, _)| pp == p).count();
        assert_eq!(
            key,
            format!("pq/{p:05}/{n_same:016}"),
            "[{kind}] etcd layout"
        );
        want.push((*p, i, value.into_bytes()));
    }
    // etcd's bookkeeping key per priority.
    assert_eq!(client.get("__pq/00001", None).await.unwrap().kvs().len(), 1);
    // Concurrent producers on one priority get distinct sequence numbers.
    let mut producers = Vec::new();
    for i in 0..4 {
        let q = PriorityQueue::new(&server.client().await, "pq");
        producers.push(tokio::spawn(async move {
            q.enqueue(format!("p9-c{i}"), 9).await.unwrap()
        }));
    }
    let mut keys = Vec::new();
    for p in producers {
        keys.push(within("a producer", WAIT, p).await.unwrap());
    }
    keys.sort();
    let seqs: Vec<_> = (0..4).map(|n| format!("pq/00009/{n:016}")).collect();
    assert_eq!(keys, seqs, "[{kind}] sequence clash");
    want.sort_by_key(|(p, i, _)| (*p, *i));
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let q = PriorityQueue::new(&server.client().await, "pq");
        consumers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(q.dequeue_item().await.unwrap());
            }
            got
        }));
    }
    let mut all = Vec::new();
    for c in consumers {
        all.extend(within("a consumer", WAIT, c).await.unwrap());
    }
    all.sort_by_key(|d| d.claimed);
    let got: Vec<_> = all.into_iter().map(|d| d.value).collect();
    let want: Vec<_> = want.into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(got, want, "[{kind}] priority order");
    // The priority-9 items are next, in their enqueue order.
    let next = q.dequeue_item().await.unwrap();
    assert_eq!(next.key, seqs[0].as_bytes());
}

async fn barrier_releases_every_waiter(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let b = Barrier::new(&client, "gate");
    // No barrier: nothing to wait for.
    within("wait on a free barrier", WAIT, b.wait())
        .await
        .unwrap();
    b.hold().await.unwrap();
    assert_eq!(b.hold().await.unwrap_err(), RecipeError::KeyExists);
    let passed = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let b = Barrier::new(&server.client().await, "gate");
        let passed = passed.clone();
        waiters.push(tokio::spawn(async move {
            b.wait().await.unwrap();
            passed.fetch_add(1, Ordering::SeqCst);
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        passed.load(Ordering::SeqCst),
        0,
        "[{kind}] passed a held barrier"
    );
    b.release().await.unwrap();
    for w in waiters {
        within("a waiter", WAIT, w).await.unwrap();
    }
    assert_eq!(passed.load(Ordering::SeqCst), 5);
}

async fn double_barrier_enters_with_n_and_leaves_when_all_left(kind: Kind) {
    const N: usize = 3;
    let server = Server::start(kind).await;
    let client = server.client().await;
    let entered = Arc::new(AtomicUsize::new(0));
    let left = Arc::new(AtomicUsize::new(0));
    let mut sessions = Vec::new();
    let mut tasks = BTreeMap::new();
    let (go_leave, leave_rx) = tokio::sync::watch::channel(0usize);
    for i in 0..N {
        let c = server.client().await;
        let s = Session::with_ttl(&c, 10).await.unwrap();
        sessions.push(s.clone());
        let (inside_n, left, mut leave_rx) = (entered.clone(), left.clone(), leave_rx.clone());
        let task = tokio::spawn(async move {
            let b = DoubleBarrier::new(&s, "batch", N).unwrap();
            let inside = b.enter().await.unwrap();
            inside_n.fetch_add(1, Ordering::SeqCst);
            // Leave when told that participant i may go.
            leave_rx.wait_for(|&n| n > i).await.unwrap();
            inside.leave().await.unwrap();
            left.fetch_add(1, Ordering::SeqCst);
        });
        tasks.insert(i, task);
        if i < N - 1 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(entered.load(Ordering::SeqCst), 0, "[{kind}] entered early");
        }
    }
    within("all to enter", WAIT, async {
        while entered.load(Ordering::SeqCst) < N {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // A participant too many is refused.
    let extra = Session::with_ttl(&client, 10).await.unwrap();
    let e = DoubleBarrier::new(&extra, "batch", N)
        .unwrap()
        .enter()
        .await
        .unwrap_err();
    assert_eq!(e, RecipeError::TooManyClients, "[{kind}]");
    // All but the last leave: none gets out.
    go_leave.send(N - 1).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        left.load(Ordering::SeqCst),
        0,
        "[{kind}] left before all did"
    );
    go_leave.send(N).unwrap();
    for (_, t) in tasks {
        within("a participant to leave", WAIT, t).await.unwrap();
    }
    let keys = client
        .get("batch/", GetOptions::new().with_prefix())
        .await
        .unwrap();
    assert!(keys.kvs().is_empty(), "[{kind}] barrier keys left");
    for s in sessions {
        s.close().await.unwrap();
    }
}

/// Not a test by itself: a consumer process of the killed-consumer tests.
/// Its argument: `queue <prefix>` or `pq <prefix>`. Takes one item, says
/// `GOT <value>` and `WAITING -`, then blocks in Dequeue on the empty
/// queue until killed (saying `GOT` for anything it still takes).
#[tokio::test]
#[ignore = "helper process, started by the killed-consumer tests"]
async fn queue_child_consumer() {
    let Some((endpoint, arg)) = child::role() else {
        return;
    };
    let (which, prefix) = arg.split_once(' ').unwrap();
    let client = Client::connect(fast_config(endpoint)).await.unwrap();
    let (fifo, pq) = (
        Queue::new(&client, prefix),
        PriorityQueue::new(&client, prefix),
    );
    for n in 0.. {
        let value = if which == "pq" {
            pq.dequeue().await
        } else {
            fifo.dequeue().await
        };
        child::say("GOT", &String::from_utf8_lossy(&value.unwrap()));
        if n == 0 {
            child::say("WAITING", "-");
        }
    }
}

/// A consumer process blocked in Dequeue is SIGKILLed: two live consumers
/// then get every item enqueued afterwards, exactly once.
async fn killed_consumer_loses_nothing(kind: Kind, pq: bool) {
    const ITEMS: usize = 24;
    const LIVE: usize = 2;
    const PREFIX: &str = "kq";
    let server = Server::start(kind).await;
    let client = server.client().await;
    let (fifo, prio) = (
        Queue::new(&client, PREFIX),
        PriorityQueue::new(&client, PREFIX),
    );
    let enqueue = |value: String, priority: u16| {
        let (fifo, prio) = (fifo.clone(), prio.clone());
        async move {
            if pq {
                prio.enqueue(value, priority).await.unwrap();
            } else {
                fifo.enqueue(value).await.unwrap();
            }
        }
    };
    enqueue("warm".into(), 0).await;
    let which = if pq { "pq" } else { "queue" };
    let mut child = Child::spawn(
        "recipes_queue::queue_child_consumer",
        &server.endpoint(),
        &format!("{which} {PREFIX}"),
    );
    assert_eq!(child.expect("GOT").await, "warm", "[{kind}] child consumer");
    child.expect("WAITING").await;
    let mut live = Vec::new();
    for _ in 0..LIVE {
        let c = server.client().await;
        let (fifo, prio) = (Queue::new(&c, PREFIX), PriorityQueue::new(&c, PREFIX));
        live.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let v = if pq {
                    prio.dequeue().await
                } else {
                    fifo.dequeue().await
                };
                let v = v.unwrap();
                if v == STOP {
                    return got;
                }
                got.push(v);
            }
        }));
    }
    // Let the child's Dequeue reach its watch (if it has not yet, the
    // kill only comes earlier in it).
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill();
    for i in 0..ITEMS {
        enqueue(format!("item-{i:03}"), (i % 4) as u16).await;
    }
    // Stops after every item (FIFO order, or the last priority).
    for _ in 0..LIVE {
        enqueue(String::from_utf8_lossy(STOP).into_owned(), u16::MAX).await;
    }
    let mut all = Vec::new();
    for c in live {
        all.extend(within("a live consumer", WAIT, c).await.unwrap());
    }
    all.sort();
    let want: Vec<_> = (0..ITEMS)
        .map(|i| format!("item-{i:03}").into_bytes())
        .collect();
    assert_eq!(all, want, "[{kind}] items lost or duplicated");
    let left = client
        .get(format!("{PREFIX}/"), GetOptions::new().with_prefix())
        .await
        .unwrap();
    assert!(left.kvs().is_empty(), "[{kind}] items left");
}

async fn queue_killed_consumer_loses_no_item(kind: Kind) {
    killed_consumer_loses_nothing(kind, false).await;
}

async fn priority_queue_killed_consumer_loses_no_item(kind: Kind) {
    killed_consumer_loses_nothing(kind, true).await;
}
