//! Streaming calls through the gateway: the request body's JSON values
//! become a gRPC client stream for the service impl, and its response
//! stream goes out as grpc-gateway's newline-delimited `{"result": ...}`.

use std::convert::Infallible;
use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{Stream, StreamExt};
use http_body::Frame;
use http_body_util::StreamBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;
use tonic::codec::Codec;
use tonic::{Status, Streaming};

use super::{as_caller, grpc_request, reply};
use crate::node::Node;

/// `msgs` as the client stream of a gRPC call. With `hold`, the stream is
/// not ended after them but stays open until `hold`'s sender is dropped
/// (the HTTP answer went away), as a watch client's stream does.
fn inbound<T>(msgs: Vec<T>, hold: Option<oneshot::Receiver<()>>) -> Streaming<T>
where
    T: prost::Message + Default + Send + 'static,
{
    let frames = msgs.into_iter().map(|m| {
        // gRPC's length-prefixed message: uncompressed flag, u32 length.
        // Lengths fit: reply::decode_all bounds every message.
        let payload = m.encode_to_vec();
        let mut buf = Vec::with_capacity(5 + payload.len());
        buf.push(0);
        buf.extend_from_slice(
            &u32::try_from(payload.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        buf.extend_from_slice(&payload);
        Ok::<_, Infallible>(Frame::data(Bytes::from(buf)))
    });
    let tail = futures::stream::once(async move {
        if let Some(h) = hold {
            let _ = h.await;
        }
    })
    .filter_map(|()| async { None });
    let body = StreamBody::new(futures::stream::iter(frames).chain(tail));
    let decoder = tonic_prost::ProstCodec::<T, T>::default().decoder();
    Streaming::new_request(decoder, body, None, None)
}

/// The streamed HTTP answer for a call's response stream; an error ends it
/// with grpc-gateway's `{"error": ...}` line. `guard` lives as long as the
/// answer (see [`inbound`]).
fn outbound<S, T>(stream: S, guard: Option<oneshot::Sender<()>>) -> Response
where
    S: Stream<Item = Result<T, Status>> + Send + 'static,
    T: Serialize + Send + 'static,
{
    let lines = futures::stream::unfold(
        (Box::pin(stream), guard, false),
        |(mut s, guard, done)| async move {
            if done {
                return None;
            }
            match s.next().await? {
                Ok(m) => Some((
                    Ok::<_, Infallible>(reply::stream_line(&m)),
                    (s, guard, false),
                )),
                Err(st) => Some((Ok(reply::stream_error_line(&st)), (s, guard, true))),
            }
        },
    );
    reply::with_gateway_headers(Response::new(Body::from_stream(lines)))
}

/// A client- or bidi-streaming call: every JSON value in `body` is one
/// request. With `keep_open` the client stream stays open after them (a
/// watch keeps streaming events), else it ends (a keepalive answers each).
pub(super) async fn bidi<Req, Resp, S, F, Fut>(
    node: &Node,
    headers: &HeaderMap,
    body: &Bytes,
    keep_open: bool,
    call: F,
) -> Response
where
    Req: DeserializeOwned + prost::Message + Default + Send + 'static,
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
    F: FnOnce(tonic::Request<Streaming<Req>>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let msgs = match reply::decode_all::<Req>(node, body) {
        Ok(m) => m,
        Err(status) => return reply::error(&status),
    };
    let (guard, hold) = if keep_open {
        let (tx, rx) = oneshot::channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let req = grpc_request(headers, inbound(msgs, hold));
    match as_caller(headers, call(req)).await {
        Ok(resp) => outbound(resp.into_inner(), guard),
        Err(status) => reply::error(&status),
    }
}

/// A server-streaming call (snapshot, observe): one request, streamed answer.
pub(super) async fn server_stream<Req, Resp, S, F, Fut>(
    node: &Node,
    headers: &HeaderMap,
    body: &Bytes,
    call: F,
) -> Response
where
    Req: DeserializeOwned + prost::Message + Default,
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let msg = match reply::decode::<Req>(node, body) {
        Ok(m) => m,
        Err(status) => return reply::error(&status),
    };
    let req = grpc_request(headers, msg);
    match as_caller(headers, call(req)).await {
        Ok(resp) => outbound(resp.into_inner(), None),
        Err(status) => reply::error(&status),
    }
}

/// Routes `POST $path` to the streaming method `$method` of `$svc(node)`
/// through `$helper` (`bidi` with its keep-open flag, or `server_stream`).
macro_rules! stream_route {
    ($router:expr, $path:literal, $svc:path, $method:ident, bidi($keep:expr)) => {
        $router.route(
            $path,
            axum::routing::post(
                |axum::extract::State(node): axum::extract::State<$crate::http::gateway::Gw>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let svc = $svc(node.clone());
                    $crate::http::gateway::stream::bidi(&node, &headers, &body, $keep, |r| {
                        svc.$method(r)
                    })
                    .await
                },
            )
            .fallback($crate::http::gateway::reply::other_method),
        )
    };
    ($router:expr, $path:literal, $svc:path, $method:ident, server_stream) => {
        $router.route(
            $path,
            axum::routing::post(
                |axum::extract::State(node): axum::extract::State<$crate::http::gateway::Gw>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let svc = $svc(node.clone());
                    $crate::http::gateway::stream::server_stream(&node, &headers, &body, |r| {
                        svc.$method(r)
                    })
                    .await
                },
            )
            .fallback($crate::http::gateway::reply::other_method),
        )
    };
}
pub(crate) use stream_route;
