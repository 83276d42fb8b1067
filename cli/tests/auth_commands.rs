//! `auth`, `user` and `role`: the same steps with our `kvctl` and with
//! `/usr/bin/etcdctl` (3.4), comparing stdout, stderr and exit codes byte
//! for byte (cluster/member IDs and raft terms masked). Auth is enabled
//! along the way; a root user, a read-only role and a prefix role are
//! exercised through `--user`.
//!
//! etcdctl 3.4 runs against etcd 3.4 and kvctl against a second etcd 3.4
//! (so the commands are checked on their own); then etcdctl 3.4 runs
//! against the newest etcd and kvctl against kvd (so the server is checked
//! too, against the behaviour kvd follows). `auth status` is newer than
//! etcdctl 3.4 and etcd 3.4: it is compared with the newest etcdctl
//! against the newest etcd.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// One scripted command: its arguments and what it reads on stdin (none:
/// /dev/null).
struct Step(&'static [&'static str], Option<&'static str>);

const ROOT: &str = "--user=root:rootpw";

/// The script. Passwords: root `rootpw`, alice `alicepw` (role `ro`: read
/// everything), erin `erinpw2` after `passwd` (role `pre`: read-write on
/// `app/` and `foo`).
const SCRIPT: &[Step] = &[
    Step(&["user", "list"], None),
    Step(&["-w", "json", "user", "list"], None),
    Step(&["role", "list"], None),
    Step(&["auth", "enable"], None),
    Step(&["auth", "enable", "extra"], None),
    Step(&["auth", "disable", "extra"], None),
    // user add: every way of giving the password.
    Step(&["user", "add", "root:rootpw"], None),
    Step(&["user", "add", "root:other"], None),
    Step(&["user", "add", ":pw"], None),
    Step(&["user", "add"], None),
    Step(&["user", "add", "a", "b"], None),
    Step(
        &["user", "add", "alice", "--interactive=false"],
        Some("alicepw extra\n"),
    ),
    Step(&["user", "add", "bob"], Some("bobpw\nbobpw\n")),
    Step(&["user", "add", "carol"], Some("one\ntwo\n")),
    Step(&["user", "add", "dave"], None),
    Step(&["user", "add", "erin", "--new-user-password=erinpw"], None),
    Step(&["-w", "json", "user", "add", "frank:pw"], None),
    Step(&["-w", "fields", "user", "add", "gina:pw"], None),
    Step(&["-w", "table", "user", "add", "hank:pw"], None),
    Step(&["user", "add", "nopw", "--no-password"], None),
    Step(&["user", "list"], None),
    Step(&["-w", "json", "user", "list"], None),
    Step(&["-w", "fields", "user", "list"], None),
    Step(&["-w", "table", "user", "list"], None),
    Step(&["user", "list", "x"], None),
    // Roles and permissions.
    Step(&["role", "add", "ro"], None),
    Step(&["role", "add", "pre"], None),
    Step(&["role", "add", "ro"], None),
    Step(&["role", "add"], None),
    Step(&["-w", "json", "role", "add", "x1"], None),
    Step(&["-w", "fields", "role", "add", "x2"], None),
    Step(
        &["role", "grant-permission", "ro", "read", "", "--prefix"],
        None,
    ),
    Step(
        &[
            "role",
            "grant-permission",
            "pre",
            "readwrite",
            "app/",
            "--prefix",
        ],
        None,
    ),
    Step(
        &["role", "grant-permission", "pre", "READWRITE", "foo"],
        None,
    ),
    Step(
        &["role", "grant-permission", "pre", "write", "a", "z"],
        None,
    ),
    Step(
        &[
            "-w",
            "json",
            "role",
            "grant-permission",
            "pre",
            "read",
            "k",
            "--from-key",
        ],
        None,
    ),
    Step(
        &["-w", "fields", "role", "grant-permission", "x1", "read", ""],
        None,
    ),
    Step(&["role", "grant-permission", "pre", "bogus", "k"], None),
    Step(&["role", "grant-permission", "pre", "read"], None),
    Step(
        &[
            "role",
            "grant-permission",
            "pre",
            "read",
            "a",
            "b",
            "--prefix",
        ],
        None,
    ),
    Step(
        &[
            "role",
            "grant-permission",
            "pre",
            "read",
            "a",
            "b",
            "--from-key",
        ],
        None,
    ),
    Step(
        &[
            "role",
            "grant-permission",
            "pre",
            "read",
            "a",
            "--prefix",
            "--from-key",
        ],
        None,
    ),
    Step(&["role", "grant-permission", "missing", "read", "a"], None),
    Step(&["role", "get", "ro"], None),
    Step(&["role", "get", "pre"], None),
    Step(&["role", "get", "x1"], None),
    Step(&["-w", "json", "role", "get", "pre"], None),
    Step(&["-w", "fields", "role", "get", "pre"], None),
    Step(&["-w", "table", "role", "get", "pre"], None),
    Step(&["role", "get", "missing"], None),
    Step(&["role", "get"], None),
    Step(&["role", "list"], None),
    Step(&["-w", "json", "role", "list"], None),
    Step(&["-w", "fields", "role", "list"], None),
    // Users and roles.
    Step(&["user", "grant-role", "alice", "ro"], None),
    Step(&["user", "grant-role", "erin", "pre"], None),
    Step(&["user", "grant-role", "erin", "x1"], None),
    Step(&["-w", "json", "user", "grant-role", "bob", "ro"], None),
    Step(&["user", "grant-role", "missing", "ro"], None),
    Step(&["user", "grant-role", "alice", "missing"], None),
    Step(&["user", "grant-role", "alice"], None),
    Step(&["user", "get", "alice"], None),
    Step(&["user", "get", "nopw"], None),
    Step(&["-w", "json", "user", "get", "erin"], None),
    Step(&["-w", "fields", "user", "get", "erin"], None),
    Step(&["user", "get", "erin", "--detail"], None),
    Step(&["-w", "json", "user", "get", "erin", "--detail"], None),
    Step(&["-w", "fields", "user", "get", "erin", "--detail"], None),
    Step(&["-w", "table", "user", "get", "erin", "--detail"], None),
    Step(&["user", "get", "missing"], None),
    Step(&["user", "get"], None),
    Step(
        &["user", "passwd", "erin", "--interactive=false"],
        Some("erinpw2\n"),
    ),
    Step(
        &["-w", "json", "user", "passwd", "bob", "--interactive=false"],
        Some("bobpw\n"),
    ),
    Step(
        &["user", "passwd", "missing", "--interactive=false"],
        Some("pw\n"),
    ),
    Step(&["user", "passwd"], None),
    // Auth on: etcdctl creates the root role for the root user itself.
    Step(&["auth", "enable"], None),
    Step(&["auth", "enable"], None),
    Step(&["user", "list"], None),
    Step(&[ROOT, "auth", "enable"], None),
    Step(&[ROOT, "user", "list"], None),
    Step(&["--user=root", "--password=rootpw", "role", "list"], None),
    Step(&["--user=root:wrong", "user", "list"], None),
    Step(&["--user=root", "user", "list"], Some("rootpw\n")),
    Step(
        &["--user=root", "--password=", "role", "list"],
        Some("rootpw\n"),
    ),
    Step(&["--user=root", "role", "list"], None),
    Step(
        &["--user=root:rootpw", "--password=rootpw", "role", "list"],
        None,
    ),
    Step(&[ROOT, "user", "get", "root"], None),
    Step(&[ROOT, "role", "get", "root"], None),
    Step(&[ROOT, "put", "app/1", "v1"], None),
    Step(&[ROOT, "put", "other", "o"], None),
    // The read-only role.
    Step(&["--user=alice:alicepw", "get", "other"], None),
    Step(&["--user=alice:alicepw", "get", "app/", "--prefix"], None),
    Step(&["--user=alice:alicepw", "put", "other", "x"], None),
    Step(&["--user=alice:alicepw", "user", "list"], None),
    Step(&["--user=alice:alicepw", "user", "get", "alice"], None),
    Step(&["--user=alice:alicepw", "auth", "disable"], None),
    // The prefix role, with its new password only.
    Step(&["--user=erin:erinpw", "get", "foo"], None),
    Step(&["--user=erin:erinpw2", "put", "app/2", "v2"], None),
    Step(&["--user=erin:erinpw2", "get", "app/", "--prefix"], None),
    Step(&["--user=erin:erinpw2", "put", "foo", "f"], None),
    Step(&["--user=erin:erinpw2", "put", "other", "x"], None),
    Step(&["--user=erin:erinpw2", "get", "other"], None),
    Step(&["--user=nopw:", "get", "other"], None),
    // Revocations take effect at once.
    Step(
        &[ROOT, "role", "revoke-permission", "pre", "app/", "--prefix"],
        None,
    ),
    Step(&["--user=erin:erinpw2", "put", "app/3", "v3"], None),
    Step(
        &[ROOT, "role", "revoke-permission", "pre", "app/", "--prefix"],
        None,
    ),
    Step(&[ROOT, "role", "revoke-permission", "pre", "a", "z"], None),
    Step(
        &[
            ROOT,
            "-w",
            "json",
            "role",
            "revoke-permission",
            "pre",
            "k",
            "--from-key",
        ],
        None,
    ),
    Step(
        &[
            ROOT,
            "-w",
            "fields",
            "role",
            "revoke-permission",
            "pre",
            "foo",
        ],
        None,
    ),
    Step(
        &[ROOT, "role", "revoke-permission", "ro", "", "--prefix"],
        None,
    ),
    Step(&[ROOT, "role", "revoke-permission", "x1", ""], None),
    Step(&[ROOT, "role", "revoke-permission", "pre"], None),
    Step(
        &[
            ROOT,
            "role",
            "revoke-permission",
            "pre",
            "a",
            "b",
            "--prefix",
        ],
        None,
    ),
    Step(&[ROOT, "role", "get", "pre"], None),
    Step(&[ROOT, "user", "revoke-role", "alice", "ro"], None),
    Step(&[ROOT, "user", "revoke-role", "alice", "ro"], None),
    Step(
        &[ROOT, "-w", "json", "user", "revoke-role", "bob", "ro"],
        None,
    ),
    Step(&[ROOT, "user", "revoke-role", "alice"], None),
    Step(&["--user=alice:alicepw", "get", "other"], None),
    // Deletions.
    Step(&[ROOT, "user", "delete", "hank"], None),
    Step(&[ROOT, "user", "delete", "hank"], None),
    Step(&[ROOT, "-w", "fields", "user", "delete", "gina"], None),
    Step(&[ROOT, "-w", "json", "user", "delete", "frank"], None),
    Step(&[ROOT, "user", "delete"], None),
    Step(&[ROOT, "role", "delete", "x2"], None),
    Step(&[ROOT, "role", "delete", "x2"], None),
    Step(&[ROOT, "-w", "json", "role", "delete", "x1"], None),
    Step(&[ROOT, "user", "get", "erin"], None),
    Step(&[ROOT, "role", "delete"], None),
    // Auth off, on again (the root role exists now), off.
    Step(&[ROOT, "-w", "json", "auth", "disable"], None),
    Step(&["user", "list"], None),
    Step(&["auth", "disable"], None),
    Step(&["-w", "fields", "auth", "enable"], None),
    Step(&[ROOT, "auth", "disable"], None),
    Step(&["role", "list"], None),
];

