//! One HTTP/2 connection per endpoint, driven with the `h2` crate directly.
//!
//! Why not tonic's `Channel`: it hands every request to a `Buffer` worker
//! task, which hands it to hyper's connection task, which spawns one task
//! for the request body and one for the response and answers through a
//! oneshot: four task hand-offs (each a wake, often across threads) before
//! a byte is written. Here the calling task opens the stream, writes a
//! unary request's body itself and awaits the response itself; the only
//! other task is the connection's, which does the socket I/O. A streaming
//! request body (watch, lease keep-alive) gets a task of its own, as it
//! must outlive the call.
//!
//! What `Channel` did that this keeps: connect lazily and again after the
//! connection broke (never retrying a request that may have been sent),
//! the connect timeout (covering TCP and TLS), TCP_NODELAY, HTTP/2
//! keep-alive pings that close a connection whose peer stopped answering,
//! TLS with rustls (ALPN `h2`), and hyper's HTTP/2 window sizes.
//!
//! kvd's members use it for their peer calls too (one transport to keep).
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::time::Duration;
//! use kv_client::conn::{Conn, Settings};
//! let settings = Settings {
//!     connect_timeout: Duration::from_secs(1),
//!     keep_alive_interval: Duration::from_secs(5),
//!     keep_alive_timeout: Duration::from_secs(5),
//! };
//! let conn = Conn::plaintext("http://127.0.0.1:2379", settings)?;
//! // A tonic client over it: every call shares the one connection.
//! let mut kv = kv_proto::etcdserverpb::kv_client::KvClient::new(conn);
//! # Ok(()) }
//! ```

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http_body::{Body as _, Frame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;
use tonic::body::Body;
use tonic::codegen::http::{self, Uri, uri};
use tonic::codegen::{BoxFuture, Service, StdError};

use crate::error::Error;
use crate::tls::Connector;

/// hyper's HTTP/2 client defaults (what tonic's `Channel` used).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
/// The shortest keep-alive interval used, whatever is configured.
const MIN_KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(10);

/// How a connection is made and kept.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Bounds TCP connect plus TLS and HTTP/2 handshakes.
    pub connect_timeout: Duration,
    /// How often an HTTP/2 ping checks the peer.
    pub keep_alive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keep_alive_timeout: Duration,
}

/// A lazily (re)connected HTTP/2 connection to one endpoint. Cheap to
/// clone; clones share the connection.
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
    tls: Option<Connector>,
    settings: Settings,
    /// The live connection's handle, if any.
    current: Mutex<Option<SendRequest<Bytes>>>,
    /// Held while connecting, so concurrent calls share one attempt.
    connecting: Arc<tokio::sync::Mutex<()>>,
}

