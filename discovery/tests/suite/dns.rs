//! The DNS interface against real servers, asked with hickory's DNS client
//! over UDP and TCP while instances come and go.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_server::net::client::{Client as DnsClient, ClientHandle};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::net::tcp::TcpClientStream;
use hickory_server::net::udp::UdpClientStream;
use hickory_server::proto::op::{DnsResponse, ResponseCode};
use hickory_server::proto::rr::{DNSClass, Name, RData, RecordType};
use kv_client::{Client, PutOptions};
use kv_discovery::dns::{DnsOptions, DnsServer};
use kv_discovery::{Health, HealthFilter, Registry, ServiceInstance};

use crate::{Kind, Server, WAIT, on_both};

on_both!(
    dns_answers_follow_instances_coming_and_going,
    dns_tag_filter_and_srv_forms,
    dns_leaves_out_unhealthy_instances,
    dns_names_outside_or_unknown,
    dns_subscriptions_stay_bounded,
    dns_answers_come_in_random_order,
);

/// Sends one question over UDP (or TCP) and returns the whole response.
pub async fn ask(server: SocketAddr, name: &str, rtype: RecordType, tcp: bool) -> DnsResponse {
    let provider = TokioRuntimeProvider::default();
    let name = Name::from_str(name).expect("name");
    let mut client = if tcp {
        let (stream, handle) = TcpClientStream::new(server, None, None, provider);
        let stream = stream.await.expect("dns tcp connect");
        let (client, bg) = DnsClient::<TokioRuntimeProvider>::new(stream, handle);
        tokio::spawn(bg);
        client
    } else {
        let stream = UdpClientStream::builder(server, provider).build();
        let (client, bg) = DnsClient::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(bg);
        client
    };
    client
        .query(name, DNSClass::IN, rtype)
        .await
        .expect("dns query")
}

/// The IPs of the A/AAAA answers.
fn ips(resp: &DnsResponse) -> BTreeSet<IpAddr> {
    resp.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// The (target, port) of the SRV answers.
fn srvs(resp: &DnsResponse) -> BTreeSet<(String, u16)> {
    resp.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.target.to_string(), s.port)),
            _ => None,
        })
        .collect()
}

