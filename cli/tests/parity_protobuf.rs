//! Parity of `-w protobuf` with etcdctl 3.4.
//!
//! The output is raw protobuf, and the header's cluster ID, member ID and
//! raft term differ between any two clusters, so outputs are compared two
//! ways:
//! - the same script runs with etcdctl on one server and with kvctl on a
//!   second server of the same kind (etcd 3.4, then kvd); each output is
//!   decoded as the message etcdctl marshals, must be the canonical
//!   encoding of it, and is compared byte for byte once the three header
//!   fields are zeroed (revisions, keys, values, counts must all agree);
//! - at the end, read-only commands run with both tools against the same
//!   server and their raw bytes must be identical (`member list` too).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kv_proto::etcdserverpb::{
    AlarmResponse, AuthRoleAddResponse, AuthRoleDeleteResponse, AuthRoleGetResponse,
    AuthRoleGrantPermissionResponse, AuthRoleListResponse, AuthRoleRevokePermissionResponse,
    AuthUserAddResponse, AuthUserDeleteResponse, AuthUserGetResponse, AuthUserGrantRoleResponse,
    AuthUserListResponse, AuthUserRevokeRoleResponse, DeleteRangeResponse, PutResponse,
    RangeResponse, ResponseHeader, TxnResponse, WatchResponse,
};
use prost::Message;

/// Decodes one output and returns its canonical bytes with the header's
/// cluster-specific fields zeroed.
type Decoder = fn(&[u8]) -> Vec<u8>;

fn zero(h: &mut ResponseHeader) {
    h.cluster_id = 0;
    h.member_id = 0;
    h.raft_term = 0;
}

macro_rules! decoders {
    ($($name:ident: $t:ty),* $(,)?) => {$(
        fn $name(b: &[u8]) -> Vec<u8> {
            let mut m = <$t>::decode(b)
                .unwrap_or_else(|e| panic!("not a {}: {e}: {b:?}", stringify!($t)));
            assert_eq!(m.encode_to_vec(), b, "not the canonical encoding");
            if let Some(h) = m.header.as_mut() {
                zero(h);
            }
            m.encode_to_vec()
        }
    )*};
}

decoders! {
    range: RangeResponse, put: PutResponse, del: DeleteRangeResponse, txn: TxnResponse,
    user_add: AuthUserAddResponse, user_get: AuthUserGetResponse,
    user_list: AuthUserListResponse, user_del: AuthUserDeleteResponse,
    user_grant: AuthUserGrantRoleResponse, user_revoke: AuthUserRevokeRoleResponse,
    role_add: AuthRoleAddResponse, role_get: AuthRoleGetResponse, role_list: AuthRoleListResponse,
    role_del: AuthRoleDeleteResponse, role_grant: AuthRoleGrantPermissionResponse,
    role_revoke: AuthRoleRevokePermissionResponse,
}

/// Alarm answers: kvd sends a header (as etcd 3.5), etcd 3.4 none, and
/// kvctl prints none (kv-client hands out only the alarms): compare the
/// alarms. The same-server raw comparison on etcd checks the header too.
fn alarm(b: &[u8]) -> Vec<u8> {
    let mut m = AlarmResponse::decode(b).expect("an AlarmResponse");
    assert_eq!(m.encode_to_vec(), b, "not the canonical encoding");
    m.header = None;
    m.encode_to_vec()
}

/// The lease commands print the header alone (see the printer's notes).
fn header(b: &[u8]) -> Vec<u8> {
    let mut h = ResponseHeader::decode(b).expect("a ResponseHeader");
    assert_eq!(h.encode_to_vec(), b, "not the canonical encoding");
    zero(&mut h);
    h.encode_to_vec()
}

/// `user get --detail`: a text line, then each role's `role get` bytes.
fn user_detail(b: &[u8]) -> Vec<u8> {
    let head = b"User: u\n\n";
    assert!(b.starts_with(head), "{b:?}");
    let mut out = head.to_vec();
    out.extend(role_get(&b[head.len()..]));
    out
}

/// Output compared as text (no protobuf in it).
fn text(b: &[u8]) -> Vec<u8> {
    b.to_vec()
}

/// One scripted command: arguments (`$L` is the lease granted earlier),
/// stdin, and how its stdout is compared.
type Step = (&'static [&'static str], Option<&'static str>, Decoder);

