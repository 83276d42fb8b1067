//! Hostile input (issue 9, defect 5 and the smaller items).
//!
//! * A txn nested deeper than kvd decodes at apply is refused at validation
//!   with InvalidArgument, and never fails the writes batched with it.
//! * Flags that used to panic or silently mislead (a NaN or huge
//!   --auto-compaction-retention, https:// URLs without TLS) stop kvd at
//!   start with a clear error.
//! * An oversized request gets grpc-go's ResourceExhausted "grpc: received
//!   message larger than max (N vs. M)", exactly as etcd answers it.
//! * A flood of proposals a leader cannot commit is bounded: what does not
//!   fit the queue gets etcd's "too many requests" at once.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etcd_client::{Client, Txn, TxnOp};

/// kvd's bound on txn nesting (server/src/txn/validate.rs).
const MAX_TXN_DEPTH: usize = 32;
/// The deepest txn gRPC decodes (prost stops at 100 nested messages, two per
/// level), one level deeper than decodes inside kvd's raft entry: the poison.
const POISON_DEPTH: usize = 50;
const WRITERS: usize = 16;
const PUTS_PER_WRITER: usize = 50;
const POISONS: usize = 24;

/// A txn `depth` levels deep with one put of `key` at the bottom.
fn nested_txn(depth: usize, key: &str) -> Txn {
    let mut t = Txn::new().and_then([TxnOp::put(key, "deep", None)]);
    for _ in 1..depth {
        t = Txn::new().and_then([TxnOp::txn(t)]);
    }
    t
}

