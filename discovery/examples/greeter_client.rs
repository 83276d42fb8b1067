//! Calls the greeter service (`greeter_server`) through a channel that
//! balances over its live instances, found in kv: start and kill servers
//! while it runs and watch the answers move, with no restart.
//!
//! ```sh
//! bash scripts/run-kvd.sh &     # kvd on 127.0.0.1:2379
//! cargo run -p kv-discovery --example greeter_server -- --id a &
//! cargo run -p kv-discovery --example greeter_server -- --id b &
//! cargo run -p kv-discovery --example greeter_client -- --calls 20
//! ```
//!
//! Flags (all optional): `--endpoints 127.0.0.1:2379` (kv, comma-separated),
//! `--service greeter`, `--calls 0` (0: until SIGTERM or Ctrl-C),
//! `--concurrency 1` (callers at once, each with one call in flight),
//! `--interval-ms 200` (pause of each caller between its calls),
//! `--min-instances 1` (connected instances waited for, up to 30 s, before
//! the first call).
//!
//! It prints `ready <n> instances` once connected, then one line per call,
//! `call <n>: answered by <id>` or `call <n>: failed <code> <message>`, and
//! at the end (all calls made, or a signal: the calls in flight finish)
//! `summary ok=<n> failed=<n> by=<id>:<n>,...` (ids sorted).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kv_client::{Client, ClientConfig};
use kv_discovery::grpc::BalancedChannel;
use kv_discovery::{HealthFilter, Registry, ServiceFilter};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long `--min-instances` is waited for.
const READY_WAIT: Duration = Duration::from_secs(30);

/// The value of `--name`, if given.
fn flag(name: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
    }
    None
}

fn flag_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, Error> {
    match flag(name) {
        Some(v) => v
            .parse()
            .map_err(|_| format!("bad value for {name}: {v:?}").into()),
        None => Ok(default),
    }
}

/// What the callers saw.
#[derive(Default)]
struct Tally {
    ok: BTreeMap<String, u64>,
    failed: u64,
}

/// Waits until `min` instances are connected (the registry is read, the
/// connections are made in the background).
async fn wait_ready(channel: &BalancedChannel, min: usize) -> Result<usize, Error> {
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    loop {
        let n = channel.instances().iter().filter(|i| i.connected).count();
        if n >= min {
            return Ok(n);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(
                format!("only {n} of {min} instances connected after {READY_WAIT:?}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One caller: takes call numbers until `calls` (0: no limit) or `stop`.
async fn caller(
    mut greeter: HealthClient<BalancedChannel>,
    next: Arc<AtomicU64>,
    calls: u64,
    stop: Arc<AtomicBool>,
    interval: Duration,
    tally: Arc<Mutex<Tally>>,
) {
    while !stop.load(Ordering::SeqCst) {
        let n = next.fetch_add(1, Ordering::SeqCst) + 1;
        if calls != 0 && n > calls {
            return;
        }
        let req = HealthCheckRequest {
            service: String::new(),
        };
        let result = greeter.check(req).await;
        // The line is printed under the lock: the summary counts exactly
        // the lines printed before it.
        {
            let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(resp) => {
                    let from = resp
                        .metadata()
                        .get("x-instance-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("?")
                        .to_string();
                    println!("call {n}: answered by {from}");
                    *t.ok.entry(from).or_default() += 1;
                }
                Err(status) => {
                    println!("call {n}: failed {:?} {}", status.code(), status.message());
                    t.failed += 1;
                }
            }
        }
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoints = flag("--endpoints").unwrap_or_else(|| "127.0.0.1:2379".into());
    let service = flag("--service").unwrap_or_else(|| "greeter".into());
    let calls: u64 = flag_or("--calls", 0)?;
    let concurrency: usize = flag_or("--concurrency", 1)?;
    let interval = Duration::from_millis(flag_or("--interval-ms", 200)?);
    let min_instances: usize = flag_or("--min-instances", 1)?;
    if concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }

    let client = Client::connect(ClientConfig::new(endpoints.split(','))).await?;
    let registry = Registry::new(client);
    let filter = ServiceFilter::new().with_health(HealthFilter::PassingOrWarning);
    let channel = kv_discovery::grpc::channel(&registry, &service, filter, |ep| {
        ep.timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(1))
    })
    .await?;
    let ready = wait_ready(&channel, min_instances).await?;
    println!("ready {ready} instances");

    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut callers = JoinSet::new();
    for _ in 0..concurrency {
        callers.spawn(caller(
            HealthClient::new(channel.clone()),
            next.clone(),
            calls,
            stop.clone(),
            interval,
            tally.clone(),
        ));
    }
    let mut term = signal(SignalKind::terminate())?;
    let all_done = async { while callers.join_next().await.is_some() {} };
    tokio::select! {
        _ = all_done => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // On a signal: no new calls, the ones in flight finish (bounded by the
    // endpoint's timeout).
    stop.store(true, Ordering::SeqCst);
    while let Some(joined) = callers.join_next().await {
        joined?;
    }

    let t = tally.lock().unwrap_or_else(|p| p.into_inner());
    let by: Vec<String> = t.ok.iter().map(|(id, n)| format!("{id}:{n}")).collect();
    let ok: u64 = t.ok.values().sum();
    println!("summary ok={ok} failed={} by={}", t.failed, by.join(","));
    Ok(())
}
