//! Three kvd members on 127.0.0.1, formed from flags as etcd members are:
//! writes through any member are read linearizably on every member, and the
//! cluster keeps its acknowledged writes across a leader's kill -9.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::GetOptions;

use common::cluster::{free_port, Cluster, DEADLINE};
use common::kvd_only;

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
        // etcdctl finds every member from one endpoint.
        let (ok, out, err) = c.etcdctl(0, &["endpoint", "health", "--cluster"]);
        assert!(ok, "{out}{err}");
        assert_eq!(
            out.matches("is healthy").count() + err.matches("is healthy").count(),
            3,
            "{out}{err}"
        );
        let (ok, out, err) = c.etcdctl(1, &["endpoint", "status", "--cluster", "-w", "json"]);
        assert!(ok, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let leaders: Vec<u64> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|e| e["Status"]["leader"].as_u64().expect("leader"))
            .collect();
        assert_eq!(leaders.len(), 3, "{out}");
        assert!(leaders.iter().all(|l| *l == leaders[0] && *l != 0), "{out}");
    })
    .await;
}

/// One writer: puts `w{t}-{n}` round-robin through the members until
/// `stop`, moving on to the next member when one fails; returns what was
/// acknowledged.
async fn write_until(c: Arc<Cluster>, t: usize, stop: Arc<AtomicBool>) -> BTreeMap<String, String> {
    let mut acked = BTreeMap::new();
    let mut member = t % 3;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let (k, v) = (format!("w{t}-{n:04}"), format!("x{n}"));
        let put = async {
            let mut w = c.client_opt(member).await?;
            w.put(k.clone(), v.clone(), None).await.ok()
        };
        match tokio::time::timeout(Duration::from_secs(5), put).await {
            Ok(Some(_)) => {
                acked.insert(k, v);
                n += 1;
            }
            _ => {
                member = (member + 1) % 3;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    acked
}

#[tokio::test]
async fn leader_kill_loses_no_acknowledged_write() {
    kvd_only(|| async {
        let c = Arc::new(Cluster::start(3).await);
        let leader = c.leader().await;
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..6)
            .map(|t| tokio::spawn(write_until(c.clone(), t, stop.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(800)).await;
        // kill -9 the leader in the middle of the writes.
        c.kill9_shared(leader);
        // Writes resume through the other members.
        let deadline = Instant::now() + DEADLINE;
        let alive = (leader + 1) % 3;
        loop {
            let mut w = c.client(alive).await;
            if w.put("after-kill", "1", None).await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "writes did not resume\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        stop.store(true, Ordering::Relaxed);
        let mut acked: BTreeMap<String, String> = BTreeMap::new();
        for w in writers {
            acked.extend(w.await.expect("writer"));
        }
        assert!(
            acked.len() > 20,
            "too few writes acknowledged: {}",
            acked.len()
        );
        // The killed member comes back and catches up.
        let mut c = Arc::try_unwrap(c).unwrap_or_else(|_| panic!("cluster still shared"));
        c.spawn(leader);
        c.wait_ready(leader).await;
        let mut revs = Vec::new();
        for i in 0..3 {
            let mut r = c.client(i).await;
            let got = r
                .get("w", Some(GetOptions::new().with_prefix()))
                .await
                .expect("get");
            revs.push(got.header().map(|h| h.revision()).unwrap_or(0));
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
            for (k, v) in &acked {
                assert_eq!(have.get(k), Some(v), "member {i} lost acknowledged {k}");
            }
        }
        assert!(
            revs.windows(2).all(|w| w[0] == w[1]),
            "revisions differ: {revs:?}"
        );
        let mut hashes = Vec::new();
        for i in 0..3 {
            let mut m = c.client(i).await;
            hashes.push(m.hash_kv(revs[0]).await.expect("hash_kv").hash());
        }
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "hashes differ: {hashes:?}"
        );
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
        let leader_log = std::fs::read_to_string(c.log_path(leader)).unwrap_or_default();
        assert!(
            leader_log.contains("saved snapshot"),
            "the leader took a snapshot\n{}",
            c.logs()
        );
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
        // A learner is promoted once it has (almost) the leader's log.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (ok, out, err) = c.etcdctl(0, &["member", "promote", &id4]);
            if ok {
                break;
            }
            assert!(
                err.contains("in sync with leader") && Instant::now() < deadline,
                "member promote failed: {out} {err}\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Update a member's peer URLs (to a list naming the same address).
        let urls = format!("--peer-urls=http://127.0.0.1:{p4},http://localhost:{p4}");
        let (ok, out, err) = c.etcdctl(2, &["member", "update", &id4, &urls]);
        assert!(
            ok && out.contains("updated in cluster"),
            "member update failed: {out} {err}"
        );
        let (ok, list, _) = c.etcdctl(0, &["member", "list"]);
        assert!(
            ok && list.contains(&format!("http://localhost:{p4}")),
            "{list}"
        );
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

/// The state letter of each thread of member `i` (`/proc/<pid>/task/*/stat`:
/// the state follows the last `)`, as the command name may hold spaces and
/// parentheses); a thread that exited meanwhile is left out.
fn thread_states(c: &Cluster, i: usize) -> String {
    let Some(pid) = c.members[i].child.as_ref().map(|ch| ch.id()) else {
        return "not running".to_string();
    };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("pid {pid} gone");
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let st = std::fs::read_to_string(t.path().join("stat")).ok()?;
            st.rsplit_once(')')?.1.trim_start().chars().next()
        })
        .collect()
}

/// Waits until every thread of member `i` is stopped (state `T`).
async fn wait_stopped(c: &Cluster, i: usize) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let states = thread_states(c, i);
        if !states.is_empty() && states.chars().all(|s| s == 'T') {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {i} never stopped: {states}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn member_without_quorum_refuses_linearizable_requests() {
    use nix::sys::signal::Signal;
    kvd_only(|| async {
        let c = Cluster::start(3).await;
        let leader = c.leader().await;
        c.client(leader)
            .await
            .put("q", "1", None)
            .await
            .expect("put");
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        for i in &others {
            c.signal(*i, Signal::SIGSTOP);
        }
        // kill(2) only queues SIGSTOP; until the kernel has stopped every
        // thread, a follower can still answer the leader's heartbeats, and a
        // read in that window rightly succeeds. Wait until both are stopped.
        for i in &others {
            wait_stopped(&c, *i).await;
        }
        let opts = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(20));
        let mut l = etcd_client::Client::connect([c.endpoint(leader)], Some(opts))
            .await
            .expect("connect");
        // Serializable reads are still served locally.
        let got = l
            .get("q", Some(GetOptions::new().with_serializable()))
            .await
            .expect("serializable get without quorum");
        assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"1"[..]));
        // Linearizable reads and writes get one of etcd's errors for this.
        let etcd_text = |e: &etcd_client::Error| {
            let t = e.to_string();
            t.contains("etcdserver: request timed out") || t.contains("etcdserver: no leader")
        };
        let err = l
            .get("q", None)
            .await
            .expect_err("linearizable get without quorum");
        assert!(etcd_text(&err), "{err}");
        let err = l.put("q", "2", None).await.expect_err("put without quorum");
        assert!(etcd_text(&err), "{err}");
        for i in &others {
            c.signal(*i, Signal::SIGCONT);
        }
        // With the quorum back, the cluster serves again.
        let deadline = Instant::now() + DEADLINE;
        loop {
            match l.put("q", "3", None).await {
                Ok(_) => break,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "no recovery: {e}; stopped members' thread states {:?}\n{}",
                    others
                        .iter()
                        .map(|i| thread_states(&c, *i))
                        .collect::<Vec<_>>(),
                    c.logs()
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let got = l.get("q", None).await.expect("get after recovery");
        assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"3"[..]));
    })
    .await;
}

#[tokio::test]
async fn member_of_another_cluster_is_refused() {
    kvd_only(|| async {
        let c = Cluster::start(3).await;
        // An intruder naming a peer of ours in its --initial-cluster, with another token.
        let dir = tempfile::tempdir().expect("tempdir");
        let (cp, pp) = (free_port(), free_port());
        let initial = format!(
            "x1=http://127.0.0.1:{pp},n1=http://127.0.0.1:{}",
            c.members[0].peer_port
        );
        let log_path = dir.path().join("x1.log");
        let log = std::fs::File::create(&log_path).expect("log");
        let mut intruder = std::process::Command::new(common::Kind::Kvd.binary())
            .arg("--name=x1")
            .arg(format!("--data-dir={}", dir.path().join("x1").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{cp}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{pp}"))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--initial-cluster-token=another-cluster")
            .stdout(std::process::Stdio::from(log.try_clone().expect("log")))
            .stderr(std::process::Stdio::from(log))
            .spawn()
            .expect("spawn intruder");
        // Our member refuses its raft messages and says why.
        let deadline = Instant::now() + DEADLINE;
        let refused = loop {
            let ours = std::fs::read_to_string(c.log_path(0)).unwrap_or_default();
            if ours.contains("refused a peer request from another cluster") {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let _ = intruder.kill();
        let _ = intruder.wait();
        assert!(refused, "no refusal logged\n{}", c.logs());
        // And the cluster is undisturbed.
        let mut w = c.client(0).await;
        w.put("still", "fine", None)
            .await
            .expect("put after intrusion");
    })
    .await;
}

#[tokio::test]
async fn lease_ttl_on_a_follower_sees_keepalives_at_the_leader() {
    kvd_only(|| async {
        let c = Cluster::start(3).await;
        let leader = c.leader().await;
        let follower = (leader + 1) % 3;
        let mut l = c.client(leader).await;
        let id = l.lease_grant(5, None).await.expect("grant").id();
        let (mut keeper, _stream) = l.lease_keep_alive(id).await.expect("keep-alive");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            keeper.keep_alive().await.expect("keep-alive");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Without the keep-alives the lease would have ~2 s left.
        let mut f = c.client(follower).await;
        let ttl = f
            .lease_time_to_live(id, None)
            .await
            .expect("ttl via follower")
            .ttl();
        assert!(ttl >= 4, "follower reports {ttl}s left");
    })
    .await;
}
