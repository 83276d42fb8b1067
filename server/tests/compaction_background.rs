//! kvd only: compaction deletes its rows in the background, in batches.
//! Writes are acknowledged while a large compaction's rows are deleted; a
//! physical compaction answers once they are gone; a member killed in the
//! middle of the deletion finishes it after a restart, and the members'
//! HashKV agrees whatever point each member's deletion reached.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::cluster::Cluster;
use common::*;
use etcd_client::{Client, CompactionOptions, GetOptions, Txn, TxnOp};
use redb::ReadableDatabase;
use tonic::Code;

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// Keys overwritten again and again (etcd's default --max-txn-ops: one txn
/// writes each once).
const KEYS: usize = 128;
/// Txns of KEYS puts: about 200k revisions (rows) in all.
const ROUNDS: usize = 1600;
/// Concurrent loaders.
const LOADERS: usize = 8;

/// The two tests are heavy (four servers, 200k revisions each): one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn key(k: usize) -> String {
    format!("bg/{k:03}")
}

/// Writes ROUNDS txns, each putting every key once; returns the last revision.
async fn load(c: &Client) -> i64 {
    let mut tasks = Vec::new();
    for t in 0..LOADERS {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            for round in (t..ROUNDS).step_by(LOADERS) {
                let ops: Vec<TxnOp> = (0..KEYS)
                    .map(|k| TxnOp::put(key(k), format!("{round}"), None))
                    .collect();
                // A busy machine may time a txn out: retry (an applied
                // repeat only adds rows, which the callers count from the
                // head revision).
                let mut tries = 0;
                let r = loop {
                    match c.txn(Txn::new().and_then(ops.clone())).await {
                        Ok(r) => break r,
                        Err(e) if tries < 5 => {
                            tries += 1;
                            eprintln!("load txn failed ({e}); retrying");
                        }
                        Err(e) => panic!("load txn: {e}"),
                    }
                };
                last = last.max(rev(r.header()));
            }
            last
        }));
    }
    let mut head = 0;
    for t in tasks {
        head = head.max(t.await.expect("loader"));
    }
    head
}

/// Rows in a (stopped) member's backend at or below `rev`, and its stored
/// compaction revision.
fn rows_at_or_below(db: &Path, rev: i64) -> (u64, i64) {
    let db = redb::Database::open(db).expect("open the member's db");
    let rtx = db.begin_read().expect("read");
    let kv = rtx.open_table(kvd::storage::schema::KV).expect("kv table");
    let end = ((rev as u64 as u128) + 1) << 64;
    let rows = kv.range(..end).expect("range").count() as u64;
    let meta = rtx.open_table(kvd::storage::schema::META).expect("meta");
    let compact = meta
        .get(kvd::storage::schema::META_COMPACT)
        .expect("meta get")
        .map(|g| i64::from_le_bytes(g.value().try_into().expect("8 bytes")))
        .unwrap_or(-1);
    (rows, compact)
}

