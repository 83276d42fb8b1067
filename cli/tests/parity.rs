//! Runs the same scripted sequence with our `kvctl` against kvd and with
//! `/usr/bin/etcdctl` against etcd 3.4, and compares stdout, stderr and exit
//! codes (cluster/member IDs and raft terms masked; they legitimately differ).

mod common;

use std::process::Command;

use common::*;

/// The scripted sequence; each line is one command's arguments.
const SCRIPT: &[&[&str]] = &[
    &["put", "a", "1"],
    &["put", "a", "2", "--prev-kv"],
    &["-w", "json", "put", "b", "3", "--prev-kv"],
    &["-w", "json", "put", "b", "4", "--prev-kv"],
    &["-w", "fields", "put", "b", "5", "--prev-kv"],
    &["put", "c", "hello world"],
    &["put", "d/x", "dx"],
    &["put", "d/y", "dy"],
    &["get", "a"],
    &["get", "a", "c"],
    &["get", "zz"],
    &["-w", "json", "get", "zz"],
    &["-w", "json", "get", "a"],
    &["-w", "json", "get", "a", "--prefix"],
    &["-w", "json", "get", "", "--prefix", "--limit=2"],
    &["-w", "fields", "get", "d/", "--prefix"],
    &["get", "d/", "--prefix", "--keys-only"],
    &["get", "d/", "--prefix", "--print-value-only"],
    &["get", "b", "--from-key"],
    &["get", "", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"],
    &["get", "", "--prefix", "--sort-by=VALUE"],
    &["get", "", "--prefix", "--order=DESCEND", "--limit=3"],
    &["-w", "json", "get", "a", "--rev=2"],
    &["get", "a", "--rev=2"],
    &["get", "a", "--rev=100000"],
    &["get", "a", "--order=sideways"],
    &["get", "a", "--sort-by=color"],
    &["get", "a", "--prefix", "--from-key"],
    &["get", "a", "b", "--prefix"],
    &["get"],
    &["put", "onlykey-and-no-value-from-stdin"],
    &["put", "k", "v", "--lease=zz"],
    &["put", "k", "v", "--lease=123abc"],
    &["-w", "yaml", "get", "a"],
    &["-w", "table", "get", "a"],
    &["del", "zz"],
    &["-w", "json", "del", "zz"],
    &["del", "a", "--prev-kv"],
    &["-w", "json", "del", "b", "--prev-kv"],
    &["-w", "fields", "del", "c", "--prev-kv"],
    &["del", "d/", "--prefix", "--prev-kv"],
    &["put", "e1", "1"],
    &["put", "e2", "2"],
    &["del", "e", "--from-key"],
    &["del"],
    &["del", "a", "b", "--from-key"],
    &["-w", "json", "get", "", "--prefix"],
    &["lease", "grant"],
    &["lease", "grant", "x"],
    &["lease", "revoke"],
    &["lease", "revoke", "zz"],
    &["lease", "timetolive"],
    &["lease", "timetolive", "zz"],
    &["lease", "grant", "60"],
    &["put", "lk", "v", "--lease=$L"],
    &["lease", "list"],
    &["-w", "json", "lease", "list"],
    &["-w", "fields", "lease", "list"],
    &["-w", "json", "get", "lk"],
    &["lease", "timetolive", "$L"],
    &["lease", "timetolive", "$L", "--keys"],
    &["lease", "revoke", "$L"],
    &["lease", "revoke", "$L"],
    &["lease", "timetolive", "$L"],
    &["lease", "list", "extra"],
    &["-w", "json", "lease", "list"],
    &["-w", "fields", "lease", "list"],
    &["get", "lk"],
    &["compaction"],
    &["compaction", "x"],
    &["compaction", "3"],
    &["compaction", "3"],
    &["compaction", "2"],
    &["compaction", "100000"],
    &["-w", "json", "compaction", "5", "--physical"],
    &["get", "a", "--rev=2"],
    &["alarm", "list"],
    &["-w", "json", "alarm", "list"],
    &["alarm", "list", "x"],
    &["member", "list"],
    &["-w", "table", "member", "list"],
    &["-w", "json", "member", "list"],
    &["-w", "fields", "member", "list"],
    &["endpoint", "health"],
    &["-w", "table", "endpoint", "health"],
    &["-w", "json", "endpoint", "health"],
    &["endpoint", "status"],
    &["-w", "table", "endpoint", "status"],
];

#[test]
fn kvctl_matches_etcdctl() {
    let etcd = start(std::path::Path::new(ETCD));
    let kvd = start(&kvd_bin());
    let mut failures = Vec::new();
    let (mut etcd_lease, mut kvd_lease) = (None, None);
    for args in SCRIPT {
        let want = run(ETCDCTL, &etcd.endpoint, args, &mut etcd_lease);
        let mut got = run(KVCTL, &kvd.endpoint, args, &mut kvd_lease);
        let mut want = want;
        if args.contains(&"member") || args.contains(&"endpoint") {
            for (r, server) in [(&mut want, &etcd), (&mut got, &kvd)] {
                r.stdout = mask_took(&r.stdout);
                r.stderr = mask_took(&r.stderr);
                r.stdout = mask_member(&r.stdout, server);
                r.stderr = mask_member(&r.stderr, server);
                if args.contains(&"status") {
                    r.stdout = mask_status(&r.stdout);
                }
            }
        }
        if args == &["put", "a", "1"] {
            assert_eq!(want.stdout, "OK\n", "etcdctl did not run: {want:?}");
        }
        if want != got {
            failures.push(format!("etcdctl: {want:#?}\nkvctl:   {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn mask_took_masks_only_durations() {
    assert_eq!(
        mask_took("127.0.0.1:P took = 1.01217ms, 20µs 2s x1s"),
        "127.0.0.1:P took = <T>, <T> <T> x1s"
    );
}

#[test]
fn version_prints_etcdctl_shape() {
    let out = Command::new(KVCTL).arg("version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "kvctl version: {}\nAPI version: 3.5\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn endpoints_env_fallback_and_connection_failure() {
    // No server on this port: a request fails with exit 1 and "Error: ...".
    let port = free_port();
    let out = Command::new(KVCTL)
        .env_remove("KVCTL_ENDPOINTS")
        .env("ETCDCTL_ENDPOINTS", format!("127.0.0.1:{port}"))
        .args(["--dial-timeout", "200ms", "--command-timeout", "500ms"])
        .args(["get", "a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("Error: "), "{err}");
    assert!(out.stdout.is_empty());

    // endpoint health reports the dead endpoint and fails the cluster.
    let out = Command::new(KVCTL)
        .env_remove("KVCTL_ENDPOINTS")
        .env_remove("ETCDCTL_ENDPOINTS")
        .args(["--endpoints", &format!("127.0.0.1:{port}")])
        .args(["--dial-timeout", "200ms", "--command-timeout", "500ms"])
        .args(["endpoint", "health"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "127.0.0.1:{port} is unhealthy: failed to commit proposal: "
        )),
        "{err}"
    );
    assert!(err.ends_with("Error: unhealthy cluster\n"), "{err}");
}

/// An endpoint nobody listens on: etcdctl retries until the command
/// deadline and reports it; kvctl must print the same `Error:` text and
/// exit code (etcdctl's JSON retry log lines are dropped by [`mask`]).
#[test]
fn dead_endpoint_matches_etcdctl() {
    let dead = format!("127.0.0.1:{}", free_port());
    let timeouts = ["--dial-timeout=1s", "--command-timeout=2s"];
    let steps: [&[&str]; 3] = [
        &["get", "foo"],
        &["put", "foo", "bar"],
        &["endpoint", "health"],
    ];
    let mut failures = Vec::new();
    for step in steps {
        let args: Vec<&str> = timeouts.iter().chain(step).copied().collect();
        let want = run(ETCDCTL, &dead, &args, &mut None);
        let got = run(KVCTL, &dead, &args, &mut None);
        assert_ne!(want.code, 0, "etcdctl reached {dead}: {want:?}");
        assert!(want.stderr.contains("Error: "), "{want:?}");
        if want != got {
            failures.push(format!("etcdctl: {want:#?}\nkvctl:   {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
