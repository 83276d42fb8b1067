//! Parity of the commands beyond plain KV (txn, watch, lease keep-alive,
//! member changes, snapshot, defrag, alarm disarm, endpoint hashkv/status):
//! the same script with `kvctl` against kvd and `/usr/bin/etcdctl` against
//! etcd 3.4, comparing exit codes, stdout and stderr (IDs, ports, hashes
//! and timings masked).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// One step: arguments, and stdin for the commands that read it.
type Step = (&'static [&'static str], Option<&'static str>);

const TXN_SCRIPT: &[Step] = &[
    (&["put", "a", "1"], None),
    (&["txn"], Some("value(\"a\") = \"1\"\n\nput b 2\nget a\ndel zz\n\nget zz\n\n")),
    (&["-w", "json", "txn"], Some("value(\"a\") = \"1\"\n\nput b 3 --prev-kv\nget a\n\n\n")),
    (&["-w", "fields", "txn"], Some("value(\"a\") = \"1\"\n\nput b 4\nget a\ndel zz\n\nget zz\n\n")),
    (&["txn"], Some("value(\"a\") = \"2\"\n\nput b 2\n\nget a\nput c 3 --prev-kv\n\n")),
    (&["txn", "-i"], Some("mod(\"a\") > \"5\"\nversion(\"a\") = \"1\"\ncreate(\"a\") != \"0\"\n\nget a\n\nget b\n\n")),
    (&["txn", "--interactive"], Some("c(\"zz\") = \"0\"\n\nput zz 1\n\n\n")),
    (&["txn"], Some("\nget \"a b\"\nget a --prefix --limit=1\n\n\n")),
    (&["-w", "table", "txn"], Some("\n\n\n")),
    (&["txn"], Some("bad\n\n\n\n")),
    (&["txn"], Some("value(\"a\") = 1\n\n\n\n")),
    (&["txn"], Some("value(\"a\" = \"1\"\n\n\n\n")),
    (&["txn"], Some("mod(\"a\") > \"x\"\n\n\n\n")),
    (&["txn"], Some("foo(\"a\") = \"1\"\n\n\n\n")),
    (&["txn"], Some("value(\"a\") = \"1\"\n\nbogus x\n\n\n")),
    (&["txn"], Some("value(\"a\") = \"1\"\n\nput x\n\n\n")),
    (&["txn"], Some("\nput x y --lease=zz\n\n\n")),
    (&["txn"], Some("\nget\n\n\n")),
    (&["txn"], Some("")),
    (&["txn"], Some("\n\nget a")),
    (&["txn", "x"], Some("\n\n\n")),
    (&["--hex", "txn"], Some("\nput a 1 --prev-kv\nget a\n\n\n")),
    (&["--hex", "get", "a"], None),
];

