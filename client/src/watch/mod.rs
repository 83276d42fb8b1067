//! Watches: event streams over one shared bidi stream per client.
//!
//! [`Client::watch`] returns once the server has confirmed the watch. The
//! [`WatchStream`] then yields batches of events in revision order. If the
//! connection breaks, the shared stream is re-opened (with backoff) and each
//! watch is re-created from the revision after the last one it delivered (a
//! start-from-now watch takes its first revision from the server's "created"
//! answer; progress notifications advance it), so no event is lost or
//! repeated. If that revision has been compacted in the meantime, the stream
//! yields [`Error::Compacted`] and ends. Dropping the stream cancels the
//! watch.
//!
//! Each watch buffers at most [`WATCH_BUFFER`] batches. A consumer that falls
//! that far behind gets its watch paused (canceled on the server) until it
//! has read half of them, then resumed from the next undelivered revision as
//! after a disconnect: memory stays bounded, other watches are unaffected,
//! and no event is lost or repeated (but a pause long enough for the server
//! to compact the missing revisions ends the watch with
//! [`Error::Compacted`]). With [`WatchOptions::with_resume_notify`] the
//! stream also reports each resume after a disconnect.
//!
//! ```no_run
//! # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
//! use futures::StreamExt;
//! use kv_client::WatchOptions;
//!
//! let mut stream = client.watch("jobs/", WatchOptions::new().with_prefix()).await?;
//! while let Some(batch) = stream.next().await {
//!     for event in batch?.events() {
//!         println!("{:?} {:?}", event.r#type(), event.kv);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod hub;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use kv_proto::etcdserverpb::{
    ResponseHeader, WatchCreateRequest, watch_create_request::FilterType,
};
use kv_proto::mvccpb::Event;
use tokio::sync::{mpsc, oneshot};

use crate::kv::KeyRange;
use crate::{Client, Error, Result};

pub(crate) use hub::HubHandle;

/// How many batches a watch queues for its consumer before it is paused.
pub const WATCH_BUFFER: usize = 64;

/// Shared by a watch's stream and the hub.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    /// Set by the hub when it paused the watch; cleared by whichever side
    /// (the draining consumer or the hub) asks for the unpause.
    paused: AtomicBool,
}

/// Local identifiers of watches (stable across reconnects, unlike the
/// server's watch IDs).
static NEXT_WATCH: AtomicU64 = AtomicU64::new(1);

/// Options of [`Client::watch`].
///
/// ```
/// use kv_client::WatchOptions;
/// let opts = WatchOptions::new()
///     .with_prefix()
///     .with_start_revision(42)
///     .with_prev_kv()
///     .with_progress_notify();
/// let deletes_only = WatchOptions::new().with_range("z").with_no_put();
/// let puts_only = WatchOptions::new().with_from_key().with_no_delete();
/// ```
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    range: KeyRange,
    start_revision: i64,
    prev_kv: bool,
    progress_notify: bool,
    no_put: bool,
    no_delete: bool,
    resume_notify: bool,
}

impl WatchOptions {
    /// Default options: one key, from now on, puts and deletes.
    pub fn new() -> Self {
        Self::default()
    }
    /// Watches every key with the given key as prefix.
    pub fn with_prefix(mut self) -> Self {
        self.range = KeyRange::Prefix;
        self
    }
    /// Watches every key ≥ the given key.
    pub fn with_from_key(mut self) -> Self {
        self.range = KeyRange::FromKey;
        self
    }
    /// Watches the keys in `[key, end)`.
    pub fn with_range(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.range = KeyRange::End(end.into());
        self
    }
    /// Starts at this revision (0 = after the current one).
    pub fn with_start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }
    /// Includes each key's previous value in its event.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
    /// Asks the server for periodic progress notifications, delivered as
    /// empty batches (see [`WatchBatch::is_progress_notify`]).
    pub fn with_progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }
    /// Leaves out put events.
    pub fn with_no_put(mut self) -> Self {
        self.no_put = true;
        self
    }
    /// Leaves out delete events.
    pub fn with_no_delete(mut self) -> Self {
        self.no_delete = true;
        self
    }
    /// After each reconnect, yields an empty batch whose
    /// [`resumed_at`](WatchBatch::resumed_at) tells the revision the watch
    /// resumed from, before that revision's events. Off by default.
    ///
    /// ```
    /// let opts = kv_client::WatchOptions::new().with_resume_notify();
    /// ```
    pub fn with_resume_notify(mut self) -> Self {
        self.resume_notify = true;
        self
    }

    fn into_request(self, key: Vec<u8>) -> WatchCreateRequest {
        let (key, range_end) = self.range.resolve(key);
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(FilterType::Noput as i32);
        }
        if self.no_delete {
            filters.push(FilterType::Nodelete as i32);
        }
        WatchCreateRequest {
            key,
            range_end,
            start_revision: self.start_revision,
            progress_notify: self.progress_notify,
            filters,
            prev_kv: self.prev_kv,
            watch_id: 0,
            fragment: false,
        }
    }
}

