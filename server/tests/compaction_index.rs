//! kvd only: a compaction's pass over the in-memory index runs in the
//! background, a few keys per hold of the index lock, after the apply
//! recorded the compaction revision. While the pass is under way (held
//! open by the `compaction-batch` failpoint) and puts go on: reads below the
//! revision fail with etcd's error at once, reads at and above it see what
//! they saw before the compaction, a watch from it replays what it replays
//! once the compaction is done, and HashKV is the one the member reports
//! when everything is deleted. Afterwards every acknowledged put is there.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use etcd_client::{Client, GetOptions, Txn, TxnOp, WatchOptions};
use tonic::Code;

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// Keys compacted: several steps of the index pass (1000 keys each).
const KEYS: usize = 6000;
/// Puts per load txn (below etcd's default --max-txn-ops).
const PER_TXN: usize = 100;
const PUTTERS: usize = 4;
/// The failpoint pausing the background compaction before each step.
const SLOW: &str = "compaction-batch=sleep(1000)";
const KEYS_COMPACTED: &str = "etcd_debugging_mvcc_db_compaction_keys_total";
const FINISHED: &str = "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count";

fn key(k: usize) -> String {
    format!("i/k{k:05}")
}

/// One txn per PER_TXN keys of `keys`: a put of `value`, or a delete where
/// `delete` says so. Returns the revision of the last.
async fn round(
    c: &mut Client,
    keys: impl Iterator<Item = usize>,
    value: &str,
    delete: impl Fn(usize) -> bool,
) -> i64 {
    let keys: Vec<usize> = keys.collect();
    let mut last = 0;
    for chunk in keys.chunks(PER_TXN) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|&k| {
                if delete(k) {
                    TxnOp::delete(key(k), None)
                } else {
                    TxnOp::put(key(k), format!("{value}-{k}"), None)
                }
            })
            .collect();
        let r = c.txn(Txn::new().and_then(ops)).await.expect("load txn");
        last = rev(r.header());
    }
    last
}

/// (key, value, create, mod, version) of every `i/` key at `revision`.
type Kvs = Vec<(String, String, i64, i64, i64)>;

async fn read_at(c: &mut Client, revision: i64) -> Kvs {
    let r = c
        .get(
            "i/",
            Some(GetOptions::new().with_prefix().with_revision(revision)),
        )
        .await
        .unwrap_or_else(|e| panic!("read at {revision}: {e}"));
    r.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
            )
        })
        .collect()
}

/// (type, key, value, mod revision, prev_kv's value and mod revision).
type Ev = (i32, String, String, i64, Option<(String, i64)>);

/// The `i/` events a watch from `from` (with prev_kv) replays up to the
/// put of `end`.
async fn replay(c: &mut Client, from: i64, end: &str) -> Vec<Ev> {
    let mut stream = c
        .watch(
            "i/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(from)
                    .with_prev_key(),
            ),
        )
        .await
        .expect("watch");
    let mut out = Vec::new();
    loop {
        let m = within("watch events", WAIT_TIMEOUT, stream.message())
            .await
            .expect("watch stream")
            .expect("watch stream open");
        assert!(
            !m.canceled(),
            "watch from {from} canceled: {}",
            m.cancel_reason()
        );
        for e in m.events() {
            let kv = e.kv().expect("event kv");
            let k = String::from_utf8_lossy(kv.key()).into_owned();
            let done = k == end;
            out.push((
                e.event_type() as i32,
                k,
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
                e.prev_kv().map(|p| {
                    (
                        String::from_utf8_lossy(p.value()).into_owned(),
                        p.mod_revision(),
                    )
                }),
            ));
            if done {
                return out;
            }
        }
    }
}

/// What reads, a watch and HashKV see around the compaction revision.
#[derive(Debug, PartialEq)]
struct Seen {
    at: Kvs,
    head: Kvs,
    replayed: Vec<Ev>,
    hash: (u32, i64),
}

