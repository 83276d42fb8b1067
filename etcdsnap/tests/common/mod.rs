//! Helpers for tests against real etcd binaries: spawn a single-member etcd on
//! free ports, drive it with etcdctl, find the newest etcd and etcdutl.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free 127.0.0.1 port, kept for this process ([`kv_robustness::ports`]).
pub fn free_port() -> u16 {
    kv_robustness::ports::free_port().expect("a free loopback port")
}

/// A running single-member etcd, killed on drop.
pub struct Etcd {
    child: Child,
    pub endpoint: String,
    pub peer: String,
    pub name: String,
    etcdctl: PathBuf,
}

/// Peer URL and `--initial-cluster` value for a fresh member.
pub fn peer_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

impl Etcd {
    /// Starts `etcd` (binary path) on `data_dir`; for a restored dir pass the
    /// peer URL given to restore.
    pub fn start(etcd: &Path, etcdctl: &Path, data_dir: &Path, name: &str, peer: &str) -> Etcd {
        let endpoint = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let child = Command::new(etcd)
            .args(["--name", name, "--data-dir"])
            .arg(data_dir)
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args([
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
            ])
            .args(["--initial-cluster", &format!("{name}={peer}")])
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        let e = Etcd {
            child,
            endpoint,
            peer: peer.into(),
            name: name.into(),
            etcdctl: etcdctl.into(),
        };
        e.wait_healthy(data_dir);
        e
    }

    fn wait_healthy(&self, data_dir: &Path) {
        // Bounded wait on readiness (not a timing assertion): etcd serves in ~1s.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let out = self.ctl_raw(&["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
        panic!(
            "etcd at {} never became healthy; log:\n{log}",
            self.endpoint
        );
    }

    pub fn ctl_raw(&self, args: &[&str]) -> Output {
        Command::new(&self.etcdctl)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint, "--command-timeout", "10s"])
            .args(args)
            .output()
            .expect("run etcdctl")
    }

    /// Runs etcdctl and returns stdout; panics with stderr on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.ctl_raw(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["-w", "json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ctl(&a)).unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run_script(rel: &str) -> Option<String> {
    let out = Command::new("bash")
        .arg(repo_root().join(rel))
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8(out.stdout)
            .ok()?
            .trim()
            .lines()
            .last()?
            .to_string(),
    )
}

/// (etcd, etcdctl) of the newest release, built by scripts/etcd-latest.sh; None (with a
/// printed reason) when Go is missing or the build fails.
pub fn etcd_latest() -> Option<(PathBuf, PathBuf)> {
    let Some(dir) = run_script("scripts/etcd-latest.sh") else {
        eprintln!(
            "SKIP: scripts/etcd-latest.sh could not build the newest etcd (is Go installed?)"
        );
        return None;
    };
    Some((
        Path::new(&dir).join("etcd"),
        Path::new(&dir).join("etcdctl"),
    ))
}

/// etcdutl of the newest release, built by etcdsnap/scripts/etcdutl-latest.sh.
pub fn etcdutl_latest() -> Option<PathBuf> {
    let Some(p) = run_script("etcdsnap/scripts/etcdutl-latest.sh") else {
        eprintln!(
            "SKIP: etcdsnap/scripts/etcdutl-latest.sh could not build etcdutl (is Go installed?)"
        );
        return None;
    };
    Some(PathBuf::from(p))
}

/// Debian's etcd 3.4, required: the project's machines install it.
pub fn etcd34() -> (PathBuf, PathBuf) {
    (
        PathBuf::from("/usr/bin/etcd"),
        PathBuf::from("/usr/bin/etcdctl"),
    )
}

/// Runs `cmd` and returns its stdout; fails the test, with `what` and the
/// command's stderr, when it exits non-zero.
pub fn run_ok(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `snapshot status -w json` of `file` by `cmd` (etcdutl, or etcdctl 3.4 with
/// `ETCDCTL_API=3`), parsed.
pub fn snapshot_status_json(mut cmd: Command, file: &Path) -> serde_json::Value {
    let out = run_ok(
        cmd.args(["snapshot", "status", "-w", "json"]).arg(file),
        "snapshot status failed",
    );
    serde_json::from_slice(&out).unwrap()
}

/// `etcdctl snapshot status -w json` (3.4) as (hash, revision, totalKey, totalSize).
pub fn etcdctl_status(etcdctl: &Path, file: &Path) -> (u64, i64, u64, u64) {
    let mut cmd = Command::new(etcdctl);
    cmd.env("ETCDCTL_API", "3");
    let v = snapshot_status_json(cmd, file);
    (
        v["hash"].as_u64().unwrap(),
        v["revision"].as_i64().unwrap(),
        v["totalKey"].as_u64().unwrap(),
        v["totalSize"].as_u64().unwrap(),
    )
}

/// Decodes etcdctl's base64 JSON fields.
pub fn b64(v: &serde_json::Value) -> Vec<u8> {
    let s = v.as_str().unwrap_or("");
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let d = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        buf = (buf << 6) | u32::from(d);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}
