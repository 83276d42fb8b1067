//! Every series kvd exports, with etcd's names, help texts, types, labels
//! and buckets (etcd 3.7: etcdserver/metrics.go, storage/wal, storage/backend,
//! storage/mvcc, lease, etcdserver/api/rafthttp, etcdhttp/health.go,
//! etcdserver/api/v3rpc, etcdserver/read, storage/metrics.go).

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// All of kvd's series; see [`super::get`].
pub struct Series {
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub leader_changes: IntCounter,
    /// A gauge in etcd, despite the name.
    pub proposals_committed: Gauge,
    /// A gauge in etcd, despite the name.
    pub proposals_applied: Gauge,
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    pub slow_applies: IntCounter,
    pub server_id: IntGaugeVec,
    pub server_version: IntGaugeVec,
    pub cluster_version: IntGaugeVec,
    pub health_success: IntCounter,
    pub health_failures: IntCounter,
    pub healthcheck: IntGaugeVec,
    pub healthchecks_total: IntCounterVec,
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    pub db_total_size: Gauge,
    pub db_total_size_in_use: Gauge,
    pub watch_streams: IntGauge,
    pub watchers: IntGauge,
    pub watch_queued: IntGauge,
    pub watch_queue_max: IntGauge,
    pub lease_granted: IntCounter,
    pub lease_revoked: IntCounter,
    pub peer_sent_bytes: IntCounterVec,
    pub peer_received_bytes: IntCounterVec,
    pub peer_rtt: prometheus::HistogramVec,
    pub grpc_started: IntCounterVec,
    pub grpc_handled: IntCounterVec,
    pub grpc_handling: prometheus::HistogramVec,
    pub build_info: IntGaugeVec,
    pub batch_size: Histogram,
    pub forwarded: IntCounter,
    pub quota_backend_bytes: Gauge,
    pub client_grpc_sent_bytes: IntCounter,
    pub client_grpc_received_bytes: IntCounter,
    pub peer_sent_failures: IntCounterVec,
    pub heartbeat_send_failures: IntCounter,
    pub slow_read_indexes: IntCounter,
    pub keys: IntGauge,
    pub mvcc_range: IntCounter,
    pub mvcc_put: IntCounter,
    pub mvcc_delete: IntCounter,
    pub mvcc_txn: IntCounter,
    pub compaction_pause: Histogram,
    pub compaction_total: Histogram,
    pub compaction_last: Gauge,
    pub compaction_keys: IntCounter,
}

/// etcd's ExponentialBuckets(start, 2, count); the arguments are constants
/// that prometheus accepts, so this cannot fail.
fn exp(start: f64, count: usize) -> Vec<f64> {
    exponential_buckets(start, 2.0, count).unwrap_or_default()
}

/// Registers `c` and hands it back. Registration fails only for a duplicate
/// or inconsistent name, which the fixed set below never has; such a series
/// would then be missing from /metrics, which the tests would catch.
fn reg<C: Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "registering a metric");
    }
    c
}

macro_rules! new {
    ($r:expr, $ty:ident, $name:expr, $help:expr) => {
        reg($r, $ty::new($name, $help).expect("valid metric"))
    };
}

