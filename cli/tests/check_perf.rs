//! `check perf`: its argument and precondition errors byte for byte
//! against etcdctl 3.4 on etcd, and one full (60 s) run against kvd whose
//! verdict lines must have etcdctl's shape and agree with the exit code
//! (the verdict itself depends on the machine's load, so either is fine),
//! leaving no key behind.

mod common;

use std::process::Command;

use common::*;

const STEPS: &[&[&str]] = &[
    &["check", "perf", "--load=x"],
    &["check", "perf", "--load=x", "extra"],
    &["check", "perf", "--prefix=/p/", "--load=q"],
    &["put", "/etcdctl-check-perf/x", "1"],
    &["check", "perf"],
    &["-w", "json", "check", "perf", "--load=small"],
    &["del", "/etcdctl-check-perf/x"],
];

#[test]
fn check_perf_errors_match_etcdctl() {
    let etcd = start(std::path::Path::new(ETCD));
    let kvd = start(&kvd_bin());
    let mut failures = Vec::new();
    for args in STEPS {
        let want = run(ETCDCTL, &etcd.endpoint, args, &mut None);
        let got = run(KVCTL, &kvd.endpoint, args, &mut None);
        if want != got {
            failures.push(format!("etcdctl: {want:#?}\nkvctl:   {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn check_perf_runs_and_judges_against_kvd() {
    let kvd = start(&kvd_bin());
    let out = output_bounded(
        Command::new(KVCTL)
            .args(["--endpoints", &kvd.endpoint])
            .args(["check", "perf", "--prefix=/perf/", "--auto-compact"]),
        std::time::Duration::from_secs(180),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    // No progress bar: stdout is not a terminal.
    assert_eq!(lines.len(), 5, "{stdout}\n{stderr}");
    assert!(lines[0].starts_with("compacted revision "), "{stdout}");
    let throughput = lines[1];
    assert!(
        throughput.starts_with("PASS: Throughput is ")
            || throughput.starts_with("FAIL: Throughput too low: "),
        "{stdout}"
    );
    assert!(throughput.ends_with(" writes/s"), "{stdout}");
    assert!(
        lines[2].starts_with("PASS: Slowest request took ")
            || lines[2].starts_with("Slowest request took too long: "),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("PASS: Stddev is ") || lines[3].starts_with("Stddev too high: "),
        "{stdout}"
    );
    let all_pass = lines[1..4].iter().all(|l| l.starts_with("PASS: "));
    if all_pass {
        assert_eq!((lines[4], out.status.code()), ("PASS", Some(0)), "{stdout}");
    } else {
        assert_eq!((lines[4], out.status.code()), ("FAIL", Some(1)), "{stdout}");
    }
    assert!(stderr.is_empty(), "{stderr}");
    // The load wrote keys (the revision moved) and took them all away.
    let rev: i64 = lines[0]["compacted revision ".len()..].parse().unwrap();
    assert!(rev > 100, "{stdout}");
    let left = Command::new(KVCTL)
        .args(["--endpoints", &kvd.endpoint])
        .args(["get", "/perf/", "--prefix", "--keys-only"])
        .output()
        .unwrap();
    assert!(left.status.success());
    assert!(left.stdout.is_empty(), "keys left behind");
}
