//! The background task that owns a client's shared watch stream.
//!
//! It multiplexes every [`WatchStream`](super::WatchStream) of a client over
//! one `Watch` bidi stream, creating watches one at a time (etcd answers
//! creates in order and the answer carries the server's watch ID), routes
//! responses by watch ID, and on a broken stream re-opens it with backoff and
//! re-creates every watch from its next undelivered revision. Events below
//! that revision are dropped, so a resume never repeats one.
//!
//! Back-pressure is per watch: each has a bounded queue. When it is full the
//! hub cancels that watch on the server ("pauses" it) without advancing its
//! next revision, drops whatever still arrives for it, and re-creates it from
//! that revision once the consumer has drained half the queue. The shared
//! stream keeps being read, so one slow watcher neither stalls nor reorders
//! the others, and memory stays bounded (at the cost of re-reading the
//! paused watch's events from the server's history; if they have been
//! compacted meanwhile the watch ends with `Error::Compacted`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kv_proto::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchRequest, WatchResponse,
    watch_request::RequestUnion,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

use super::{Flow, WATCH_BUFFER, WatchBatch};
use crate::{Error, HubClient, Result};

/// The error reported when the hub is gone (the runtime is shutting down).
pub(super) fn stopped() -> Error {
    Error::Transport("the watch stream task has stopped".into())
}

/// The hub's ends of one watch's channels to its [`WatchStream`](super::WatchStream).
pub(super) struct Delivery {
    /// Bounded ([`WATCH_BUFFER`] batches).
    pub(super) events: mpsc::Sender<WatchBatch>,
    /// The terminal error, read by the stream after the last batch.
    pub(super) end: oneshot::Sender<Error>,
    pub(super) flow: Arc<Flow>,
    /// The answer to the create.
    pub(super) created: oneshot::Sender<Result<i64>>,
}

enum Cmd {
    Create {
        id: u64,
        req: WatchCreateRequest,
        resume_notify: bool,
        delivery: Delivery,
    },
    Cancel {
        id: u64,
    },
    /// The consumer of a paused watch has drained its queue enough.
    Unpause {
        id: u64,
    },
}

/// A handle on the hub: cheap to clone, used by the client and each stream.
#[derive(Clone, Debug)]
pub(crate) struct HubHandle {
    tx: mpsc::UnboundedSender<Cmd>,
}

impl HubHandle {
    /// Spawns the hub on the current tokio runtime.
    pub(crate) fn start(client: HubClient) -> HubHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(Hub::new(client).run(rx));
        HubHandle { tx }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    pub(super) fn create(
        &self,
        id: u64,
        req: WatchCreateRequest,
        resume_notify: bool,
        delivery: Delivery,
    ) -> Result<()> {
        let cmd = Cmd::Create {
            id,
            req,
            resume_notify,
            delivery,
        };
        self.tx.send(cmd).map_err(|_| stopped())
    }

    pub(super) fn unpause(&self, id: u64) {
        // If the hub is gone the stream ends anyway.
        let _ = self.tx.send(Cmd::Unpause { id });
    }

    pub(super) fn cancel(&self, id: u64) {
        // If the hub is gone there is nothing left to cancel.
        let _ = self.tx.send(Cmd::Cancel { id });
    }
}

/// One watch as the hub tracks it.
struct Sub {
    /// The create request as the user gave it.
    req: WatchCreateRequest,
    /// The first revision not yet delivered (0: a start-from-now watch the
    /// server has not confirmed yet).
    next_rev: i64,
    events: mpsc::Sender<WatchBatch>,
    end: oneshot::Sender<Error>,
    flow: Arc<Flow>,
    /// Pending until the first "created" answer.
    created: Option<oneshot::Sender<Result<i64>>>,
    /// The server's ID on the current stream, once created there.
    server_id: Option<i64>,
    /// Canceled on the server because its queue was full.
    paused: bool,
    /// Whether to announce resumes ([`WatchBatch::resumed_at`]).
    resume_notify: bool,
    /// A disconnect happened since the watch was confirmed: announce the
    /// next re-create.
    resume_due: bool,
    /// A resume announcement that found the queue full.
    marker: Option<WatchBatch>,
}

struct Hub {
    client: HubClient,
    subs: BTreeMap<u64, Sub>,
    by_server: HashMap<i64, u64>,
    /// Watches waiting to be created on the current stream, in order.
    pending: VecDeque<u64>,
    /// The watch whose create was sent and is not answered yet (the ID may
    /// belong to a watch dropped meanwhile).
    inflight: Option<u64>,
    requests: Option<mpsc::UnboundedSender<WatchRequest>>,
    responses: Option<Streaming<WatchResponse>>,
}

