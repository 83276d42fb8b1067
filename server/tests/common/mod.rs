//! Test harness for the integration tests: starts real `kvd` or `etcd`
//! processes on free loopback ports and drives them with clients we did not
//! write (the `etcd-client` crate and Debian's `etcdctl`).
//!
//! * `Server::start(kind)` starts a single-member server in a fresh
//!   temporary data dir and returns once it answers gRPC requests.
//! * `each_kind(|kind| async move { ... })` runs the same test body against
//!   kvd and etcd (in that order) and, when both ran, compares the
//!   transcripts the body returned.
//! * `KV_TEST_ONLY=etcd` (or `kvd`) restricts the runs to one kind;
//!   `KV_TEST_ONLY=etcd,etcd` runs etcd twice and compares the transcripts
//!   (checks that the tests mask everything volatile).
#![allow(dead_code)]

pub mod cluster;
mod kinds;
pub mod linearizable;

pub use kinds::*;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound for one whole test body against one kind.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(90);
/// Default deadline for `wait_until`.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(15);

pub const ETCD_BIN: &str = "/usr/bin/etcd";
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";

/// Options for starting a server.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Extra command-line flags (accepted by both etcd and kvd).
    pub extra_args: Vec<String>,
    /// Use this data dir instead of a fresh temporary one.
    pub data_dir: Option<PathBuf>,
    /// Run this binary instead of the kind's default (e.g. a newer etcd).
    pub binary: Option<PathBuf>,
}

/// Peak resident memory of process `pid` in bytes (Linux's VmHWM).
#[allow(dead_code)]
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// A tonic channel to `endpoint`, for clients generated from our .proto.
#[allow(dead_code)]
pub async fn channel(endpoint: String) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(endpoint)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

impl Options {
    #[allow(dead_code)]
    pub fn binary(mut self, path: PathBuf) -> Self {
        self.binary = Some(path);
        self
    }

    pub fn arg(mut self, flag: &str, value: impl ToString) -> Self {
        self.extra_args
            .push(format!("--{flag}={}", value.to_string()));
        self
    }
}

/// A running single-member server (kvd or etcd) owned by the test.
pub struct Server {
    kind: Kind,
    name: String,
    data_dir: PathBuf,
    _owned_data_dir: Option<TempDir>,
    log_dir: TempDir,
    client_port: u16,
    peer_port: u16,
    extra_args: Vec<String>,
    binary: PathBuf,
    child: Option<Child>,
    starts: u32,
}

pub const MEMBER_NAME: &str = "n1";

/// A loopback port kept for this test process (see [`kv_robustness::ports`]:
/// none from the ephemeral range, which a restart could find taken).
pub fn free_port() -> u16 {
    kv_robustness::ports::free_port().expect("a free loopback port")
}

impl Server {
    pub async fn start(kind: Kind) -> Server {
        Self::start_with(kind, Options::default()).await
    }

