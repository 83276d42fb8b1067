//! The leader's direct proposal path (node/propose.rs: a lone request is
//! proposed from its caller's task, not through the batcher) keeps the
//! batcher's bound on entries in flight even when callers give up: a
//! caller's write that is still running when its client's deadline passes
//! finishes in a task of its own, holding its entry slot until openraft
//! answers. Without that, every cancelled call would free its slot at once
//! and a slow applier would see the log run away from it.
//!
//! Real kvd process, slowed by its `apply-entry=sleep(N)` failpoint (test
//! builds only), driven by the etcd-client crate: clients with a deadline
//! far shorter than one entry's apply, and a watcher of Maintenance.Status
//! comparing raft_index (the log's end) with raft_applied_index.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use kvd::raft::failpoint::{APPLY_ENTRY, DISK_FILE_ENV};

use common::{within, Kind, Server};

/// Entries the leader keeps proposed and unapplied at most (node/propose.rs
/// `MAX_INFLIGHT`).
const MAX_INFLIGHT: u64 = 2;
/// The slowed applier: this many ms before each entry.
const SLOW_APPLY_MS: u64 = 150;
/// The impatient clients' deadline: well under one entry's apply.
const DEADLINE: Duration = Duration::from_millis(20);
/// Impatient clients, and the puts each sends.
const CLIENTS: usize = 6;
const PUTS: usize = 16;
/// Bound on each wait (instead of a hang).
const BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_giving_up_do_not_grow_the_entries_in_flight() {
    if !Kind::Kvd.enabled() {
        eprintln!("kvd-only test skipped by KV_TEST_ONLY");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let fp = dir.path().join("slow.failpoints");
    std::fs::write(&fp, "").expect("failpoint file");
    // The child takes the environment it is spawned with; this file's only
    // test is the one running.
    std::env::set_var(DISK_FILE_ENV, &fp);
    let server = Server::start(Kind::Kvd).await;
    std::env::remove_var(DISK_FILE_ENV);
    let mut status = server.client().await;
    status.put("warm", "up", None).await.expect("first put");

    std::fs::write(&fp, format!("{APPLY_ENTRY}=sleep({SLOW_APPLY_MS})")).expect("arm failpoint");
    let done = Arc::new(AtomicBool::new(false));
    let max_lag = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, max_lag) = (done.clone(), max_lag.clone());
        tokio::spawn(async move {
            let mut samples = 0u64;
            while !done.load(Ordering::SeqCst) {
                let s = status.status().await.expect("status");
                let lag = s.raft_index().saturating_sub(s.raft_applied_index());
                max_lag.fetch_max(lag, Ordering::SeqCst);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (status, samples)
        })
    };
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(DEADLINE);
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let mut client = Client::connect([server.endpoint()], Some(opts.clone()))
            .await
            .expect("connect");
        clients.push(tokio::spawn(async move {
            let mut gave_up = 0;
            for i in 0..PUTS {
                if client.put(format!("k{c}-{i}"), "v", None).await.is_err() {
                    gave_up += 1;
                }
            }
            gave_up
        }));
    }
    let mut gave_up = 0;
    for c in clients {
        gave_up += within("the impatient clients", BOUND, c)
            .await
            .expect("client task");
    }
    done.store(true, Ordering::SeqCst);
    let (mut status, samples) = within("the sampler", BOUND, sampler)
        .await
        .expect("sampler");
    std::fs::write(&fp, "").expect("disarm failpoint");
    assert!(
        gave_up > CLIENTS,
        "the test needs callers that give up: only {gave_up} of {} calls did",
        CLIENTS * PUTS
    );
    assert!(samples > 0, "no status sample");
    let lag = max_lag.load(Ordering::SeqCst);
    eprintln!("{gave_up} calls gave up; most entries unapplied at once: {lag} ({samples} samples)");
    assert!(
        lag <= MAX_INFLIGHT,
        "{lag} entries proposed and unapplied at once (at most {MAX_INFLIGHT}); \
         {gave_up} calls gave up, {samples} samples\n{}",
        server.log_tail(40)
    );
    // And the member serves on once the applier is fast again.
    status.put("after", "ok", None).await.expect("put after");
    let got = status.get("after", None).await.expect("get after");
    assert_eq!(got.kvs().len(), 1);
}
