//! /metrics on real kvd processes, parsed by the official Prometheus Python
//! client's text parser (prometheus_client.parser, from the venv that
//! scripts/setup.sh fills from server/tests/compat/requirements.txt): the
//! series etcd exports are there with etcd's types and label names
//! (compared with a real etcd 3.7.3 where it is built), and counters move
//! when their event happens: a proposal, an fsync, a Range, a lease, and a
//! leader change in a three-member cluster.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{free_port, Cluster};
use common::{etcd_latest, Etcd, Kvd, Options, Server};
use nix::sys::signal::Signal;
use serde_json::Value;

/// One parsed metric family: its type and samples (name, labels, value).
#[derive(Debug)]
struct Family {
    kind: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

type Families = BTreeMap<String, Family>;

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type,
                   "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;

fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/compat-venv/bin/python");
    assert!(
        p.exists(),
        "run scripts/setup.sh first: {} is missing",
        p.display()
    );
    p
}

/// GETs `url` with curl (HTTP/1.1): (status, body).
fn curl(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "20", "-w", "\n%{http_code}", url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Scrapes `base`/metrics and parses it with the official parser.
fn scrape(base: &str) -> Families {
    let (code, text) = curl(&format!("{base}/metrics"));
    assert_eq!(code, 200, "GET {base}/metrics: {text}");
    let mut child = Command::new(python())
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the Prometheus parser rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("parser JSON");
    let mut fams = Families::new();
    for (name, f) in v.as_object().expect("object") {
        let samples = f["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .map(|s| {
                let labels = s[1]
                    .as_object()
                    .expect("labels")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                (
                    s[0].as_str().unwrap_or_default().to_string(),
                    labels,
                    s[2].as_f64().unwrap_or(f64::NAN),
                )
            })
            .collect();
        let kind = f["type"].as_str().unwrap_or_default().to_string();
        fams.insert(name.clone(), Family { kind, samples });
    }
    fams
}

