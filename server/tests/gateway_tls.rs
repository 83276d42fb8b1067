//! The JSON gateway and /health over TLS on the client port, with curl
//! speaking HTTP/1.1 and HTTP/2 (`--cacert`), and etcd's other gateway
//! prefixes (`/v3beta/` served as `/v3/`, `/v3alpha/` gone, grpc-gateway's
//! 404 for an unknown `/v3/` path): kvd and Debian's etcd 3.4, started with
//! the same TLS flags, give the same transcript.

#[path = "../../client/tests/suite/pki.rs"]
mod pki;

mod common;
mod gateway_util;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::cluster::free_port;
use common::{each_kind, wait_until, Kind, WAIT_TIMEOUT};
use gateway_util::{mask, HEADER};
use serde_json::Value;

/// A server the test started; killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kind` serving clients over TLS only (`https://` client URL).
fn spawn(kind: Kind, dir: &Path) -> (Running, String) {
    let (client_port, peer_port) = (free_port(), free_port());
    let client = format!("https://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let p = |f: &str| dir.join(f).display().to_string();
    let child = Command::new(kind.binary())
        .args(["--name", "n1", "--data-dir"])
        .arg(dir.join(format!("{kind}.data")))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .arg(format!("--initial-cluster=n1={peer}"))
        .args([
            "--cert-file",
            &p("server.pem"),
            "--key-file",
            &p("server.key"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{kind}.log"))).expect("log file"))
        .spawn()
        .expect("spawn server");
    (Running(child), client)
}

/// One curl call over TLS trusting the test CA: (status, HTTP version,
/// body). `version` is curl's flag (`--http1.1`, `--http2`).
fn curl(ca: &Path, version: &str, method: &str, url: &str, body: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", version, "--cacert"])
        .arg(ca)
        .args(["-X", method, "-w", "\n%{http_code} %{http_version}", url])
        .args(["--data-binary", body])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (code, v) = tail.split_once(' ').unwrap_or((tail, ""));
    (code.parse().unwrap_or(0), v.to_string(), body.to_string())
}

/// A transcript line: JSON bodies masked, other bodies as they are.
fn line(what: &str, (code, version, body): (u16, String, String)) -> String {
    let shown = match serde_json::from_str::<Value>(&body) {
        Ok(mut v) => {
            mask(&mut v, HEADER);
            v.to_string()
        }
        Err(_) => format!("{body:?}"),
    };
    format!("{what}: {code} HTTP/{version} {shown}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_over_tls_and_v3beta_match_etcd() {
    let dir = tempfile::Builder::new()
        .prefix("kvd-gw-tls-")
        .tempdir()
        .expect("tempdir");
    let d = dir.path().to_path_buf();
    pki::make_ca(&d, "client");
    pki::make_leaf(&d, "client", "server");
    let ca = d.join("client-ca.pem");
    each_kind(|kind| {
        let (d, ca) = (d.clone(), ca.clone());
        async move {
            let (_server, base) = spawn(kind, &d);
            wait_until(
                &format!("{kind} answers /health over TLS"),
                WAIT_TIMEOUT,
                || {
                    let ok = curl(&ca, "--http1.1", "GET", &format!("{base}/health"), "").0 == 200;
                    async move { ok.then_some(()) }
                },
            )
            .await;
            let mut t = Vec::new();
            // "foo" = Zm9v, "bar" = YmFy, "baz" = YmF6
            for (version, value) in [("--http1.1", "YmFy"), ("--http2", "YmF6")] {
                let call = |path: &str, body: &str| {
                    let url = format!("{base}{path}");
                    line(
                        &format!("{version} {path}"),
                        curl(&ca, version, "POST", &url, body),
                    )
                };
                t.push(call(
                    "/v3/kv/put",
                    &format!(r#"{{"key":"Zm9v","value":"{value}"}}"#),
                ));
                t.push(call("/v3/kv/range", r#"{"key":"Zm9v"}"#));
                t.push(call(
                    "/v3beta/kv/put",
                    r#"{"key":"Zm9vMg==","value":"YmFy"}"#,
                ));
                t.push(call(
                    "/v3beta/kv/range",
                    r#"{"key":"Zm9v","range_end":"Zm9w"}"#,
                ));
                t.push(call("/v3beta/lease/grant", r#"{"TTL":"60","ID":"7"}"#));
                t.push(call("/v3alpha/kv/range", r#"{"key":"Zm9v"}"#));
                t.push(call("/v3/kv/nope", "{}"));
                t.push(call("/v3beta/kv/nope", "{}"));
                t.push(call("/v3beta/lease/revoke", r#"{"ID":"7"}"#));
                // etcd 3.5+ adds `"reason":""` (kvd follows 3.7): the
                // status and the verdict are compared.
                let (code, v, body) = curl(&ca, version, "GET", &format!("{base}/health"), "");
                let verdict: Value = serde_json::from_str(&body).unwrap_or_default();
                t.push(format!(
                    "{version} GET /health: {code} HTTP/{v} {}",
                    verdict["health"]
                ));
            }
            for l in &t {
                eprintln!("[{kind}] {l}");
            }
            // Everything above must have worked on both: the comparison
            // alone would pass if both refused TLS HTTP/1.1 alike.
            let ok = t.iter().filter(|l| l.contains(": 200 HTTP/")).count();
            assert_eq!(ok, 2 * 7, "[{kind}] {t:#?}");
            assert!(
                t.iter()
                    .any(|l| l.contains("--http1.1 /v3beta/kv/range: 200 HTTP/1.1")),
                "[{kind}] {t:#?}"
            );
            t
        }
    })
    .await;
}
