//! Client traffic and its recorded history: each worker talks to one member
//! through etcd-client (no retries) and records every operation with its
//! invocation and answer times, and every acknowledged write with the
//! revision the server gave it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::launcher::{connect, REQUEST_TIMEOUT};
use crate::linearizable::{Kind, Op};

/// Registers checked for linearizability live under this prefix.
pub const KV_PREFIX: &str = "kv/";
/// How many registers the workers share.
pub const KEYS: usize = 5;
/// Keys written together by a multi-key txn (one revision, two events).
pub const MULTI_KEYS: [&str; 2] = ["multi/a", "multi/b"];
/// Pause between a worker's operations (keeps histories checkable).
const PACE: Duration = Duration::from_millis(10);
/// Pause after a failed request, so a dead member is not hammered.
const BACKOFF: Duration = Duration::from_millis(100);
/// Lease TTL: far longer than any round, so no lease expires by itself.
const LEASE_TTL: i64 = 3600;

/// A write the server acknowledged, with its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The key written.
    pub key: String,
    /// The value put, or None for a delete.
    pub value: Option<String>,
    /// The revision of the write (header revision of the answer).
    pub rev: i64,
    /// Lease the key was put with (0: none).
    pub lease: i64,
}

/// Everything the clients saw during one round.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Operations on the registers, for the linearizability checker.
    pub ops: Vec<Op>,
    /// Acknowledged writes (puts, successful CAS, deletes that deleted,
    /// multi-key txns, leased puts, revokes that deleted keys).
    pub acks: Vec<Ack>,
    /// Keys of leases whose revoke was acknowledged (must be gone).
    pub revoked: Vec<(String, i64)>,
    /// Keys of leases whose revoke outcome is unknown (may or may not exist).
    pub uncertain: Vec<String>,
    /// (header revision, answer time) of every answered register operation:
    /// a write applied at revision r took effect before the first answer
    /// carrying a revision >= r.
    pub answered_at: Vec<(i64, u128)>,
    /// Requests answered, for the report.
    pub answered: usize,
    /// Requests that failed or timed out.
    pub failed: usize,
}

/// Shared recording state of a round.
#[derive(Clone)]
pub struct Recorder {
    t0: Instant,
    history: Arc<Mutex<History>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            t0: Instant::now(),
            history: Arc::new(Mutex::new(History::default())),
        }
    }

    /// Nanoseconds since the round started.
    pub fn now(&self) -> u128 {
        self.t0.elapsed().as_nanos()
    }

    fn with<R>(&self, f: impl FnOnce(&mut History) -> R) -> R {
        let mut h = match self.history.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut h)
    }

    /// Records an acknowledged write.
    pub fn ack(&self, key: &str, value: Option<&str>, rev: i64, lease: i64) {
        self.with(|h| {
            h.acks.push(Ack {
                key: key.to_string(),
                value: value.map(str::to_string),
                rev,
                lease,
            })
        });
    }

    /// Records a register operation; `rev` is the header revision of its
    /// answer (None: no answer).
    fn op(&self, key: &str, kind: Kind, call: u128, rev: Option<i64>) {
        let ret = rev.map(|_| self.now());
        self.with(|h| {
            match (rev, ret) {
                (Some(rev), Some(ret)) => {
                    h.answered += 1;
                    h.answered_at.push((rev, ret));
                }
                _ => h.failed += 1,
            }
            h.ops.push(Op {
                key: key.to_string(),
                kind,
                call,
                ret,
            })
        });
    }

    fn count(&self, answered: bool) {
        self.with(|h| {
            if answered {
                h.answered += 1
            } else {
                h.failed += 1
            }
        });
    }

    /// A copy of what was recorded so far.
    pub fn snapshot(&self) -> History {
        self.with(|h| h.clone())
    }
}

fn rev_of(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map(|h| h.revision()).unwrap_or(0)
}