impl Conn {
    /// Checks the endpoint URI (`http://host:port` or `https://...`); does
    /// not connect.
    pub(crate) fn new(
        endpoint: &str,
        tls: Option<Connector>,
        settings: Settings,
    ) -> Result<Conn, Error> {
        let bad = |why: &dyn std::fmt::Display| {
            Error::Config(format!("bad endpoint {endpoint:?}: {why}"))
        };
        let parsed: Uri = endpoint.parse().map_err(|e| bad(&e))?;
        let scheme = parsed.scheme().cloned().ok_or_else(|| bad(&"no scheme"))?;
        let authority = parsed.authority().cloned().ok_or_else(|| bad(&"no host"))?;
        let https = scheme == uri::Scheme::HTTPS;
        if !https && scheme != uri::Scheme::HTTP {
            return Err(bad(&"the scheme must be http or https"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
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
                tls: if https { tls } else { None },
                settings,
                current: Mutex::new(None),
                connecting: Arc::default(),
            }),
        })
    }

    /// A plaintext connection to `http://host:port` (an https endpoint
    /// needs the client's TLS settings: [`crate::Client`] makes those);
    /// does not connect.
    pub fn plaintext(endpoint: &str, settings: Settings) -> Result<Conn, Error> {
        if !endpoint.starts_with("http://") {
            return Err(Error::Config(format!(
                "bad endpoint {endpoint:?}: not an http URL"
            )));
        }
        Conn::new(endpoint, None, settings)
    }

    /// Sends one request and returns the response once its headers came.
    pub async fn send(&self, req: http::Request<Body>) -> Result<http::Response<Body>, StdError> {
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
        let mut pipe = None;
        let mut send_failed = None;
        if !end {
            // A unary body is ready at once: write it from this task, its
            // last data frame carrying the end of the stream (the
            // connection task is then woken once for the body, not again
            // for an empty end frame). Whatever is not ready yet (a
            // stream) is piped by a task.
            //
            // A send may fail because a gRPC server answered a unary call
            // and closed the stream (RST_STREAM NO_ERROR) before the end
            // of the request body went out: the stream is gone here but
            // its response came. The response (or why there is none) tells.
            let mut held: Option<Bytes> = None;
            loop {
                let next = poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Pending => Poll::Ready(None),
                    Poll::Ready(frame) => Poll::Ready(Some(frame)),
                })
                .await;
                let sent = match next {
                    None => {
                        if let Some(Err(e)) = held.take().map(|d| stream.send_data(d, false)) {
                            send_failed = Some(e.into());
                            break;
                        }
                        let task = tokio::spawn(pipe_body(body, stream));
                        pipe = Some(task.abort_handle());
                        break;
                    }
                    Some(None) => stream
                        .send_data(held.take().unwrap_or_default(), true)
                        .map(|()| false)
                        .map_err(Into::into),
                    Some(Some(Err(status))) => {
                        stream.send_reset(h2::Reason::CANCEL);
                        return Err(status.into());
                    }
                    Some(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => held
                            .replace(data)
                            .map_or(Ok(()), |d| stream.send_data(d, false))
                            .map(|()| true)
                            .map_err(Into::into),
                        // Trailers, after the data held.
                        Err(frame) => held
                            .take()
                            .map_or(Ok(()), |d| stream.send_data(d, false))
                            .map_err(Into::into)
                            .and_then(|()| send_frame(&mut stream, Some(Ok(frame)))),
                    },
                };
                match sent {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        send_failed = Some(e);
                        break;
                    }
                }
            }
        }
        let guard = PipeGuard(pipe);
        let (parts, recv) = match response.await {
            Ok(response) => response.into_parts(),
            Err(e) => {
                if let Some(sent) = send_failed {
                    tracing::debug!(%sent, "request body not fully sent");
                }
                return Err(e.into());
            }
        };
        Ok(http::Response::from_parts(
            parts,
            Body::new(RecvBody {
                recv,
                data_done: false,
                _pipe: guard,
            }),
        ))
    }

    /// The live connection, ready for a new stream; connects when there
    /// is none or it broke. A failure to connect comes as
    /// [`tonic::ConnectError`]: the request was surely not sent.
    async fn ready(&self) -> Result<SendRequest<Bytes>, StdError> {
        if let Some(sender) = self.current_ready().await {
            return Ok(sender);
        }
        let one = Arc::clone(&self.inner.connecting).lock_owned().await;
        // Another call may have connected meanwhile.
        if let Some(sender) = self.current_ready().await {
            return Ok(sender);
        }
        // The attempt runs in a task of its own, so a caller whose deadline
        // (a member's heartbeat: short) ends mid-connect does not cancel it
        // for the calls after it.
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
            *conn.lock() = Some(sender.clone());
            Ok::<_, StdError>(sender)
        });
        let sender = attempt
            .await
            .map_err(|e| tonic::ConnectError(e.into()))?
            .map_err(tonic::ConnectError)?;
        Ok(sender.ready().await?)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SendRequest<Bytes>>> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The live connection once ready for a stream; `None` if there is
    /// none or it broke.
    async fn current_ready(&self) -> Option<SendRequest<Bytes>> {
        let sender = self.lock().clone()?;
        sender.ready().await.ok()
    }

    async fn connect(&self) -> Result<SendRequest<Bytes>, StdError> {
        let inner = &self.inner;
        let tcp = TcpStream::connect((inner.host.as_str(), inner.port)).await?;
        tcp.set_nodelay(true)?;
        match &inner.tls {
            None => self.handshake(tcp).await,
            Some(tls) => self.handshake(tls.connect(&inner.host, tcp).await?).await,
        }
    }

    async fn handshake<T>(&self, io: T) -> Result<SendRequest<Bytes>, StdError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, mut connection) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .handshake::<_, Bytes>(io)
            .await?;
        let pings = connection.ping_pong();
        let settings = self.inner.settings;
        let authority = self.inner.authority.clone();
        tokio::spawn(async move {
            let keep_alive = async {
                let Some(mut pings) = pings else {
                    return std::future::pending().await;
                };
                // A zero interval must not spin.
                let interval = settings.keep_alive_interval.max(MIN_KEEP_ALIVE_INTERVAL);
                loop {
                    tokio::time::sleep(interval).await;
                    let pong = pings.ping(h2::Ping::opaque());
                    match tokio::time::timeout(settings.keep_alive_timeout, pong).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            tracing::warn!(endpoint = %authority, "keep-alive ping unanswered: closing the connection");
                            return;
                        }
                    }
                }
            };
            // Dropping the connection (keep-alive failed) fails its streams.
            tokio::select! {
                done = connection => if let Err(e) = done {
                    tracing::debug!(endpoint = %authority, %e, "connection closed");
                },
                () = keep_alive => {}
            }
        });
        Ok(sender)
    }
}