/// Runs [`SCRIPT`] with etcdctl against `reference` and kvctl against
/// `subject`; returns every difference.
fn compare(reference: &Server, subject: &Server) -> Vec<String> {
    let mut failures = Vec::new();
    for Step(args, stdin) in SCRIPT {
        let want = run_with_stdin(ETCDCTL, &reference.endpoint, args, *stdin, &mut None);
        let got = run_with_stdin(KVCTL, &subject.endpoint, args, *stdin, &mut None);
        if want != got {
            failures.push(format!("etcdctl: {want:#?}\nkvctl:   {got:#?}"));
        }
    }
    failures
}

#[test]
fn auth_commands_match_etcdctl_on_etcd() {
    let reference = start(Path::new(ETCD));
    let subject = start(Path::new(ETCD));
    let failures = compare(&reference, &subject);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// kvd against the newest etcd: kvd follows etcd 3.5+ where the server's
/// answer changed since 3.4 (`role get root` lists the root role's
/// implicit read-write permission on every key), so the reference server
/// here is the newest etcd, still driven by etcdctl 3.4.
#[test]
fn auth_commands_match_etcdctl_on_kvd() {
    let reference = start(&latest_etcd_dir().join("etcd"));
    let subject = start(&kvd_bin());
    let failures = compare(&reference, &subject);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The newest etcd and etcdctl, built (or found built) by
/// `scripts/etcd-latest.sh`.
fn latest_etcd_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/etcd-latest.sh"))
        .current_dir(&root)
        .output()
        .expect("run scripts/etcd-latest.sh");
    assert!(out.status.success(), "etcd-latest.sh: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or("").trim())
}

/// `auth status` (etcdctl 3.5+) in every format, before and after
/// `auth enable`, against the newest etcd.
#[test]
fn auth_status_matches_newest_etcdctl() {
    let dir = latest_etcd_dir();
    let etcdctl = dir.join("etcdctl").display().to_string();
    let reference = start(&dir.join("etcd"));
    let subject = start(&dir.join("etcd"));
    let steps: &[&[&str]] = &[
        &["auth", "status"],
        &["-w", "json", "auth", "status"],
        &["-w", "fields", "auth", "status"],
        &["-w", "table", "auth", "status"],
        &["auth", "status", "x"],
        &["user", "add", "root:rootpw"],
        &["auth", "enable"],
        &[ROOT, "auth", "status"],
        &[ROOT, "-w", "json", "auth", "status"],
        &["auth", "status"],
    ];
    let mut failures = Vec::new();
    for args in steps {
        let want = run(&etcdctl, &reference.endpoint, args, &mut None);
        let got = run(KVCTL, &subject.endpoint, args, &mut None);
        if want != got {
            failures.push(format!("etcdctl: {want:#?}\nkvctl:   {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
