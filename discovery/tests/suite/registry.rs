//! Registration and subscription against real servers.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use kv_client::{Client, PutOptions};
use kv_discovery::{
    Health, RegistrationEvent, Registry, ServiceEvent, ServiceInstance, Subscription,
};

use crate::proxy::{Mode, Proxy};
use crate::{Kind, Server, WAIT, on_both, within};

on_both!(
    two_registrations_seen_by_a_subscriber,
    revoked_lease_reregisters_by_itself,
    partition_past_ttl_reregisters_by_itself,
    snapshot_then_watch_has_no_gap_or_duplicate,
    compaction_during_disconnect_resnapshots,
    discover_feeds_a_tower_balancer,
);

fn ids(instances: &[ServiceInstance]) -> BTreeSet<String> {
    instances.iter().map(|i| i.id.clone()).collect()
}

async fn next_event(sub: &mut Subscription) -> ServiceEvent {
    within("a subscription event", WAIT, sub.next())
        .await
        .expect("subscription stream ended")
}

async fn two_registrations_seen_by_a_subscriber(kind: Kind) {
    let server = Server::start(kind).await;
    let registry = Registry::new(server.client().await).with_ttl(5);
    let mut sub = registry.subscribe("api").await.unwrap();
    assert!(sub.current().is_empty());

    // Three lines each, as the issue promises.
    let a = registry
        .register(ServiceInstance::new("api", "127.0.0.1:8080"))
        .await
        .unwrap();
    let b = registry
        .register(ServiceInstance::new("api", "127.0.0.1:8081").with_metadata("zone", "b"))
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < 2 {
        match next_event(&mut sub).await {
            ServiceEvent::Added(i) => assert!(seen.insert(i.id), "added twice"),
            other => panic!("[{kind}] unexpected {other:?}"),
        }
    }
    let want: BTreeSet<String> = [a.instance().id, b.instance().id].into();
    assert_eq!(seen, want);
    assert_eq!(ids(&sub.current()), want);
    assert_eq!(ids(&registry.list("api").await.unwrap()), want);

    b.set_health(Health::Critical).await.unwrap();
    match next_event(&mut sub).await {
        ServiceEvent::Updated(i) => {
            assert_eq!(i.id, b.instance().id);
            assert_eq!(i.health, Health::Critical);
            assert_eq!(i.metadata.get("zone").map(String::as_str), Some("b"));
        }
        other => panic!("[{kind}] unexpected {other:?}"),
    }

    let a_id = a.instance().id;
    a.close().await.unwrap();
    match next_event(&mut sub).await {
        ServiceEvent::Removed(i) => assert_eq!(i.id, a_id),
        other => panic!("[{kind}] unexpected {other:?}"),
    }
    // Dropping a registration revokes in the background.
    drop(b);
    assert!(matches!(
        next_event(&mut sub).await,
        ServiceEvent::Removed(_)
    ));
    assert!(sub.current().is_empty());
}

async fn revoked_lease_reregisters_by_itself(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let registry = Registry::new(client.clone()).with_ttl(3);
    let mut reg = registry
        .register(ServiceInstance::new("api", "127.0.0.1:9000").with_id("one"))
        .await
        .unwrap();
    let first = reg.lease_id();
    assert_eq!(
        reg.next_event().await,
        Some(RegistrationEvent::Registered { lease: first })
    );
    let mut sub = registry.subscribe("api").await.unwrap();
    assert!(matches!(next_event(&mut sub).await, ServiceEvent::Added(_)));

    // Behind the registration's back: its entry goes with the lease.
    client.lease_revoke(first).await.unwrap();
    assert!(matches!(
        next_event(&mut sub).await,
        ServiceEvent::Removed(_)
    ));
    let lost = within("LeaseLost", WAIT, reg.next_event()).await;
    assert!(
        matches!(lost, Some(RegistrationEvent::LeaseLost { lease, .. }) if lease == first),
        "[{kind}] {lost:?}"
    );
    let again = within("Reregistered", WAIT, reg.next_event()).await;
    let Some(RegistrationEvent::Reregistered { lease }) = again else {
        panic!("[{kind}] expected Reregistered, got {again:?}");
    };
    assert_ne!(lease, first);
    assert_eq!(reg.lease_id(), lease);
    match next_event(&mut sub).await {
        ServiceEvent::Added(i) => assert_eq!(i.id, "one"),
        other => panic!("[{kind}] unexpected {other:?}"),
    }
    let kv = client.get(reg.key(), None).await.unwrap();
    assert_eq!(kv.kvs()[0].lease, lease);
    reg.close().await.unwrap();
    assert!(
        client
            .get("kv/services/api/one", None)
            .await
            .unwrap()
            .kvs()
            .is_empty()
    );
}

