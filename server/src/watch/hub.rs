//! The watcher registry: creates, cancels, and publishing to synced
//! watchers (the catch-up loop for the others is in catchup.rs).
//!
//! Lock order: `WatchHub::inner` is taken after the store's locks are released
//! (the applier publishes after commit), never while holding them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kv_proto::etcdserverpb::watch_create_request::FilterType;
use kv_proto::etcdserverpb::{WatchCreateRequest, WatchResponse};
use kv_proto::mvccpb::{event::EventType, Event};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::queue::{self, event_responses, push_index, Batch, Queue, Receiver, Runs, SharedRuns};
use super::wire::Picked;
use crate::header::HeaderSource;
use crate::mvcc::{in_range, Store};

/// Most watchers on one gRPC stream (etcd has no limit; kvd needs one so a
/// stream's memory is bounded). A create past it is refused like etcd
/// refuses a watch: a `created` + `canceled` response with the reason.
pub const MAX_WATCHERS_PER_STREAM: usize = 10_000;
/// Most key and range-end bytes held by the watchers of one stream.
pub const MAX_WATCHED_KEY_BYTES_PER_STREAM: usize = 64 << 20;
/// Cancel reason of a create past [`MAX_WATCHERS_PER_STREAM`].
pub const TOO_MANY_WATCHERS: &str =
    "etcdserver: too many watchers on this watch stream (limit 10000)";
/// Cancel reason of a create past [`MAX_WATCHED_KEY_BYTES_PER_STREAM`].
pub const WATCHED_KEYS_TOO_LARGE: &str =
    "etcdserver: watched keys on this watch stream exceed 64 MiB";
/// etcd's default fragment size: --max-request-bytes plus 512 KiB.
const DEFAULT_FRAGMENT_BYTES: usize = 1572864 + 512 * 1024;

pub(super) struct Watcher {
    pub(super) key: Vec<u8>,
    pub(super) end: Vec<u8>,
    pub(super) prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    /// Split large event batches into fragments (etcd's `fragment`).
    pub(super) fragment: bool,
    /// First revision not yet delivered.
    pub(super) next_rev: i64,
    pub(super) synced: bool,
}

impl Watcher {
    /// The indices of the events in `batch` this watcher wants.
    pub(super) fn select(&self, batch: &[Event]) -> Runs {
        Pick::of(self).select(self.next_rev, batch)
    }

    fn key_bytes(&self) -> usize {
        self.key.len() + self.end.len()
    }
}

/// What a watcher's pick out of a batch depends on, once its next revision
/// is at or below the batch's first.
#[derive(PartialEq, Eq)]
struct Pick<'a> {
    key: &'a [u8],
    end: &'a [u8],
    no_put: bool,
    no_delete: bool,
}

impl<'a> Pick<'a> {
    fn of(w: &'a Watcher) -> Self {
        Pick {
            key: &w.key,
            end: &w.end,
            no_put: w.no_put,
            no_delete: w.no_delete,
        }
    }

    fn wants(&self, next_rev: i64, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else { return false };
        if kv.mod_revision < next_rev || !in_range(&kv.key, self.key, self.end) {
            return false;
        }
        let is_put = ev.r#type == EventType::Put as i32;
        !(is_put && self.no_put || !is_put && self.no_delete)
    }

    /// The indices of the events in `batch` at or after `next_rev` wanted.
    fn select(&self, next_rev: i64, batch: &[Event]) -> Runs {
        let mut runs = Runs::new();
        for (i, e) in batch.iter().enumerate() {
            if self.wants(next_rev, e) {
                // A batch never nears u32::MAX events (bounded by the request size).
                push_index(&mut runs, i as u32);
            }
        }
        runs
    }
}

pub(super) struct Stream {
    pub(super) queue: Queue,
    pub(super) watchers: HashMap<i64, Watcher>,
    next_id: i64,
    /// Sum of the watchers' `key_bytes`.
    key_bytes: usize,
}

impl Stream {
    pub(super) fn full(&self) -> bool {
        self.queue.full()
    }

    pub(super) fn send(&self, resp: WatchResponse) {
        self.queue.send_response(resp)
    }

    pub(super) fn remove(&mut self, id: i64) -> bool {
        let Some(w) = self.watchers.remove(&id) else {
            return false;
        };
        self.key_bytes -= w.key_bytes();
        true
    }
}

pub(super) struct Inner {
    /// Highest revision handed to synced watchers.
    pub(super) published: i64,
    pub(super) streams: HashMap<u64, Stream>,
    next_stream: u64,
}

/// The receiving side of one watch stream, owned by the gRPC handler.
pub struct StreamHandle {
    pub id: u64,
    pub rx: Receiver,
    /// Decrement once per response taken out of `rx`. While it is at
    /// [`queue::MAX_PENDING_RESPONSES`] the owner must not hand the hub more
    /// requests for this stream (the gRPC handler stops reading).
    pub pending: Arc<AtomicUsize>,
}

/// What the metrics report of the hub.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub streams: usize,
    pub watchers: usize,
    /// Responses queued on all streams, not yet taken by their readers.
    pub queued: usize,
    /// The longest single stream queue.
    pub queue_max: usize,
}

