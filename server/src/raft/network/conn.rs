//! The transport of a member's peer calls: kv-client's own HTTP/2
//! connection (`kv_client::conn`) for an http peer URL, tonic's `Channel`
//! with the peer TLS settings for an https one.
//!
//! Why not tonic's `Channel` everywhere: it hands every call to its
//! `Buffer` worker task, which hands it to hyper's connection task, which
//! spawns a task for the request body and answers through a oneshot:
//! several task hand-offs (each a wake, often across threads) per forwarded
//! write and per AppendEntries. kv-client's connection has the calling task
//! open the stream, write the request and await the response itself; the
//! only other task is the connection's, which does the socket I/O. It keeps
//! what `Channel` gave the peer calls: a lazy connect and a reconnect after
//! the connection broke (a request that may have been sent is never
//! retried), the connect timeout, TCP_NODELAY, HTTP/2 keep-alive pings and
//! hyper's window sizes.

use std::task::{Context, Poll};

use kv_client::conn::Conn;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::{BoxFuture, Service, StdError};
use tonic::transport::Channel;

/// The transport of one peer: our own HTTP/2 connection for an http URL,
/// tonic's `Channel` (with the peer TLS settings) for an https one.
#[derive(Clone)]
pub enum PeerConn {
    H2(Conn),
    Tonic(Channel),
}

impl Service<http::Request<Body>> for PeerConn {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    /// Our own connection's readiness is awaited per call, in `Conn::send`;
    /// `Channel` (a buffer) must be polled ready before each call.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            PeerConn::H2(_) => Poll::Ready(Ok(())),
            PeerConn::Tonic(ch) => ch.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        match self {
            PeerConn::H2(conn) => {
                let conn = conn.clone();
                Box::pin(async move { conn.send(req).await })
            }
            PeerConn::Tonic(ch) => {
                let call = ch.call(req);
                Box::pin(async move { call.await.map_err(Into::into) })
            }
        }
    }
}
