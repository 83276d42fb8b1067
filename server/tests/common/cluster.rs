//! A multi-member kvd cluster on 127.0.0.1 for tests: members formed from
//! flags as etcd members are, each with its own free ports, data dir and log.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Kind, ETCDCTL_BIN};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub child: Option<Child>,
    /// --initial-cluster-state and --initial-cluster this member starts with.
    pub state: &'static str,
    pub initial: Option<String>,
}

pub struct Cluster {
    pub members: Vec<Member>,
    pub dir: tempfile::TempDir,
    pub initial: String,
    pub extra: Vec<String>,
}

pub use super::free_port;

impl Cluster {
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, &[]).await
    }

    pub async fn start_with(n: usize, extra: &[&str]) -> Cluster {
        // A free port can be taken by another process between our probe and
        // kvd's bind: start over on fresh ports when that happens.
        for _ in 0..3 {
            if let Some(c) = Self::try_start(n, extra).await {
                return c;
            }
        }
        panic!("could not bind free ports for a cluster three times");
    }

    async fn try_start(n: usize, extra: &[&str]) -> Option<Cluster> {
        let members: Vec<Member> = (1..=n)
            .map(|i| Member {
                name: format!("n{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
                state: "new",
                initial: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            members,
            dir: tempfile::tempdir().expect("tempdir"),
            initial,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 0..n {
            let exited = c.members[i]
                .child
                .as_mut()
                .map(|ch| matches!(ch.try_wait(), Ok(Some(_))))
                .unwrap_or(false);
            let log = std::fs::read_to_string(c.log_path(i)).unwrap_or_default();
            if exited && log.contains("Address already in use") {
                return None;
            }
        }
        for i in 0..n {
            c.wait_ready(i).await;
        }
        Some(c)
    }

    pub fn spawn(&mut self, i: usize) {
        // Reap a member killed through `kill9_shared`.
        self.kill9(i);
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("log file");
        let child = Command::new(Kind::Kvd.binary())
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{}",
                m.client_port
            ))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{}",
                m.client_port
            ))
            .arg(format!(
                "--listen-peer-urls=http://127.0.0.1:{}",
                m.peer_port
            ))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                m.peer_port
            ))
            .arg(format!(
                "--initial-cluster={}",
                m.initial.as_ref().unwrap_or(&self.initial)
            ))
            .arg("--initial-cluster-token=kvtest")
            .arg(format!("--initial-cluster-state={}", m.state))
            .args(&self.extra)
            .env("KVD_FAILPOINT_ISOLATE", self.isolate_path(i))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn kvd");
        self.members[i].child = Some(child);
    }

    /// While this file exists member `i` drops all peer traffic (kvd's
    /// `KVD_FAILPOINT_ISOLATE` hook): a partition without root.
    pub fn isolate_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.isolated", self.members[i].name))
    }

    /// Cuts member `i` off from its peers (`on`) or reconnects it.
    pub fn isolate(&self, i: usize, on: bool) {
        let path = self.isolate_path(i);
        if on {
            std::fs::write(&path, b"").expect("create isolation file");
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    pub fn logs(&self) -> String {
        (0..self.members.len())
            .map(|i| {
                let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                // Backtrace frames would push the error itself out of the tail.
                let frame = |l: &&str| {
                    let t = l.trim_start();
                    t.starts_with("at ")
                        || t.split_once(": ")
                            .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
                };
                let tail: Vec<&str> = text.lines().rev().filter(|l| !frame(l)).take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {} ---\n{}", self.members[i].name, tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    pub async fn client(&self, i: usize) -> Client {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        Client::connect([self.endpoint(i)], Some(opts))
            .await
            .expect("connect")
    }

    /// A client for member `i`, or None when it cannot connect.
    pub async fn client_opt(&self, i: usize) -> Option<Client> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(5));
        Client::connect([self.endpoint(i)], Some(opts)).await.ok()
    }

    /// Waits until member `i` reports a leader and serves a linearizable get.
    pub async fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let ep = self.endpoint(i);
            let ok = tokio::time::timeout(Duration::from_secs(3), async move {
                let opts = ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
                let mut c = Client::connect([ep], Some(opts)).await.ok()?;
                let st = c.status().await.ok()?;
                (st.leader() != 0).then_some(())?;
                c.get("ready", None).await.ok()?;
                // Members publish their client URLs through the log after
                // start (etcd's publish): ready once this one is listed.
                let list = c.member_list().await.ok()?;
                let me = st.header()?.member_id();
                list.members()
                    .iter()
                    .any(|m| m.id() == me && !m.client_urls().is_empty())
                    .then_some(())
            })
            .await;
            if matches!(ok, Ok(Some(_))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} not ready\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn leader(&self) -> usize {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            let mut c = self.client(i).await;
            if let Ok(st) = c.status().await {
                if st.leader() == st.header().map(|h| h.member_id()).unwrap_or(0) {
                    return i;
                }
            }
        }
        panic!("no member is leader\n{}", self.logs());
    }

    /// Starts a new member that joins the running cluster (after `member add`).
    pub async fn join(&mut self, name: &str, client_port: u16, peer_port: u16) -> usize {
        let initial = format!("{},{name}=http://127.0.0.1:{peer_port}", self.initial);
        self.members.push(Member {
            name: name.to_string(),
            client_port,
            peer_port,
            child: None,
            state: "existing",
            initial: Some(initial),
        });
        let i = self.members.len() - 1;
        self.spawn(i);
        self.wait_ready(i).await;
        i
    }

    /// Runs Debian's etcdctl against member `i`.
    pub fn etcdctl(&self, i: usize, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(ETCDCTL_BIN)
            .env_clear()
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint(i)))
            .args(args)
            .output()
            .expect("run etcdctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Sends `sig` (e.g. SIGSTOP/SIGCONT) to member `i`, our own child.
    pub fn signal(&self, i: usize, sig: Signal) {
        if let Some(child) = &self.members[i].child {
            let _ = kill(Pid::from_raw(child.id() as i32), sig);
        }
    }

    /// kill -9 of member `i` through a shared reference (the process is
    /// reaped when the cluster is dropped or the member restarted).
    pub fn kill9_shared(&self, i: usize) {
        self.signal(i, Signal::SIGKILL);
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}
