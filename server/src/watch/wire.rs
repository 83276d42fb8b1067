//! Watch responses as gRPC sends them, with the events encoded once per
//! shared pick.
//!
//! Every watcher that picked the same events out of one batch (one range
//! and filters, on any stream) sends the same `events` bytes; only the
//! header and the watch ID differ per response. So the events are encoded
//! once per pick (and prev_kv choice), lazily by the first stream writer
//! that sends them, and every other response copies those bytes. The bytes
//! are exactly what prost writes for the same `WatchResponse` (fields in
//! number order), so a client cannot tell the difference.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use kv_proto::etcdserverpb::ResponseHeader;
use kv_proto::mvccpb::Event;
use prost::encoding::{self, WireType};
use prost::Message;

use super::queue::Runs;

/// Field numbers of etcdserverpb.WatchResponse (etcd's rpc.proto).
const RESP_HEADER: u32 = 1;
const RESP_WATCH_ID: u32 = 2;
const RESP_FRAGMENT: u32 = 7;
const RESP_EVENTS: u32 = 11;
/// Field numbers of mvccpb.Event (etcd's kv.proto).
const EVENT_TYPE: u32 = 1;
const EVENT_KV: u32 = 2;
const EVENT_PREV_KV: u32 = 3;

/// The indices one watcher (or every watcher of one range and filters)
/// picked out of a batch, and their encoding, made on first use.
pub(crate) struct Picked {
    pub(crate) runs: Runs,
    /// The `events` fields, without and with prev_kv.
    wire: [OnceLock<Bytes>; 2],
}

impl Picked {
    pub(crate) fn new(runs: Runs) -> Self {
        Picked {
            runs,
            wire: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// The `events` fields of a WatchResponse carrying these picks of
    /// `batch` (the batch they were picked from), encoded on first use.
    pub(crate) fn wire(&self, batch: &[Event], prev_kv: bool) -> &Bytes {
        self.wire[usize::from(prev_kv)].get_or_init(|| encode_events(batch, &self.runs, prev_kv))
    }
}

/// Encoded size of `e` as sent (without its prev_kv unless asked for).
pub(crate) fn event_len(e: &Event, prev_kv: bool) -> usize {
    match &e.prev_kv {
        Some(p) if !prev_kv => e.encoded_len() - encoding::message::encoded_len(EVENT_PREV_KV, p),
        _ => e.encoded_len(),
    }
}

/// Field 11 (`events`) of a WatchResponse for the events of `batch` at
/// `runs`, prev_kv left out unless asked for.
fn encode_events(batch: &[Event], runs: &Runs, prev_kv: bool) -> Bytes {
    let picked = || {
        runs.iter()
            .cloned()
            .flatten()
            .filter_map(|i| batch.get(i as usize))
    };
    let field =
        |n: usize| encoding::key_len(RESP_EVENTS) + encoding::encoded_len_varint(n as u64) + n;
    let total: usize = picked().map(|e| field(event_len(e, prev_kv))).sum();
    #[cfg(test)]
    tests::ENCODINGS.with(|n| n.set(n.get() + 1));
    let mut buf = BytesMut::with_capacity(total);
    for e in picked() {
        encoding::encode_key(RESP_EVENTS, WireType::LengthDelimited, &mut buf);
        encoding::encode_varint(event_len(e, prev_kv) as u64, &mut buf);
        // As prost encodes an Event: fields in order, defaults left out.
        if e.r#type != 0 {
            encoding::int32::encode(EVENT_TYPE, &e.r#type, &mut buf);
        }
        if let Some(kv) = &e.kv {
            encoding::message::encode(EVENT_KV, kv, &mut buf);
        }
        if let (true, Some(p)) = (prev_kv, &e.prev_kv) {
            encoding::message::encode(EVENT_PREV_KV, p, &mut buf);
        }
    }
    buf.freeze()
}

/// Writes a WatchResponse carrying already encoded `events` fields, as
/// prost would write the whole message.
pub(crate) fn encode_response(
    header: &ResponseHeader,
    watch_id: i64,
    fragment: bool,
    events: &[u8],
    buf: &mut impl BufMut,
) {
    encoding::message::encode(RESP_HEADER, header, buf);
    if watch_id != 0 {
        encoding::int64::encode(RESP_WATCH_ID, &watch_id, buf);
    }
    if fragment {
        encoding::bool::encode(RESP_FRAGMENT, &fragment, buf);
    }
    buf.put_slice(events);
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use kv_proto::etcdserverpb::WatchResponse;
    use kv_proto::mvccpb::{event::EventType, KeyValue};

    use super::*;
    use crate::watch::queue::{event_responses, push_index, Batch, Outgoing, Queued};

    thread_local! {
        /// Event encodings made on this thread (see `encode_events`).
        pub(crate) static ENCODINGS: Cell<usize> = const { Cell::new(0) };
    }

    /// Event encodings made on this thread so far.
    pub(crate) fn encodings() -> usize {
        ENCODINGS.with(Cell::get)
    }

    fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: 2,
            mod_revision: rev,
            version: rev - 1,
            lease: if rev % 2 == 0 { 7 } else { 0 },
        }
    }

    fn batch() -> Batch {
        let put = |k: &str, rev| Event {
            r#type: EventType::Put as i32,
            kv: Some(kv(k, "new", rev)),
            prev_kv: (rev % 3 != 0).then(|| kv(k, "old", rev - 1)),
        };
        let del = |k: &str, rev| Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: k.into(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: Some(kv(k, "gone", rev - 1)),
        };
        Arc::new(vec![
            put("a", 5),
            del("b", 6),
            put("c", 6),
            put("d", 7),
            del("", 8),
        ])
    }

    /// The responses `event_responses` queues for one watcher.
    fn queued(batch: &Batch, picks: &[u32], id: i64, prev_kv: bool, limit: usize) -> Vec<Queued> {
        let mut runs = Runs::new();
        for &i in picks {
            push_index(&mut runs, i);
        }
        let header = ResponseHeader {
            cluster_id: 0x1234_5678_9abc,
            member_id: 42,
            revision: 8,
            raft_term: 3,
        };
        let mut out = Vec::new();
        let runs = Arc::new(Picked::new(runs));
        event_responses(header, id, batch, &runs, prev_kv, true, limit, |q| {
            out.push(q)
        });
        out
    }

    // Every shape of event response encodes to the bytes prost writes for
    // the same message: puts and deletes, prev_kv kept and stripped, watch
    // ID 0 and negative, fragments.
    #[test]
    fn encodes_what_prost_encodes() {
        let batch = batch();
        let one = batch[0].encoded_len();
        for (picks, id, prev_kv, limit) in [
            (&[0, 1, 2, 3, 4][..], 0, false, 1 << 20),
            (&[0, 1, 2, 3, 4], 9, true, 1 << 20),
            (&[1, 3], -1, true, 1 << 20),
            (&[0, 2, 3], i64::MAX, false, one), // one fragment per event
            (&[4], 3, false, 1),
        ] {
            let by_prost: Vec<WatchResponse> = queued(&batch, picks, id, prev_kv, limit)
                .into_iter()
                .map(|q| Outgoing(q).into_response())
                .collect();
            let ours = queued(&batch, picks, id, prev_kv, limit);
            assert_eq!(ours.len(), by_prost.len());
            for (q, want) in ours.into_iter().zip(&by_prost) {
                let mut buf = Vec::new();
                Outgoing(q).encode(&mut buf);
                assert_eq!(
                    buf,
                    want.encode_to_vec(),
                    "picks {picks:?} id {id} prev_kv {prev_kv}"
                );
            }
        }
    }
}