async fn look(c: &mut Client, compact: i64, head: i64) -> Seen {
    expect_grpc_err(
        Kind::Kvd,
        c.get(
            "i/",
            Some(GetOptions::new().with_prefix().with_revision(compact - 1)),
        )
        .await,
        Code::OutOfRange,
        COMPACTED,
    );
    let h = c.hash_kv(head).await.expect("hash_kv");
    Seen {
        at: read_at(c, compact).await,
        head: read_at(c, head).await,
        replayed: replay(c, compact, "i/end").await,
        hash: (h.hash(), h.compact_version()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_watches_and_hashes_hold_while_the_index_is_compacted() {
    kvd_only(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let failpoints = dir.path().join("failpoints");
        // Read by the kvd this test spawns (the only test in this binary).
        std::env::set_var("KVD_FAILPOINTS_FILE", &failpoints);
        let srv = Server::start_with(Kind::Kvd, Options::default()).await;
        let ep = srv.endpoint();
        let mut c = srv.client().await;

        // Three versions of every key, every fifth deleted in between and
        // every seventh deleted for good; then one key deleted alone: the
        // compaction revision is that tombstone's, which the compaction
        // drops. Then newer versions of the first thousand keys.
        round(&mut c, 0..KEYS, "a", |_| false).await;
        round(&mut c, 0..KEYS, "b", |k| k.is_multiple_of(5)).await;
        round(&mut c, 0..KEYS, "c", |k| {
            k.is_multiple_of(7) && !k.is_multiple_of(5)
        })
        .await;
        let r = c.delete(key(1), None).await.expect("delete");
        let compact = rev(r.header());
        round(&mut c, 0..1000, "d", |k| k.is_multiple_of(7)).await;
        let r = c.put("i/end", "x", None).await.expect("put");
        let head = rev(r.header());
        let at_before = read_at(&mut c, compact).await;
        let head_before = read_at(&mut c, head).await;
        assert!(at_before.len() > KEYS / 2 && head_before.len() > KEYS / 2);

        // Putters overwrite keys the pass has reached and keys it has not
        // (each its own share), and create new ones, all along.
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let mut putters = Vec::new();
        for t in 0..PUTTERS {
            let (stop, acked, mut c) = (stop.clone(), acked.clone(), c.clone());
            putters.push(tokio::spawn(async move {
                let mut last: HashMap<String, (String, i64)> = HashMap::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let k = if i.is_multiple_of(2) {
                        key((t + PUTTERS * i * 37) % KEYS)
                    } else {
                        format!("w/{t}/{i}")
                    };
                    let v = format!("p{t}-{i}");
                    i += 1;
                    // Only acknowledged puts are checked (a put timed out
                    // on a loaded machine may or may not be applied).
                    if let Ok(r) = c.put(k.clone(), v.clone(), None).await {
                        last.insert(k, (v, rev(r.header())));
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
                last
            }));
        }
        wait_until("the first puts", WAIT_TIMEOUT, || {
            let n = acked.load(Ordering::Relaxed);
            async move { (n > 0).then_some(()) }
        })
        .await;

        // Held open: a pause before every step of the index pass (and of
        // the row deletion after it).
        std::fs::write(&failpoints, SLOW).expect("arm");
        let deleted = counter(&ep, KEYS_COMPACTED);
        let finished = counter(&ep, FINISHED);
        c.compact(compact, None).await.expect("compact");
        let acked_at_compact = acked.load(Ordering::Relaxed);
        let during = look(&mut c, compact, head).await;
        // Looked at before any row of the compaction was deleted.
        assert_eq!(
            counter(&ep, KEYS_COMPACTED),
            deleted,
            "rows deleted already"
        );
        assert_eq!(counter(&ep, FINISHED), finished);
        assert_eq!(during.at, at_before, "read at the compaction revision");
        assert_eq!(during.head, head_before, "read above it");
        assert!(
            during.replayed.iter().all(|e| e.3 > compact && e.3 <= head),
            "the tombstone at the compaction revision is replayed: {:?}",
            &during.replayed[..3.min(during.replayed.len())]
        );
        assert_eq!(during.hash.1, compact);
        // Again a few steps later (about one a second), the pass part-way.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let later = look(&mut c, compact, head).await;
        assert_eq!(
            counter(&ep, KEYS_COMPACTED),
            deleted,
            "rows deleted already"
        );
        assert_eq!(later, during, "part-way through the index pass");

        std::fs::remove_file(&failpoints).expect("disarm");
        wait_until("the compaction to finish", Duration::from_secs(60), || {
            let n = counter(&ep, FINISHED);
            async move { (n > finished).then_some(()) }
        })
        .await;
        assert!(
            acked.load(Ordering::Relaxed) > acked_at_compact,
            "no put acknowledged while the compaction ran"
        );
        stop.store(true, Ordering::Relaxed);
        let mut last: HashMap<String, (String, i64)> = HashMap::new();
        for p in putters {
            last.extend(p.await.expect("putter"));
        }
        assert!(counter(&ep, KEYS_COMPACTED) > deleted);

        // Done: the same as during the pass.
        let after = look(&mut c, compact, head).await;
        assert_eq!(after, during);

        // Every acknowledged put is there, as acknowledged.
        let mut now = read_at(&mut c, 0).await;
        let w = c
            .get("w/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("read w/");
        now.extend(w.kvs().iter().map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
            )
        }));
        let now: HashMap<String, (String, i64)> =
            now.into_iter().map(|(k, v, _, m, _)| (k, (v, m))).collect();
        assert!(!last.is_empty());
        for (k, want) in &last {
            assert_eq!(now.get(k), Some(want), "acknowledged put of {k}");
        }
    })
    .await;
}
