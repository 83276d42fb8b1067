//! The HTTP/2 connection a member keeps to each peer, driven with the `h2`
//! crate directly (the design of kv-client's `conn.rs`, cut to what the
//! peer API needs).
//!
//! Why not tonic's `Channel`: it hands every call to its `Buffer` worker
//! task, which hands it to hyper's connection task, which spawns a task for
//! the request body and answers through a oneshot: several task hand-offs
//! (each a wake, often across threads) per forwarded write and per
//! AppendEntries. Here the calling task opens the stream, writes the
//! request's body and awaits the response itself; the only other task is
//! the connection's, which does the socket I/O.
//!
//! Kept from `Channel`: a lazy connect and a reconnect after the connection
//! broke (a request that may have been sent is never retried), the connect
//! timeout, TCP_NODELAY, HTTP/2 keep-alive pings that close a connection
//! whose peer stopped answering, and hyper's window sizes. An https peer
//! URL still goes through tonic's `Channel` ([`PeerConn::Tonic`]) with the
//! peer TLS settings `crate::tls` installs.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http_body::{Body as _, Frame};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tonic::body::Body;
use tonic::codegen::http::{self, uri, Uri};
use tonic::codegen::{BoxFuture, Service, StdError};
use tonic::transport::Channel;

/// hyper's HTTP/2 client defaults (what tonic's `Channel` used).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;

/// How a connection is made and kept.
#[derive(Clone, Copy)]
pub(super) struct Settings {
    pub connect_timeout: Duration,
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
}

/// The transport of one peer: our own HTTP/2 connection for an http URL,
/// tonic's `Channel` (with the peer TLS settings) for an https one.
#[derive(Clone)]
pub enum PeerConn {
    H2(Conn),
    Tonic(Channel),
}

/// A lazily (re)connected HTTP/2 connection to one peer URL (plaintext).
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Conn {
    inner: Arc<Inner>,
}

struct Inner {
    scheme: uri::Scheme,
    authority: uri::Authority,
    /// Host (without IPv6 brackets) and port to dial.
    host: String,
    port: u16,
    settings: Settings,
    /// The live connection's handle, if any.
    current: Mutex<Option<SendRequest<Bytes>>>,
    /// Held while connecting, so concurrent calls share one attempt.
    connecting: Arc<tokio::sync::Mutex<()>>,
}

impl Conn {
    /// Checks an `http://host:port` URL; does not connect.
    pub(super) fn new(url: &str, settings: Settings) -> Result<Conn, String> {
        let bad = |why: &dyn std::fmt::Display| format!("bad peer URL {url:?}: {why}");
        let parsed: Uri = url.parse().map_err(|e| bad(&e))?;
        let scheme = parsed.scheme().cloned().ok_or_else(|| bad(&"no scheme"))?;
        if scheme != uri::Scheme::HTTP {
            return Err(bad(&"not an http URL"));
        }
        let authority = parsed.authority().cloned().ok_or_else(|| bad(&"no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Conn {
            inner: Arc::new(Inner {
                scheme,
                authority,
                host,
                port,
                settings,
                current: Mutex::new(None),
                connecting: Arc::default(),
            }),
        })
    }

