//! /health, /readyz and /livez on a member that is catching up, as etcd 3.7
//! answers them (etcdserver/api/etcdhttp/health.go): while its applied index
//! is behind the leader's read index the linearizable probes (/health,
//! /readyz's linearizable_read) fail with 503 after the request timeout;
//! /livez and /health?serializable=true answer 200 from the stale local
//! data; once caught up every probe answers 200.
//!
//! A follower is SIGSTOPped while the leader takes large writes, then
//! continued with kvd's `apply-entry=sleep(N)` failpoint armed (test builds
//! only) so that it stays behind until the test disarms it: the lag is the
//! test's choice, not a race against the machine's speed. Then the same
//! with a restart: the follower is killed while stopped and restarted
//! behind, and (as etcd) serves nothing on its client port until it has
//! applied its own publish entry, which comes after the backlog.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use kvd::raft::failpoint::{APPLY_ENTRY, DISK_FILE_ENV};
use nix::sys::signal::Signal;

use common::cluster::{Cluster, DEADLINE};
use common::Kind;

/// Writes the stopped follower misses, each a large value.
const WRITES: usize = 40;
const VALUE_BYTES: usize = 128 * 1024;
/// The slow applier's delay per entry: far above the probes' 5 s timeout
/// in total, so the member is behind until the failpoint is disarmed.
const SLOW_APPLY_MS: u64 = 2000;
/// How many rounds of probes run while the member is held behind.
const LAGGING_ROUNDS: usize = 2;

/// `curl` GET: status and body.
fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "20", "-w", "\n%{http_code}", url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// etcd's /health answer when the linearizable read times out.
const HEALTH_TIMEOUT: &str =
    "{\"health\":\"false\",\"reason\":\"RANGE ERROR:etcdserver: request timed out\"}\n";
/// etcd's /health answer while the member has not heard its leader yet.
const HEALTH_NO_LEADER: &str = "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n";
const HEALTH_OK: &str = "{\"health\":\"true\",\"reason\":\"\"}";

/// The marker's value on member `i`, read serializably (its local data).
async fn local_marker(c: &Cluster, i: usize) -> Option<String> {
    let mut cl = c.client_opt(i).await?;
    let opts = etcd_client::GetOptions::new().with_serializable();
    let r = cl.get("marker", Some(opts)).await.ok()?;
    r.kvs()
        .first()
        .map(|kv| kv.value_str().unwrap_or("").to_string())
}