/// One worker: random operations on the shared registers until `stop`.
pub async fn worker(id: usize, seed: u64, endpoint: String, rec: Recorder, stop: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(id as u64));
    let mut client: Option<Client> = None;
    let mut last_seen: Vec<Option<String>> = vec![None; KEYS];
    let mut leases: Vec<(i64, String)> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let c = match &mut client {
            Some(c) => c,
            None => match connect(&endpoint, REQUEST_TIMEOUT).await {
                Ok(c) => client.insert(c),
                Err(_) => {
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            },
        };
        let k = rng.random_range(0..KEYS);
        let key = format!("{KV_PREFIX}k{k}");
        let value = format!("w{id}-{n}");
        let dice = rng.random_range(0..100);
        let call = rec.now();
        let ok = match dice {
            0..=29 => {
                let r = c.put(key.as_str(), value.as_str(), None).await;
                if let Ok(r) = &r {
                    rec.ack(&key, Some(&value), rev_of(r.header()), 0);
                }
                let rev = r.as_ref().ok().map(|r| rev_of(r.header()));
                rec.op(&key, Kind::Write(value), call, rev);
                r.is_ok()
            }
            30..=59 => match c.get(key.as_str(), None).await {
                Ok(r) => {
                    let v = r
                        .kvs()
                        .first()
                        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
                    last_seen[k] = v.clone();
                    rec.op(&key, Kind::Read(v), call, Some(rev_of(r.header())));
                    true
                }
                // A failed read constrains nothing.
                Err(_) => {
                    rec.count(false);
                    false
                }
            },
            60..=79 => {
                let old = last_seen[k].clone().unwrap_or_default();
                let txn = Txn::new()
                    .when([Compare::value(key.as_str(), CompareOp::Equal, old.as_str())])
                    .and_then([TxnOp::put(key.as_str(), value.as_str(), None)]);
                let r = c.txn(txn).await;
                let ok = r.as_ref().ok().map(|r| r.succeeded());
                if let Ok(r) = &r {
                    if r.succeeded() {
                        rec.ack(&key, Some(&value), rev_of(r.header()), 0);
                    }
                }
                let kind = Kind::Cas {
                    old,
                    new: value,
                    ok,
                };
                let rev = r.as_ref().ok().map(|r| rev_of(r.header()));
                rec.op(&key, kind, call, rev);
                r.is_ok()
            }
            80..=87 => {
                let r = c.delete(key.as_str(), None).await;
                if let Ok(r) = &r {
                    if r.deleted() > 0 {
                        rec.ack(&key, None, rev_of(r.header()), 0);
                    }
                }
                let rev = r.as_ref().ok().map(|r| rev_of(r.header()));
                rec.op(&key, Kind::Delete, call, rev);
                r.is_ok()
            }
            88..=93 => {
                let ops: Vec<TxnOp> = MULTI_KEYS
                    .iter()
                    .map(|k| TxnOp::put(*k, value.as_str(), None))
                    .collect();
                let r = c.txn(Txn::new().and_then(ops)).await;
                if let Ok(r) = &r {
                    for k in MULTI_KEYS {
                        rec.ack(k, Some(&value), rev_of(r.header()), 0);
                    }
                }
                rec.count(r.is_ok());
                r.is_ok()
            }
            _ => lease_op(c, &mut rng, id, n, &mut leases, &rec).await,
        };
        let pause = if ok { PACE } else { BACKOFF };
        tokio::time::sleep(pause).await;
    }
}

/// Grants a lease and puts a key on it, or revokes one of ours.
async fn lease_op(
    c: &mut Client,
    rng: &mut StdRng,
    id: usize,
    n: u64,
    leases: &mut Vec<(i64, String)>,
    rec: &Recorder,
) -> bool {
    if !leases.is_empty() && rng.random_bool(0.5) {
        let (lease, key) = leases.swap_remove(rng.random_range(0..leases.len()));
        let r = c.lease_revoke(lease).await;
        match &r {
            Ok(r) => rec.with(|h| h.revoked.push((key, rev_of(r.header())))),
            Err(_) => rec.with(|h| h.uncertain.push(key)),
        }
        rec.count(r.is_ok());
        return r.is_ok();
    }
    let grant = match c.lease_grant(LEASE_TTL, None).await {
        Ok(g) => g,
        Err(_) => {
            rec.count(false);
            return false;
        }
    };
    rec.count(true);
    let key = format!("lease/w{id}-{n}");
    let opts = PutOptions::new().with_lease(grant.id());
    let r = c.put(key.as_str(), "leased", Some(opts)).await;
    match &r {
        Ok(r) => {
            rec.ack(&key, Some("leased"), rev_of(r.header()), grant.id());
            leases.push((grant.id(), key));
        }
        // Unknown outcome: the key may exist; revoke the lease to settle it.
        Err(_) => leases.push((grant.id(), key)),
    }
    rec.count(r.is_ok());
    r.is_ok()
}

/// How values are compared: short ones verbatim, long ones (the large-value
/// fault) by length and a 64-bit FNV-1a hash, so histories stay small.
pub fn digest(v: &[u8]) -> String {
    if v.len() <= 256 {
        return String::from_utf8_lossy(v).into_owned();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("<{} bytes #{h:016x}>", v.len())
}
