//! One instance's connection: made eagerly, watched for loss, remade with
//! backoff. Calls may use it only while it is connected.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use kv_client::retry::Backoff;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tonic::transport::{Channel, Endpoint};
use tower::Service;

use super::{BoxError, InstanceState, Pool};

/// An instance in the balancer.
pub(super) struct Member {
    id: String,
    uri: String,
    slot: StdMutex<Slot>,
    in_flight: AtomicUsize,
    calls: AtomicU64,
    /// Wakes the connection task after a call failed at the transport level.
    failed: Notify,
}

struct Slot {
    /// Counts connections, so a late failure report about an old one
    /// cannot take down a newer one.
    generation: u64,
    /// `Some` while connected: only then may calls use it.
    channel: Option<Channel>,
}

impl Member {
    pub(super) fn new(id: String, uri: String) -> Member {
        Member {
            id,
            uri,
            slot: StdMutex::new(Slot {
                generation: 0,
                channel: None,
            }),
            in_flight: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            failed: Notify::new(),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn uri(&self) -> &str {
        &self.uri
    }

    /// The connection and its generation, if connected.
    pub(super) fn channel(&self) -> Option<(u64, Channel)> {
        let slot = self.slot();
        slot.channel.clone().map(|c| (slot.generation, c))
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a call until the guard drops.
    pub(super) fn begin_call(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// A call on connection `generation` failed with `err`: unless it only
    /// timed out, stop choosing this instance until it is reconnected.
    /// Runs before the caller sees the error, so its next call goes elsewhere.
    pub(super) fn call_failed(&self, generation: u64, err: &tonic::transport::Error) {
        if is_timeout(err) {
            return;
        }
        let mut slot = self.slot();
        if slot.generation == generation && slot.channel.take().is_some() {
            drop(slot);
            tracing::info!(id = %self.id, uri = %self.uri, %err, "call failed; reconnecting to the instance");
            self.failed.notify_one();
        }
    }

    pub(super) fn state(&self) -> InstanceState {
        InstanceState {
            id: self.id.clone(),
            uri: self.uri.clone(),
            connected: self.slot().channel.is_some(),
            in_flight: self.in_flight(),
            calls: self.calls.load(Ordering::Relaxed),
        }
    }

    fn set_connected(&self, channel: Channel) -> u64 {
        let mut slot = self.slot();
        slot.generation += 1;
        slot.channel = Some(channel);
        slot.generation
    }

    /// Whether connection `generation` is still the usable one.
    fn is_connected(&self, generation: u64) -> bool {
        let slot = self.slot();
        slot.generation == generation && slot.channel.is_some()
    }

    fn set_down(&self, generation: u64) {
        let mut slot = self.slot();
        if slot.generation == generation {
            slot.channel = None;
        }
    }
}

/// A call in flight on a [`Member`].
pub(super) struct InFlight<'a>(&'a Member);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a transport error is a deadline (the instance may be fine).
fn is_timeout(err: &tonic::transport::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Keeps `member` connected while it is in the pool (the pool aborts this
/// task when the instance goes): connects, waits until the connection
/// closes or a call on it fails, and connects again, with backoff between
/// failed attempts.
pub(super) async fn supervise(
    member: Arc<Member>,
    endpoint: Endpoint,
    pool: Weak<Pool>,
    mut backoff: Backoff,
) {
    loop {
        let closed = Arc::new(Notify::new());
        let connector = TrackingConnector::new(&endpoint, closed.clone());
        let channel = match endpoint.connect_with_connector(connector).await {
            Ok(channel) => channel,
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::debug!(id = %member.id, uri = %member.uri, %e, ?wait, "cannot connect to the instance");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        backoff.reset();
        let generation = member.set_connected(channel);
        tracing::debug!(id = %member.id, uri = %member.uri, "connected to the instance");
        if let Some(pool) = pool.upgrade() {
            pool.notify_ready();
        }
        let why = loop {
            tokio::select! {
                _ = closed.notified() => break "connection closed",
                _ = member.failed.notified() => {
                    if !member.is_connected(generation) {
                        break "a call failed";
                    }
                }
            }
        };
        member.set_down(generation);
        tracing::info!(id = %member.id, uri = %member.uri, why, "instance connection lost; reconnecting");
    }
}

/// hyper-util's TCP connector, set up from the endpoint as tonic sets up
/// its own, whose connections report when they close.
#[derive(Clone)]
struct TrackingConnector {
    http: HttpConnector,
    closed: Arc<Notify>,
}

impl TrackingConnector {
    fn new(ep: &Endpoint, closed: Arc<Notify>) -> TrackingConnector {
        let mut http = HttpConnector::new();
        // tonic's own connector does the same: https is layered on top.
        http.enforce_http(false);
        http.set_nodelay(ep.get_tcp_nodelay());
        http.set_keepalive(ep.get_tcp_keepalive());
        http.set_keepalive_interval(ep.get_tcp_keepalive_interval());
        http.set_keepalive_retries(ep.get_tcp_keepalive_retries());
        http.set_connect_timeout(ep.get_connect_timeout());
        TrackingConnector { http, closed }
    }
}

impl Service<Uri> for TrackingConnector {
    type Response = TokioIo<Tracked>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connect = self.http.call(uri);
        let closed = self.closed.clone();
        Box::pin(async move {
            let io = connect.await?.into_inner();
            Ok(TokioIo::new(Tracked {
                io,
                closed: Some(closed),
            }))
        })
    }
}

/// A TCP stream that signals, once, when it reaches end of stream, fails,
/// or is dropped.
pub(super) struct Tracked {
    io: TcpStream,
    closed: Option<Arc<Notify>>,
}

impl Tracked {
    fn fire(&mut self) {
        if let Some(closed) = self.closed.take() {
            closed.notify_one();
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.fire();
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let (before, had_room) = (buf.filled().len(), buf.remaining() > 0);
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        match &res {
            Poll::Ready(Ok(())) if had_room && buf.filled().len() == before => self.fire(),
            Poll::Ready(Err(_)) => self.fire(),
            _ => {}
        }
        res
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Err(_))) {
            self.fire();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Err(_))) {
            self.fire();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
