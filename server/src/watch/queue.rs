//! The response queue of one watch stream.
//!
//! Bounded by count: event responses are only queued below
//! [`MAX_PENDING_RESPONSES`] (a watcher meeting a full queue becomes
//! unsynced and is replayed later), and the gRPC handler stops reading
//! requests while the queue is full, so control responses (created,
//! canceled, progress) cannot pile up either.
//!
//! Event bytes are shared: a queued response holds the index runs it carries
//! out of a [`Batch`] that every watcher of every stream shares (one commit
//! batch, or one catch-up read), and the `Event`s are copied only when the
//! response is taken out to be sent. A 1 MB value watched 500 times costs
//! 1 MB while queued, not 500. The gRPC writer does not copy them at all: it
//! writes the pick's encoding, made once for every watcher sharing the pick
//! (see wire.rs).

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BufMut;
use kv_proto::etcdserverpb::{ResponseHeader, WatchResponse};
use kv_proto::mvccpb::Event;
use prost::Message;
use tokio::sync::mpsc;

use super::wire::{self, event_len, Picked};

/// Responses queued on one stream before its watchers are set aside as slow
/// (etcd's per-stream buffer, `chanBufLen`).
pub const MAX_PENDING_RESPONSES: usize = 128;

/// Events shared by every queued response that carries some of them.
pub(crate) type Batch = Arc<Vec<Event>>;

/// Indices into a [`Batch`], as ascending runs (a key or prefix watcher's
/// picks are usually one run).
pub(crate) type Runs = Vec<Range<u32>>;

/// [`Runs`] shared by the responses of watchers that picked the same events
/// (watchers of one range and filters, on any stream), with their encoding:
/// no allocation and no encoding per watcher.
pub(crate) type SharedRuns = Arc<Picked>;

/// One queued response.
pub(crate) enum Queued {
    /// A control response (created, canceled, progress).
    Ready(WatchResponse),
    /// Events for one watcher, materialized when taken out.
    Events {
        header: ResponseHeader,
        watch_id: i64,
        batch: Batch,
        runs: SharedRuns,
        prev_kv: bool,
        fragment: bool,
    },
}

impl Queued {
    fn into_response(self) -> WatchResponse {
        match self {
            Queued::Ready(r) => r,
            Queued::Events {
                header,
                watch_id,
                batch,
                runs,
                prev_kv,
                fragment,
            } => {
                let events = match Arc::try_unwrap(batch) {
                    // The last holder (typical of a catch-up read): move the
                    // events out instead of copying every key and value.
                    Ok(all) => take_runs(all, &runs.runs, prev_kv),
                    Err(shared) => runs
                        .runs
                        .iter()
                        .cloned()
                        .flatten()
                        .filter_map(|i| shared.get(i as usize))
                        .map(|e| copy_event(e, prev_kv))
                        .collect(),
                };
                WatchResponse {
                    header: Some(header),
                    watch_id,
                    events,
                    fragment,
                    ..Default::default()
                }
            }
        }
    }

    /// Writes the response as prost would encode its `WatchResponse`; the
    /// events are copied from their pick's shared encoding.
    fn encode(self, buf: &mut impl BufMut) {
        match self {
            Queued::Ready(r) => r.encode_raw(buf),
            Queued::Events {
                header,
                watch_id,
                batch,
                runs,
                prev_kv,
                fragment,
            } => {
                let events = runs.wire(&batch, prev_kv);
                wire::encode_response(&header, watch_id, fragment, events, buf)
            }
        }
    }
}

/// One response taken out of a stream's queue, not yet built: the gRPC
/// writer encodes it straight from the shared events
/// ([`Outgoing::encode`]), other readers build the message.
pub struct Outgoing(pub(crate) Queued);

impl Outgoing {
    /// The response as a message.
    pub fn into_response(self) -> WatchResponse {
        self.0.into_response()
    }

    /// Writes the response's protobuf encoding (what prost writes for
    /// [`Outgoing::into_response`]) to `buf`.
    pub fn encode(self, buf: &mut impl BufMut) {
        self.0.encode(buf)
    }
}

