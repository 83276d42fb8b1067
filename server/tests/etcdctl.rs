//! Scripted etcdctl (Debian's 3.4) sessions against etcd and kvd: every
//! step's exit code, stdout and stderr are checked (expected text from
//! etcd) and, with volatile ids masked, compared between the two servers.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Output;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Replaces the volatile parts of etcdctl output.
struct Masker {
    literals: Vec<(String, String)>,
}

impl Masker {
    fn new(srv: &Server) -> Masker {
        Masker {
            literals: vec![
                (srv.endpoint(), "<client-url>".into()),
                (srv.peer_url(), "<peer-url>".into()),
            ],
        }
    }

    fn add(&mut self, literal: impl Into<String>, mask: &str) {
        let literal = literal.into();
        if !literal.is_empty() {
            self.literals.push((literal, mask.to_string()));
        }
    }

    fn text(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (lit, mask) in &self.literals {
            s = s.replace(lit.as_str(), mask);
        }
        // remaining(NNs) in lease timetolive output
        s = mask_between(&s, "remaining(", "s)", "*");
        // took = 1.23ms in endpoint health output
        s = mask_between(&s, "took = ", "\n", "*");
        // zap log lines of the client on stderr
        s = mask_between(&s, "\"ts\":\"", "\"", "*");
        s = mask_between(&s, "\"target\":\"", "\"", "*");
        s
    }

    /// Parses JSON output and masks the fields that legitimately differ
    /// between servers (ids, raft term/index, sizes, version).
    fn json(&self, s: &str) -> String {
        let mut v: Value = serde_json::from_str(s.trim())
            .unwrap_or_else(|e| panic!("etcdctl printed invalid JSON ({e}): {s}"));
        mask_json(&mut v);
        self.text(&v.to_string())
    }
}

