//! Counters for events in the store, the read path and the peer network
//! (etcd's storage/mvcc, etcdserver/read and rafthttp series), one call per
//! site in the module that owns the event.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::get;
use crate::error::{KvError, KvResult};

tokio::task_local! {
    /// Set while kvd reads for its own bookkeeping (the key count of a
    /// scrape), which etcd's counters do not see.
    static UNCOUNTED: ();
}

/// Runs `fut` without counting its ranges in etcd_mvcc_range_total.
pub async fn uncounted<F: std::future::Future>(fut: F) -> F::Output {
    UNCOUNTED.scope((), fut).await
}

/// One Range executed (etcd_mvcc_range_total): standalone, inside a txn,
/// on any member. etcd counts its mvcc reads the same way.
pub fn mvcc_range() {
    if UNCOUNTED.try_with(|_| ()).is_err() {
        get().mvcc_range.inc();
    }
}

/// One Put applied on this member (etcd_mvcc_put_total).
pub fn mvcc_put() {
    get().mvcc_put.inc();
}

/// One DeleteRange applied on this member (etcd_mvcc_delete_total; one per
/// request, whatever the number of keys, as etcd counts).
pub fn mvcc_delete() {
    get().mvcc_delete.inc();
}

/// One Txn request executed (etcd_mvcc_txn_total). etcd counts an mvcc
/// transaction holding more than one operation; kvd counts Txn requests.
pub fn mvcc_txn() {
    get().mvcc_txn.inc();
}

/// One batch of compacted rows deleted (mvcc/compactor.rs): its pause
/// (the write transaction holding the backend) and the rows it removed
/// (etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds,
/// etcd_debugging_mvcc_db_compaction_keys_total).
pub fn compaction_batch(pause: Duration, removed: u64) {
    let s = get();
    // Whole milliseconds, as etcd's Duration / time.Millisecond.
    s.compaction_pause.observe(pause.as_millis() as f64);
    s.compaction_keys.inc_by(removed);
}

/// One compaction's rows all deleted, `took` after it was applied
/// (etcd_debugging_mvcc_db_compaction_total_duration_milliseconds,
/// etcd_debugging_mvcc_db_compaction_last).
pub fn compaction_finished(took: Duration) {
    let s = get();
    s.compaction_total.observe(took.as_millis() as f64);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    s.compaction_last.set(now as f64);
}

/// Looks at one read barrier's outcome: one that timed out counts as a
/// slow read index (etcd_server_slow_read_indexes_total).
pub fn read_index(result: &KvResult<()>) {
    if matches!(result, Err(KvError::Timeout)) {
        get().slow_read_indexes.inc();
    }
}

/// One raft message to `peer` that could not be delivered
/// (etcd_network_peer_sent_failures_total); `heartbeat` when it was the
/// leader's empty AppendEntries (etcd_server_heartbeat_send_failures_total).
pub fn peer_send_failed(peer: u64, heartbeat: bool) {
    let s = get();
    s.peer_sent_failures
        .with_label_values(&[&format!("{peer:x}")])
        .inc();
    if heartbeat {
        s.heartbeat_send_failures.inc();
    }
}

/// Bytes of gRPC messages received from clients (request body frames).
pub fn client_received(n: usize) {
    get().client_grpc_received_bytes.inc_by(n as u64);
}

/// Bytes of gRPC messages sent to clients (response body frames).
pub fn client_sent(n: usize) {
    get().client_grpc_sent_bytes.inc_by(n as u64);
}

/// The number of live keys (etcd_debugging_mvcc_keys_total), read for
/// each scrape.
pub fn set_keys(n: i64) {
    get().keys.set(n);
}
