//! The closed-loop driver: each logical client is a tokio task that issues
//! one request, waits for its answer, records the latency and goes again,
//! until the shared op budget or the deadline runs out.

use crate::pool::{self, Keys, Pool};
use crate::stats::{self, TxnStats};
use anyhow::{anyhow, Result};
use etcd_client::{Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When a run stops: after `total` operations, at `duration`, or whichever
/// comes first when both are set.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub total: Option<u64>,
    pub duration: Option<Duration>,
}

/// What one logical client does per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Range {
        serializable: bool,
    },
    /// Compare-and-put: put if the key's mod_revision is what this client last
    /// saw, otherwise read the key to learn its current mod_revision.
    Txn,
    /// A put whose value carries the send time, for the watch workload.
    StampedPut {
        start: Instant,
    },
}

pub struct Worker {
    kv: KvClient,
    rng: StdRng,
    keys: Keys,
    val_size: usize,
    value: Vec<u8>,
    op: Op,
    /// Txn: the mod_revision this client last saw per key index.
    known: HashMap<u64, i64>,
    /// `(id, clients)`: pick only the keys `idx % clients == id`, so this
    /// client is their only writer (see [`Worker::own_keys`]).
    owned: Option<(u64, u64)>,
    txn: TxnStats,
}

impl Worker {
    pub fn new(pool: &Pool, id: usize, seed: u64, keys: Keys, val_size: usize, op: Op) -> Self {
        Self {
            kv: pool.for_client(id).kv_client(),
            rng: StdRng::seed_from_u64(seed.wrapping_add(id as u64)),
            keys,
            val_size,
            value: pool::value(val_size),
            op,
            known: HashMap::new(),
            owned: None,
            txn: TxnStats::default(),
        }
    }

    /// Restricts this worker (number `id` of `clients`) to its own share of
    /// the key space, when that share is not empty.
    pub fn own_keys(mut self, id: usize, clients: usize) -> Self {
        let (id, clients) = (id as u64, clients as u64);
        if clients > 0 && id < self.keys.space {
            self.owned = Some((id, clients));
        }
        self
    }

    fn pick(&mut self) -> u64 {
        pick_key(&mut self.rng, self.keys.space, self.owned)
    }

    async fn step(&mut self) -> Result<()> {
        let idx = self.pick();
        let key = self.keys.key(idx);
        match self.op {
            Op::Put => {
                self.kv.put(key, self.value.clone(), None).await?;
            }
            Op::StampedPut { start } => {
                let stamp = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let v = pool::stamped_value(self.val_size, stamp);
                self.kv.put(key, v, None).await?;
            }
            Op::Range { serializable } => {
                let opts = serializable.then(|| GetOptions::new().with_serializable());
                self.kv.get(key, opts).await?;
            }
            Op::Txn => self.compare_and_put(idx, key).await?,
        }
        Ok(())
    }

    async fn compare_and_put(&mut self, idx: u64, key: Vec<u8>) -> Result<()> {
        let seen = self.known.get(&idx).copied().unwrap_or(0);
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, seen)])
            .and_then([TxnOp::put(key.clone(), self.value.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.kv.txn(txn).await?;
        if resp.succeeded() {
            let rev = resp
                .header()
                .map(|h| h.revision())
                .ok_or_else(|| anyhow!("txn response without header"))?;
            self.known.insert(idx, rev);
            self.txn.succeeded += 1;
        } else {
            let mut current = 0;
            for r in resp.op_responses() {
                if let TxnOpResponse::Get(g) = r {
                    current = g.kvs().first().map_or(0, |kv| kv.mod_revision());
                }
            }
            self.known.insert(idx, current);
            self.txn.failed += 1;
        }
        Ok(())
    }
}

/// A uniformly random key index below `space`; with `owned = (id, clients)`
/// (and `id < space`), only among the indexes `idx % clients == id`.
fn pick_key(rng: &mut StdRng, space: u64, owned: Option<(u64, u64)>) -> u64 {
    match owned {
        Some((id, clients)) => {
            let count = (space - id).div_ceil(clients);
            id + clients * rng.random_range(0..count)
        }
        None => rng.random_range(0..space),
    }
}

/// What the driver measured.
pub struct Outcome {
    pub hist: Histogram<u64>,
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub txn: TxnStats,
}

struct TaskResult {
    hist: Histogram<u64>,
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    txn: TxnStats,
}

/// Runs all workers concurrently until the limit, and merges their numbers.
pub async fn drive(workers: Vec<Worker>, limit: Limit) -> Result<Outcome> {
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = limit.duration.map(|d| start + d);
    let mut tasks = Vec::with_capacity(workers.len());
    for mut w in workers {
        let issued = issued.clone();
        let total = limit.total;
        tasks.push(tokio::spawn(async move {
            let mut res = TaskResult {
                hist: stats::new_histogram(),
                ops: 0,
                errors: 0,
                first_error: None,
                txn: TxnStats::default(),
            };
            loop {
                if let Some(total) = total {
                    if issued.fetch_add(1, Ordering::Relaxed) >= total {
                        break;
                    }
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let t = Instant::now();
                match w.step().await {
                    Ok(()) => {
                        stats::record(&mut res.hist, t.elapsed());
                        res.ops += 1;
                    }
                    Err(e) => {
                        res.errors += 1;
                        res.first_error.get_or_insert_with(|| format!("{e:#}"));
                        // Don't spin on a dead server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            res.txn = w.txn;
            res
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
        let r = t.await.map_err(|e| anyhow!("client task failed: {e}"))?;
        out.hist
            .add(&r.hist)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
        out.ops += r.ops;
        out.errors += r.errors;
        out.txn.succeeded += r.txn.succeeded;
        out.txn.failed += r.txn.failed;
        if out.first_error.is_none() {
            out.first_error = r.first_error;
        }
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

/// Writes every key of `keys` once (not timed), split among `clients`
/// concurrent tasks, so reads find data.
pub async fn prefill(pool: &Pool, clients: usize, keys: Keys, val_size: usize) -> Result<()> {
    let clients = clients.max(1);
    let value = pool::value(val_size);
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let mut kv = pool.for_client(c).kv_client();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut idx = c as u64;
            while idx < keys.space {
                kv.put(keys.key(idx), value.clone(), None).await?;
                idx += clients as u64;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| anyhow!("prefill task failed: {e}"))??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_keys_stay_in_their_share() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let idx = pick_key(&mut rng, 100, Some((3, 64)));
            assert!(idx < 100 && idx % 64 == 3, "{idx}");
            seen.insert(idx);
        }
        // 3 and 67 are the only keys of client 3 of 64 below 100.
        assert_eq!(seen.len(), 2);
        for _ in 0..2000 {
            assert!(pick_key(&mut rng, 10, None) < 10);
        }
    }
}
