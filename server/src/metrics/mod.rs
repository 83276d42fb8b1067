//! kvd's Prometheus series, in one process-wide registry, exposed as text on
//! `/metrics` (see [`crate::http`]). Names, types, labels and buckets follow
//! etcd's wherever the concept is the same, so etcd's alert rules and
//! dashboards work unchanged; series etcd has no equivalent for are `kvd_*`.
//!
//! Events are counted where they happen (one call per site, in the module
//! that owns the event); state that the node already knows (leadership,
//! indexes, sizes, watcher counts) is read at scrape time by [`refresh`].

mod events;
pub mod grpc;
mod series;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus::{Encoder, Registry, TextEncoder};

use crate::node::Node;
pub use events::*;
pub use series::Series;

/// The registry every kvd series lives in (process-wide, as etcd's default
/// registry is).
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

static SERIES: LazyLock<Series> = LazyLock::new(|| Series::register(&REGISTRY));

/// Every series, registered on first use.
pub fn get() -> &'static Series {
    &SERIES
}

/// etcd's warnApplyDuration: an apply slower than this counts as slow.
pub const SLOW_APPLY: Duration = Duration::from_millis(100);

/// The text exposition of every series, after reading `node`'s current state.
pub fn render(node: &Node) -> String {
    refresh(node);
    let mut out = Vec::new();
    // Encoding into a Vec fails only on an invalid family, which
    // `Series::register` cannot produce; answer what was encoded anyway.
    if let Err(e) = TextEncoder::new().encode(&REGISTRY.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding /metrics");
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Content-Type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Sets the gauges that mirror `node`'s state.
fn refresh(node: &Node) {
    let s = get();
    let st = node.status();
    s.has_leader.set(i64::from(node.has_live_leader()));
    s.is_leader.set(i64::from(node.is_leader()));
    s.proposals_committed.set(st.raft_index as f64);
    s.proposals_applied.set(st.raft_applied_index as f64);
    s.db_total_size.set(st.db_size as f64);
    s.db_total_size_in_use.set(st.db_size_in_use as f64);
    s.quota_backend_bytes.set(st.db_size_quota as f64);
    s.server_id
        .with_label_values(&[&format!("{:x}", node.member_id())])
        .set(1);
    let c = node.hub().counts();
    s.watch_streams.set(c.streams as i64);
    s.watchers.set(c.watchers as i64);
    s.watch_queued.set(c.queued as i64);
    s.watch_queue_max.set(c.queue_max as i64);
    s.server_version.with_label_values(&[&st.version]).set(1);
    // etcd's cluster version is the members' lowest major.minor.
    let minor: String = st.version.split('.').take(2).collect::<Vec<_>>().join(".");
    s.cluster_version.with_label_values(&[&minor]).set(1);
}

/// Last leader seen by [`observe_leader`] (0: none yet).
static LAST_LEADER: AtomicU64 = AtomicU64::new(0);

/// Counts a leader change as etcd does: each time a leader, different from
/// the one seen before, becomes known (the first election included).
pub fn observe_leader(leader: Option<u64>) {
    let Some(id) = leader else { return };
    if LAST_LEADER.swap(id, Ordering::Relaxed) != id {
        get().leader_changes.inc();
    }
}

/// Observes the time from its creation to its drop into a histogram (a
/// failed fsync or commit is timed as well, as in etcd).
#[must_use = "the time is observed when the timer drops"]
pub struct Timer {
    start: Instant,
    hist: &'static prometheus::Histogram,
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.hist.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Times one WAL fsync (etcd_disk_wal_fsync_duration_seconds).
pub fn wal_fsync() -> Timer {
    Timer {
        start: Instant::now(),
        hist: &get().wal_fsync,
    }
}

/// Times one backend commit (etcd_disk_backend_commit_duration_seconds).
pub fn backend_commit() -> Timer {
    Timer {
        start: Instant::now(),
        hist: &get().backend_commit,
    }
}

/// Counts an apply slower than [`SLOW_APPLY`] when it drops
/// (etcd_server_slow_apply_total).
#[must_use = "the apply is judged when the guard drops"]
pub struct ApplyTimer(Instant);

/// Starts timing one applied entry.
pub fn apply() -> ApplyTimer {
    ApplyTimer(Instant::now())
}

impl Drop for ApplyTimer {
    fn drop(&mut self) {
        if self.0.elapsed() > SLOW_APPLY {
            get().slow_applies.inc();
        }
    }
}

/// One proposal waiting to commit (etcd_server_proposals_pending) until
/// it drops.
#[must_use = "the proposal stays pending until the guard drops"]
pub struct Pending(());

/// Marks one proposal pending.
pub fn proposal() -> Pending {
    get().proposals_pending.inc();
    Pending(())
}

impl Drop for Pending {
    fn drop(&mut self) {
        get().proposals_pending.dec();
    }
}

/// Counts `n` proposals that raft failed to commit (no leader, timeout,
/// shutdown), as etcd_server_proposals_failed_total.
pub fn proposals_failed(n: usize) {
    get().proposals_failed.inc_by(n as u64);
}

/// Records one group-commit batch of `n` requests submitted to raft.
pub fn batch(n: usize) {
    get().batch_size.observe(n as f64);
}

/// Counts `n` proposals forwarded from this follower to the leader.
pub fn forwarded(n: usize) {
    get().forwarded.inc_by(n as u64);
}

/// Counts one lease granted.
pub fn lease_granted() {
    get().lease_granted.inc();
}

/// Counts one lease revoked.
pub fn lease_revoked() {
    get().lease_revoked.inc();
}

/// Records one raft message exchange with member `peer`: bytes sent and
/// received, and the round trip when it succeeded.
pub fn peer_exchange(peer: u64, sent: usize, received: usize, rtt: Option<Duration>) {
    let s = get();
    let id = format!("{peer:x}");
    s.peer_sent_bytes
        .with_label_values(&[&id])
        .inc_by(sent as u64);
    if received > 0 {
        s.peer_received_bytes
            .with_label_values(&[&id])
            .inc_by(received as u64);
    }
    if let Some(rtt) = rtt {
        s.peer_rtt
            .with_label_values(&[&id])
            .observe(rtt.as_secs_f64());
    }
}

/// Counts one health check answered (etcd_server_health_success/failures).
pub fn health(ok: bool) {
    let s = get();
    if ok {
        s.health_success.inc();
    } else {
        s.health_failures.inc();
    }
}

/// Records one named /livez or /readyz check (etcd_server_healthcheck and
/// etcd_server_healthchecks_total).
pub fn health_check(kind: &str, name: &str, ok: bool) {
    let s = get();
    s.healthcheck
        .with_label_values(&[kind, name])
        .set(i64::from(ok));
    let status = if ok { "success" } else { "error" };
    s.healthchecks_total
        .with_label_values(&[kind, name, status])
        .inc();
}
