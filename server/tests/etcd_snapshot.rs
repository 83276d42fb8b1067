//! Maintenance.Snapshot writes etcd's own v3 snapshot format (issue 14):
//! `etcdctl snapshot save` against kvd gives a file that etcdctl 3.4's (and
//! etcd v3.7.3's etcdutl) `snapshot status` read, and that `etcdctl snapshot
//! restore` turns into an etcd member serving the same keys at the same
//! revisions (create, mod, version, lease), the same history above the
//! compaction, the same compaction mark, the lease and the auth records.

mod common;

use std::process::Command;

use common::{kvd_only, Kind, Options, Server};
use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};

/// Every key with its revisions, value and lease, as one line each.
async fn dump(c: &mut Client, rev: i64) -> Vec<String> {
    let opts = GetOptions::new().with_all_keys().with_revision(rev);
    match c.get("", Some(opts)).await {
        Ok(r) => r
            .kvs()
            .iter()
            .map(|kv| {
                format!(
                    "{}={} c{} m{} v{} l{:x}",
                    kv.key_str().unwrap_or("?"),
                    kv.value_str().unwrap_or("?"),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.version(),
                    kv.lease()
                )
            })
            .collect(),
        Err(e) => vec![format!("error {e}")],
    }
}

async fn observe(c: &mut Client, compacted: i64, head: i64) -> Vec<String> {
    let mut t = dump(c, 0).await;
    for rev in [compacted - 1, compacted, compacted + 2, head - 1] {
        t.push(format!("at {rev}: {:?}", dump(c, rev).await));
    }
    let leases = c.leases().await.expect("leases");
    for l in leases.leases() {
        let ttl = c.lease_time_to_live(l.id(), None).await.expect("ttl");
        t.push(format!("lease {:x} granted {}", l.id(), ttl.granted_ttl()));
    }
    let mut auth = c.auth_client();
    let users = auth.user_list().await.expect("users");
    t.push(format!("users {:?}", users.users()));
    let roles = auth.role_list().await.expect("roles");
    t.push(format!("roles {:?}", roles.roles()));
    let perms = auth.role_get("reader").await.expect("role get");
    t.push(format!("reader perms {}", perms.permissions().len()));
    t
}

fn ctl(args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(args)
        .output()
        .expect("run etcdctl");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvd_snapshot_restores_into_etcd() {
    kvd_only(|| async {
        let kvd = Server::start(Kind::Kvd).await;
        let mut c = kvd.client().await;
        for i in 0..20 {
            c.put(format!("k{i:02}"), format!("v{i}"), None)
                .await
                .expect("put");
        }
        c.put("k03", "again", None).await.expect("overwrite");
        c.delete("k04", None).await.expect("delete");
        let lease = c.lease_grant(3600, None).await.expect("grant").id();
        c.put("leased", "x", Some(PutOptions::new().with_lease(lease)))
            .await
            .expect("leased put");
        // One revision, several changes (sub revisions 0, 1, 2).
        c.txn(
            Txn::new()
                .when([Compare::version("k05", CompareOp::Equal, 1)])
                .and_then([
                    TxnOp::put("t1", "a", None),
                    TxnOp::put("t2", "b", None),
                    TxnOp::delete("k06", None),
                ]),
        )
        .await
        .expect("txn");
        let compacted = c.put("k07", "pre-compact", None).await.expect("put");
        let compacted = compacted.header().expect("header").revision();
        c.compact(compacted, None).await.expect("compact");
        for i in 0..5 {
            c.put("k08", format!("after{i}"), None).await.expect("put");
        }
        let big = "z".repeat(10_000); // larger than a bbolt page
        let head = c
            .put("big", big, None)
            .await
            .expect("put big")
            .header()
            .expect("header")
            .revision();
        let mut auth = c.auth_client();
        auth.user_add("alice", "apw", None).await.expect("user");
        auth.role_add("reader").await.expect("role");
        auth.role_grant_permission("reader", etcd_client::Permission::read("k"))
            .await
            .expect("grant perm");
        auth.user_grant_role("alice", "reader")
            .await
            .expect("grant role");
        let before = observe(&mut c, compacted, head).await;

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kvd.db");
        let file_s = file.display().to_string();
        ctl(&["--endpoints", &kvd.endpoint(), "snapshot", "save", &file_s]);

        // etcdctl 3.4 reads it as one of etcd's.
        let st: serde_json::Value =
            serde_json::from_str(&ctl(&["snapshot", "status", &file_s, "-w", "json"]))
                .expect("status json");
        assert_eq!(st["revision"].as_i64(), Some(head), "{st}");
        if let Some(utl) = common::etcd_latest().map(|p| p.with_file_name("etcdutl")) {
            let out = Command::new(&utl)
                .args(["snapshot", "status", &file_s, "-w", "json"])
                .output()
                .expect("etcdutl");
            assert!(out.status.success(), "etcdutl status: {out:?}");
        }

        // Restored by etcdctl 3.4 and served by etcd 3.4: the same data.
        let restored = dir.path().join("restored");
        let peer = "http://127.0.0.1:2380";
        ctl(&[
            "snapshot",
            "restore",
            &file_s,
            "--data-dir",
            &restored.display().to_string(),
            "--name",
            common::MEMBER_NAME,
            "--initial-cluster",
            &format!("{}={peer}", common::MEMBER_NAME),
            "--initial-advertise-peer-urls",
            peer,
        ]);
        let opts = Options {
            data_dir: Some(restored),
            ..Default::default()
        };
        let etcd = Server::start_with(Kind::Etcd, opts).await;
        let mut e = etcd.client().await;
        let after = observe(&mut e, compacted, head).await;
        for l in &before {
            eprintln!("[kvd] {l}");
        }
        common::compare_transcripts(Kind::Kvd, &before, Kind::Etcd, &after);
        assert!(before
            .iter()
            .any(|l| l.starts_with("at ") && l.contains("compacted")));
        drop(etcd);
    })
    .await;
}
