//! A check state change whose write fails (the client cut off its server
//! by a proxy) is retried by the registration until it lands, with no
//! further state change to carry it; a newer state replaces a pending one.

use std::time::Duration;

use kv_client::Client;
use kv_discovery::{
    Check, Health, Registration, RegistrationEvent, Registry, ServiceEvent, ServiceInstance,
    Subscription,
};

use crate::backends::HttpBackend;
use crate::proxy::{Mode, Proxy};
use crate::{Kind, Server, WAIT, on_both, within};

on_both!(
    failed_state_change_write_is_retried,
    newer_state_replaces_a_pending_write
);

const FAST: Duration = Duration::from_millis(100);

/// The next subscription event about `id` with `health`; panics on one
/// about `id` with another health when `strict`.
async fn wait_health(sub: &mut Subscription, id: &str, health: Health, strict: bool) {
    within(&format!("{id} {health}"), WAIT, async {
        loop {
            match sub.next_event().await.expect("stream ended") {
                ServiceEvent::Added(i) | ServiceEvent::Updated(i) if i.id == id => {
                    if i.health == health {
                        return;
                    }
                    assert!(!strict, "{id} seen {} before {health}", i.health);
                }
                _ => {}
            }
        }
    })
    .await
}

/// Waits for the registration's next event matching `f`.
async fn wait_event(reg: &mut Registration, what: &str, f: impl Fn(&RegistrationEvent) -> bool) {
    within(what, WAIT, async {
        loop {
            let e = reg.next_event().await.expect("registration stopped");
            if f(&e) {
                return;
            }
        }
    })
    .await
}

async fn version(client: &Client, key: &str) -> i64 {
    client.get(key, None).await.unwrap().kvs()[0].version
}

/// A registration through a proxy, with an HTTP check of `backend`, seen
/// passing by a direct subscriber.
async fn setup(
    server: &Server,
    proxy: &Proxy,
    backend: &HttpBackend,
) -> (Registration, Subscription) {
    let cut = Client::connect(crate::fast_config(proxy.endpoint()))
        .await
        .unwrap();
    let direct = server.client().await;
    let mut sub = Registry::new(direct).subscribe("web").await.unwrap();
    let check = Check::http("http", backend.url())
        .with_interval(FAST)
        .with_timeout(Duration::from_secs(1));
    // A TTL far longer than the cut: the lease outlives it, so nothing but
    // the retry can write the entry again.
    let mut reg = Registry::new(cut)
        .with_ttl(60)
        .register_with_checks(
            ServiceInstance::new("web", "127.0.0.1:1").with_id("w"),
            [check],
        )
        .await
        .unwrap();
    wait_health(&mut sub, "w", Health::Passing, false).await;
    wait_event(&mut reg, "passing", |e| {
        matches!(
            e,
            RegistrationEvent::HealthChanged {
                health: Health::Passing
            }
        )
    })
    .await;
    (reg, sub)
}

async fn failed_state_change_write_is_retried(kind: Kind) {
    let server = Server::start(kind).await;
    let direct = server.client().await;
    let proxy = Proxy::start(server.addr()).await;
    let mut backend = HttpBackend::start(200).await;
    let (mut reg, mut sub) = setup(&server, &proxy, &backend).await;
    let v = version(&direct, reg.key()).await;

    proxy.set(Mode::Refuse);
    backend.halt().await;
    // The write of "critical" fails and is reported.
    wait_event(&mut reg, "a failed write", |e| {
        matches!(e, RegistrationEvent::RetryFailed { .. })
    })
    .await;
    assert_eq!(reg.instance().health, Health::Critical, "[{kind}]");
    assert_eq!(
        version(&direct, reg.key()).await,
        v,
        "[{kind}] written through the cut"
    );

    // The backend stays down: no new state change, only the retry can
    // bring the entry up to date.
    proxy.set(Mode::Forward);
    wait_health(&mut sub, "w", Health::Critical, true).await;
    wait_event(&mut reg, "critical", |e| {
        matches!(
            e,
            RegistrationEvent::HealthChanged {
                health: Health::Critical
            }
        )
    })
    .await;
    let entry = &Registry::new(direct.clone()).list("web").await.unwrap()[0];
    assert_eq!(entry.checks["http"].health, Health::Critical, "[{kind}]");
    // Exactly one write landed for the change.
    assert_eq!(version(&direct, reg.key()).await, v + 1, "[{kind}]");
    reg.close().await.unwrap();
}

async fn newer_state_replaces_a_pending_write(kind: Kind) {
    let server = Server::start(kind).await;
    let direct = server.client().await;
    let proxy = Proxy::start(server.addr()).await;
    let backend = HttpBackend::start(200).await;
    let (mut reg, mut sub) = setup(&server, &proxy, &backend).await;
    let v = version(&direct, reg.key()).await;

    proxy.set(Mode::Refuse);
    backend.set_status(503);
    wait_event(&mut reg, "a failed write", |e| {
        matches!(e, RegistrationEvent::RetryFailed { .. })
    })
    .await;
    // Back to passing while the critical write still waits for its retry.
    backend.set_status(200);
    within("passing applied", WAIT, async {
        while reg.instance().health != Health::Passing {
            tokio::time::sleep(FAST).await;
        }
    })
    .await;
    proxy.set(Mode::Forward);
    // The pending write now carries "passing": the entry never shows the
    // stale "critical". It is written once the cut heals (the same health,
    // so no event; a probe's output changed).
    within("the pending write", WAIT, async {
        while version(&direct, reg.key()).await == v {
            tokio::time::sleep(FAST).await;
        }
    })
    .await;
    assert_eq!(version(&direct, reg.key()).await, v + 1, "[{kind}]");
    let entry = &Registry::new(direct.clone()).list("web").await.unwrap()[0];
    assert_eq!(entry.health, Health::Passing, "[{kind}]");
    // The entry written equals the one before the cut: the subscriber
    // has nothing new to report, and never saw the stale "critical".
    assert_eq!(sub.current()[0].health, Health::Passing, "[{kind}]");
    assert!(
        tokio::time::timeout(FAST, sub.next_event()).await.is_err(),
        "[{kind}] the subscriber saw a change"
    );
    reg.close().await.unwrap();
}
