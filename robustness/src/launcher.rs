//! Starts, kills, pauses and partitions a cluster of real kvd or etcd
//! processes on 127.0.0.1, each member with its own free ports, data dir and
//! log. Modelled on server/tests/common/cluster.rs, which this crate cannot
//! import (it is a test module of another package).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::ports::free_port;
use crate::proxy::Proxy;

/// How long a member may take to serve again after a (re)start or a fault.
pub const READY_DEADLINE: Duration = Duration::from_secs(90);
/// Per-request timeout of the harness's own clients.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The environment variable of kvd's partition test hook.
pub const ISOLATE_ENV: &str = "KVD_FAILPOINT_ISOLATE";
/// The environment variable naming kvd's file of disk failpoints.
pub const FAILPOINTS_FILE_ENV: &str = "KVD_FAILPOINTS_FILE";
/// What a kvd built with failpoints logs at start.
pub const FAILPOINTS_BANNER: &str = "built with test failpoints";

/// Which server the campaign runs against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// kvd, from this binary.
    Kvd(PathBuf),
    /// etcd (a check on the harness itself), from this binary.
    Etcd(PathBuf),
}

impl Flavor {
    fn binary(&self) -> &Path {
        match self {
            Flavor::Kvd(p) | Flavor::Etcd(p) => p,
        }
    }

    /// "kvd" or "etcd".
    pub fn name(&self) -> &'static str {
        match self {
            Flavor::Kvd(_) => "kvd",
            Flavor::Etcd(_) => "etcd",
        }
    }
}

/// Errors of the launcher.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The server binary could not be started.
    #[error("spawn {bin}: {source}")]
    Spawn { bin: String, source: std::io::Error },
    /// A member did not serve within [`READY_DEADLINE`].
    #[error("member {member} not ready within {READY_DEADLINE:?}; log tail:\n{log}")]
    NotReady { member: usize, log: String },
    /// A file of the harness could not be written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One member: its ports and, while it runs, its process.
pub struct Member {
    /// Member name (n1, n2, ...).
    pub name: String,
    /// Client port on 127.0.0.1.
    pub client_port: u16,
    /// Peer port on 127.0.0.1 (the member listens here).
    pub peer_port: u16,
    /// The port of the harness's proxy in front of `peer_port`: the peer URL
    /// the member advertises, so the harness can delay traffic to it.
    pub proxy: Proxy,
    /// Set when the member joined a running cluster: its
    /// `--initial-cluster` (with `--initial-cluster-state existing`).
    pub joining: Option<String>,
    child: Option<Child>,
    stopped: bool,
}

/// A running cluster owned by the campaign; dropping it kills every member.
pub struct Cluster {
    /// The members, by index.
    pub members: Vec<Member>,
    flavor: Flavor,
    dir: tempfile::TempDir,
    initial: String,
}

