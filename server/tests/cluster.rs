//! Three kvd members on 127.0.0.1, formed from flags as etcd members are:
//! writes through any member are read linearizably on every member, and the
//! cluster keeps its acknowledged writes across a leader's kill -9.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::{kvd_only, Kind};

const DEADLINE: Duration = Duration::from_secs(30);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// --initial-cluster-state and --initial-cluster this member starts with.
    state: &'static str,
    initial: Option<String>,
}

struct Cluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    initial: String,
    extra: Vec<String>,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        Self::start_with(n, &[]).await
    }

    async fn start_with(n: usize, extra: &[&str]) -> Cluster {
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
        for i in 0..n {
            c.wait_ready(i).await;
        }
        c
    }

    fn spawn(&mut self, i: usize) {
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
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn kvd");
        self.members[i].child = Some(child);
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    fn logs(&self) -> String {
        (0..self.members.len())
            .map(|i| {
                let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {} ---\n{}", self.members[i].name, tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    async fn client(&self, i: usize) -> Client {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        Client::connect([self.endpoint(i)], Some(opts))
            .await
            .expect("connect")
    }

    /// Waits until member `i` reports a leader and serves a linearizable get.
    async fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let ep = self.endpoint(i);
            let ok = tokio::time::timeout(Duration::from_secs(3), async move {
                let opts = ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
                let mut c = Client::connect([ep], Some(opts)).await.ok()?;
                let st = c.status().await.ok()?;
                (st.leader() != 0).then_some(())?;
                c.get("ready", None).await.ok()
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

    async fn leader(&self) -> usize {
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
    async fn join(&mut self, name: &str, client_port: u16, peer_port: u16) -> usize {
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
    fn etcdctl(&self, i: usize, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(common::ETCDCTL_BIN)
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

    fn kill9(&mut self, i: usize) {
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

#[tokio::test]
async fn writes_on_any_member_read_linearizably_everywhere() {
    kvd_only(|| async {
        let c = Cluster::start(3).await;
        for i in 0..3 {
            let mut w = c.client(i).await;
            w.put(format!("k{i}"), format!("v{i}"), None)
                .await
                .expect("put via member");
            for j in 0..3 {
                let mut r = c.client(j).await;
                let got = r.get(format!("k{i}"), None).await.expect("get");
                let kv = got
                    .kvs()
                    .first()
                    .unwrap_or_else(|| panic!("k{i} missing on member {j}"));
                assert_eq!(kv.value(), format!("v{i}").as_bytes(), "member {j}");
            }
        }
        // Every member reports the same revision and hash.
        let mut hashes = Vec::new();
        for i in 0..3 {
            let mut m = c.client(i).await;
            hashes.push(m.hash_kv(0).await.expect("hash_kv").hash());
        }
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "hashes differ: {hashes:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn leader_kill_loses_no_acknowledged_write() {
    kvd_only(|| async {
        let mut c = Cluster::start(3).await;
        let leader = c.leader().await;
        let alive: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let mut acked: BTreeMap<String, String> = BTreeMap::new();
        // Writes through the leader, then kill it, then writes through the rest.
        let mut lc = c.client(leader).await;
        for n in 0..50 {
            let (k, v) = (format!("w{n:03}"), format!("x{n}"));
            lc.put(k.clone(), v.clone(), None)
                .await
                .expect("put before the kill");
            acked.insert(k, v);
        }
        c.kill9(leader);
        let deadline = Instant::now() + DEADLINE;
        for n in 50..100 {
            let (k, v) = (format!("w{n:03}"), format!("x{n}"));
            loop {
                let mut w = c.client(alive[n % 2]).await;
                match w.put(k.clone(), v.clone(), None).await {
                    Ok(_) => break,
                    Err(e) => {
                        assert!(
                            Instant::now() < deadline,
                            "writes did not resume: {e}\n{}",
                            c.logs()
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            acked.insert(k, v);
        }
        // The killed member comes back and catches up.
        c.spawn(leader);
        c.wait_ready(leader).await;
        for i in 0..3 {
            let mut r = c.client(i).await;
            let got = r
                .get("w", Some(GetOptions::new().with_prefix()))
                .await
                .expect("get");
            let have: BTreeMap<String, String> = got
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        kv.key_str().unwrap().to_string(),
                        kv.value_str().unwrap().to_string(),
                    )
                })
                .collect();
            assert_eq!(have, acked, "member {i} differs");
        }
    })
    .await;
}

#[tokio::test]
async fn lagging_member_catches_up_by_snapshot() {
    kvd_only(|| async {
        let flags = [
            "--snapshot-count=50",
            "--experimental-snapshot-catchup-entries=10",
        ];
        let mut c = Cluster::start_with(3, &flags).await;
        let leader = c.leader().await;
        let lagger = (leader + 1) % 3;
        let writer = (leader + 2) % 3;
        c.kill9(lagger);
        let mut w = c.client(writer).await;
        for n in 0..300 {
            w.put(format!("s{n:03}"), format!("v{n}"), None)
                .await
                .expect("put");
        }
        // The leader's log no longer reaches back to what the lagger has.
        let snap_dir = c
            .dir
            .path()
            .join(&c.members[leader].name)
            .join("member/snap/current.snap");
        assert!(snap_dir.exists(), "the leader took a snapshot");
        c.spawn(lagger);
        c.wait_ready(lagger).await;
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut hashes = Vec::new();
            for i in 0..3 {
                let mut m = c.client(i).await;
                let st = m.status().await.expect("status");
                let h = m.hash_kv(0).await.expect("hash_kv");
                hashes.push((st.header().map(|h| h.revision()).unwrap_or(0), h.hash()));
            }
            if hashes.windows(2).all(|p| p[0] == p[1]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "members differ: {hashes:?}\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let log = std::fs::read_to_string(c.log_path(lagger)).unwrap_or_default();
        assert!(
            log.contains("installed snapshot from the leader"),
            "the lagger caught up from a snapshot\n{}",
            c.logs()
        );
        let mut r = c.client(lagger).await;
        let got = r
            .get(
                "s",
                Some(GetOptions::new().with_prefix().with_serializable()),
            )
            .await
            .expect("get");
        assert_eq!(got.kvs().len(), 300, "the lagger has every key");
    })
    .await;
}

/// The hex member ID in etcdctl's "Member <id> added to cluster <id>".
fn added_id(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected member add output: {stdout}"))
        .to_string()
}

#[tokio::test]
async fn membership_changes_with_etcdctl() {
    kvd_only(|| async {
        let mut c = Cluster::start(3).await;
        // Add a learner, start it, promote it.
        let (p4, c4) = (free_port(), free_port());
        let peer = format!("--peer-urls=http://127.0.0.1:{p4}");
        let (ok, out, err) = c.etcdctl(1, &["member", "add", "n4", &peer, "--learner"]);
        assert!(ok, "member add failed: {out} {err}\n{}", c.logs());
        let id4 = added_id(&out);
        let n4 = c.join("n4", c4, p4).await;
        let (ok, out, err) = c.etcdctl(0, &["member", "promote", &id4]);
        assert!(ok, "member promote failed: {out} {err}\n{}", c.logs());
        // Remove an original member (n1), through another member.
        let (ok, list, _) = c.etcdctl(2, &["member", "list"]);
        assert!(ok);
        let id1 = list
            .lines()
            .find(|l| l.contains(", n1,"))
            .and_then(|l| l.split(',').next())
            .unwrap_or_else(|| panic!("n1 missing from member list: {list}"))
            .to_string();
        let (ok, out, err) = c.etcdctl(2, &["member", "remove", &id1]);
        assert!(ok, "member remove failed: {out} {err}\n{}", c.logs());
        c.kill9(0);
        // The cluster of n2, n3, n4 keeps working, through the new member too.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (ok, _, err) = c.etcdctl(n4, &["put", "after", "membership"]);
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "put via n4 failed: {err}\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (ok, out, _) = c.etcdctl(1, &["get", "after", "--print-value-only"]);
        assert!(ok && out.trim() == "membership", "{out}");
        let (ok, list, _) = c.etcdctl(n4, &["member", "list"]);
        assert!(ok);
        let names: Vec<&str> = list.lines().filter_map(|l| l.split(", ").nth(2)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, ["n2", "n3", "n4"], "member list: {list}");
        assert!(
            list.lines().all(|l| l.ends_with("false")),
            "no learner left: {list}"
        );
    })
    .await;
}
