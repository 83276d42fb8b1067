//! Leadership in a three-member kvd cluster: pre-vote keeps a member that
//! was cut off from disrupting the leader when it returns, and MoveLeader
//! (through Debian's etcdctl) hands leadership to the member asked for,
//! under writes, without losing any; removing the leader leaves a cluster
//! that elects a new one; a learner that never caught up is not promoted.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, DEADLINE};
use common::kvd_only;

/// (leader id, term) as member `i` reports them.
async fn leader_and_term(c: &Cluster, i: usize) -> (u64, u64) {
    let mut m = c.client(i).await;
    let st = m.status().await.expect("status");
    (st.leader(), st.raft_term())
}

fn member_id(st: &etcd_client::StatusResponse) -> u64 {
    st.header().map(|h| h.member_id()).unwrap_or(0)
}

#[tokio::test]
async fn isolated_member_returns_without_disrupting_the_leader() {
    kvd_only(|| async {
        // Short timers (also checks that the flags reach raft): six election
        // timeouts pass while the member is cut off.
        let c =
            Cluster::start_with(3, &["--heartbeat-interval=50", "--election-timeout=500"]).await;
        let leader = c.leader().await;
        let (leader_id, term) = leader_and_term(&c, leader).await;
        let follower = (leader + 1) % 3;
        c.isolate(follower, true);
        let mut w = c.client(leader).await;
        for i in 0..20 {
            w.put(format!("p{i}"), "v", None)
                .await
                .expect("put with two of three");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Pre-vote: the cut-off member never won a pre-vote, so it never
        // started an election and its term did not move.
        let (_, cut_off_term) = leader_and_term(&c, follower).await;
        assert_eq!(
            cut_off_term,
            term,
            "isolated member raised its term\n{}",
            c.logs()
        );

        c.isolate(follower, false);
        let deadline = Instant::now() + DEADLINE;
        let mut f = c.client(follower).await;
        loop {
            let got = f
                .get(
                    "p19",
                    Some(etcd_client::GetOptions::new().with_serializable()),
                )
                .await
                .expect("serializable get");
            if !got.kvs().is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "no catch-up\n{}", c.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        for i in 0..3 {
            assert_eq!(
                leader_and_term(&c, i).await,
                (leader_id, term),
                "member {i} saw the leadership change\n{}",
                c.logs()
            );
        }
    })
    .await;
}

#[tokio::test]
async fn move_leader_hands_over_under_writes() {
    kvd_only(|| async {
        let c = Arc::new(Cluster::start(3).await);
        let stop = Arc::new(AtomicBool::new(false));
        // A writer through every member; it records what was acknowledged.
        let writer = {
            let (c, stop) = (c.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut clients = Vec::new();
                for i in 0..3 {
                    clients.push(c.client(i).await);
                }
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let k = format!("w{n:05}");
                    if clients[(n % 3) as usize]
                        .put(k.clone(), "v", None)
                        .await
                        .is_ok()
                    {
                        acked.push(k);
                    }
                    n += 1;
                }
                acked
            })
        };
        for round in 0..3 {
            let leader = c.leader().await;
            let target = (leader + 1) % 3;
            let mut t = c.client(target).await;
            let target_id = member_id(&t.status().await.expect("status"));
            let (ok, out, err) = c.etcdctl(leader, &["move-leader", &format!("{target_id:x}")]);
            assert!(
                ok,
                "round {round}: move-leader failed: {out}{err}\n{}",
                c.logs()
            );
            assert!(
                out.contains("Leadership transferred from")
                    && out.contains(&format!("{target_id:x}")),
                "round {round}: {out}"
            );
            // The transferee's first heartbeat tells the third member.
            let deadline = Instant::now() + DEADLINE;
            for i in 0..3 {
                loop {
                    let (l, _) = leader_and_term(&c, i).await;
                    if l == target_id {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "round {round}: member {i} names leader {l:x}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        // Asking a follower gives etcd's error.
        let leader = c.leader().await;
        let follower = (leader + 1) % 3;
        let mut f = c.client(follower).await;
        let leader_id = member_id(&c.client(leader).await.status().await.expect("status"));
        let err = f
            .move_leader(leader_id)
            .await
            .expect_err("move-leader on a follower");
        assert!(err.to_string().contains("etcdserver: not leader"), "{err}");
        // A member ID that is not in the cluster.
        let mut l = c.client(leader).await;
        let err = l.move_leader(0x1234).await.expect_err("unknown transferee");
        assert!(
            err.to_string()
                .contains("etcdserver: bad leader transferee"),
            "{err}"
        );

        stop.store(true, Ordering::Relaxed);
        let acked = writer.await.expect("writer");
        assert!(!acked.is_empty(), "no write was acknowledged");
        for i in 0..3 {
            let mut m = c.client(i).await;
            let got = m
                .get(
                    "w",
                    Some(
                        etcd_client::GetOptions::new()
                            .with_prefix()
                            .with_keys_only(),
                    ),
                )
                .await
                .expect("get");
            let have: std::collections::BTreeSet<Vec<u8>> =
                got.kvs().iter().map(|kv| kv.key().to_vec()).collect();
            for k in &acked {
                assert!(
                    have.contains(k.as_bytes()),
                    "member {i} lost acknowledged {k}"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn removing_the_leader_leaves_a_working_cluster() {
    kvd_only(|| async {
        let mut c = Cluster::start(3).await;
        let leader = c.leader().await;
        let mut l = c.client(leader).await;
        let leader_id = member_id(&l.status().await.expect("status"));
        l.put("before", "1", None).await.expect("put");
        let follower = (leader + 1) % 3;
        let (ok, out, err) = c.etcdctl(follower, &["member", "remove", &format!("{leader_id:x}")]);
        assert!(ok, "member remove failed: {out}{err}\n{}", c.logs());
        c.kill9(leader);
        // The other two elect a leader among themselves and take writes.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (ok, _, err) = c.etcdctl(follower, &["put", "after", "removal"]);
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no writes after removing the leader: {err}\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let other = (leader + 2) % 3;
        let (ok, out, _) = c.etcdctl(other, &["get", "before", "--print-value-only"]);
        assert!(ok && out.trim() == "1", "{out}");
        let (ok, list, _) = c.etcdctl(other, &["member", "list"]);
        assert!(ok);
        assert_eq!(list.lines().count(), 2, "{list}");
        assert!(!list.contains(&format!("{leader_id:x}")), "{list}");
    })
    .await;
}

#[tokio::test]
async fn a_learner_that_never_caught_up_is_not_promoted() {
    kvd_only(|| async {
        let c = Cluster::start(3).await;
        let peer = format!(
            "--peer-urls=http://127.0.0.1:{}",
            common::cluster::free_port()
        );
        let (ok, out, err) = c.etcdctl(0, &["member", "add", "ghost", &peer, "--learner"]);
        assert!(ok, "member add failed: {out}{err}");
        let id = out
            .lines()
            .find_map(|l| l.split("Member ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no id in: {out}"))
            .to_string();
        // etcd's answer for a learner that is not in sync with the leader.
        let (ok, _, err) = c.etcdctl(1, &["member", "promote", &id]);
        assert!(!ok);
        assert!(
            err.contains(
                "etcdserver: can only promote a learner member which is in sync with leader"
            ),
            "{err}"
        );
        // Membership changes still go through afterwards.
        let (ok, out, err) = c.etcdctl(2, &["member", "remove", &id]);
        assert!(ok, "member remove failed: {out}{err}\n{}", c.logs());
        let (ok, list, _) = c.etcdctl(0, &["member", "list"]);
        assert!(ok && list.lines().count() == 3, "{list}");
    })
    .await;
}
