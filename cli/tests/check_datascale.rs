//! `check datascale`: its argument and precondition errors byte for byte
//! against etcdctl 3.4 on etcd, and one `--load small` run against kvd
//! whose lines must be etcdctl's (the memory figure itself depends on the
//! machine), leaving no key behind. etcdctl also draws a progress bar on
//! stdout when it is not a terminal; kvctl draws one only on a terminal.

mod common;

use std::process::Command;

use common::*;

const STEPS: &[&[&str]] = &[
    &["check", "datascale", "--load=x"],
    &["check", "datascale", "--load=huge", "extra"],
    &["put", "/etcdctl-check-datascale/x", "1"],
    &["check", "datascale"],
    &["check", "datascale", "--prefix=/etcdctl-check-datascale/"],
    &["del", "/etcdctl-check-datascale/x"],
];

#[test]
fn check_datascale_errors_match_etcdctl() {
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
fn check_datascale_small_runs_against_kvd() {
    let kvd = start(&kvd_bin());
    let out = output_bounded(
        Command::new(KVCTL)
            .args(["--endpoints", &kvd.endpoint])
            .args(["check", "datascale", "--load", "small", "--prefix=/ds/"])
            .args(["--auto-compact", "--auto-defrag"]),
        std::time::Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    // No progress bar: stdout is not a terminal.
    assert_eq!(lines.len(), 6, "{stdout}");
    assert_eq!(
        lines[0],
        "Start data scale check for work load [10000 key-value pairs, 1024 bytes per key-value, 50 concurrent clients]."
    );
    let rev = lines[1]
        .strip_prefix("Compacting with revision ")
        .expect(&stdout);
    // The 10000 puts and the delete moved the revision past 10000.
    assert!(rev.parse::<i64>().unwrap() > 10_000, "{stdout}");
    assert_eq!(lines[2], format!("Compacted with revision {rev}"));
    assert_eq!(lines[3], format!("Defragmenting \"{}\"", kvd.endpoint));
    assert_eq!(lines[4], format!("Defragmented \"{}\"", kvd.endpoint));
    let mb = lines[5]
        .strip_prefix("PASS: Approximate system memory used : ")
        .and_then(|l| l.strip_suffix(" MB."))
        .expect(&stdout);
    // Go's FormatFloat(mb, 'f', 2, 64): two decimals (the figure can be
    // negative if the server gave memory back).
    let (int, frac) = mb.split_once('.').expect(&stdout);
    assert!(int.trim_start_matches('-').parse::<u64>().is_ok(), "{mb}");
    assert_eq!(frac.len(), 2, "{mb}");
    let left = Command::new(KVCTL)
        .args(["--endpoints", &kvd.endpoint])
        .args(["get", "/ds/", "--prefix", "--keys-only"])
        .output()
        .unwrap();
    assert!(left.status.success());
    assert!(left.stdout.is_empty(), "keys left behind");
}
