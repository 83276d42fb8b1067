//! Maintenance and Cluster services: status, alarms, defragment, hash_kv,
//! snapshot (also via `etcdctl snapshot save`), member list, and the
//! response headers every service returns.

mod common;

use std::time::Duration;

use common::*;
use etcd_client::{AlarmAction, AlarmType, ResponseHeader};

/// etcd's Cluster service fills cluster_id, member_id and raft_term but
/// leaves the revision 0; the current revision is accepted too.
fn member_list_header(
    kind: Kind,
    h: Option<&ResponseHeader>,
    current: i64,
) -> (u64, u64, i64, u64) {
    let h = h.unwrap_or_else(|| panic!("[{kind}] member list: no response header"));
    assert!(
        h.cluster_id() != 0 && h.member_id() != 0 && h.raft_term() != 0,
        "[{kind}] member list header {h:?}"
    );
    assert!(
        h.revision() == 0 || h.revision() == current,
        "[{kind}] member list header revision {} (want 0 like etcd, or {current})",
        h.revision()
    );
    (h.cluster_id(), h.member_id(), current, h.raft_term())
}

fn header_ok(kind: Kind, what: &str, h: Option<&ResponseHeader>) -> (u64, u64, i64, u64) {
    let h = h.unwrap_or_else(|| panic!("[{kind}] {what}: no response header"));
    assert!(h.cluster_id() != 0, "[{kind}] {what}: cluster_id is 0");
    assert!(h.member_id() != 0, "[{kind}] {what}: member_id is 0");
    assert!(
        h.revision() > 0,
        "[{kind}] {what}: revision {}",
        h.revision()
    );
    assert!(h.raft_term() > 0, "[{kind}] {what}: raft_term is 0");
    (h.cluster_id(), h.member_id(), h.revision(), h.raft_term())
}

#[tokio::test]
async fn status_alarms_and_headers() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        c.put("a", "1", None).await.unwrap();

        let s = c.status().await.unwrap();
        let (cluster, member, revision, term) = header_ok(kind, "status", s.header());
        assert!(!s.version().is_empty(), "[{kind}] status version");
        assert!(s.db_size() > 0, "[{kind}] db_size {}", s.db_size());
        assert_eq!(
            s.leader(),
            member,
            "[{kind}] the single member is the leader"
        );
        assert!(s.raft_index() > 0, "[{kind}] raft_index");
        assert!(s.raft_applied_index() > 0, "[{kind}] raft_applied_index");
        assert!(
            s.raft_applied_index() <= s.raft_index(),
            "[{kind}] applied <= index"
        );
        assert_eq!(
            s.raft_term(),
            term,
            "[{kind}] status raft_term == header raft_term"
        );
        assert_eq!(revision, 2, "[{kind}] status header revision");
        assert!(
            s.errors().is_empty(),
            "[{kind}] status errors {:?}",
            s.errors()
        );
        assert!(!s.is_learner());

        // Writes advance the raft index.
        c.put("a", "2", None).await.unwrap();
        let s2 = c.status().await.unwrap();
        assert!(
            s2.raft_index() > s.raft_index(),
            "[{kind}] raft index advances"
        );

        // Alarms: none. (etcd 3.4 sends no header here.)
        let a = c
            .alarm(AlarmAction::Get, AlarmType::None, None)
            .await
            .unwrap();
        if a.header().is_some() {
            header_ok(kind, "alarm", a.header());
        }
        assert!(
            a.alarms().is_empty(),
            "[{kind}] alarms {:?}",
            a.alarms().len()
        );

        // Every service fills the same header.
        let mut headers = Vec::new();
        let g = c.get("a", None).await.unwrap();
        headers.push(("range", header_ok(kind, "range", g.header())));
        let p = c.put("b", "1", None).await.unwrap();
        headers.push(("put", header_ok(kind, "put", p.header())));
        let d = c.delete("b", None).await.unwrap();
        headers.push(("delete", header_ok(kind, "delete", d.header())));
        let tx = c.txn(etcd_client::Txn::new()).await.unwrap();
        headers.push(("txn", header_ok(kind, "txn", tx.header())));
        let l = c.lease_grant(60, None).await.unwrap();
        headers.push(("lease grant", header_ok(kind, "lease grant", l.header())));
        let ll = c.leases().await.unwrap();
        headers.push(("leases", header_ok(kind, "leases", ll.header())));
        let ttl = c.lease_time_to_live(l.id(), None).await.unwrap();
        headers.push(("ttl", header_ok(kind, "time-to-live", ttl.header())));
        let r = c.lease_revoke(l.id()).await.unwrap();
        headers.push(("revoke", header_ok(kind, "revoke", r.header())));
        let m = c.member_list().await.unwrap();
        headers.push(("member list", member_list_header(kind, m.header(), 5)));
        let h = c.hash_kv(0).await.unwrap();
        headers.push(("hash_kv", header_ok(kind, "hash_kv", h.header())));
        let s = c.status().await.unwrap();
        headers.push(("status", header_ok(kind, "status", s.header())));
        for (what, (cl, mem, _, term)) in &headers {
            assert_eq!(
                (*cl, *mem, *term),
                (cluster, member, s.raft_term()),
                "[{kind}] {what}: header ids differ from status"
            );
        }
        let revs: Vec<(&str, i64)> = headers.iter().map(|(w, h)| (*w, h.2)).collect();
        assert_eq!(
            revs,
            [
                ("range", 3),
                ("put", 4),
                ("delete", 5),
                ("txn", 5),
                ("lease grant", 5),
                ("leases", 5),
                ("ttl", 5),
                ("revoke", 5),
                ("member list", 5),
                ("hash_kv", 5),
                ("status", 5)
            ],
            "[{kind}] header revisions"
        );
        t.push(format!("{revs:?}"));
        t
    })
    .await;
}

