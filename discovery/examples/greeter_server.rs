//! A greeter-like gRPC service that registers itself in kv, for
//! `greeter_client` (and the balanced-channel test) to find.
//!
//! It serves the standard `grpc.health.v1.Health/Check` (tonic-health's
//! generated types, so no codegen here) and answers each call with SERVING
//! and an `x-instance-id` response header naming itself: a client sees which
//! instance answered.
//!
//! ```sh
//! bash scripts/run-kvd.sh &     # kvd on 127.0.0.1:2379
//! cargo run -p kv-discovery --example greeter_server -- --id a &
//! cargo run -p kv-discovery --example greeter_server -- --id b &
//! cargo run -p kv-discovery --example greeter_client
//! ```
//!
//! Flags (all optional): `--endpoints 127.0.0.1:2379` (kv, comma-separated),
//! `--service greeter`, `--id <uuid>`, `--listen 127.0.0.1:0`, `--ttl 10`
//! (registration lease, seconds), `--delay-ms 0` (per call),
//! `--drain-ms 2000`. It prints `listening <addr> id <id>` once registered.
//! On SIGTERM or Ctrl-C it deregisters, prints `deregistered`, keeps
//! serving for `--drain-ms` while clients move away, then exits 0.

use std::time::Duration;

use kv_client::{Client, ClientConfig};
use kv_discovery::{Registry, ServiceInstance};
use tokio::signal::unix::{SignalKind, signal};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The value of `--name`, if given.
fn flag(name: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
    }
    None
}

fn flag_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, Error> {
    match flag(name) {
        Some(v) => v
            .parse()
            .map_err(|_| format!("bad value for {name}: {v:?}").into()),
        None => Ok(default),
    }
}

struct Greeter {
    id: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    delay: Duration,
}

#[tonic::async_trait]
impl Health for Greeter {
    async fn check(
        &self,
        _req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let mut resp = Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        });
        resp.metadata_mut().insert("x-instance-id", self.id.clone());
        Ok(resp)
    }

    type WatchStream = futures::stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _req: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("the greeter answers Check only"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoints = flag("--endpoints").unwrap_or_else(|| "127.0.0.1:2379".into());
    let service = flag("--service").unwrap_or_else(|| "greeter".into());
    let listen = flag("--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let ttl: i64 = flag_or("--ttl", 10)?;
    let delay = Duration::from_millis(flag_or("--delay-ms", 0)?);
    let drain = Duration::from_millis(flag_or("--drain-ms", 2000)?);

    let client = Client::connect(ClientConfig::new(endpoints.split(','))).await?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    let mut instance = ServiceInstance::new(service, addr.to_string());
    if let Some(id) = flag("--id") {
        instance = instance.with_id(id);
    }
    let id = instance.id.clone();
    let greeter = Greeter {
        id: id
            .parse()
            .map_err(|_| format!("--id {id:?} is not a header value"))?,
        delay,
    };

    // Serve first, then register: the instance is reachable once listed.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HealthServer::new(greeter))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );
    let registration = Registry::new(client)
        .with_ttl(ttl)
        .register(instance)
        .await?;
    println!("listening {addr} id {id}");

    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    registration.close().await?;
    println!("deregistered");
    tokio::time::sleep(drain).await;
    let _ = stop.send(());
    server.await??;
    Ok(())
}