impl Hub {
    fn new(client: HubClient) -> Hub {
        Hub {
            client,
            subs: BTreeMap::new(),
            by_server: HashMap::new(),
            pending: VecDeque::new(),
            inflight: None,
            requests: None,
            responses: None,
        }
    }

    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let mut backoff = self.client.config.retry().backoff();
        let mut retry_at: Option<Instant> = None;
        loop {
            let due = retry_at.is_none_or(|t| Instant::now() >= t);
            if self.responses.is_none() && !self.subs.is_empty() && due {
                match self.open().await {
                    Ok(()) => retry_at = None,
                    Err(status) => {
                        let wait = backoff.next_delay();
                        tracing::debug!(%status, ?wait, "watch stream: open failed");
                        retry_at = Some(Instant::now() + wait);
                    }
                }
            }
            let sleep_until = retry_at.unwrap_or_else(Instant::now);
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(cmd) => self.on_cmd(cmd),
                },
                msg = next_response(&mut self.responses) => match msg {
                    Ok(Some(resp)) => {
                        backoff.reset();
                        self.on_response(resp);
                        if self.responses.is_none() {
                            // The answer made us drop the stream: pace the reopen.
                            retry_at = Some(Instant::now() + backoff.next_delay());
                        }
                    }
                    Ok(None) | Err(_) => {
                        if let Err(status) = &msg {
                            tracing::debug!(%status, "watch stream broken; resuming");
                        }
                        self.disconnect();
                        retry_at = Some(Instant::now() + backoff.next_delay());
                    }
                },
                _ = tokio::time::sleep_until(sleep_until),
                    if retry_at.is_some() && self.responses.is_none() => {}
            }
            if self.subs.is_empty() && self.inflight.is_none() && self.responses.is_some() {
                // Nothing left to watch: close the stream until needed again.
                self.disconnect();
            }
        }
    }

    /// Opens a new stream and starts re-creating every watch on it.
    async fn open(&mut self) -> std::result::Result<(), tonic::Status> {
        self.disconnect();
        let (tx, rx) = mpsc::unbounded_channel();
        self.requests = Some(tx);
        // etcd answers the call only once it has something to send, so the
        // first create must be queued before waiting for the answer.
        self.send_next_create();
        let mut client = self.client.client.clone();
        let limit = self.client.config.request_timeout();
        let call = client.watch(UnboundedReceiverStream::new(rx));
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(resp)) => {
                self.responses = Some(resp.into_inner());
                Ok(())
            }
            Ok(Err(status)) => {
                self.disconnect();
                Err(status)
            }
            Err(_) => {
                self.disconnect();
                Err(tonic::Status::deadline_exceeded("opening the watch stream"))
            }
        }
    }

    /// Forgets the current stream; every watch will be re-created.
    fn disconnect(&mut self) {
        self.requests = None;
        self.responses = None;
        self.inflight = None;
        self.by_server.clear();
        for sub in self.subs.values_mut() {
            sub.server_id = None;
            sub.resume_due |= sub.resume_notify && sub.created.is_none();
        }
        let live = self.subs.iter().filter(|(_, s)| !s.paused);
        self.pending = live.map(|(id, _)| *id).collect();
    }

    fn send(&self, req: RequestUnion) {
        if let Some(tx) = &self.requests {
            // A closed request stream shows up as a broken response stream.
            let _ = tx.send(WatchRequest {
                request_union: Some(req),
            });
        }
    }

    /// Sends the next create if none is awaiting its answer.
    fn send_next_create(&mut self) {
        if self.inflight.is_some() || self.requests.is_none() {
            return;
        }
        while let Some(id) = self.pending.pop_front() {
            let Some(sub) = self.subs.get(&id).filter(|s| !s.paused) else {
                continue;
            };
            let mut req = sub.req.clone();
            if sub.next_rev > 0 {
                req.start_revision = sub.next_rev;
            }
            self.inflight = Some(id);
            self.send(RequestUnion::CreateRequest(req));
            return;
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Create {
                id,
                req,
                resume_notify,
                delivery,
            } => {
                let next_rev = req.start_revision.max(0);
                let sub = Sub {
                    req,
                    next_rev,
                    events: delivery.events,
                    end: delivery.end,
                    flow: delivery.flow,
                    created: Some(delivery.created),
                    server_id: None,
                    paused: false,
                    resume_notify,
                    resume_due: false,
                    marker: None,
                };
                self.subs.insert(id, sub);
                self.pending.push_back(id);
                self.send_next_create();
            }
            Cmd::Cancel { id } => {
                if let Some(sub) = self.subs.remove(&id)
                    && let Some(watch_id) = sub.server_id
                {
                    self.by_server.remove(&watch_id);
                    self.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id }));
                }
            }
            Cmd::Unpause { id } => self.unpause(id),
        }
    }

    /// Cancels a watch whose queue is full on the server, keeping its next
    /// revision; it is re-created from there by [`unpause`](Self::unpause).
    fn pause(&mut self, id: u64) {
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        sub.paused = true;
        sub.flow.paused.store(true, Ordering::SeqCst);
        tracing::debug!(id, next_rev = sub.next_rev, "watch queue full; paused");
        // The consumer may have drained the queue before seeing the flag.
        let drained = sub.events.capacity() >= WATCH_BUFFER - WATCH_BUFFER / 2
            && sub.flow.paused.swap(false, Ordering::SeqCst);
        if let Some(watch_id) = sub.server_id.take() {
            self.by_server.remove(&watch_id);
            self.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id }));
        }
        if drained {
            self.unpause(id);
        }
    }

    fn unpause(&mut self, id: u64) {
        let Some(sub) = self.subs.get_mut(&id).filter(|s| s.paused) else {
            return;
        };
        sub.paused = false;
        if let Some(marker) = sub.marker.take()
            && let Err(mpsc::error::TrySendError::Full(marker)) = sub.events.try_send(marker)
        {
            sub.marker = Some(marker);
            self.pause(id);
            return;
        }
        tracing::debug!(id, next_rev = sub.next_rev, "watch queue drained; resuming");
        if self.requests.is_some() {
            self.pending.push_back(id);
            self.send_next_create();
        }
    }

    fn on_response(&mut self, resp: WatchResponse) {
        if resp.created {
            self.on_created(resp);
            self.send_next_create();
            return;
        }
        let Some(&id) = self.by_server.get(&resp.watch_id) else {
            // A watch canceled meanwhile, or a stream-wide notification.
            return;
        };
        if resp.canceled || resp.compact_revision != 0 {
            self.by_server.remove(&resp.watch_id);
            self.fail(id, cancel_error(&resp));
            return;
        }
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        let header = resp.header.unwrap_or_default();
        let progress = resp.events.is_empty();
        let events: Vec<_> = resp
            .events
            .into_iter()
            .filter(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision) >= sub.next_rev)
            .collect();
        if let Some(last) = events.iter().filter_map(|e| e.kv.as_ref()).next_back() {
            let next_rev = last.mod_revision + 1;
            let batch = WatchBatch::new(header, events);
            match sub.events.try_send(batch) {
                Ok(()) => sub.next_rev = next_rev,
                // Not delivered, so `next_rev` stays: the resume re-reads it.
                Err(mpsc::error::TrySendError::Full(_)) => self.pause(id),
                // The stream was dropped; its cancel follows.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        } else if progress && header.revision >= sub.next_rev - 1 {
            // A progress notification: everything up to its revision is in.
            sub.next_rev = header.revision + 1;
            if sub.req.progress_notify {
                // Best effort: a full queue already tells the consumer more.
                let _ = sub.events.try_send(WatchBatch::new(header, events));
            }
        }
        // Otherwise only events already delivered before a resume.
    }

    fn on_created(&mut self, resp: WatchResponse) {
        let Some(id) = self.inflight.take() else {
            tracing::warn!(watch_id = resp.watch_id, "unexpected watch created answer");
            return;
        };
        let Some(sub) = self.subs.get_mut(&id) else {
            // Dropped while being created.
            if !resp.canceled {
                let watch_id = resp.watch_id;
                self.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id }));
            }
            return;
        };
        if resp.canceled && crate::auth::token_refused(&resp.cancel_reason) {
            // etcd checks the stream's token at each create: one opened
            // before the token expired must be reopened (the transport
            // gives a new stream a fresh token), not the watch failed.
            tracing::debug!(reason = %resp.cancel_reason, "watch stream token expired; reopening");
            self.disconnect();
            return;
        }
        if resp.canceled || resp.compact_revision != 0 {
            self.fail(id, cancel_error(&resp));
            return;
        }
        sub.server_id = Some(resp.watch_id);
        self.by_server.insert(resp.watch_id, id);
        if sub.next_rev == 0 {
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            sub.next_rev = rev + 1;
        }
        if let Some(created) = sub.created.take() {
            let _ = created.send(Ok(resp.watch_id));
        }
        if std::mem::take(&mut sub.resume_due) {
            let header = resp.header.unwrap_or_default();
            let marker = WatchBatch::resumed(header, sub.next_rev);
            if let Err(mpsc::error::TrySendError::Full(marker)) = sub.events.try_send(marker) {
                sub.marker = Some(marker);
                self.pause(id);
            }
        }
    }

    /// Ends a watch with an error (a terminal one: it is not resumed).
    fn fail(&mut self, id: u64, err: Error) {
        let Some(mut sub) = self.subs.remove(&id) else {
            return;
        };
        // The stream yields `end` after the queued batches.
        match sub.created.take() {
            Some(created) => {
                let _ = created.send(Err(err));
            }
            None => {
                let _ = sub.end.send(err);
            }
        }
    }
}

fn cancel_error(resp: &WatchResponse) -> Error {
    if resp.compact_revision != 0 {
        Error::Compacted {
            compact_revision: Some(resp.compact_revision),
        }
    } else {
        Error::WatchCanceled {
            reason: resp.cancel_reason.clone(),
        }
    }
}

async fn next_response(
    responses: &mut Option<Streaming<WatchResponse>>,
) -> std::result::Result<Option<WatchResponse>, tonic::Status> {
    match responses {
        Some(r) => r.message().await,
        None => std::future::pending().await,
    }
}