fn mask_between(s: &str, start: &str, end: &str, mask: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(start) {
        let after = i + start.len();
        match rest[after..].find(end) {
            Some(j) => {
                out.push_str(&rest[..after]);
                out.push_str(mask);
                rest = &rest[after + j..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

const VOLATILE_JSON: &[&str] = &[
    "cluster_id",
    "member_id",
    "raft_term",
    "leader",
    "raftIndex",
    "raftTerm",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "version",
    "ID",
    "id",
    "ttl",
    "TTL",
];

fn mask_json(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if VOLATILE_JSON.contains(&k.as_str()) && !val.is_object() && !val.is_array() {
                    *val = Value::String(format!("<{k}>"));
                } else {
                    mask_json(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(mask_json),
        _ => {}
    }
}

/// One etcdctl step's result, checked and recorded.
struct Session<'a> {
    kind: Kind,
    srv: &'a Server,
    masker: Masker,
    transcript: Vec<String>,
}

impl<'a> Session<'a> {
    fn new(kind: Kind, srv: &'a Server) -> Self {
        Session {
            kind,
            srv,
            masker: Masker::new(srv),
            transcript: Vec::new(),
        }
    }

    fn raw(&mut self, args: &[&str], input: &str) -> Output {
        self.srv.etcdctl_stdin(args, input)
    }

    /// Runs a step; `want` is the expected stdout after masking (None: only
    /// recorded for the comparison); stderr must be empty on success.
    #[track_caller]
    fn step(&mut self, args: &[&str], input: &str, want: Option<&str>) -> String {
        let out = self.raw(args, input);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let kind = self.kind;
        assert_eq!(
            out.status.code(),
            Some(0),
            "[{kind}] etcdctl {args:?} failed: stdout {stdout:?} stderr {stderr:?}"
        );
        assert_eq!(stderr, "", "[{kind}] etcdctl {args:?} stderr");
        let is_json = args.contains(&"-w=json");
        let masked = if is_json {
            self.masker.json(&stdout)
        } else {
            self.masker.text(&stdout)
        };
        if let Some(want) = want {
            assert_eq!(masked, want, "[{kind}] etcdctl {args:?} stdout (masked)");
        }
        let cmd = self.masker.text(&args.join(" "));
        self.transcript.push(format!("$ etcdctl {cmd}\n{masked}"));
        stdout
    }

    /// A step that must fail with exit code `code` and this last stderr line.
    #[track_caller]
    fn fail(&mut self, args: &[&str], input: &str, code: i32, last_line: &str) {
        let out = self.raw(args, input);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let kind = self.kind;
        assert_eq!(
            (out.status.code(), stderr.lines().last()),
            (Some(code), Some(last_line)),
            "[{kind}] etcdctl {args:?}: stdout {stdout:?} stderr {stderr:?}"
        );
        self.transcript.push(format!(
            "$ etcdctl {} -> {code}\n{}{}",
            self.masker.text(&args.join(" ")),
            self.masker.text(&stdout),
            self.masker.text(&stderr)
        ));
    }
}

#[tokio::test]
async fn kv_session() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut s = Session::new(kind, &srv);
        s.step(&["put", "foo", "bar"], "", Some("OK\n"));
        s.step(&["put", "foo/a", "1"], "", Some("OK\n"));
        s.step(&["put", "foo/b", "2"], "", Some("OK\n"));
        s.step(&["put", "zed", "last"], "", Some("OK\n"));
        s.step(&["put", "foo", "baz", "--prev-kv"], "", Some("OK\nfoo\nbar\n"));
        s.step(&["get", "foo"], "", Some("foo\nbaz\n"));
        s.step(&["get", "nothing"], "", Some(""));
        s.step(&["get", "foo", "--prefix"], "", Some("foo\nbaz\nfoo/a\n1\nfoo/b\n2\n"));
        s.step(&["get", "foo", "--prefix", "--keys-only"], "", Some("foo\n\nfoo/a\n\nfoo/b\n\n"));
        s.step(&["get", "foo", "--prefix", "--print-value-only"], "", Some("baz\n1\n2\n"));
        s.step(&["get", "foo/a", "zed"], "", Some("foo/a\n1\nfoo/b\n2\n"));
        s.step(&["get", "foo/b", "--from-key"], "", Some("foo/b\n2\nzed\nlast\n"));
        s.step(
            &["get", "foo", "--prefix", "--sort-by=VALUE", "--order=DESCEND"],
            "",
            Some("foo\nbaz\nfoo/b\n2\nfoo/a\n1\n"),
        );
        s.step(&["get", "foo", "--prefix", "--limit=1"], "", Some("foo\nbaz\n"));
        s.step(&["get", "foo", "--rev=2"], "", Some("foo\nbar\n"));
        s.step(&["get", "foo", "--consistency=s"], "", Some("foo\nbaz\n"));
        s.step(
            &["get", "foo", "-w=json"],
            "",
            Some(
                "{\"count\":1,\"header\":{\"cluster_id\":\"<cluster_id>\",\"member_id\":\"<member_id>\",\
                 \"raft_term\":\"<raft_term>\",\"revision\":6},\"kvs\":[{\"create_revision\":2,\
                 \"key\":\"Zm9v\",\"mod_revision\":6,\"value\":\"YmF6\",\"version\":\"<version>\"}]}",
            ),
        );
        s.step(
            &["get", "foo", "--prefix", "--limit=2", "-w=json"],
            "",
            Some(
                "{\"count\":3,\"header\":{\"cluster_id\":\"<cluster_id>\",\"member_id\":\"<member_id>\",\
                 \"raft_term\":\"<raft_term>\",\"revision\":6},\"kvs\":[{\"create_revision\":2,\
                 \"key\":\"Zm9v\",\"mod_revision\":6,\"value\":\"YmF6\",\"version\":\"<version>\"},\
                 {\"create_revision\":3,\"key\":\"Zm9vL2E=\",\"mod_revision\":3,\"value\":\"MQ==\",\
                 \"version\":\"<version>\"}],\"more\":true}",
            ),
        );
        s.step(&["del", "foo/a"], "", Some("1\n"));
        s.step(&["del", "foo/a"], "", Some("0\n"));
        s.step(&["del", "foo", "--prefix", "--prev-kv"], "", Some("2\nfoo\nbaz\nfoo/b\n2\n"));
        s.step(&["put", "t", "1"], "", Some("OK\n"));
        // txn from stdin: compares, blank, success ops, blank, failure ops.
        let txn = "value(\"t\") = \"1\"\n\nput t 2\nget t\ndel zed\n\nput t failed\n\n";
        s.step(&["txn"], txn, Some("SUCCESS\n\nOK\n\nt\n2\n\n1\n"));
        s.step(&["txn"], txn, Some("FAILURE\n\nOK\n"));
        s.step(&["get", "t"], "", Some("t\nfailed\n"));
        let txn2 = "mod(\"t\") > \"0\"\nversion(\"t\") = \"3\"\ncreate(\"t\") < \"1000\"\n\nget t\n\n\n";
        s.step(&["txn", "-w=json"], txn2, None);
        s.step(&["compaction", "5"], "", Some("compacted revision 5\n"));
        s.fail(
            &["get", "foo", "--rev=3"],
            "",
            1,
            "Error: etcdserver: mvcc: required revision has been compacted",
        );
        s.step(&["get", "t", "--rev=5"], "", Some(""));
        s.step(&["get", "", "--prefix", "--keys-only"], "", Some("t\n\n"));
        s.transcript
    })
    .await;
}

/// Extracts the hex lease id from `lease <id> granted with TTL(..s)`.
fn lease_id_of(grant_stdout: &str) -> String {
    grant_stdout
        .strip_prefix("lease ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected lease grant output {grant_stdout:?}"))
        .to_string()
}

#[tokio::test]
async fn lease_cluster_and_maintenance_session() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let member_id = c.status().await.unwrap().leader();
        let mut s = Session::new(kind, &srv);
        s.masker.add(format!("{member_id:x}"), "<member>");

        let out = s.raw(&["lease", "grant", "60"], "");
        let grant = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "[{kind}] lease grant: {grant}");
        let id = lease_id_of(&grant);
        assert_eq!(
            grant,
            format!("lease {id} granted with TTL(60s)\n"),
            "[{kind}]"
        );
        s.masker.add(id.clone(), "<lease>");
        s.step(
            &["put", "lk", "v", &format!("--lease={id}")],
            "",
            Some("OK\n"),
        );
        s.step(&["lease", "list"], "", Some("found 1 leases\n<lease>\n"));
        s.step(
            &["lease", "timetolive", &id],
            "",
            Some("lease <lease> granted with TTL(60s), remaining(*s)\n"),
        );
        s.step(
            &["lease", "timetolive", &id, "--keys"],
            "",
            Some("lease <lease> granted with TTL(60s), remaining(*s), attached keys([lk])\n"),
        );
        s.step(
            &["lease", "keep-alive", "--once", &id],
            "",
            Some("lease <lease> keepalived with TTL(60)\n"),
        );
        s.step(
            &["lease", "revoke", &id],
            "",
            Some("lease <lease> revoked\n"),
        );
        s.step(&["get", "lk"], "", Some(""));
        s.step(
            &["lease", "timetolive", &id],
            "",
            Some("lease <lease> already expired\n"),
        );
        s.step(&["lease", "list"], "", Some("found 0 leases\n"));

        s.step(
            &["member", "list"],
            "",
            Some("<member>, started, n1, <peer-url>, <client-url>, false\n"),
        );
        s.step(&["member", "list", "-w=json"], "", None);
        // endpoint health reports on stderr.
        let out = s.raw(&["endpoint", "health"], "");
        let health = s.masker.text(&String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            (out.status.code(), health.as_str(), out.stdout.len()),
            (
                Some(0),
                "<client-url> is healthy: successfully committed proposal: took = *\n",
                0
            ),
            "[{kind}] endpoint health"
        );
        s.transcript.push(health);
        let st = s.step(&["endpoint", "status", "-w=json"], "", None);
        let v: Value = serde_json::from_str(st.trim()).unwrap();
        let status = &v[0]["Status"];
        assert_eq!(
            v[0]["Endpoint"],
            srv.endpoint(),
            "[{kind}] endpoint status endpoint"
        );
        assert_eq!(
            status["leader"], status["header"]["member_id"],
            "[{kind}] leader == member"
        );
        assert_eq!(
            status["header"]["revision"], 3,
            "[{kind}] endpoint status revision"
        );
        assert!(
            status["dbSize"].as_i64().unwrap_or(0) > 0,
            "[{kind}] dbSize {status}"
        );
        assert!(
            status["raftIndex"].as_u64().unwrap_or(0) > 0,
            "[{kind}] raftIndex {status}"
        );
        assert!(!status["version"].as_str().unwrap_or("").is_empty());
        s.step(&["alarm", "list"], "", Some(""));
        s.step(
            &["defrag"],
            "",
            Some("Finished defragmenting etcd member[<client-url>]\n"),
        );
        let out = s.raw(&["endpoint", "hashkv"], "");
        let hk = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && hk.starts_with(&format!("{}, ", srv.endpoint())),
            "[{kind}] hashkv {hk:?}"
        );
        s.transcript
    })
    .await;
}

