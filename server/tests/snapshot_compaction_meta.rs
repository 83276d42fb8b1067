//! kvd only: a snapshot (Maintenance.Snapshot, etcd's format) taken while a
//! compaction's rows are still being deleted in the background records it
//! as etcd does: scheduled at the compaction revision, finished below it, so
//! etcd (or a restore) compacts again when it opens the file instead of
//! keeping the rows left in it forever. Once the rows are gone, both agree.

mod common;

use std::time::Duration;

use common::{kvd_only, Kind, Options, Server};
use etcd_client::{Client, CompactionOptions, Txn, TxnOp};

/// Keys overwritten in every txn (below etcd's default --max-txn-ops).
const KEYS: usize = 100;
/// Txns of KEYS puts: ~10k revisions, ten compaction batches.
const ROUNDS: usize = 100;

async fn snapshot_meta(
    c: &mut Client,
    dir: &std::path::Path,
    name: &str,
) -> (Option<i64>, Option<i64>) {
    let mut stream = c.snapshot().await.expect("snapshot");
    let mut bytes = Vec::new();
    while let Some(m) = stream.message().await.expect("snapshot message") {
        bytes.extend_from_slice(m.blob());
    }
    let path = dir.join(name);
    std::fs::write(&path, &bytes).expect("write the snapshot");
    let snap = kv_etcdsnap::Snapshot::open(&path).expect("open the snapshot");
    let meta = snap.meta().expect("snapshot meta");
    (meta.scheduled_compact_rev, meta.finished_compact_rev)
}

#[tokio::test]
async fn snapshot_during_background_compaction_records_it_unfinished() {
    kvd_only(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let failpoints = dir.path().join("failpoints");
        // Read by the kvd this test spawns (the only test in this binary).
        std::env::set_var("KVD_FAILPOINTS_FILE", &failpoints);
        let srv = Server::start_with(Kind::Kvd, Options::default()).await;
        let mut c = srv.client().await;
        for round in 0..ROUNDS {
            let ops: Vec<TxnOp> = (0..KEYS)
                .map(|k| TxnOp::put(format!("k{k:03}"), format!("{round}"), None))
                .collect();
            c.txn(Txn::new().and_then(ops)).await.expect("txn");
        }
        let head = c
            .get("k000", None)
            .await
            .expect("get")
            .header()
            .unwrap()
            .revision();

        // One batch per second from now on: the compaction stays unfinished
        // for ~10 s, far longer than the export below takes.
        std::fs::write(&failpoints, "compaction-batch=sleep(1000)").expect("arm");
        c.compact(head, None).await.expect("compact");
        let (scheduled, finished) = snapshot_meta(&mut c, dir.path(), "during.db").await;
        assert_eq!(scheduled, Some(head), "scheduled compaction revision");
        assert!(
            finished.is_none_or(|f| f < head),
            "a compaction whose rows are not deleted yet was recorded finished at {finished:?} \
             (scheduled {head})"
        );

        // Let it run; a physical compaction answers once its rows (and the
        // earlier compaction's, deleted first) are gone.
        std::fs::remove_file(&failpoints).expect("disarm");
        c.put("one-more", "x", None).await.expect("put");
        let head2 = head + 1;
        tokio::time::timeout(
            Duration::from_secs(120),
            c.compact(head2, Some(CompactionOptions::new().with_physical())),
        )
        .await
        .expect("physical compaction in time")
        .expect("physical compaction");
        let (scheduled, finished) = snapshot_meta(&mut c, dir.path(), "after.db").await;
        assert_eq!((scheduled, finished), (Some(head2), Some(head2)));
    })
    .await;
}
