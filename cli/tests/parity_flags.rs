//! Parity of command-name prefixes (cobra's prefix matching and its
//! "unknown command" error) and of the `get`/`put`/`del` flags scripts use:
//! the same steps with `kvctl` against kvd and `/usr/bin/etcdctl` against
//! etcd 3.4, comparing exit codes, stdout and stderr byte for byte (the
//! program's own name in cobra's messages aside).

mod common;

use std::process::Command;

use common::*;

/// One step: arguments, and stdin for the commands that read it.
type Step = (&'static [&'static str], Option<&'static str>);

const SCRIPT: &[Step] = &[
    // Unique prefixes, at the top level and below.
    (&["pu", "a", "1"], None),
    (&["ge", "a"], None),
    (&["compact", "1"], None),
    (&["mem", "l"], None),
    (&["-w", "json", "mem", "li"], None),
    (&["--endpoints", "$E", "al", "li"], None),
    (&["en", "status", "-w", "table"], None),
    (&["lea", "gra", "60"], None),
    (&["tx"], Some("\nget a\n\n\n")),
    // Ambiguous or unknown: cobra's error, its suggestions, exit 1.
    (&["e", "status"], None),
    (&["de", "a"], None),
    (&["x"], None),
    (&["zzz", "a"], None),
    (&["GE", "a"], None),
    // put: the value from stdin, --ignore-value, --ignore-lease.
    (&["put", "s1"], Some("from stdin\nline2\n")),
    (&["get", "s1"], None),
    (&["-w", "json", "get", "s1"], None),
    (&["put", "s2"], Some("")),
    (&["put", "s1", "--ignore-value"], Some("ignored")),
    (
        &["-w", "json", "put", "s1", "--ignore-value", "--prev-kv"],
        None,
    ),
    (&["get", "s1"], None),
    (&["put", "nokey", "--ignore-value"], None),
    (&["put", "s1", "v", "--ignore-value"], None),
    (&["put", "--ignore-value"], None),
    (&["put", "s1", "--ignore-value", "--lease=zz"], None),
    (&["lease", "grant", "60"], None),
    (&["put", "lk", "v", "--lease=$L"], None),
    (&["put", "lk", "w", "--ignore-lease"], None),
    (&["-w", "json", "get", "lk"], None),
    (&["put", "lk", "--ignore-lease"], Some("x")),
    (&["put", "lk", "w", "--ignore-lease", "--lease=$L"], None),
    (&["put", "nolk", "w", "--ignore-lease"], None),
    (&["put", "a", "b", "c"], None),
    // get: --consistency and the checks made once the answer is in.
    (&["get", "a", "--consistency=s"], None),
    (&["-w", "json", "get", "a", "--consistency=l"], None),
    (&["get", "a", "--consistency=x"], None),
    (&["get", "a", "--consistency=S", "--order=bad"], None),
    (&["get", "--consistency=x"], None),
    (&["-w", "json", "get", "a", "--print-value-only"], None),
    (&["-w", "fields", "get", "a", "--print-value-only"], None),
    (&["get", "", "--from-key", "--keys-only", "--limit=2"], None),
    (
        &["get", "", "--prefix", "--sort-by=CREATE", "--order=descend"],
        None,
    ),
    // del: --prev-kv, --from-key.
    (&["-w", "json", "del", "s", "--from-key", "--prev-kv"], None),
    (&["get", "", "--prefix", "--keys-only"], None),
];

#[test]
fn prefixes_and_kv_flags_match_etcdctl() {
    let etcd = start(std::path::Path::new(ETCD));
    let kvd = start(&kvd_bin());
    let mut failures = Vec::new();
    let (mut etcd_lease, mut kvd_lease) = (None, None);
    for (args, stdin) in SCRIPT {
        let side = |bin: &str, server: &Server, lease: &mut Option<String>| {
            let args: Vec<&str> = args
                .iter()
                .map(|a| {
                    if *a == "$E" {
                        server.endpoint.as_str()
                    } else {
                        a
                    }
                })
                .collect();
            let mut r = run_with_stdin(bin, &server.endpoint, &args, *stdin, lease);
            for s in [&mut r.stdout, &mut r.stderr] {
                *s = mask_member(s, server).replace("etcdctl", "kvctl");
                if args.contains(&"status") {
                    *s = mask_status(s);
                }
            }
            r.args = r.args.replace(&server.endpoint, "$E");
            r
        };
        let want = side(ETCDCTL, &etcd, &mut etcd_lease);
        let got = side(KVCTL, &kvd, &mut kvd_lease);
        if args == &["pu", "a", "1"] {
            assert_eq!(want.stdout, "OK\n", "etcdctl did not run: {want:?}");
        }
        if want != got {
            failures.push(format!("etcdctl: {want:#?}\nkvctl:   {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `get --count-only` is etcdctl 3.5's (3.4 has no such flag), so it is
/// checked against kvd alone: only with `-w fields`, never with
/// `--keys-only`, and the count is the number of keys in the range.
#[test]
fn count_only_against_kvd() {
    let kvd = start(&kvd_bin());
    let ctl = |args: &[&str]| {
        let out = Command::new(KVCTL)
            .args(["--endpoints", &kvd.endpoint])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for k in ["c/1", "c/2", "c/3"] {
        assert_eq!(ctl(&["put", k, "v"]).0, Some(0));
    }
    let (code, out, err) = ctl(&["-w", "fields", "get", "c/", "--prefix", "--count-only"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"Count\" : 3\n"), "{out}");
    assert!(!out.contains("\"Key\""), "{out}");
    let (code, out, err) = ctl(&["get", "c/", "--prefix", "--count-only"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            Some(128),
            "",
            "Error: --count-only is only for `--write-out=fields`\n"
        )
    );
    let (code, _, err) = ctl(&["get", "c/", "--prefix", "--count-only", "--keys-only"]);
    assert_eq!(code, Some(128));
    assert_eq!(
        err,
        "Error: `--keys-only` and `--count-only` cannot be set at the same time, choose one\n"
    );
}