fn ip_set(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// Asks until `done` holds (the registry reaches the DNS server through a
/// watch), failing after the suite's generous wait.
async fn until(
    dns: SocketAddr,
    name: &str,
    rtype: RecordType,
    what: &str,
    done: impl Fn(&DnsResponse) -> bool,
) -> DnsResponse {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let resp = ask(dns, name, rtype, false).await;
        if done(&resp) {
            return resp;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{name} {rtype}: never {what}; last answer {:?}", *resp);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_dns(client: Client, options: DnsOptions) -> DnsServer {
    DnsServer::bind(client, "127.0.0.1:0".parse().unwrap(), options)
        .await
        .expect("dns bind")
}

async fn dns_answers_follow_instances_coming_and_going(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let registry = Registry::new(client.clone()).with_ttl(5);
    let dns = start_dns(client.clone(), DnsOptions::new()).await;
    let at = dns.local_addr();

    let none = ask(at, "web.service.kv.", RecordType::A, false).await;
    assert_eq!(none.response_code, ResponseCode::NXDomain, "[{kind}]");
    assert!(none.metadata.authoritative);
    assert_eq!(dns.subscriptions(), 1, "the first query subscribes");

    let a = registry
        .register(ServiceInstance::new("web", "127.0.0.1:8080"))
        .await
        .unwrap();
    let b = registry
        .register(ServiceInstance::new("web", "127.0.0.2:8081").with_addr("[::1]:8082"))
        .await
        .unwrap();
    let want = ip_set(&["127.0.0.1", "127.0.0.2"]);
    let resp = until(at, "web.service.kv.", RecordType::A, "both", |r| {
        ips(r) == want
    })
    .await;
    assert_eq!(resp.response_code, ResponseCode::NoError);
    assert!(resp.metadata.authoritative);
    assert!(resp.answers.iter().all(|r| r.ttl == 0), "Consul's TTL 0");
    let v6 = ask(at, "web.service.kv.", RecordType::AAAA, false).await;
    assert_eq!(ips(&v6), ip_set(&["::1"]));

    // SRV: one record per address, targets resolvable, glue attached.
    let srv = ask(at, "web.service.kv.", RecordType::SRV, false).await;
    let want_srv: BTreeSet<(String, u16)> = [
        ("7f000001.addr.kv.".to_string(), 8080),
        ("7f000002.addr.kv.".to_string(), 8081),
        (
            "00000000000000000000000000000001.addr.kv.".to_string(),
            8082,
        ),
    ]
    .into();
    assert_eq!(srvs(&srv), want_srv);
    let glue: BTreeSet<IpAddr> = srv
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    assert_eq!(glue, ip_set(&["127.0.0.1", "127.0.0.2", "::1"]));
    let target = ask(at, "7f000002.addr.kv.", RecordType::A, false).await;
    assert_eq!(ips(&target), ip_set(&["127.0.0.2"]));

    // Random order per answer: over 40 answers both IPs come first.
    let mut firsts = BTreeSet::new();
    for _ in 0..40 {
        let r = ask(at, "web.service.kv.", RecordType::A, false).await;
        if let Some(RData::A(a)) = r.answers.first().map(|r| &r.data) {
            firsts.insert(a.0);
        }
    }
    assert_eq!(firsts.len(), 2, "answers are shuffled: {firsts:?}");

    // TCP gives the same answer.
    let tcp = ask(at, "web.service.kv.", RecordType::A, true).await;
    assert_eq!(ips(&tcp), want);

    // Deregistered: gone.
    a.close().await.unwrap();
    until(at, "web.service.kv.", RecordType::A, "without a", |r| {
        ips(r) == ip_set(&["127.0.0.2"])
    })
    .await;

    // Killed: an instance whose owner stopped renewing disappears when
    // its lease expires (written as the registry would, on a 1 s lease).
    let lease = client.lease_grant(1).await.unwrap().id();
    let dead = ServiceInstance::new("web", "127.0.0.3:8083").with_id("dead");
    client
        .put(
            registry.instance_key("web", "dead"),
            serde_json::to_vec(&dead).unwrap(),
            PutOptions::new().with_lease(lease),
        )
        .await
        .unwrap();
    until(
        at,
        "web.service.kv.",
        RecordType::A,
        "with the doomed one",
        |r| ips(r).contains(&"127.0.0.3".parse::<IpAddr>().unwrap()),
    )
    .await;
    until(
        at,
        "web.service.kv.",
        RecordType::A,
        "without the dead one",
        |r| ips(r) == ip_set(&["127.0.0.2"]),
    )
    .await;

    b.close().await.unwrap();
    until(at, "web.service.kv.", RecordType::A, "NXDOMAIN", |r| {
        r.response_code == ResponseCode::NXDomain
    })
    .await;
    dns.shutdown().await.unwrap();
}

async fn dns_tag_filter_and_srv_forms(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let registry = Registry::new(client.clone()).with_ttl(5);
    let dns = start_dns(
        client,
        DnsOptions::new().with_domain("disco.test").with_ttl(3),
    )
    .await;
    let at = dns.local_addr();
    let _v1 = registry
        .register(ServiceInstance::new("api", "127.0.1.1:7001").with_tag("v1"))
        .await
        .unwrap();
    let _v2 = registry
        .register(
            ServiceInstance::new("api", "127.0.1.2:7002")
                .with_tag("V2")
                .with_tag("eu"),
        )
        .await
        .unwrap();
    let _host = registry
        .register(ServiceInstance::new("api", "db.example.internal:7003").with_tag("v2"))
        .await
        .unwrap();
    until(
        at,
        "api.service.disco.test.",
        RecordType::SRV,
        "all three",
        |r| srvs(r).len() == 3,
    )
    .await;

    let v2 = ask(at, "v2.api.service.disco.test.", RecordType::A, false).await;
    assert_eq!(
        ips(&v2),
        ip_set(&["127.0.1.2"]),
        "[{kind}] tags ignore case"
    );
    assert!(v2.answers.iter().all(|r| r.ttl == 3), "the configured TTL");
    let srv = ask(at, "_api._v2.service.disco.test.", RecordType::SRV, false).await;
    let want: BTreeSet<(String, u16)> = [
        ("7f000102.addr.disco.test.".to_string(), 7002),
        ("db.example.internal.".to_string(), 7003),
    ]
    .into();
    assert_eq!(srvs(&srv), want, "a hostname is the SRV target itself");
    let any = ask(at, "_api._tcp.service.disco.test.", RecordType::SRV, false).await;
    assert_eq!(srvs(&any).len(), 3, "_tcp means any tag");
    // Case of the question does not matter (0x20 resolvers).
    let eu = ask(at, "EU.Api.Service.DISCO.test.", RecordType::A, false).await;
    assert_eq!(ips(&eu), ip_set(&["127.0.1.2"]));

    let none = ask(at, "v3.api.service.disco.test.", RecordType::A, false).await;
    assert_eq!(
        none.response_code,
        ResponseCode::NXDomain,
        "no instance has v3"
    );
    // A type the instances have no data of: NOERROR, no answer, SOA.
    let txt = ask(at, "api.service.disco.test.", RecordType::TXT, false).await;
    assert_eq!(txt.response_code, ResponseCode::NoError);
    assert!(txt.answers.is_empty());
    assert!(
        txt.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA)
    );
    // The default domain is not served when another is configured.
    let other = ask(at, "api.service.kv.", RecordType::A, false).await;
    assert_eq!(other.response_code, ResponseCode::Refused);
    dns.shutdown().await.unwrap();
}

async fn dns_leaves_out_unhealthy_instances(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let registry = Registry::new(client.clone()).with_ttl(5);
    let dns = start_dns(client.clone(), DnsOptions::new()).await;
    let strict = start_dns(client, DnsOptions::new().with_health(HealthFilter::Passing)).await;
    let ok = registry
        .register(ServiceInstance::new("db", "127.0.2.1:5432"))
        .await
        .unwrap();
    let warn = registry
        .register(ServiceInstance::new("db", "127.0.2.2:5432").with_health(Health::Warning))
        .await
        .unwrap();
    let _bad = registry
        .register(ServiceInstance::new("db", "127.0.2.3:5432").with_health(Health::Critical))
        .await
        .unwrap();
    // Passing and warning, as Consul answers by default.
    until(
        dns.local_addr(),
        "db.service.kv.",
        RecordType::A,
        "healthy ones",
        |r| ips(r) == ip_set(&["127.0.2.1", "127.0.2.2"]),
    )
    .await;
    let only_passing = ask(strict.local_addr(), "db.service.kv.", RecordType::A, false).await;
    assert_eq!(ips(&only_passing), ip_set(&["127.0.2.1"]), "[{kind}]");

    warn.set_health(Health::Critical).await.unwrap();
    until(
        dns.local_addr(),
        "db.service.kv.",
        RecordType::A,
        "without the failed",
        |r| ips(r) == ip_set(&["127.0.2.1"]),
    )
    .await;
    ok.set_health(Health::Critical).await.unwrap();
    let gone = until(
        dns.local_addr(),
        "db.service.kv.",
        RecordType::SRV,
        "NXDOMAIN",
        |r| r.response_code == ResponseCode::NXDomain,
    )
    .await;
    assert!(gone.answers.is_empty());
    warn.set_health(Health::Passing).await.unwrap();
    until(
        dns.local_addr(),
        "db.service.kv.",
        RecordType::A,
        "recovered",
        |r| ips(r) == ip_set(&["127.0.2.2"]),
    )
    .await;
}

async fn dns_names_outside_or_unknown(kind: Kind) {
    let server = Server::start(kind).await;
    let dns = start_dns(server.client().await, DnsOptions::new()).await;
    let at = dns.local_addr();
    for name in [
        "kv.",
        "service.kv.",
        "x.node.kv.",
        "a.b.c.service.kv.",
        "zz.addr.kv.",
    ] {
        let r = ask(at, name, RecordType::A, false).await;
        let want = if name == "kv." {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        assert_eq!(r.response_code, want, "[{kind}] {name}");
        assert!(r.metadata.authoritative, "{name}");
        assert!(r.answers.is_empty(), "{name}");
        // Negative answers carry the SOA (its minimum: the TTL, 0).
        let soa = r.authorities.iter().find_map(|rec| match &rec.data {
            RData::SOA(s) => Some(s.minimum),
            _ => None,
        });
        assert_eq!(soa, Some(0), "{name}");
    }
    let soa = ask(at, "kv.", RecordType::SOA, true).await;
    assert_eq!(soa.answers.len(), 1);
    for name in ["example.com.", "kv.example.com.", "."] {
        let r = ask(at, name, RecordType::A, false).await;
        assert_eq!(r.response_code, ResponseCode::Refused, "{name}");
        assert!(!r.metadata.recursion_available);
    }
    // Invalid names cost nothing: no subscription for them.
    assert_eq!(dns.subscriptions(), 0);
}

async fn dns_subscriptions_stay_bounded(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let registry = Registry::new(client.clone()).with_ttl(5);
    let options = DnsOptions::new()
        .with_max_subscriptions(4)
        .with_idle_timeout(Duration::from_millis(300));
    let dns = start_dns(client, options).await;
    let at = dns.local_addr();
    let _reg = registry
        .register(ServiceInstance::new("real", "127.0.3.1:1"))
        .await
        .unwrap();
    until(at, "real.service.kv.", RecordType::A, "the instance", |r| {
        ips(r) == ip_set(&["127.0.3.1"])
    })
    .await;
    // A client asking for many random names holds at most 4 subscriptions,
    // and the real service still answers between them.
    for i in 0..40 {
        let r = ask(at, &format!("random{i}.service.kv."), RecordType::A, false).await;
        assert_eq!(r.response_code, ResponseCode::NXDomain, "[{kind}]");
        assert!(dns.subscriptions() <= 4, "{} held", dns.subscriptions());
        if i % 10 == 0 {
            let real = ask(at, "real.service.kv.", RecordType::A, false).await;
            assert_eq!(ips(&real), ip_set(&["127.0.3.1"]));
        }
    }
    // Unused ones are dropped.
    let deadline = tokio::time::Instant::now() + WAIT;
    while dns.subscriptions() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} idle subscriptions never dropped",
            dns.subscriptions()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And come back on demand.
    let real = ask(at, "real.service.kv.", RecordType::A, false).await;
    assert_eq!(ips(&real), ip_set(&["127.0.3.1"]));
}

/// "Random order for balancing": with three instances, every one of them
/// comes first in some A answer and in some SRV answer.
///
/// A correct shuffle puts each of the 3 records first with probability 1/3
/// per answer, independently. One given record never first in N answers:
/// (2/3)^N; any of the three (union bound): 3 * (2/3)^N. N = 60 gives
/// 3 * (2/3)^60 < 1e-10 per record type, so this fails spuriously with
/// probability below 1e-9 (even "the first record differs at least once",
/// the weaker claim, fails at 3 * (1/3)^60). Without shuffling the first
/// record is always the same and it fails every time.
async fn dns_answers_come_in_random_order(kind: Kind) {
    const N: usize = 60;
    let server = Server::start(kind).await;
    let client = server.client().await;
    let registry = Registry::new(client.clone()).with_ttl(5);
    let dns = start_dns(client, DnsOptions::new()).await;
    let at = dns.local_addr();
    let mut regs = Vec::new();
    for i in 1..=3 {
        let inst = ServiceInstance::new("lb", format!("127.0.5.{i}:900{i}"));
        regs.push(registry.register(inst).await.unwrap());
    }
    let all = ip_set(&["127.0.5.1", "127.0.5.2", "127.0.5.3"]);
    until(at, "lb.service.kv.", RecordType::A, "all three", |r| {
        ips(r) == all
    })
    .await;
    until(at, "lb.service.kv.", RecordType::SRV, "all three", |r| {
        srvs(r).len() == 3
    })
    .await;

    let mut first_a = BTreeSet::new();
    let mut first_srv = BTreeSet::new();
    for _ in 0..N {
        let a = ask(at, "lb.service.kv.", RecordType::A, false).await;
        assert_eq!(ips(&a), all, "[{kind}] every answer holds all three");
        if let Some(RData::A(rec)) = a.answers.first().map(|r| &r.data) {
            first_a.insert(IpAddr::V4(rec.0));
        }
        let srv = ask(at, "lb.service.kv.", RecordType::SRV, false).await;
        assert_eq!(srvs(&srv).len(), 3, "[{kind}]");
        if let Some(RData::SRV(rec)) = srv.answers.first().map(|r| &r.data) {
            first_srv.insert(rec.port);
        }
    }
    assert_eq!(first_a, all, "[{kind}] A answers are not shuffled");
    assert_eq!(
        first_srv,
        [9001, 9002, 9003].into(),
        "[{kind}] SRV answers are not shuffled"
    );
    for r in regs {
        r.close().await.unwrap();
    }
    dns.shutdown().await.unwrap();
}
