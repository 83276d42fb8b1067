//! The balanced tonic channel (`kv_discovery::grpc`) against real greeter
//! processes (the `greeter_server` example) registered in a real kvd or
//! etcd: a SIGKILLed instance fails at most the calls in flight to it, a
//! new instance is used, a deregistered (still serving) one gets no more
//! calls, a critical one leaves the balancer and comes back; and the
//! `greeter_client` example itself under a kill (grpc_channel/example.rs).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kv_discovery::grpc::{self, BalancedChannel};
use kv_discovery::{Health, Registry, ServiceFilter, ServiceInstance};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::backends::GrpcBackend;
use crate::{Kind, Server, WAIT, on_both, within};

/// `on_both!` for bodies running the greeter examples: they are built
/// first, outside the body's time limit (a cargo build on a busy machine
/// can take minutes).
macro_rules! on_both_with_greeters {
    ($($body:ident),* $(,)?) => {
        $(
            mod $body {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn kvd() {
                    $crate::grpc_channel::build_greeters().await;
                    $crate::run($crate::Kind::Kvd, super::$body($crate::Kind::Kvd)).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn etcd() {
                    $crate::grpc_channel::build_greeters().await;
                    $crate::run($crate::Kind::Etcd, super::$body($crate::Kind::Etcd)).await;
                }
            }
        )*
    };
}

// The greeter_client example under a kill (tests/suite/grpc_channel/).
mod example;

on_both_with_greeters!(killed_instance_fails_only_calls_in_flight);
on_both!(critical_instance_leaves_the_channel_and_returns);

/// Callers running at once: the bound on calls a kill may fail.
const CONCURRENCY: usize = 8;
const POLL: Duration = Duration::from_millis(20);

/// `$GREETER_BIN`, else the example built (once per run, blocking) by
/// cargo with this suite's features, so the test runs the current source.
fn greeter_bin() -> PathBuf {
    match std::env::var_os("GREETER_BIN") {
        Some(p) => PathBuf::from(p),
        None => examples_dir().join("greeter_server"),
    }
}

/// `$GREETER_CLIENT_BIN`, else the example built as [`greeter_bin`]'s.
fn greeter_client_bin() -> PathBuf {
    match std::env::var_os("GREETER_CLIENT_BIN") {
        Some(p) => PathBuf::from(p),
        None => examples_dir().join("greeter_client"),
    }
}

/// Builds the greeter examples (or finds them in the environment).
pub(crate) async fn build_greeters() {
    tokio::task::spawn_blocking(|| (greeter_bin(), greeter_client_bin()))
        .await
        .expect("building the greeter examples");
}

/// Builds both greeter examples (once per run, blocking) and returns the
/// directory holding them.
fn examples_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "-p", "kv-discovery"]);
        build.args(["--example", "greeter_server", "--example", "greeter_client"]);
        // The features this suite was built with, so the library is reused.
        if !cfg!(feature = "dns") {
            build.arg("--no-default-features");
        }
        let status = build
            .current_dir(&root)
            .status()
            .expect("spawn cargo build --example greeter_server --example greeter_client");
        assert!(
            status.success(),
            "building the greeter examples failed: {status}"
        );
        root.join("target/debug/examples")
    })
    .clone()
}

