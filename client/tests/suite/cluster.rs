//! A multi-member kvd or etcd cluster (or a single member with extra flags,
//! e.g. TLS or auth-token settings) on 127.0.0.1 for the client tests. Each
//! member is our own child process with its own ports, data dir and log;
//! dropping the cluster resumes stopped members and kills them all.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kv_client::tls::TlsConfig;
use kv_client::{Client, ClientConfig};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::{Kind, fast_config};

/// How long a member may take to serve after being (re)started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const ETCD_BIN: &str = "/usr/bin/etcd";

/// Server-side TLS files for the client URLs.
pub struct ServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The client to probe readiness with (CA plus a client certificate).
    pub client: TlsConfig,
}

pub struct Member {
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    stopped: bool,
}

pub struct Cluster {
    kind: Kind,
    dir: TempDir,
    members: Vec<Member>,
    extra: Vec<String>,
    tls: Option<ServerTls>,
}

/// `n` distinct free ports, kept for this process ([`kv_robustness::ports`]).
fn free_ports(n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| kv_robustness::ports::free_port().expect("a free loopback port"))
        .collect()
}

impl Cluster {
    /// Starts `n` members and waits until each serves requests.
    pub async fn start(kind: Kind, n: usize, extra: &[&str], tls: Option<ServerTls>) -> Cluster {
        let ports = free_ports(2 * n);
        let mut c = Cluster {
            kind,
            dir: tempfile::Builder::new()
                .prefix(&format!("kvclient-cluster-{kind}-"))
                .tempdir()
                .expect("temp dir"),
            members: (0..n)
                .map(|i| Member {
                    client_port: ports[2 * i],
                    peer_port: ports[2 * i + 1],
                    child: None,
                    stopped: false,
                })
                .collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls,
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_ready(i).await;
        }
        c
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!(
            "{}://127.0.0.1:{}",
            self.scheme(),
            self.members[i].client_port
        )
    }

    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Test timeouts, every member's endpoint, and the cluster's client TLS.
    pub fn config(&self) -> ClientConfig {
        let one = fast_config(self.endpoint(0));
        let mut c = ClientConfig::new(self.endpoints())
            .with_connect_timeout(one.connect_timeout())
            .with_request_timeout(one.request_timeout())
            .with_retry(one.retry().clone());
        if let Some(tls) = &self.tls {
            c = c.with_tls_config(tls.client.clone());
        }
        c
    }

    /// A client of member `i` alone.
    pub async fn member_client(&self, i: usize) -> Client {
        let mut c = fast_config(self.endpoint(i));
        if let Some(tls) = &self.tls {
            c = c.with_tls_config(tls.client.clone());
        }
        Client::connect(c).await.expect("client")
    }

    fn name(i: usize) -> String {
        format!("m{i}")
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", Self::name(i)))
    }

    pub fn logs(&self) -> String {
        (0..self.members.len())
            .map(|i| {
                let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(25)..].join("\n");
                format!("--- {} ---\n{tail}", Self::name(i))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&mut self, i: usize) {
        let initial = self
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| format!("{}=http://127.0.0.1:{}", Self::name(j), m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let m = &self.members[i];
        let client_url = self.endpoint(i);
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("log file");
        let bin = match self.kind {
            Kind::Kvd => crate::server::kvd_bin(),
            Kind::Etcd => PathBuf::from(ETCD_BIN),
        };
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--name={}", Self::name(i)))
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join(Self::name(i)).display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--initial-cluster-token=kvclient")
            .arg("--initial-cluster-state=new")
            .args(&self.extra);
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn server");
        self.members[i].child = Some(child);
    }

    /// Waits until member `i` knows a leader and serves a linearizable get.
    pub async fn wait_ready(&self, i: usize) {
        let client = self.member_client(i).await;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let probe = async {
                let st = client.status().await.ok()?;
                (st.leader() != 0).then_some(())?;
                client.get("kvclient-probe", None).await.ok()
            };
            if tokio::time::timeout(Duration::from_secs(3), probe)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] member {i} not ready\n{}",
                self.kind,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Member `i`'s id, as response headers carry it.
    pub async fn member_id(&self, i: usize) -> u64 {
        let st = self.member_client(i).await.status().await.expect("status");
        st.header().expect("header").member_id
    }

    fn signal(&self, i: usize, sig: Signal) {
        if let Some(child) = &self.members[i].child {
            kill(Pid::from_raw(child.id() as i32), sig).expect("signal our child");
        }
    }

    /// Freezes member `i` (SIGSTOP): its sockets stay open, nothing answers.
    pub fn stop(&mut self, i: usize) {
        self.signal(i, Signal::SIGSTOP);
        self.members[i].stopped = true;
        // kill() returns before every thread has stopped; a fast client
        // could still get an answer meanwhile. Wait for the stopped state.
        if let Some(child) = &self.members[i].child {
            let tasks = format!("/proc/{}/task", child.id());
            let all_stopped = || {
                std::fs::read_dir(&tasks)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .all(|t| {
                        let stat =
                            std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                        let state = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
                        state.starts_with(['T', 't'])
                    })
            };
            for _ in 0..5000 {
                if all_stopped() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }

    /// Thaws member `i` (SIGCONT).
    pub fn resume(&mut self, i: usize) {
        self.signal(i, Signal::SIGCONT);
        self.members[i].stopped = false;
    }

    /// SIGKILLs member `i` and reaps it.
    pub fn kill9(&mut self, i: usize) {
        if self.members[i].stopped {
            self.resume(i);
        }
        if let Some(mut child) = self.members[i].child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data dir and ports.
    pub async fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
        self.wait_ready(i).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- [{}] cluster logs ---\n{}", self.kind, self.logs());
        }
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}
