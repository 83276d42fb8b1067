//! `https://` health checks against real local TLS servers (hyper over
//! tokio-rustls, and tonic's gRPC health service over TLS) with
//! certificates the `openssl` CLI makes per test: verified against a CA
//! file, refused when the CA is not trusted or the name does not match
//! (the output names the certificate problem), passing with skip-verify,
//! and critical once the server stops. Registrations go to a real kvd and
//! a real etcd 3.4.

#[path = "../../client/tests/suite/pki.rs"]
mod pki;
#[path = "../../client/tests/suite/server.rs"]
#[allow(dead_code)]
mod server;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use kv_discovery::check::CheckOptions;
use kv_discovery::{Check, Health, Registration, Registry, ServiceInstance};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use server::{Kind, Server};

const FAST: Duration = Duration::from_millis(100);
const WAIT: Duration = Duration::from_secs(30);

/// A CA `good` with a leaf `web` (valid for 127.0.0.1 and localhost), and
/// an unrelated CA `other`.
fn make_pki(dir: &Path) {
    pki::make_ca(dir, "good");
    pki::make_ca(dir, "other");
    pki::make_leaf(dir, "good", "web");
}

fn identity(dir: &Path) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let certs = CertificateDer::pem_file_iter(dir.join("web.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("web.key")).unwrap();
    (certs, key)
}

/// An HTTPS/1.1 server answering 200 to everything; stops when dropped.
struct HttpsBackend {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl HttpsBackend {
    async fn start(dir: &Path) -> HttpsBackend {
        let (certs, key) = identity(dir);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            // Dropped with the task: stopping closes every connection.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    // A client refusing our certificate ends the handshake.
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(|_req| async {
                        hyper::Response::builder()
                            .status(200)
                            .body(Full::new(Bytes::from("tls ok")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        HttpsBackend {
            addr,
            task: Some(task),
        }
    }

    fn url(&self) -> String {
        format!("https://{}/health", self.addr)
    }

    /// Stops listening and waits until the port is released.
    async fn halt(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for HttpsBackend {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A gRPC server with the standard health service (SERVING) over TLS.
async fn grpc_tls_backend(dir: &Path) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, service) = tonic_health::server::health_reporter();
    let cert = std::fs::read(dir.join("web.pem")).unwrap();
    let key = std::fs::read(dir.join("web.key")).unwrap();
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(service);
    let task = tokio::spawn(async move {
        let _ = server.serve_with_incoming(incoming).await;
    });
    (addr, task)
}

/// Registers instance `id` of `svc` with the one `check`.
async fn register(registry: &Registry, svc: &str, id: &str, check: Check) -> Registration {
    let check = check
        .with_interval(FAST)
        .with_timeout(Duration::from_secs(2));
    registry
        .register_with_checks(
            ServiceInstance::new(svc, "127.0.0.1:1").with_id(id),
            [check],
        )
        .await
        .unwrap()
}

/// Waits until instance `id` of `svc` has check `check` in `health` with
/// an output containing `needle`; returns that output.
async fn wait_check(
    registry: &Registry,
    svc: &str,
    id: &str,
    check: &str,
    (health, needle): (Health, &str),
) -> String {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let listed = registry.list(svc).await.unwrap();
            if let Some(state) = listed
                .iter()
                .find(|i| i.id == id)
                .and_then(|i| i.checks.get(check))
                .filter(|s| s.health == health && s.output.contains(needle))
            {
                return state.output.clone();
            }
            tokio::time::sleep(FAST).await;
        }
    })
    .await;
    match found {
        Ok(output) => output,
        Err(_) => {
            let listed = registry.list(svc).await.unwrap();
            panic!(
                "{svc}/{id} check {check} not {health} with {needle:?} within {WAIT:?}: {listed:#?}"
            )
        }
    }
}

/// One test per registry server: kvd and etcd 3.4 (the checks run in the
/// client, so both must behave alike).
macro_rules! on_both {
    ($($body:ident),* $(,)?) => {
        $(
            mod $body {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn kvd() {
                    super::$body(super::Kind::Kvd).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn etcd() {
                    super::$body(super::Kind::Etcd).await;
                }
            }
        )*
    };
}

on_both!(
    https_check_verifies_the_server_certificate,
    grpc_check_over_tls_verifies_the_server_certificate,
);

async fn https_check_verifies_the_server_certificate(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let good_ca = dir.path().join("good-ca.pem");
    let other_ca = dir.path().join("other-ca.pem");
    let server = Server::start(kind).await;
    let registry = Registry::new(server.client().await).with_ttl(5);
    let mut backend = HttpsBackend::start(dir.path()).await;
    let url = backend.url();

    let mut regs = Vec::new();
    let ca = Check::http("https", &url).with_tls_ca_file(&good_ca);
    regs.push(register(&registry, "web", "ca", ca).await);
    // The system's roots do not hold the test CA.
    regs.push(register(&registry, "web", "system", Check::http("https", &url)).await);
    let wrong = Check::http("https", &url).with_tls_ca_file(&other_ca);
    regs.push(register(&registry, "web", "wrong-ca", wrong).await);
    let skip = Check::http("https", &url).with_tls_skip_verify(true);
    regs.push(register(&registry, "web", "skip", skip).await);
    let misnamed = Check::http("https", &url)
        .with_tls_ca_file(&good_ca)
        .with_tls_server_name("other.example");
    regs.push(register(&registry, "web", "misnamed", misnamed).await);
    // The flat options (kvctl's) take the same settings.
    let opts = CheckOptions {
        http: vec![url.clone()],
        tls_ca_file: Some(good_ca.clone()),
        tls_server_name: Some("localhost".into()),
        ..Default::default()
    };
    let named = opts.into_checks().unwrap().remove(0);
    assert_eq!(named.name(), "http");
    regs.push(register(&registry, "web", "named", named).await);

    let passing = (Health::Passing, "200");
    for id in ["ca", "skip"] {
        let out = wait_check(&registry, "web", id, "https", passing).await;
        assert!(out.contains("tls ok"), "{id}: {out}");
    }
    wait_check(&registry, "web", "named", "http", passing).await;
    let refused = (Health::Critical, "TLS handshake failed");
    for id in ["system", "wrong-ca"] {
        let out = wait_check(&registry, "web", id, "https", refused).await;
        assert!(out.contains("UnknownIssuer"), "{id}: {out}");
    }
    let out = wait_check(&registry, "web", "misnamed", "https", refused).await;
    assert!(out.contains("other.example"), "misnamed: {out}");
    // Still critical after more probes: a refused certificate never passes.
    tokio::time::sleep(FAST * 5).await;
    for id in ["system", "wrong-ca", "misnamed"] {
        wait_check(&registry, "web", id, "https", refused).await;
    }

    // The server stops: the passing checks turn critical.
    backend.halt().await;
    // (Refused, or cut mid-request: the first failure is what is kept.)
    let down = (Health::Critical, url.as_str());
    for id in ["ca", "skip"] {
        wait_check(&registry, "web", id, "https", down).await;
    }
    wait_check(&registry, "web", "named", "http", down).await;
    for r in regs {
        r.close().await.unwrap();
    }
}

async fn grpc_check_over_tls_verifies_the_server_certificate(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let server = Server::start(kind).await;
    let registry = Registry::new(server.client().await).with_ttl(5);
    let (addr, task) = grpc_tls_backend(dir.path()).await;
    let target = format!("https://{addr}");

    let mut regs = Vec::new();
    let ca = Check::grpc("rpc", &target, "").with_tls_ca_file(dir.path().join("good-ca.pem"));
    regs.push(register(&registry, "rpc", "ca", ca).await);
    let skip = Check::grpc("rpc", &target, "").with_tls_skip_verify(true);
    regs.push(register(&registry, "rpc", "skip", skip).await);
    let wrong = Check::grpc("rpc", &target, "").with_tls_ca_file(dir.path().join("other-ca.pem"));
    regs.push(register(&registry, "rpc", "wrong-ca", wrong).await);
    // Plain h2 to a TLS port: no answer a gRPC client can read.
    let plain = Check::grpc("rpc", format!("http://{addr}"), "");
    regs.push(register(&registry, "rpc", "plain", plain).await);

    for id in ["ca", "skip"] {
        wait_check(&registry, "rpc", id, "rpc", (Health::Passing, "SERVING")).await;
    }
    let refused = (Health::Critical, "UnknownIssuer");
    let out = wait_check(&registry, "rpc", "wrong-ca", "rpc", refused).await;
    assert!(out.contains("gRPC connect"), "wrong-ca: {out}");
    // The initial state is critical too: wait for a probe's output.
    let probed = (Health::Critical, addr.to_string());
    wait_check(&registry, "rpc", "plain", "rpc", (probed.0, &probed.1)).await;

    task.abort();
    let _ = task.await;
    let down = (Health::Critical, target.as_str());
    for id in ["ca", "skip"] {
        wait_check(&registry, "rpc", id, "rpc", down).await;
    }
    for r in regs {
        r.close().await.unwrap();
    }
}
