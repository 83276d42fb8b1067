//! `kvctl lock`, `elect` and `service` as real processes, against kvd and
//! etcd, mixed with Debian's `etcdctl lock` / `elect` on the same names,
//! and `kvctl lock` contenders on a 3-member cluster whose members are
//! killed meanwhile.

mod common;
// The client suite's multi-member cluster harness. It expects `Kind`,
// `fast_config` and `server::kvd_bin` at the crate root; its own server.rs
// (which has them) is edition 2024 and this crate is 2021, hence the shim.
// Formatting it is the client crate's business (its edition's style).
#[path = "../../client/tests/suite/cluster.rs"]
#[allow(dead_code)]
#[rustfmt::skip]
mod cluster;

mod server {
    use std::time::Duration;

    pub use crate::common::kvd_bin;
    use kv_client::{ClientConfig, RetryPolicy};

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Kind {
        Kvd,
        Etcd,
    }

    impl std::fmt::Display for Kind {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                Kind::Kvd => "kvd",
                Kind::Etcd => "etcd",
            })
        }
    }

    /// The harness's probe client: short timeouts, fast retries.
    pub fn fast_config(endpoint: impl Into<String>) -> ClientConfig {
        ClientConfig::new([endpoint.into()])
            .with_connect_timeout(Duration::from_secs(1))
            .with_request_timeout(Duration::from_secs(3))
            .with_retry(
                RetryPolicy::default()
                    .with_initial_backoff(Duration::from_millis(10))
                    .with_max_backoff(Duration::from_millis(200)),
            )
    }
}

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use server::{fast_config, Kind};

/// Generous deadline for one expected observation.
const WAIT: Duration = Duration::from_secs(30);

fn servers() -> Vec<(&'static str, Server)> {
    vec![("kvd", start(&kvd_bin())), ("etcd", start(Path::new(ETCD)))]
}

/// Starts `bin --endpoints EP args...` with stdout piped into a channel
/// of lines.
fn spawn(bin: &str, ep: &str, args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(bin)
        .args(["--endpoints", ep])
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn next_line(rx: &Receiver<String>, what: &str) -> String {
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|e| panic!("no line for {what} within {WAIT:?}: {e}"))
}