async fn partition_past_ttl_reregisters_by_itself(kind: Kind) {
    let server = Server::start(kind).await;
    let direct = server.client().await;
    let proxy = Proxy::start(server.addr()).await;
    let cut = Client::connect(crate::fast_config(proxy.endpoint()))
        .await
        .unwrap();
    let mut reg = Registry::new(cut)
        .with_ttl(2)
        .register(ServiceInstance::new("api", "127.0.0.1:9000").with_id("p"))
        .await
        .unwrap();
    let first = reg.lease_id();
    let mut sub = Registry::new(direct.clone())
        .subscribe("api")
        .await
        .unwrap();
    assert!(matches!(next_event(&mut sub).await, ServiceEvent::Added(_)));

    // No keep-alive gets through: the server expires the lease.
    proxy.set(Mode::Refuse);
    match next_event(&mut sub).await {
        ServiceEvent::Removed(i) => assert_eq!(i.id, "p"),
        other => panic!("[{kind}] unexpected {other:?}"),
    }
    proxy.set(Mode::Forward);
    match next_event(&mut sub).await {
        ServiceEvent::Added(i) => assert_eq!(i.id, "p"),
        other => panic!("[{kind}] unexpected {other:?}"),
    }
    let mut saw_lost = false;
    loop {
        match within("re-registration", WAIT, reg.next_event()).await {
            Some(RegistrationEvent::Registered { .. }) => {}
            Some(RegistrationEvent::LeaseLost { lease, .. }) => {
                assert_eq!(lease, first);
                saw_lost = true;
            }
            Some(RegistrationEvent::RetryFailed { .. }) => {}
            Some(RegistrationEvent::Reregistered { lease }) => {
                assert!(saw_lost, "[{kind}] re-registered without a loss");
                assert_ne!(lease, first);
                break;
            }
            other => panic!("[{kind}] unexpected {other:?}"),
        }
    }
    let kv = direct.get(reg.key(), None).await.unwrap();
    assert_eq!(kv.kvs()[0].lease, reg.lease_id());
}

fn instance_json(id: usize, generation: usize) -> Vec<u8> {
    let inst = ServiceInstance::new("load", "127.0.0.1:1")
        .with_id(format!("i{id:03}"))
        .with_version(generation.to_string());
    serde_json::to_vec(&inst).unwrap()
}

async fn snapshot_then_watch_has_no_gap_or_duplicate(kind: Kind) {
    const N: usize = 120;
    let server = Server::start(kind).await;
    let client = server.client().await;
    let writer: Client = client.clone();
    // Each instance is added, then updated once; every third is removed.
    let writes = tokio::spawn(async move {
        for i in 0..N {
            let key = format!("kv/services/load/i{i:03}");
            writer
                .put(key.as_str(), instance_json(i, 0), None)
                .await
                .unwrap();
            writer
                .put(key.as_str(), instance_json(i, 1), None)
                .await
                .unwrap();
            if i % 3 == 0 {
                writer.delete(key.as_str(), None).await.unwrap();
            }
        }
    });
    // Subscribe and consume while the writes are under way.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut sub = Registry::new(client.clone())
        .subscribe("load")
        .await
        .unwrap();
    let mut model: HashMap<String, ServiceInstance> = HashMap::new();
    let mut added = HashMap::<String, usize>::new();
    let mut apply = |event: ServiceEvent| match event {
        ServiceEvent::Added(i) => {
            *added.entry(i.id.clone()).or_default() += 1;
            assert!(
                model.insert(i.id.clone(), i).is_none(),
                "[{kind}] added twice"
            );
        }
        ServiceEvent::Updated(i) => {
            let old = model.insert(i.id.clone(), i.clone());
            assert!(
                old.is_some_and(|o| o != i),
                "[{kind}] update of unknown or same"
            );
        }
        ServiceEvent::Removed(i) => {
            assert!(
                model.remove(&i.id).is_some(),
                "[{kind}] removed unknown {}",
                i.id
            );
        }
    };
    let mut writes = writes;
    let mut done_rev = None;
    loop {
        tokio::select! {
            r = &mut writes, if done_rev.is_none() => {
                r.unwrap();
                done_rev = Some(client.get("x", None).await.unwrap().revision());
            }
            e = next_event(&mut sub) => apply(e),
            _ = tokio::time::sleep(Duration::from_millis(100)), if done_rev.is_some() => {
                if done_rev.is_some_and(|r| sub.revision() >= r) {
                    break;
                }
            }
        }
    }
    // Everything up to done_rev is queued by now.
    while let Some(Some(e)) = futures::FutureExt::now_or_never(sub.next()) {
        apply(e);
    }
    let want: BTreeSet<String> = (0..N)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("i{i:03}"))
        .collect();
    assert_eq!(
        model.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "[{kind}]"
    );
    assert!(
        model.values().all(|i| i.version == "1"),
        "[{kind}] a stale version"
    );
    assert_eq!(ids(&sub.current()), want);
    assert!(
        added.values().all(|&n| n == 1),
        "[{kind}] an instance added twice"
    );
}

