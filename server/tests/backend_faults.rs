//! kvd only: a failed backend (redb) commit (issue 9, item 8).
//!
//! etcd treats a failed bolt commit as fatal ("failed to commit tx"): the
//! member stops rather than serve a state that differs from its disk. kvd
//! does the same: with the `backend-commit` failpoint armed (ENOSPC, then
//! EIO), the next applied batch fails to commit, kvd logs the cause and
//! exits non-zero without a panic; restarted without the failpoint it
//! re-applies from the raft log, and every acknowledged write is there while
//! each unacknowledged transaction is there whole or not at all.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use etcd_client::{GetOptions, Txn, TxnOp};

/// The variable naming kvd's file of disk failpoints (re-read at every use).
const FAILPOINTS_FILE_ENV: &str = "KVD_FAILPOINTS_FILE";
/// Keys written by each transaction (all-or-nothing is checked on them).
const KEYS_PER_TXN: [&str; 3] = ["a", "b", "c"];
/// Transactions acknowledged before the failpoint is armed.
const BEFORE: usize = 40;
/// Attempts after arming; the first must already fail.
const AFTER: usize = 20;

/// One transaction's keys and value.
fn txn_keys(round: usize, i: usize) -> Vec<String> {
    KEYS_PER_TXN
        .iter()
        .map(|k| format!("bf/{round}/{i:04}/{k}"))
        .collect()
}

/// Puts one transaction's keys at once; whether it was acknowledged.
async fn write_txn(c: &mut etcd_client::Client, round: usize, i: usize) -> Result<(), String> {
    let value = format!("value-{round}-{i}");
    let ops: Vec<TxnOp> = txn_keys(round, i)
        .into_iter()
        .map(|k| TxnOp::put(k, value.clone(), None))
        .collect();
    let txn = c.txn(Txn::new().and_then(ops));
    match tokio::time::timeout(Duration::from_secs(10), txn).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("txn timed out".into()),
    }
}

#[tokio::test]
async fn failed_backend_commit_stops_kvd_and_loses_no_acknowledged_write() {
    kvd_only(|| async {
        // kvd inherits this test process's environment. This file holds the
        // only test of the binary, so setting the variable cannot race.
        let fp_dir = tempfile::Builder::new()
            .prefix("kvtest-backend-failpoints-")
            .tempdir()
            .unwrap();
        let fp_file: PathBuf = fp_dir.path().join("failpoints");
        std::env::set_var(FAILPOINTS_FILE_ENV, &fp_file);

        let mut server = Server::start(Kvd).await;
        for (round, (action, cause)) in [
            ("enospc", "No space left on device"),
            ("eio", "Input/output error"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut c = server.client().await;
            for i in 0..BEFORE {
                write_txn(&mut c, round, i)
                    .await
                    .unwrap_or_else(|e| panic!("write {i} before the fault: {e}"));
            }
            let log_before = server.log_tail(100_000).len();
            std::fs::write(&fp_file, format!("backend-commit={action}")).unwrap();
            let mut attempted = BEFORE;
            let mut first_error = None;
            for i in BEFORE..BEFORE + AFTER {
                attempted = i + 1;
                if let Err(e) = write_txn(&mut c, round, i).await {
                    first_error = Some(e);
                    break;
                }
            }
            let first_error = first_error.unwrap_or_else(|| {
                panic!("{AFTER} writes acknowledged with backend-commit={action} armed")
            });
            assert_eq!(
                attempted,
                BEFORE + 1,
                "a write was acknowledged after the failpoint was armed"
            );
            eprintln!("backend-commit={action}: the write failed with: {first_error}");

            let status = server
                .wait_exit(Duration::from_secs(30))
                .unwrap_or_else(|| {
                    panic!(
                        "kvd kept running after a failed backend commit ({action}); log:\n{}",
                        server.log_tail(40)
                    )
                });
            assert!(!status.success(), "exit status {status}");
            let full = server.log_tail(100_000);
            let log = full.get(log_before..).unwrap_or(&full);
            assert!(log.contains("fatal storage error"), "{log}");
            assert!(log.contains(cause), "the log must name {cause:?}:\n{log}");
            assert!(!log.contains("panicked"), "{log}");

            // Restart without the failpoint: the raft log is re-applied.
            std::fs::remove_file(&fp_file).unwrap();
            server.start_again().await;
            let mut c = server.client().await;
            let r = c
                .get(
                    format!("bf/{round}/"),
                    Some(GetOptions::new().with_prefix()),
                )
                .await
                .expect("range after restart");
            let got: std::collections::HashMap<String, String> =
                kv_pairs(r.kvs()).into_iter().collect();
            for i in 0..attempted {
                let want = format!("value-{round}-{i}");
                let present: Vec<bool> = txn_keys(round, i)
                    .iter()
                    .map(|k| {
                        let v = got.get(k);
                        assert!(v.is_none_or(|v| *v == want), "{k} = {v:?}, want {want}");
                        v.is_some()
                    })
                    .collect();
                if i < BEFORE {
                    assert!(
                        present.iter().all(|p| *p),
                        "acknowledged txn {i} lost: {present:?}"
                    );
                } else {
                    assert!(
                        present.iter().all(|p| *p) || present.iter().all(|p| !*p),
                        "unacknowledged txn {i} half applied: {present:?}"
                    );
                }
            }
            assert!(
                got.len() <= attempted * KEYS_PER_TXN.len(),
                "keys nobody wrote: {got:?}"
            );
        }
        assert!(!server.log_tail(100_000).contains("panicked"));
    })
    .await;
}
