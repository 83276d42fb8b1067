//! HTTP on the client port, beside gRPC (as etcd multiplexes them): the
//! health endpoints and `/metrics`. [`router`] is merged into tonic's
//! routes by [`crate::api::serve_with_tls`]; [`serve_metrics`] runs the
//! extra --listen-metrics-urls listeners that serve `/metrics` and the
//! health endpoints only.

pub mod gateway;
pub mod health;
pub mod sniff;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;

use crate::node::Node;

/// Every HTTP route of the client port.
/// Most bytes of a request read before answering it with an error.
const DRAIN_LIMIT: usize = 64 << 10;

/// Reads (and drops) a request's body before it is answered without it,
/// up to [`DRAIN_LIMIT`]: an HTTP/2 answer sent while the body is still
/// unread ends the stream with a reset, which curl reports as a failed
/// transfer instead of the 404 (seen over TLS).
pub(crate) async fn drain_body(req: axum::extract::Request) {
    let _ = axum::body::to_bytes(req.into_body(), DRAIN_LIMIT).await;
}

pub fn router(node: Arc<Node>) -> Router {
    // The JSON gateway's routes are merged here too.
    metrics_router(node.clone()).merge(gateway::routes(node))
}

/// `/metrics` and the health endpoints: what --listen-metrics-urls serves.
pub fn metrics_router(node: Arc<Node>) -> Router {
    Router::new()
        .merge(metrics_routes(node.clone()))
        .merge(health::routes(node))
}

fn metrics_routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(node)
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    // Live keys, counted from the index (a local read: no raft round).
    let all = kv_proto::etcdserverpb::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        count_only: true,
        serializable: true,
        ..Default::default()
    };
    match crate::metrics::uncounted(node.range(all)).await {
        Ok(r) => crate::metrics::set_keys(r.count),
        Err(e) => tracing::debug!(error = %e, "counting keys for /metrics"),
    }
    let mut r = crate::metrics::render(&node).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    r
}

/// Why --listen-metrics-urls cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsUrlError {
    #[error("--listen-metrics-urls {0}: https is not supported for metrics URLs yet; use http://")]
    Https(String),
    #[error(transparent)]
    Url(#[from] crate::config::ConfigError),
    #[error("binding --listen-metrics-urls {0}: {1}")]
    Bind(String, std::io::Error),
}

/// Binds every --listen-metrics-urls URL (before serving, so errors show
/// at start).
pub async fn bind_metrics(urls: &[String]) -> Result<Vec<TcpListener>, MetricsUrlError> {
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        if crate::config::is_https(url) {
            return Err(MetricsUrlError::Https(url.clone()));
        }
        let addr = crate::config::parse_url(url)?;
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| MetricsUrlError::Bind(url.clone(), e))?;
        out.push(l);
    }
    Ok(out)
}

/// Serves [`metrics_router`] over plain HTTP/1.1 on each listener until
/// `stop` turns true.
pub async fn serve_metrics(
    node: Arc<Node>,
    listeners: Vec<TcpListener>,
    stop: signal::Receiver<bool>,
) -> std::io::Result<()> {
    let mut tasks = Vec::new();
    for l in listeners {
        let app = metrics_router(node.clone());
        let stop = crate::grpc::stopped(stop.clone());
        tasks.push(tokio::spawn(async move {
            axum::serve(l, app).with_graceful_shutdown(stop).await
        }));
    }
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            return Err(e);
        }
    }
    Ok(())
}
