//! etcd's overload guard end to end, with real processes and the etcd-client
//! crate: a member whose applier has fallen more than `MAX_APPLY_LAG` (5000)
//! entries behind its log refuses new proposals with etcd's "etcdserver: too
//! many requests" (ResourceExhausted), loses no acknowledged write, and
//! serves again once its applier has caught up.
//!
//! The slow applier is kvd's `apply-entry=sleep(N)` failpoint (test builds
//! only), armed through a failpoint file that only one follower reads. The
//! leader cannot fall behind this way (its proposer keeps at most a couple of
//! entries unapplied), a follower can: the leader's log keeps growing on it
//! whatever its applier does, as in etcd.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use kvd::node::MAX_APPLY_LAG;
use kvd::raft::failpoint::{APPLY_ENTRY, DISK_FILE_ENV};

use common::cluster::{Cluster, DEADLINE};
use common::Kind;

/// Sequential writers on the leader: each of their puts is (about) one raft
/// entry, which is what the lag is counted in.
const WRITERS: usize = 4;
/// Writers through the slow follower: the proposals that must be refused.
const PROBERS: usize = 2;
/// How long the lag may take to build up before the test gives up: kvd
/// proposes at most a couple of entries at a time, so 5000 entries take
/// about a minute on a loaded 2-core machine.
const BUILD_UP: Duration = Duration::from_secs(180);
/// Bound on the whole test (instead of the harness's 90 s body timeout,
/// which the build-up alone can come near).
const TEST_BOUND: Duration = Duration::from_secs(300);
/// The slow member's applier: this many ms before each entry.
const SLOW_APPLY_MS: u64 = 1000;

/// Whether `e` is etcd's ErrGRPCRequestTooManyRequests, code and text.
fn is_too_many_requests(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::ResourceExhausted
                && s.message() == "etcdserver: too many requests"
        }
        _ => false,
    }
}

/// What one writer saw: the puts acknowledged (key -> value), how many were
/// refused with "too many requests", and the other errors.
#[derive(Default)]
struct Outcome {
    acked: BTreeMap<String, String>,
    too_many: usize,
    other: Vec<String>,
}