#[tokio::test]
async fn member_list_single_member() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let m = c.member_list().await.unwrap();
        let (_, member, _, _) = member_list_header(kind, m.header(), 1);
        assert_eq!(m.members().len(), 1, "[{kind}] exactly one member");
        let me = &m.members()[0];
        assert_eq!(me.id(), member, "[{kind}] member id == header member_id");
        assert_eq!(me.name(), MEMBER_NAME, "[{kind}] member name");
        assert_eq!(me.client_urls(), [srv.endpoint()], "[{kind}] client urls");
        assert_eq!(me.peer_urls(), [srv.peer_url()], "[{kind}] peer urls");
        assert!(!me.is_learner());
        let s = c.status().await.unwrap();
        assert_eq!(s.leader(), me.id());
        vec![format!("{} {}", me.name(), me.client_urls().len())]
    })
    .await;
}

#[tokio::test]
async fn defragment_hash_kv_and_snapshot() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        for i in 0..50 {
            c.put(format!("k{i:02}"), "v".repeat(100), None)
                .await
                .unwrap();
        }
        for i in 0..25 {
            c.delete(format!("k{i:02}"), None).await.unwrap();
        }
        let h1 = c.hash_kv(0).await.unwrap();
        assert_eq!(rev(h1.header()), 76);
        // etcd 3.4 leaves hash_revision 0 (3.5 sets it); compact_version is
        // -1 before any compaction.
        assert!(
            [0, 76].contains(&h1.hash_revision()),
            "[{kind}] hash_revision of hash_kv(0): {}",
            h1.hash_revision()
        );
        assert_eq!(
            h1.compact_version(),
            -1,
            "[{kind}] compact_version before compaction"
        );
        assert_ne!(h1.hash(), 0, "[{kind}] hash");
        let h1_at = c.hash_kv(40).await.unwrap();
        assert!(
            [0, 40].contains(&h1_at.hash_revision()),
            "[{kind}] hash_revision of hash_kv(40)"
        );
        assert_ne!(
            h1_at.hash(),
            h1.hash(),
            "[{kind}] hash at older revision differs"
        );

        // (etcd 3.4 sends no header with the defragment response.)
        let d = c.defragment().await.unwrap();
        if d.header().is_some() {
            header_ok(kind, "defragment", d.header());
        }
        let h2 = c.hash_kv(0).await.unwrap();
        assert_eq!(
            h2.hash(),
            h1.hash(),
            "[{kind}] hash_kv changed by defragment"
        );
        assert_eq!(rev(h2.header()), 76);
        assert_eq!(
            c.hash_kv(40).await.unwrap().hash(),
            h1_at.hash(),
            "[{kind}] old hash after defrag"
        );
        let s = c.status().await.unwrap();
        assert!(s.db_size() > 0);

        // A write changes the hash; the same request stays stable.
        c.put("new", "x", None).await.unwrap();
        let h3 = c.hash_kv(0).await.unwrap();
        assert_ne!(h3.hash(), h1.hash(), "[{kind}] hash after a write");
        assert_eq!(
            c.hash_kv(76).await.unwrap().hash(),
            h1.hash(),
            "[{kind}] hash_kv(76) stable"
        );

        // Compaction: hash_kv below the compaction fails, compact_version set.
        c.compact(60, None).await.unwrap();
        let h4 = c.hash_kv(0).await.unwrap();
        assert_eq!(h4.compact_version(), 60, "[{kind}] compact_version");
        t.push(expect_grpc_err(
            kind,
            c.hash_kv(50).await,
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        ));

        // Snapshot streams bytes; the last message has remaining_bytes 0.
        let mut snap = c.snapshot().await.unwrap();
        let mut total = 0usize;
        let mut last_remaining = None;
        let mut messages = 0;
        while let Some(m) = within("snapshot message", Duration::from_secs(20), snap.message())
            .await
            .unwrap()
        {
            total += m.blob().len();
            last_remaining = Some(m.remaining_bytes());
            messages += 1;
        }
        assert!(total > 0, "[{kind}] snapshot is empty");
        assert!(messages > 0);
        assert_eq!(
            last_remaining,
            Some(0),
            "[{kind}] last snapshot message remaining_bytes"
        );

        // etcdctl snapshot save
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.db");
        let path_s = path.to_str().unwrap();
        let out = srv.etcdctl(&["snapshot", "save", path_s]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "[{kind}] etcdctl snapshot save failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout,
            format!("Snapshot saved at {path_s}\n"),
            "[{kind}] etcdctl stdout"
        );
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > 0, "[{kind}] snapshot file is empty");
        t.push(stdout.replace(path_s, "PATH"));

        // The server is still fine afterwards.
        let g = c.get("k30", None).await.unwrap();
        assert_eq!(g.count(), 1);
        t
    })
    .await;
}