const KEYS_COMPACTED: &str = "etcd_debugging_mvcc_db_compaction_keys_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_are_acknowledged_while_a_large_compaction_deletes_its_rows() {
    let _serial = SERIAL.lock().await;
    let srv = Server::start(Kvd).await;
    let c = srv.client().await;
    let head = within("loading", Duration::from_secs(300), load(&c)).await;
    // Every revision since the first (2) is one txn of KEYS puts.
    let rows = ((head - 1) as usize * KEYS) as f64;
    let want = c
        .clone()
        .get(
            "bg/",
            Some(GetOptions::new().with_prefix().with_revision(head)),
        )
        .await
        .expect("range at head");
    assert_eq!(want.kvs().len(), KEYS);

    // A writer putting one key after the other, counting acknowledgements.
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (acked, stop, mut c) = (acked.clone(), stop.clone(), c.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Only acknowledgements count; a put timed out by a
                // stalled server is one that was not acknowledged.
                if c.put("bg/writer", i.to_string(), None).await.is_ok() {
                    i += 1;
                    acked.store(i, Ordering::Relaxed);
                }
            }
        })
    };
    wait_until("the writer's first put", WAIT_TIMEOUT, || {
        let n = acked.load(Ordering::Relaxed);
        async move { (n > 0).then_some(()) }
    })
    .await;

    let before = counter(&srv.endpoint(), KEYS_COMPACTED);
    let at_start = acked.load(Ordering::Relaxed);
    let mut cc = c.clone();
    within(
        "the physical compaction",
        Duration::from_secs(300),
        cc.compact(head, Some(CompactionOptions::new().with_physical())),
    )
    .await
    .expect("compact");
    let during = acked.load(Ordering::Relaxed) - at_start;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");

    // Physical: every dropped row is deleted by the time it answers (all
    // but the newest put of each key; the writer's key is above `head`).
    let removed = counter(&srv.endpoint(), KEYS_COMPACTED) - before;
    assert_eq!(
        removed,
        rows - KEYS as f64,
        "rows deleted when physical compaction answered"
    );
    // One apply transaction over all rows would let at most the put in
    // flight through; batches let the writer go on.
    assert!(
        during >= 10,
        "only {during} puts were acknowledged while {removed} rows were deleted"
    );

    // Reads at the compaction revision are whole.
    let mut c = c;
    let got = c
        .get(
            "bg/",
            Some(GetOptions::new().with_prefix().with_revision(head)),
        )
        .await
        .expect("read at the compaction revision");
    assert_eq!(kv_pairs(got.kvs()), kv_pairs(want.kvs()));
    expect_grpc_err(
        Kvd,
        c.get(key(7), Some(GetOptions::new().with_revision(head - 1)))
            .await,
        Code::OutOfRange,
        COMPACTED,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_killed_mid_compaction_finishes_it_and_hashes_agree() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let victim = (leader + 1) % 3;
    let c = cluster.client(leader).await;
    let head = within("loading", Duration::from_secs(300), load(&c)).await;
    // Values at the compaction revision, to compare after the restart.
    let mut lc = c.clone();
    let want = lc
        .get(
            "bg/",
            Some(GetOptions::new().with_prefix().with_revision(head)),
        )
        .await
        .expect("range at head");
    assert_eq!(want.kvs().len(), KEYS);

    // Compacted through the victim (answered once it applied it there),
    // then killed while its background deletion runs.
    let mut vc = cluster.client(victim).await;
    wait_until("the victim has applied the load", WAIT_TIMEOUT, || {
        let mut vc = vc.clone();
        async move {
            let r = vc
                .get(
                    "bg/",
                    Some(
                        GetOptions::new()
                            .with_serializable()
                            .with_prefix()
                            .with_count_only(),
                    ),
                )
                .await
                .ok()?;
            (rev(r.header()) >= head).then_some(())
        }
    })
    .await;
    vc.compact(head, None).await.expect("compact");
    // A follower's answer comes from the leader: wait until the victim
    // applied it too (its own reads below it fail).
    wait_until("the victim applied the compaction", WAIT_TIMEOUT, || {
        let mut vc = vc.clone();
        async move {
            let r = vc
                .get(
                    key(0),
                    Some(
                        GetOptions::new()
                            .with_serializable()
                            .with_revision(head - 1),
                    ),
                )
                .await;
            r.is_err().then_some(())
        }
    })
    .await;
    cluster.kill9(victim);

    let db = cluster
        .dir
        .path()
        .join(format!("n{}", victim + 1))
        .join("member/db");
    let (left, compact) = rows_at_or_below(&db, head);
    assert_eq!(
        compact, head,
        "the compaction revision is durable before its rows go"
    );
    assert!(
        left > KEYS as u64,
        "killed after the deletion finished ({left} rows left): not mid-compaction"
    );

    cluster.spawn(victim);
    cluster.wait_ready(victim).await;
    let mut vc = cluster.client(victim).await;
    // Reads at the compaction revision are whole; below it, compacted.
    let got = vc
        .get(
            "bg/",
            Some(
                GetOptions::new()
                    .with_serializable()
                    .with_prefix()
                    .with_revision(head),
            ),
        )
        .await
        .expect("read at the compaction revision");
    assert_eq!(kv_pairs(got.kvs()), kv_pairs(want.kvs()));
    expect_grpc_err(
        Kvd,
        vc.get(
            key(3),
            Some(
                GetOptions::new()
                    .with_serializable()
                    .with_revision(head - 1),
            ),
        )
        .await,
        Code::OutOfRange,
        COMPACTED,
    );

    // HashKV agrees whatever each member's deletion reached: at once, and
    // once the victim's restarted compactor is done.
    let hashes = |cluster: &Cluster| {
        let eps: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
        async move {
            let mut out = Vec::new();
            for ep in eps {
                let mut m = Client::connect([ep], None).await.expect("connect");
                let h = m.hash_kv(head).await.expect("hash_kv");
                out.push((h.hash(), h.compact_version()));
            }
            out
        }
    };
    let first = hashes(&cluster).await;
    assert!(
        first.iter().all(|h| *h == first[0]),
        "hash_kv differs: {first:?}"
    );
    assert_eq!(first[0].1, head);

    // The restarted member deletes exactly the rows the crash left.
    let ep = cluster.endpoint(victim);
    let expect = (left - KEYS as u64) as f64;
    wait_until(
        "the restarted member's deletion",
        Duration::from_secs(120),
        || {
            let n = counter(&ep, KEYS_COMPACTED);
            async move { (n >= expect).then_some(n) }
        },
    )
    .await;
    assert_eq!(counter(&ep, KEYS_COMPACTED), expect);
    let last = hashes(&cluster).await;
    assert_eq!(last, first, "hash_kv after the deletion finished");

    // And it is on disk: the last batch of a compaction is durable.
    cluster.kill9(victim);
    let (left, _) = rows_at_or_below(&db, head);
    assert_eq!(
        left, KEYS as u64,
        "rows at or below the compaction revision"
    );
}
