//! etcdserverpb.Watch: one bidirectional stream carrying many watchers.
//!
//! Requests are read only while the stream's response queue has room: a
//! client that sends faster than it reads is held back by HTTP/2 flow
//! control instead of growing the queue (etcd's recvLoop blocks the same way
//! on its control channel).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use kv_proto::etcdserverpb::watch_request::RequestUnion;
use kv_proto::etcdserverpb::watch_server::Watch;
use kv_proto::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::Notify;
use tonic::{Request, Response, Status, Streaming};

use crate::node::Node;
use crate::watch::{Receiver, MAX_PENDING_RESPONSES};

pub struct WatchService(pub Arc<Node>);

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        let mut inbound = req.into_inner();
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
        Ok(Response::new(Box::pin(Outbound {
            rx: handle.rx,
            room,
        })))
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

/// The response stream handed to tonic.
struct Outbound {
    rx: Receiver,
    room: Arc<Room>,
}

impl Stream for Outbound {
    type Item = Result<WatchResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let r = std::task::ready!(self.rx.poll_recv(cx));
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
