//! kvd only: durability across SIGKILL. Several tasks write concurrently,
//! the server is killed mid-stream and restarted on the same data dir;
//! every acknowledged write must be there, nothing never sent may be, and
//! each task's writes survive as a prefix (they were issued one after the
//! other). Also: SIGTERM / SIGINT stop kvd cleanly without losing data.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use nix::sys::signal::Signal;

const TASKS: usize = 8;
const ROUNDS: usize = 3;
/// Acknowledged writes per round before the SIGKILL.
const ACKED_BEFORE_KILL: usize = 240;
/// Bound on each writer's loop (it is stopped long before).
const MAX_PER_TASK: usize = 100_000;

/// What one writer task sent and had acknowledged: indexes into its
/// sequence of writes.
#[derive(Default, Clone, Debug)]
struct Progress {
    /// Highest index sent (the request may or may not have been applied).
    sent: Option<usize>,
    /// Highest index acknowledged.
    acked: Option<usize>,
}

fn key(round: usize, task: usize, i: usize) -> String {
    format!("crash/r{round}/t{task}/{i:06}")
}

fn value(round: usize, task: usize, i: usize) -> String {
    // Some values are larger, to make the log writes bigger.
    let pad = if i % 7 == 3 { 1024 } else { 16 };
    format!("{round}-{task}-{i}-{}", "x".repeat(pad))
}

fn counter_key(round: usize, task: usize) -> String {
    format!("crash/counter/r{round}/t{task}")
}

