//! gRPC handlers for etcd's v3 services. Handlers validate, call the
//! [`Node`](crate::node::Node) facade, map errors and fill headers; they
//! never touch storage or raft types.

// pub(crate): the HTTP gateway (http/gateway) calls these same services.
pub(crate) mod auth;
pub(crate) mod authority;
pub(crate) mod election;
pub(crate) mod kv;
mod kv_unary;
pub(crate) mod lease;
pub(crate) mod lock;
pub(crate) mod maintenance;
pub(crate) mod nudge;
pub mod status;
pub(crate) mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kv_proto::etcdserverpb::auth_server::AuthServer;
use kv_proto::etcdserverpb::cluster_server::ClusterServer;
use kv_proto::etcdserverpb::kv_server::KvServer;
use kv_proto::etcdserverpb::lease_server::LeaseServer;
use kv_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use kv_proto::v3electionpb::election_server::ElectionServer;
use kv_proto::v3lockpb::lock_server::LockServer;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::service::Routes;

use crate::grpc;
use crate::node::Node;

/// etcd accepts this much gRPC framing on top of --max-request-bytes.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Binds every client URL; binding happens before serving so errors surface at start.
pub async fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        out.push(TcpListener::bind(a).await?);
    }
    Ok(out)
}

/// Serves the client API on `listeners` until `stop` turns true.
pub async fn serve(
    node: Arc<Node>,
    listeners: Vec<TcpListener>,
    stop: signal::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let plain = listeners.into_iter().map(|l| (l, None)).collect();
    serve_with_tls(node, plain, stop).await
}

/// Serves the client API until `stop` turns true: each listener in
/// plaintext, or with TLS when it comes with an acceptor (see
/// [`crate::tls::acceptors`]). It answers at once: kvd's main calls it only
/// once [`Node::ready`] has resolved, as etcd serves clients only after
/// ReadyNotify.
pub async fn serve_with_tls(
    node: Arc<Node>,
    listeners: Vec<(TcpListener, Option<crate::tls::TlsAcceptor>)>,
    stop: signal::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let routes = routes(&node);
    let max_recv = node.max_request_bytes() + GRPC_OVERHEAD_BYTES;
    let mut servers = Vec::new();
    for (l, tls) in listeners {
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            // HTTP/1.1 beside HTTP/2 on the same port, as etcd serves them:
            // /metrics, /health, /livez, /readyz (and the JSON gateway).
            .accept_http1(true)
            .http2_keepalive_interval(Some(Duration::from_secs(120)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            // The answers one event completes leave each connection in one
            // write; it changes no status or byte of a response.
            .layer(nudge::NudgeLayer)
            // Outside every layer that shapes a response, so it sees the
            // status clients get (after the size-status rewrite below).
            .layer(crate::metrics::grpc::GrpcMetricsLayer)
            .layer(tower::util::MapResponseLayer::new(
                grpc::grpc_go_size_status::<tonic::body::Body>,
            ))
            // Each call's auth token, for the facade's permission checks.
            .layer(auth::TokenLayer)
            // KV's unary calls skip the router (innermost, so every layer
            // above sees them as before).
            .layer(kv_unary::KvUnaryLayer::new(node.clone(), max_recv))
            .add_routes(routes.clone());
        let shutdown = grpc::stopped(stop.clone());
        if let Some(acceptor) = tls {
            // TLS outside; AuthorityFix (HTTP/2 only) sees the decrypted bytes.
            let incoming = crate::tls::incoming(l, acceptor, stop.clone())
                .map(|conn| conn.map(crate::http::sniff::Sniffed::new));
            servers.push(tokio::spawn(
                router.serve_with_incoming_shutdown(incoming, shutdown),
            ));
            continue;
        }
        // Each HTTP/2 connection's client bytes go through AuthorityFix
        // (etcdctl 3.4 sends URLs as :authority, which h2 rejects);
        // HTTP/1.1 ones reach hyper untouched.
        let incoming = TcpListenerStream::new(l).map(|conn| {
            conn.map(|s| {
                let _ = s.set_nodelay(true);
                crate::http::sniff::Sniffed::new(s)
            })
        });
        servers.push(tokio::spawn(
            router.serve_with_incoming_shutdown(incoming, shutdown),
        ));
    }
    for s in servers {
        if let Ok(Err(e)) = s.await {
            return Err(e);
        }
    }
    Ok(())
}

/// The gRPC services and the HTTP routes of the client port, in one router.
fn routes(node: &Arc<Node>) -> Routes {
    let max_recv = node.max_request_bytes() + GRPC_OVERHEAD_BYTES;
    let grpc = Routes::builder()
        // Its unary methods are answered by kv_unary::KvUnaryLayer; this
        // serves RangeStream and unknown KV methods.
        .add_service(
            KvServer::new(kv::KvService(node.clone()))
                .max_decoding_message_size(max_recv)
                .max_encoding_message_size(usize::MAX),
        )
        // Prost's codec replaced for responses: see watch::WatchGrpc.
        .add_service(watch::WatchGrpc::new(node.clone(), max_recv))
        .add_service(
            LeaseServer::new(lease::LeaseService(node.clone())).max_decoding_message_size(max_recv),
        )
        .add_service(
            ClusterServer::new(maintenance::ClusterService(node.clone()))
                .max_decoding_message_size(max_recv),
        )
        .add_service(
            MaintenanceServer::new(maintenance::MaintenanceService(node.clone()))
                .max_decoding_message_size(max_recv)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            AuthServer::new(auth::AuthService(node.clone())).max_decoding_message_size(max_recv),
        )
        .add_service(
            LockServer::new(lock::LockService(node.clone())).max_decoding_message_size(max_recv),
        )
        .add_service(
            ElectionServer::new(election::ElectionService(node.clone()))
                .max_decoding_message_size(max_recv)
                .max_encoding_message_size(usize::MAX),
        )
        .clone()
        .routes();
    let router = grpc
        .into_axum_router()
        .merge(crate::http::router(node.clone()))
        .fallback(unknown_path);
    Routes::from(router)
}

/// An unknown path: gRPC's Unimplemented for a gRPC call (what tonic
/// answers), Go's "404 page not found" for plain HTTP (what etcd answers).
async fn unknown_path(req: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return tonic::Status::unimplemented("").into_http();
    }
    crate::http::drain_body(req).await;
    let mut r = (http::StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        http::HeaderValue::from_static("nosniff"),
    );
    r
}