/// Reads lines from a running `etcdctl watch` until `n` lines or a deadline.
fn read_lines(child: &mut std::process::Child, n: usize, timeout: Duration) -> Vec<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    while lines.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
    lines
}

#[tokio::test]
async fn watch_session() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        c.put("w/a", "1", None).await.unwrap(); // 2
        c.put("w/b", "2", None).await.unwrap(); // 3
        c.put("w/a", "3", None).await.unwrap(); // 4
        c.delete("w/b", None).await.unwrap(); // 5

        // Replay from revision 2 plus live events, with prev values.
        let mut child = srv.etcdctl_spawn(&["watch", "w/", "--prefix", "--rev=2", "--prev-kv"]);
        // Live events: the watch may not be registered yet, but the replay
        // from revision 2 covers them either way.
        c.put("w/c", "4", None).await.unwrap(); // 6
        c.put("other", "x", None).await.unwrap(); // 7
        c.delete("w/a", None).await.unwrap(); // 8
        let lines = read_lines(&mut child, 24, Duration::from_secs(15));
        let _ = child.kill();
        let _ = child.wait();
        let want = [
            "PUT", "w/a", "1", //
            "PUT", "w/b", "2", //
            "PUT", "w/a", "1", "w/a", "3", //
            "DELETE", "w/b", "2", "w/b", "", //
            "PUT", "w/c", "4", //
            "DELETE", "w/a", "3", "w/a", "",
        ];
        assert_eq!(lines, want, "[{kind}] etcdctl watch output");

        // JSON output of a single-key watch from history.
        let mut child = srv.etcdctl_spawn(&["watch", "w/c", "--rev=1", "-w=json"]);
        let lines = read_lines(&mut child, 1, Duration::from_secs(15));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(lines.len(), 1, "[{kind}] watch -w json output {lines:?}");
        let masker = Masker::new(&srv);
        let masked = masker.json(&lines[0]);
        assert!(
            masked.contains("\"Events\":[{\"kv\":{\"create_revision\":6,\"key\":\"dy9j\",\"mod_revision\":6,\"value\":\"NA==\",\"version\":\"<version>\"}}]"),
            "[{kind}] watch json {masked}"
        );
        vec![lines_to_string(&want), masked]
    })
    .await;
}

fn lines_to_string(lines: &[&str]) -> String {
    lines.join("\n")
}