/// Even tasks use plain puts; odd tasks use a txn that writes the unique
/// key and bumps the task's counter key atomically.
async fn writer(
    mut c: Client,
    round: usize,
    task: usize,
    progress: Arc<Mutex<Progress>>,
    acked_total: Arc<AtomicUsize>,
) {
    for i in 0..MAX_PER_TASK {
        progress.lock().unwrap().sent = Some(i);
        let res = if task % 2 == 1 {
            // The counter's version is i before write i.
            let expect = Compare::version(counter_key(round, task), CompareOp::Equal, i as i64);
            let txn = Txn::new()
                .when([expect])
                .and_then([
                    TxnOp::put(key(round, task, i), value(round, task, i), None),
                    TxnOp::put(counter_key(round, task), i.to_string(), None),
                ])
                .or_else([TxnOp::get(counter_key(round, task), None)]);
            match c.txn(txn).await {
                Ok(r) => {
                    assert!(
                        r.succeeded(),
                        "task {task} write {i}: counter version mismatch: {r:?}"
                    );
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            c.put(key(round, task, i), value(round, task, i), None)
                .await
                .map(|_| ())
        };
        match res {
            Ok(()) => {
                progress.lock().unwrap().acked = Some(i);
                acked_total.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => return,
        }
    }
}

/// Reads everything under `crash/` in one range request.
async fn read_all(c: &mut Client) -> BTreeMap<String, String> {
    let r = c
        .get("crash/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("read back after restart");
    r.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            )
        })
        .collect()
}

/// Checks the recovered state against what was sent and acknowledged.
fn verify(state: &BTreeMap<String, String>, rounds: &[(usize, Vec<Progress>)], when: &str) {
    let mut expected_keys = 0usize;
    for (round, progress) in rounds {
        for (task, p) in progress.iter().enumerate() {
            // Present indexes for this task must be exactly 0..n with
            // acked < n <= sent + 1.
            let prefix = format!("crash/r{round}/t{task}/");
            let present: Vec<usize> = state
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| {
                    let i: usize = k[prefix.len()..].parse().expect("index");
                    assert_eq!(
                        v,
                        &value(*round, task, i),
                        "{when}: round {round} task {task} write {i} has a wrong value"
                    );
                    i
                })
                .collect();
            let n = present.len();
            assert_eq!(
                present,
                (0..n).collect::<Vec<_>>(),
                "{when}: round {round} task {task}: surviving writes are not a prefix"
            );
            let acked_n = p.acked.map_or(0, |a| a + 1);
            let sent_n = p.sent.map_or(0, |s| s + 1);
            assert!(
                n >= acked_n,
                "{when}: round {round} task {task}: {n} writes survived but {acked_n} were acknowledged"
            );
            assert!(
                n <= sent_n,
                "{when}: round {round} task {task}: {n} writes present but only {sent_n} were sent"
            );
            expected_keys += n;
            if task % 2 == 1 {
                let ck = counter_key(*round, task);
                match state.get(&ck) {
                    None => assert_eq!(n, 0, "{when}: round {round} task {task}: counter missing"),
                    Some(v) => {
                        assert_eq!(
                            v,
                            &(n - 1).to_string(),
                            "{when}: round {round} task {task}: counter disagrees with the txn's other write"
                        );
                        expected_keys += 1;
                    }
                }
            }
        }
    }
    assert_eq!(
        state.len(),
        expected_keys,
        "{when}: keys present that were never written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_keeps_every_acknowledged_write() {
    kvd_only(|| crash_rounds(Kind::Kvd)).await;
}

/// The crash scenario; generic over the kind so the test itself can be
/// checked against etcd (`crash_rounds(Kind::Etcd)`), though only kvd runs
/// it in the suite.
async fn crash_rounds(kind: Kind) {
    {
        let dir = tempfile::tempdir().unwrap();
        let mut srv = Server::start_with(
            kind,
            Options {
                data_dir: Some(dir.path().join("data")),
                ..Options::default()
            },
        )
        .await;
        let mut history: Vec<(usize, Vec<Progress>)> = Vec::new();
        for round in 0..ROUNDS {
            let c = srv.client().await;
            let acked_total = Arc::new(AtomicUsize::new(0));
            let progress: Vec<Arc<Mutex<Progress>>> = (0..TASKS).map(|_| Arc::default()).collect();
            let handles: Vec<_> = (0..TASKS)
                .map(|task| {
                    tokio::spawn(writer(
                        c.clone(),
                        round,
                        task,
                        progress[task].clone(),
                        acked_total.clone(),
                    ))
                })
                .collect();
            let at = acked_total.clone();
            wait_until("writes to be acknowledged", Duration::from_secs(60), || {
                let n = at.load(Ordering::SeqCst);
                async move { (n >= ACKED_BEFORE_KILL).then_some(()) }
            })
            .await;
            for h in &handles {
                assert!(!h.is_finished(), "round {round}: a writer stopped early");
            }
            srv.kill9();
            // Writers fail or hang on the dead connection: stop them all.
            for h in &handles {
                h.abort();
            }
            for h in handles {
                match h.await {
                    Ok(()) => {}
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => panic!("round {round}: writer panicked: {e:?}"),
                }
            }
            drop(c);
            let snapshot: Vec<Progress> =
                progress.iter().map(|p| p.lock().unwrap().clone()).collect();
            let acked: usize = snapshot.iter().map(|p| p.acked.map_or(0, |a| a + 1)).sum();
            assert!(acked >= ACKED_BEFORE_KILL);
            history.push((round, snapshot));

            srv.start_again().await;
            let mut c = srv.client().await;
            let state = read_all(&mut c).await;
            verify(&state, &history, &format!("after kill #{}", round + 1));
            // The revision covers at least every acknowledged write.
            let r = c
                .get(
                    "crash/",
                    Some(GetOptions::new().with_prefix().with_count_only()),
                )
                .await
                .unwrap();
            let total_acked: usize = history
                .iter()
                .flat_map(|(_, ps)| ps.iter())
                .map(|p| p.acked.map_or(0, |a| a + 1))
                .sum();
            assert!(
                rev(r.header()) > total_acked as i64,
                "revision {} after {total_acked} acknowledged writes",
                rev(r.header())
            );
        }
        // And once more after a clean restart.
        srv.restart().await;
        let mut c = srv.client().await;
        let state = read_all(&mut c).await;
        verify(&state, &history, "after the final clean restart");
    }
}

#[tokio::test]
async fn sigterm_and_sigint_stop_cleanly() {
    kvd_only(|| async {
        let mut srv = Server::start(Kind::Kvd).await;
        for (i, sig) in [Signal::SIGTERM, Signal::SIGINT].into_iter().enumerate() {
            let mut c = srv.client().await;
            let p = c.put(format!("s{i}"), "v", None).await.unwrap();
            let r = rev(p.header());
            drop(c);
            srv.signal(sig);
            let status = srv
                .wait_exit(Duration::from_secs(15))
                .unwrap_or_else(|| panic!("kvd did not exit within 15s of {sig:?}"));
            assert!(status.success(), "kvd exit status after {sig:?}: {status}");
            srv.start_again().await;
            let mut c = srv.client().await;
            let g = c.get(format!("s{i}"), None).await.unwrap();
            assert_eq!(g.count(), 1, "write before {sig:?} lost");
            assert_eq!(rev(g.header()), r, "revision after {sig:?} restart");
        }
    })
    .await;
}