/// Sends a signal by name (INT, TERM) to a child we started.
fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args(["-s", sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count_keys(ep: &str, prefix: &str) -> usize {
    let out = Command::new(KVCTL)
        .args(["--endpoints", ep, "get", prefix, "--prefix", "--keys-only"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

fn wait_keys(ep: &str, prefix: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    while count_keys(ep, prefix) != n {
        assert!(Instant::now() < deadline, "{prefix}: never {n} keys");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A holder started without a command prints the lock key; a waiter of
/// the other tool queues behind it and gets the lock only after SIGINT.
fn holder_excludes_waiter(holder_bin: &str, waiter_bin: &str, ep: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("acquired");
    let (mut holder, lines) = spawn(holder_bin, ep, &["lock", name]);
    let key = next_line(&lines, "the holder's key");
    assert!(key.starts_with(&format!("{name}/")), "{key}");
    let script = format!("echo acquired > {}", marker.display());
    let (mut waiter, _) = spawn(waiter_bin, ep, &["lock", name, "--", "sh", "-c", &script]);
    wait_keys(ep, &format!("{name}/"), 2);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !marker.exists(),
        "{waiter_bin} got a lock {holder_bin} holds"
    );
    signal(&holder, "INT");
    assert!(wait_exit(&mut holder, "the holder").success());
    assert!(wait_exit(&mut waiter, "the waiter").success());
    assert!(marker.exists(), "{waiter_bin} never ran its command");
    wait_keys(ep, &format!("{name}/"), 0);
}

#[test]
fn kvctl_and_etcdctl_locks_exclude_each_other() {
    for (kind, server) in servers() {
        eprintln!("=== {kind}");
        let ep = &server.endpoint;
        holder_excludes_waiter(KVCTL, ETCDCTL, ep, "mixed-a");
        holder_excludes_waiter(ETCDCTL, KVCTL, ep, "mixed-b");
    }
}

#[test]
fn mixed_contenders_increment_a_file_counter_exactly() {
    const ROUNDS: usize = 3;
    // Read-modify-write with a pause, and an overlap detector: mkdir fails
    // if another holder is inside.
    let script = "mkdir \"$D/held\" || exit 9; n=$(cat \"$D/count\"); sleep 0.05; \
                  echo $((n+1)) > \"$D/count\"; rmdir \"$D/held\"";
    for (kind, server) in servers() {
        eprintln!("=== {kind}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("count"), "0\n").unwrap();
        let mut threads = Vec::new();
        for bin in [KVCTL, ETCDCTL, KVCTL, ETCDCTL] {
            let ep = server.endpoint.clone();
            let d = dir.path().to_path_buf();
            threads.push(std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let out = Command::new(bin)
                        .args([
                            "--endpoints",
                            &ep,
                            "lock",
                            "counter",
                            "--",
                            "sh",
                            "-c",
                            script,
                        ])
                        .env("D", &d)
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{bin}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        let count = std::fs::read_to_string(dir.path().join("count")).unwrap();
        assert_eq!(count.trim(), (4 * ROUNDS).to_string(), "[{kind}]");
    }
}

#[test]
fn lock_reports_a_failing_command_like_etcdctl() {
    let server = start(&kvd_bin());
    let out = Command::new(KVCTL)
        .args([
            "--endpoints",
            &server.endpoint,
            "lock",
            "l",
            "sh",
            "-c",
            "exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: exit status 3\n"
    );
    let out = Command::new(KVCTL)
        .args([
            "--endpoints",
            &server.endpoint,
            "lock",
            "l",
            "--",
            "sh",
            "-c",
        ])
        .arg("echo \"$ETCD_LOCK_KEY\"")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("l/"));
}

#[test]
fn kvctl_and_etcdctl_elections_see_each_other() {
    for (kind, server) in servers() {
        eprintln!("=== {kind}");
        let ep = &server.endpoint;
        let (mut kv_obs, kv_lines) = spawn(KVCTL, ep, &["elect", "-l", "el"]);
        let (mut etcd_obs, etcd_lines) = spawn(ETCDCTL, ep, &["elect", "-l", "el"]);
        let (mut first, first_lines) = spawn(ETCDCTL, ep, &["elect", "el", "by-etcdctl"]);
        let first_key = next_line(&first_lines, "etcdctl's leader key");
        assert_eq!(next_line(&first_lines, "etcdctl's value"), "by-etcdctl");
        let (mut second, second_lines) = spawn(KVCTL, ep, &["elect", "el", "by-kvctl"]);
        wait_keys(ep, "el/", 2);
        signal(&first, "TERM");
        assert!(wait_exit(&mut first, "etcdctl elect").success());
        let second_key = next_line(&second_lines, "kvctl's leader key");
        assert_eq!(next_line(&second_lines, "kvctl's value"), "by-kvctl");
        for (who, lines) in [("kvctl -l", &kv_lines), ("etcdctl -l", &etcd_lines)] {
            let got: Vec<String> = (0..4).map(|_| next_line(lines, who)).collect();
            assert_eq!(
                got,
                [
                    first_key.as_str(),
                    "by-etcdctl",
                    second_key.as_str(),
                    "by-kvctl"
                ],
                "[{kind}] {who}"
            );
        }
        signal(&second, "INT");
        assert!(wait_exit(&mut second, "kvctl elect").success());
        wait_keys(ep, "el/", 0);
        for (obs, who) in [(&mut kv_obs, "kvctl -l"), (&mut etcd_obs, "etcdctl -l")] {
            signal(obs, "TERM");
            wait_exit(obs, who);
        }
        assert!(
            kv_lines.try_recv().is_err() && etcd_lines.try_recv().is_err(),
            "[{kind}] a leader was reported twice"
        );
    }
}

#[test]
fn killed_service_is_removed_within_its_ttl() {
    for (kind, server) in servers() {
        eprintln!("=== {kind}");
        let ep = &server.endpoint;
        let (mut watch, events) = spawn(KVCTL, ep, &["service", "watch", "api"]);
        let args = [
            "service",
            "register",
            "api",
            "127.0.0.1:80",
            "--id",
            "doomed",
            "--ttl",
            "2",
        ];
        let (mut reg, reg_lines) = spawn(KVCTL, ep, &args);
        assert!(
            next_line(&reg_lines, "registered").starts_with("registered kv/services/api/doomed")
        );
        let added = next_line(&events, "ADDED");
        assert!(
            added.starts_with("ADDED ") && added.contains("\"doomed\""),
            "{added}"
        );
        reg.kill().unwrap(); // SIGKILL: no chance to deregister
        reg.wait().unwrap();
        let removed = next_line(&events, "REMOVED");
        assert!(
            removed.starts_with("REMOVED ") && removed.contains("\"doomed\""),
            "[{kind}] {removed}"
        );
        signal(&watch, "INT");
        assert!(wait_exit(&mut watch, "service watch").success());
    }
}

/// Separate `kvctl lock` processes per contender on the cluster.
const KILL_CONTENDERS: usize = 4;
/// Increments each contender makes at least (and on until the kills end).
const KILL_ROUNDS: usize = 5;
/// Upper bound for a contender's whole loop (a hang fails, not a timing).
const KILL_CONTEND_LIMIT: Duration = Duration::from_secs(120);
/// Read-modify-write of `$D/count` under the lock. `mkdir` is the overlap
/// detector (it fails while another holder is inside); each increment also
/// appends the value it wrote to the contender's own `$D/runs-$C`, so a
/// kvctl that fails after its command ran still has that run counted.
const KILL_SCRIPT: &str = "mkdir \"$D/held\" 2>/dev/null || \
    { echo \"$ETCD_LOCK_KEY\" >> \"$D/overlap\"; exit 9; }; \
    n=$(cat \"$D/count\"); sleep 0.05; echo $((n+1)) > \"$D/count\"; \
    echo $((n+1)) >> \"$D/runs-$C\"; rmdir \"$D/held\"";

/// The values contender `c`'s commands wrote, in order.
fn runs_of(dir: &Path, c: usize) -> Vec<u64> {
    std::fs::read_to_string(dir.join(format!("runs-{c}")))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// Contender `c`: runs `kvctl lock` until it made at least
/// [`KILL_ROUNDS`] increments and `stop` is set. A failed invocation
/// (e.g. its member died mid-way) is retried: only the runs its command
/// recorded count. Returns the failures' stderr.
fn contend(c: usize, endpoints: &str, dir: &Path, flags: &Flags) -> Vec<String> {
    let deadline = Instant::now() + KILL_CONTEND_LIMIT;
    let mut failures = Vec::new();
    while runs_of(dir, c).len() < KILL_ROUNDS || !flags.stop.load(Ordering::SeqCst) {
        if flags.abort.load(Ordering::SeqCst) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "contender {c} not done within {KILL_CONTEND_LIMIT:?}; failures: {failures:?}"
        );
        let out = output_bounded(
            Command::new(KVCTL)
                .arg(format!("--endpoints={endpoints}"))
                .args(["lock", "--ttl=5", "kills", "--", "sh", "-c", KILL_SCRIPT])
                .env("D", dir)
                .env("C", c.to_string()),
            STEP_TIMEOUT,
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.code().is_some(),
            "contender {c}: kvctl lock hung for {STEP_TIMEOUT:?} (killed): {stderr}"
        );
        if !out.status.success() {
            failures.push(stderr);
        }
    }
    failures
}

/// What the test tells its contenders: `stop` once the kills are over;
/// `abort` (set on drop) when the test body ends, e.g. by a panic, so no
/// contender outlives it.
#[derive(Default)]
struct Flags {
    stop: AtomicBool,
    abort: AtomicBool,
}

struct AbortOnDrop(Arc<Flags>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort.store(true, Ordering::SeqCst);
    }
}

/// Index of the leader, as member 0 (up when this is asked) reports it.
async fn leader_of(cluster: &cluster::Cluster) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(st) = cluster.member_client(0).await.status().await {
            for j in 0..3 {
                if cluster.member_id(j).await == st.leader() {
                    return j;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGKILLs member `i`, leaves it down a while, restarts it on its data.
async fn kill_and_restart(cluster: &mut cluster::Cluster, i: usize, role: &str) {
    tokio::time::sleep(Duration::from_millis(700)).await;
    eprintln!("killing member {i} ({role})");
    cluster.kill9(i);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.restart(i).await;
}

/// The lock check with separate processes: `kvctl lock` contenders
/// against all three members, while a follower, then the leader, then
/// another member are SIGKILLed and restarted. Every increment counts
/// exactly once and no two holders are ever inside together.
async fn kvctl_lock_survives_member_kills(kind: Kind) {
    let mut cluster = cluster::Cluster::start(kind, 3, &[], None).await;
    let endpoints = cluster.endpoints().join(",");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("count"), "0\n").unwrap();
    let flags = Arc::new(Flags::default());
    let _abort = AbortOnDrop(flags.clone());
    let contenders: Vec<_> = (0..KILL_CONTENDERS)
        .map(|c| {
            let (eps, d, flags) = (endpoints.clone(), dir.path().to_path_buf(), flags.clone());
            tokio::task::spawn_blocking(move || contend(c, &eps, &d, &flags))
        })
        .collect();

    let leader = leader_of(&cluster).await;
    let follower = (leader + 1) % 3;
    kill_and_restart(&mut cluster, follower, "follower").await;
    let leader = leader_of(&cluster).await;
    kill_and_restart(&mut cluster, leader, "leader").await;
    let last = (0..3).find(|&i| i != follower && i != leader).unwrap();
    kill_and_restart(&mut cluster, last, "the third").await;
    flags.stop.store(true, Ordering::SeqCst);

    // Failed invocations are allowed (and retried); shown by message.
    let mut failures = std::collections::BTreeMap::<String, usize>::new();
    for c in contenders {
        for f in c.await.unwrap() {
            *failures.entry(f).or_default() += 1;
        }
    }
    let overlap = std::fs::read_to_string(dir.path().join("overlap")).unwrap_or_default();
    assert!(overlap.is_empty(), "[{kind}] holders overlapped: {overlap}");
    let mut written = Vec::new();
    for c in 0..KILL_CONTENDERS {
        let runs = runs_of(dir.path(), c);
        assert!(
            runs.len() >= KILL_ROUNDS,
            "[{kind}] contender {c}: {runs:?}"
        );
        written.extend(runs);
    }
    // A lost update would write some value twice and the count would fall
    // short of the runs.
    written.sort_unstable();
    let total = written.len() as u64;
    eprintln!("[{kind}] {total} increments; failed kvctl lock runs: {failures:?}");
    assert_eq!(written, (1..=total).collect::<Vec<_>>(), "[{kind}]");
    let count = std::fs::read_to_string(dir.path().join("count")).unwrap();
    assert_eq!(count.trim(), total.to_string(), "[{kind}]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvctl_lock_survives_member_kills_on_kvd() {
    kvctl_lock_survives_member_kills(Kind::Kvd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvctl_lock_survives_member_kills_on_etcd() {
    kvctl_lock_survives_member_kills(Kind::Etcd).await;
}