/// One batch of events from a watch (all events of a revision arrive in
/// the same batch), or a progress notification (no events).
///
/// ```no_run
/// # fn f(batch: kv_client::WatchBatch) {
/// for e in batch.events() {
///     let kv = e.kv.as_ref().unwrap();
///     println!("{:?} {:?} @ {}", e.r#type(), kv.key, kv.mod_revision);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct WatchBatch {
    header: ResponseHeader,
    events: Vec<Event>,
    resumed_at: Option<i64>,
}

impl WatchBatch {
    fn new(header: ResponseHeader, events: Vec<Event>) -> Self {
        WatchBatch {
            header,
            events,
            resumed_at: None,
        }
    }
    fn resumed(header: ResponseHeader, next_rev: i64) -> Self {
        WatchBatch {
            header,
            events: Vec::new(),
            resumed_at: Some(next_rev),
        }
    }
    /// The header of the response that carried the batch.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }
    /// The store revision when the batch was sent.
    pub fn revision(&self) -> i64 {
        self.header.revision
    }
    /// The events, in revision order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }
    /// Takes the events out.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
    /// Whether this is a progress notification: no events, and every event
    /// up to [`revision`](Self::revision) has been delivered.
    pub fn is_progress_notify(&self) -> bool {
        self.events.is_empty() && self.resumed_at.is_none()
    }
    /// With [`WatchOptions::with_resume_notify`]: `Some(r)` if this (empty)
    /// batch announces that the watch was re-created after a disconnect and
    /// continues from revision `r` (every event before `r` was delivered).
    pub fn resumed_at(&self) -> Option<i64> {
        self.resumed_at
    }
}

/// The events of one watch; a [`Stream`] of `Result<WatchBatch>`.
/// Dropping it cancels the watch.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// use futures::StreamExt;
/// let mut stream = client.watch("k", None).await?;
/// if let Some(batch) = stream.next().await {
///     println!("{:?}", batch?.events());
/// }
/// drop(stream); // cancels the watch on the server
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct WatchStream {
    id: u64,
    watch_id: i64,
    events: mpsc::Receiver<WatchBatch>,
    /// The terminal error, yielded after the last batch.
    end: Option<oneshot::Receiver<Error>>,
    flow: Arc<Flow>,
    hub: HubHandle,
}

impl WatchStream {
    /// The server's ID for this watch when it was created (it changes
    /// when the watch is re-created after a reconnect).
    pub fn watch_id(&self) -> i64 {
        self.watch_id
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.events.poll_recv(cx) {
            Poll::Ready(Some(batch)) => {
                // Half drained: let a paused watch go on (see `hub::pause`).
                if this.events.len() <= WATCH_BUFFER / 2
                    && this.flow.paused.load(Ordering::SeqCst)
                    && this.flow.paused.swap(false, Ordering::SeqCst)
                {
                    this.hub.unpause(this.id);
                }
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(None) => {
                // The hub dropped the sender: it set `end` first, if at all.
                let Some(end) = this.end.as_mut() else {
                    return Poll::Ready(None);
                };
                let item = match Pin::new(end).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r.ok().map(Err),
                };
                this.end = None;
                Poll::Ready(item)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.hub.cancel(self.id);
    }
}

impl Client {
    /// Starts watching `key` (or a range, with [`WatchOptions`]) and returns
    /// once the server has confirmed the watch, or fails with
    /// [`Error::Timeout`] if that takes longer than the request timeout.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// use kv_client::WatchOptions;
    /// let from_now = client.watch("k", None).await?;
    /// let replay = client.watch("dir/", WatchOptions::new().with_prefix().with_start_revision(1)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        options: impl Into<Option<WatchOptions>>,
    ) -> Result<WatchStream> {
        let options = options.into().unwrap_or_default();
        let resume_notify = options.resume_notify;
        let req = options.into_request(key.into());
        let hub = self.watch_hub();
        let id = NEXT_WATCH.fetch_add(1, Ordering::Relaxed);
        let (events_tx, events) = mpsc::channel(WATCH_BUFFER);
        let (end_tx, end) = oneshot::channel();
        let (created_tx, created) = oneshot::channel();
        let flow = Arc::new(Flow::default());
        let delivery = hub::Delivery {
            events: events_tx,
            end: end_tx,
            flow: flow.clone(),
            created: created_tx,
        };
        hub.create(id, req, resume_notify, delivery)?;
        // Built before waiting so that giving up (or being dropped) cancels.
        let mut stream = WatchStream {
            id,
            watch_id: -1,
            events,
            end: Some(end),
            flow,
            hub,
        };
        match tokio::time::timeout(self.config().request_timeout(), created).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(_)) => Err(hub::stopped()),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Ok(Ok(watch_id))) => {
                stream.watch_id = watch_id;
                Ok(stream)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_build_create_requests() {
        let r = WatchOptions::new()
            .with_prefix()
            .with_start_revision(5)
            .with_no_delete()
            .with_prev_kv()
            .into_request(b"a".to_vec());
        assert_eq!((r.key, r.range_end), (b"a".to_vec(), b"b".to_vec()));
        assert_eq!(r.start_revision, 5);
        assert_eq!(r.filters, vec![FilterType::Nodelete as i32]);
        assert!(r.prev_kv && !r.fragment);
    }
}
