//! Registry robustness and filtering: a deleted entry is written back by
//! its live owner; tags, metadata and health filter subscriptions.

use std::collections::BTreeSet;

use kv_client::DeleteOptions;
use kv_discovery::{
    Health, HealthFilter, RegistrationEvent, Registry, ServiceEvent, ServiceFilter,
    ServiceInstance, Subscription,
};

use crate::{Kind, Server, WAIT, on_both, within};

on_both!(
    deleted_entry_is_written_back_on_the_same_lease,
    subscriptions_filter_on_tags_and_metadata,
    subscriptions_filter_on_health,
);

async fn next_event(sub: &mut Subscription) -> ServiceEvent {
    within("a subscription event", WAIT, sub.next_event())
        .await
        .expect("subscription stream ended")
}

fn ids(instances: &[ServiceInstance]) -> BTreeSet<String> {
    instances.iter().map(|i| i.id.clone()).collect()
}

async fn deleted_entry_is_written_back_on_the_same_lease(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let registry = Registry::new(client.clone()).with_ttl(5);
    let mut reg = registry
        .register(ServiceInstance::new("api", "127.0.0.1:9000").with_id("d"))
        .await
        .unwrap();
    let lease = reg.lease_id();
    assert_eq!(
        reg.next_event().await,
        Some(RegistrationEvent::Registered { lease })
    );
    let mut sub = registry.subscribe("api").await.unwrap();
    assert!(matches!(next_event(&mut sub).await, ServiceEvent::Added(_)));

    // Twice: by a plain delete, then through the registry's own call.
    for round in 0..2 {
        if round == 0 {
            let resp = client
                .delete(reg.key(), DeleteOptions::new())
                .await
                .unwrap();
            assert_eq!(resp.deleted(), 1);
        } else {
            assert!(registry.deregister("api", "d").await.unwrap());
        }
        match next_event(&mut sub).await {
            ServiceEvent::Removed(i) => assert_eq!(i.id, "d"),
            other => panic!("[{kind}] unexpected {other:?}"),
        }
        match next_event(&mut sub).await {
            ServiceEvent::Added(i) => assert_eq!(i.id, "d"),
            other => panic!("[{kind}] unexpected {other:?}"),
        }
        // Exactly one event per rewrite, on the same lease.
        let ev = within("Reregistered", WAIT, reg.next_event()).await;
        assert_eq!(
            ev,
            Some(RegistrationEvent::Reregistered { lease }),
            "[{kind}]"
        );
        assert_eq!(reg.lease_id(), lease);
        let kv = client.get(reg.key(), None).await.unwrap();
        assert_eq!(kv.kvs()[0].lease, lease, "[{kind}] rewritten on its lease");
    }
    // A health change now is the next event: no stray rewrite in between.
    reg.set_health(Health::Warning).await.unwrap();
    assert_eq!(
        within("HealthChanged", WAIT, reg.next_event()).await,
        Some(RegistrationEvent::HealthChanged {
            health: Health::Warning
        })
    );
    assert!(matches!(
        next_event(&mut sub).await,
        ServiceEvent::Updated(_)
    ));
    // Closing deletes for good: nothing writes it back.
    reg.close().await.unwrap();
    assert!(matches!(
        next_event(&mut sub).await,
        ServiceEvent::Removed(_)
    ));
    let probe = registry
        .register(ServiceInstance::new("api", "127.0.0.1:9001").with_id("probe"))
        .await
        .unwrap();
    // Events are ordered: the probe's Added comes after any rewrite of "d".
    match next_event(&mut sub).await {
        ServiceEvent::Added(i) => assert_eq!(i.id, "probe", "[{kind}] closed entry came back"),
        other => panic!("[{kind}] unexpected {other:?}"),
    }
    assert_eq!(ids(&sub.current()), BTreeSet::from(["probe".to_string()]));
    probe.close().await.unwrap();
}

