//! etcd's HTTP/JSON gateway (grpc-gateway) on the client port: `POST /v3/...`
//! with proto3-JSON bodies, answered by the SAME service impls the gRPC
//! server runs (`crate::api`), never a second implementation.
//!
//! The JSON mapping is etcd's (grpc-gateway v1, `OrigName`): proto field
//! names, 64-bit integers as strings, bytes as base64, default values left
//! out, enums by name; it comes from `kv-proto`'s `json` feature (pbjson).
//! Errors use grpc-gateway v1's body `{"error", "message", "code"}` with the
//! HTTP status grpc-gateway maps each gRPC code to (see [`reply`]).

mod auth;
mod cluster;
mod concurrency;
mod kv;
mod lease;
mod prefix;
mod reply;
mod stream;

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::Status;

use crate::node::Node;

/// The gateway's router state: the node every handler serves.
type Gw = Arc<Node>;

/// The gateway's routes, ready to merge into the client port's router.
pub fn routes(node: Arc<Node>) -> Router {
    // Base64 and JSON inflate a request: room for the largest one the gRPC
    // server takes, still bounded (each message is checked in reply::decode).
    let limit = (node.max_request_bytes() + 512 * 1024).saturating_mul(2);
    let v3 = Router::new()
        .merge(kv::routes())
        .merge(lease::routes())
        .merge(cluster::routes())
        .merge(auth::routes())
        .merge(concurrency::routes())
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(node);
    prefix::with_prefixes(v3)
}

/// The request's auth token: the `Authorization` header (etcd's gateway
/// forwards it as the `authorization` metadata etcd reads), or
/// `Grpc-Metadata-Token` as grpc-gateway forwards it.
fn token(headers: &HeaderMap) -> Option<String> {
    ["authorization", "grpc-metadata-token"]
        .iter()
        .find_map(|k| headers.get(*k))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Runs a service call as the HTTP request's user: its token, or else
/// whatever the client port's TokenLayer found for the request (e.g. the
/// CN of a verified client certificate), or no user.
async fn as_caller<F: Future>(headers: &HeaderMap, call: F) -> F::Output {
    match (token(headers), crate::auth::current_token()) {
        (None, Some(_)) => call.await,
        (t, _) => crate::auth::with_token(t, call).await,
    }
}

/// A tonic request for `msg` carrying the HTTP request's metadata as
/// grpc-gateway forwards it (`Grpc-Metadata-<key>` headers as `<key>`, e.g.
/// `hasleader`).
fn grpc_request<T>(headers: &HeaderMap, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix("grpc-metadata-") else {
            continue;
        };
        let (Ok(k), Ok(v)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_bytes()),
        ) else {
            continue;
        };
        req.metadata_mut().insert(k, v);
    }
    if let Some(t) = token(headers) {
        if let Ok(v) = MetadataValue::try_from(t.as_str()) {
            req.metadata_mut().insert("token", v);
        }
    }
    req
}

/// Decodes `body`, calls the service method `call` as the request's user and
/// answers with its JSON response or etcd's gateway error.
async fn unary<Req, Resp, F, Fut>(
    node: &Node,
    headers: &HeaderMap,
    body: &Bytes,
    call: F,
) -> Response
where
    Req: DeserializeOwned + prost::Message + Default,
    Resp: Serialize,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let msg = match reply::decode::<Req>(node, body) {
        Ok(m) => m,
        Err(status) => return reply::error(&status),
    };
    let req = grpc_request(headers, msg);
    match as_caller(headers, call(req)).await {
        Ok(resp) => reply::json(&resp.into_inner()),
        Err(status) => reply::error(&status),
    }
}

/// Routes `POST $path` to the unary method `$method` of the service
/// `$svc(node)`.
macro_rules! unary_route {
    ($router:expr, $path:literal, $svc:path, $method:ident) => {
        $router.route(
            $path,
            axum::routing::post(
                |axum::extract::State(node): axum::extract::State<$crate::http::gateway::Gw>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let svc = $svc(node.clone());
                    $crate::http::gateway::unary(&node, &headers, &body, |r| svc.$method(r)).await
                },
            )
            .fallback($crate::http::gateway::reply::other_method),
        )
    };
}
pub(crate) use unary_route;
