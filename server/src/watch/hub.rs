//! The watcher registry and its catch-up loop.
//!
//! Lock order: `WatchHub::inner` is taken after the store's locks are released
//! (the applier publishes after commit), never while holding them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kv_proto::etcdserverpb::watch_create_request::FilterType;
use kv_proto::etcdserverpb::{WatchCreateRequest, WatchResponse};
use kv_proto::mvccpb::{event::EventType, Event};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

use crate::header::HeaderSource;
use crate::mvcc::{in_range, MvccError, Store};

/// Responses queued on one stream before its watchers are set aside as slow.
pub const MAX_PENDING_RESPONSES: usize = 128;
/// etcd's default fragment size: --max-request-bytes plus 512 KiB.
const DEFAULT_FRAGMENT_BYTES: usize = 1572864 + 512 * 1024;
/// Most revisions replayed for one watcher per catch-up pass.
const CATCHUP_REVS: i64 = 1000;
/// Most unsynced watchers served per catch-up pass.
const CATCHUP_WATCHERS: usize = 512;
/// Retry period while some watcher is unsynced (its stream may be full).
const CATCHUP_RETRY: Duration = Duration::from_millis(20);

struct Watcher {
    key: Vec<u8>,
    end: Vec<u8>,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    /// Split large event batches into fragments (etcd's `fragment`).
    fragment: bool,
    /// First revision not yet delivered.
    next_rev: i64,
    synced: bool,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else { return false };
        if kv.mod_revision < self.next_rev || !in_range(&kv.key, &self.key, &self.end) {
            return false;
        }
        let is_put = ev.r#type == EventType::Put as i32;
        !(is_put && self.no_put || !is_put && self.no_delete)
    }

    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| self.wants(e))
            .map(|e| {
                let mut e = e.clone();
                if !self.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

struct Stream {
    tx: mpsc::UnboundedSender<WatchResponse>,
    pending: Arc<AtomicUsize>,
    watchers: HashMap<i64, Watcher>,
    next_id: i64,
}

impl Stream {
    fn full(&self) -> bool {
        self.pending.load(Ordering::Acquire) >= MAX_PENDING_RESPONSES
    }

    fn send(&self, resp: WatchResponse) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(resp).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

struct Inner {
    /// Highest revision handed to synced watchers.
    published: i64,
    streams: HashMap<u64, Stream>,
    next_stream: u64,
}

/// The receiving side of one watch stream, owned by the gRPC handler.
pub struct StreamHandle {
    pub id: u64,
    pub rx: mpsc::UnboundedReceiver<WatchResponse>,
    /// Decrement once per response written to the client.
    pub pending: Arc<AtomicUsize>,
}

/// Every watcher of this member.
pub struct WatchHub {
    inner: Mutex<Inner>,
    store: Arc<Store>,
    header: Arc<HeaderSource>,
    wake: Notify,
    /// Size above which a fragmenting watcher's batch is split (etcd uses
    /// --max-request-bytes).
    fragment_bytes: AtomicUsize,
}

impl WatchHub {
    pub fn new(store: Arc<Store>, header: Arc<HeaderSource>) -> Arc<Self> {
        let published = store.current_rev();
        Arc::new(WatchHub {
            inner: Mutex::new(Inner {
                published,
                streams: HashMap::new(),
                next_stream: 1,
            }),
            store,
            header,
            wake: Notify::new(),
            fragment_bytes: AtomicUsize::new(DEFAULT_FRAGMENT_BYTES),
        })
    }

    /// Sets the size above which fragmenting watchers get split batches.
    pub fn set_fragment_bytes(&self, bytes: usize) {
        self.fragment_bytes.store(bytes.max(1), Ordering::Relaxed);
    }

    fn fragment_bytes(&self) -> usize {
        self.fragment_bytes.load(Ordering::Relaxed)
    }

    pub fn open_stream(&self) -> StreamHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let mut g = self.inner.lock();
        let id = g.next_stream;
        g.next_stream += 1;
        g.streams.insert(
            id,
            Stream {
                tx,
                pending: pending.clone(),
                watchers: HashMap::new(),
                next_id: 0,
            },
        );
        StreamHandle { id, rx, pending }
    }

    pub fn close_stream(&self, id: u64) {
        self.inner.lock().streams.remove(&id);
    }

    /// Creates a watcher; the `created` response is queued before any event.
    pub fn create(&self, stream: u64, req: &WatchCreateRequest) {
        let mut g = self.inner.lock();
        let published = g.published;
        let header = self.header.at(published);
        let Some(s) = g.streams.get_mut(&stream) else {
            return;
        };
        let refuse = |s: &Stream, id: i64, reason: &str| {
            s.send(WatchResponse {
                header: Some(header),
                watch_id: id,
                created: true,
                canceled: true,
                cancel_reason: reason.to_string(),
                ..Default::default()
            })
        };
        let end = req.range_end.clone();
        if !end.is_empty() && end != [0] && req.key >= end {
            return refuse(s, req.watch_id, "mvcc: watcher range is empty");
        }
        let id = if req.watch_id != 0 {
            if s.watchers.contains_key(&req.watch_id) {
                return refuse(
                    s,
                    req.watch_id,
                    "mvcc: duplicate watch ID provided on the WatchStream",
                );
            }
            req.watch_id
        } else {
            while s.watchers.contains_key(&s.next_id) {
                s.next_id += 1;
            }
            s.next_id
        };
        let start = if req.start_revision > 0 {
            req.start_revision
        } else {
            published + 1
        };
        let w = Watcher {
            key: req.key.clone(),
            end,
            prev_kv: req.prev_kv,
            no_put: req.filters.contains(&(FilterType::Noput as i32)),
            no_delete: req.filters.contains(&(FilterType::Nodelete as i32)),
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            next_rev: start,
            synced: start > published,
        };
        let synced = w.synced;
        s.watchers.insert(id, w);
        s.send(WatchResponse {
            header: Some(header),
            watch_id: id,
            created: true,
            ..Default::default()
        });
        drop(g);
        if !synced {
            self.wake.notify_one();
        }
    }

    pub fn cancel(&self, stream: u64, watch_id: i64) {
        let mut g = self.inner.lock();
        let header = self.header.at(g.published);
        if let Some(s) = g.streams.get_mut(&stream) {
            if s.watchers.remove(&watch_id).is_some() {
                s.send(WatchResponse {
                    header: Some(header),
                    watch_id,
                    canceled: true,
                    ..Default::default()
                });
            }
        }
    }

    /// Answers a progress request: everything up to the returned revision was sent.
    pub fn progress(&self, stream: u64) {
        let g = self.inner.lock();
        let Some(s) = g.streams.get(&stream) else {
            return;
        };
        let rev = s
            .watchers
            .values()
            .filter(|w| !w.synced)
            .map(|w| w.next_rev - 1)
            .min()
            .unwrap_or(g.published)
            .min(g.published);
        s.send(WatchResponse {
            header: Some(self.header.at(rev)),
            watch_id: -1,
            ..Default::default()
        });
    }

    /// Sends a progress notification to every synced watcher that asked for them.
    pub fn notify_progress(&self) {
        let g = self.inner.lock();
        for s in g.streams.values() {
            for (id, w) in &s.watchers {
                if w.synced && w.progress_notify && !s.full() {
                    s.send(WatchResponse {
                        header: Some(self.header.at(g.published)),
                        watch_id: *id,
                        ..Default::default()
                    });
                }
            }
        }
    }

    /// Hands the events of a committed batch (ending at `rev`) to synced watchers.
    pub fn publish(&self, rev: i64, events: &[Event]) {
        let mut g = self.inner.lock();
        let header = self.header.at(rev);
        let mut lagging = false;
        for s in g.streams.values_mut() {
            let full = s.full();
            let mut out = Vec::new();
            for (id, w) in s.watchers.iter_mut() {
                if !w.synced {
                    continue;
                }
                let evs = w.select(events);
                if !evs.is_empty() {
                    if full {
                        // Slow reader: replay later from history instead of blocking.
                        w.synced = false;
                        lagging = true;
                        continue;
                    }
                    out.extend(fragments(
                        header,
                        *id,
                        evs,
                        w.fragment,
                        self.fragment_bytes(),
                    ));
                }
                w.next_rev = w.next_rev.max(rev + 1);
            }
            for r in out {
                s.send(r);
            }
        }
        g.published = g.published.max(rev);
        drop(g);
        if lagging {
            self.wake.notify_one();
        }
    }

    /// Resets the published revision after the store was replaced (snapshot
    /// install); every watcher catches up from history.
    pub fn reset(&self, rev: i64) {
        let mut g = self.inner.lock();
        g.published = rev;
        for s in g.streams.values_mut() {
            for w in s.watchers.values_mut() {
                w.synced = w.next_rev > rev;
            }
        }
        drop(g);
        self.wake.notify_one();
    }

    /// The catch-up loop; runs until the process stops.
    pub async fn run_catchup(self: Arc<Self>) {
        loop {
            let busy = self.catchup_pass().await;
            if busy {
                tokio::time::sleep(CATCHUP_RETRY).await;
            } else {
                self.wake.notified().await;
            }
        }
    }

    /// One pass over unsynced watchers; true if some remain unsynced.
    async fn catchup_pass(&self) -> bool {
        struct Job {
            stream: u64,
            id: i64,
            key: Vec<u8>,
            end: Vec<u8>,
            prev_kv: bool,
            from: i64,
        }
        let (jobs, head, remaining) = {
            let g = self.inner.lock();
            let mut jobs = Vec::new();
            let mut remaining = false;
            for (sid, s) in &g.streams {
                for (id, w) in &s.watchers {
                    if w.synced {
                        continue;
                    }
                    remaining = true;
                    if s.full() || jobs.len() >= CATCHUP_WATCHERS {
                        continue;
                    }
                    jobs.push(Job {
                        stream: *sid,
                        id: *id,
                        key: w.key.clone(),
                        end: w.end.clone(),
                        prev_kv: w.prev_kv,
                        from: w.next_rev,
                    });
                }
            }
            (jobs, g.published, remaining)
        };
        if !remaining {
            return false;
        }
        for job in jobs {
            let to = head.min(job.from.saturating_add(CATCHUP_REVS - 1));
            let store = self.store.clone();
            let (key, end) = (job.key.clone(), job.end.clone());
            let read = tokio::task::spawn_blocking(move || {
                store.history(job.from, to, &key, &end, job.prev_kv)
            })
            .await;
            let result = match read {
                Ok(r) => r,
                Err(e) => Err(MvccError::Storage(e.to_string())),
            };
            self.deliver(job.stream, job.id, job.from, to, result);
        }
        true
    }

    fn deliver(
        &self,
        stream: u64,
        id: i64,
        from: i64,
        to: i64,
        events: Result<Vec<Event>, MvccError>,
    ) {
        let mut g = self.inner.lock();
        let published = g.published;
        let Some(s) = g.streams.get_mut(&stream) else {
            return;
        };
        let Some(w) = s.watchers.get_mut(&id) else {
            return;
        };
        if w.synced || w.next_rev != from {
            return;
        }
        match events {
            Err(MvccError::Compacted) => {
                let compact = self.store.compact_rev();
                s.watchers.remove(&id);
                s.send(WatchResponse {
                    header: Some(self.header.at(published)),
                    watch_id: id,
                    canceled: true,
                    compact_revision: compact,
                    ..Default::default()
                });
            }
            Err(e) => {
                tracing::error!(error = %e, watch_id = id, "watch catch-up failed; will retry");
            }
            Ok(evs) => {
                let evs = w.select(&evs);
                w.next_rev = to + 1;
                if w.next_rev > published {
                    w.synced = true;
                }
                if !evs.is_empty() {
                    let header = self.header.at(to.max(published));
                    for r in fragments(header, id, evs, w.fragment, self.fragment_bytes()) {
                        s.send(r);
                    }
                }
            }
        }
    }
}

/// The responses carrying `events` for one watcher: one, or (when the watcher
/// asked for fragments and the batch is over `limit` bytes) several, each
/// but the last marked `fragment`, as etcd splits them.
fn fragments(
    header: kv_proto::etcdserverpb::ResponseHeader,
    watch_id: i64,
    events: Vec<Event>,
    fragment: bool,
    limit: usize,
) -> Vec<WatchResponse> {
    use prost::Message;
    let whole = |events: Vec<Event>, fragment: bool| WatchResponse {
        header: Some(header),
        watch_id,
        events,
        fragment,
        ..Default::default()
    };
    let total: usize = events.iter().map(|e| e.encoded_len()).sum();
    if !fragment || total <= limit || events.len() < 2 {
        return vec![whole(events, false)];
    }
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut size = 0;
    for e in events {
        let n = e.encoded_len();
        if !cur.is_empty() && size + n > limit {
            out.push(whole(std::mem::take(&mut cur), true));
            size = 0;
        }
        size += n;
        cur.push(e);
    }
    out.push(whole(cur, false));
    out
}
