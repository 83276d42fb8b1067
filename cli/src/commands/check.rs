//! `check perf [--load=s|m|l|xl] [--prefix=P] [--auto-compact]
//! [--auto-defrag]`: etcdctl's pass/fail write-load check. For 60 seconds
//! a pool of clients puts 256-byte keys with 1 KiB values under the prefix
//! at the load's rate; then the keys are deleted and the throughput, the
//! slowest request and the latencies' standard deviation are judged
//! against etcdctl's bounds. It prints as it goes (a progress bar only
//! when stdout is a terminal, unlike etcdctl).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use kv_client::{Client, DeleteOptions, GetOptions, PutOptions};
use tokio::sync::{mpsc, Mutex};

use crate::exit::{error_text, ExitError, EXIT_ERROR, EXIT_INVALID_INPUT};
use crate::global::GlobalFlags;

/// commands for checking properties of the etcd cluster
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(subcommand)]
    pub command: CheckCommand,
}

/// The check subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum CheckCommand {
    /// Check the performance of the etcd cluster
    Perf(PerfArgs),
    /// Check the memory usage of holding data for different workloads on a given server endpoint.
    Datascale(super::datascale::DatascaleArgs),
}

/// `check perf` flags.
#[derive(Debug, Clone, Args)]
pub struct PerfArgs {
    /// The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the performance check's keys.
    #[arg(long, default_value = "/etcdctl-check-perf/")]
    pub prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long)]
    pub auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long)]
    pub auto_defrag: bool,
    /// Extra arguments, ignored as etcdctl ignores them.
    #[arg(hide = true)]
    pub ignored: Vec<String>,
}

/// A workload: puts per second, concurrent clients, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Puts per second, all clients together.
    pub rate: u32,
    /// Concurrent clients, each with its own connection.
    pub clients: usize,
    /// How long the load runs, in seconds.
    pub seconds: u64,
}

impl PerfArgs {
    /// The workload the `--load` names (etcdctl's table).
    pub fn validate(&self) -> Result<Load, ExitError> {
        let (rate, clients) = match self.load.as_str() {
            "s" | "small" => (150, 50),
            "m" | "medium" => (1000, 200),
            "l" | "large" => (8000, 500),
            "xl" | "xLarge" => (15000, 1000),
            other => {
                return Err(ExitError::bad_feature(format!(
                    "unknown load option {other}"
                )))
            }
        };
        Ok(Load {
            rate,
            clients,
            seconds: 60,
        })
    }
}

/// What the load measured.
#[derive(Debug, Default)]
struct Stats {
    /// Latencies of the successful puts, in seconds.
    ok: Vec<f64>,
    /// Failed puts by error text, in first-seen order.
    errors: Vec<(String, u64)>,
}

/// Runs the check, printing its verdict lines; exits 1 on FAIL.
pub async fn run(global: &GlobalFlags, args: &PerfArgs, load: Load) -> Result<(), ExitError> {
    let mut clients = Vec::with_capacity(load.clients);
    for _ in 0..load.clients {
        clients.push(global.client().await?);
    }
    let first = clients[0].clone();
    let existing = first
        .get(
            args.prefix.clone(),
            GetOptions::new().with_prefix().with_limit(1),
        )
        .await?;
    if !existing.kvs().is_empty() {
        let p = &args.prefix;
        return Err(ExitError::new(
            EXIT_INVALID_INPUT,
            format!("prefix {p:?} has keys. Delete with etcdctl del --prefix {p} first"),
        ));
    }
    let bar = crate::progress::steps(load.seconds, "{pos} / {len} [{bar:40}] {percent}% {eta}");
    let (stats, elapsed) = drive(clients, &args.prefix, load, bar.as_ref()).await;
    if let Some(bar) = bar {
        bar.finish();
    }
    cleanup(&first, global, args).await?;
    report(&stats, elapsed, load)
}