const SCRIPT: &[Step] = &[
    (&["lease", "grant", "60"], None),
    (&["lease", "keep-alive", "--once", "$L"], None),
    (&["-w", "json", "lease", "keep-alive", "--once", "$L"], None),
    (
        &["-w", "fields", "lease", "keep-alive", "--once", "$L"],
        None,
    ),
    (
        &["-w", "table", "lease", "keep-alive", "--once", "$L"],
        None,
    ),
    (&["-w", "fields", "lease", "timetolive", "$L"], None),
    (&["-w", "json", "lease", "timetolive", "$L"], None),
    (&["lease", "revoke", "$L"], None),
    (&["lease", "keep-alive", "--once", "$L"], None),
    (&["lease", "keep-alive", "$L"], None),
    (&["-w", "json", "lease", "keep-alive", "$L"], None),
    (&["lease", "keep-alive"], None),
    (&["lease", "keep-alive", "zz"], None),
    (&["-w", "json", "lease", "grant", "60"], None),
    (&["-w", "fields", "lease", "grant", "60"], None),
    (&["-w", "json", "lease", "revoke", "$L"], None),
    (&["-w", "json", "lease", "timetolive", "$L"], None),
    (&["lease", "grant", "100"], None),
    // One key: etcd lists a lease's keys in Go map order (random).
    (&["put", "lk1", "v", "--lease=$L"], None),
    (
        &["-w", "fields", "lease", "timetolive", "$L", "--keys"],
        None,
    ),
    (&["-w", "json", "lease", "timetolive", "$L", "--keys"], None),
    (&["compaction", "2"], None),
    (&["watch", "--rev=1", "lk1"], None),
    (&["member", "add"], None),
    (&["member", "add", "x"], None),
    (&["member", "remove"], None),
    (&["member", "remove", "zz"], None),
    (&["member", "remove", "1234"], None),
    (&["member", "update"], None),
    (&["member", "update", "1234"], None),
    (&["member", "update", "zz", "--peer-urls=http://a:1"], None),
    (
        &["member", "update", "1234", "--peer-urls=http://127.0.0.1:1"],
        None,
    ),
    (&["member", "promote"], None),
    (&["member", "promote", "zz"], None),
    (&["member", "promote", "1234"], None),
    // A learner that never starts: added, updated and removed (promotion
    // needs it to catch up, so only its refusal could be compared).
    (
        &[
            "member",
            "add",
            "x",
            "--peer-urls=http://127.0.0.1:9",
            "--learner",
        ],
        None,
    ),
    (
        &["member", "update", "$M", "--peer-urls=http://127.0.0.1:10"],
        None,
    ),
    (&["member", "remove", "$M"], None),
    (&["member", "remove", "$M"], None),
    (&["defrag"], None),
    (&["-w", "json", "defrag"], None),
    (&["defrag", "--cluster"], None),
    (&["alarm", "disarm"], None),
    (&["-w", "json", "alarm", "disarm"], None),
    (&["alarm", "disarm", "x"], None),
    // kvd hashes an empty keyspace to 0 where etcd hashes its bucket name:
    // give both a key so the (masked) hash is present in the JSON.
    (&["put", "h", "1"], None),
    (&["endpoint", "hashkv"], None),
    (&["-w", "json", "endpoint", "hashkv"], None),
    (&["-w", "table", "endpoint", "hashkv"], None),
    (&["-w", "fields", "endpoint", "hashkv"], None),
    (&["-w", "json", "endpoint", "status"], None),
    (&["-w", "fields", "endpoint", "status"], None),
    (&["snapshot", "save"], None),
    (&["snapshot", "save", "a", "b"], None),
    (&["snapshot", "save", "/nonexistent-dir/x.db"], None),
    (&["watch"], None),
    (&["watch", "a", "b", "--prefix"], None),
    (&["watch", "--", "echo", "hi"], None),
    (&["watch", "-i"], Some("bogus\nwatch\n")),
    (
        &["watch", "-i"],
        Some("watch a b --prefix\nwatch a --bogus\n"),
    ),
    (&["watch", "-i"], Some("watch a --rev=x\n")),
    (&["watch", "-i"], Some("watch w/x\n")),
];

