//! The DNS interface asked with BIND's `dig`, when installed (Debian's
//! `dnsutils`); skipped with a printed reason otherwise.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use kv_discovery::dns::{DnsOptions, DnsServer};
use kv_discovery::{Registry, ServiceInstance};

use crate::{Kind, Server, WAIT, on_both};

on_both!(dig_sees_instances_come_and_go);

/// `dig` with `args` against `at`; `None` when dig is not installed.
async fn dig(at: SocketAddr, args: &[&str]) -> Option<String> {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", at.ip()))
        .arg("-p")
        .arg(at.port().to_string())
        .args(["+time=5", "+tries=1"])
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("dig task");
    match out {
        Ok(out) => {
            assert!(out.status.success(), "dig failed: {out:?}");
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run dig: {e}"),
    }
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs dig until its `+short` output is `want`.
async fn until_short(at: SocketAddr, name: &str, rtype: &str, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let out = dig(at, &["+short", name, rtype]).await.unwrap_or_default();
        if lines(&out) == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dig {name} {rtype}: want {want:?}, last {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn dig_sees_instances_come_and_go(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    let dns = DnsServer::bind(
        client.clone(),
        "127.0.0.1:0".parse().unwrap(),
        DnsOptions::new(),
    )
    .await
    .unwrap();
    let at = dns.local_addr();
    let Some(status) = dig(at, &["+noall", "+comments", "nope.service.kv", "A"]).await else {
        eprintln!(
            "SKIPPED [{kind}] dig_sees_instances_come_and_go: dig is not installed (apt-get install dnsutils)"
        );
        return;
    };
    assert!(status.contains("status: NXDOMAIN"), "[{kind}] {status}");
    assert!(status.contains(" aa"), "authoritative: {status}");
    let refused = dig(at, &["+noall", "+comments", "example.com", "A"])
        .await
        .unwrap();
    assert!(refused.contains("status: REFUSED"), "{refused}");

    let registry = Registry::new(client).with_ttl(5);
    let a = registry
        .register(ServiceInstance::new("web", "127.0.4.1:8080").with_tag("blue"))
        .await
        .unwrap();
    let b = registry
        .register(ServiceInstance::new("web", "127.0.4.2:9090"))
        .await
        .unwrap();
    until_short(at, "web.service.kv", "A", &["127.0.4.1", "127.0.4.2"]).await;
    until_short(
        at,
        "web.service.kv",
        "SRV",
        &["1 1 8080 7f000401.addr.kv.", "1 1 9090 7f000402.addr.kv."],
    )
    .await;
    until_short(at, "blue.web.service.kv", "A", &["127.0.4.1"]).await;
    // Over TCP too.
    let tcp = dig(at, &["+tcp", "+short", "_web._blue.service.kv", "SRV"])
        .await
        .unwrap();
    assert_eq!(lines(&tcp), lines("1 1 8080 7f000401.addr.kv."));

    a.close().await.unwrap();
    until_short(at, "web.service.kv", "A", &["127.0.4.2"]).await;
    b.close().await.unwrap();
    until_short(at, "web.service.kv", "A", &[]).await;
    let gone = dig(at, &["+noall", "+comments", "web.service.kv", "A"])
        .await
        .unwrap();
    assert!(gone.contains("status: NXDOMAIN"), "{gone}");
    dns.shutdown().await.unwrap();
}