/// Sends puts at the load's rate for its duration to the clients.
async fn drive(
    clients: Vec<Client>,
    prefix: &str,
    load: Load,
    bar: Option<&indicatif::ProgressBar>,
) -> (Stats, Duration) {
    // Bounded by the number of clients, as etcdctl's request channel.
    let (tx, rx) = mpsc::channel::<Vec<u8>>(load.clients);
    let rx = Arc::new(Mutex::new(rx));
    let stats = Arc::new(std::sync::Mutex::new(Stats::default()));
    let start = Instant::now();
    let mut workers = Vec::new();
    for client in clients {
        let (rx, stats) = (rx.clone(), stats.clone());
        workers.push(tokio::spawn(async move {
            let value = vec![0u8; 1024];
            loop {
                let Some(key) = rx.lock().await.recv().await else {
                    return;
                };
                let t = Instant::now();
                let res = client.put(key, value.clone(), PutOptions::new()).await;
                let took = t.elapsed().as_secs_f64();
                let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                match res {
                    Ok(_) => s.ok.push(took),
                    Err(e) => {
                        let text = error_text(&e);
                        match s.errors.iter_mut().find(|(t, _)| *t == text) {
                            Some((_, n)) => *n += 1,
                            None => s.errors.push((text, 1)),
                        }
                    }
                }
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(load.seconds);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(load.rate)));
    let mut second = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = second.tick() => {
                if let Some(bar) = bar {
                    bar.inc(1);
                }
            }
            _ = tick.tick() => {
                // As etcdctl: a 256-byte key, a random varint then zeros.
                let mut key = prefix.as_bytes().to_vec();
                let mut k = [0u8; 256];
                put_varint(&mut k, rand::random::<i64>() & i64::MAX);
                key.extend_from_slice(&k);
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    sent = tx.send(key) => if sent.is_err() { break },
                }
            }
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let elapsed = start.elapsed();
    let stats = std::mem::take(&mut *stats.lock().unwrap_or_else(|p| p.into_inner()));
    (stats, elapsed)
}

/// Go's binary.PutVarint (zig-zag, then 7 bits a byte).
pub(crate) fn put_varint(buf: &mut [u8], x: i64) {
    let mut ux = ((x << 1) ^ (x >> 63)) as u64;
    let mut i = 0;
    while ux >= 0x80 && i < buf.len() {
        buf[i] = (ux as u8) | 0x80;
        ux >>= 7;
        i += 1;
    }
    if i < buf.len() {
        buf[i] = ux as u8;
    }
}

/// Deletes the check's keys, then compacts and defragments if asked.
async fn cleanup(client: &Client, global: &GlobalFlags, args: &PerfArgs) -> Result<(), ExitError> {
    let del = client
        .delete(args.prefix.clone(), DeleteOptions::new().with_prefix())
        .await;
    let rev = match del {
        Ok(r) => r.revision(),
        Err(e) => {
            println!(
                "FAIL: Cleanup failed during key deletion: ERROR({})",
                error_text(&e)
            );
            return Ok(());
        }
    };
    compact_and_defrag(client, global, rev, args.auto_compact, args.auto_defrag).await
}

/// etcdctl's `--auto-compact`/`--auto-defrag` epilogue, shared by `check
/// perf` and `check datascale`: a physical compaction at `rev` and a
/// defragmentation of every endpoint, each announced before and after as
/// etcdctl does (`Compacting with revision N`, `Defragmented "ep"`). The
/// first failure ends the command with `Error: ...`, as in etcdctl.
pub(crate) async fn compact_and_defrag(
    client: &Client,
    global: &GlobalFlags,
    rev: i64,
    compact: bool,
    defrag: bool,
) -> Result<(), ExitError> {
    if compact {
        println!("Compacting with revision {rev}");
        client.compact(rev, true).await?;
        println!("Compacted with revision {rev}");
    }
    if defrag {
        // Defragmentation is per member: each endpoint gets its own client.
        for ep in global.endpoint_list() {
            println!("Defragmenting {ep:?}");
            global.client_for(&ep).await?.defragment().await?;
            println!("Defragmented {ep:?}");
        }
    }
    Ok(())
}

/// Prints etcdctl's verdict lines; FAIL exits 1.
fn report(s: &Stats, elapsed: Duration, load: Load) -> Result<(), ExitError> {
    let mut ok = true;
    if !s.errors.is_empty() {
        println!("FAIL: too many errors");
        for (e, n) in &s.errors {
            println!("FAIL: ERROR({e}) -> {n}");
        }
        ok = false;
    }
    let done = s.ok.len() + s.errors.iter().map(|(_, n)| *n as usize).sum::<usize>();
    let rps = done as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    if rps / f64::from(load.rate) <= 0.9 {
        println!("FAIL: Throughput too low: {} writes/s", rps as i64 + 1);
        ok = false;
    } else {
        println!("PASS: Throughput is {} writes/s", rps as i64 + 1);
    }
    let slowest = s.ok.iter().copied().fold(0.0, f64::max);
    if slowest > 0.5 {
        println!("Slowest request took too long: {slowest:.6}s");
        ok = false;
    } else {
        println!("PASS: Slowest request took {slowest:.6}s");
    }
    let stddev = stddev(&s.ok);
    if stddev > 0.1 {
        println!("Stddev too high: {stddev:.6}s");
        ok = false;
    } else {
        println!("PASS: Stddev is {stddev:.6}s");
    }
    if ok {
        println!("PASS");
        Ok(())
    } else {
        println!("FAIL");
        Err(ExitError::silent(EXIT_ERROR))
    }
}

/// Population standard deviation (0 for no samples).
fn stddev(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_like_go() {
        let mut b = [0u8; 4];
        put_varint(&mut b, 1);
        assert_eq!(b, [2, 0, 0, 0]);
        put_varint(&mut b, 300);
        assert_eq!(b[..2], [0xd8, 0x04]);
    }

    #[test]
    fn stddev_of_samples() {
        assert_eq!(stddev(&[]), 0.0);
        assert!((stddev(&[1.0, 3.0]) - 1.0).abs() < 1e-12);
    }
}
