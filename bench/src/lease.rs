//! The lease-keepalive workload: L leases are granted and each gets its own
//! LeaseKeepAlive stream (etcd-client binds a keep-alive stream to one lease),
//! spread over the connections. C closed-loop clients then each cycle through
//! their share of the leases: send a keep-alive on the lease's stream, wait
//! for its response, record the round trip. Ops are keep-alive responses.

use crate::driver::{Limit, Outcome};
use crate::pool::Pool;
use crate::stats::{self, TxnStats};
use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time to live of the granted leases: far longer than any run's pauses, so
/// a lease cannot expire between two of its keep-alives.
const TTL_SECS: i64 = 300;

struct Lease {
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
}

/// Grants `leases` leases and opens their keep-alive streams (untimed).
async fn open(pool: &Pool, leases: usize, clients: usize) -> Result<Vec<Vec<Lease>>> {
    let clients = clients.min(leases).max(1);
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let pool_conns: Vec<_> = (c..leases)
            .step_by(clients)
            .map(|i| pool.for_client(i).lease_client())
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(pool_conns.len());
            for mut lc in pool_conns {
                let id = lc.grant(TTL_SECS, None).await.context("LeaseGrant")?.id();
                let (keeper, stream) = lc.keep_alive(id).await.context("LeaseKeepAlive")?;
                mine.push(Lease { keeper, stream });
            }
            anyhow::Ok(mine)
        }));
    }
    let mut out = Vec::with_capacity(clients);
    for t in tasks {
        out.push(
            t.await
                .map_err(|e| anyhow!("lease set-up task failed: {e}"))??,
        );
    }
    Ok(out)
}

/// One keep-alive round trip on `lease`; an answer with TTL <= 0 means the
/// server lost the lease, which is an error.
async fn keep_alive(lease: &mut Lease) -> Result<()> {
    lease.keeper.keep_alive().await?;
    match lease.stream.message().await? {
        Some(resp) if resp.ttl() > 0 => Ok(()),
        Some(resp) => bail!("lease {:x} expired (ttl {})", resp.id(), resp.ttl()),
        None => bail!("keep-alive stream closed by the server"),
    }
}

/// Sets up the leases, then runs; `on_start` is called right before the
/// timed phase (the server CPU meter starts there).
pub async fn run<F>(
    pool: &Pool,
    leases: usize,
    clients: usize,
    timeout: Duration,
    limit: Limit,
    on_start: F,
) -> Result<Outcome>
where
    F: FnOnce() -> Result<()>,
{
    if leases == 0 {
        bail!("--leases must be at least 1");
    }
    let t = Instant::now();
    let sets = open(pool, leases, clients).await?;
    eprintln!(
        "granted {leases} leases with a keep-alive stream each in {:.2}s",
        t.elapsed().as_secs_f64()
    );
    on_start()?;
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = limit.duration.map(|d| start + d);
    let mut tasks = Vec::with_capacity(sets.len());
    for mut set in sets {
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = stats::new_histogram();
            let (mut ops, mut errors, mut first_error) = (0u64, 0u64, None);
            let mut i = 0;
            loop {
                if limit
                    .total
                    .is_some_and(|n| issued.fetch_add(1, Ordering::Relaxed) >= n)
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    break;
                }
                let n = set.len();
                let lease = &mut set[i % n];
                i += 1;
                let t = Instant::now();
                // A stream stuck on a dead server must not hang the run.
                match tokio::time::timeout(timeout, keep_alive(lease)).await {
                    Ok(Ok(())) => {
                        stats::record(&mut hist, t.elapsed());
                        ops += 1;
                    }
                    Ok(Err(e)) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(_) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| "keep-alive timed out".to_string());
                    }
                }
            }
            (hist, ops, errors, first_error)
        }));
    }
    let mut out = Outcome {
        hist: stats::new_histogram(),
        ops: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        txn: TxnStats::default(),
    };
    for t in tasks {
        let (hist, ops, errors, first_error) = t
            .await
            .map_err(|e| anyhow!("keep-alive task failed: {e}"))?;
        out.hist
            .add(&hist)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
        out.ops += ops;
        out.errors += errors;
        if out.first_error.is_none() {
            out.first_error = first_error;
        }
    }
    out.elapsed = start.elapsed();
    Ok(out)
}
