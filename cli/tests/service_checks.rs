//! `kvctl service register` with health checks and tags, as real
//! processes against kvd and etcd: an HTTP check follows a real local
//! HTTP server the test stops and starts (seen by `service list` and by
//! `service watch --healthy`), `--tag` filters, a TTL check is fed
//! through stdin, and an HTTP check whose server stops answering times out
//! into critical (saying so).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::procs::{spawn_kvctl, wait_line, WAIT};
use common::*;
use serde_json::Value;

/// A minimal HTTP/1.1 server answering every request `200 ok`, on a
/// fixed port it can stop and take up again.
struct Backend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut b = Backend {
            addr: listener.local_addr().unwrap(),
            stop: Arc::default(),
            thread: None,
        };
        b.serve(listener);
        b
    }

    fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        self.stop = stop.clone();
        self.thread = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        // Read the request head, then answer and close.
                        let mut buf = [0u8; 4096];
                        let mut head = Vec::new();
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }

    /// Stops listening: connections are refused.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// Listens again on the same port.
    fn restart(&mut self) {
        self.stop();
        self.serve(TcpListener::bind(self.addr).unwrap());
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits for a `service watch` line `KIND {json}` about instance `id`.
fn wait_event(rx: &Receiver<String>, kind: &str, id: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    let parse = |l: &str| serde_json::from_str::<Value>(&l[kind.len()..]).unwrap();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.starts_with(kind) && parse(&l)["id"] == id => return parse(&l),
            Ok(_) => {}
            Err(e) => panic!("no {kind} of {id} within {WAIT:?}: {e}"),
        }
    }
}

