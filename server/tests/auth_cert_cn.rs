//! etcd's client-certificate rule for auth, against kvd and etcd 3.4: with
//! --client-cert-auth and auth enabled, a request without a token acts as
//! the user named by its verified client certificate's CN. etcdctl 3.4
//! with --cert/--key and no --user is allowed and denied as that user's
//! roles say; a token, when sent, wins; without --client-cert-auth (a
//! trusted CA alone) the CN is nobody.

mod common;
#[path = "../../client/tests/suite/pki.rs"]
mod pki;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use pki::{make_ca, make_leaf};

const ETCD_BIN: &str = "/usr/bin/etcd";
const WAIT: Duration = Duration::from_secs(60);

/// One member (kvd or etcd) serving clients over mutual TLS.
struct Member {
    child: Child,
    endpoint: String,
    log: PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin` on ports `(c, p)` with data and certificates in `dir`.
fn start(bin: &Path, dir: &Path, ports: (u16, u16), cert_auth: bool) -> Member {
    start_cluster(bin, dir, &[ports], cert_auth)
        .pop()
        .expect("one member")
}

/// Starts one member per port pair, as one cluster (member i is `n{i}`).
fn start_cluster(bin: &Path, dir: &Path, ports: &[(u16, u16)], cert_auth: bool) -> Vec<Member> {
    let f = |n: &str| dir.join(n).display().to_string();
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("n{}=http://127.0.0.1:{p}", i + 1))
        .collect();
    let members: Vec<Member> = ports
        .iter()
        .enumerate()
        .map(|(i, &(c, p))| {
            let client = format!("https://127.0.0.1:{c}");
            let peer = format!("http://127.0.0.1:{p}");
            let log = dir.join(format!("server-{c}.log"));
            let mut cmd = Command::new(bin);
            cmd.args([
                format!("--name=n{}", i + 1),
                format!("--data-dir={}", f(&format!("data-{}", i + 1))),
            ])
            .args([
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster={}", initial.join(",")),
                format!("--cert-file={}", f("server.pem")),
                format!("--key-file={}", f("server.key")),
                format!("--trusted-ca-file={}", f("client-ca.pem")),
            ]);
            if cert_auth {
                cmd.arg("--client-cert-auth");
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("spawn server");
            Member {
                child,
                endpoint: client,
                log,
            }
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    for m in &members {
        // Before auth is enabled no user is needed; after, without the CN
        // rule, the health check's read needs one.
        let healthy = |args: &[&str]| etcdctl(m, dir, "root", args).status.success();
        while !healthy(&["endpoint", "health"])
            && !healthy(&["--user=root:rpw", "endpoint", "health"])
        {
            assert!(
                Instant::now() < deadline,
                "{bin:?} did not become healthy:\n{}",
                std::fs::read_to_string(&m.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    members
}

/// etcdctl 3.4 presenting certificate `leaf` (its CN is the name).
fn etcdctl(m: &Member, dir: &Path, leaf: &str, args: &[&str]) -> Output {
    let f = |n: &str| dir.join(n).display().to_string();
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", m.endpoint))
        .args(["--dial-timeout=2s", "--command-timeout=5s"])
        .arg(format!("--cacert={}", f("client-ca.pem")))
        .arg(format!("--cert={}", f(&format!("{leaf}.pem"))))
        .arg(format!("--key={}", f(&format!("{leaf}.key"))))
        .args(args)
        .output()
        .expect("run etcdctl")
}

fn step(t: &mut Vec<String>, m: &Member, dir: &Path, leaf: &str, args: &[&str]) {
    let out = etcdctl(m, dir, leaf, args);
    record(t, leaf, args, out);
}

/// A step whose etcdctl runs until `timeout(1)` stops it (a watch): what it
/// printed by then is the observation, not how long it took.
fn watch_step(t: &mut Vec<String>, m: &Member, dir: &Path, leaf: &str, args: &[&str]) {
    let f = |n: &str| dir.join(n).display().to_string();
    let out = Command::new("timeout")
        .arg("3")
        .arg("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", m.endpoint))
        .args(["--dial-timeout=2s"])
        .arg(format!("--cacert={}", f("client-ca.pem")))
        .arg(format!("--cert={}", f(&format!("{leaf}.pem"))))
        .arg(format!("--key={}", f(&format!("{leaf}.key"))))
        .args(args)
        .output()
        .expect("run etcdctl watch");
    record(t, leaf, args, out);
}

fn record(t: &mut Vec<String>, leaf: &str, args: &[&str], out: Output) {
    let err: Vec<&str> = std::str::from_utf8(&out.stderr)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains("\"level\":\"warn\""))
        .collect();
    let line = format!(
        "[{leaf}] {args:?} rc={} out={:?} err={:?}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim_end(),
        err.join("\n")
    );
    eprintln!("{line}");
    t.push(line);
}

/// The steps for one server binary; returns the transcript.
fn run(bin: &Path) -> Vec<String> {
    let dir = tempfile::Builder::new()
        .prefix("kvd-cn-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    make_ca(d, "client");
    for leaf in ["server", "root", "alice", "nobody"] {
        make_leaf(d, "client", leaf);
    }
    let mut t = Vec::new();
    let ports = (free_port(), free_port());
    let m = start(bin, d, ports, true);
    for args in [
        &["user", "add", "root:rpw"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "ro"],
        &["role", "grant-permission", "ro", "read", "a", "c"],
        &["user", "add", "alice:apw"],
        &["user", "grant-role", "alice", "ro"],
        &["put", "a1", "v1"],
        &["auth", "enable"],
    ] {
        step(&mut t, &m, d, "root", args);
    }
    step(&mut t, &m, d, "alice", &["get", "a1"]);
    step(&mut t, &m, d, "alice", &["put", "a1", "x"]);
    step(&mut t, &m, d, "alice", &["user", "list"]);
    step(&mut t, &m, d, "root", &["put", "a1", "v2"]);
    step(&mut t, &m, d, "root", &["user", "list"]);
    step(&mut t, &m, d, "nobody", &["get", "a1"]);
    // A watch is checked as the CN's user too: alice reads a..c, nobody nothing.
    watch_step(&mut t, &m, d, "alice", &["watch", "a1", "--rev=1"]);
    watch_step(&mut t, &m, d, "nobody", &["watch", "a1", "--rev=1"]);
    // A token wins over the certificate.
    step(
        &mut t,
        &m,
        d,
        "alice",
        &["--user", "root:rpw", "put", "a1", "v3"],
    );
    step(
        &mut t,
        &m,
        d,
        "nobody",
        &["--user", "alice:apw", "get", "a1"],
    );
    drop(m);
    // A trusted CA alone still demands a certificate, but its CN is no user.
    let m = start(bin, d, ports, false);
    step(&mut t, &m, d, "alice", &["get", "a1"]);
    step(&mut t, &m, d, "root", &["--user", "root:rpw", "get", "a1"]);
    drop(m);
    t
}

#[test]
fn client_cert_cn_is_the_user_as_in_etcd() {
    let kvd = run(Path::new(env!("CARGO_BIN_EXE_kvd")));
    // The steps must have exercised both outcomes.
    assert!(kvd.iter().any(|l| l.contains("permission denied")));
    assert!(kvd
        .iter()
        .any(|l| l.starts_with("[alice] [\"get\"") && l.contains("v1")));
    if std::env::var("KV_TEST_ONLY").is_ok_and(|k| k.trim() == "kvd") {
        return;
    }
    let etcd = run(Path::new(ETCD_BIN));
    for (i, (a, b)) in kvd.iter().zip(&etcd).enumerate() {
        assert_eq!(a, b, "step {i} differs:\n  kvd:  {a}\n  etcd: {b}");
    }
    assert_eq!(kvd.len(), etcd.len());
}

/// Three members: the CN's user writes and reads through every member, so at
/// least two of them forward to the leader, which must still act as (and
/// check) the CN's user.
fn run_cluster(bin: &Path) -> Vec<String> {
    let dir = tempfile::Builder::new()
        .prefix("kvd-cn3-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    make_ca(d, "client");
    for leaf in ["server", "root", "alice"] {
        make_leaf(d, "client", leaf);
    }
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let ms = start_cluster(bin, d, &ports, true);
    let mut t = Vec::new();
    for args in [
        &["user", "add", "root:rpw"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "rw"],
        &["role", "grant-permission", "rw", "readwrite", "a", "c"],
        &["user", "add", "alice:apw"],
        &["user", "grant-role", "alice", "rw"],
        &["auth", "enable"],
    ] {
        step(&mut t, &ms[0], d, "root", args);
    }
    for (i, m) in ms.iter().enumerate() {
        let key = format!("a{i}");
        step(&mut t, m, d, "alice", &["put", &key, "v"]);
        step(&mut t, m, d, "alice", &["put", &format!("z{i}"), "v"]);
        step(&mut t, m, d, "alice", &["get", &key]);
        step(&mut t, m, d, "alice", &["lease", "grant", "60"]);
    }
    // Lease IDs differ between runs: keep only whether the grant worked.
    for l in &mut t {
        if l.contains("\"grant\"") {
            *l = l.split(" out=").next().unwrap_or_default().to_string();
        }
    }
    drop(ms);
    t
}

#[test]
fn client_cert_cn_user_is_carried_to_the_leader() {
    let kvd = run_cluster(Path::new(env!("CARGO_BIN_EXE_kvd")));
    assert!(kvd.iter().any(|l| l.contains("permission denied")));
    assert!(kvd
        .iter()
        .any(|l| l.contains("[\"put\", \"a2\", \"v\"] rc=0")));
    if std::env::var("KV_TEST_ONLY").is_ok_and(|k| k.trim() == "kvd") {
        return;
    }
    let etcd = run_cluster(Path::new(ETCD_BIN));
    for (i, (a, b)) in kvd.iter().zip(&etcd).enumerate() {
        assert_eq!(a, b, "step {i} differs:\n  kvd:  {a}\n  etcd: {b}");
    }
    assert_eq!(kvd.len(), etcd.len());
}
