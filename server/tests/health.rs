//! /health, /livez and /readyz on real kvd processes, probed with curl,
//! against etcd 3.7.3's answers (status, body, content type) where it is
//! built: normally, without a leader (the other two members of three
//! SIGSTOPped) and with an active NOSPACE alarm.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{etcd_latest, Etcd, Kind, Kvd, Options, Server};
use nix::sys::signal::Signal;

/// One answer: status, content type and body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// `curl` (HTTP/1.1, or HTTP/2 without TLS when `h2`) with `method`.
fn request(method: &str, url: &str, h2: bool) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-m",
        "20",
        "-X",
        method,
        "-w",
        "\n%{http_code}\n%{content_type}",
        url,
    ]);
    if h2 {
        cmd.arg("--http2-prior-knowledge");
    }
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.rsplitn(3, '\n');
    let content_type = parts.next().unwrap_or_default().to_string();
    let status = parts.next().unwrap_or_default().trim().parse().unwrap_or(0);
    let body = parts.next().unwrap_or_default().to_string();
    Answer {
        status,
        content_type,
        body,
    }
}

fn get(url: &str) -> Answer {
    request("GET", url, false)
}

/// The probes compared between kvd and etcd on a healthy member. /readyz
/// with ?verbose is compared as a set of lines (etcd's order is random).
const PROBES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/health?serializable=true"),
    ("GET", "/health?exclude=NOSPACE"),
    ("GET", "/livez"),
    ("GET", "/livez?verbose"),
    ("GET", "/readyz"),
    ("GET", "/readyz?verbose"),
    (
        "GET",
        "/readyz?verbose&exclude=linearizable_read&exclude=bogus",
    ),
    ("GET", "/readyz/linearizable_read"),
    ("GET", "/livez/serializable_read?verbose"),
    ("POST", "/health"),
    ("POST", "/readyz"),
    ("GET", "/no-such-path"),
];

/// A body with its lines sorted (for etcd's randomly ordered checks).
fn lines(a: &Answer) -> (u16, String, Vec<String>) {
    let mut l: Vec<String> = a.body.lines().map(str::to_string).collect();
    l.sort();
    (a.status, a.content_type.clone(), l)
}

fn probe_all(endpoint: &str) -> Vec<(u16, String, Vec<String>)> {
    PROBES
        .iter()
        .map(|(m, p)| lines(&request(m, &format!("{endpoint}{p}"), false)))
        .collect()
}

#[tokio::test]
async fn healthy_member_answers_as_etcd() {
    let kvd = Server::start(Kvd).await;
    let ep = kvd.endpoint();
    let ok = get(&format!("{ep}/health"));
    assert_eq!(
        ok,
        Answer {
            status: 200,
            content_type: "text/plain; charset=utf-8".into(),
            body: r#"{"health":"true","reason":""}"#.into()
        }
    );
    assert_eq!(get(&format!("{ep}/livez")).body, "ok\n");
    assert_eq!(
        get(&format!("{ep}/readyz?verbose")).body,
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"
    );
    // HTTP/2 without TLS on the same port, beside gRPC.
    assert_eq!(request("GET", &format!("{ep}/health"), true).body, ok.body);
    let ours = probe_all(&ep);
    let Some(bin) = etcd_latest() else {
        eprintln!("etcd 3.7.3 not built (scripts/etcd-latest.sh): skipping the comparison");
        return;
    };
    let etcd = Server::start_with(Etcd, Options::default().binary(bin)).await;
    let theirs = probe_all(&etcd.endpoint());
    for ((p, o), t) in PROBES.iter().zip(&ours).zip(&theirs) {
        assert_eq!(o, t, "{p:?}: kvd vs etcd 3.7.3");
    }
}