#[tokio::test]
async fn too_deep_txn_is_refused_and_fails_no_neighbour() {
    kvd_only(|| async {
        let server = Server::start(Kvd).await;
        let client = server.client().await;

        // The deepest accepted txn works.
        let mut c = client.clone();
        let r = c
            .txn(nested_txn(MAX_TXN_DEPTH, "deep/ok"))
            .await
            .expect("a txn at the depth limit is accepted");
        assert!(r.succeeded());
        let got = c.get("deep/ok", None).await.unwrap();
        assert_eq!(kv_pairs(got.kvs()), [("deep/ok".into(), "deep".into())]);

        // Innocent puts and poison txns at once, so they share raft entries.
        let failed_puts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let mut c: Client = client.clone();
            let failed = failed_puts.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..PUTS_PER_WRITER {
                    if let Err(e) = c.put(format!("innocent/{w:02}/{i:03}"), "v", None).await {
                        eprintln!("innocent put failed: {e}");
                        failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }));
        }
        let mut poisons = Vec::new();
        for p in 0..POISONS {
            let mut c: Client = client.clone();
            let depth = if p % 2 == 0 {
                POISON_DEPTH
            } else {
                MAX_TXN_DEPTH + 1
            };
            poisons.push(tokio::spawn(async move {
                (depth, c.txn(nested_txn(depth, &format!("deep/p{p}"))).await)
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for p in poisons {
            let (depth, r) = p.await.unwrap();
            let (code, msg) = match r {
                Ok(resp) => panic!("a txn {depth} deep was accepted: {resp:?}"),
                Err(e) => grpc_status(&e),
            };
            assert_eq!(code, tonic::Code::InvalidArgument, "depth {depth}: {msg}");
            assert_eq!(
                msg,
                format!("txn request nested too deeply: more than {MAX_TXN_DEPTH} levels")
            );
        }
        assert_eq!(
            failed_puts.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "innocent puts failed next to a poison txn"
        );
        let mut c = client.clone();
        let all = c
            .get(
                "innocent/",
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_count_only(),
                ),
            )
            .await
            .unwrap();
        assert_eq!(all.count() as usize, WRITERS * PUTS_PER_WRITER);
        let deep = c
            .get("deep/p", Some(etcd_client::GetOptions::new().with_prefix()))
            .await
            .unwrap();
        assert!(deep.kvs().is_empty(), "a refused txn wrote something");
    })
    .await;
}

/// Runs kvd with `args` (in a fresh data dir, on free loopback ports) and
/// expects it to exit by itself: returns (exit code, stderr).
fn kvd_refuses(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("kvd.log");
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let mut cmd = Command::new(Kvd.binary());
    cmd.arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let mut child = cmd.spawn().expect("spawn kvd");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kvd {args:?} did not refuse to start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[test]
fn bad_flags_stop_kvd_with_a_clear_error() {
    if !Kvd.enabled() {
        return;
    }
    for retention in ["NaN", "inf", "1e300", "99999999999999h"] {
        let (code, log) = kvd_refuses(&["--auto-compaction-retention", retention]);
        assert_eq!(code, Some(1), "{retention}: {log}");
        assert!(
            log.contains("invalid --auto-compaction-retention"),
            "{retention}: {log}"
        );
        assert!(!log.contains("panicked"), "{retention}: {log}");
    }
    // https without certificates: etcd's message (server/tests/tls.rs has
    // TLS itself). An https advertised client URL alone is allowed, as in etcd.
    let https = [
        ("--listen-client-urls", "https://127.0.0.1:1", "client"),
        ("--listen-peer-urls", "https://127.0.0.1:1", "peer"),
        (
            "--initial-advertise-peer-urls",
            "https://127.0.0.1:1",
            "peer",
        ),
    ];
    for (flag, url, side) in https {
        let (code, log) = kvd_refuses(&[&format!("{flag}={url}")]);
        assert_eq!(code, Some(1), "{flag}: {log}");
        assert!(
            log.contains(&format!(
                "must be provided for {side} url {url} with HTTPS scheme"
            )),
            "{flag}: {log}"
        );
    }
    let (code, log) = kvd_refuses(&["--initial-cluster=default=https://127.0.0.1:1"]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("must be provided for peer url https://127.0.0.1:1"),
        "{log}"
    );
}

#[tokio::test]
async fn oversized_request_gets_grpc_go_resource_exhausted() {
    each_kind(|kind| async move {
        let server = Server::start(kind).await;
        let mut c = server.client().await;
        let mut transcript = Vec::new();
        // 3 MiB: above both servers' 2 MiB receive limit
        // (--max-request-bytes 1.5 MiB plus 512 KiB of gRPC allowance).
        let value = vec![b'x'; 3 << 20];
        let r = c.put("big", value, None).await;
        let (code, msg) = match r {
            Ok(_) => panic!("[{kind}] a 3 MiB put was accepted"),
            Err(e) => grpc_status(&e),
        };
        assert_eq!(code, tonic::Code::ResourceExhausted, "[{kind}] {msg}");
        assert!(
            msg.starts_with("grpc: received message larger than max ("),
            "[{kind}] {msg}"
        );
        transcript.push(format!("{code:?}: {msg}"));
        // The member is fine afterwards.
        c.put("small", "v", None).await.expect("small put");
        transcript
    })
    .await;
}

/// Large puts sent at once to a leader that cannot commit (both followers
/// stopped). kvd's proposal queue holds at most 64 MiB
/// (server/src/node/propose.rs); what does not fit is refused at once.
const FLOOD_PUTS: usize = 60;
const FLOOD_VALUE_BYTES: usize = 1400 * 1024;

#[tokio::test]
async fn proposal_flood_without_quorum_is_bounded() {
    kvd_only(|| async {
        let cluster = cluster::Cluster::start(3).await;
        let leader = cluster.leader().await;
        let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        for f in &followers {
            cluster.signal(*f, nix::sys::signal::Signal::SIGSTOP);
        }
        let client = cluster.client(leader).await;
        let mut puts = Vec::new();
        for i in 0..FLOOD_PUTS {
            let mut c = client.clone();
            puts.push(tokio::spawn(async move {
                c.put(format!("flood/{i:03}"), vec![b'f'; FLOOD_VALUE_BYTES], None)
                    .await
            }));
        }
        let mut refused = 0;
        for p in puts {
            match p.await.unwrap() {
                Ok(r) => panic!("a put committed without a quorum: {r:?}"),
                Err(etcd_client::Error::GRpcStatus(s))
                    if s.code() == tonic::Code::ResourceExhausted =>
                {
                    assert_eq!(s.message(), "etcdserver: too many requests");
                    refused += 1;
                }
                // The rest waited in the queue and timed out.
                Err(_) => {}
            }
        }
        eprintln!("{refused} of {FLOOD_PUTS} puts refused while queued bytes were at the bound");
        assert!(
            refused > 0,
            "the proposal queue took every request: it is unbounded"
        );
        for f in &followers {
            cluster.signal(*f, nix::sys::signal::Signal::SIGCONT);
        }
        // The member is healthy again once the followers are back (the
        // resumed followers may hold an election first: retry through it).
        let c = client.clone();
        wait_until("a put after the flood", WAIT_TIMEOUT, || {
            let mut c = c.clone();
            async move { c.put("flood/after", "ok", None).await.ok() }
        })
        .await;
        let kvs = wait_until("a read after the flood", WAIT_TIMEOUT, || {
            let mut c = c.clone();
            async move { c.get("flood/after", None).await.ok() }
        })
        .await;
        assert_eq!(kv_pairs(kvs.kvs()), [("flood/after".into(), "ok".into())]);
    })
    .await;
}
