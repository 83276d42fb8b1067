//! `kvctl service dns` end to end, all real processes: kvd (and Debian's
//! etcd 3.4: the registry is client-side), instances registered by
//! `kvctl service register`, the DNS server run as `kvctl service dns`, and
//! BIND's `dig` asking it. Instances leave (SIGTERM: deregistered; SIGKILL:
//! their lease expires) and a TCP check fails and recovers: the answers
//! follow; a critical instance is never answered.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::procs::{spawn_kvctl, wait_line, Proc, WAIT};
use common::*;
use nix::sys::signal::Signal;

/// A TCP health-check target: accepts (and closes) connections while up;
/// down, the port refuses them.
struct TcpTarget {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpTarget {
    fn start() -> TcpTarget {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut t = TcpTarget {
            addr: listener.local_addr().unwrap(),
            stop: Arc::default(),
            thread: None,
        };
        t.serve(listener);
        t
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        self.stop = stop.clone();
        self.thread = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if listener.accept().is_err() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }));
    }

    /// Closes the listener: connections are refused.
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

impl Drop for TcpTarget {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `dig @ADDR -p PORT ARGS...`'s stdout (dig must succeed: it reached the
/// server).
fn dig(at: SocketAddr, args: &[&str]) -> String {
    let out = output_bounded(
        Command::new("dig")
            .arg(format!("@{}", at.ip()))
            .args(["-p", &at.port().to_string(), "+time=2", "+tries=1"])
            .args(args),
        WAIT,
    );
    assert!(out.status.success(), "dig {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Asks `dig +short NAME TYPE` until the answer lines are `want`.
fn until_short(at: SocketAddr, name: &str, rtype: &str, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let out = dig(at, &["+short", name, rtype]);
        if lines(&out) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "dig {name} {rtype}: want {want:?}, last {out:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The response code dig prints (`status: NXDOMAIN`).
fn status(at: SocketAddr, name: &str, rtype: &str) -> String {
    let out = dig(at, &["+noall", "+comments", name, rtype]);
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in {out:?}"))
        .to_string()
}

/// `kvctl service register web ADDR --id ID --ttl 3 EXTRA...`, waited
/// until registered. Keep the receiver: dropping it closes the process's
/// stdout, and its next line would fail it.
fn register(ep: &str, addr: &str, id: &str, extra: &[&str]) -> (Proc, Receiver<String>) {
    let mut args = vec!["service", "register", "web", addr, "--id", id, "--ttl", "3"];
    args.extend_from_slice(extra);
    let (p, rx) = spawn_kvctl(ep, &args, Stdio::null());
    wait_line(&rx, &format!("registered kv/services/web/{id} "));
    (p, rx)
}

/// Waits until `service list web` shows instance `id`'s check `check`
/// with an output containing `needle` (the check has run).
fn wait_check_output(ep: &str, id: &str, check: &str, needle: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = output_bounded(
            Command::new(KVCTL).args(["--endpoints", ep, "-w", "json", "service", "list", "web"]),
            WAIT,
        );
        assert!(out.status.success(), "{out:?}");
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let found = list.as_array().unwrap().iter().find(|i| i["id"] == id);
        if let Some(inst) = found {
            let c = &inst["checks"][check];
            if c["output"].as_str().is_some_and(|o| o.contains(needle)) {
                assert_eq!(inst["health"], "critical", "{inst}");
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{id}'s {check} check never ran: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dig_asks_kvctl_service_dns_while_instances_come_and_go() {
    if Command::new("dig").arg("-v").output().is_err() {
        panic!("dig is not installed: scripts/setup.sh installs dnsutils");
    }
    for (kind, server) in [("kvd", start(&kvd_bin())), ("etcd", start(Path::new(ETCD)))] {
        eprintln!("=== {kind}");
        let ep = &server.endpoint;
        // Port 0: the server picks a free port (UDP and TCP) and prints it.
        let (mut dns, dns_out) = spawn_kvctl(
            ep,
            &["service", "dns", "--listen", "127.0.0.1:0"],
            Stdio::null(),
        );
        let serving = wait_line(&dns_out, "serving DNS for *.service.kv on ");
        let at: SocketAddr = serving
            .split(" on ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("[{kind}] {serving}"));
        assert_eq!(status(at, "web.service.kv", "A"), "NXDOMAIN", "[{kind}]");

        let mut target = TcpTarget::start();
        let target_addr = target.addr.to_string();
        let check = ["--check-tcp", &target_addr, "--interval", "100ms"];
        let (mut a, _a_out) = register(ep, "127.0.6.1:8001", "a", &["--tag", "v2"]);
        let (mut b, _b_out) = register(ep, "127.0.6.2:8002", "b", &[]);
        let mut c_args = vec!["--tag", "v2"];
        c_args.extend_from_slice(&check);
        let (mut c, c_out) = register(ep, "127.0.6.3:8003", "c", &c_args);
        wait_line(&c_out, "health passing");
        // A check failing from the start: registered, critical, never
        // answered (exit 2 is critical; 1 would be warning). It starts
        // critical, so no "health" line: wait for its first result.
        let failing = ["--tag", "v2", "--check-cmd", "sh -c 'echo down; exit 2'"];
        let (_d, _d_out) = register(ep, "127.0.6.4:8004", "d", &failing);
        wait_check_output(ep, "d", "cmd", "down");

        let abc = ["127.0.6.1", "127.0.6.2", "127.0.6.3"];
        until_short(at, "web.service.kv", "A", &abc);
        until_short(
            at,
            "web.service.kv",
            "SRV",
            &[
                "1 1 8001 7f000601.addr.kv.",
                "1 1 8002 7f000602.addr.kv.",
                "1 1 8003 7f000603.addr.kv.",
            ],
        );
        until_short(at, "v2.web.service.kv", "A", &["127.0.6.1", "127.0.6.3"]);
        until_short(
            at,
            "v2.web.service.kv",
            "SRV",
            &["1 1 8001 7f000601.addr.kv.", "1 1 8003 7f000603.addr.kv."],
        );
        // The SRV target resolves (and over TCP as well).
        let target_a = dig(at, &["+tcp", "+short", "7f000603.addr.kv", "A"]);
        assert_eq!(lines(&target_a), lines("127.0.6.3"), "[{kind}]");

        // c's check fails: c leaves the answers; it recovers: c is back.
        target.stop();
        wait_line(&c_out, "health critical");
        until_short(at, "web.service.kv", "A", &["127.0.6.1", "127.0.6.2"]);
        until_short(at, "v2.web.service.kv", "A", &["127.0.6.1"]);
        target.restart();
        wait_line(&c_out, "health passing");
        until_short(at, "web.service.kv", "A", &abc);
        until_short(at, "v2.web.service.kv", "A", &["127.0.6.1", "127.0.6.3"]);

        // a stopped (SIGTERM: it deregisters itself): gone at once.
        a.signal(Signal::SIGTERM);
        assert!(a.wait().success(), "[{kind}] register exits 0 on SIGTERM");
        until_short(at, "web.service.kv", "A", &["127.0.6.2", "127.0.6.3"]);
        until_short(
            at,
            "v2.web.service.kv",
            "SRV",
            &["1 1 8003 7f000603.addr.kv."],
        );
        // b killed (SIGKILL): gone when its 3 s lease expires.
        b.signal(Signal::SIGKILL);
        b.wait();
        until_short(at, "web.service.kv", "A", &["127.0.6.3"]);
        // c stopped: only the critical d is left, so no answer at all.
        c.signal(Signal::SIGTERM);
        assert!(c.wait().success(), "[{kind}]");
        until_short(at, "web.service.kv", "A", &[]);
        assert_eq!(status(at, "web.service.kv", "A"), "NXDOMAIN", "[{kind}]");
        assert_eq!(status(at, "v2.web.service.kv", "SRV"), "NXDOMAIN");

        // `service dns` stops cleanly on SIGTERM.
        dns.signal(Signal::SIGTERM);
        assert!(
            dns.wait().success(),
            "[{kind}] service dns exits 0 on SIGTERM"
        );
    }
}
