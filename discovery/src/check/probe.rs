//! One probe of each kind of check: its result and output.

use std::process::Stdio;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use super::tls::{self, CheckTls};
use super::{MAX_CHECK_OUTPUT, bounded};
use crate::Health;

/// A probe's result: the state it shows and what it printed.
pub(crate) type Outcome = (Health, String);

fn critical(output: impl Into<String>) -> Outcome {
    (Health::Critical, bounded(output.into()))
}

/// `GET url`: 2xx passing, 429 warning, else critical (Consul's rule);
/// `https://` URLs over TLS verified as `tls` says.
pub(crate) async fn http(url: &str, tls: &CheckTls) -> Outcome {
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return critical(format!("invalid URL {url:?}: {e}")),
    };
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return critical(format!(
                "unsupported URL {url:?}: only http:// and https:// are supported"
            ));
        }
    };
    let (Some(host), Some(authority)) = (uri.host(), uri.authority().cloned()) else {
        return critical(format!("URL {url:?} has no host"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let method = if https { "HTTPS GET" } else { "GET" };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let stream = match TcpStream::connect((host, port)).await {
        Ok(s) => s,
        Err(e) => return critical(format!("{method} {url}: {e}")),
    };
    if !https {
        return get(TokioIo::new(stream), url, authority.as_str(), path).await;
    }
    let setup = tls::http1_config(tls).and_then(|c| Ok((c, tls::server_name(tls, host)?)));
    let (config, name) = match setup {
        Ok(pair) => pair,
        Err(e) => return critical(format!("{method} {url}: {e}")),
    };
    match tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
    {
        Ok(s) => get(TokioIo::new(s), url, authority.as_str(), path).await,
        Err(e) => critical(format!("{method} {url}: TLS handshake failed: {e}")),
    }
}

/// One `GET path` over the connection `io` (plain or TLS).
async fn get<I>(io: I, url: &str, authority: &str, path: &str) -> Outcome
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
        Ok(pair) => pair,
        Err(e) => return critical(format!("GET {url}: {e}")),
    };
    // The connection is driven here and ends when `sender` is dropped.
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "kv-discovery health check")
        .body(Empty::<Bytes>::new());
    let req = match req {
        Ok(r) => r,
        Err(e) => return critical(format!("GET {url}: {e}")),
    };
    let outcome = match sender.send_request(req).await {
        Err(e) => critical(format!("GET {url}: {}", chain(&e))),
        Ok(resp) => {
            let status = resp.status();
            let mut body = resp.into_body();
            let mut text = Vec::new();
            // Only the first MAX_CHECK_OUTPUT bytes are read.
            while text.len() < MAX_CHECK_OUTPUT {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            text.extend_from_slice(data);
                        }
                    }
                    _ => break,
                }
            }
            let health = if status.is_success() {
                Health::Passing
            } else if status == http::StatusCode::TOO_MANY_REQUESTS {
                Health::Warning
            } else {
                Health::Critical
            };
            let out = format!(
                "HTTP GET {url}: {status} Output: {}",
                String::from_utf8_lossy(&text)
            );
            (health, bounded(out))
        }
    };
    drop(sender);
    driver.abort();
    outcome
}

/// `e` and its sources, `: `-separated (tonic's and hyper's errors say
/// little at the top: the cause, such as a certificate problem, is below).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A TCP connect: accepted is passing.
pub(crate) async fn tcp(addr: &str) -> Outcome {
    match TcpStream::connect(addr).await {
        Ok(_) => (Health::Passing, format!("TCP connect {addr}: Success")),
        Err(e) => critical(format!("TCP connect {addr}: {e}")),
    }
}

/// `grpc.health.v1.Health/Check`: `SERVING` is passing, else critical;
/// an `https://` address over TLS verified as `tls` says.
pub(crate) async fn grpc(addr: &str, service: &str, tls: &CheckTls) -> Outcome {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let mut endpoint = match tonic::transport::Endpoint::from_shared(addr.to_string()) {
        Ok(e) => e,
        Err(e) => return critical(format!("invalid gRPC address {addr:?}: {e}")),
    };
    if endpoint.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
        // One verifier for both check kinds (CA file, system roots or
        // none); tonic then only adds SNI and ALPN h2.
        let verifier = match tls::verifier(tls) {
            Ok(v) => v,
            Err(e) => return critical(format!("gRPC connect {addr}: {e}")),
        };
        let mut config = tonic::transport::ClientTlsConfig::new();
        if let Some(name) = &tls.server_name {
            config = config.domain_name(name.clone());
        }
        endpoint = match endpoint.tls_config_with_verifier(config, verifier) {
            Ok(e) => e,
            Err(e) => return critical(format!("gRPC connect {addr}: {}", chain(&e))),
        };
    }
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => return critical(format!("gRPC connect {addr}: {}", chain(&e))),
    };
    let req = HealthCheckRequest {
        service: service.to_string(),
    };
    match HealthClient::new(channel).check(req).await {
        Ok(resp) => {
            let status = resp.into_inner().status();
            let health = if status == ServingStatus::Serving {
                Health::Passing
            } else {
                Health::Critical
            };
            (
                health,
                format!("gRPC check {addr} {service:?}: {}", status.as_str_name()),
            )
        }
        Err(status) => critical(format!("gRPC check {addr} {service:?}: {status}")),
    }
}

/// Runs the command: exit 0 passing, 1 warning, else critical; stdout then
/// stderr as output, each read fully (so the child never blocks on a full
/// pipe) but kept only up to [`MAX_CHECK_OUTPUT`] bytes. Dropping the
/// future (timeout) kills the child.
pub(crate) async fn command(program: &str, args: &[String]) -> Outcome {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return critical(format!("cannot run {program:?}: {e}")),
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return critical(format!("{program:?}: no output pipes"));
    };
    let (out, err, status) = tokio::join!(read_bounded(stdout), read_bounded(stderr), child.wait());
    let mut output = out;
    output.extend_from_slice(&err);
    let output = bounded(String::from_utf8_lossy(&output).into_owned());
    match status {
        Ok(s) => match s.code() {
            Some(0) => (Health::Passing, output),
            Some(1) => (Health::Warning, output),
            _ => (Health::Critical, output),
        },
        Err(e) => critical(format!("{program:?}: {e}")),
    }
}

/// Reads `r` to its end, keeping the first [`MAX_CHECK_OUTPUT`] bytes.
async fn read_bounded(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_CHECK_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}
