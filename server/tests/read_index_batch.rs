//! Linearizable reads on a 3-member cluster with readers on every member:
//! the leader answers the followers' ReadIndex calls and its own reads from
//! shared leadership checks (node/read_index.rs: one heartbeat round for
//! all that waits when it starts), and every read still sees each write
//! acknowledged before it began.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::kvd_only;

/// Concurrent readers per member.
const READERS: usize = 6;
const RUN_FOR: Duration = Duration::from_secs(4);
const KEY: &str = "rib";

/// The largest `peers=N` of the leader's "leadership check" debug lines.
fn most_peers_in_one_check(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("read index: leadership check"))
        .filter_map(|l| {
            let rest = &l[l.find("peers=")? + "peers=".len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn followers_read_index_calls_share_one_leadership_check() {
    kvd_only(|| async {
        let c = Cluster::start_with(3, &["--log-level=warn,kvd::node::read_index=debug"]).await;
        let leader = c.leader().await;
        let acked = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));

        // One writer on the leader: each value is acknowledged before the
        // next, so `acked` only grows.
        let mut w = c.client(leader).await;
        w.put(KEY, "0", None).await.expect("first put");
        let writer = {
            let (acked, stop) = (acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    w.put(KEY, n.to_string(), None).await.expect("put");
                    acked.store(n, Ordering::SeqCst);
                }
            })
        };

        let mut readers = Vec::new();
        for i in 0..3 {
            for _ in 0..READERS {
                let mut r = c.client(i).await;
                let (acked, stop) = (acked.clone(), stop.clone());
                readers.push(tokio::spawn(async move {
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let before = acked.load(Ordering::SeqCst);
                        let resp = r.get(KEY, None).await.expect("linearizable get");
                        let seen: u64 = resp
                            .kvs()
                            .first()
                            .and_then(|kv| kv.value_str().ok()?.parse().ok())
                            .expect("a number under the key");
                        assert!(
                            seen >= before,
                            "member {i} read {seen} after {before} was acknowledged"
                        );
                        reads += 1;
                    }
                    reads
                }));
            }
        }
        let t0 = Instant::now();
        while t0.elapsed() < RUN_FOR {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, Ordering::Relaxed);
        writer.await.expect("writer");
        let mut reads = 0;
        for r in readers {
            reads += r.await.expect("reader");
        }
        assert!(reads > 0, "no reads completed\n{}", c.logs());

        // Both followers read all along, each with one ReadIndex call in
        // flight at a time: some check of the leader's served both calls.
        // Without the shared check each call ran its own and none is logged.
        let log = std::fs::read_to_string(c.log_path(leader)).unwrap_or_default();
        let most = most_peers_in_one_check(&log);
        assert!(
            most >= 2,
            "no leadership check answered both followers' calls (most {most}) in {reads} reads\n{}",
            c.logs()
        );
    })
    .await;
}