/// Writes one body frame; `false` once the body is complete.
fn send_frame(
    stream: &mut h2::SendStream<Bytes>,
    frame: Option<Result<Frame<Bytes>, tonic::Status>>,
) -> Result<bool, StdError> {
    match frame {
        None => {
            stream.send_data(Bytes::new(), true)?;
            Ok(false)
        }
        Some(Err(status)) => {
            stream.send_reset(h2::Reason::CANCEL);
            Err(status.into())
        }
        Some(Ok(frame)) => match frame.into_data() {
            Ok(data) => {
                stream.send_data(data, false)?;
                Ok(true)
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    stream.send_trailers(trailers)?;
                    return Ok(false);
                }
                Ok(true)
            }
        },
    }
}

/// Pipes a streaming request body, waiting for flow-control capacity so
/// nothing piles up in h2's buffers.
async fn pipe_body(mut body: Body, mut stream: h2::SendStream<Bytes>) {
    loop {
        let frame = tokio::select! {
            frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)) => frame,
            // The server ended the stream: nothing more to send.
            _ = poll_fn(|cx| stream.poll_reset(cx)) => return,
        };
        let data = match frame {
            Some(Ok(frame)) if frame.is_data() => match frame.into_data() {
                Ok(data) => data,
                Err(_) => return,
            },
            other => {
                let _ = send_frame(&mut stream, other);
                return;
            }
        };
        let mut data = data;
        while !data.is_empty() {
            stream.reserve_capacity(data.len());
            let granted = match poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(n)) if n > 0 => n,
                Some(Ok(_)) => continue,
                _ => return,
            };
            let chunk = data.split_to(granted.min(data.len()));
            if stream.send_data(chunk, false).is_err() {
                return;
            }
        }
    }
}

/// Stops a streaming request's pipe task when the response is dropped:
/// the stream is then reset rather than left half-open.
struct PipeGuard(Option<AbortHandle>);

impl Drop for PipeGuard {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// A response body read straight from the h2 stream, giving the window
/// back as data is taken.
struct RecvBody {
    recv: h2::RecvStream,
    data_done: bool,
    _pipe: PipeGuard,
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

impl Service<http::Request<Body>> for Conn {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    /// Readiness is awaited per call, in [`Conn::send`].
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let conn = self.clone();
        Box::pin(async move { conn.send(req).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unary request body whose end comes late: its last poll blocks the
    /// calling thread, so the server's answer and reset arrive first.
    struct LateEnd(u8);

    impl http_body::Body for LateEnd {
        type Data = Bytes;
        type Error = tonic::Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
            self.0 += 1;
            if self.0 == 1 {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"request")))));
            }
            std::thread::sleep(Duration::from_millis(300));
            Poll::Ready(None)
        }
    }

    /// gRPC servers (grpc-go's, so etcd's) answer a unary call once its
    /// message is in and then reset the stream with NO_ERROR if the client
    /// has not ended its side yet. The answer must reach the caller, not
    /// the failure to send the body's end on a closed stream.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answer_before_the_request_ended_is_delivered() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(tcp).await.unwrap();
            let (req, mut respond) = conn.accept().await.unwrap().unwrap();
            let driver = tokio::spawn(async move { while conn.accept().await.is_some() {} });
            let mut body = req.into_body();
            let first = body.data().await.unwrap().unwrap();
            assert_eq!(&first[..], b"request");
            let response = http::Response::builder().status(200).body(()).unwrap();
            let mut send = respond.send_response(response, false).unwrap();
            send.send_data(Bytes::from_static(b"answer"), false)
                .unwrap();
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            send.send_trailers(trailers).unwrap();
            // Dropping the stream while the client's side is open makes h2
            // reset it once the answer is written (an explicit reset now
            // would discard the answer still queued).
            drop((send, body, respond));
            // Keep the connection up until the client is done.
            let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
        });
        let settings = Settings {
            connect_timeout: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(60),
            keep_alive_timeout: Duration::from_secs(20),
        };
        let conn = Conn::new(&format!("http://{addr}"), None, settings).unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri("/test.Service/Call")
            .body(Body::new(LateEnd(0)))
            .unwrap();
        let response = conn.send(req).await.expect("the server's answer");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut got = Vec::new();
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            if let Ok(data) = frame.unwrap().into_data() {
                got.extend_from_slice(&data);
            }
        }
        assert_eq!(got, b"answer");
        server.abort();
    }
}