/// The events of `all` at the indices in `runs` (ascending), moved out.
fn take_runs(all: Vec<Event>, runs: &Runs, prev_kv: bool) -> Vec<Event> {
    let strip = |mut e: Event| {
        if !prev_kv {
            e.prev_kv = None;
        }
        e
    };
    if let [only] = runs.as_slice() {
        if only.start == 0 && only.end as usize == all.len() {
            // The whole batch: reuses its allocation.
            return all.into_iter().map(strip).collect();
        }
    }
    let mut wanted = runs.iter().flat_map(|r| r.clone()).peekable();
    let mut out = Vec::with_capacity(runs.iter().map(|r| r.len()).sum());
    for (i, e) in all.into_iter().enumerate() {
        if wanted.peek() == Some(&(i as u32)) {
            wanted.next();
            out.push(strip(e));
        }
    }
    out
}

fn copy_event(e: &Event, prev_kv: bool) -> Event {
    Event {
        r#type: e.r#type,
        kv: e.kv.clone(),
        prev_kv: if prev_kv { e.prev_kv.clone() } else { None },
    }
}

/// Appends index `i` to `runs`, extending the last run when contiguous.
pub(crate) fn push_index(runs: &mut Runs, i: u32) {
    match runs.last_mut() {
        Some(r) if r.end == i => r.end = i + 1,
        _ => runs.push(i..i + 1),
    }
}

/// The sending half, kept by the hub.
pub(crate) struct Queue {
    tx: mpsc::UnboundedSender<Queued>,
    pending: Arc<AtomicUsize>,
}

impl Queue {
    /// Whether the reader is too far behind for more event responses.
    pub(crate) fn full(&self) -> bool {
        self.pending.load(Ordering::Acquire) >= MAX_PENDING_RESPONSES
    }

    /// Responses queued and not yet taken by the reader.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    pub(crate) fn send(&self, item: Queued) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(item).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn send_response(&self, resp: WatchResponse) {
        self.send(Queued::Ready(resp))
    }
}

/// The receiving half of a stream's queue.
pub struct Receiver {
    rx: mpsc::UnboundedReceiver<Queued>,
}

impl Receiver {
    /// The next response; `None` once the stream is closed and drained.
    pub async fn recv(&mut self) -> Option<WatchResponse> {
        self.rx.recv().await.map(Queued::into_response)
    }

    /// The next response, not yet built (what the gRPC writer takes).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        self.rx.poll_recv(cx).map(|q| q.map(Outgoing))
    }
}

/// A new queue; the counter is the number of responses queued and not yet
/// taken out (the receiver's owner decrements it).
pub(crate) fn channel() -> (Queue, Receiver, Arc<AtomicUsize>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(AtomicUsize::new(0));
    let queue = Queue {
        tx,
        pending: pending.clone(),
    };
    (queue, Receiver { rx }, pending)
}

