//! Watches: `NativeWatch.next()` pulls one batch at a time (the JS layer
//! turns that into an async iterator or an EventEmitter). Resume after a
//! disconnect is the client crate's: no event is lost or repeated; each
//! resume is reported as a batch with `resumedAt` set.

use std::sync::Arc;

use futures::StreamExt;
use kv_client::{EventType, WatchOptions, WatchStream};
use napi::bindgen_prelude::Float64Array;
use napi_derive::napi;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::client::NativeClient;
use crate::convert::{Bytes, JsBytes, KV_STRIDE, bytes, pack_kv};
use crate::{errors, guard};

/// Options of a watch.
#[napi(object)]
pub struct WatchOpts {
    pub prefix: Option<bool>,
    pub from_key: Option<bool>,
    pub end: Option<Bytes>,
    /// Replay from this revision (0 = from now).
    pub start_revision: Option<i64>,
    pub prev_kv: Option<bool>,
    pub progress_notify: Option<bool>,
    pub no_put: Option<bool>,
    pub no_delete: Option<bool>,
}

fn options(o: Option<WatchOpts>) -> WatchOptions {
    // Always on: the iterator skips the empty batch, the emitter says 'resumed'.
    let mut w = WatchOptions::new().with_resume_notify();
    let Some(o) = o else { return w };
    if o.prefix == Some(true) {
        w = w.with_prefix();
    }
    if o.from_key == Some(true) {
        w = w.with_from_key();
    }
    if let Some(end) = o.end {
        w = w.with_range(bytes(end));
    }
    if let Some(r) = o.start_revision.filter(|r| *r > 0) {
        w = w.with_start_revision(r);
    }
    if o.prev_kv == Some(true) {
        w = w.with_prev_kv();
    }
    if o.progress_notify == Some(true) {
        w = w.with_progress_notify();
    }
    if o.no_put == Some(true) {
        w = w.with_no_put();
    }
    if o.no_delete == Some(true) {
        w = w.with_no_delete();
    }
    w
}

/// Numbers per event in [`PackedBatch::meta`].
const STRIDE: usize = 16;

/// The events of one revision (or a progress notification or resume
/// announcement: no events), packed: creating a napi object per event and per key-value costs about
/// four times more than everything else a watch does per event, so the JS
/// layer (`lib/watch.js`) builds the objects from these.
///
/// `meta` holds `count` groups of 16 numbers: type (0 put, 1 delete),
/// whether a previous key-value follows (0/1), then for the key-value and
/// for the previous one: key length, value length, create revision, mod
/// revision, version, lease ID high and low 32 bits. `data` holds each
/// event's key, value, previous key and previous value, in order.
#[napi(object, object_from_js = false)]
pub struct PackedBatch {
    /// The store revision when the batch was sent.
    pub revision: i64,
    pub count: u32,
    #[napi(ts_type = "Buffer")]
    pub data: JsBytes,
    pub meta: Float64Array,
    /// Set (with no events) when the watch was re-created after a
    /// disconnect: the revision it continues from.
    pub resumed_at: Option<i64>,
}

fn pack(revision: i64, events: Vec<kv_client::Event>, resumed_at: Option<i64>) -> PackedBatch {
    let mut meta = Vec::with_capacity(events.len() * STRIDE);
    let mut data = Vec::new();
    let mut count = 0;
    for e in events {
        let Some(kv) = e.kv.as_ref() else { continue };
        let kind = match e.r#type() {
            EventType::Put => 0.0,
            EventType::Delete => 1.0,
        };
        meta.push(kind);
        meta.push(if e.prev_kv.is_some() { 1.0 } else { 0.0 });
        pack_kv(kv, &mut meta, &mut data);
        match e.prev_kv.as_ref() {
            Some(prev) => pack_kv(prev, &mut meta, &mut data),
            None => meta.extend_from_slice(&[0.0; KV_STRIDE]),
        }
        count += 1;
    }
    PackedBatch {
        revision,
        count,
        data: JsBytes(data),
        meta: Float64Array::new(meta),
        resumed_at,
    }
}

/// A running watch. `next()` resolves with the next batch, or `null` once
/// cancelled or the client is closed; it rejects with `COMPACTED` if the
/// watch cannot resume because its history was compacted.
#[napi]
pub struct NativeWatch {
    stream: Arc<Mutex<Option<WatchStream>>>,
    cancel: CancellationToken,
    watch_id: i64,
}

#[napi]
impl NativeClient {
    /// Starts a watch; resolves once the server confirmed it.
    #[napi]
    pub async fn watch(
        &self,
        key: Bytes,
        options_: Option<WatchOpts>,
    ) -> napi::Result<NativeWatch> {
        let c = self.live()?;
        let opts = options(options_);
        let key = bytes(key);
        let cancel = self.closed.child_token();
        guard(async move {
            let stream = tokio::select! {
                _ = cancel.cancelled() => return Err(errors::closed()),
                s = c.watch(key, opts) => s.map_err(errors::client)?,
            };
            Ok(NativeWatch {
                watch_id: stream.watch_id(),
                stream: Arc::new(Mutex::new(Some(stream))),
                cancel,
            })
        })
        .await
    }
}

#[napi]
impl NativeWatch {
    /// The server's ID for the watch when it was created.
    #[napi(getter)]
    pub fn watch_id(&self) -> i64 {
        self.watch_id
    }

    /// The next batch; `null` when the watch has ended.
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<PackedBatch>> {
        let stream = self.stream.clone();
        let cancel = self.cancel.clone();
        guard(async move {
            let mut slot = stream.lock().await;
            let Some(s) = slot.as_mut() else {
                return Ok(None);
            };
            let item = tokio::select! {
                biased;
                _ = cancel.cancelled() => None,
                item = s.next() => item,
            };
            match item {
                Some(Ok(mut batch)) => {
                    let resumed_at = batch.resumed_at();
                    Ok(Some(pack(
                        batch.revision(),
                        batch.take_events(),
                        resumed_at,
                    )))
                }
                Some(Err(e)) => {
                    *slot = None;
                    Err(errors::client(e))
                }
                None => {
                    // Dropping the stream cancels the watch on the server.
                    *slot = None;
                    Ok(None)
                }
            }
        })
        .await
    }

    /// Cancels the watch: a pending `next()` resolves with `null`.
    #[napi]
    pub fn cancel(&self) {
        self.cancel.cancel();
        if let Ok(mut slot) = self.stream.try_lock() {
            *slot = None;
        }
    }

    /// Whether the watch was cancelled (or its client closed).
    #[napi(getter)]
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}
