//! `--cacert/--cert/--key` and `--user/--password`: the same commands with
//! our `kvctl` and with `/usr/bin/etcdctl` against one etcd 3.4 serving
//! https with `--client-cert-auth` and auth enabled (kvd has neither yet),
//! comparing stdout, stderr and exit codes. The throwaway CA and
//! certificates come from the `openssl` CLI.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KVCTL: &str = env!("CARGO_BIN_EXE_kvctl");
const ETCDCTL: &str = "/usr/bin/etcdctl";
const ETCD: &str = "/usr/bin/etcd";

#[path = "../../client/tests/suite/pki.rs"]
mod pki;

/// `good-ca.pem`, `server`/`client` certificates signed by it, and an
/// unrelated `other-ca.pem`, in `dir`.
fn make_pki(dir: &Path) {
    pki::make_ca(dir, "good");
    pki::make_ca(dir, "other");
    for name in ["server", "client"] {
        pki::make_leaf(dir, "good", name);
    }
}

struct Etcd {
    child: Child,
    endpoint: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    kv_robustness::ports::free_port().expect("a free loopback port")
}

fn start_etcd(dir: &Path) -> Etcd {
    let (p, q) = (free_port(), free_port());
    let client = format!("https://127.0.0.1:{p}");
    let peer = format!("http://127.0.0.1:{q}");
    let file = |f: &str| dir.join(f).display().to_string();
    let child = Command::new(ETCD)
        .arg("--name=n1")
        .arg(format!("--data-dir={}", file("data")))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=n1={peer}"))
        .arg(format!("--cert-file={}", file("server.pem")))
        .arg(format!("--key-file={}", file("server.key")))
        .arg(format!("--trusted-ca-file={}", file("good-ca.pem")))
        .arg("--client-cert-auth")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcd");
    Etcd {
        child,
        endpoint: client,
    }
}

/// Runs `bin` with the TLS flags for `dir` and `args`.
fn ctl(bin: &str, etcd: &Etcd, dir: &Path, args: &[&str]) -> Output {
    ctl_ca(bin, etcd, dir, "good-ca.pem", args)
}

/// [`ctl`] trusting the CA in file `ca`.
fn ctl_ca(bin: &str, etcd: &Etcd, dir: &Path, ca: &str, args: &[&str]) -> Output {
    let file = |f: &str| dir.join(f).display().to_string();
    Command::new(bin)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("KVCTL_ENDPOINTS")
        .args(["--endpoints", &etcd.endpoint, "--dial-timeout", "2s"])
        .args(["--cacert", &file(ca)])
        .args(["--cert", &file("client.pem"), "--key", &file("client.key")])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// What a run shows, without etcdctl's JSON log lines (its client library
/// logs retries on stderr).
fn shown(out: &Output) -> (Option<i32>, String, String) {
    let stderr: Vec<&str> = std::str::from_utf8(&out.stderr)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("{\"level\""))
        .collect();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr.join("\n"),
    )
}

#[test]
fn tls_and_auth_flags_match_etcdctl() {
    let dir = tempfile::Builder::new()
        .prefix("kvctl-secure-")
        .tempdir()
        .unwrap();
    make_pki(dir.path());
    let etcd = start_etcd(dir.path());
    let d = dir.path();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ctl(ETCDCTL, &etcd, d, &["get", "probe"]).status.success() {
        assert!(Instant::now() < deadline, "etcd with TLS not ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Over TLS, before auth: our client works with the same flags.
    let out = ctl(KVCTL, &etcd, d, &["put", "k", "v"]);
    assert_eq!(shown(&out), (Some(0), "OK\n".into(), String::new()));

    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["auth", "enable"],
    ] {
        let out = ctl(ETCDCTL, &etcd, d, args);
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
    }

    let cases: [&[&str]; 5] = [
        &["--user", "root:rootpw", "put", "k", "v2"],
        &["--user", "root", "--password", "rootpw", "get", "k"],
        &["--user=root:rootpw", "get", "k", "--print-value-only"],
        &["--user", "root:wrong", "get", "k"],
        &["get", "k"],
    ];
    for args in cases {
        let ours = shown(&ctl(KVCTL, &etcd, d, args));
        let theirs = shown(&ctl(ETCDCTL, &etcd, d, args));
        assert_eq!(ours, theirs, "kvctl vs etcdctl for {args:?}");
    }

    // A server signed by a CA we do not trust: refused, unless told to
    // skip verification.
    let args = ["--user", "root:rootpw", "get", "k"];
    let out = ctl_ca(KVCTL, &etcd, d, "other-ca.pem", &args);
    assert!(!out.status.success(), "untrusted server accepted: {out:?}");
    let args = [
        "--insecure-skip-tls-verify",
        "--user",
        "root:rootpw",
        "get",
        "k",
    ];
    let ours = shown(&ctl_ca(KVCTL, &etcd, d, "other-ca.pem", &args));
    let theirs = shown(&ctl_ca(ETCDCTL, &etcd, d, "other-ca.pem", &args));
    assert_eq!(ours, theirs);
    assert_eq!(ours.0, Some(0));
}