const P: &str = "-w=protobuf";

const SCRIPT: &[Step] = &[
    (&[P, "put", "a", "1"], None, put),
    (&[P, "put", "a", "2", "--prev-kv"], None, put),
    (&[P, "put", "b", "3"], None, put),
    (&[P, "put", "c%d", "%s%%"], None, put),
    (&[P, "get", "a"], None, range),
    (&[P, "get", "", "--prefix"], None, range),
    (&[P, "get", "zz"], None, range),
    (&[P, "get", "", "--prefix", "--limit=1"], None, range),
    (
        &[P, "get", "", "--prefix", "--keys-only", "--order=DESCEND"],
        None,
        range,
    ),
    (&[P, "get", "a", "--rev=2"], None, range),
    (&[P, "get", "a", "--print-value-only"], None, text),
    (&[P, "del", "zz"], None, del),
    (
        &[P, "txn"],
        Some("value(\"a\") = \"2\"\n\nput t 3\nget a\ndel zz\n\nget zz\n\n"),
        txn,
    ),
    (
        &[P, "txn"],
        Some("value(\"a\") = \"9\"\n\nput t 3\n\nget a --prefix\n\n"),
        txn,
    ),
    (&["lease", "grant", "100"], None, text),
    (&[P, "lease", "grant", "50"], None, header),
    (&[P, "lease", "timetolive", "$L"], None, header),
    (&[P, "lease", "timetolive", "$L", "--keys"], None, header),
    (&[P, "lease", "list"], None, header),
    (&[P, "lease", "keep-alive", "--once", "$L"], None, header),
    (&[P, "lease", "revoke", "$L"], None, text),
    (&[P, "alarm", "list"], None, alarm),
    (&[P, "alarm", "disarm"], None, alarm),
    (&[P, "user", "add", "u:p"], None, user_add),
    (&[P, "role", "add", "r"], None, role_add),
    (
        &[
            P,
            "role",
            "grant-permission",
            "r",
            "readwrite",
            "k",
            "--prefix",
        ],
        None,
        role_grant,
    ),
    (&[P, "role", "get", "r"], None, role_get),
    (&[P, "user", "grant-role", "u", "r"], None, user_grant),
    (&[P, "user", "get", "u"], None, user_get),
    (&[P, "user", "get", "u", "--detail"], None, user_detail),
    (&[P, "user", "list"], None, user_list),
    (&[P, "role", "list"], None, role_list),
    (
        &[P, "role", "revoke-permission", "r", "k", "--prefix"],
        None,
        role_revoke,
    ),
    (&[P, "user", "revoke-role", "u", "r"], None, user_revoke),
    (&[P, "role", "delete", "r"], None, role_del),
    (&[P, "user", "delete", "u"], None, user_del),
    (&[P, "user", "delete", "u"], None, text),
    (&[P, "del", "a", "--prev-kv"], None, del),
    (&[P, "del", "", "--prefix"], None, del),
    (&[P, "compaction", "3"], None, text),
    (&[P, "endpoint", "status"], None, text),
    (&[P, "endpoint", "health"], None, text),
    (&[P, "endpoint", "hashkv"], None, text),
];