impl Cluster {
    /// Starts `n` members and waits until each serves linearizable reads.
    /// A free port can be taken by another process between our probe and the
    /// server's bind: then it starts over on fresh ports (three attempts).
    pub async fn start(flavor: Flavor, n: usize) -> Result<Cluster, LaunchError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(flavor.clone(), n).await {
                Err((e, in_use)) if in_use && attempt < 3 => {
                    tracing::warn!("cluster start: port taken, retrying: {e}");
                }
                other => return other.map_err(|(e, _)| e),
            }
        }
    }

    async fn try_start(flavor: Flavor, n: usize) -> Result<Cluster, (LaunchError, bool)> {
        let c = Self::spawn_all(flavor, n).await.map_err(|e| (e, false))?;
        for i in 0..n {
            if let Err(e) = c.wait_ready(i).await {
                let in_use = (0..n).any(|j| {
                    let log = std::fs::read_to_string(c.log_path(j)).unwrap_or_default();
                    log.contains("ddress already in use") || log.contains("ddress in use")
                });
                return Err((e, in_use));
            }
        }
        Ok(c)
    }

    async fn spawn_all(flavor: Flavor, n: usize) -> Result<Cluster, LaunchError> {
        let mut members = Vec::with_capacity(n);
        for i in 1..=n {
            let peer_port = free_port()?;
            members.push(Member {
                name: format!("n{i}"),
                client_port: free_port()?,
                peer_port,
                proxy: Proxy::start(peer_port).await?,
                joining: None,
                child: None,
                stopped: false,
            });
        }
        let initial = initial_cluster(&members);
        let dir = tempfile::Builder::new()
            .prefix(&format!("kv-robustness-{}-", flavor.name()))
            .tempdir()?;
        let mut c = Cluster {
            members,
            flavor,
            dir,
            initial,
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        Ok(c)
    }

    /// The flavor this cluster runs.
    pub fn flavor(&self) -> &Flavor {
        &self.flavor
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// (Re)starts member `i` on its ports with its data dir.
    pub fn spawn(&mut self, i: usize) -> Result<(), LaunchError> {
        self.kill9(i);
        let _ = std::fs::remove_file(self.isolate_path(i));
        let _ = std::fs::remove_file(self.failpoints_path(i));
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))?;
        let c = format!("http://127.0.0.1:{}", m.client_port);
        let p = format!("http://127.0.0.1:{}", m.peer_port);
        let advertised = format!("http://127.0.0.1:{}", m.proxy.port);
        let (state, initial) = match &m.joining {
            Some(initial) => ("existing", initial.as_str()),
            None => ("new", self.initial.as_str()),
        };
        let bin = self.flavor.binary().to_path_buf();
        let child = Command::new(&bin)
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={c}"))
            .arg(format!("--advertise-client-urls={c}"))
            .arg(format!("--listen-peer-urls={p}"))
            .arg(format!("--initial-advertise-peer-urls={advertised}"))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--initial-cluster-token=kv-robustness")
            .arg(format!("--initial-cluster-state={state}"))
            .env(ISOLATE_ENV, self.isolate_path(i))
            .env(FAILPOINTS_FILE_ENV, self.failpoints_path(i))
            // The campaign reads the member's own log lines (the failpoint
            // banner, "fatal storage error"): the harness's RUST_LOG, which
            // names only kv_robustness, must not silence them.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                bin: bin.display().to_string(),
                source,
            })?;
        self.members[i].child = Some(child);
        self.members[i].stopped = false;
        Ok(())
    }

    /// kill -9 of member `i` (our own child), reaped at once.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        self.members[i].stopped = false;
    }

    /// Whether member `i` has a process (running or stopped).
    pub fn is_up(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// SIGSTOP (`on`) or SIGCONT of member `i`.
    pub fn pause(&mut self, i: usize, on: bool) {
        if let Some(child) = &self.members[i].child {
            let sig = if on { Signal::SIGSTOP } else { Signal::SIGCONT };
            let _ = kill(Pid::from_raw(child.id() as i32), sig);
            self.members[i].stopped = on;
        }
    }

    /// While this file exists kvd member `i` drops all peer traffic.
    pub fn isolate_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.isolated", self.members[i].name))
    }

    /// Cuts member `i` off from its peers (`on`) or reconnects it: kvd
    /// through its isolation hook, etcd through the peer proxies (member
    /// `i`'s proxy refuses everyone, the others refuse member `i`).
    pub fn isolate(&self, i: usize, on: bool) -> Result<(), LaunchError> {
        if matches!(self.flavor, Flavor::Etcd(_)) {
            let me = self.members[i].proxy.port;
            self.members[i].proxy.set_isolated(on);
            for (j, m) in self.members.iter().enumerate() {
                if j != i {
                    m.proxy.block_source(me, on);
                }
            }
            return Ok(());
        }
        let path = self.isolate_path(i);
        if on {
            std::fs::write(&path, b"")?;
        } else if path.exists() {
            std::fs::remove_file(&path)?;
        }
        Ok(())
    }

    /// The file of disk failpoints kvd member `i` reads at every WAL write.
    pub fn failpoints_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.failpoints", self.members[i].name))
    }

    /// Arms (`Some("wal-fsync=eio")`) or clears the disk failpoints of member `i`.
    pub fn set_failpoints(&self, i: usize, spec: Option<&str>) -> Result<(), LaunchError> {
        let path = self.failpoints_path(i);
        match spec {
            Some(spec) => std::fs::write(&path, spec)?,
            None if path.exists() => std::fs::remove_file(&path)?,
            None => {}
        }
        Ok(())
    }

    /// Whether member `i`'s binary has kvd's failpoints (it says so at start).
    pub fn has_failpoints(&self, i: usize) -> bool {
        std::fs::read_to_string(self.log_path(i))
            .map(|log| log.contains(FAILPOINTS_BANNER))
            .unwrap_or(false)
    }

    /// Waits up to `deadline` for member `i`'s process to exit by itself;
    /// returns how it exited (the member then counts as down).
    pub async fn wait_exit(
        &mut self,
        i: usize,
        deadline: Duration,
    ) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + deadline;
        loop {
            let child = self.members[i].child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.members[i].child = None;
                return Some(status);
            }
            if Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes slot `i` a new member named `name` with an empty data dir, on
    /// the same ports (so clients and watchers of this slot find it again),
    /// to be started as joining the current cluster. Kills the old process.
    pub fn rename_for_join(&mut self, i: usize, name: String) {
        self.kill9(i);
        self.members[i].name = name;
        self.members[i].joining = Some(initial_cluster(&self.members));
    }

    /// Member `i`'s advertised peer URL (its proxy).
    pub fn peer_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].proxy.port)
    }

    /// Adds `base` plus up to `jitter` of latency to peer traffic to member `i`.
    pub fn set_delay(&self, i: usize, base: Duration, jitter: Duration) {
        self.members[i].proxy.set_delay(base, jitter);
    }

    /// Member `i`'s log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// The size of member `i`'s log now (to read what follows with [`Cluster::log_since`]).
    pub fn log_len(&self, i: usize) -> u64 {
        std::fs::metadata(self.log_path(i))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Member `i`'s log from byte `offset` on.
    pub fn log_since(&self, i: usize, offset: u64) -> String {
        let bytes = std::fs::read(self.log_path(i)).unwrap_or_default();
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    /// The last `n` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, n: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// A client of member `i` alone (no retries, bounded timeouts).
    pub async fn client(&self, i: usize) -> Result<Client, etcd_client::Error> {
        connect(&self.endpoint(i), REQUEST_TIMEOUT).await
    }

    /// Waits until member `i` reports a leader and serves a linearizable get.
    pub async fn wait_ready(&self, i: usize) -> Result<(), LaunchError> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if self.probe(i).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LaunchError::NotReady {
                    member: i,
                    log: self.log_tail(i, 30),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn probe(&self, i: usize) -> bool {
        let ep = self.endpoint(i);
        let ok = tokio::time::timeout(Duration::from_secs(4), async move {
            let mut c = connect(&ep, Duration::from_secs(2)).await.ok()?;
            let st = c.status().await.ok()?;
            (st.leader() != 0).then_some(())?;
            c.get("ready", None).await.ok()
        })
        .await;
        matches!(ok, Ok(Some(_)))
    }

    /// Waits until every member with a process serves again.
    pub async fn wait_all_ready(&self) -> Result<(), LaunchError> {
        for i in 0..self.len() {
            if self.is_up(i) {
                self.wait_ready(i).await?;
            }
        }
        Ok(())
    }

    /// Member id of member `i` and whether it is the leader, from Status.
    pub async fn status(&self, i: usize) -> Option<(u64, bool, i64)> {
        let mut c = self.client(i).await.ok()?;
        let st = c.status().await.ok()?;
        let header = st.header()?;
        Some((
            header.member_id(),
            st.leader() == header.member_id(),
            header.revision(),
        ))
    }

    /// The index of the current leader, if some member says it leads.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.len() {
            if self.is_up(i) && !self.members[i].stopped {
                if let Some((_, true, _)) = self.status(i).await {
                    return Some(i);
                }
            }
        }
        None
    }
}

/// `--initial-cluster` for `members`, at their proxies' ports.
fn initial_cluster(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.proxy.port))
        .collect::<Vec<_>>()
        .join(",")
}

/// A client of one endpoint, with the campaign's timeouts; etcd-client does
/// not retry, so every failure is recorded as it happened.
pub async fn connect(ep: &str, timeout: Duration) -> Result<Client, etcd_client::Error> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(timeout);
    Client::connect([ep], Some(opts)).await
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}
