//! Real local backends for the health-check tests: an HTTP/1 server
//! (hyper) answering with a settable status, and a gRPC server serving
//! `grpc.health.v1` (tonic-health). Each binds 127.0.0.1 on a free port,
//! can be stopped and started again on the same port, and stops when
//! dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// An HTTP server answering every request with the current status; it
/// records the statuses it answered, in order.
pub struct HttpBackend {
    pub addr: SocketAddr,
    status: Arc<AtomicU16>,
    answered: Arc<Mutex<Vec<u16>>>,
    task: Option<JoinHandle<()>>,
}

impl HttpBackend {
    pub async fn start(status: u16) -> HttpBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut b = HttpBackend {
            addr: listener.local_addr().unwrap(),
            status: Arc::new(AtomicU16::new(status)),
            answered: Arc::default(),
            task: None,
        };
        b.serve(listener);
        b
    }

    pub fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// The statuses answered so far.
    pub fn answered(&self) -> Vec<u16> {
        self.answered.lock().unwrap().clone()
    }

    /// Stops listening (connections are refused).
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Stops listening and waits until the port is released.
    pub async fn halt(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.halt().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let (status, answered) = (self.status.clone(), self.answered.clone());
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (status, answered) = (status.clone(), answered.clone());
                let svc = hyper::service::service_fn(move |_req| {
                    let code = status.load(Ordering::SeqCst);
                    answered.lock().unwrap().push(code);
                    let resp = hyper::Response::builder()
                        .status(code)
                        .body(Full::new(Bytes::from(format!("status {code}"))));
                    async move { resp }
                });
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }));
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A gRPC server with only the standard health service.
pub struct GrpcBackend {
    pub addr: SocketAddr,
    pub reporter: tonic_health::server::HealthReporter,
    task: JoinHandle<()>,
}

impl GrpcBackend {
    pub async fn start() -> GrpcBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, service) = tonic_health::server::health_reporter();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        GrpcBackend {
            addr,
            reporter,
            task,
        }
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn set(&self, serving: bool) {
        use tonic_health::ServingStatus;
        let s = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", s).await;
    }
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
