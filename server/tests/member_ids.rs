//! Member IDs are never reused (issue 9): a member removed and re-added at
//! the same peer URL gets a new ID, which it learns from the cluster and
//! keeps across restarts; the removed incarnation, restarted with its old
//! data dir, is refused by its former peers and stops; the initial members'
//! IDs stay derived from the flags (same flags, same IDs). Real kvd
//! processes, driven with the etcd-client crate.

mod common;

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::cluster::{free_port, Cluster, Member, DEADLINE};
use common::{kvd_only, wait_until};

/// etcd's text for a message from a removed member.
const REMOVED: &str = "the member has been permanently removed from the cluster";

/// Member `i`'s ID and its cluster's ID, from its Status header.
async fn ids_of(c: &Cluster, i: usize) -> (u64, u64) {
    let st = c
        .client(i)
        .await
        .status()
        .await
        .unwrap_or_else(|e| panic!("status of member {i}: {e}\n{}", c.logs()));
    let h = st.header().expect("status header");
    (h.member_id(), h.cluster_id())
}

/// Waits for member `i`'s process to exit by itself.
async fn wait_exit(c: &mut Cluster, i: usize) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let child = c.members[i].child.as_mut().expect("member was started");
        if let Some(status) = child.try_wait().expect("wait for kvd") {
            c.members[i].child = None;
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "member {i} kept running\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log_of(c: &Cluster, i: usize) -> String {
    std::fs::read_to_string(c.log_path(i)).unwrap_or_default()
}

/// The IDs MemberList reports, sorted.
async fn listed_ids(c: &Cluster, i: usize) -> Vec<u64> {
    let list = c.client(i).await.member_list().await.expect("member list");
    let mut ids: Vec<u64> = list.members().iter().map(|m| m.id()).collect();
    ids.sort_unstable();
    ids
}