/// One `greeter_server` process, SIGKILLed when dropped.
struct Greeter {
    id: String,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Greeter {
    async fn start(kv: &str, id: &str) -> Greeter {
        let bin = greeter_bin();
        let mut child = Command::new(bin)
            .args(["--endpoints", kv, "--id", id, "--ttl", "3"])
            // In flight long enough for a kill to catch some calls; drains
            // long enough to be still serving when the test checks.
            .args(["--delay-ms", "20", "--drain-ms", "120000"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn greeter_server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut g = Greeter {
            id: id.to_string(),
            child,
            stdout: BufReader::new(stdout).lines(),
        };
        let line = g.line().await;
        assert!(
            line.starts_with("listening ") && line.ends_with(&format!(" id {id}")),
            "{line}"
        );
        g
    }

    async fn line(&mut self) -> String {
        within("a line from greeter_server", WAIT, self.stdout.next_line())
            .await
            .expect("read greeter stdout")
            .unwrap_or_else(|| panic!("greeter {} exited", self.id))
    }

    async fn kill9(&mut self) {
        self.child.start_kill().expect("SIGKILL greeter");
        within("greeter to die", WAIT, self.child.wait())
            .await
            .expect("reap greeter");
    }

    fn terminate(&self) {
        let pid = self.child.id().expect("greeter running") as i32;
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM greeter");
    }
}

/// What the callers saw: answers by instance, failures in order.
#[derive(Default)]
struct Tally {
    ok: HashMap<String, u64>,
    failed: Vec<String>,
}

impl Tally {
    fn total_ok(&self) -> u64 {
        self.ok.values().sum()
    }
    fn of(&self, id: &str) -> u64 {
        self.ok.get(id).copied().unwrap_or(0)
    }
}

/// `CONCURRENCY` tasks calling Check in a loop until dropped.
struct Callers {
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Callers {
    fn start(channel: &BalancedChannel) -> Callers {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..CONCURRENCY)
            .map(|_| {
                let (tally, stop) = (tally.clone(), stop.clone());
                let mut client = HealthClient::new(channel.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let req = HealthCheckRequest {
                            service: String::new(),
                        };
                        let res = client.check(req).await;
                        let mut t = tally.lock().unwrap();
                        match res {
                            Ok(resp) => {
                                let id = resp
                                    .metadata()
                                    .get("x-instance-id")
                                    .expect("instance header");
                                *t.ok.entry(id.to_str().unwrap().to_string()).or_default() += 1;
                            }
                            Err(status) => t.failed.push(format!("{status:?}")),
                        }
                    }
                })
            })
            .collect();
        Callers { tally, stop, tasks }
    }

    fn read<T>(&self, f: impl FnOnce(&Tally) -> T) -> T {
        f(&self.tally.lock().unwrap())
    }

    /// Waits until `cond` holds on the tally.
    async fn until(&self, what: &str, cond: impl Fn(&Tally) -> bool) {
        within(what, WAIT, async {
            while !self.read(&cond) {
                tokio::time::sleep(POLL).await;
            }
        })
        .await
    }

    /// Waits until `n` more calls have been answered.
    async fn answered(&self, what: &str, n: u64) {
        let base = self.read(Tally::total_ok);
        self.until(what, |t| t.total_ok() >= base + n).await
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            within("a caller to stop", WAIT, t)
                .await
                .expect("caller task");
        }
    }
}

async fn wait_instances(
    channel: &BalancedChannel,
    what: &str,
    cond: impl Fn(&[grpc::InstanceState]) -> bool,
) {
    within(what, WAIT, async {
        while !cond(&channel.instances()) {
            tokio::time::sleep(POLL).await;
        }
    })
    .await
}

fn connected(insts: &[grpc::InstanceState], id: &str) -> bool {
    insts.iter().any(|i| i.id == id && i.connected)
}

