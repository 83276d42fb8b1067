//! Health checks run by the registering process, against real local
//! HTTP, TCP, gRPC backends and commands: state changes follow the
//! thresholds, each change is one write, and a check critical too long
//! deregisters the instance.

use std::time::Duration;

use kv_discovery::{
    Check, Error, Health, HealthFilter, MAX_CHECK_OUTPUT, Registration, Registry, ServiceEvent,
    ServiceFilter, ServiceInstance, Subscription,
};

use crate::backends::{GrpcBackend, HttpBackend};
use crate::{Kind, Server, WAIT, on_both, within};

on_both!(
    http_check_follows_the_backend,
    tcp_and_grpc_checks_follow_their_servers,
    command_check_maps_exit_codes_and_bounds_output,
    ttl_check_expires_and_deregisters_critical_after,
);

const FAST: Duration = Duration::from_millis(100);

/// Waits for the instance `id` to be seen with `health` (by a subscriber
/// of every instance).
async fn wait_health(sub: &mut Subscription, id: &str, health: Health) -> ServiceInstance {
    within(&format!("{id} {health}"), WAIT, async {
        loop {
            match sub.next_event().await.expect("stream ended") {
                ServiceEvent::Added(i) | ServiceEvent::Updated(i)
                    if i.id == id && i.health == health =>
                {
                    return i;
                }
                _ => {}
            }
        }
    })
    .await
}

async fn version(reg: &Registration, client: &kv_client::Client) -> i64 {
    client.get(reg.key(), None).await.unwrap().kvs()[0].version
}

fn trailing(answered: &[u16], code: u16) -> usize {
    answered.iter().rev().take_while(|c| **c == code).count()
}

async fn http_check_follows_the_backend(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let registry = Registry::new(client.clone()).with_ttl(5);
    let mut all = registry.subscribe("web").await.unwrap();
    let mut passing = registry
        .subscribe_with(
            "web",
            ServiceFilter::new().with_health(HealthFilter::Passing),
        )
        .await
        .unwrap();
    let mut backend = HttpBackend::start(200).await;
    let check = Check::http("http", backend.url())
        .with_interval(FAST)
        .with_timeout(Duration::from_secs(2))
        .with_success_before_passing(2)
        .with_failures_before_critical(2);
    let reg = registry
        .register_with_checks(
            ServiceInstance::new("web", "127.0.0.1:1").with_id("w"),
            [check],
        )
        .await
        .unwrap();
    // Starts critical (as Consul's), passes after two 200s.
    let first = wait_health(&mut all, "w", Health::Critical).await;
    assert_eq!(first.checks["http"].health, Health::Critical);
    let up = wait_health(&mut all, "w", Health::Passing).await;
    assert!(up.checks["http"].output.contains("200"), "{up:?}");
    assert!(trailing(&backend.answered(), 200) >= 2);
    assert!(matches!(
        passing.next_event().await,
        Some(ServiceEvent::Added(_))
    ));

    // Steady state: probes go on, the entry is not rewritten.
    let v = version(&reg, &client).await;
    let served = backend.answered().len();
    within("more probes", WAIT, async {
        while backend.answered().len() < served + 5 {
            tokio::time::sleep(FAST).await;
        }
    })
    .await;
    assert_eq!(
        version(&reg, &client).await,
        v,
        "[{kind}] a probe rewrote the entry"
    );

    backend.set_status(429);
    let warn = wait_health(&mut all, "w", Health::Warning).await;
    assert!(warn.checks["http"].output.contains("429"), "{warn:?}");
    assert!(
        trailing(&backend.answered(), 429) >= 2,
        "[{kind}] changed before the threshold"
    );
    assert!(matches!(
        passing.next_event().await,
        Some(ServiceEvent::Removed(_))
    ));
    // Failures count warning and critical results alike (as Consul's):
    // past the threshold already, one 503 turns it critical.
    backend.set_status(503);
    wait_health(&mut all, "w", Health::Critical).await;
    assert!(trailing(&backend.answered(), 503) >= 1);
    // Exactly one write per change: registered, passing, warning, critical.
    assert_eq!(version(&reg, &client).await, v + 2);

    // Down (connection refused) stays critical; back up turns passing.
    backend.halt().await;
    backend.set_status(200);
    backend.restart().await;
    wait_health(&mut all, "w", Health::Passing).await;
    assert!(matches!(
        passing.next_event().await,
        Some(ServiceEvent::Added(_))
    ));
    reg.close().await.unwrap();
}

