//! Runs the same scripted sequence with our `kvctl` against kvd and with
//! `/usr/bin/etcdctl` against etcd 3.4, and compares stdout, stderr and exit
//! codes (cluster/member IDs and raft terms masked; they legitimately differ).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KVCTL: &str = env!("CARGO_BIN_EXE_kvctl");
const ETCDCTL: &str = "/usr/bin/etcdctl";
const ETCD: &str = "/usr/bin/etcd";

/// A server child process, killed on drop.
struct Server {
    child: Child,
    endpoint: String,
    ports: (u16, u16),
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kvd_bin() -> PathBuf {
    if let Ok(p) = std::env::var("KVD_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = root.join("target/debug/kvd");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "kvd"])
            .current_dir(&root)
            .status()
            .expect("cargo build -p kvd");
        assert!(status.success(), "cargo build -p kvd failed");
    }
    bin
}

fn start(bin: &std::path::Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (p, q) = (free_port(), free_port());
    let client = format!("http://127.0.0.1:{p}");
    let peer = format!("http://127.0.0.1:{q}");
    let child = Command::new(bin)
        .arg("--name")
        .arg("n1")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("n1={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let server = Server {
        child,
        endpoint: format!("127.0.0.1:{p}"),
        ports: (p, q),
        _dir: dir,
    };
    wait_ready(&server);
    server
}

/// Waits until the server answers a read, with a deadline.
fn wait_ready(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(&s.endpoint).is_ok() {
            let out = Command::new(KVCTL)
                .args(["--endpoints", &s.endpoint, "--command-timeout", "1s"])
                .args(["get", "readiness-probe"])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{} not ready", s.endpoint);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Masks the fields that legitimately differ between two clusters.
fn mask(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        // etcdctl's client library logs retries as JSON lines on stderr.
        if line.starts_with("{\"level\"") {
            continue;
        }
        let mut l = line.to_string();
        for key in [
            "\"cluster_id\":",
            "\"member_id\":",
            "\"raft_term\":",
            "\"lease\":",
        ] {
            l = mask_number_after(&l, key);
        }
        for key in ["\"ClusterID\" : ", "\"MemberID\" : ", "\"RaftTerm\" : "] {
            l = mask_number_after(&l, key);
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn mask_number_after(s: &str, key: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(key) {
        out.push_str(&rest[..i + key.len()]);
        rest = &rest[i + key.len()..];
        let n = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        out.push('N');
        rest = &rest[n..];
    }
    out.push_str(rest);
    out
}

/// Masks what differs in `member list` between two single-member clusters:
/// the ports, the member ID (hex or decimal), and so the table's widths.
fn mask_member(s: &str, server: &Server) -> String {
    let s = s
        .replace(&format!(":{}", server.ports.0), ":P")
        .replace(&format!(":{}", server.ports.1), ":Q");
    let s = mask_number_after(&mask_number_after(&s, "\"ID\":"), "\"ID\" : ");
    // Hex IDs: runs of at least 12 hex digits.
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 12 {
            out.push_str("<ID>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in s.chars() {
        if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    // Table widths follow the ID's length: collapse padding and rules.
    let mut collapsed = String::new();
    for c in out.chars() {
        if (c == ' ' || c == '-') && collapsed.ends_with(c) {
            continue;
        }
        collapsed.push(c);
    }
    collapsed
}

/// Masks Go-style durations (`1.01217ms`, `900µs`, `2s`): `endpoint health`
/// timings.
fn mask_took(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            let rest: String = chars[j..].iter().take(2).collect();
            let unit = ["ns", "µs", "ms"]
                .iter()
                .find(|u| rest.starts_with(**u))
                .map(|u| u.chars().count())
                .or_else(|| rest.starts_with('s').then_some(1));
            if let Some(n) = unit {
                out.push_str("<T>");
                i = j + n;
                continue;
            }
            out.extend(&chars[i..j]);
            i = j;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Masks every number and size unit: `endpoint status` differs between
/// servers in version, DB size and raft indexes; only the shape is compared.
fn mask_status(s: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    for c in s.chars() {
        if c.is_ascii_digit() || (in_num && c == '.') {
            if !in_num {
                out.push('N');
                in_num = true;
            }
        } else {
            in_num = false;
            out.push(c);
        }
    }
    ["N B", "N kB", "N MB", "N GB"]
        .iter()
        .fold(out, |acc, u| acc.replace(u, "N U"))
}

#[derive(Debug, PartialEq)]
struct Run {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs one scripted command. `$L` in the arguments is replaced by the lease
/// ID (hex) granted earlier on this side; that ID and the remaining TTL are
/// masked in the output.
fn run(bin: &str, endpoint: &str, args: &[&str], lease: &mut Option<String>) -> Run {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("$L", lease.as_deref().unwrap_or("0")))
        .collect();
    let out = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("KVCTL_ENDPOINTS")
        .args(["--endpoints", endpoint])
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if args.len() >= 2 && args[0] == "lease" && args[1] == "grant" && out.status.success() {
        *lease = stdout.split_whitespace().nth(1).map(str::to_string);
    }
    let lease: Option<String> = lease.clone();
    let unlease = |s: &str| {
        let s = match &lease {
            Some(l) => s.replace(l.as_str(), "<L>"),
            None => s.to_string(),
        };
        mask_number_after(&s, "remaining(")
    };
    Run {
        args: args
            .join(" ")
            .replace(lease.as_deref().unwrap_or("\0"), "$L"),
        code: out.status.code().unwrap_or(-1),
        stdout: unlease(&mask(&stdout)),
        stderr: unlease(&mask(&String::from_utf8_lossy(&out.stderr))),
    }
}

/// The scripted sequence; each line is one command's arguments.
const SCRIPT: &[&[&str]] = &[
    &["put", "a", "1"],
    &["put", "a", "2", "--prev-kv"],
    &["-w", "json", "put", "b", "3", "--prev-kv"],
    &["-w", "json", "put", "b", "4", "--prev-kv"],
    &["-w", "fields", "put", "b", "5", "--prev-kv"],
    &["put", "c", "hello world"],
    &["put", "d/x", "dx"],
    &["put", "d/y", "dy"],
    &["get", "a"],
    &["get", "a", "c"],
    &["get", "zz"],
    &["-w", "json", "get", "zz"],
    &["-w", "json", "get", "a"],
    &["-w", "json", "get", "a", "--prefix"],
    &["-w", "json", "get", "", "--prefix", "--limit=2"],
    &["-w", "fields", "get", "d/", "--prefix"],
    &["get", "d/", "--prefix", "--keys-only"],
    &["get", "d/", "--prefix", "--print-value-only"],
    &["get", "b", "--from-key"],
    &["get", "", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"],
    &["get", "", "--prefix", "--sort-by=VALUE"],
    &["get", "", "--prefix", "--order=DESCEND", "--limit=3"],
    &["-w", "json", "get", "a", "--rev=2"],
    &["get", "a", "--rev=2"],
    &["get", "a", "--rev=100000"],
    &["get", "a", "--order=sideways"],
    &["get", "a", "--sort-by=color"],
    &["get", "a", "--prefix", "--from-key"],
    &["get", "a", "b", "--prefix"],
    &["get"],
    &["put", "onlykey-and-no-value-from-stdin"],
    &["put", "k", "v", "--lease=zz"],
    &["put", "k", "v", "--lease=123abc"],
    &["-w", "yaml", "get", "a"],
    &["-w", "table", "get", "a"],
    &["del", "zz"],
    &["-w", "json", "del", "zz"],
    &["del", "a", "--prev-kv"],
    &["-w", "json", "del", "b", "--prev-kv"],
    &["-w", "fields", "del", "c", "--prev-kv"],
    &["del", "d/", "--prefix", "--prev-kv"],
    &["put", "e1", "1"],
    &["put", "e2", "2"],
    &["del", "e", "--from-key"],
    &["del"],
    &["del", "a", "b", "--from-key"],
    &["-w", "json", "get", "", "--prefix"],
    &["lease", "grant"],
    &["lease", "grant", "x"],
    &["lease", "revoke"],
    &["lease", "revoke", "zz"],
    &["lease", "timetolive"],
    &["lease", "timetolive", "zz"],
    &["lease", "grant", "60"],
    &["put", "lk", "v", "--lease=$L"],
    &["lease", "list"],
    &["-w", "json", "get", "lk"],
    &["lease", "timetolive", "$L"],
    &["lease", "timetolive", "$L", "--keys"],
    &["lease", "revoke", "$L"],
    &["lease", "revoke", "$L"],
    &["lease", "timetolive", "$L"],
    &["lease", "list", "extra"],
    &["get", "lk"],
    &["compaction"],
    &["compaction", "x"],
    &["compaction", "3"],
    &["compaction", "3"],
    &["compaction", "2"],
    &["compaction", "100000"],
    &["-w", "json", "compaction", "5", "--physical"],
    &["get", "a", "--rev=2"],
    &["alarm", "list"],
    &["-w", "json", "alarm", "list"],
    &["alarm", "list", "x"],
    &["member", "list"],
    &["-w", "table", "member", "list"],
    &["-w", "json", "member", "list"],
    &["-w", "fields", "member", "list"],
    &["endpoint", "health"],
    &["-w", "table", "endpoint", "health"],
    &["-w", "json", "endpoint", "health"],
    &["endpoint", "status"],
    &["-w", "table", "endpoint", "status"],
];

#[test]
fn kvctl_matches_etcdctl() {
    let etcd = start(std::path::Path::new(ETCD));
    let kvd = start(&kvd_bin());
    let mut failures = Vec::new();
    let (mut etcd_lease, mut kvd_lease) = (None, None);
    for args in SCRIPT {
        let want = run(ETCDCTL, &etcd.endpoint, args, &mut etcd_lease);
        let mut got = run(KVCTL, &kvd.endpoint, args, &mut kvd_lease);
        let mut want = want;
        if args.contains(&"member") || args.contains(&"endpoint") {
            for (r, server) in [(&mut want, &etcd), (&mut got, &kvd)] {
                r.stdout = mask_took(&r.stdout);
                r.stderr = mask_took(&r.stderr);
                r.stdout = mask_member(&r.stdout, server);
                r.stderr = mask_member(&r.stderr, server);
                if args.contains(&"status") {
                    r.stdout = mask_status(&r.stdout);
                }
            }
        }
        if args == &["put", "a", "1"] {
            assert_eq!(want.stdout, "OK\n", "etcdctl did not run: {want:?}");
        }
        if want != got {
            failures.push(format!("etcdctl: {want:#?}\nkvctl:   {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn mask_took_masks_only_durations() {
    assert_eq!(
        mask_took("127.0.0.1:P took = 1.01217ms, 20µs 2s x1s"),
        "127.0.0.1:P took = <T>, <T> <T> x1s"
    );
}

#[test]
fn version_prints_etcdctl_shape() {
    let out = Command::new(KVCTL).arg("version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "kvctl version: {}\nAPI version: 3.5\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn endpoints_env_fallback_and_connection_failure() {
    // No server on this port: a request fails with exit 1 and "Error: ...".
    let port = free_port();
    let out = Command::new(KVCTL)
        .env_remove("KVCTL_ENDPOINTS")
        .env("ETCDCTL_ENDPOINTS", format!("127.0.0.1:{port}"))
        .args(["--dial-timeout", "200ms", "--command-timeout", "500ms"])
        .args(["get", "a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("Error: "), "{err}");
    assert!(out.stdout.is_empty());

    // endpoint health reports the dead endpoint and fails the cluster.
    let out = Command::new(KVCTL)
        .env_remove("KVCTL_ENDPOINTS")
        .env_remove("ETCDCTL_ENDPOINTS")
        .args(["--endpoints", &format!("127.0.0.1:{port}")])
        .args(["--dial-timeout", "200ms", "--command-timeout", "500ms"])
        .args(["endpoint", "health"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "127.0.0.1:{port} is unhealthy: failed to commit proposal: "
        )),
        "{err}"
    );
    assert!(err.ends_with("Error: unhealthy cluster\n"), "{err}");
}