/// Masks every digit run (hashes, sizes, indexes legitimately differ).
fn mask_digits(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('N') {
                out.push('N');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The hex ID in `Member <id> added to cluster <id>` (empty if none).
fn added_member(stdout: &str) -> String {
    stdout
        .strip_prefix("Member ")
        .and_then(|r| r.split(" added").next())
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// `ETCD_INITIAL_CLUSTER` lists members in ID order, and IDs are random:
/// sort its entries so both sides list them alike.
fn sort_initial_cluster(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        match line
            .strip_prefix("ETCD_INITIAL_CLUSTER=\"")
            .and_then(|l| l.strip_suffix('"'))
        {
            Some(list) => {
                let mut parts: Vec<&str> = list.split(',').collect();
                parts.sort();
                out.push_str(&format!("ETCD_INITIAL_CLUSTER=\"{}\"", parts.join(",")));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn compare(script: &[Step]) {
    let etcd = start(std::path::Path::new(ETCD));
    let kvd = start(&kvd_bin());
    let mut failures = Vec::new();
    let (mut etcd_lease, mut kvd_lease) = (None, None);
    let (mut etcd_member, mut kvd_member) = (String::new(), String::new());
    for (args, stdin) in script {
        let ea: Vec<&str> = args
            .iter()
            .map(|a| if *a == "$M" { etcd_member.as_str() } else { a })
            .collect();
        let ka: Vec<&str> = args
            .iter()
            .map(|a| if *a == "$M" { kvd_member.as_str() } else { a })
            .collect();
        let mut want = run_with_stdin(ETCDCTL, &etcd.endpoint, &ea, *stdin, &mut etcd_lease);
        let mut got = run_with_stdin(KVCTL, &kvd.endpoint, &ka, *stdin, &mut kvd_lease);
        if args.starts_with(&["member", "add"]) {
            etcd_member = added_member(&want.stdout);
            kvd_member = added_member(&got.stdout);
        }
        for (r, server) in [(&mut want, &etcd), (&mut got, &kvd)] {
            r.args = args.join(" ");
            for s in [&mut r.stdout, &mut r.stderr] {
                let mut t = mask_member(&sort_initial_cluster(s), server);
                if args.contains(&"hashkv") || args.contains(&"status") {
                    t = mask_digits(&t);
                }
                if args.contains(&"keep-alive") || args.contains(&"lease") {
                    // `%016x` pads IDs: kvd's may have fewer hex digits.
                    while t.contains("0<L>") {
                        t = t.replace("0<L>", "<L>");
                    }
                    t = mask_number_after(&mask_number_after(&t, "TTL("), "\"TTL\":");
                    t = mask_number_after(&mask_number_after(&t, "\"ttl\":"), "\"TTL\" : ");
                    t = mask_number_after(&mask_number_after(&t, "\"ID\":"), "\"ID\" : ");
                    t = mask_number_after(&t, "\"id\":");
                }
                *s = t;
            }
        }
        if want != got {
            failures.push(format!("etcdctl: {want:#?}\nkvctl:   {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn txn_matches_etcdctl() {
    compare(TXN_SCRIPT);
}

#[test]
fn maintenance_lease_member_match_etcdctl() {
    compare(SCRIPT);
}

/// `snapshot save` writes the file and says so; etcdctl's own log lines
/// (JSON on stderr) are masked by the harness.
#[test]
fn snapshot_save_matches_etcdctl() {
    let etcd = start(std::path::Path::new(ETCD));
    let kvd = start(&kvd_bin());
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (bin, server, name) in [(ETCDCTL, &etcd, "etcd.db"), (KVCTL, &kvd, "kvd.db")] {
        let path = dir.path().join(name);
        let p = path.to_str().unwrap();
        let mut r = run(bin, &server.endpoint, &["snapshot", "save", p], &mut None);
        assert!(path.metadata().unwrap().len() > 0, "{name} is empty");
        assert!(!dir.path().join(format!("{name}.part")).exists());
        r.stdout = r.stdout.replace(p, "<FILE>");
        r.args = String::new();
        runs.push(r);
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[1].stdout, "Snapshot saved at <FILE>\n");
}

/// The store's current revision, from a JSON `get` header.
fn current_revision(bin: &str, server: &Server) -> i64 {
    let out = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &server.endpoint, "-w", "json", "get", "x"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let i = s.find("\"revision\":").unwrap() + "\"revision\":".len();
    s[i..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Runs `watch ARGS --rev=<next revision>` in the background, makes
/// changes, waits (bounded) until the last one (value `end`, shown as
/// `end_marker`) is printed, stops the watcher and returns its stdout.
/// Starting at an explicit revision makes the output independent of when
/// the watch is established.
fn watch_output(bin: &str, server: &Server, args: &[&str], end_marker: &str) -> String {
    let ctl = |a: &[&str]| {
        let st = Command::new(bin)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &server.endpoint])
            .args(a)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{a:?}");
    };
    let rev = format!("--rev={}", current_revision(bin, server) + 1);
    ctl(&["put", "w/1", "a"]);
    ctl(&["put", "w/1", "b"]);
    ctl(&["put", "w/2", "c"]);
    ctl(&["del", "w/1"]);
    ctl(&["put", "w/1", "end"]);
    let mut child = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &server.endpoint])
        .args(args.iter().flat_map(|a| {
            // --rev goes right after `watch`, before any `-- CMD`.
            let extra = (*a == "watch").then_some(rev.as_str());
            std::iter::once(*a).chain(extra)
        }))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while !(String::from_utf8_lossy(&out).contains(end_marker) && out.ends_with(b"\n")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => out.extend(chunk),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    while let Ok(chunk) = rx.try_recv() {
        out.extend(chunk);
    }
    // The last event may end with more lines after the marker.
    String::from_utf8_lossy(&out).into_owned()
}

/// The command `watch ... -- sh -c EXEC` runs for each event.
const EXEC: &str =
    "echo K=$ETCD_WATCH_KEY V=$ETCD_WATCH_VALUE R=$ETCD_WATCH_REVISION T=$ETCD_WATCH_EVENT_TYPE";

#[test]
fn watch_matches_etcdctl() {
    let etcd = start(std::path::Path::new(ETCD));
    let kvd = start(&kvd_bin());
    for (args, marker) in [
        (&["watch", "w/", "--prefix", "--prev-kv"][..], "end\n"),
        (&["-w", "json", "watch", "w/", "--prefix"], "ZW5k"),
        (
            &["-w", "fields", "watch", "w/1", "--prev-kv"],
            "\"Value\" : \"end\"\n\"Lease\" : 0\n",
        ),
        (&["watch", "w/1", "w/3"], "end\n"),
        (&["--hex", "watch", "w/2"], "\\x63\n"),
        (&["watch", "w/1", "--", "sh", "-c", EXEC], "V=\"end\" "),
    ] {
        // The exec'd command prints the revision: mask it.
        let want = mask_number_after(&mask(&watch_output(ETCDCTL, &etcd, args, marker)), "R=");
        let got = mask_number_after(&mask(&watch_output(KVCTL, &kvd, args, marker)), "R=");
        assert!(
            want.contains("PUT") || want.contains("Events"),
            "{args:?}: {want}"
        );
        assert_eq!(want, got, "{args:?}");
    }
}

/// `lease keep-alive` (not `--once`) prints renewals until the lease is
/// revoked elsewhere, then says so and exits 0. Renewals come at a pace set
/// by each client, so repeated identical lines are collapsed.
#[test]
fn keep_alive_until_revoked_matches_etcdctl() {
    let etcd = start(std::path::Path::new(ETCD));
    let kvd = start(&kvd_bin());
    let mut outs = Vec::new();
    for (bin, server) in [(ETCDCTL, &etcd), (KVCTL, &kvd)] {
        let ctl = |a: &[&str]| {
            let out = Command::new(bin)
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &server.endpoint])
                .args(a)
                .output()
                .unwrap();
            assert!(out.status.success(), "{a:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let id = ctl(&["lease", "grant", "6"])
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string();
        let mut child = Command::new(bin)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &server.endpoint, "lease", "keep-alive", &id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
        ctl(&["lease", "revoke", &id]);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let status = child.wait().unwrap();
        let mut lines: Vec<String> = format!("{first}{rest}")
            .replace(&format!("{:0>16}", id), "<ID>")
            .lines()
            .map(|l| mask_number_after(l, "TTL("))
            .collect();
        lines.dedup();
        outs.push((status.code(), lines));
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[1].1.last().unwrap(), "lease <ID> expired or revoked.");
}