async fn killed_instance_fails_only_calls_in_flight(kind: Kind) {
    let server = Server::start(kind).await;
    let kv = server.endpoint();
    let registry = Registry::new(server.client().await);
    let mut a = Greeter::start(&kv, "a").await;
    let mut b = Greeter::start(&kv, "b").await;
    let mut c = Greeter::start(&kv, "c").await;
    let channel = grpc::channel(&registry, "greeter", ServiceFilter::new(), |ep| {
        ep.timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
    })
    .await
    .unwrap();
    wait_instances(&channel, "three connected instances", |i| {
        ["a", "b", "c"].iter().all(|id| connected(i, id))
    })
    .await;

    let callers = Callers::start(&channel);
    callers
        .until("every instance to answer", |t| {
            ["a", "b", "c"].iter().all(|id| t.of(id) >= 20)
        })
        .await;
    assert!(
        callers.read(|t| t.failed.is_empty()),
        "[{kind}] failures before the kill"
    );

    // SIGKILL b while calls are in flight to it.
    let in_flight = channel
        .instances()
        .iter()
        .find(|i| i.id == "b")
        .map(|i| i.in_flight);
    b.kill9().await;
    wait_instances(&channel, "b to be disconnected", |i| !connected(i, "b")).await;
    callers.answered("calls after the kill", 200).await;
    let failed = callers.read(|t| t.failed.clone());
    eprintln!(
        "[{kind}] b had {in_flight:?} calls in flight at the kill; {} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(CONCURRENCY)]
    );
    assert!(
        failed.len() <= CONCURRENCY,
        "[{kind}] {} calls failed, the first: {:?}",
        failed.len(),
        &failed[..5]
    );

    // A new instance is used; b's entry goes when its lease expires; no
    // call fails meanwhile.
    let mut d = Greeter::start(&kv, "d").await;
    callers.until("d to answer", |t| t.of("d") >= 20).await;
    wait_instances(&channel, "b's lease to expire", |i| {
        !i.iter().any(|i| i.id == "b")
    })
    .await;

    // A deregistered instance gets no new calls, though it still serves.
    c.terminate();
    assert_eq!(c.line().await, "deregistered");
    wait_instances(&channel, "c to leave", |i| !i.iter().any(|i| i.id == "c")).await;
    // Calls sent to c before it left may still answer: let them.
    callers.answered("calls after c left", 100).await;
    let c_calls = callers.read(|t| t.of("c"));
    callers.answered("more calls after c left", 300).await;
    assert_eq!(
        callers.read(|t| t.of("c")),
        c_calls,
        "[{kind}] c still gets calls"
    );
    assert!(
        c.child.try_wait().unwrap().is_none(),
        "c must still be serving"
    );
    let after = callers.read(|t| t.failed.len());
    assert_eq!(
        after,
        failed.len(),
        "[{kind}] calls failed after the kill was handled"
    );
    let (on_a, on_d) = callers.read(|t| (t.of("a"), t.of("d")));
    assert!(on_a > 0 && on_d > 0);

    callers.stop().await;
    drop(channel);
    a.kill9().await;
    c.kill9().await;
    d.kill9().await;
}

async fn critical_instance_leaves_the_channel_and_returns(kind: Kind) {
    let server = Server::start(kind).await;
    let registry = Registry::new(server.client().await).with_ttl(5);
    let (x, y) = (GrpcBackend::start().await, GrpcBackend::start().await);
    let rx = registry
        .register(ServiceInstance::new("hc", x.addr.to_string()).with_id("x"))
        .await
        .unwrap();
    let _ry = registry
        .register(ServiceInstance::new("hc", y.addr.to_string()).with_id("y"))
        .await
        .unwrap();
    let channel = grpc::channel(&registry, "hc", ServiceFilter::new(), |ep| ep)
        .await
        .unwrap();
    wait_instances(&channel, "x and y connected", |i| {
        connected(i, "x") && connected(i, "y")
    })
    .await;
    let mut client = HealthClient::new(channel.clone());
    let calls = |id: &str| {
        let i = channel.instances();
        i.iter().find(|i| i.id == id).map(|i| i.calls)
    };
    let check = HealthCheckRequest {
        service: String::new(),
    };
    for _ in 0..10 {
        client.check(check.clone()).await.unwrap();
    }
    assert!(calls("x").unwrap() > 0 && calls("y").unwrap() > 0);

    rx.set_health(Health::Critical).await.unwrap();
    wait_instances(&channel, "x to leave", |i| i.len() == 1).await;
    let before = calls("y").unwrap();
    for _ in 0..10 {
        client.check(check.clone()).await.unwrap();
    }
    assert_eq!(
        calls("y").unwrap(),
        before + 10,
        "[{kind}] all calls go to y"
    );

    rx.set_health(Health::Passing).await.unwrap();
    wait_instances(&channel, "x to return", |i| connected(i, "x")).await;
    for _ in 0..10 {
        client.check(check.clone()).await.unwrap();
    }
    assert!(calls("x").unwrap() > 0);

    // Dropping the channel stops its subscription and closes its
    // connections: a bare listener registered now is dialled, then hung up.
    let z = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let z_addr = z.local_addr().unwrap().to_string();
    let _rz = registry
        .register(ServiceInstance::new("hc", z_addr).with_id("z"))
        .await
        .unwrap();
    let (mut conn, _) = within("the channel to dial z", WAIT, z.accept())
        .await
        .unwrap();
    drop(client);
    drop(channel);
    within("z's connection to close", WAIT, async {
        let mut buf = [0u8; 1024];
        while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}
