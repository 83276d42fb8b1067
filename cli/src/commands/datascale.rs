//! `check datascale [--load=s|m|l|xl] [--prefix=P] [--auto-compact]
//! [--auto-defrag]`: etcdctl's memory check. It reads the first endpoint's
//! `process_resident_memory_bytes` from `/metrics`, writes the load's
//! number of 1 KiB key-values (512-byte keys, 512-byte values) from a pool
//! of clients, reads the metric again, deletes the keys and reports the
//! difference. Like `check perf` it prints as it goes, with a progress bar
//! only when stdout is a terminal (etcdctl always draws one).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kv_client::{Client, DeleteOptions, GetOptions, PutOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

use crate::exit::{error_text, ExitError, EXIT_ERROR, EXIT_INVALID_INPUT};
use crate::global::{parse_duration, GlobalFlags};

/// The metric etcdctl reads.
const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";

/// Most bytes read from `/metrics` (kvd's page is a few tens of KiB).
const MAX_METRICS_BYTES: u64 = 16 << 20;

/// `check datascale` flags.
#[derive(Debug, Clone, Args)]
pub struct DatascaleArgs {
    /// The datascale check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the datascale check's keys.
    #[arg(long, default_value = "/etcdctl-check-datascale/")]
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

/// A datascale workload: how many key-values, from how many clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Key-values written.
    pub limit: u64,
    /// Concurrent clients, each with its own connection.
    pub clients: usize,
}

impl DatascaleArgs {
    /// The workload the `--load` names (etcdctl's table).
    pub fn validate(&self) -> Result<Scale, ExitError> {
        let (limit, clients) = match self.load.as_str() {
            "s" | "small" => (10_000, 50),
            "m" | "medium" => (100_000, 200),
            "l" | "large" => (1_000_000, 500),
            "xl" | "xLarge" => (3_000_000, 1000),
            other => {
                return Err(ExitError::bad_feature(format!(
                    "unknown load option {other}"
                )))
            }
        };
        Ok(Scale { limit, clients })
    }
}

/// Runs the check; `FAIL` lines exit 1.
pub async fn run(
    global: &GlobalFlags,
    args: &DatascaleArgs,
    scale: Scale,
) -> Result<(), ExitError> {
    let mut clients = Vec::with_capacity(scale.clients);
    for _ in 0..scale.clients {
        clients.push(global.client().await?);
    }
    let first = clients[0].clone();
    let ep = global.endpoint_list().remove(0);
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
    let timeout = parse_duration("command-timeout", &global.command_timeout)?;
    let before = memory(&ep, timeout).await;
    if before == 0.0 {
        return fail(
            "FAIL: Could not read process_resident_memory_bytes before the put operations.",
        );
    }
    println!(
        "Start data scale check for work load [{} key-value pairs, 1024 bytes per key-value, {} concurrent clients].",
        scale.limit, scale.clients
    );
    let bar = crate::progress::steps(scale.limit, "{pos} / {len} [{bar:40}] {percent}% {eta}");
    let errors = load(clients, &args.prefix, scale, bar.as_ref()).await;
    if let Some(bar) = bar {
        bar.finish();
    }
    let after = memory(&ep, timeout).await;
    if after == 0.0 {
        return fail(
            "FAIL: Could not read process_resident_memory_bytes after the put operations.",
        );
    }
    let rev = first
        .delete(args.prefix.clone(), DeleteOptions::new().with_prefix())
        .await?
        .revision();
    super::check::compact_and_defrag(&first, global, rev, args.auto_compact, args.auto_defrag)
        .await?;
    if !errors.is_empty() {
        println!("FAIL: too many errors");
        for (e, n) in &errors {
            println!("FAIL: ERROR({e}) -> {n}");
        }
        return Err(ExitError::silent(EXIT_ERROR));
    }
    let mb = (after - before) / (1024.0 * 1024.0);
    println!("PASS: Approximate system memory used : {mb:.2} MB.");
    Ok(())
}

