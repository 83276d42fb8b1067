//! Parity of `endpoint status|health|hashkv --cluster` and `move-leader`:
//! the same steps with `kvctl` against kvd and `/usr/bin/etcdctl` against
//! etcd 3.4, comparing exit codes, stdout and stderr (member IDs, ports,
//! timings, sizes and hashes masked).

mod common;

use common::*;

const SCRIPT: &[&[&str]] = &[
    &["endpoint", "status", "--cluster"],
    &["-w", "table", "endpoint", "--cluster", "status"],
    &["-w", "json", "endpoint", "status", "--cluster"],
    &["endpoint", "health", "--cluster"],
    &["-w", "json", "endpoint", "--cluster", "health"],
    &["-w", "table", "endpoint", "health", "--cluster"],
    &["endpoint", "hashkv", "--cluster"],
    &["-w", "table", "endpoint", "hashkv", "--cluster"],
    &["move-leader"],
    &["move-leader", "zz"],
    &["move-leader", "0x1"],
    &["move-leader", "1", "2"],
    &["move-leader", "1"],
    &["move-leader", "$ID"],
    &["-w", "json", "move-leader", "$ID"],
    &["-w", "table", "move-leader", "$ID"],
    &["-w", "fields", "move-leader", "1"],
    &["mov", "$ID"],
    // `m` is ambiguous in both; etcdctl also suggests make-mirror and
    // migrate, which kvctl does not have (not compared).
];

/// The member's own ID (hex), from `endpoint status`.
fn member_id(bin: &str, server: &Server) -> String {
    let out = std::process::Command::new(bin)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .args(["--endpoints", &server.endpoint, "endpoint", "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = text.split(", ").nth(1).unwrap_or_default().to_string();
    assert!(id.len() >= 12, "no member ID in {text:?}");
    id
}

#[test]
fn endpoint_cluster_and_move_leader_match_etcdctl() {
    let etcd = start(std::path::Path::new(ETCD));
    let kvd = start(&kvd_bin());
    let ids = (member_id(ETCDCTL, &etcd), member_id(KVCTL, &kvd));
    let mut failures = Vec::new();
    for args in SCRIPT {
        let side = |bin: &str, server: &Server, id: &str| {
            let args: Vec<&str> = args
                .iter()
                .map(|a| if *a == "$ID" { id } else { a })
                .collect();
            let mut r = run(bin, &server.endpoint, &args, &mut None);
            r.args = r.args.replace(id, "$ID");
            for s in [&mut r.stdout, &mut r.stderr] {
                *s = mask_member(&mask_took(s), server).replace("etcdctl", "kvctl");
                if args.contains(&"status") || args.contains(&"hashkv") {
                    *s = mask_status(s);
                }
            }
            r
        };
        let want = side(ETCDCTL, &etcd, &ids.0);
        let got = side(KVCTL, &kvd, &ids.1);
        if args == &["move-leader", "$ID"] {
            assert_eq!(want.code, 0, "etcdctl did not run: {want:?}");
        }
        if want != got {
            failures.push(format!("etcdctl: {want:#?}\nkvctl:   {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
