//! `check perf`: its argument and precondition errors byte for byte
//! against etcdctl 3.4 on etcd, and one full (60 s) run with
//! `--auto-compact --auto-defrag` against kvd beside etcdctl's against etcd:
//! the compaction and defragmentation lines must be etcdctl's, the verdict
//! lines must have etcdctl's shape and agree with the exit code (the
//! verdict itself depends on the machine's load, so either is fine), and no
//! key may be left behind.

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

/// Runs `check perf --auto-compact --auto-defrag` with `bin` against
/// `endpoint` and returns its output.
fn perf_run(bin: &'static str, endpoint: String) -> std::thread::JoinHandle<std::process::Output> {
    std::thread::spawn(move || {
        output_bounded(
            Command::new(bin).args(["--endpoints", &endpoint]).args([
                "check",
                "perf",
                "--prefix=/perf/",
                "--auto-compact",
                "--auto-defrag",
            ]),
            std::time::Duration::from_secs(180),
        )
    })
}

/// The output's lines without etcdctl's progress bar, with the endpoint
/// shown as `EP`. The bar (` 12 / 60   20.00% 00m48s`) is redrawn after
/// `\r`, and its goroutine may draw it last just before, or just after, a
/// line of the check's own, with no line break between them.
fn lines(stdout: &[u8], endpoint: &str) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .split(['\r', '\n'])
        .map(strip_bar)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.replace(endpoint, "EP"))
        .collect()
}

/// `seg` without a leading progress bar (`N / M  P.PP%` and an optional
/// ETA such as `00m03s` or `1m0s`).
fn strip_bar(seg: &str) -> &str {
    let t = seg.trim_start();
    let Some(pct) = t.find('%') else { return seg };
    let head = &t[..pct];
    let bar = head.contains(" / ")
        && head
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '/' || c == '.');
    if !bar {
        return seg;
    }
    let rest = &t[pct + 1..];
    match rest.strip_prefix(' ') {
        Some(r) => r.trim_start_matches(|c: char| c.is_ascii_digit() || "hms".contains(c)),
        None => rest,
    }
}

#[test]
fn strip_bar_keeps_the_checks_lines() {
    let out = b" 59 / 60   98.33% 00m01s\r 60 / 60  100.00% 1m0sCompacting with revision 7\n\
        Compacted with revision 7\r 60 / 60  100.00% 1m0s\nDefragmenting \"127.0.0.1:1\"\n";
    let want = [
        "Compacting with revision 7",
        "Compacted with revision 7",
        "Defragmenting \"EP\"",
    ];
    assert_eq!(lines(out, "127.0.0.1:1"), want);
}

/// The revision in `Compacting with revision N`.
fn compact_rev(line: &str) -> i64 {
    let n = line.strip_prefix("Compacting with revision ");
    n.and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a compaction line: {line:?}"))
}

#[test]
fn check_perf_runs_and_judges_like_etcdctl() {
    let etcd = start(std::path::Path::new(ETCD));
    let kvd = start(&kvd_bin());
    // Both run at once: the 60 s load is the same for each.
    let want = perf_run(ETCDCTL, etcd.endpoint.clone());
    let got = perf_run(KVCTL, kvd.endpoint.clone());
    let (want, got) = (want.join().unwrap(), got.join().unwrap());
    let want_lines = lines(&want.stdout, &etcd.endpoint);
    let got_lines = lines(&got.stdout, &kvd.endpoint);
    let stdout = got_lines.join("\n");
    let stderr = String::from_utf8_lossy(&got.stderr).into_owned();
    // etcdctl's raw ending too, to see how its progress bar interleaved.
    let raw = String::from_utf8_lossy(&want.stdout);
    let start = raw.char_indices().rev().nth(399).map_or(0, |(i, _)| i);
    let raw_tail = &raw[start..];
    let context = format!(
        "etcdctl:\n{}\nkvctl:\n{stdout}\n{stderr}\netcdctl raw ending: {raw_tail:?}",
        want_lines.join("\n")
    );
    assert_eq!(want_lines.len(), 8, "{context}");
    assert_eq!(got_lines.len(), 8, "{context}");
    // The epilogue, line for line as etcdctl's once the revision (which
    // depends on how many puts each server took) is set aside.
    let (want_rev, got_rev) = (compact_rev(&want_lines[0]), compact_rev(&got_lines[0]));
    assert_eq!(
        want_lines[1],
        format!("Compacted with revision {want_rev}"),
        "{context}"
    );
    let epilogue = |l: &[String], rev: i64| -> Vec<String> {
        l[..4]
            .iter()
            .map(|s| s.replace(&rev.to_string(), "N"))
            .collect()
    };
    assert_eq!(
        epilogue(&got_lines, got_rev),
        epilogue(&want_lines, want_rev),
        "{context}"
    );
    let lines = &got_lines;
    let throughput = &lines[4];
    assert!(
        throughput.starts_with("PASS: Throughput is ")
            || throughput.starts_with("FAIL: Throughput too low: "),
        "{context}"
    );
    assert!(throughput.ends_with(" writes/s"), "{context}");
    assert!(
        lines[5].starts_with("PASS: Slowest request took ")
            || lines[5].starts_with("Slowest request took too long: "),
        "{context}"
    );
    assert!(
        lines[6].starts_with("PASS: Stddev is ") || lines[6].starts_with("Stddev too high: "),
        "{context}"
    );
    let all_pass = lines[4..7].iter().all(|l| l.starts_with("PASS: "));
    let verdict = if all_pass {
        ("PASS", Some(0))
    } else {
        ("FAIL", Some(1))
    };
    assert_eq!((lines[7].as_str(), got.status.code()), verdict, "{context}");
    assert!(stderr.is_empty(), "{stderr}");
    // The load wrote keys (the revision moved) and took them all away.
    assert!(got_rev > 100, "{context}");
    let left = Command::new(KVCTL)
        .args(["--endpoints", &kvd.endpoint])
        .args(["get", "/perf/", "--prefix", "--keys-only"])
        .output()
        .unwrap();
    assert!(left.status.success());
    assert!(left.stdout.is_empty(), "keys left behind");
    // The compaction was done: the revision before it is gone.
    let old = Command::new(KVCTL)
        .args(["--endpoints", &kvd.endpoint])
        .args([
            "get",
            "/perf/",
            "--prefix",
            "--rev",
            &(got_rev - 1).to_string(),
        ])
        .output()
        .unwrap();
    let old_err = String::from_utf8_lossy(&old.stderr);
    assert!(
        old_err.contains("required revision has been compacted"),
        "{old_err}"
    );
}
