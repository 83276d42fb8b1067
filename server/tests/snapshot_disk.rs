//! A raft snapshot is no copy of the store: after snapshots the data dir
//! holds the store once (member/snap keeps no export), the log before the
//! snapshot is gone, and a restart serves every write.

mod common;

use std::path::Path;

use common::*;

const VALUES: usize = 120;
const VALUE_BYTES: usize = 64 * 1024;

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_keep_no_second_copy_of_the_store() {
    let opts = Options {
        extra_args: vec!["--snapshot-count=10".into()],
        ..Options::default()
    };
    let mut srv = Server::start_with(Kind::Kvd, opts).await;
    let mut c = srv.client().await;
    for n in 0..VALUES {
        let value: Vec<u8> = (0..VALUE_BYTES).map(|i| (i * 7 + n) as u8).collect();
        c.put(format!("k{n:03}"), value, None).await.expect("put");
    }
    wait_until("a snapshot is saved", WAIT_TIMEOUT, || {
        let log = srv.log_tail(100_000);
        async move { log.contains("saved snapshot").then_some(()) }
    })
    .await;
    let snap = srv.data_dir().join("member/snap");
    let written = (VALUES * VALUE_BYTES) as u64;
    // Before: every snapshot left an export of the whole store here.
    assert!(
        dir_bytes(&snap) < written / 4,
        "member/snap holds {} bytes after {written} bytes were written",
        dir_bytes(&snap)
    );
    srv.restart().await;
    let mut c = srv.client().await;
    let count = c
        .get(
            "k",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .expect("count");
    assert_eq!(
        count.count(),
        VALUES as i64,
        "every write served after restart"
    );
    for n in 0..VALUES {
        let want: Vec<u8> = (0..VALUE_BYTES).map(|i| (i * 7 + n) as u8).collect();
        let got = c.get(format!("k{n:03}"), None).await.expect("get");
        assert!(
            got.kvs().first().map(|kv| kv.value()) == Some(want.as_slice()),
            "value of k{n:03}"
        );
    }
}