/// Polls `url` until its answer satisfies `ok` (a member notices a lost
/// leader only after an election timeout); returns the last answer.
async fn wait_for(url: &str, ok: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = get(url);
        if ok(&a) || Instant::now() > deadline {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const NO_LEADER: &str = "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n";

#[tokio::test]
async fn member_without_leader_is_unhealthy_and_not_ready() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    // A follower whose leader and other follower stop: it has no leader.
    let me = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|i| *i != me).collect();
    let ep = cluster.endpoint(me);
    assert_eq!(get(&format!("{ep}/health")).status, 200);
    for i in &others {
        cluster.signal(*i, Signal::SIGSTOP);
    }
    let health = wait_for(&format!("{ep}/health"), |a| a.body == NO_LEADER).await;
    let serializable = get(&format!("{ep}/health?serializable=true"));
    let livez = get(&format!("{ep}/livez"));
    let readyz = get(&format!("{ep}/readyz"));
    let one = get(&format!("{ep}/readyz/linearizable_read"));
    let excluded = get(&format!("{ep}/readyz?exclude=linearizable_read"));
    for i in &others {
        cluster.signal(*i, Signal::SIGCONT);
    }
    // etcd's answer without a leader (etcdhttp/health.go checkLeader).
    assert_eq!(health.status, 503, "{health:?}\n{}", cluster.logs());
    assert_eq!(health.body, NO_LEADER);
    assert_eq!(
        serializable.status, 200,
        "a local read needs no leader: {serializable:?}"
    );
    assert_eq!(livez.status, 200, "{livez:?}");
    assert_eq!(readyz.status, 503, "{readyz:?}");
    let failed: Vec<&str> = readyz
        .body
        .lines()
        .filter(|l| l.starts_with("[-]"))
        .collect();
    assert_eq!(failed.len(), 1, "{readyz:?}");
    assert!(
        failed[0].starts_with("[-]linearizable_read failed: "),
        "{readyz:?}"
    );
    assert!(
        readyz.body.contains("[+]serializable_read ok\n"),
        "{readyz:?}"
    );
    assert_eq!(one.status, 503, "{one:?}");
    assert_eq!(excluded.status, 200, "{excluded:?}");
    // Healthy again once the others are back.
    let back = wait_for(&format!("{ep}/health"), |a| a.status == 200).await;
    assert_eq!(back.status, 200, "{back:?}");

    // A leader cut off from both followers cannot serve a linearizable
    // read either: after an election timeout without a quorum it counts as
    // having no leader (etcd's check-quorum steps such a leader down).
    let leader = cluster.leader().await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let ep = cluster.endpoint(leader);
    for i in &followers {
        cluster.signal(*i, Signal::SIGSTOP);
    }
    let health = wait_for(&format!("{ep}/health"), |a| a.body == NO_LEADER).await;
    let readyz = get(&format!("{ep}/readyz"));
    for i in &followers {
        cluster.signal(*i, Signal::SIGCONT);
    }
    assert_eq!(
        (health.status, health.body.as_str()),
        (503, NO_LEADER),
        "{health:?}"
    );
    assert_eq!(readyz.status, 503, "{readyz:?}");
}

/// Fills `server` until a put fails with "database space exceeded".
async fn fill(server: &Server) {
    let mut c = server.client().await;
    let value = vec![b'x'; 200 * 1024];
    for i in 0..200 {
        match c.put(format!("k{i}"), value.clone(), None).await {
            Ok(_) => {}
            Err(e) => {
                assert!(e.to_string().contains("database space exceeded"), "{e}");
                return;
            }
        }
    }
    panic!("[{}] never ran out of space", server.kind());
}

async fn nospace_answers(kind: Kind, opts: Options) -> Vec<Answer> {
    let server = Server::start_with(kind, opts.arg("quota-backend-bytes", 2 * 1024 * 1024)).await;
    fill(&server).await;
    let ep = server.endpoint();
    [
        "/health",
        "/health?exclude=NOSPACE",
        "/health?serializable=true",
        "/livez",
        "/readyz",
    ]
    .iter()
    .map(|p| get(&format!("{ep}{p}")))
    .collect()
}

#[tokio::test]
async fn nospace_alarm_fails_health_unless_excluded() {
    let ours = nospace_answers(Kvd, Options::default()).await;
    let alarm = "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n";
    assert_eq!((ours[0].status, ours[0].body.as_str()), (503, alarm));
    assert_eq!(ours[1].status, 200, "?exclude=NOSPACE: {:?}", ours[1]);
    assert_eq!((ours[2].status, ours[2].body.as_str()), (503, alarm));
    // As in etcd 3.7, NOSPACE fails neither liveness nor readiness.
    assert_eq!((ours[3].status, ours[4].status), (200, 200), "{ours:?}");
    let Some(bin) = etcd_latest() else {
        eprintln!("etcd 3.7.3 not built (scripts/etcd-latest.sh): skipping the comparison");
        return;
    };
    let theirs = nospace_answers(Etcd, Options::default().binary(bin)).await;
    assert_eq!(ours, theirs, "kvd vs etcd 3.7.3 with NOSPACE");
}
