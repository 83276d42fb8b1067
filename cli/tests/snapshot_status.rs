//! `kvctl snapshot status FILE` against etcdctl 3.4 on the same files: a
//! snapshot etcd 3.4 saved (every output format), a copy whose SHA-256
//! trailer was damaged (etcdctl 3.4 does not check it), a file that is no
//! database, a missing file and missing arguments. Output and exit codes
//! must be byte-identical.

mod common;

use std::process::Command;

use common::{output_bounded, start, ETCD, ETCDCTL, KVCTL, STEP_TIMEOUT};

fn status(bin: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(bin);
    cmd.env("ETCDCTL_API", "3")
        .arg("snapshot")
        .arg("status")
        .args(args);
    let out = output_bounded(&mut cmd, STEP_TIMEOUT);
    format!(
        "{args:?} rc={} out={:?} err={:?}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn snapshot_status_matches_etcdctl() {
    let etcd = start(std::path::Path::new(ETCD));
    let dir = tempfile::tempdir().unwrap();
    let file = |n: &str| dir.path().join(n).display().to_string();
    let ctl = |args: &[&str]| {
        let mut cmd = Command::new(ETCDCTL);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", etcd.endpoint))
            .args(args);
        let out = output_bounded(&mut cmd, STEP_TIMEOUT);
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
    };
    for i in 0..50 {
        ctl(&["put", &format!("k{i}"), &"v".repeat(i * 20)]);
    }
    ctl(&["del", "k7"]);
    ctl(&["lease", "grant", "600"]);
    ctl(&["snapshot", "save", &file("s.db")]);
    // A damaged trailer: the database pages are intact.
    let mut bytes = std::fs::read(file("s.db")).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(file("bad-trailer.db"), &bytes).unwrap();
    std::fs::write(file("garbage.db"), b"not a bbolt file at all\n").unwrap();

    let s = file("s.db");
    let bad = file("bad-trailer.db");
    let garbage = file("garbage.db");
    let missing = file("missing.db");
    let cases: Vec<Vec<&str>> = vec![
        vec![&s],
        vec![&s, "-w", "table"],
        vec![&s, "-w", "json"],
        vec![&s, "-w", "fields"],
        vec![&s, "-w", "simple"],
        vec![&bad, "-w", "json"],
        vec![&garbage],
        vec![&missing],
        vec![],
        vec![&s, &s],
    ];
    let mut differ = Vec::new();
    for c in &cases {
        let (k, e) = (status(KVCTL, c), status(ETCDCTL, c));
        eprintln!("kvctl:   {k}\netcdctl: {e}");
        if k != e {
            differ.push(format!("kvctl:   {k}\netcdctl: {e}"));
        }
    }
    assert!(differ.is_empty(), "differences:\n{}", differ.join("\n"));
}