/// Every watcher of this member.
pub struct WatchHub {
    pub(super) inner: Mutex<Inner>,
    pub(super) store: Arc<Store>,
    pub(super) header: Arc<HeaderSource>,
    /// Wakes the catch-up loop (see catchup.rs) when a watcher turns unsynced.
    pub(super) wake: Notify,
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

    pub(super) fn fragment_bytes(&self) -> usize {
        self.fragment_bytes.load(Ordering::Relaxed)
    }

    pub fn open_stream(&self) -> StreamHandle {
        let (queue, rx, pending) = queue::channel();
        let mut g = self.inner.lock();
        let id = g.next_stream;
        g.next_stream += 1;
        g.streams.insert(
            id,
            Stream {
                queue,
                watchers: HashMap::new(),
                next_id: 0,
                key_bytes: 0,
            },
        );
        StreamHandle { id, rx, pending }
    }

    pub fn close_stream(&self, id: u64) {
        self.inner.lock().streams.remove(&id);
    }

    /// Open watch streams and watchers, for metrics.
    pub fn counts(&self) -> Counts {
        let g = self.inner.lock();
        let mut c = Counts {
            streams: g.streams.len(),
            ..Counts::default()
        };
        for s in g.streams.values() {
            c.watchers += s.watchers.len();
            let q = s.queue.pending();
            c.queued += q;
            c.queue_max = c.queue_max.max(q);
        }
        c
    }

    /// Creates a watcher; the `created` response is queued before any event.
    /// Answers a create refused before it reached the hub (auth: etcd's
    /// permission check) as etcd does: created and canceled, watch ID -1.
    pub fn refuse(&self, stream: u64, reason: &str) {
        let g = self.inner.lock();
        let header = self.header.at(g.published);
        if let Some(s) = g.streams.get(&stream) {
            s.send(WatchResponse {
                header: Some(header),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: reason.to_string(),
                ..Default::default()
            });
        }
    }

    pub fn create(&self, stream: u64, req: &WatchCreateRequest) {
        let mut g = self.inner.lock();
        let published = g.published;
        let header = self.header.at(published);
        let Some(s) = g.streams.get_mut(&stream) else {
            return;
        };
        // etcd answers a refused create with watch ID -1.
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
            return refuse(s, -1, "mvcc: watcher range is empty");
        }
        if s.watchers.len() >= MAX_WATCHERS_PER_STREAM {
            return refuse(s, -1, TOO_MANY_WATCHERS);
        }
        let key_bytes = req.key.len() + end.len();
        if s.key_bytes + key_bytes > MAX_WATCHED_KEY_BYTES_PER_STREAM {
            return refuse(s, -1, WATCHED_KEYS_TOO_LARGE);
        }
        let id = if req.watch_id != 0 {
            if s.watchers.contains_key(&req.watch_id) {
                return refuse(
                    s,
                    -1,
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
        s.key_bytes += key_bytes;
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
            if s.remove(watch_id) {
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

    /// Hands the events of a committed batch (ending at `rev`) to synced
    /// watchers. Every response shares the one batch, and watchers of one
    /// range with the same filters (on any stream) share one pick.
    pub fn publish(&self, rev: i64, events: Vec<Event>) {
        // A watcher whose next revision is at or below the batch's first
        // picks by range and filters alone, so its pick can be reused.
        let first = events
            .iter()
            .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
            .min()
            .unwrap_or(rev);
        let batch: Batch = Arc::new(events);
        let limit = self.fragment_bytes();
        let mut g = self.inner.lock();
        let header = self.header.at(rev);
        let mut lagging = false;
        // The last pick, across streams too (one range watched from many
        // streams is the fan-out case).
        let mut memo: Option<(Pick<'_>, SharedRuns)> = None;
        for s in g.streams.values_mut() {
            let Stream {
                queue, watchers, ..
            } = s;
            for (id, w) in watchers.iter_mut() {
                // Field by field: the pick borrows key and end for the memo
                // while next_rev and synced change.
                let Watcher {
                    key,
                    end,
                    no_put,
                    no_delete,
                    prev_kv,
                    fragment,
                    next_rev,
                    synced,
                    ..
                } = w;
                if !*synced {
                    continue;
                }
                let pick = Pick {
                    key,
                    end,
                    no_put: *no_put,
                    no_delete: *no_delete,
                };
                let runs = match &memo {
                    Some((p, runs)) if *next_rev <= first && *p == pick => runs.clone(),
                    _ => {
                        let runs = Arc::new(Picked::new(pick.select(*next_rev, &batch)));
                        if *next_rev <= first {
                            memo = Some((pick, runs.clone()));
                        }
                        runs
                    }
                };
                if !runs.runs.is_empty() {
                    if queue.full() {
                        // Slow reader: replay later from history instead of blocking.
                        *synced = false;
                        lagging = true;
                        continue;
                    }
                    let q = &*queue;
                    let (prev, frag) = (*prev_kv, *fragment);
                    event_responses(header, *id, &batch, &runs, prev, frag, limit, |r| q.send(r));
                }
                *next_rev = (*next_rev).max(rev + 1);
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
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