fn fail(line: &str) -> Result<(), ExitError> {
    println!("{line}");
    Err(ExitError::silent(EXIT_ERROR))
}

/// Puts `scale.limit` key-values through the clients; returns the failed
/// puts by error text, in first-seen order.
async fn load(
    clients: Vec<Client>,
    prefix: &str,
    scale: Scale,
    bar: Option<&indicatif::ProgressBar>,
) -> Vec<(String, u64)> {
    // Bounded by the number of clients, as etcdctl's request channel.
    let (tx, rx) = mpsc::channel::<Vec<u8>>(scale.clients);
    let rx = Arc::new(Mutex::new(rx));
    let (done_tx, mut done_rx) = mpsc::channel::<Option<String>>(scale.clients);
    let mut workers = Vec::new();
    for client in clients {
        let (rx, done) = (rx.clone(), done_tx.clone());
        workers.push(tokio::spawn(async move {
            let value = vec![0u8; 512];
            loop {
                let Some(key) = rx.lock().await.recv().await else {
                    return;
                };
                let res = client.put(key, value.clone(), PutOptions::new()).await;
                if done.send(res.err().map(|e| error_text(&e))).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(done_tx);
    let prefix = prefix.as_bytes().to_vec();
    let producer = tokio::spawn(async move {
        for _ in 0..scale.limit {
            // As etcdctl: a 512-byte key, a random varint then zeros.
            let mut k = [0u8; 512];
            super::check::put_varint(&mut k, rand::random::<i64>() & i64::MAX);
            let key = [prefix.as_slice(), &k].concat();
            if tx.send(key).await.is_err() {
                return;
            }
        }
    });
    let mut errors: Vec<(String, u64)> = Vec::new();
    while let Some(result) = done_rx.recv().await {
        if let Some(bar) = bar {
            bar.inc(1);
        }
        if let Some(text) = result {
            match errors.iter_mut().find(|(t, _)| *t == text) {
                Some((_, n)) => *n += 1,
                None => errors.push((text, 1)),
            }
        }
    }
    let _ = producer.await;
    for w in workers {
        let _ = w.await;
    }
    errors
}

/// The endpoint's resident memory from its `/metrics` page, or 0 after
/// printing why not (etcdctl's `endpointMemoryMetrics`; plain HTTP, as
/// etcdctl 3.4).
async fn memory(endpoint: &str, timeout: Duration) -> f64 {
    let host = endpoint.strip_prefix("http://").unwrap_or(endpoint);
    let url = format!("http://{host}/metrics");
    let body = match tokio::time::timeout(timeout, fetch(host)).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            println!("fetch error: Get {url:?}: {e}");
            return 0.0;
        }
        Err(_) => {
            println!("fetch error: Get {url:?}: context deadline exceeded");
            return 0.0;
        }
    };
    let Some(value) = body
        .lines()
        .find_map(|l| l.strip_prefix(RESIDENT_MEMORY))
        .map(str::trim)
    else {
        println!("could not find: {RESIDENT_MEMORY}");
        return 0.0;
    };
    match value.parse::<f64>() {
        Ok(v) => v,
        Err(e) => {
            println!("parse error: {e}");
            0.0
        }
    }
}

/// GET /metrics over HTTP/1.0 (so the body is neither chunked nor kept
/// alive), at most [`MAX_METRICS_BYTES`].
async fn fetch(host: &str) -> std::io::Result<String> {
    let mut conn = tokio::net::TcpStream::connect(host).await?;
    let req = format!("GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n");
    conn.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    conn.take(MAX_METRICS_BYTES).read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200") {
        return Err(std::io::Error::other(format!(
            "unexpected status {status:?}"
        )));
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_like_etcdctl() {
        let a = |load: &str| DatascaleArgs {
            load: load.into(),
            prefix: String::new(),
            auto_compact: false,
            auto_defrag: false,
            ignored: vec![],
        };
        assert_eq!(a("small").validate().unwrap().limit, 10_000);
        assert_eq!(a("xl").validate().unwrap().clients, 1000);
        assert!(a("huge").validate().is_err());
    }
}