impl Series {
    pub(super) fn register(r: &Registry) -> Series {
        let hist = |name: &str, help: &str, buckets: Vec<f64>| {
            reg(
                r,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                    .expect("valid histogram"),
            )
        };
        let hist_vec = |name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]| {
            reg(
                r,
                prometheus::HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets),
                    labels,
                )
                .expect("valid histogram"),
            )
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge"),
            )
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"),
            )
        };
        #[cfg(target_os = "linux")]
        if let Err(e) = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::error!(error = %e, "registering the process collector");
        }
        let build_info = gauge_vec(
            "kvd_build_info",
            "kvd's version (etcd exports go_info). 1 for the 'version' label.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let grpc = ["grpc_type", "grpc_service", "grpc_method"];
        let grpc_code = ["grpc_type", "grpc_service", "grpc_method", "grpc_code"];
        Series {
            has_leader: new!(r, IntGauge, "etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."),
            is_leader: new!(r, IntGauge, "etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise."),
            leader_changes: new!(r, IntCounter, "etcd_server_leader_changes_seen_total", "The number of leader changes seen."),
            proposals_committed: new!(r, Gauge, "etcd_server_proposals_committed_total", "The total number of consensus proposals committed."),
            proposals_applied: new!(r, Gauge, "etcd_server_proposals_applied_total", "The total number of consensus proposals applied."),
            proposals_pending: new!(r, IntGauge, "etcd_server_proposals_pending", "The current number of pending proposals to commit."),
            proposals_failed: new!(r, IntCounter, "etcd_server_proposals_failed_total", "The total number of failed proposals seen."),
            slow_applies: new!(r, IntCounter, "etcd_server_slow_apply_total", "The total number of slow apply requests (likely overloaded from slow disk)."),
            server_id: gauge_vec("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.", &["server_id"]),
            server_version: gauge_vec("etcd_server_version", "Which version is running. 1 for 'server_version' label with current version.", &["server_version"]),
            cluster_version: gauge_vec("etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label with current cluster version", &["cluster_version"]),
            health_success: new!(r, IntCounter, "etcd_server_health_success", "The total number of successful health checks"),
            health_failures: new!(r, IntCounter, "etcd_server_health_failures", "The total number of failed health checks"),
            healthcheck: gauge_vec("etcd_server_healthcheck", "The result of each kind of healthcheck.", &["type", "name"]),
            healthchecks_total: counter_vec("etcd_server_healthchecks_total", "The total number of each kind of healthcheck.", &["type", "name", "status"]),
            wal_fsync: hist("etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL.", exp(0.001, 14)),
            backend_commit: hist("etcd_disk_backend_commit_duration_seconds", "The latency distributions of commit called by backend.", exp(0.001, 14)),
            db_total_size: new!(r, Gauge, "etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes."),
            db_total_size_in_use: new!(r, Gauge, "etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes."),
            watch_streams: new!(r, IntGauge, "etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams."),
            watchers: new!(r, IntGauge, "etcd_debugging_mvcc_watcher_total", "Total number of watchers."),
            watch_queued: new!(r, IntGauge, "kvd_watch_queued_responses", "Watch responses queued for slow readers, over all streams."),
            watch_queue_max: new!(r, IntGauge, "kvd_watch_stream_queue_max", "Responses queued on the most backed-up watch stream (it stops receiving events at the per-stream bound)."),
            lease_granted: new!(r, IntCounter, "etcd_debugging_lease_granted_total", "The total number of granted leases."),
            lease_revoked: new!(r, IntCounter, "etcd_debugging_lease_revoked_total", "The total number of revoked leases."),
            peer_sent_bytes: counter_vec("etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers.", &["To"]),
            peer_received_bytes: counter_vec("etcd_network_peer_received_bytes_total", "The total number of bytes received from peers.", &["From"]),
            peer_rtt: hist_vec("etcd_network_peer_round_trip_time_seconds", "Round-Trip-Time histogram between peers", exp(0.0001, 16), &["To"]),
            grpc_started: counter_vec("grpc_server_started_total", "Total number of RPCs started on the server.", &grpc),
            grpc_handled: counter_vec("grpc_server_handled_total", "Total number of RPCs completed on the server, regardless of success or failure.", &grpc_code),
            // go-grpc-prometheus' default buckets (prometheus.DefBuckets).
            grpc_handling: hist_vec("grpc_server_handling_seconds", "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.", prometheus::DEFAULT_BUCKETS.to_vec(), &grpc),
            build_info,
            batch_size: hist("kvd_server_proposal_batch_size", "Requests per group-commit batch this member submitted to raft.", exp(1.0, 12)),
            forwarded: new!(r, IntCounter, "kvd_server_proposals_forwarded_total", "Proposals this member forwarded to the leader."),
            quota_backend_bytes: new!(r, Gauge, "etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes."),
            client_grpc_sent_bytes: new!(r, IntCounter, "etcd_network_client_grpc_sent_bytes_total", "The total number of bytes sent to grpc clients."),
            client_grpc_received_bytes: new!(r, IntCounter, "etcd_network_client_grpc_received_bytes_total", "The total number of bytes received from grpc clients."),
            peer_sent_failures: counter_vec("etcd_network_peer_sent_failures_total", "The total number of send failures from peers.", &["To"]),
            heartbeat_send_failures: new!(r, IntCounter, "etcd_server_heartbeat_send_failures_total", "The total number of leader heartbeat send failures (likely overloaded from slow disk)."),
            slow_read_indexes: new!(r, IntCounter, "etcd_server_slow_read_indexes_total", "The total number of pending read indexes not in sync with leader's or timed out read index requests."),
            keys: new!(r, IntGauge, "etcd_debugging_mvcc_keys_total", "Total number of keys."),
            mvcc_range: new!(r, IntCounter, "etcd_mvcc_range_total", "Total number of ranges seen by this member."),
            mvcc_put: new!(r, IntCounter, "etcd_mvcc_put_total", "Total number of puts seen by this member."),
            mvcc_delete: new!(r, IntCounter, "etcd_mvcc_delete_total", "Total number of deletes seen by this member."),
            mvcc_txn: new!(r, IntCounter, "etcd_mvcc_txn_total", "Total number of txns seen by this member."),
            // etcd's buckets: 1 ms to 4.096 s, and 100 ms to 819.2 s.
            compaction_pause: hist("etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds", "Bucketed histogram of db compaction pause duration.", exp(1.0, 13)),
            compaction_total: hist("etcd_debugging_mvcc_db_compaction_total_duration_milliseconds", "Bucketed histogram of db compaction total duration.", exp(100.0, 14)),
            compaction_last: new!(r, Gauge, "etcd_debugging_mvcc_db_compaction_last", "The unix time of the last db compaction. Resets to 0 on start."),
            compaction_keys: new!(r, IntCounter, "etcd_debugging_mvcc_db_compaction_keys_total", "Total number of db keys compacted."),
        }
    }
}