async fn compaction_during_disconnect_resnapshots(kind: Kind) {
    let server = Server::start(kind).await;
    let direct = server.client().await;
    let proxy = Proxy::start(server.addr()).await;
    let cut = Client::connect(crate::fast_config(proxy.endpoint()))
        .await
        .unwrap();
    let registry = Registry::new(direct.clone()).with_namespace("ns");
    let put = |id: &str| {
        let inst = ServiceInstance::new("svc", "127.0.0.1:1").with_id(id);
        let c = direct.clone();
        let key = format!("ns/services/svc/{id}");
        async move {
            c.put(key, serde_json::to_vec(&inst).unwrap(), PutOptions::new())
                .await
                .unwrap()
        }
    };
    put("a").await;
    put("b").await;
    let mut sub = Registry::new(cut.clone())
        .with_namespace("ns")
        .subscribe("svc")
        .await
        .unwrap();
    assert_eq!(
        ids(&sub.current()),
        ["a".to_string(), "b".to_string()].into()
    );
    let _ = next_event(&mut sub).await;
    let _ = next_event(&mut sub).await;

    proxy.set(Mode::Refuse);
    tokio::time::sleep(Duration::from_millis(300)).await;
    registry.deregister("svc", "a").await.unwrap();
    put("c").await;
    put("d").await;
    registry.deregister("svc", "d").await.unwrap();
    let rev = direct.put("filler", "x", None).await.unwrap().revision();
    direct.compact(rev, true).await.unwrap();
    proxy.set(Mode::Forward);

    let mut names = Vec::new();
    while names.len() < 2 {
        names.push(match next_event(&mut sub).await {
            ServiceEvent::Added(i) => format!("+{}", i.id),
            ServiceEvent::Updated(i) => format!("~{}", i.id),
            ServiceEvent::Removed(i) => format!("-{}", i.id),
        });
    }
    names.sort();
    // A resumed watch would also show +d and -d: only a snapshot skips them.
    assert_eq!(names, ["+c", "-a"], "[{kind}]");
    assert_eq!(
        ids(&sub.current()),
        ["b".to_string(), "c".to_string()].into()
    );
    assert!(sub.revision() >= rev);
}

async fn discover_feeds_a_tower_balancer(kind: Kind) {
    use std::convert::Infallible;
    use tower::{Service, ServiceExt};

    let server = Server::start(kind).await;
    let registry = Registry::new(server.client().await).with_ttl(5);
    let a = registry
        .register(ServiceInstance::new("echo", "127.0.0.1:1").with_id("a"))
        .await
        .unwrap();
    let b = registry
        .register(ServiceInstance::new("echo", "127.0.0.1:2").with_id("b"))
        .await
        .unwrap();
    let sub = registry.subscribe("echo").await.unwrap();
    let discover = sub.into_discover(|inst: &ServiceInstance| {
        let id = inst.id.clone();
        let svc = tower::service_fn(move |_: ()| {
            let id = id.clone();
            async move { Ok::<_, Infallible>(id) }
        });
        tower::load::Constant::new(svc, 0usize)
    });
    let mut balancer = tower::balance::p2c::Balance::new(discover);
    macro_rules! call {
        () => {{
            let svc = within("a ready balancer", WAIT, balancer.ready())
                .await
                .expect("balancer ready");
            svc.call(()).await.expect("call")
        }};
    }
    let first: String = call!();
    assert!(first == "a" || first == "b", "[{kind}] {first}");
    // Critical and closed instances leave the balancer.
    b.set_health(Health::Critical).await.unwrap();
    a.close().await.unwrap();
    let c = registry
        .register(ServiceInstance::new("echo", "127.0.0.1:3").with_id("c"))
        .await
        .unwrap();
    within("the balancer to use only c", WAIT, async {
        loop {
            let mut all_c = true;
            for _ in 0..10 {
                let got: String = call!();
                all_c &= got == "c";
            }
            if all_c {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    drop(c);
}