/// The responses carrying `runs` of `batch` for one watcher, handed to
/// `send` in order: one, or (when the watcher asked for fragments and the
/// events are over `limit` bytes) several, each but the last marked
/// `fragment`, as etcd splits them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn event_responses(
    header: ResponseHeader,
    watch_id: i64,
    batch: &Batch,
    runs: &SharedRuns,
    prev_kv: bool,
    fragment: bool,
    limit: usize,
    mut send: impl FnMut(Queued),
) {
    let item = |runs: SharedRuns, fragment: bool| Queued::Events {
        header,
        watch_id,
        batch: batch.clone(),
        runs,
        prev_kv,
        fragment,
    };
    let picked = || runs.runs.iter().cloned().flatten();
    let len = |i: u32| batch.get(i as usize).map_or(0, |e| event_len(e, prev_kv));
    // Fragmenting needs at least two events, so a one-event pick (the
    // common case of a put per commit) never sizes its events.
    if !fragment || runs.runs.iter().map(|r| r.len()).sum::<usize>() < 2 {
        return send(item(runs.clone(), false));
    }
    if picked().map(len).sum::<usize>() <= limit {
        return send(item(runs.clone(), false));
    }
    let mut cur = Runs::new();
    let mut size = 0;
    for i in picked() {
        let n = len(i);
        if !cur.is_empty() && size + n > limit {
            send(item(Arc::new(Picked::new(std::mem::take(&mut cur))), true));
            size = 0;
        }
        size += n;
        push_index(&mut cur, i);
    }
    send(item(Arc::new(Picked::new(cur)), false));
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_proto::mvccpb::KeyValue;

    fn ev(key: &str, value_len: usize, prev: bool) -> Event {
        let kv = |v: usize| KeyValue {
            key: key.as_bytes().to_vec(),
            value: vec![b'v'; v],
            mod_revision: 5,
            ..Default::default()
        };
        Event {
            r#type: 0,
            kv: Some(kv(value_len)),
            prev_kv: prev.then(|| kv(7)),
        }
    }

    fn take(q: Queued) -> WatchResponse {
        q.into_response()
    }

    /// `event_responses` collected into a Vec.
    fn responses(
        h: ResponseHeader,
        id: i64,
        batch: &Batch,
        runs: Runs,
        prev_kv: bool,
        fragment: bool,
        limit: usize,
    ) -> Vec<Queued> {
        let mut out = Vec::new();
        let runs = Arc::new(Picked::new(runs));
        event_responses(h, id, batch, &runs, prev_kv, fragment, limit, |q| {
            out.push(q)
        });
        out
    }

    #[test]
    fn shares_and_strips_prev_kv() {
        let batch: Batch = Arc::new(vec![ev("a", 3, true), ev("b", 3, true), ev("c", 3, true)]);
        let mut runs = Runs::new();
        for i in [0, 2] {
            push_index(&mut runs, i);
        }
        assert_eq!(runs, vec![0..1, 2..3]);
        let h = ResponseHeader::default();
        let out = responses(h, 4, &batch, runs, false, false, 1 << 20);
        assert_eq!(Arc::strong_count(&batch), 2);
        let r = take(out.into_iter().next().unwrap());
        let keys: Vec<_> = r.events.iter().map(|e| e.kv.clone().unwrap().key).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec()]);
        assert!(r.events.iter().all(|e| e.prev_kv.is_none()));
        assert_eq!(event_len(&batch[0], false), r.events[0].encoded_len());
        assert_eq!(event_len(&batch[0], true), batch[0].encoded_len());
    }

    #[test]
    fn last_holder_moves_events() {
        let keys = |r: &WatchResponse| -> Vec<Vec<u8>> {
            r.events.iter().map(|e| e.kv.clone().unwrap().key).collect()
        };
        let make = || -> Batch { Arc::new(["a", "b", "c", "d"].map(|k| ev(k, 3, true)).to_vec()) };
        let h = ResponseHeader::default();
        // Picks out of the middle, prev_kv stripped.
        let mut runs = Runs::new();
        for i in [1, 3] {
            push_index(&mut runs, i);
        }
        let out = responses(h, 1, &make(), runs, false, false, 1 << 20);
        let r = take(out.into_iter().next().unwrap());
        assert_eq!(keys(&r), vec![b"b".to_vec(), b"d".to_vec()]);
        assert!(r.events.iter().all(|e| e.prev_kv.is_none()));
        // The whole batch, prev_kv kept.
        let all: Runs = std::iter::once(0..4).collect();
        let out = responses(h, 1, &make(), all, true, false, 1 << 20);
        let r = take(out.into_iter().next().unwrap());
        assert_eq!(r.events.len(), 4);
        assert!(r.events.iter().all(|e| e.prev_kv.is_some()));
        // A batch still shared by another response is copied, not taken.
        let shared = make();
        let first: Runs = std::iter::once(0..2).collect();
        let out = responses(h, 1, &shared, first, false, false, 1 << 20);
        let r = take(out.into_iter().next().unwrap());
        assert_eq!(keys(&r), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(shared.len(), 4);
    }

    #[test]
    fn fragments_like_etcd() {
        let batch: Batch = Arc::new((0..5).map(|_| ev("k", 100, false)).collect());
        let one = batch[0].encoded_len();
        let h = ResponseHeader::default();
        let all: Runs = std::iter::once(0..5).collect();
        let out = responses(h, 1, &batch, all.clone(), false, true, 2 * one);
        let got: Vec<_> = out.into_iter().map(take).collect();
        let shape: Vec<_> = got.iter().map(|r| (r.events.len(), r.fragment)).collect();
        assert_eq!(shape, vec![(2, true), (2, true), (1, false)]);
        // Not asked for, or small enough: one response.
        assert_eq!(
            responses(h, 1, &batch, all.clone(), false, false, 1).len(),
            1
        );
        assert_eq!(responses(h, 1, &batch, all, false, true, 5 * one).len(), 1);
    }
}