/// `kvctl service list web -w json ARGS...` as JSON.
fn list(ep: &str, args: &[&str]) -> Vec<Value> {
    let out = Command::new(KVCTL)
        .args(["--endpoints", ep, "-w", "json", "service", "list", "web"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn ids(list: &[Value]) -> Vec<&str> {
    list.iter().map(|i| i["id"].as_str().unwrap()).collect()
}

fn servers() -> Vec<(&'static str, Server)> {
    vec![("kvd", start(&kvd_bin())), ("etcd", start(Path::new(ETCD)))]
}

#[test]
fn http_check_follows_the_backend_and_tags_filter() {
    for (kind, server) in servers() {
        eprintln!("=== {kind}");
        let ep = &server.endpoint;
        let mut backend = Backend::start();
        let (_healthy, healthy) =
            spawn_kvctl(ep, &["service", "watch", "web", "--healthy"], Stdio::null());
        let (_tagged, tagged) = spawn_kvctl(
            ep,
            &["service", "watch", "web", "--tag", "v2"],
            Stdio::null(),
        );
        let url = backend.url();
        let args = [
            "service",
            "register",
            "web",
            "127.0.0.1:1",
            "--id",
            "w",
            "--tag",
            "v2",
            "--tag",
            "eu",
            "--check-http",
            &url,
            "--interval",
            "100ms",
            "--timeout",
            "2s",
        ];
        let (_reg, reg) = spawn_kvctl(ep, &args, Stdio::null());
        let other = ["service", "register", "web", "127.0.0.1:2", "--id", "plain"];
        let (_other, other) = spawn_kvctl(ep, &other, Stdio::null());
        wait_line(&reg, "registered kv/services/web/w");
        wait_line(&other, "registered kv/services/web/plain");
        // Checks start critical (Consul's rule), then pass.
        wait_line(&reg, "health passing");
        wait_event(&healthy, "ADDED ", "w");
        wait_event(&tagged, "ADDED ", "w");

        let all = list(ep, &[]);
        assert_eq!(all.len(), 2, "[{kind}] {all:?}");
        let w = all.iter().find(|i| i["id"] == "w").unwrap();
        assert_eq!(w["health"], "passing");
        assert_eq!(w["checks"]["http"]["health"], "passing");
        assert_eq!(w["tags"], serde_json::json!(["v2", "eu"]));
        assert_eq!(ids(&list(ep, &["--tag", "v2"])), ["w"], "[{kind}]");
        assert_eq!(ids(&list(ep, &["--tag", "v2", "--tag", "eu"])), ["w"]);
        assert!(list(ep, &["--tag", "v3"]).is_empty());

        // Backend down: critical, out of the healthy set.
        backend.stop();
        wait_line(&reg, "health critical");
        wait_event(&healthy, "REMOVED ", "w");
        let w = list(ep, &["--tag", "v2"]);
        assert_eq!(w[0]["health"], "critical", "[{kind}]");
        assert_eq!(w[0]["checks"]["http"]["health"], "critical");
        // The unchecked instance is passing; the checked one is not.
        assert_eq!(ids(&list(ep, &["--healthy"])), ["plain"], "[{kind}]");
        // The tag subscriber sees the update, not a removal.
        while wait_event(&tagged, "UPDATED ", "w")["health"] != "critical" {}

        // Back up: passing again.
        backend.restart();
        wait_line(&reg, "health passing");
        wait_event(&healthy, "ADDED ", "w");
        let mut h = ids(&list(ep, &["--healthy"])).join(",");
        h = h.replace("plain,w", "w,plain");
        assert_eq!(h, "w,plain", "[{kind}]");
        // No instance without the tag ever reached the tag subscriber.
        while let Ok(l) = tagged.try_recv() {
            assert!(!l.contains("\"plain\""), "[{kind}] {l}");
        }
    }
}

#[test]
fn ttl_check_is_fed_through_stdin() {
    let server = start(&kvd_bin());
    let ep = &server.endpoint;
    let args = [
        "service",
        "register",
        "job",
        "127.0.0.1:1",
        "--id",
        "j",
        "--check-ttl",
        "1s",
    ];
    let (mut reg, lines) = spawn_kvctl(ep, &args, Stdio::piped());
    wait_line(&lines, "registered kv/services/job/j");
    let mut stdin = reg.0.stdin.take().unwrap();
    writeln!(stdin, "pass all good").unwrap();
    wait_line(&lines, "health passing");
    let out = Command::new(KVCTL)
        .args(["--endpoints", ep, "-w", "json", "service", "list", "job"])
        .output()
        .unwrap();
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["checks"]["ttl"]["output"], "all good");
    // No report within the TTL: critical.
    wait_line(&lines, "health critical");
    writeln!(stdin, "warning slow").unwrap();
    wait_line(&lines, "health warning");
}

#[test]
fn bad_check_flags_are_refused_before_connecting() {
    for args in [
        &["--check-http", "ftp://x/"][..],
        &["--check-grpc", "nohost"],
        &["--check-cmd", "sh -c 'open"],
        &["--check-tcp", "a:1", "--interval", "0s"],
        &["--interval", "5s"],
    ] {
        let out = Command::new(KVCTL)
            .args([
                "--endpoints",
                "127.0.0.1:1",
                "service",
                "register",
                "s",
                "a:1",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("Error: "), "{args:?}: {err}");
    }
}

/// An HTTP server answering `200 ok` until told to hang: then it accepts,
/// reads the request and never answers, holding the connection open.
struct Hanging {
    addr: SocketAddr,
    hang: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// The connections held unanswered.
    held: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Hanging {
    fn start() -> Hanging {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let hang = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (h, s, kept) = (hang.clone(), stop.clone(), held.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if h.load(Ordering::SeqCst) {
                    kept.lock().unwrap().push(conn);
                } else {
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                }
            }
        });
        Hanging {
            addr,
            hang,
            stop,
            held,
            thread: Some(thread),
        }
    }

    /// Held connections: (all, those the prober has closed since).
    fn held(&self) -> (usize, usize) {
        let held = self.held.lock().unwrap();
        let closed = held
            .iter()
            .filter(|c| {
                c.set_nonblocking(true).unwrap();
                let mut r: &std::net::TcpStream = c;
                match r.read(&mut [0u8; 64]) {
                    Ok(n) => n == 0,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                }
            })
            .count();
        (held.len(), closed)
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[test]
fn http_check_that_times_out_turns_critical_with_a_timeout_output() {
    let server = start(&kvd_bin());
    let ep = &server.endpoint;
    let backend = Hanging::start();
    let url = format!("http://{}/health", backend.addr);
    let args = [
        "service",
        "register",
        "web",
        "127.0.0.1:1",
        "--id",
        "slow",
        "--check-http",
        &url,
        "--interval",
        "100ms",
        "--timeout",
        "300ms",
    ];
    let (_reg, reg) = spawn_kvctl(ep, &args, Stdio::null());
    wait_line(&reg, "registered kv/services/web/slow");
    wait_line(&reg, "health passing");
    let check = |list: &[Value]| list[0]["checks"]["http"].clone();
    assert_eq!(check(&list(ep, &[]))["health"], "passing");

    // The server stops answering (the connection stays open): each probe
    // runs into its 300 ms limit, the check turns critical and says why.
    backend.hang.store(true, Ordering::SeqCst);
    wait_line(&reg, "health critical");
    let slow = list(ep, &[]);
    assert_eq!(slow[0]["health"], "critical", "{slow:?}");
    let http = check(&slow);
    assert_eq!(http["health"], "critical");
    let output = http["output"].as_str().unwrap();
    assert!(
        output.contains("timed out") && output.contains("300ms"),
        "{http}"
    );
    assert!(list(ep, &["--healthy"]).is_empty());

    // Timed-out probes must not leave their connections open (a hanging
    // server would otherwise collect one per interval): all closed but the
    // one probe that may be running now.
    let deadline = Instant::now() + WAIT;
    loop {
        let (held, closed) = backend.held();
        if held >= 5 && held - closed <= 1 {
            eprintln!("{held} probe connections timed out, {closed} closed by the prober");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed-out probes left {} of {held} connections open",
            held - closed
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Answering again: passing.
    backend.hang.store(false, Ordering::SeqCst);
    wait_line(&reg, "health passing");
    assert_eq!(check(&list(ep, &[]))["health"], "passing");
}