async fn subscriptions_filter_on_tags_and_metadata(kind: Kind) {
    let server = Server::start(kind).await;
    let registry = Registry::new(server.client().await).with_ttl(5);
    let v2 = ServiceFilter::new().with_tag("v2");
    let v2_eu = v2.clone().with_metadata("zone", "eu");
    let mut all = registry.subscribe("web").await.unwrap();
    let mut sub_v2 = registry.subscribe_with("web", v2.clone()).await.unwrap();
    let mut sub_v2_eu = registry.subscribe_with("web", v2_eu.clone()).await.unwrap();

    let mk = |id: &str, tags: &[&str], zone: &str| {
        let mut i = ServiceInstance::new("web", "127.0.0.1:80")
            .with_id(id)
            .with_metadata("zone", zone);
        for t in tags {
            i = i.with_tag(*t);
        }
        i
    };
    let _a = registry.register(mk("a", &["v1"], "eu")).await.unwrap();
    let _b = registry
        .register(mk("b", &["v1", "v2"], "us"))
        .await
        .unwrap();
    let _c = registry.register(mk("c", &["v2"], "eu")).await.unwrap();

    let mut seen = BTreeSet::new();
    while seen.len() < 3 {
        if let ServiceEvent::Added(i) = next_event(&mut all).await {
            seen.insert(i.id);
        }
    }
    let mut seen_v2 = BTreeSet::new();
    while seen_v2.len() < 2 {
        match next_event(&mut sub_v2).await {
            ServiceEvent::Added(i) => assert!(seen_v2.insert(i.id.clone()), "{i:?}"),
            other => panic!("[{kind}] unexpected {other:?}"),
        }
    }
    assert_eq!(seen_v2, BTreeSet::from(["b".into(), "c".into()]));
    match next_event(&mut sub_v2_eu).await {
        ServiceEvent::Added(i) => assert_eq!(i.id, "c"),
        other => panic!("[{kind}] unexpected {other:?}"),
    }
    // The filters see the same sets in one read; tags survive the round trip.
    assert_eq!(ids(&registry.list_with("web", &v2).await.unwrap()), seen_v2);
    let listed = registry.list_with("web", &v2_eu).await.unwrap();
    assert_eq!(ids(&listed), BTreeSet::from(["c".into()]));
    assert_eq!(listed[0].tags, ["v2"]);
    assert_eq!(ids(&sub_v2.current()), seen_v2);
    assert_eq!(registry.list("web").await.unwrap().len(), 3);
}

async fn subscriptions_filter_on_health(kind: Kind) {
    let server = Server::start(kind).await;
    let registry = Registry::new(server.client().await).with_ttl(5);
    let health = |h| ServiceFilter::new().with_health(h);
    let mut passing = registry
        .subscribe_with("db", health(HealthFilter::Passing))
        .await
        .unwrap();
    let mut usable = registry
        .subscribe_with("db", health(HealthFilter::PassingOrWarning))
        .await
        .unwrap();
    let reg = registry
        .register(ServiceInstance::new("db", "127.0.0.1:5432").with_id("x"))
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut passing).await,
        ServiceEvent::Added(_)
    ));
    assert!(matches!(
        next_event(&mut usable).await,
        ServiceEvent::Added(_)
    ));

    reg.set_health(Health::Warning).await.unwrap();
    assert!(matches!(
        next_event(&mut passing).await,
        ServiceEvent::Removed(_)
    ));
    match next_event(&mut usable).await {
        ServiceEvent::Updated(i) => assert_eq!(i.health, Health::Warning),
        other => panic!("[{kind}] unexpected {other:?}"),
    }
    reg.set_health(Health::Critical).await.unwrap();
    assert!(matches!(
        next_event(&mut usable).await,
        ServiceEvent::Removed(_)
    ));
    reg.set_health(Health::Passing).await.unwrap();
    for sub in [&mut passing, &mut usable] {
        match next_event(sub).await {
            ServiceEvent::Added(i) => assert_eq!(i.health, Health::Passing),
            other => panic!("[{kind}] unexpected {other:?}"),
        }
    }
    // The passing-only subscriber saw nothing of the warning→critical step.
    assert!(
        passing
            .current()
            .iter()
            .all(|i| i.health == Health::Passing)
    );
}