/// Puts `{prefix}/{n}` one after another through `endpoint` until `stop`.
async fn write_until(
    endpoint: String,
    prefix: String,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
) -> Outcome {
    let mut out = Outcome::default();
    let Ok(mut cl) = Client::connect([endpoint], None).await else {
        out.other.push("connect failed".to_string());
        return out;
    };
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (key, value) = (format!("{prefix}/{n:07}"), n.to_string());
        n += 1;
        match cl.put(key.as_str(), value.as_str(), None).await {
            Ok(_) => {
                out.acked.insert(key, value);
            }
            Err(e) if is_too_many_requests(&e) => {
                out.too_many += 1;
                refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                if out.other.len() < 10 {
                    out.other.push(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    out
}

/// (raft index, applied index) member `i` reports in its Status.
async fn indexes(c: &Cluster, i: usize) -> (u64, u64) {
    let st = c.client(i).await.status().await.expect("status");
    (st.raft_index(), st.raft_applied_index())
}

/// Every key under `prefix` member `i` serves, read linearizably.
async fn read_prefix(c: &Cluster, i: usize, prefix: &str) -> BTreeMap<String, String> {
    let got = c
        .client(i)
        .await
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .expect("linearizable get of every written key");
    got.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn member_with_a_lagging_applier_refuses_proposals_then_recovers() {
    if !Kind::Kvd.enabled() {
        eprintln!("kvd-only test skipped by KV_TEST_ONLY");
        return;
    }
    let body = async {
        let mut c = Cluster::start(3).await;
        let leader = c.leader().await;
        let slow = (0..3).find(|i| *i != leader).expect("a follower");
        // Restart one follower with a failpoint file only it reads (a child
        // takes the environment it is spawned with; this file's only test
        // is the one running).
        let fp = c.dir.path().join("slow.failpoints");
        std::env::set_var(DISK_FILE_ENV, &fp);
        c.spawn(slow);
        std::env::remove_var(DISK_FILE_ENV);
        c.wait_ready(slow).await;
        let leader = c.leader().await;
        assert_ne!(
            leader,
            slow,
            "the restarted follower took over\n{}",
            c.logs()
        );
        std::fs::write(&fp, format!("{APPLY_ENTRY}=sleep({SLOW_APPLY_MS})"))
            .expect("arm failpoint");

        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let spawn_writers = |i: usize, n: usize, tag: &str| {
            (0..n)
                .map(|t| {
                    tokio::spawn(write_until(
                        c.endpoint(i),
                        format!("{tag}/{t}"),
                        stop.clone(),
                        refused.clone(),
                    ))
                })
                .collect::<Vec<_>>()
        };
        let writers = spawn_writers(leader, WRITERS, "w");
        let probers = spawn_writers(slow, PROBERS, "p");

        // Wait for the slow member to refuse proposals.
        let started = Instant::now();
        let mut lag_seen = 0;
        while refused.load(Ordering::Relaxed) == 0 && started.elapsed() < BUILD_UP {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (last, applied) = indexes(&c, slow).await;
            lag_seen = last.saturating_sub(applied);
        }
        // A little longer, so refusals are not a one-off.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (last, applied) = indexes(&c, slow).await;
        stop.store(true, Ordering::Relaxed);
        let mut outcomes = Vec::new();
        for h in writers.into_iter().chain(probers) {
            outcomes.push(h.await.expect("writer task"));
        }
        let leader_refusals: usize = outcomes[..WRITERS].iter().map(|o| o.too_many).sum();
        let slow_refusals: usize = outcomes[WRITERS..].iter().map(|o| o.too_many).sum();
        let slow_acked: usize = outcomes[WRITERS..].iter().map(|o| o.acked.len()).sum();
        let acked: usize = outcomes.iter().map(|o| o.acked.len()).sum();
        eprintln!(
            "after {:?}: {acked} puts acknowledged ({slow_acked} through the slow member), \
             {slow_refusals} refused there, {leader_refusals} on the leader; \
             slow member's log {last}, applied {applied}",
            started.elapsed()
        );
        assert!(
            slow_refusals > 0,
            "no \"too many requests\" from a member {lag_seen} entries behind \
             (last seen: log {last}, applied {applied}); other errors: {:?}",
            outcomes.iter().flat_map(|o| &o.other).collect::<Vec<_>>()
        );
        assert!(
            last.saturating_sub(applied) > MAX_APPLY_LAG,
            "refused while only {} entries behind",
            last.saturating_sub(applied)
        );
        // The leader kept up, so it never refused.
        assert_eq!(leader_refusals, 0);

        // Disarm: the applier catches up (the log it had is all applied) and
        // the member serves writes again.
        std::fs::remove_file(&fp).expect("disarm failpoint");
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (_, now_applied) = indexes(&c, slow).await;
            if now_applied >= last {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "applier stuck at {now_applied} of {last} after disarming\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        c.client(slow)
            .await
            .put("p/recovered", "yes", None)
            .await
            .expect("a put through the member once its applier caught up");

        // Every acknowledged write is there, on the slow member and the leader.
        for i in [slow, leader] {
            let mut served = read_prefix(&c, i, "w/").await;
            served.extend(read_prefix(&c, i, "p/").await);
            for o in &outcomes {
                for (k, v) in &o.acked {
                    assert_eq!(
                        served.get(k),
                        Some(v),
                        "acknowledged {k} lost on member {i}"
                    );
                }
            }
            assert_eq!(served.get("p/recovered").map(String::as_str), Some("yes"));
        }
    };
    tokio::time::timeout(TEST_BOUND, body)
        .await
        .expect("the test did not finish within its bound");
}