    /// Sends one request and returns the response once its headers came.
    async fn send(&self, req: http::Request<Body>) -> Result<http::Response<Body>, StdError> {
        let (mut parts, mut body) = req.into_parts();
        // h2 takes `:scheme` and `:authority` from the URI.
        let mut uri = uri::Parts::default();
        uri.scheme = Some(self.inner.scheme.clone());
        uri.authority = Some(self.inner.authority.clone());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = Uri::from_parts(uri)?;
        let mut sender = self.ready().await?;
        let end = body.is_end_stream();
        let (response, mut stream) =
            sender.send_request(http::Request::from_parts(parts, ()), end)?;
        let mut send_failed = None;
        if !end {
            // Peer calls are unary: the body (one message) is ready at once.
            match write_body(&mut body, &mut stream).await {
                Ok(()) => {}
                Err(Write::Body(status)) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    return Err(status.into());
                }
                // The server may answer and close the stream before the
                // end of the request body went out: its response (or why
                // there is none) tells.
                Err(Write::Send(e)) => send_failed = Some(e),
            }
        }
        let (parts, recv) = match response.await {
            Ok(response) => response.into_parts(),
            Err(e) => {
                if let Some(sent) = send_failed {
                    tracing::debug!(%sent, "peer request body not fully sent");
                }
                return Err(e.into());
            }
        };
        Ok(http::Response::from_parts(
            parts,
            Body::new(RecvBody {
                recv,
                data_done: false,
            }),
        ))
    }

    /// The live connection, ready for a new stream; connects when there is
    /// none or it broke. A failure to connect comes as
    /// [`tonic::ConnectError`] (Unavailable, as `Channel` reported it): the
    /// request was surely not sent.
    async fn ready(&self) -> Result<SendRequest<Bytes>, StdError> {
        if let Some(sender) = self.current_ready().await {
            return Ok(sender);
        }
        let one = Arc::clone(&self.inner.connecting).lock_owned().await;
        // Another call may have connected meanwhile.
        if let Some(sender) = self.current_ready().await {
            return Ok(sender);
        }
        // The attempt runs in its own task, so a caller whose (short, a
        // heartbeat's) deadline ends mid-connect does not cancel it: the
        // next call finds the connection made.
        let conn = self.clone();
        let attempt = tokio::spawn(async move {
            let _one = one;
            let timeout = conn.inner.settings.connect_timeout;
            let sender = tokio::time::timeout(timeout, conn.connect())
                .await
                .unwrap_or_else(|_| {
                    Err(
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                            .into(),
                    )
                })?;
            *conn.inner.current.lock() = Some(sender.clone());
            Ok::<_, StdError>(sender)
        });
        let sender = attempt
            .await
            .map_err(|e| tonic::ConnectError(e.into()))?
            .map_err(tonic::ConnectError)?;
        Ok(sender.ready().await?)
    }

    /// The live connection once ready for a stream; `None` if there is none
    /// or it broke.
    async fn current_ready(&self) -> Option<SendRequest<Bytes>> {
        let sender = self.inner.current.lock().clone()?;
        sender.ready().await.ok()
    }

    async fn connect(&self) -> Result<SendRequest<Bytes>, StdError> {
        let inner = &self.inner;
        let tcp = TcpStream::connect((inner.host.as_str(), inner.port)).await?;
        tcp.set_nodelay(true)?;
        let (sender, mut connection) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .handshake::<_, Bytes>(tcp)
            .await?;
        let pings = connection.ping_pong();
        let settings = inner.settings;
        let authority = inner.authority.clone();
        tokio::spawn(async move {
            let keep_alive = async {
                let Some(mut pings) = pings else {
                    return std::future::pending().await;
                };
                loop {
                    tokio::time::sleep(settings.keep_alive_interval).await;
                    let pong = pings.ping(h2::Ping::opaque());
                    match tokio::time::timeout(settings.keep_alive_timeout, pong).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            tracing::warn!(peer = %authority, "keep-alive ping unanswered: closing the peer connection");
                            return;
                        }
                    }
                }
            };
            // Dropping the connection (keep-alive failed) fails its streams.
            tokio::select! {
                done = connection => if let Err(e) = done {
                    tracing::debug!(peer = %authority, %e, "peer connection closed");
                },
                () = keep_alive => {}
            }
        });
        Ok(sender)
    }
}

/// Why a request body was not written.
enum Write {
    /// The body itself failed (say, a message too large to encode).
    Body(tonic::Status),
    /// The stream would not take it.
    Send(h2::Error),
}

/// Writes a request body. The last data frame carries the end of the
/// stream, so the connection task is woken once for the body rather than
/// for its data and again for its end.
async fn write_body(body: &mut Body, stream: &mut h2::SendStream<Bytes>) -> Result<(), Write> {
    let mut held: Option<Bytes> = None;
    loop {
        let frame = match poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
            None => {
                let last = held.unwrap_or_default();
                return stream.send_data(last, true).map_err(Write::Send);
            }
            Some(Err(status)) => return Err(Write::Body(status)),
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                if let Some(previous) = held.replace(data) {
                    stream.send_data(previous, false).map_err(Write::Send)?;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    if let Some(previous) = held.take() {
                        stream.send_data(previous, false).map_err(Write::Send)?;
                    }
                    return stream.send_trailers(trailers).map_err(Write::Send);
                }
            }
        }
    }
}

/// A response body read straight from the h2 stream, giving the window
/// back as data is taken.
struct RecvBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
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
