//! The raft log on disk after damage: a torn last record (a crash mid-append)
//! is dropped and kvd starts with everything acknowledged; a corrupt record
//! anywhere else stops kvd with an error naming the file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{kvd_only, Kind, Options, Server};

/// Writes `n` keys through the client and stops the server cleanly.
async fn fill(server: &mut Server, n: usize) {
    let mut c = server.client().await;
    for i in 0..n {
        c.put(format!("k{i:03}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
    assert!(server.stop(), "kvd did not stop on SIGTERM");
}

fn only_segment(data_dir: &Path) -> PathBuf {
    let wal = data_dir.join("member/wal");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&wal)
        .expect("wal dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segs.sort();
    segs.pop().expect("a wal segment")
}

#[tokio::test]
async fn torn_tail_is_dropped_and_data_kept() {
    kvd_only(|| async {
        let mut server = Server::start(Kind::Kvd).await;
        fill(&mut server, 20).await;
        // A crash mid-append leaves half a record: add the start of one.
        let seg = only_segment(server.data_dir());
        let mut bytes = std::fs::read(&seg).expect("read segment");
        bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9]);
        std::fs::write(&seg, &bytes).expect("write segment");
        server.start_again().await;
        let mut c = server.client().await;
        let resp = c
            .get("k", Some(etcd_client::GetOptions::new().with_prefix()))
            .await
            .expect("get");
        assert_eq!(resp.kvs().len(), 20, "every acknowledged put survives");
    })
    .await;
}

#[tokio::test]
async fn corruption_in_the_middle_stops_kvd() {
    kvd_only(|| async {
        let data = tempfile::tempdir().expect("tempdir");
        let dir = data.path().join("data");
        let mut server = Server::start_with(
            Kind::Kvd,
            Options {
                data_dir: Some(dir.clone()),
                ..Options::default()
            },
        )
        .await;
        fill(&mut server, 20).await;
        drop(server);
        let seg = only_segment(&dir);
        let mut bytes = std::fs::read(&seg).expect("read segment");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&seg, &bytes).expect("write segment");

        let mut child = Command::new(Kind::Kvd.binary())
            .arg(format!("--data-dir={}", dir.display()))
            .arg("--listen-client-urls=http://127.0.0.1:0")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn kvd");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kvd kept running on a corrupt log");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let out = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!status.success(), "kvd must refuse a corrupt log");
        assert!(
            stderr.contains(&seg.display().to_string()),
            "the error names the file: {stderr}"
        );
    })
    .await;
}
