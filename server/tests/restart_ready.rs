//! A restarted member serves no client until it has caught up (etcd's
//! ReadyNotify: embed/serve.go answers nothing on the client port before the
//! member's own publish entry is applied locally).
//!
//! Three real kvd processes. A writer keeps putting an increasing counter
//! through the two other members while a client connected only to one
//! follower reads it serializably (local data). The follower is SIGSTOPped
//! (it misses acknowledged writes), killed with SIGKILL and restarted while
//! the writes go on: no read it answers after the restart may carry a
//! header revision below the highest it answered before, nor a counter
//! older than one acknowledged before the restart. kvd's backend makes its
//! applied state durable only every few seconds and re-applies the log after
//! a crash, so a member that served at once would answer from before what
//! it had served.
//!
//! Round one restarts the follower cut off from its peers (kvd's isolation
//! failpoint), so it cannot catch up: it must accept TCP connections (the
//! listener is bound) but answer no request until it is reconnected and
//! has caught up. Round two restarts it connected, racing its catch-up.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use nix::sys::signal::Signal;

use common::cluster::{Cluster, DEADLINE};

const KEY: &str = "restart-ready/counter";
/// How long the restarted, isolated member is probed (it must stay silent).
const ISOLATED_PROBING: Duration = Duration::from_secs(3);
/// Acknowledged writes the stopped follower misses before it is killed.
const MISSED_WRITES: i64 = 30;
/// Bound on one probe (connect plus one get) of the restarted member.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// What reads from the follower have shown, and what a read must not go below.
#[derive(Debug, Default, Clone, Copy)]
struct Floor {
    /// Highest header revision the follower answered.
    revision: i64,
    /// Highest counter acknowledged to the writer (or read from the follower).
    counter: i64,
}

/// One serializable get of the counter on `endpoint` (a fresh client, as
/// a client reconnecting to the restarted member would be): the header
/// revision and the counter, or None when the member did not answer.
async fn probe(endpoint: &str) -> Option<(i64, i64)> {
    let attempt = async {
        let opts = ConnectOptions::new().with_connect_timeout(PROBE_TIMEOUT);
        let mut c = Client::connect([endpoint], Some(opts)).await.ok()?;
        let r = c
            .get(KEY, Some(GetOptions::new().with_serializable()))
            .await
            .ok()?;
        let rev = r.header()?.revision();
        let counter = r
            .kvs()
            .first()
            .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok())
            .unwrap_or(0);
        Some((rev, counter))
    };
    tokio::time::timeout(PROBE_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
}

/// Panics when a read from the restarted member went back in time.
#[track_caller]
fn check(c: &Cluster, read: (i64, i64), floor: Floor, when: &str) {
    let (rev, counter) = read;
    assert!(
        rev >= floor.revision,
        "{when}: the restarted member answered revision {rev}, below the {} it answered \
         before its crash\n{}",
        floor.revision,
        c.logs()
    );
    assert!(
        counter >= floor.counter,
        "{when}: the restarted member answered counter {counter}, older than the {} \
         acknowledged before its restart\n{}",
        floor.counter,
        c.logs()
    );
}