    pub async fn start_with(kind: Kind, opts: Options) -> Server {
        let (data_dir, owned) = match opts.data_dir {
            Some(d) => (d, None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix(&format!("kvtest-{kind}-data-"))
                    .tempdir()
                    .expect("create temp data dir");
                (t.path().join("data"), Some(t))
            }
        };
        let log_dir = tempfile::Builder::new()
            .prefix(&format!("kvtest-{kind}-log-"))
            .tempdir()
            .expect("create temp log dir");
        let mut server = Server {
            kind,
            name: MEMBER_NAME.to_string(),
            data_dir,
            _owned_data_dir: owned,
            log_dir,
            client_port: 0,
            peer_port: 0,
            extra_args: opts.extra_args,
            binary: opts.binary.unwrap_or_else(|| kind.binary()),
            child: None,
            starts: 0,
        };
        // Ports picked by binding port 0 may be taken by someone else before
        // the server binds them: retry with new ports on that failure.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (c, p) = (free_port(), free_port());
            server.client_port = c;
            server.peer_port = p;
            match server.spawn_and_wait().await {
                Ok(()) => return server,
                Err(StartError::PortInUse) if attempt < 5 => continue,
                Err(e) => panic!(
                    "[{kind}] server did not start: {e:?}\n--- server log ---\n{}",
                    server.log_tail(80)
                ),
            }
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn log_path(&self) -> PathBuf {
        self.log_dir.path().join("server.log")
    }

    fn args(&self) -> Vec<String> {
        let c = self.endpoint();
        let p = self.peer_url();
        let mut args = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={c}"),
            format!("--advertise-client-urls={c}"),
            format!("--listen-peer-urls={p}"),
            format!("--initial-advertise-peer-urls={p}"),
            format!("--initial-cluster={}={p}", self.name),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    async fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        assert!(self.child.is_none(), "server already running");
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open server log");
        writeln!(
            log,
            "=== start #{} of {}: {} {}",
            self.starts,
            self.kind,
            self.binary.display(),
            self.args().join(" ")
        )
        .unwrap();
        let log_len_before = log.metadata().map(|m| m.len()).unwrap_or(0);
        let child = Command::new(&self.binary)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                let new_log = self.log_since(log_len_before);
                if new_log.contains("address already in use")
                    || new_log.contains("Address already in use")
                    || new_log.contains("Address in use")
                {
                    return Err(StartError::PortInUse);
                }
                return Err(StartError::Exited(status.to_string()));
            }
            if self.probe().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill_child(Signal::SIGKILL);
                return Err(StartError::NotReady);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One readiness probe: a Status that reports a leader and a
    /// linearizable Get, both with a short time limit.
    async fn probe(&self) -> bool {
        let ep = self.endpoint();
        let attempt = async move {
            let opts = ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
            let mut client = Client::connect([ep], Some(opts)).await.ok()?;
            let status = client.status().await.ok()?;
            if status.leader() == 0 {
                return None;
            }
            client.get("kvtest-readiness-probe", None).await.ok()?;
            Some(())
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), attempt).await,
            Ok(Some(()))
        )
    }

    fn log_since(&self, offset: u64) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            let start = (offset as usize).min(buf.len());
            s = String::from_utf8_lossy(&buf[start..]).into_owned();
        }
        s
    }

    /// The last `n` lines of the server's log (all starts).
    pub fn log_tail(&self, n: usize) -> String {
        let all = self.log_since(0);
        let lines: Vec<&str> = all.lines().collect();
        let from = lines.len().saturating_sub(n);
        lines[from..].join("\n")
    }

    /// A new client connected to this server.
    pub async fn client(&self) -> Client {
        let opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
        Client::connect([self.endpoint()], Some(opts))
            .await
            .unwrap_or_else(|e| panic!("[{}] connect to {}: {e}", self.kind, self.endpoint()))
    }

    /// Sends `sig` to our own child process and waits for it to exit.
    fn kill_child(&mut self, sig: Signal) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = Pid::from_raw(child.id() as i32);
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        let _ = kill(pid, sig);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) => {}
                Err(_) => return false,
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL the server (our own child only) and reap it.
    pub fn kill9(&mut self) {
        assert!(self.child.is_some(), "kill9 on a stopped server");
        self.kill_child(Signal::SIGKILL);
    }

    /// SIGTERM the server and wait for a clean exit; returns whether it
    /// exited by itself in time.
    pub fn stop(&mut self) -> bool {
        self.kill_child(Signal::SIGTERM)
    }

    /// Sends `sig` to our own child process (it stays owned by us).
    pub fn signal(&self, sig: Signal) {
        let child = self.child.as_ref().expect("signal to a stopped server");
        kill(Pid::from_raw(child.id() as i32), sig).expect("kill(2)");
    }

    /// Waits up to `timeout` for the child to exit by itself and reaps it;
    /// on timeout it is SIGKILLed and None is returned.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Exit status after SIGTERM (None if it had to be killed).
    pub fn stop_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_ref()?;
        self.signal(Signal::SIGTERM);
        self.wait_exit(STOP_TIMEOUT)
    }

    /// Starts the server again on the same data dir and ports (after a
    /// `stop`/`kill9`; a running server is stopped first).
    pub async fn start_again(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        // Right after an exit the ports can still be briefly unavailable:
        // retry a few times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.spawn_and_wait().await {
                Ok(()) => return,
                Err(StartError::PortInUse) if attempt < 20 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!(
                    "[{}] server did not restart: {e:?}\n--- server log ---\n{}",
                    self.kind,
                    self.log_tail(80)
                ),
            }
        }
    }

    /// Starts the server again on the same data dir and ports expecting it
    /// to refuse to start: returns its exit status (as text) and what it
    /// logged. Panics if it becomes ready instead.
    pub async fn start_expecting_exit(&mut self) -> (String, String) {
        if self.child.is_some() {
            self.stop();
        }
        let before = self.log_since(0).len() as u64;
        match self.spawn_and_wait().await {
            Ok(()) => panic!(
                "[{}] started, but was expected to refuse\n--- server log ---\n{}",
                self.kind,
                self.log_tail(40)
            ),
            Err(StartError::Exited(status)) => (status, self.log_since(before)),
            Err(e) => panic!(
                "[{}] expected an exit, got {e:?}\n--- server log ---\n{}",
                self.kind,
                self.log_tail(40)
            ),
        }
    }

    /// Graceful stop (SIGTERM) and start again on the same data dir.
    pub async fn restart(&mut self) {
        let clean = self.stop();
        assert!(
            clean,
            "[{}] did not exit within {STOP_TIMEOUT:?} of SIGTERM",
            self.kind
        );
        self.start_again().await;
    }

    fn etcdctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ETCDCTL_BIN);
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .args(args);
        cmd
    }

    /// Runs `etcdctl --endpoints=<this server> args...`.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_stdin(args, "")
    }

    /// Runs etcdctl with `input` on its standard input.
    pub fn etcdctl_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .etcdctl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn etcdctl");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().expect("wait etcdctl");
        if std::env::var_os("KV_TEST_VERBOSE").is_some() {
            eprintln!(
                "[{}] etcdctl {args:?} -> {:?}\nstdout: {}\nstderr: {}",
                self.kind,
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }

    /// Spawns a long-running etcdctl (e.g. `watch`) with piped stdout and
    /// stderr; the caller owns the child and must kill it.
    pub fn etcdctl_spawn(&self, args: &[&str]) -> Child {
        self.etcdctl_command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn etcdctl")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- [{}] server log tail ({}) ---\n{}\n--- end of server log ---",
                self.kind,
                self.log_path().display(),
                self.log_tail(60)
            );
        }
        if self.child.is_some() {
            self.kill_child(Signal::SIGKILL);
        }
    }
}