/// One command's result: exit code, stdout bytes, masked stderr.
#[derive(Debug, PartialEq)]
struct Out {
    args: String,
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

fn run_step(bin: &str, server: &Server, step: &Step, lease: &mut Option<String>) -> Out {
    let (args, stdin, decode) = step;
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("$L", lease.as_deref().unwrap_or("0")))
        .collect();
    let mut child = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("KVCTL_ENDPOINTS")
        .args(["--endpoints", &server.endpoint])
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let _ = pipe.write_all(stdin.unwrap_or("").as_bytes());
    drop(pipe);
    let out = wait_bounded(child, STEP_TIMEOUT);
    let mut stdout = out.stdout;
    if args[..2] == ["lease", "grant"] {
        let text = String::from_utf8_lossy(&stdout).to_string();
        *lease = text.split_whitespace().nth(1).map(str::to_string);
        stdout = text
            .replace(lease.as_deref().unwrap_or("\0"), "<L>")
            .into_bytes();
    }
    if out.status.success() {
        stdout = decode(&stdout);
    }
    let mut stderr = mask(&String::from_utf8_lossy(&out.stderr));
    for key in ["cluster_id:", "member_id:", "raft_term:"] {
        stderr = mask_number_after(&stderr, key);
    }
    Out {
        args: args
            .join(" ")
            .replace(lease.as_deref().unwrap_or("\0"), "$L"),
        code: out.status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// `watch --rev=1 a` prints a's history and then waits: read until both
/// events arrived, then stop it. Responses are concatenated without
/// delimiters, so the bytes are decoded as one merged message.
fn watch_history(bin: &str, server: &Server) -> Vec<u8> {
    let mut child = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &server.endpoint, P, "watch", "--rev=1", "a"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let buf = Arc::new(Mutex::new(Vec::new()));
    let mut out = child.stdout.take().unwrap();
    let reader = {
        let buf = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = out.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        })
    };
    let deadline = Instant::now() + STEP_TIMEOUT;
    let got = loop {
        let bytes = buf.lock().unwrap().clone();
        if let Ok(m) = WatchResponse::decode(bytes.as_slice()) {
            if m.events.len() >= 3 {
                break m;
            }
        }
        assert!(Instant::now() < deadline, "{bin}: watch printed {bytes:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    // The header's revision is the one at the watch's creation: both ran
    // at the same point of the script.
    let mut m = got;
    if let Some(h) = m.header.as_mut() {
        zero(h);
    }
    m.encode_to_vec()
}

fn compare_on(server_bin: &std::path::Path) {
    let theirs = start(server_bin);
    let ours = start(server_bin);
    let (mut l1, mut l2) = (None, None);
    let mut diffs = Vec::new();
    for (i, step) in SCRIPT.iter().enumerate() {
        let want = run_step(ETCDCTL, &theirs, step, &mut l1);
        let got = run_step(KVCTL, &ours, step, &mut l2);
        if want != got {
            diffs.push(format!("step {i}:\n etcdctl: {want:?}\n kvctl:   {got:?}"));
        }
        // a's history is complete (three puts and its delete) just before
        // the script deletes everything else.
        if step.0 == [P, "del", "a", "--prev-kv"] {
            assert_eq!(
                watch_history(ETCDCTL, &theirs),
                watch_history(KVCTL, &ours),
                "watch history differs"
            );
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));

    // Read-only commands on one server: the raw bytes must be identical.
    for server in [&theirs, &ours] {
        for args in [
            &["put", "x", "1"][..],
            &["user", "add", "v:p"],
            &["role", "add", "q"],
        ] {
            let st = Command::new(ETCDCTL)
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &server.endpoint])
                .args(args)
                .output()
                .unwrap();
            assert!(st.status.success(), "{args:?}: {st:?}");
        }
    }
    let mut reads: Vec<&[&str]> = vec![
        &[P, "member", "list"],
        &[P, "get", "", "--prefix"],
        &[P, "get", "x", "--rev=0", "--consistency=s"],
        &[P, "lease", "list"],
        &[P, "user", "list"],
        &[P, "user", "get", "v"],
        &[P, "role", "list"],
        &[P, "role", "get", "q"],
    ];
    // kvd answers Alarm with a header, etcd 3.4 without; kv-client hands
    // out no header, so kvctl prints etcd 3.4's bytes on either server.
    if server_bin == std::path::Path::new(ETCD) {
        reads.push(&[P, "alarm", "list"]);
    }
    for server in [&theirs, &ours] {
        for args in &reads {
            let raw = |bin: &str| {
                let out = output_bounded(
                    Command::new(bin)
                        .env("ETCDCTL_API", "3")
                        .args(["--endpoints", &server.endpoint])
                        .args(*args),
                    STEP_TIMEOUT,
                );
                assert!(out.status.success(), "{bin} {args:?}: {out:?}");
                out.stdout
            };
            let want = raw(ETCDCTL);
            assert!(!want.is_empty() || args[1] == "alarm", "{args:?}");
            assert_eq!(raw(KVCTL), want, "{args:?} on {}", server.endpoint);
        }
    }
}

#[test]
fn protobuf_matches_etcdctl_on_etcd() {
    compare_on(std::path::Path::new(ETCD));
}

#[test]
fn protobuf_matches_etcdctl_on_kvd() {
    compare_on(&kvd_bin());
}
