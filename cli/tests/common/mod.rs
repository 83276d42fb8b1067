//! The parity harness shared by the parity tests: servers, runs, masks.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod procs;

pub const KVCTL: &str = env!("CARGO_BIN_EXE_kvctl");
pub const ETCDCTL: &str = "/usr/bin/etcdctl";
pub const ETCD: &str = "/usr/bin/etcd";

/// A server child process, killed on drop.
pub struct Server {
    pub child: Child,
    pub endpoint: String,
    pub ports: (u16, u16),
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    kv_robustness::ports::free_port().expect("a free loopback port")
}

pub fn kvd_bin() -> PathBuf {
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

pub fn start(bin: &std::path::Path) -> Server {
    // A port picked free may be taken by another test's server before ours
    // binds it; then the endpoint answers, but not from our server. Start
    // again on new ports until the server answering is ours.
    for _ in 0..5 {
        let server = spawn(bin);
        if wait_ready(&server) {
            return server;
        }
    }
    panic!(
        "{}: another server kept answering on our ports",
        bin.display()
    );
}

fn spawn(bin: &std::path::Path) -> Server {
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
    Server {
        child,
        endpoint: format!("127.0.0.1:{p}"),
        ports: (p, q),
        _dir: dir,
    }
}

/// Waits until the server answers a read, with a deadline: true when the
/// member answering is the one started on these ports (its peer URL is
/// ours), false when another process answers there.
pub fn wait_ready(s: &Server) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(&s.endpoint).is_ok() {
            let kvctl = |args: &[&str]| {
                Command::new(KVCTL)
                    .args(["--endpoints", &s.endpoint, "--command-timeout", "1s"])
                    .args(args)
                    .output()
                    .unwrap()
            };
            if kvctl(&["get", "readiness-probe"]).status.success() {
                let members = kvctl(&["member", "list"]);
                let ours = format!("http://127.0.0.1:{}", s.ports.1);
                return String::from_utf8_lossy(&members.stdout).contains(&ours);
            }
        }
        assert!(Instant::now() < deadline, "{} not ready", s.endpoint);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Masks the fields that legitimately differ between two clusters.
pub fn mask(s: &str) -> String {
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

pub fn mask_number_after(s: &str, key: &str) -> String {
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
pub fn mask_member(s: &str, server: &Server) -> String {
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
pub fn mask_took(s: &str) -> String {
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
pub fn mask_status(s: &str) -> String {
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
pub struct Run {
    pub args: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs one scripted command. `$L` in the arguments is replaced by the lease
/// ID (hex) granted earlier on this side; that ID and the remaining TTL are
/// masked in the output.
pub fn run(bin: &str, endpoint: &str, args: &[&str], lease: &mut Option<String>) -> Run {
    run_with_stdin(bin, endpoint, args, None, lease)
}

/// Longest a scripted command may take: a step that would hang (e.g. a
/// watch that never ends) is killed and fails the comparison instead.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits for the child's output, killing it after `limit`.
pub fn wait_bounded(mut child: Child, limit: Duration) -> std::process::Output {
    use std::io::Read;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// Runs `cmd` with no stdin and its output captured, killing it after
/// `limit` (see [`wait_bounded`]).
pub fn output_bounded(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(child, limit)
}

/// As [`run`], with `stdin` fed to the command (none: /dev/null).
pub fn run_with_stdin(
    bin: &str,
    endpoint: &str,
    args: &[&str],
    stdin: Option<&str>,
    lease: &mut Option<String>,
) -> Run {
    use std::io::Write;
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("$L", lease.as_deref().unwrap_or("0")))
        .collect();
    let mut child = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("KVCTL_ENDPOINTS")
        .args(["--endpoints", endpoint])
        .args(&args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // The command may exit before reading everything (a bad line).
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = wait_bounded(child, STEP_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if args.len() >= 2 && args[0] == "lease" && args[1] == "grant" && out.status.success() {
        *lease = stdout.split_whitespace().nth(1).map(str::to_string);
    }
    let lease: Option<String> = lease.clone();
    let unlease = |s: &str| {
        let s = match &lease {
            // json and fields print the lease ID in decimal, others in hex.
            Some(l) => {
                let s = s.replace(l.as_str(), "<L>");
                match i64::from_str_radix(l, 16) {
                    Ok(dec) => s.replace(&dec.to_string(), "<L>"),
                    Err(_) => s,
                }
            }
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
