//! Defragment while a Maintenance.Snapshot export is in flight (issue 9):
//! redb refuses to compact under a live read transaction, so a defragment
//! overlapping an export used to fail. etcd's defrag works during a
//! snapshot; kvd's now waits for the export's read and then compacts.

mod common;

use std::time::Duration;

use common::{kvd_only, wait_until, within, Kind, Options, Server};
use sha2::{Digest, Sha256};

/// The failpoint (kvd's `failpoints` builds) that holds an export, with its
/// read transaction open, while the named file exists.
const PAUSE_ENV: &str = "KVD_FAILPOINT_EXPORT_PAUSE";

/// Values written before the export: 4 MiB.
const VALUES: usize = 64;
const VALUE_BYTES: usize = 64 << 10;

#[tokio::test]
async fn defragment_waits_for_a_snapshot_export_and_succeeds() {
    kvd_only(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let pause = dir.path().join("pause-export");
        let reached = dir.path().join("pause-export.reached");
        // Read by the kvd this test spawns (the only test in this binary).
        std::env::set_var(PAUSE_ENV, &pause);
        let srv = Server::start_with(Kind::Kvd, Options::default()).await;
        let mut c = srv.client().await;
        for n in 0..VALUES {
            c.put(format!("v{n:02}"), vec![n as u8; VALUE_BYTES], None)
                .await
                .expect("put");
        }
        // Garbage for the defragment to reclaim.
        c.delete("v0", Some(etcd_client::DeleteOptions::new().with_prefix()))
            .await
            .expect("delete");
        for n in 0..VALUES {
            c.put(format!("w{n:02}"), vec![n as u8; VALUE_BYTES], None)
                .await
                .expect("put");
        }

        std::fs::write(&pause, b"").expect("arm the export pause");
        let mut exporter = c.clone();
        let export = tokio::spawn(async move {
            let mut stream = exporter.snapshot().await.expect("snapshot");
            let mut bytes = Vec::new();
            while let Some(m) = stream.message().await.expect("snapshot message") {
                bytes.extend_from_slice(m.blob());
                // A slow reader.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            bytes
        });
        wait_until("the export holds its read", Duration::from_secs(30), || {
            let hit = reached.exists();
            async move { hit.then_some(()) }
        })
        .await;

        let mut defragger = c.clone();
        let defrag = tokio::spawn(async move { defragger.defragment().await });
        // While the export reads, the defragment waits for it: it neither
        // fails nor compacts under the read.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !defrag.is_finished(),
            "defragment returned while an export was reading: {:?}",
            defrag.await
        );
        std::fs::remove_file(&pause).expect("release the export");

        let done = within("defragment", Duration::from_secs(30), defrag)
            .await
            .expect("defragment task");
        assert!(done.is_ok(), "defragment failed: {done:?}");
        let bytes = within("export", Duration::from_secs(30), export)
            .await
            .expect("export task");

        // The stream is a whole etcd snapshot: a bbolt file of whole pages
        // (etcdctl's check) whose SHA-256 trailer matches, with every value.
        assert!(bytes.len() > VALUES * VALUE_BYTES, "{} bytes", bytes.len());
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        assert_eq!(body.len() % 512, 0, "body of whole pages");
        assert_eq!(
            Sha256::digest(body).as_slice(),
            digest,
            "sha256 trailer matches"
        );
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), &bytes).expect("write snapshot");
        let snap = kv_etcdsnap::Snapshot::open(file.path()).expect("an etcd snapshot");
        let rows = snap.rows().expect("rows").count();
        assert!(rows >= VALUES, "{rows} rows");

        // The store is whole and serving after the defragment.
        let got = c.get("w42", None).await.expect("get");
        assert_eq!(got.kvs()[0].value(), vec![42u8; VALUE_BYTES].as_slice());
        c.put("after", "defrag", None).await.expect("put after");
        c.defragment().await.expect("a second defragment");
    })
    .await;
}
