//! Parity of the `ETCDCTL_*` environment variables for the global flags:
//! the same steps with `kvctl` against kvd and `/usr/bin/etcdctl` against
//! etcd 3.4, comparing exit codes, stdout and stderr byte for byte, except
//! where etcdctl reports through its internal logger: its timestamped
//! `C | pkg/flags: X` line is kvctl's `Error: X`, its `W | pkg/flags:
//! unrecognized environment variable K=V` is kvctl's `Warning:
//! unrecognized environment variable K (ignored)` (documented in kvctl's
//! help).

mod common;

use std::process::Command;

use common::*;

/// One step: environment (`$E` is the server's endpoint) and arguments.
type Step = (
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

const E: (&str, &str) = ("ETCDCTL_ENDPOINTS", "$E");

const SCRIPT: &[Step] = &[
    (&[E], &["put", "a", "1"]),
    (&[E], &["get", "a"]),
    (&[E], &["--endpoints", "$E", "get", "a"]),
    (&[E], &["get", "a", "--endpoints=$E"]),
    (&[E, ("ETCDCTL_WRITE_OUT", "json")], &["get", "a"]),
    (&[E, ("ETCDCTL_WRITE_OUT", "fields")], &["put", "a", "2"]),
    (
        &[E, ("ETCDCTL_WRITE_OUT", "json")],
        &["-w", "simple", "get", "a"],
    ),
    (&[E, ("ETCDCTL_WRITE_OUT", "yaml")], &["get", "a"]),
    (&[E, ("ETCDCTL_HEX", "true")], &["get", "a"]),
    (&[E, ("ETCDCTL_HEX", "false")], &["get", "a"]),
    (&[E, ("ETCDCTL_HEX", "1")], &["--hex", "get", "a"]),
    (&[E, ("ETCDCTL_FOO", "1")], &["get", "a"]),
    (&[E, ("ETCDCTL_PREFIX", "true")], &["get", "a"]),
    (
        &[
            E,
            ("ETCDCTL_DIAL_TIMEOUT", "3s"),
            ("ETCDCTL_COMMAND_TIMEOUT", "4s"),
        ],
        &["get", "a"],
    ),
    (
        &[E, ("ETCDCTL_DIAL_TIMEOUT", "3s")],
        &["--dial-timeout=3s", "get", "a"],
    ),
    (
        &[E, ("ETCDCTL_COMMAND_TIMEOUT", "3s")],
        &["--command-timeout", "3s", "get", "a"],
    ),
    (
        &[E, ("ETCDCTL_USER", "root:pw")],
        &["--user=root:pw", "get", "a"],
    ),
    (
        &[E, ("ETCDCTL_PASSWORD", "pw")],
        &["--password=pw", "get", "a"],
    ),
    (&[E, ("ETCDCTL_CACERT", "/x")], &["--cacert=/x", "get", "a"]),
    (&[E, ("ETCDCTL_CERT", "/x")], &["--cert=/x", "get", "a"]),
    (&[E, ("ETCDCTL_KEY", "/x")], &["--key=/x", "get", "a"]),
    (
        &[E, ("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true")],
        &["--insecure-skip-tls-verify", "get", "a"],
    ),
    // An empty variable is unset (etcdctl also warns about it; kvctl does not).
    (
        &[("ETCDCTL_WRITE_OUT", "")],
        &["--endpoints=$E", "get", "a"],
    ),
    // Set through the variable alone.
    (&[E, ("ETCDCTL_WRITE_OUT", "json")], &["mem", "list"]),
];

/// etcdctl's logger line, rewritten as kvctl prints the same report.
fn unlog(stderr: &str) -> String {
    let mut out = String::new();
    for line in stderr.lines() {
        let l = match line.split_once(" | pkg/flags: ") {
            Some((head, msg)) if head.ends_with(" C") => format!("Error: {msg}"),
            Some((head, msg)) if head.ends_with(" W") => match msg
                .strip_prefix("unrecognized environment variable ")
                .and_then(|kv| kv.split_once('='))
            {
                Some((k, v)) if !v.is_empty() => {
                    format!("Warning: unrecognized environment variable {k} (ignored)")
                }
                // etcdctl also "does not recognize" an empty known variable.
                Some(_) => continue,
                None => line.to_string(),
            },
            _ => line.to_string(),
        };
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn side(bin: &str, server: &Server, step: &Step) -> Run {
    let (vars, args) = step;
    let fill = |s: &str| s.replace("$E", &server.endpoint);
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("ETCDCTL_") || k.starts_with("KVCTL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("ETCDCTL_API", "3");
    for (k, v) in vars.iter() {
        cmd.env(k, fill(v));
    }
    let args: Vec<String> = args.iter().map(|a| fill(a)).collect();
    let out = output_bounded(cmd.args(&args), STEP_TIMEOUT);
    let masked = |b: &[u8]| {
        mask_member(&mask(&String::from_utf8_lossy(b)), server).replace("etcdctl", "kvctl")
    };
    Run {
        args: format!(
            "{vars:?} {}",
            args.join(" ").replace(&server.endpoint, "$E")
        ),
        code: out.status.code().unwrap_or(-1),
        stdout: masked(&out.stdout),
        stderr: unlog(&masked(&out.stderr)),
    }
}

#[test]
fn etcdctl_env_vars_match_etcdctl() {
    let etcd = start(std::path::Path::new(ETCD));
    let kvd = start(&kvd_bin());
    let mut failures = Vec::new();
    for step in SCRIPT {
        let want = side(ETCDCTL, &etcd, step);
        let got = side(KVCTL, &kvd, step);
        if step.1 == ["put", "a", "1"] {
            assert_eq!(want.stdout, "OK\n", "etcdctl did not run: {want:?}");
        }
        if want != got {
            failures.push(format!("etcdctl: {want:#?}\nkvctl:   {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// etcdctl silently ignores a variable its flag cannot take (and uses the
/// default); kvctl refuses it, naming the variable.
#[test]
fn bad_env_values_are_refused() {
    let kvd = start(&kvd_bin());
    for (k, v, why) in [
        ("ETCDCTL_HEX", "maybe", "invalid syntax"),
        ("ETCDCTL_DIAL_TIMEOUT", "abc", "time: invalid duration"),
        ("ETCDCTL_COMMAND_TIMEOUT", "5", "time: invalid duration"),
    ] {
        let out = Command::new(KVCTL)
            .env_remove("KVCTL_ENDPOINTS")
            .env("ETCDCTL_ENDPOINTS", &kvd.endpoint)
            .env(k, v)
            .args(["get", "a"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(128), "{k}={v}");
        assert!(out.stdout.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("Error: invalid value \"{v}\" for {k}: {why}\n")
        );
    }
}