#[derive(Debug)]
enum StartError {
    Spawn(String),
    Exited(String),
    PortInUse,
    NotReady,
}

/// The gRPC status code and message of a client error (panics on other
/// errors).
pub fn grpc_status(e: &etcd_client::Error) -> (tonic::Code, String) {
    match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status error, got {other:?}"),
    }
}

/// Asserts `r` failed with exactly this gRPC code and message; returns a
/// transcript line.
#[track_caller]
pub fn expect_grpc_err<T: fmt::Debug>(
    kind: Kind,
    r: Result<T, etcd_client::Error>,
    code: tonic::Code,
    message: &str,
) -> String {
    match r {
        Ok(v) => panic!("[{kind}] expected error {code:?} {message:?}, got Ok({v:?})"),
        Err(e) => {
            let (c, m) = grpc_status(&e);
            assert_eq!(
                (c, m.as_str()),
                (code, message),
                "[{kind}] wrong gRPC error"
            );
            format!("{c:?}: {m}")
        }
    }
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Awaits `fut` with a deadline, panicking with `what` on timeout.
pub async fn within<T>(what: &str, timeout: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(timeout, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// The header revision of a response header option.
pub fn rev(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.expect("response has a header").revision()
}

/// Key/value pairs as strings, for compact assertions.
pub fn kv_pairs(kvs: &[etcd_client::KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            )
        })
        .collect()
}

/// Keys as strings.
pub fn keys(kvs: &[etcd_client::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

/// A key-value with its revisions relative to `base` (so the transcript
/// compares equal between servers whose absolute revisions differ).
pub fn kv_rel(kv: &etcd_client::KeyValue, base: i64) -> String {
    format!(
        "{}={} c{} m{} v{} lease={}",
        String::from_utf8_lossy(kv.key()),
        String::from_utf8_lossy(kv.value()),
        kv.create_revision() - base,
        kv.mod_revision() - base,
        kv.version(),
        kv.lease() != 0
    )
}

/// Puts `k`=`v` and returns the revision of the put.
pub async fn put(c: &mut etcd_client::Client, k: &str, v: &str) -> i64 {
    let r = c.put(k, v, None).await.expect("put");
    rev(r.header())
}

/// A counter's value from `/metrics` on the client port (0 when absent).
pub fn counter(endpoint: &str, name: &str) -> f64 {
    let out = std::process::Command::new("curl")
        .args(["-sf", &format!("{endpoint}/metrics")])
        .output()
        .expect("run curl");
    assert!(out.status.success(), "GET /metrics failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