/// The value of the sample `sample` whose labels include `want`.
fn value(f: &Families, family: &str, sample: &str, want: &[(&str, &str)]) -> Option<f64> {
    f.get(family)?
        .samples
        .iter()
        .find(|(n, l, _)| {
            n == sample
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

/// The label names of a family's samples (without histogram's `le`).
fn label_names(f: &Family) -> BTreeSet<String> {
    f.samples
        .iter()
        .flat_map(|(_, l, _)| l.keys().cloned())
        .filter(|k| k != "le")
        .collect()
}

/// Family name (as the parser reports it: counters without `_total`) and type.
const EXPECTED: &[(&str, &str)] = &[
    ("etcd_server_has_leader", "gauge"),
    ("etcd_server_is_leader", "gauge"),
    ("etcd_server_leader_changes_seen", "counter"),
    // Gauges in etcd, despite their names.
    ("etcd_server_proposals_committed_total", "gauge"),
    ("etcd_server_proposals_applied_total", "gauge"),
    ("etcd_server_proposals_pending", "gauge"),
    ("etcd_server_proposals_failed", "counter"),
    ("etcd_server_slow_apply", "counter"),
    ("etcd_server_id", "gauge"),
    ("etcd_server_version", "gauge"),
    ("etcd_cluster_version", "gauge"),
    ("etcd_server_health_success", "counter"),
    ("etcd_server_health_failures", "counter"),
    ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
    ("etcd_disk_backend_commit_duration_seconds", "histogram"),
    ("etcd_mvcc_db_total_size_in_bytes", "gauge"),
    ("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge"),
    ("etcd_debugging_mvcc_watch_stream_total", "gauge"),
    ("etcd_debugging_mvcc_watcher_total", "gauge"),
    ("etcd_debugging_lease_granted", "counter"),
    ("etcd_debugging_lease_revoked", "counter"),
    ("grpc_server_started", "counter"),
    ("grpc_server_handled", "counter"),
    ("grpc_server_handling_seconds", "histogram"),
    ("process_cpu_seconds", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
    // What etcd's Grafana dashboard and alert rules (contrib/mixin) and
    // its operations guide use besides the above.
    ("etcd_server_quota_backend_bytes", "gauge"),
    ("etcd_network_client_grpc_sent_bytes", "counter"),
    ("etcd_network_client_grpc_received_bytes", "counter"),
    ("etcd_server_heartbeat_send_failures", "counter"),
    ("etcd_server_slow_read_indexes", "counter"),
    ("etcd_debugging_mvcc_keys_total", "gauge"),
    ("etcd_mvcc_range", "counter"),
    ("etcd_mvcc_put", "counter"),
    ("etcd_mvcc_delete", "counter"),
    ("etcd_mvcc_txn", "counter"),
    (
        "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
        "histogram",
    ),
    (
        "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
        "histogram",
    ),
    ("etcd_debugging_mvcc_db_compaction_last", "gauge"),
    ("etcd_debugging_mvcc_db_compaction_keys", "counter"),
    ("kvd_build_info", "gauge"),
    ("kvd_server_proposal_batch_size", "histogram"),
    ("kvd_server_proposals_forwarded", "counter"),
    ("kvd_watch_queued_responses", "gauge"),
    ("kvd_watch_stream_queue_max", "gauge"),
];

/// Some traffic so that labelled series (gRPC, leases, watchers) exist.
async fn traffic(endpoint: &str) -> (etcd_client::Client, etcd_client::WatchStream) {
    let mut c = etcd_client::Client::connect([endpoint], None)
        .await
        .expect("connect");
    c.put("k", "v", None).await.expect("put");
    c.get("k", None).await.expect("get");
    let lease = c.lease_grant(60, None).await.expect("grant");
    c.lease_revoke(lease.id()).await.expect("revoke");
    let stream = c.watch("k", None).await.expect("watch");
    (c, stream)
}

#[tokio::test]
async fn metrics_have_etcds_names_types_and_labels() {
    let metrics_port = free_port();
    let kvd = Server::start_with(
        Kvd,
        Options::default().arg(
            "listen-metrics-urls",
            format!("http://127.0.0.1:{metrics_port}"),
        ),
    )
    .await;
    let _watch = traffic(&kvd.endpoint()).await;
    let ours = scrape(&kvd.endpoint());
    for (name, kind) in EXPECTED {
        let f = ours
            .get(*name)
            .unwrap_or_else(|| panic!("{name} missing from kvd's /metrics"));
        assert_eq!(f.kind, *kind, "type of {name}");
    }
    let grpc = [
        ("grpc_type", "unary"),
        ("grpc_service", "etcdserverpb.KV"),
        ("grpc_method", "Range"),
        ("grpc_code", "OK"),
    ];
    assert!(
        value(
            &ours,
            "grpc_server_handled",
            "grpc_server_handled_total",
            &grpc
        ) >= Some(1.0)
    );
    let watch = [("grpc_type", "bidi_stream"), ("grpc_method", "Watch")];
    assert_eq!(
        value(
            &ours,
            "grpc_server_started",
            "grpc_server_started_total",
            &watch
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &ours,
            "etcd_debugging_mvcc_watcher_total",
            "etcd_debugging_mvcc_watcher_total",
            &[]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &ours,
            "etcd_server_has_leader",
            "etcd_server_has_leader",
            &[]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &ours,
            "kvd_build_info",
            "kvd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    // The WAL fsync histogram has etcd's buckets (1 ms doubling to 8.192 s).
    let les: Vec<String> = ours["etcd_disk_wal_fsync_duration_seconds"]
        .samples
        .iter()
        .filter_map(|(_, l, _)| l.get("le").cloned())
        .collect();
    assert_eq!(les.first().map(String::as_str), Some("0.001"));
    assert!(
        les.contains(&"8.192".to_string()) && les.len() == 15,
        "{les:?}"
    );

    // The metrics listener serves /metrics and /health, nothing else.
    let extra = format!("http://127.0.0.1:{metrics_port}");
    assert!(scrape(&extra).contains_key("etcd_server_has_leader"));
    assert_eq!(curl(&format!("{extra}/health")).0, 200);
    assert_eq!(curl(&format!("{extra}/v3/kv/range")).0, 404);

    // The same series in a real etcd 3.7.3: same type and label names.
    let Some(bin) = etcd_latest() else {
        eprintln!("etcd 3.7.3 not built (scripts/etcd-latest.sh): skipping the comparison");
        return;
    };
    let etcd = Server::start_with(
        Etcd,
        Options::default().binary(bin).arg("metrics", "extensive"),
    )
    .await;
    let _etcd_watch = traffic(&etcd.endpoint()).await;
    let theirs = scrape(&etcd.endpoint());
    for (name, _) in EXPECTED.iter().filter(|(n, _)| !n.starts_with("kvd_")) {
        let t = theirs
            .get(*name)
            .unwrap_or_else(|| panic!("{name} not in etcd 3.7.3's /metrics: fix the test"));
        let o = &ours[*name];
        assert_eq!(o.kind, t.kind, "type of {name}: kvd vs etcd");
        assert_eq!(
            label_names(o),
            label_names(t),
            "label names of {name}: kvd vs etcd"
        );
    }
    // etcd's buckets where both have the histogram.
    for name in [
        "etcd_disk_wal_fsync_duration_seconds",
        "etcd_disk_backend_commit_duration_seconds",
        "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
        "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
    ] {
        let les = |f: &Families| -> Vec<String> {
            f[name]
                .samples
                .iter()
                .filter_map(|(_, l, _)| l.get("le").cloned())
                .collect()
        };
        assert_eq!(les(&ours), les(&theirs), "buckets of {name}");
    }
}

#[tokio::test]
async fn counters_move_with_their_events() {
    let quota = 3_000_000_000u64;
    let kvd = Server::start_with(Kvd, Options::default().arg("quota-backend-bytes", quota)).await;
    let ep = kvd.endpoint();
    let mut c = etcd_client::Client::connect([ep.as_str()], None)
        .await
        .expect("connect");
    let before = scrape(&ep);
    c.put("a", "1", None).await.expect("put");
    c.get("a", None).await.expect("get");
    c.lease_grant(30, None).await.expect("grant");
    let after = scrape(&ep);
    let delta = |family: &str, sample: &str, labels: &[(&str, &str)]| {
        value(&after, family, sample, labels).unwrap_or(0.0)
            - value(&before, family, sample, labels).unwrap_or(0.0)
    };
    let committed = "etcd_server_proposals_committed_total";
    assert!(
        delta(committed, committed, &[]) >= 2.0,
        "a put and a grant commit two proposals"
    );
    let applied = "etcd_server_proposals_applied_total";
    assert!(delta(applied, applied, &[]) >= 2.0);
    let fsync = "etcd_disk_wal_fsync_duration_seconds";
    assert!(
        delta(fsync, &format!("{fsync}_count"), &[]) >= 1.0,
        "a proposal fsyncs the WAL"
    );
    let batch = "kvd_server_proposal_batch_size";
    assert!(delta(batch, &format!("{batch}_count"), &[]) >= 2.0);
    let range = [("grpc_method", "Range"), ("grpc_code", "OK")];
    assert_eq!(
        delta("grpc_server_handled", "grpc_server_handled_total", &range),
        1.0
    );
    let put = [("grpc_method", "Put"), ("grpc_type", "unary")];
    assert_eq!(
        delta("grpc_server_started", "grpc_server_started_total", &put),
        1.0
    );
    assert_eq!(
        delta(
            "etcd_debugging_lease_granted",
            "etcd_debugging_lease_granted_total",
            &[]
        ),
        1.0
    );
    // A failed call is counted with its code.
    let _ = c.lease_revoke(12345).await;
    let failed = scrape(&ep);
    let nf = [("grpc_method", "LeaseRevoke"), ("grpc_code", "NotFound")];
    assert_eq!(
        value(
            &failed,
            "grpc_server_handled",
            "grpc_server_handled_total",
            &nf
        ),
        Some(1.0)
    );
    store_counters_move(&mut c, &ep, quota).await;
}

/// etcd's mvcc series: puts, deletes, ranges, txns, live keys, compaction,
/// the quota and the client gRPC bytes.
async fn store_counters_move(c: &mut etcd_client::Client, ep: &str, quota: u64) {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let g = |f: &Families, name: &str| value(f, name, name, &[]).unwrap_or(0.0);
    let c_ = |f: &Families, fam: &str| value(f, fam, &format!("{fam}_total"), &[]).unwrap_or(0.0);
    let before = scrape(ep);
    c.put("b", "2", None).await.expect("put b");
    c.put("c", "3", None).await.expect("put c");
    c.delete("c", None).await.expect("delete c");
    c.get("b", None).await.expect("get b");
    let txn = Txn::new()
        .when([Compare::value("b", CompareOp::Equal, "2")])
        .and_then([TxnOp::put("b", "4", None), TxnOp::get("b", None)]);
    let done = c.txn(txn).await.expect("txn");
    // At the head: the deleted "c" and the old "b" go.
    let rev = done.header().map(|h| h.revision()).expect("header");
    c.compact(rev, None).await.expect("compact");
    let after = scrape(ep);
    let d = |fam: &str| c_(&after, fam) - c_(&before, fam);
    assert_eq!(d("etcd_mvcc_put"), 3.0, "two puts and one in a txn");
    assert_eq!(d("etcd_mvcc_delete"), 1.0);
    assert_eq!(d("etcd_mvcc_range"), 2.0, "a get and one in a txn");
    assert_eq!(d("etcd_mvcc_txn"), 1.0);
    // "a" and "b" live; "c" was deleted (scrapes do not count as ranges).
    assert_eq!(g(&after, "etcd_debugging_mvcc_keys_total"), 2.0);
    assert!(d("etcd_debugging_mvcc_db_compaction_keys") >= 1.0);
    assert!(g(&after, "etcd_debugging_mvcc_db_compaction_last") > 1.7e9);
    let pause = "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds";
    assert_eq!(
        value(&after, pause, &format!("{pause}_count"), &[]).unwrap_or(0.0)
            - value(&before, pause, &format!("{pause}_count"), &[]).unwrap_or(0.0),
        1.0
    );
    assert_eq!(g(&after, "etcd_server_quota_backend_bytes"), quota as f64);
    for fam in [
        "etcd_network_client_grpc_received_bytes",
        "etcd_network_client_grpc_sent_bytes",
    ] {
        assert!(d(fam) > 20.0, "{fam}: {}", d(fam));
    }
}

#[tokio::test]
async fn leader_change_is_counted_in_a_three_member_cluster() {
    let cluster = Cluster::start(3).await;
    let old = cluster.leader().await;
    let base = |i: usize| cluster.endpoint(i);
    let changes = "etcd_server_leader_changes_seen";
    let changes_total = "etcd_server_leader_changes_seen_total";
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let before: Vec<f64> = survivors
        .iter()
        .map(|i| value(&scrape(&base(*i)), changes, changes_total, &[]).unwrap_or(0.0))
        .collect();
    assert!(
        before.iter().all(|v| *v >= 1.0),
        "the first election counts: {before:?}"
    );
    // Peer traffic is labelled with the peer's ID in hex, as etcd does.
    let f = scrape(&base(old));
    let peers: BTreeSet<String> = f["etcd_network_peer_sent_bytes"]
        .samples
        .iter()
        .filter_map(|(_, l, _)| l.get("To").cloned())
        .collect();
    assert_eq!(
        peers.len(),
        2,
        "the leader sends to both followers: {peers:?}"
    );
    assert!(f.contains_key("etcd_network_peer_round_trip_time_seconds"));
    assert!(f.contains_key("etcd_network_peer_received_bytes"));
    assert_eq!(
        value(&f, "etcd_server_is_leader", "etcd_server_is_leader", &[]),
        Some(1.0)
    );

    let old_id = f["etcd_server_id"].samples[0].1["server_id"].clone();
    cluster.signal(old, Signal::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(30);
    let moved = loop {
        let now: Vec<Families> = survivors.iter().map(|i| scrape(&base(*i))).collect();
        let counted = now
            .iter()
            .zip(&before)
            .all(|(f, b)| value(f, changes, changes_total, &[]).unwrap_or(0.0) > *b);
        let leaders: f64 = now
            .iter()
            .filter_map(|f| value(f, "etcd_server_is_leader", "etcd_server_is_leader", &[]))
            .sum();
        if counted && leaders == 1.0 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The new leader's heartbeats to the stopped member fail: etcd's
    // peer send failures (labelled with that member) and heartbeat
    // failures, which its alert rules watch.
    let failures = wait_for_failures(&survivors, &base, &old_id).await;
    cluster.signal(old, Signal::SIGCONT);
    assert!(
        moved,
        "no leader change counted on the survivors\n{}",
        cluster.logs()
    );
    assert!(
        failures,
        "no peer send/heartbeat failure counted\n{}",
        cluster.logs()
    );
}

/// Whether a survivor counts send failures to `old_id` and heartbeat
/// failures within 30 s.
async fn wait_for_failures(
    survivors: &[usize],
    base: &impl Fn(usize) -> String,
    old_id: &str,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = survivors.iter().any(|i| {
            let f = scrape(&base(*i));
            let sent = value(
                &f,
                "etcd_network_peer_sent_failures",
                "etcd_network_peer_sent_failures_total",
                &[("To", old_id)],
            );
            let hb = "etcd_server_heartbeat_send_failures";
            sent >= Some(1.0) && value(&f, hb, &format!("{hb}_total"), &[]) >= Some(1.0)
        });
        if seen {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
