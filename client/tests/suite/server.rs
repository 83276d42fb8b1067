//! Real servers for the client tests: `kvd` (from this workspace) or
//! Debian's etcd, each a child process on free 127.0.0.1 ports with its own
//! temporary data dir. Dropping a `Server` kills its process (ours only).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kv_client::{Client, ClientConfig, RetryPolicy};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long a server may take to answer after being started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `kill9` waits for the process to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit of the one-off `cargo build -p kvd` when the binary is missing.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
const ETCD_BIN: &str = "/usr/bin/etcd";

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

/// The kvd binary: `$KVD_BIN`, else `target/debug/kvd` of this workspace,
/// built with `cargo build -p kvd` the first time it is missing.
pub fn kvd_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("KVD_BIN") {
            return PathBuf::from(p);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin = root.join("target/debug/kvd");
        if !bin.exists() {
            eprintln!("{} is missing: running cargo build -p kvd", bin.display());
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut child = Command::new(cargo)
                .args(["build", "-p", "kvd"])
                .current_dir(&root)
                .spawn()
                .expect("spawn cargo build -p kvd");
            let deadline = Instant::now() + BUILD_TIMEOUT;
            let status = loop {
                if let Some(st) = child.try_wait().expect("wait for cargo") {
                    break st;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("cargo build -p kvd did not finish within {BUILD_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            assert!(status.success(), "cargo build -p kvd failed: {status}");
        }
        bin
    })
    .clone()
}

/// Two distinct free ports, kept for this process ([`kv_robustness::ports`]).
fn free_ports() -> (u16, u16) {
    let port = || kv_robustness::ports::free_port().expect("a free loopback port");
    (port(), port())
}

/// A test client config: short timeouts and fast retries.
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

/// A single-member server owned by the test.
pub struct Server {
    kind: Kind,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Server {
    /// Starts a fresh server and waits until it serves requests.
    pub async fn start(kind: Kind) -> Server {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kvclient-{kind}-"))
            .tempdir()
            .expect("temp dir");
        let mut server = Server {
            kind,
            dir,
            client_port: 0,
            peer_port: 0,
            child: None,
        };
        for attempt in 1.. {
            (server.client_port, server.peer_port) = free_ports();
            match server.spawn_and_wait().await {
                Ok(()) => return server,
                Err(e) if attempt < 5 && e.contains("in use") => continue,
                Err(e) => panic!("[{kind}] did not start: {e}\n{}", server.log_tail()),
            }
        }
        unreachable!()
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// A client for this server with test timeouts.
    pub async fn client(&self) -> Client {
        Client::connect(fast_config(self.endpoint()))
            .await
            .expect("client")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let c = self.endpoint();
        let p = format!("http://127.0.0.1:{}", self.peer_port);
        let data = self.dir.path().join("data");
        let bin = match self.kind {
            Kind::Kvd => kvd_bin(),
            Kind::Etcd => PathBuf::from(ETCD_BIN),
        };
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| e.to_string())?;
        let start = log.metadata().map(|m| m.len()).unwrap_or(0) as usize;
        writeln!(log, "=== starting {}", bin.display()).map_err(|e| e.to_string())?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .args([
                "--name=n1".to_string(),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={c}"),
                format!("--advertise-client-urls={c}"),
                format!("--listen-peer-urls={p}"),
                format!("--initial-advertise-peer-urls={p}"),
                format!("--initial-cluster=n1={p}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        self.child = Some(child);
        let client = self.client().await;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let mut log = String::new();
                let _ = File::open(self.log_path()).map(|mut f| f.read_to_string(&mut log));
                let new = log.get(start..).unwrap_or_default();
                if new.contains("address already in use") || new.contains("Address already in use")
                {
                    return Err(format!("port in use ({status})"));
                }
                return Err(format!("exited: {status}"));
            }
            let probe = async {
                let st = client.status().await.ok()?;
                (st.leader() != 0).then_some(())?;
                client.get("kvclient-probe", None).await.ok()
            };
            if tokio::time::timeout(Duration::from_secs(2), probe)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err("not ready in time".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs our child process and reaps it.
    pub fn kill9(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let deadline = Instant::now() + REAP_TIMEOUT;
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same data dir and ports.
    pub async fn restart(&mut self) {
        self.kill9();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.spawn_and_wait().await {
                Ok(()) => return,
                Err(e) if attempt < 20 && e.contains("in use") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("[{}] did not restart: {e}\n{}", self.kind, self.log_tail()),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- [{}] server log tail ---\n{}",
                self.kind,
                self.log_tail()
            );
        }
        self.kill9();
    }
}
