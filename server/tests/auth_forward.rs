//! A 3-member kvd cluster with `--auth-token jwt,...` (keys the test makes
//! with `openssl`): a MemberAdd sent to a follower is forwarded to the
//! leader with the client's token, so the leader checks the same user:
//! root's goes through, a user without the root role gets "permission
//! denied", no token gets "user name is empty". The JWT a follower issued
//! verifies on the leader.

mod common;

use std::process::Command;

use common::cluster::{free_port, Cluster};

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_member_add_carries_the_token() {
    let keys = tempfile::tempdir().unwrap();
    let k = keys.path();
    openssl(
        k,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "jwt.key",
        ],
    );
    openssl(k, &["pkey", "-in", "jwt.key", "-pubout", "-out", "jwt.pub"]);
    let flag = format!(
        "--auth-token=jwt,pub-key={},priv-key={},sign-method=ES256,ttl=5m",
        k.join("jwt.pub").display(),
        k.join("jwt.key").display()
    );
    let c = Cluster::start_with(3, &[&flag]).await;
    for args in [
        &["user", "add", "root:rpw"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice:apw"],
        &["auth", "enable"],
    ] {
        let (ok, out, err) = c.etcdctl(0, args);
        assert!(ok, "{args:?}: {out} {err}");
    }
    let leader = c.leader().await;
    let f = (leader + 1) % 3;
    let add = |user: Option<&str>, name: &str| {
        let peer = format!("--peer-urls=http://127.0.0.1:{}", free_port());
        let mut args = vec!["member", "add", name, "--learner", peer.as_str()];
        let u;
        if let Some(user) = user {
            u = format!("--user={user}");
            args.insert(0, &u);
        }
        c.etcdctl(f, &args)
    };
    let (ok, out, err) = add(Some("root:rpw"), "extra");
    assert!(
        ok && out.contains("added"),
        "root via a follower: {out} {err}\n{}",
        c.logs()
    );
    let (ok, _, err) = add(Some("alice:apw"), "extra2");
    assert!(
        !ok && err.contains("etcdserver: permission denied"),
        "alice: {err}"
    );
    let (ok, _, err) = add(None, "extra3");
    assert!(
        !ok && err.contains("etcdserver: user name is empty"),
        "no user: {err}"
    );
    let (ok, out, err) = c.etcdctl(leader, &["--user=root:rpw", "member", "list"]);
    assert!(ok, "{err}");
    // Only root's learner joined the list (unstarted members show no name).
    let learners = out.lines().filter(|l| l.ends_with(", true")).count();
    assert_eq!((out.lines().count(), learners), (4, 1), "{out}");
}
