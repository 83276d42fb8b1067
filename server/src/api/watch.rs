//! etcdserverpb.Watch: one bidirectional stream carrying many watchers.
//!
//! Requests are read only while the stream's response queue has room: a
//! client that sends faster than it reads is held back by HTTP/2 flow
//! control instead of growing the queue (etcd's recvLoop blocks the same way
//! on its control channel).
//!
//! gRPC clients are served by [`WatchGrpc`], etcdserverpb.Watch with a codec
//! of its own: an event response is written from its pick's encoding,
//! shared by every watcher that picked the same events (watch/wire.rs),
//! instead of being built and encoded once per watcher. The HTTP gateway
//! calls [`WatchService`] (the generated trait) and gets messages.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use kv_proto::etcdserverpb::watch_request::RequestUnion;
use kv_proto::etcdserverpb::watch_server::Watch;
use kv_proto::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::Notify;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, StdError};
use tonic::{Request, Response, Status, Streaming};

use super::nudge::Handed;
use crate::node::Node;
use crate::watch::{Outgoing, Receiver, MAX_PENDING_RESPONSES};

pub struct WatchService(pub Arc<Node>);

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        let out = self.open(req.into_inner());
        Ok(Response::new(Box::pin(
            out.map(|r| r.map(Outgoing::into_response)),
        )))
    }
}

impl WatchService {
    /// Serves one watch stream: its requests are read by a task of their
    /// own; the returned stream yields its responses. Called within the
    /// request (the stream's creates are checked with its token).
    fn open(&self, mut inbound: Streaming<WatchRequest>) -> Outbound {
        let hub = self.0.hub().clone();
        // Creates arrive on the stream later, outside this call: each is
        // checked with the token the stream was opened with (etcd's rule).
        let token = crate::auth::current_token();
        let node = self.0.clone();
        let handle = hub.open_stream();
        let id = handle.id;
        let room = Arc::new(Room {
            pending: handle.pending,
            freed: Notify::new(),
            closed: AtomicBool::new(false),
            error: parking_lot::Mutex::new(None),
        });
        let reader_room = room.clone();
        tokio::spawn(async move {
            while reader_room.wait().await {
                let msg = match inbound.message().await {
                    Ok(Some(msg)) => msg,
                    Ok(None) => break,
                    Err(e) => {
                        // etcd ends the stream with the receive error (an
                        // oversized request: grpc-go's ResourceExhausted).
                        let e = crate::grpc::grpc_go_stream_status(&e).unwrap_or(e);
                        *reader_room.error.lock() = Some(e);
                        break;
                    }
                };
                match msg.request_union {
                    Some(RequestUnion::CreateRequest(c)) => {
                        match node.watch_permitted(&token, &c) {
                            Ok(()) => hub.create(id, &c),
                            Err(reason) => hub.refuse(id, reason),
                        }
                    }
                    Some(RequestUnion::CancelRequest(c)) => hub.cancel(id, c.watch_id),
                    Some(RequestUnion::ProgressRequest(_)) => hub.progress(id),
                    None => {}
                }
            }
            hub.close_stream(id);
        });
        Outbound {
            rx: handle.rx,
            room,
            nudge: false,
            handed: Handed::Idle,
        }
    }
}

/// The free room in one stream's response queue, shared by its request
/// reader (which waits for it) and its response writer (which frees it).
struct Room {
    /// Responses queued and not yet taken by the writer.
    pending: Arc<AtomicUsize>,
    freed: Notify,
    /// The writer is gone (the client went away).
    closed: AtomicBool,
    /// Why the reader stopped, if it failed: the stream ends with it once
    /// the queued responses are out.
    error: parking_lot::Mutex<Option<Status>>,
}

impl Room {
    /// Waits until the queue has room for one more control response; false
    /// once the writer is gone.
    async fn wait(&self) -> bool {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the checks, so a wake-up between them is kept.
            freed.as_mut().enable();
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            if self.pending.load(Ordering::Acquire) < MAX_PENDING_RESPONSES {
                return true;
            }
            freed.await;
        }
    }
}