/// Reads the follower until it has shown the writer's progress up to `acked`
/// (so the floor includes what it served), checking each read.
async fn read_up_to(c: &Cluster, ep: &str, floor: &mut Floor, acked: i64, when: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(read) = probe(ep).await {
            check(c, read, *floor, when);
            floor.revision = floor.revision.max(read.0);
            floor.counter = floor.counter.max(read.1);
            if read.1 >= acked {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{when}: the follower never showed counter {acked} (floor {floor:?})\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the writer has had `n` more writes acknowledged than `from`.
async fn writes_acked(c: &Cluster, acked: &AtomicI64, from: i64, n: i64) -> i64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = acked.load(Ordering::SeqCst);
        if now >= from + n {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the writer got {} acknowledgements, waiting for {n}\n{}",
            now - from,
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGSTOPs the follower, lets it miss writes, kills and restarts it;
/// returns the floor its reads must respect from now on.
async fn crash_behind(c: &mut Cluster, f: usize, acked: &AtomicI64, mut floor: Floor) -> Floor {
    c.signal(f, Signal::SIGSTOP);
    let before = acked.load(Ordering::SeqCst);
    floor.counter = writes_acked(c, acked, before, MISSED_WRITES).await;
    c.kill9(f);
    c.spawn(f);
    floor
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_member_never_serves_older_data() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    let f = (0..3).find(|&i| i != leader).expect("a follower");
    let others: Vec<String> = (0..3).filter(|&i| i != f).map(|i| c.endpoint(i)).collect();
    let ep = c.endpoint(f);

    // The writer: an increasing counter through the other two members.
    let acked = Arc::new(AtomicI64::new(0));
    let writer = {
        let acked = acked.clone();
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        let mut w = Client::connect(others, Some(opts))
            .await
            .expect("writer connect");
        tokio::spawn(async move {
            let mut n = 0i64;
            loop {
                n += 1;
                if w.put(KEY, n.to_string(), None).await.is_ok() {
                    acked.fetch_max(n, Ordering::SeqCst);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };

    // Before the crash: the follower serves the writer's progress.
    let mut floor = Floor::default();
    let first = writes_acked(&c, &acked, 0, 50).await;
    read_up_to(&c, &ep, &mut floor, first, "before the crash").await;

    // Round one: restarted cut off from its peers, it cannot catch up.
    c.isolate(f, true);
    floor = crash_behind(&mut c, f, &acked, floor).await;
    let port = c.members[f].client_port;
    // The listener is bound before the member is ready: TCP connects.
    common::wait_until("the client port accepts TCP", DEADLINE, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let until = Instant::now() + ISOLATED_PROBING;
    let mut answered = Vec::new();
    while Instant::now() < until {
        if let Some(read) = probe(&ep).await {
            answered.push(read);
        }
    }
    for read in &answered {
        check(&c, *read, floor, "restarted while cut off");
    }
    assert!(
        answered.is_empty(),
        "a restarted member that cannot reach its peers answered {} reads (etcd answers none \
         before its publish entry is applied): {answered:?}\n{}",
        answered.len(),
        c.logs()
    );
    c.isolate(f, false);
    let now = acked.load(Ordering::SeqCst);
    read_up_to(&c, &ep, &mut floor, now, "reconnected after the restart").await;

    // Round two: restarted connected, racing its own catch-up.
    floor = crash_behind(&mut c, f, &acked, floor).await;
    let now = acked.load(Ordering::SeqCst);
    read_up_to(&c, &ep, &mut floor, now, "restarted while connected").await;

    writer.abort();
    eprintln!("final floor {floor:?}");
}

/// `curl` GET with a time limit: the HTTP status (0 when none came).
fn http_status(url: &str, secs: u32) -> u16 {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-m", &secs.to_string()])
        .args(["-w", "%{http_code}", url])
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// One member of a three-member cluster started alone never gets a quorum,
/// so it never applies its publish entry. Debian's etcd (3.4) and kvd alike:
/// the client port accepts TCP but answers nothing (not even a serializable
/// get or /health), the metrics listener serves /metrics, and SIGTERM stops
/// the member cleanly meanwhile.
#[tokio::test]
async fn member_without_quorum_serves_no_client_like_etcd() {
    use common::cluster::free_port;
    use common::Kind;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    use std::process::{Command, Stdio};

    for kind in [Kind::Etcd, Kind::Kvd] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, peer, metrics) = (free_port(), free_port(), free_port());
        let initial = format!(
            "a=http://127.0.0.1:{peer},b=http://127.0.0.1:{},c=http://127.0.0.1:{}",
            free_port(),
            free_port()
        );
        let ep = format!("http://127.0.0.1:{client}");
        let log_path = dir.path().join("member.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = Command::new(kind.binary())
            .arg("--name=a")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={ep}"))
            .arg(format!("--advertise-client-urls={ep}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--initial-cluster-token=restart-ready")
            .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn member");
        let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();

        // The metrics listener serves from the start.
        let metrics_url = format!("http://127.0.0.1:{metrics}/metrics");
        common::wait_until(&format!("[{kind}] /metrics"), DEADLINE, || {
            let url = metrics_url.clone();
            async move { (http_status(&url, 2) == 200).then_some(()) }
        })
        .await;
        // The client port is bound: TCP connects.
        tokio::net::TcpStream::connect(("127.0.0.1", client))
            .await
            .unwrap_or_else(|e| panic!("[{kind}] client port refuses TCP: {e}"));
        // But nothing is answered there: no gRPC read, however local, and
        // no HTTP either.
        let read = tokio::time::timeout(Duration::from_secs(3), async {
            let opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
            let mut c = Client::connect([ep.as_str()], Some(opts)).await?;
            c.get(KEY, Some(GetOptions::new().with_serializable()))
                .await
        })
        .await;
        assert!(
            !matches!(read, Ok(Ok(_))),
            "[{kind}] a member without quorum answered a serializable get: {read:?}\n{}",
            logs()
        );
        assert_eq!(
            http_status(&format!("{ep}/health"), 2),
            0,
            "[{kind}] a member without quorum answered /health on its client port\n{}",
            logs()
        );
        if kind == Kind::Kvd {
            assert!(
                !logs().contains("kvd is ready"),
                "kvd logged that it is ready without quorum\n{}",
                logs()
            );
        }

        // SIGTERM while it waits: a clean stop.
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM our child");
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("[{kind}] did not exit after SIGTERM\n{}", logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        eprintln!("[{kind}] exit after SIGTERM while not ready: {status}");
        if kind == Kind::Kvd {
            assert!(status.success(), "kvd exited with {status}\n{}", logs());
            assert!(
                logs().contains("stopped kvd server"),
                "no graceful stop in the log\n{}",
                logs()
            );
        }
    }
}