/// Polls member `i`'s /health until 200; checks that the first 200 comes
/// with current local data (the marker is `want`) and that every other
/// probe answers 200 then.
async fn wait_current(c: &Cluster, i: usize, want: &str) {
    let ep = c.endpoint(i);
    let deadline = Instant::now() + DEADLINE * 4;
    loop {
        let (st, b) = get(&format!("{ep}/health"));
        if st == 200 {
            assert_eq!(b, HEALTH_OK);
            assert_eq!(
                local_marker(c, i).await.as_deref(),
                Some(want),
                "/health answered 200 with stale data\n{}",
                c.logs()
            );
            break;
        }
        assert_eq!(st, 503, "{b}");
        assert!(Instant::now() < deadline, "never caught up\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get(&format!("{ep}/readyz")), (200, "ok\n".to_string()));
    assert_eq!(get(&format!("{ep}/livez")), (200, "ok\n".to_string()));
    assert_eq!(
        get(&format!("{ep}/health?serializable=true")),
        (200, HEALTH_OK.to_string())
    );
}

#[tokio::test]
async fn catching_up_member_fails_linearizable_probes_until_current() {
    if !Kind::Kvd.enabled() {
        eprintln!("kvd-only test skipped by KV_TEST_ONLY");
        return;
    }
    let body = async {
        let mut c = Cluster::start(3).await;
        let leader = c.leader().await;
        let slow = (0..3).find(|i| *i != leader).expect("a follower");
        // Restart one follower with a failpoint file only it reads (a child
        // takes the environment it is spawned with; this file has one test).
        let fp = c.dir.path().join("slow.failpoints");
        std::fs::write(&fp, "").expect("failpoint file");
        std::env::set_var(DISK_FILE_ENV, &fp);
        c.spawn(slow);
        std::env::remove_var(DISK_FILE_ENV);
        c.wait_ready(slow).await;
        let leader = c.leader().await;
        assert_ne!(leader, slow, "the restarted follower leads\n{}", c.logs());
        let ep = c.endpoint(slow);
        assert_eq!(get(&format!("{ep}/health")), (200, HEALTH_OK.to_string()));

        let mut w = c.client(leader).await;
        w.put("marker", "before", None).await.expect("put marker");
        // The follower has the marker before it is stopped.
        let deadline = Instant::now() + DEADLINE;
        while local_marker(&c, slow).await.as_deref() != Some("before") {
            assert!(Instant::now() < deadline, "marker never reached follower");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        c.signal(slow, Signal::SIGSTOP);
        let big = "v".repeat(VALUE_BYTES);
        for n in 0..WRITES {
            w.put(format!("big/{n:03}"), big.as_str(), None)
                .await
                .expect("put while the follower is stopped");
        }
        w.put("marker", "after", None).await.expect("put marker");
        std::fs::write(&fp, format!("{APPLY_ENTRY}=sleep({SLOW_APPLY_MS})"))
            .expect("arm failpoint");
        c.signal(slow, Signal::SIGCONT);

        // Held behind: linearizable probes fail as etcd's do, the
        // serializable ones answer 200 from stale data.
        for _ in 0..LAGGING_ROUNDS {
            let (st, b) = get(&format!("{ep}/health"));
            assert_eq!(st, 503, "/health on a lagging member: {b}\n{}", c.logs());
            assert!(
                b == HEALTH_TIMEOUT || b == HEALTH_NO_LEADER,
                "/health body {b:?}"
            );
            let (st, b) = get(&format!("{ep}/readyz?verbose"));
            assert_eq!(st, 503, "/readyz on a lagging member: {b}");
            assert!(
                b.lines()
                    .any(|l| l == "[-]linearizable_read failed: etcdserver: request timed out"),
                "/readyz body {b:?}"
            );
            assert!(b.lines().any(|l| l == "[+]serializable_read ok"), "{b:?}");
            let (st, b) = get(&format!("{ep}/readyz/linearizable_read"));
            assert_eq!(st, 503, "/readyz/linearizable_read: {b}");
            assert_eq!(get(&format!("{ep}/livez")), (200, "ok\n".to_string()));
            assert_eq!(
                get(&format!("{ep}/health?serializable=true")),
                (200, HEALTH_OK.to_string())
            );
            assert_ne!(
                local_marker(&c, slow).await.as_deref(),
                Some("after"),
                "the member is held behind: its local data must be stale"
            );
        }

        // Released: the first 200 from a linearizable probe comes with
        // current data, and then every probe answers 200.
        std::fs::write(&fp, "").expect("disarm failpoint");
        wait_current(&c, slow, "after").await;

        // Restarted behind: the member is killed while stopped (it never
        // received the writes below) and restarted with a slow applier.
        c.signal(slow, Signal::SIGSTOP);
        for n in 0..WRITES / 2 {
            w.put(format!("big2/{n:03}"), big.as_str(), None)
                .await
                .expect("put while the follower is stopped");
        }
        w.put("marker", "after-restart", None)
            .await
            .expect("put marker");
        c.kill9(slow);
        std::fs::write(&fp, format!("{APPLY_ENTRY}=sleep({SLOW_APPLY_MS})"))
            .expect("arm failpoint");
        std::env::set_var(DISK_FILE_ENV, &fp);
        c.spawn(slow);
        std::env::remove_var(DISK_FILE_ENV);
        // Like etcd, a member serves nothing on its client port until it
        // has applied its own publish entry (behind the slow backlog here):
        // the port accepts connections, but /livez gets no answer.
        let port = ep.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port.expect("client port")));
        let deadline = Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the client port never opened\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let out = Command::new("curl")
            .args([
                "-s",
                "-m",
                "3",
                "-w",
                "%{http_code}",
                &format!("{ep}/livez"),
            ])
            .output()
            .expect("run curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "000",
            "a restarted member behind its publish entry answered /livez\n{}",
            c.logs()
        );
        std::fs::write(&fp, "").expect("disarm failpoint");
        wait_current(&c, slow, "after-restart").await;
    };
    tokio::time::timeout(Duration::from_secs(400), body)
        .await
        .expect("test bound");
}