/// Waits until a serializable get of `key` on member `i` returns `value`.
async fn wait_value(c: &Cluster, i: usize, key: &str, value: &str) {
    let ep = c.endpoint(i);
    wait_until(&format!("{key}={value} on member {i}"), DEADLINE, || {
        let ep = ep.clone();
        async move {
            let mut cl = etcd_client::Client::connect([ep], None).await.ok()?;
            let opts = etcd_client::GetOptions::new().with_serializable();
            let got = cl.get(key, Some(opts)).await.ok()?;
            (got.kvs().first()?.value() == value.as_bytes()).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn removed_member_is_refused_and_readded_member_gets_a_new_id() {
    kvd_only(|| async {
        let mut c = Cluster::start(3).await;
        let leader = c.leader().await;
        // The member to remove is a follower, so the cluster keeps its leader.
        let victim = (leader + 1) % 3;
        let other = 3 - leader - victim;
        let (old_id, cluster_id) = ids_of(&c, victim).await;
        let mut l = c.client(leader).await;
        l.put("k1", "v1", None).await.expect("put k1");

        // C is stopped, then removed: it never applies its own removal.
        c.kill9(victim);
        l.member_remove(old_id).await.expect("member remove");
        let remaining = listed_ids(&c, leader).await;
        assert!(!remaining.contains(&old_id), "{remaining:?}");

        // The old C restarted with its old data dir (same URL, same ID):
        // its former peers refuse it and it stops, with a non-zero status.
        c.spawn(victim);
        let status = wait_exit(&mut c, victim).await;
        assert!(!status.success(), "removed member exited with {status}");
        let own_log = log_of(&c, victim);
        assert!(
            own_log.contains("ERROR") && own_log.contains(REMOVED),
            "no error line on the removed member\n{own_log}"
        );
        let peers_log = log_of(&c, leader) + &log_of(&c, other);
        assert!(
            peers_log.contains(&format!(
                "refused a message from a removed member: {REMOVED}"
            )) && peers_log.contains(&format!("{old_id:x}")),
            "no refusal logged by the peers\n{}",
            c.logs()
        );
        // The cluster was not disturbed: same members, same leader, writes go on.
        assert_eq!(listed_ids(&c, leader).await, remaining);
        assert_eq!(c.leader().await, leader);
        l.put("k2", "v2", None).await.expect("put k2");

        // Re-adding a URL a current member has keeps etcd's error.
        let taken = format!("http://127.0.0.1:{}", c.members[other].peer_port);
        let err = l
            .member_add([taken], None)
            .await
            .expect_err("member add of a current member's URL");
        let (code, msg) = common::grpc_status(&err);
        assert_eq!(
            (code, msg.as_str()),
            (
                tonic::Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists"
            )
        );

        // C' at the same peer URL: a new ID, different from the old one.
        let peer_port = c.members[victim].peer_port;
        let url = format!("http://127.0.0.1:{peer_port}");
        let added = l.member_add([url.clone()], None).await.expect("member add");
        let new_id = added.member().expect("added member").id();
        assert_ne!(new_id, old_id, "a re-added member got its old ID back");
        assert_ne!(new_id, 0);

        // C' starts with a fresh data dir and joins: it learns its ID.
        let initial = [leader, other]
            .iter()
            .map(|&i| {
                let m = &c.members[i];
                format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)
            })
            .chain([format!("n3new={url}")])
            .collect::<Vec<_>>()
            .join(",");
        c.members.push(Member {
            name: "n3new".to_string(),
            client_port: free_port(),
            peer_port,
            child: None,
            state: "existing",
            initial: Some(initial),
        });
        let fresh = c.members.len() - 1;
        c.spawn(fresh);
        c.wait_ready(fresh).await;
        assert_eq!(ids_of(&c, fresh).await, (new_id, cluster_id));
        // Writes made before and after it joined reach it.
        l.put("k3", "v3", None).await.expect("put k3");
        for (k, v) in [("k1", "v1"), ("k2", "v2"), ("k3", "v3")] {
            wait_value(&c, fresh, k, v).await;
        }
        assert!(listed_ids(&c, fresh).await.contains(&new_id));

        // A restart keeps the learned ID (it is in the data dir).
        c.kill9(fresh);
        c.spawn(fresh);
        c.wait_ready(fresh).await;
        assert_eq!(ids_of(&c, fresh).await, (new_id, cluster_id));
        l.put("k4", "v4", None).await.expect("put k4");
        wait_value(&c, fresh, "k4", "v4").await;

        // C' down, and the old C started again at the same URL: the leader's
        // messages for C' reach old C, which must refuse them (they name
        // C'), so its acknowledgements never count for C'. It then stops.
        c.kill9(fresh);
        l.put("k5", "v5", None).await.expect("put k5 with C' down");
        let before = log_of(&c, victim).len();
        c.spawn(victim);
        let status = wait_exit(&mut c, victim).await;
        assert!(!status.success(), "removed member exited with {status}");
        let own_log = log_of(&c, victim)[before..].to_string();
        assert!(
            own_log.contains("refused a peer request meant for another member")
                && own_log.contains(&format!("{new_id:x}")),
            "old C accepted messages meant for C'\n{own_log}"
        );
        // C' comes back and catches up.
        c.spawn(fresh);
        c.wait_ready(fresh).await;
        wait_value(&c, fresh, "k5", "v5").await;
    })
    .await;
}

#[tokio::test]
async fn running_member_stops_when_removed() {
    kvd_only(|| async {
        let mut c = Cluster::start(3).await;
        let leader = c.leader().await;
        let victim = (leader + 1) % 3;
        let (id, _) = ids_of(&c, victim).await;
        let mut l = c.client(leader).await;
        l.member_remove(id).await.expect("member remove");
        // It stops by itself, with an error line and a non-zero status.
        let status = wait_exit(&mut c, victim).await;
        assert!(!status.success(), "removed member exited with {status}");
        let log = log_of(&c, victim);
        assert!(
            log.contains("ERROR") && log.contains(REMOVED),
            "no error line on the removed member\n{log}"
        );
        // The two left serve on.
        l.put("after", "removal", None)
            .await
            .expect("put after removal");
        assert!(!listed_ids(&c, leader).await.contains(&id));
    })
    .await;
}

#[tokio::test]
async fn bootstrap_ids_follow_from_the_flags() {
    kvd_only(|| async {
        let mut c = Cluster::start(1).await;
        let first = ids_of(&c, 0).await;
        // The same flags over an empty data dir: the same member and cluster IDs.
        c.kill9(0);
        let data = c.dir.path().join(&c.members[0].name);
        std::fs::remove_dir_all(&data).expect("remove data dir");
        c.spawn(0);
        c.wait_ready(0).await;
        assert_eq!(ids_of(&c, 0).await, first);
    })
    .await;
}

#[tokio::test]
async fn removed_leader_applies_its_removal_and_stops() {
    kvd_only(|| async {
        let mut c = Cluster::start(3).await;
        let leader = c.leader().await;
        let (id, _) = ids_of(&c, leader).await;
        // The leader applies its own removal (it commits it), answers, stops.
        c.client(leader)
            .await
            .member_remove(id)
            .await
            .expect("member remove of the leader");
        let status = wait_exit(&mut c, leader).await;
        assert!(!status.success(), "removed leader exited with {status}");
        let log = log_of(&c, leader);
        assert!(
            log.contains("applied this member's own removal") && log.contains(REMOVED),
            "the leader did not stop on its applied removal\n{log}"
        );
        // The other two elect a leader among themselves and serve on.
        let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        for &i in &rest {
            c.wait_ready(i).await;
        }
        let mut w = c.client(rest[0]).await;
        w.put("after", "leader removal", None)
            .await
            .expect("put after the leader's removal");
        assert!(!listed_ids(&c, rest[1]).await.contains(&id));
    })
    .await;
}

/// etcd's procedure: `member add` answers at once, then the new member
/// starts. Adding a voter to a one-member cluster used to wait for the new
/// member's vote (openraft's joint change needs a majority of the new set)
/// and answered "request timed out" after 10 s.
#[tokio::test]
async fn voter_added_to_one_member_cluster_is_answered_before_it_starts() {
    kvd_only(|| async {
        let mut c = Cluster::start(1).await;
        let mut l = c.client(0).await;
        l.put("k1", "v1", None).await.expect("put k1");
        let (client_port, peer_port) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{peer_port}");
        let added = l
            .member_add([url], None)
            .await
            .unwrap_or_else(|e| panic!("member add: {e}\n{}", c.logs()));
        let new_id = added.member().expect("added member").id();
        // Listed at once, as a voter (etcd lists it unstarted, not a learner).
        let list = l.member_list().await.expect("member list");
        let new = list.members().iter().find(|m| m.id() == new_id);
        assert!(new.is_some_and(|m| !m.is_learner()), "{:?}", list.members());

        let fresh = c.join("m2", client_port, peer_port).await;
        assert_eq!(ids_of(&c, fresh).await.0, new_id);
        wait_value(&c, fresh, "k1", "v1").await;
        // Both members serve writes: the change completed.
        l.put("k2", "v2", None).await.expect("put k2");
        wait_value(&c, fresh, "k2", "v2").await;
        let mut f = c.client(fresh).await;
        f.put("k3", "v3", None)
            .await
            .expect("put k3 through the new member");
        wait_value(&c, 0, "k3", "v3").await;
        assert_eq!(listed_ids(&c, 0).await.len(), 2);
    })
    .await;
}