/// The responses of one stream, as taken out of its queue.
struct Outbound {
    rx: Receiver,
    room: Arc<Room>,
    /// Set for gRPC streams: see api/nudge.rs.
    nudge: bool,
    /// Where the writer is in handing responses over (see api/nudge.rs).
    handed: Handed,
}

impl Stream for Outbound {
    type Item = Result<Outgoing, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Poll::Ready(r) = self.rx.poll_recv(cx) else {
            if self.nudge {
                self.handed.pending();
            }
            return Poll::Pending;
        };
        self.handed = Handed::Taken;
        if r.is_none() {
            // The queue closes after the reader stopped: with its error, if any.
            return Poll::Ready(self.room.error.lock().take().map(Err));
        }
        // The reader waits only while the queue is full: wake it when this
        // take makes room, not on every response (notify_waiters takes a
        // lock, and this runs once per response sent).
        if self.room.pending.fetch_sub(1, Ordering::AcqRel) >= MAX_PENDING_RESPONSES {
            self.room.freed.notify_waiters();
        }
        Poll::Ready(r.map(Ok))
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        self.room.closed.store(true, Ordering::Release);
        self.room.freed.notify_waiters();
    }
}

/// etcdserverpb.Watch for gRPC clients: [`WatchService`]'s streams,
/// written by [`WatchCodec`] (what the generated `WatchServer` does, with
/// prost's codec replaced).
#[derive(Clone)]
pub(crate) struct WatchGrpc {
    svc: Arc<WatchService>,
    /// Largest request accepted, framing included.
    max_decoding: usize,
}

impl WatchGrpc {
    pub(crate) fn new(node: Arc<Node>, max_decoding: usize) -> Self {
        WatchGrpc {
            svc: Arc::new(WatchService(node)),
            max_decoding,
        }
    }
}

impl tonic::server::NamedService for WatchGrpc {
    const NAME: &'static str = "etcdserverpb.Watch";
}

impl<B> tower::Service<http::Request<B>> for WatchGrpc
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != "/etcdserverpb.Watch/Watch" {
            // As the generated server answers a method it does not have.
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let (svc, max) = (self.svc.clone(), self.max_decoding);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(WatchCodec)
                .apply_max_message_size_config(Some(max), Some(usize::MAX));
            Ok(grpc.streaming(Streams(svc), req).await)
        })
    }
}

/// Opens a watch stream per call.
struct Streams(Arc<WatchService>);

impl tonic::server::StreamingService<WatchRequest> for Streams {
    type Response = Outgoing;
    type ResponseStream = Outbound;
    type Future = std::future::Ready<Result<Response<Outbound>, Status>>;

    fn call(&mut self, req: Request<Streaming<WatchRequest>>) -> Self::Future {
        let mut out = self.0.open(req.into_inner());
        out.nudge = true;
        std::future::ready(Ok(Response::new(out)))
    }
}

/// Every stream holds its codec's buffers, so they are kept small (10k
/// watchers on 1k streams held ~38 MiB in tonic's defaults of 8 KiB to
/// read and up to 32 KiB + a response to write, per stream; heaptrack).
/// Requests are small (a create is mostly its key) and the read buffer
/// grows in these steps for a large one.
const REQUEST_BUFFER_BYTES: usize = 1024;
/// The write buffer's first size.
const RESPONSE_BUFFER_BYTES: usize = 4096;
/// Responses are handed to HTTP/2 once this much is encoded: one DATA frame
/// at HTTP/2's default largest frame size (16 KiB), so no more frames than
/// with a larger batch.
const RESPONSE_BATCH_BYTES: usize = 16 * 1024;

/// Prost's decoder for requests; responses are written by [`Outgoing::encode`].
struct WatchCodec;

impl Codec for WatchCodec {
    type Encode = Outgoing;
    type Decode = WatchRequest;
    type Encoder = WatchEncoder;
    type Decoder = tonic_prost::ProstDecoder<WatchRequest>;

    fn encoder(&mut self) -> WatchEncoder {
        WatchEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(BufferSettings::new(
            REQUEST_BUFFER_BYTES,
            RESPONSE_BATCH_BYTES,
        ))
    }
}

struct WatchEncoder;

impl Encoder for WatchEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(RESPONSE_BUFFER_BYTES, RESPONSE_BATCH_BYTES)
    }
}
