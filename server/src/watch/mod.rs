//! Watches: many watchers per gRPC stream, fed from the applier.
//!
//! A watcher is *synced* when it has seen everything up to the last published
//! revision; the applier hands synced watchers new events directly. A watcher
//! that starts in the past, or whose stream has too many responses queued
//! (a slow reader), is *unsynced*: the catch-up task replays it from the
//! store's history until it reaches the head, then marks it synced under the
//! hub lock, so no revision is lost or repeated. Publishing never blocks: a
//! full stream only turns its watchers unsynced.
//!
//! Memory is bounded per stream: at most [`MAX_PENDING_RESPONSES`] responses
//! queued (plus a watcher's fragments), [`MAX_WATCHERS_PER_STREAM`] watchers,
//! and event bytes shared between all the responses that carry them.

mod catchup;
mod hub;
mod queue;
mod wire;

pub use hub::{
    StreamHandle, WatchHub, MAX_WATCHED_KEY_BYTES_PER_STREAM, MAX_WATCHERS_PER_STREAM,
    TOO_MANY_WATCHERS, WATCHED_KEYS_TOO_LARGE,
};
pub use queue::{Outgoing, Receiver, MAX_PENDING_RESPONSES};
