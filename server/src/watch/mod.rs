//! Watches: many watchers per gRPC stream, fed from the applier.
//!
//! A watcher is *synced* when it has seen everything up to the last published
//! revision; the applier hands synced watchers new events directly. A watcher
//! that starts in the past, or whose stream has too many responses queued
//! (a slow reader), is *unsynced*: the catch-up task replays it from the
//! store's history until it reaches the head, then marks it synced under the
//! hub lock, so no revision is lost or repeated. Publishing never blocks: a
//! full stream only turns its watchers unsynced.

mod hub;

pub use hub::{StreamHandle, WatchHub, MAX_PENDING_RESPONSES};