async fn tcp_and_grpc_checks_follow_their_servers(kind: Kind) {
    let server = Server::start(kind).await;
    let registry = Registry::new(server.client().await).with_ttl(5);
    let mut all = registry.subscribe("rpc").await.unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let grpc = GrpcBackend::start().await;
    let checks = [
        Check::tcp("port", tcp_addr.to_string()).with_interval(FAST),
        Check::grpc("health", grpc.uri(), "").with_interval(FAST),
    ];
    let reg = registry
        .register_with_checks(
            ServiceInstance::new("rpc", "127.0.0.1:1").with_id("r"),
            checks,
        )
        .await
        .unwrap();
    let up = wait_health(&mut all, "r", Health::Passing).await;
    assert_eq!(up.checks.len(), 2);
    assert!(up.checks["health"].output.contains("SERVING"), "{up:?}");

    grpc.set(false).await;
    let down = wait_health(&mut all, "r", Health::Critical).await;
    assert!(
        down.checks["health"].output.contains("NOT_SERVING"),
        "{down:?}"
    );
    assert_eq!(down.checks["port"].health, Health::Passing);
    grpc.set(true).await;
    wait_health(&mut all, "r", Health::Passing).await;

    drop(tcp);
    let down = wait_health(&mut all, "r", Health::Critical).await;
    assert_eq!(down.checks["port"].health, Health::Critical);
    let _tcp = tokio::net::TcpListener::bind(tcp_addr).await.unwrap();
    wait_health(&mut all, "r", Health::Passing).await;
    // A stopped gRPC server (connection refused) is critical too.
    drop(grpc);
    wait_health(&mut all, "r", Health::Critical).await;
    reg.close().await.unwrap();
}

async fn command_check_maps_exit_codes_and_bounds_output(kind: Kind) {
    let server = Server::start(kind).await;
    let registry = Registry::new(server.client().await).with_ttl(5);
    let mut all = registry.subscribe("job").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::write(&code, "0").unwrap();
    // Prints 100 KB then exits with the code in the file.
    let script = format!(
        "head -c 100000 /dev/zero | tr '\\0' x; echo; echo from-stderr >&2; exit $(cat {})",
        code.display()
    );
    let check = Check::command("script", "sh", ["-c", script.as_str()]).with_interval(FAST);
    let reg = registry
        .register_with_checks(
            ServiceInstance::new("job", "127.0.0.1:1").with_id("j"),
            [check],
        )
        .await
        .unwrap();
    let up = wait_health(&mut all, "j", Health::Passing).await;
    let out = &up.checks["script"].output;
    assert!(
        out.len() <= MAX_CHECK_OUTPUT && out.starts_with("xxxx"),
        "{}",
        out.len()
    );
    for (c, want) in [
        ("1", Health::Warning),
        ("3", Health::Critical),
        ("0", Health::Passing),
    ] {
        std::fs::write(&code, c).unwrap();
        wait_health(&mut all, "j", want).await;
    }
    // Output past the bound is dropped, a short stderr is kept.
    std::fs::write(&code, "1").unwrap();
    let short = "echo to-stdout; echo to-stderr >&2; exit 1";
    drop(reg);
    let reg = registry
        .register_with_checks(
            ServiceInstance::new("job", "127.0.0.1:1").with_id("k"),
            [Check::command("short", "sh", ["-c", short]).with_interval(FAST)],
        )
        .await
        .unwrap();
    let warn = wait_health(&mut all, "k", Health::Warning).await;
    assert_eq!(warn.checks["short"].output, "to-stdout\nto-stderr\n");
    // A program that does not exist is critical, not an error.
    reg.close().await.unwrap();
    let reg = registry
        .register_with_checks(
            ServiceInstance::new("job", "127.0.0.1:1").with_id("m"),
            [
                Check::command("missing", "/nonexistent/kv-check", Vec::<String>::new())
                    .with_interval(FAST),
            ],
        )
        .await
        .unwrap();
    assert!(matches!(
        reg.update_ttl("missing", Health::Passing, "").await,
        Err(Error::UnknownCheck(_))
    ));
    let inst = wait_health(&mut all, "m", Health::Critical).await;
    assert_eq!(inst.checks["missing"].health, Health::Critical);
}

async fn ttl_check_expires_and_deregisters_critical_after(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let registry = Registry::new(client.clone()).with_ttl(5);
    let mut all = registry.subscribe("worker").await.unwrap();
    let check = Check::ttl("beat", Duration::from_millis(500))
        .with_deregister_critical_after(Duration::from_millis(1500));
    let mut reg = registry
        .register_with_checks(
            ServiceInstance::new("worker", "127.0.0.1:1").with_id("t"),
            [check],
        )
        .await
        .unwrap();
    wait_health(&mut all, "t", Health::Critical).await;
    // Reports keep it up; a warning report shows as warning.
    reg.update_ttl("beat", Health::Warning, "backlog")
        .await
        .unwrap();
    let w = wait_health(&mut all, "t", Health::Warning).await;
    assert_eq!(w.checks["beat"].output, "backlog");
    reg.update_ttl("beat", Health::Passing, "ok").await.unwrap();
    wait_health(&mut all, "t", Health::Passing).await;
    assert!(matches!(
        reg.update_ttl("nope", Health::Passing, "").await,
        Err(Error::UnknownCheck(n)) if n == "nope"
    ));
    // No more reports: critical after the TTL, then deregistered.
    let c = wait_health(&mut all, "t", Health::Critical).await;
    assert!(c.checks["beat"].output.contains("TTL expired"), "{c:?}");
    let gone = within("deregistration", WAIT, all.next_event()).await;
    assert!(
        matches!(&gone, Some(ServiceEvent::Removed(i)) if i.id == "t"),
        "[{kind}] {gone:?}"
    );
    // The registration has stopped: its events end, nothing writes it back.
    within("events end", WAIT, async {
        while reg.next_event().await.is_some() {}
    })
    .await;
    assert!(registry.list("worker").await.unwrap().is_empty());
    assert!(matches!(
        reg.update_ttl("beat", Health::Passing, "").await,
        Err(Error::Closed)
    ));
}
