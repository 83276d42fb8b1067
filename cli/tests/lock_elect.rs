//! `kvctl lock`, `elect` and `service` as real processes, against kvd and
//! etcd, mixed with Debian's `etcdctl lock` / `elect` on the same names.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::*;

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
