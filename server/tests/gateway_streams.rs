//! etcd's HTTP/JSON gateway, streamed calls (watch, keepalive, snapshot),
//! lock and election, other methods and malformed input: kvd against
//! Debian's etcd 3.4 through curl, as in gateway.rs.

mod common;
mod gateway_util;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use gateway_util::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_watch_streams_events_like_etcd() {
    each_kind(|kind| async move {
        let s = Server::start(kind).await;
        let base = s.endpoint();
        let mut t = Vec::new();
        // Watch the prefix "w" (d3 .. eA==), with prev_kv.
        let mut child = tokio::process::Command::new("curl")
            .args(["-sSN", "--max-time", "60", "-X", "POST"])
            .arg(format!("{base}/v3/watch"))
            .args([
                "--data-binary",
                r#"{"create_request":{"key":"dw==","range_end":"eA==","prev_kv":true}}"#,
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn curl");
        let stdout = child.stdout.take().expect("curl stdout");
        let mut lines = BufReader::new(stdout).lines();
        t.push(next_line(kind, &mut lines).await);
        t.push(
            call(
                kind,
                &base,
                "/v3/kv/put",
                r#"{"key":"dzE=","value":"YQ=="}"#,
                &[],
            )
            .await,
        );
        t.push(
            call(
                kind,
                &base,
                "/v3/kv/put",
                r#"{"key":"dzE=","value":"Yg=="}"#,
                &[],
            )
            .await,
        );
        t.push(
            call(
                kind,
                &base,
                "/v3/kv/put",
                r#"{"key":"eA==","value":"Yw=="}"#,
                &[],
            )
            .await,
        );
        t.push(call(kind, &base, "/v3/kv/deleterange", r#"{"key":"dzE="}"#, &[]).await);
        // Events may come one per line or batched: collect until all three.
        let mut events = 0;
        while events < 3 {
            let line = next_line(kind, &mut lines).await;
            let v: Value = serde_json::from_str(&line).unwrap();
            events += v["result"]["events"].as_array().map_or(0, Vec::len);
            t.push(line);
        }
        // The answer is still open (no end of stream) until the client goes.
        let idle = tokio::time::timeout(Duration::from_millis(300), lines.next_line()).await;
        assert!(idle.is_err(), "[{kind}] watch answer ended early: {idle:?}");
        let _ = child.kill().await;
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_methods_streams_and_bad_input_match_etcd() {
    each_kind(|kind| async move {
        let s = Server::start(kind).await;
        let base = s.endpoint();
        let b = base.as_str();
        let mut t = Vec::new();
        // Methods other than POST: Go's 405 text; OPTIONS for CORS preflight.
        t.push(raw(kind, "GET", b, "/v3/kv/range", "", &[]).await);
        t.push(raw(kind, "PUT", b, "/v3/kv/range", r#"{"key":"eA=="}"#, &[]).await);
        t.push(raw(kind, "OPTIONS", b, "/v3/kv/range", "", &[]).await);
        // Go decoder wording for malformed bodies.
        for body in [
            r#"{bad"#,
            r#"{"key" "eA=="}"#,
            r#"{"key":"eA==" "x":1}"#,
            "null",
        ] {
            t.push(raw(kind, "POST", b, "/v3/kv/range", body, &[]).await);
        }
        // A stream's malformed first request fails as Unknown (HTTP 500).
        t.push(raw(kind, "POST", b, "/v3/watch", r#"{bad"#, &[]).await);
        t.push(raw(kind, "POST", b, "/v3/lease/keepalive", r#"{bad"#, &[]).await);
        // One keepalive answer per request in the body (unknown leases: TTL 0).
        t.push(
            raw(
                kind,
                "POST",
                b,
                "/v3/lease/keepalive",
                r#"{"ID":"5"}{"ID":"6"}"#,
                &[],
            )
            .await,
        );

        // Lock and election with a lease; keys embed the lease ID (masked).
        let (code, grant) = post(b, "/v3/lease/grant", r#"{"TTL":60}"#, None).await;
        assert_eq!(code, 200, "[{kind}] grant: {grant}");
        let id = lease_id(&grant);
        let vol = ["key", "lease"];
        let (code, lock) = post(
            b,
            "/v3/lock/lock",
            &format!(r#"{{"name":"bG9jaw==","lease":"{id}"}}"#),
            None,
        )
        .await;
        assert_eq!(code, 200, "[{kind}] lock: {lock}");
        let lock: Value = serde_json::from_str(&lock).unwrap();
        let key = lock["key"].as_str().expect("lock key").to_string();
        t.push(
            raw(
                kind,
                "POST",
                b,
                "/v3/kv/range",
                &format!(r#"{{"key":"{key}"}}"#),
                &vol,
            )
            .await,
        );
        t.push(
            raw(
                kind,
                "POST",
                b,
                "/v3/lock/unlock",
                &format!(r#"{{"key":"{key}"}}"#),
                &vol,
            )
            .await,
        );
        t.push(
            raw(
                kind,
                "POST",
                b,
                "/v3/election/leader",
                r#"{"name":"ZWw="}"#,
                &vol,
            )
            .await,
        );
        let (code, camp) = post(
            b,
            "/v3/election/campaign",
            &format!(r#"{{"name":"ZWw=","lease":"{id}","value":"djE="}}"#),
            None,
        )
        .await;
        assert_eq!(code, 200, "[{kind}] campaign: {camp}");
        let camp: Value = serde_json::from_str(&camp).unwrap();
        let leader = camp["leader"].to_string();
        t.push(
            raw(
                kind,
                "POST",
                b,
                "/v3/election/proclaim",
                &format!(r#"{{"leader":{leader},"value":"djI="}}"#),
                &vol,
            )
            .await,
        );
        t.push(
            raw(
                kind,
                "POST",
                b,
                "/v3/election/leader",
                r#"{"name":"ZWw="}"#,
                &vol,
            )
            .await,
        );
        t.push(
            raw(
                kind,
                "POST",
                b,
                "/v3/election/resign",
                &format!(r#"{{"leader":{leader}}}"#),
                &vol,
            )
            .await,
        );
        t.push(
            raw(
                kind,
                "POST",
                b,
                "/v3/election/leader",
                r#"{"name":"ZWw="}"#,
                &vol,
            )
            .await,
        );

        // Snapshot: a stream of {"result": {blob, remaining_bytes}} lines.
        let (code, snap) = post(b, "/v3/maintenance/snapshot", "{}", None).await;
        assert_eq!(code, 200, "[{kind}] snapshot");
        let first: Value =
            serde_json::from_str(snap.lines().next().expect("a snapshot line")).unwrap();
        assert!(
            first["result"]["blob"].is_string(),
            "[{kind}] snapshot line: {first}"
        );
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_watch_is_released_when_the_client_goes() {
    kvd_only(|| async {
        let s = Server::start(Kvd).await;
        let base = s.endpoint();
        let streams = "etcd_debugging_mvcc_watch_stream_total";
        let mut child = tokio::process::Command::new("curl")
            .args(["-sSN", "--max-time", "60", "-X", "POST"])
            .arg(format!("{base}/v3/watch"))
            .args(["--data-binary", r#"{"create_request":{"key":"eA=="}}"#])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn curl");
        let stdout = child.stdout.take().expect("curl stdout");
        let mut lines = BufReader::new(stdout).lines();
        next_line(Kvd, &mut lines).await;
        assert_eq!(gauge(&base, streams).await, Some(1));
        let _ = child.kill().await;
        let _ = child.wait().await;
        // The HTTP answer is dropped with the connection, and with it the
        // gRPC watch stream it was fed by.
        wait_until("the watch stream closed", WAIT_TIMEOUT, || async {
            (gauge(&base, streams).await == Some(0)).then_some(())
        })
        .await;
    })
    .await;
}
