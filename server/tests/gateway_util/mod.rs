//! Helpers for the gateway tests: HTTP calls through curl (a client we did
//! not write) and masking of the values that differ between two servers.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;
use tokio::io::BufReader;

use crate::common::{within, Kind};

pub const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// `POST base+path` with `body` through curl: (HTTP status, body text).
pub async fn post(base: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    send("POST", base, path, body, token).await
}

/// `method base+path` with `body` through curl: (HTTP status, body text).
pub async fn send(
    method: &str,
    base: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "20",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ])
    .arg(format!("{base}{path}"))
    .args(["--data-binary", body]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: {t}")]);
    }
    let out = cmd.output().await.expect("run curl");
    assert!(out.status.success(), "curl {path}: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8 answer");
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.parse().expect("status code"), body.to_string())
}

/// Replaces the values of volatile fields, wherever they are, by "<masked>".
pub fn mask(v: &mut Value, volatile: &[&str]) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if volatile.contains(&k.as_str()) {
                    *x = Value::String("<masked>".into());
                } else {
                    mask(x, volatile);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| mask(x, volatile)),
        _ => {}
    }
}

/// Header fields that differ between two fresh clusters.
pub const HEADER: &[&str] = &["cluster_id", "member_id", "raft_term"];

/// One transcript line: path, HTTP status and the masked JSON answer.
pub async fn call(kind: Kind, base: &str, path: &str, body: &str, volatile: &[&str]) -> String {
    call_as(kind, base, path, body, volatile, None).await
}

pub async fn call_as(
    kind: Kind,
    base: &str,
    path: &str,
    body: &str,
    volatile: &[&str],
    token: Option<&str>,
) -> String {
    let (code, text) = post(base, path, body, token).await;
    let mut v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("[{kind}] {path}: not JSON ({e}): {text:?}"));
    let all: Vec<&str> = HEADER.iter().chain(volatile).copied().collect();
    mask(&mut v, &all);
    let line = format!("{path} {code} {v}");
    eprintln!("[{kind}] {line}");
    line
}

/// A lease ID from a grant answer (a JSON string, as int64s are).
pub fn lease_id(text: &str) -> String {
    let v: Value = serde_json::from_str(text).expect("grant answer");
    v["ID"].as_str().expect("lease ID string").to_string()
}

/// The next line of a streamed answer, parsed and masked.
pub async fn next_line(
    kind: Kind,
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> String {
    let line = within("a watch line", LINE_TIMEOUT, lines.next_line())
        .await
        .unwrap_or_else(|e| panic!("[{kind}] read watch: {e}"))
        .unwrap_or_else(|| panic!("[{kind}] watch answer ended"));
    let mut v: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("[{kind}] watch line not JSON ({e}): {line:?}"));
    mask(
        &mut v,
        &["cluster_id", "member_id", "raft_term", "watch_id"],
    );
    eprintln!("[{kind}] watch {v}");
    v.to_string()
}

/// `(status, raw body)` as a transcript line, volatile values masked by
/// parsing each JSON line of the body.
pub async fn raw(
    kind: Kind,
    method: &str,
    base: &str,
    path: &str,
    body: &str,
    volatile: &[&str],
) -> String {
    let (code, text) = send(method, base, path, body, None).await;
    let all: Vec<&str> = HEADER.iter().chain(volatile).copied().collect();
    let lines: Vec<String> = text
        .lines()
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(mut v) => {
                mask(&mut v, &all);
                v.to_string()
            }
            Err(_) => format!("{l:?}"),
        })
        .collect();
    let line = format!("{method} {path} {code} {}", lines.join(" | "));
    eprintln!("[{kind}] {line}");
    line
}

/// The value of an unlabelled series in a Prometheus text answer.
pub async fn gauge(base: &str, name: &str) -> Option<i64> {
    let (code, text) = send("GET", base, "/metrics", "", None).await;
    assert_eq!(code, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
