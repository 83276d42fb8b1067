//! Watch back-pressure: a watcher that does not read while many large
//! events arrive must keep this (the client's) process's memory bounded,
//! must not hold up another watcher on the same shared stream, and must then
//! read every event exactly once, in order.
//!
//! Its own test binary with a single test, so that the process's resident
//! memory measures this scenario only (the suite runs tests in parallel).

// Shared with the suite, which uses more of them.
#[allow(dead_code)]
#[path = "suite/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "suite/server.rs"]
mod server;

use std::time::Duration;

use futures::StreamExt;
use kv_client::{WATCH_BUFFER, WatchOptions, WatchStream};

pub use harness::{BODY_TIMEOUT, run, within};
pub use server::{Kind, Server};

const WAIT: Duration = Duration::from_secs(60);
/// 3000 events of 32 KiB: ~96 MiB that an unbounded queue would hold.
const PUTS: usize = 3000;
const VALUE: usize = 32 * 1024;
/// Far below the written volume, far above the bounded queue (64 batches).
const MAX_GROWTH: u64 = 40 * 1024 * 1024;

/// A `/proc/self/status` field in bytes (Linux reports kB).
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .expect("status field");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("status number");
    kb * 1024
}

/// Reads `stream` until revision `last`, returning every event's
/// `(mod_revision, value length)`.
async fn read_until(stream: &mut WatchStream, last: i64) -> Vec<(i64, usize)> {
    let mut seen = Vec::new();
    while seen.last().is_none_or(|(r, _)| *r < last) {
        let batch = within("a watch batch", WAIT, stream.next())
            .await
            .expect("stream ended")
            .expect("watch error");
        for e in batch.events() {
            let kv = e.kv.as_ref().expect("event kv");
            seen.push((kv.mod_revision, kv.value.len()));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_memory_is_bounded_and_it_reads_everything_once() {
    // One kind after the other: both in one process would mix their memory.
    for kind in [Kind::Kvd, Kind::Etcd] {
        run(kind, slow_watcher(kind)).await;
    }
}

async fn slow_watcher(kind: Kind) {
    let server = Server::start(kind).await;
    let c = server.client().await;
    let opts = WatchOptions::new().with_prefix();
    let mut slow = c.watch("m/", opts.clone()).await.unwrap();
    let mut fast = c.watch("m/", opts).await.unwrap();
    // Warm up allocator and connection before the baseline.
    let value = vec![b'v'; VALUE];
    let first = c
        .put("m/warm", value.clone(), None)
        .await
        .unwrap()
        .revision();
    read_until(&mut fast, first).await;
    read_until(&mut slow, first).await;
    let baseline = proc_status("VmRSS:");
    // Resets the peak (VmHWM) to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset peak RSS");

    // The fast watcher reads concurrently on the same shared stream.
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            let puts = futures::stream::iter(0..PUTS).map(|i| {
                let c = c.clone();
                let value = value.clone();
                async move {
                    c.put(format!("m/{i}"), value, None)
                        .await
                        .unwrap()
                        .revision()
                }
            });
            let mut revs: Vec<i64> = puts.buffer_unordered(8).collect().await;
            revs.sort_unstable();
            revs
        })
    };
    let fast_seen = read_until(&mut fast, first + PUTS as i64).await;
    let revs = within("the writes", WAIT, writer).await.unwrap();
    let expected: Vec<i64> = (first + 1..=first + PUTS as i64).collect();
    assert_eq!(revs, expected, "[{kind}] one revision per put");
    let fast_revs: Vec<i64> = fast_seen.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        fast_revs, expected,
        "[{kind}] the fast watcher saw each once"
    );

    // The peak covers the whole time the slow watcher was not reading.
    let peak = proc_status("VmHWM:");
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "[{kind}] {PUTS} events of {VALUE} B, queue {WATCH_BUFFER} batches: \
         RSS {baseline} B before, peak {peak} B, growth {growth} B"
    );
    assert!(
        growth < MAX_GROWTH,
        "[{kind}] memory grew by {growth} B while a watcher was not reading"
    );

    let slow_seen = read_until(&mut slow, first + PUTS as i64).await;
    let slow_revs: Vec<i64> = slow_seen.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        slow_revs, expected,
        "[{kind}] the slow watcher saw each once, in order"
    );
    assert!(slow_seen.iter().all(|(_, len)| *len == VALUE));
}
