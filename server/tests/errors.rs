//! etcd's exact error codes and messages, through etcd-client and through
//! etcdctl, and that failed requests write nothing.

mod common;

use common::*;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, LeaseGrantOptions, PutOptions, Txn,
    TxnOp,
};
use tonic::Code;

const MAX_REQUEST_BYTES: usize = 4096;

async fn start_small(kind: Kind) -> Server {
    Server::start_with(
        kind,
        Options::default().arg("max-request-bytes", MAX_REQUEST_BYTES),
    )
    .await
}

async fn current_rev(c: &mut Client) -> i64 {
    rev(c.get("\0", None).await.unwrap().header())
}

#[tokio::test]
async fn key_value_and_lease_argument_errors() {
    each_kind(|kind| async move {
        let srv = start_small(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        c.put("exists", "v", None).await.unwrap();
        let before = current_rev(&mut c).await;

        const NO_KEY: &str = "etcdserver: key is not provided";
        t.push(expect_grpc_err(
            kind,
            c.put("", "v", None).await,
            Code::InvalidArgument,
            NO_KEY,
        ));
        t.push(expect_grpc_err(
            kind,
            c.get("", None).await,
            Code::InvalidArgument,
            NO_KEY,
        ));
        t.push(expect_grpc_err(
            kind,
            c.delete("", None).await,
            Code::InvalidArgument,
            NO_KEY,
        ));
        t.push(expect_grpc_err(
            kind,
            c.txn(Txn::new().and_then([TxnOp::put("", "v", None)]))
                .await,
            Code::InvalidArgument,
            NO_KEY,
        ));
        t.push(expect_grpc_err(
            kind,
            c.txn(Txn::new().or_else([TxnOp::get("", None)])).await,
            Code::InvalidArgument,
            NO_KEY,
        ));

        // Unknown lease.
        const NO_LEASE: &str = "etcdserver: requested lease not found";
        t.push(expect_grpc_err(
            kind,
            c.put("k", "v", Some(PutOptions::new().with_lease(0x1234)))
                .await,
            Code::NotFound,
            NO_LEASE,
        ));
        t.push(expect_grpc_err(
            kind,
            c.txn(Txn::new().and_then([
                TxnOp::put("k1", "v", None),
                TxnOp::put("k2", "v", Some(PutOptions::new().with_lease(0x1234))),
            ]))
            .await,
            Code::NotFound,
            NO_LEASE,
        ));
        t.push(expect_grpc_err(
            kind,
            c.lease_revoke(0x1234).await,
            Code::NotFound,
            NO_LEASE,
        ));
        let ttl = c.lease_time_to_live(0x1234, None).await.unwrap();
        assert_eq!(
            (ttl.id(), ttl.ttl()),
            (0x1234, -1),
            "[{kind}] time-to-live of unknown lease"
        );

        // ignore_value / ignore_lease on a missing key.
        const NOT_FOUND: &str = "etcdserver: key not found";
        t.push(expect_grpc_err(
            kind,
            c.put("missing", "", Some(PutOptions::new().with_ignore_value()))
                .await,
            Code::InvalidArgument,
            NOT_FOUND,
        ));
        t.push(expect_grpc_err(
            kind,
            c.put("missing", "v", Some(PutOptions::new().with_ignore_lease()))
                .await,
            Code::InvalidArgument,
            NOT_FOUND,
        ));
        t.push(expect_grpc_err(
            kind,
            c.txn(Txn::new().and_then([TxnOp::put(
                "missing",
                "",
                Some(PutOptions::new().with_ignore_value()),
            )]))
            .await,
            Code::InvalidArgument,
            NOT_FOUND,
        ));
        // ignore_value with a value, ignore_lease with a lease.
        t.push(expect_grpc_err(
            kind,
            c.put("exists", "x", Some(PutOptions::new().with_ignore_value()))
                .await,
            Code::InvalidArgument,
            "etcdserver: value is provided",
        ));
        t.push(expect_grpc_err(
            kind,
            c.put(
                "exists",
                "",
                Some(PutOptions::new().with_ignore_lease().with_lease(5)),
            )
            .await,
            Code::InvalidArgument,
            "etcdserver: lease is provided",
        ));

        // Lease errors.
        c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(42)))
            .await
            .unwrap();
        t.push(expect_grpc_err(
            kind,
            c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(42)))
                .await,
            Code::FailedPrecondition,
            "etcdserver: lease already exists",
        ));
        t.push(expect_grpc_err(
            kind,
            c.lease_grant(9_000_000_001, None).await,
            Code::OutOfRange,
            "etcdserver: too large lease TTL",
        ));

        // Nothing was written by any failed request.
        assert_eq!(
            current_rev(&mut c).await,
            before,
            "[{kind}] failed requests wrote something"
        );
        let g = c
            .get("", Some(GetOptions::new().with_all_keys()))
            .await
            .unwrap();
        assert_eq!(
            keys(g.kvs()),
            ["exists"],
            "[{kind}] keys after failed requests"
        );
        t
    })
    .await;
}

#[tokio::test]
async fn txn_limits_and_duplicate_keys() {
    each_kind(|kind| async move {
        let srv = start_small(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        let before = current_rev(&mut c).await;

        const TOO_MANY: &str = "etcdserver: too many operations in txn request";
        let puts = |n: usize| -> Vec<TxnOp> {
            (0..n)
                .map(|i| TxnOp::put(format!("p{i:03}"), "", None))
                .collect()
        };
        t.push(expect_grpc_err(
            kind,
            c.txn(Txn::new().and_then(puts(129))).await,
            Code::InvalidArgument,
            TOO_MANY,
        ));
        t.push(expect_grpc_err(
            kind,
            c.txn(Txn::new().or_else(puts(129))).await,
            Code::InvalidArgument,
            TOO_MANY,
        ));
        let cmps: Vec<Compare> = (0..129)
            .map(|i| Compare::version(format!("c{i:03}"), CompareOp::Equal, 0))
            .collect();
        t.push(expect_grpc_err(
            kind,
            c.txn(Txn::new().when(cmps)).await,
            Code::InvalidArgument,
            TOO_MANY,
        ));
        assert_eq!(
            current_rev(&mut c).await,
            before,
            "[{kind}] rejected txns wrote nothing"
        );
        // Exactly 128 is allowed (in each part).
        let cmps: Vec<Compare> = (0..128)
            .map(|i| Compare::version(format!("c{i:03}"), CompareOp::Equal, 0))
            .collect();
        let r = c
            .txn(Txn::new().when(cmps).and_then(puts(128)).or_else(puts(128)))
            .await
            .unwrap();
        assert!(r.succeeded(), "[{kind}] 128-op txn");
        assert_eq!(rev(r.header()), before + 1);
        let g = c
            .get("p", Some(GetOptions::new().with_prefix().with_count_only()))
            .await
            .unwrap();
        assert_eq!(g.count(), 128);
        let before = rev(r.header());

        const DUP: &str = "etcdserver: duplicate key given in txn request";
        // (name, txn, duplicate?)
        let cases: Vec<(&str, Txn, bool)> = vec![
            (
                "two puts same key",
                Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]),
                true,
            ),
            (
                "put inside a delete range",
                Txn::new().and_then([
                    TxnOp::delete("d", Some(DeleteOptions::new().with_prefix())),
                    TxnOp::put("d1", "2", None),
                ]),
                true,
            ),
            (
                "delete then put same key",
                Txn::new().and_then([TxnOp::delete("d", None), TxnOp::put("d", "2", None)]),
                true,
            ),
            (
                "put in outer and nested txn",
                Txn::new().and_then([
                    TxnOp::put("d", "1", None),
                    TxnOp::txn(Txn::new().and_then([TxnOp::put("d", "2", None)])),
                ]),
                true,
            ),
            (
                "two puts same key in failure branch",
                Txn::new().or_else([TxnOp::put("e", "1", None), TxnOp::put("e", "2", None)]),
                true,
            ),
            (
                "same key in success and failure branches",
                Txn::new()
                    .and_then([TxnOp::put("d", "1", None)])
                    .or_else([TxnOp::put("d", "2", None)]),
                false,
            ),
            (
                "two overlapping deletes",
                Txn::new().and_then([
                    TxnOp::delete("d", Some(DeleteOptions::new().with_prefix())),
                    TxnOp::delete("d1", None),
                ]),
                false,
            ),
            (
                "get and put same key",
                Txn::new().and_then([TxnOp::get("g", None), TxnOp::put("g", "1", None)]),
                false,
            ),
            (
                "put outside the delete range",
                Txn::new().and_then([
                    TxnOp::delete("d", Some(DeleteOptions::new().with_range("e"))),
                    TxnOp::put("e", "1", None),
                ]),
                false,
            ),
        ];
        let mut expected_rev = before;
        for (name, txn, dup) in cases {
            let r = c.txn(txn).await;
            if dup {
                t.push(format!(
                    "{name}: {}",
                    expect_grpc_err(kind, r, Code::InvalidArgument, DUP)
                ));
            } else {
                let r = r.unwrap_or_else(|e| panic!("[{kind}] {name}: unexpected error {e:?}"));
                expected_rev += 1;
                assert_eq!(
                    rev(r.header()),
                    expected_rev,
                    "[{kind}] {name}: one revision"
                );
                t.push(format!("{name}: ok"));
            }
        }
        assert_eq!(
            current_rev(&mut c).await,
            expected_rev,
            "[{kind}] revisions after dup tests"
        );
        t
    })
    .await;
}

#[tokio::test]
async fn request_too_large() {
    each_kind(|kind| async move {
        let srv = start_small(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        let before = current_rev(&mut c).await;
        const TOO_LARGE: &str = "etcdserver: request is too large";

        let big = "x".repeat(8 * 1024);
        t.push(expect_grpc_err(
            kind,
            c.put("big", big.clone(), None).await,
            Code::InvalidArgument,
            TOO_LARGE,
        ));
        // Many small ops adding up to more than the limit.
        let ops: Vec<TxnOp> = (0..8)
            .map(|i| TxnOp::put(format!("t{i}"), "y".repeat(1024), None))
            .collect();
        t.push(expect_grpc_err(
            kind,
            c.txn(Txn::new().and_then(ops)).await,
            Code::InvalidArgument,
            TOO_LARGE,
        ));
        // Nothing was written.
        assert_eq!(
            current_rev(&mut c).await,
            before,
            "[{kind}] too-large requests wrote something"
        );
        let g = c
            .get("", Some(GetOptions::new().with_all_keys()))
            .await
            .unwrap();
        assert_eq!(g.count(), 0, "[{kind}] keys after too-large requests");

        // Below the limit is fine.
        let p = c.put("small", "z".repeat(2048), None).await.unwrap();
        assert_eq!(rev(p.header()), before + 1);
        let g = c.get("small", None).await.unwrap();
        assert_eq!(g.kvs()[0].value().len(), 2048);
        // Reads are not limited by --max-request-bytes on the response side.
        for i in 0..4 {
            c.put(format!("r{i}"), "w".repeat(3000), None)
                .await
                .unwrap();
        }
        let g = c
            .get("r", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        assert_eq!(g.kvs().len(), 4, "[{kind}] 12 KB range response");
        t
    })
    .await;
}

/// Removes the volatile parts of etcdctl's stderr (timestamps, client
/// target ids) so etcd's and kvd's can be compared.
fn mask_etcdctl(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        let mut l = line.to_string();
        for field in ["\"ts\":\"", "\"target\":\""] {
            if let Some(start) = l.find(field) {
                let vstart = start + field.len();
                if let Some(len) = l[vstart..].find('"') {
                    l.replace_range(vstart..vstart + len, "*");
                }
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn errors_through_etcdctl() {
    each_kind(|kind| async move {
        let srv = start_small(kind).await;
        let mut t = Vec::new();
        let big = "x".repeat(8 * 1024);
        let txn_dup = "\nput d 1\nput d 2\n\n\n";
        // (args, stdin, expected exit code, expected last stderr line)
        let cases: Vec<(Vec<&str>, &str, i32, &str)> = vec![
            (
                vec!["put", "", "v"],
                "",
                1,
                "Error: etcdserver: key is not provided",
            ),
            (
                vec!["get", ""],
                "",
                1,
                "Error: etcdserver: key is not provided",
            ),
            (
                vec!["put", "k", "v", "--lease=1234"],
                "",
                1,
                "Error: etcdserver: requested lease not found",
            ),
            (
                vec!["put", "missing", "--ignore-value"],
                "",
                1,
                "Error: etcdserver: key not found",
            ),
            (
                vec!["put", "big", &big],
                "",
                1,
                "Error: etcdserver: request is too large",
            ),
            (
                vec!["txn"],
                txn_dup,
                1,
                "Error: etcdserver: duplicate key given in txn request",
            ),
            (
                vec!["get", "k", "--rev=100"],
                "",
                1,
                "Error: etcdserver: mvcc: required revision is a future revision",
            ),
            (
                vec!["compaction", "100"],
                "",
                1,
                "Error: etcdserver: mvcc: required revision is a future revision",
            ),
            (
                vec!["lease", "revoke", "1234"],
                "",
                1,
                "Error: failed to revoke lease (etcdserver: requested lease not found)",
            ),
        ];
        for (args, input, code, last) in cases {
            let out = srv.etcdctl_stdin(&args, input);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let shown: Vec<String> = args.iter().map(|a| a.chars().take(20).collect()).collect();
            assert_eq!(
                out.status.code(),
                Some(code),
                "[{kind}] etcdctl {shown:?} exit code; stderr: {stderr}"
            );
            assert_eq!(
                stderr.lines().last(),
                Some(last),
                "[{kind}] etcdctl {shown:?} stderr: {stderr}"
            );
            assert_eq!(stdout, "", "[{kind}] etcdctl {shown:?} stdout");
            t.push(format!(
                "{shown:?} -> {:?}\n{}",
                out.status.code(),
                mask_etcdctl(&stderr)
            ));
        }
        // Compaction of an already compacted revision.
        let out = srv.etcdctl(&["put", "a", "1"]);
        assert!(out.status.success());
        let out = srv.etcdctl(&["compaction", "2"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "compacted revision 2\n",
            "[{kind}]"
        );
        let out = srv.etcdctl(&["compaction", "2"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            (out.status.code(), stderr.lines().last()),
            (
                Some(1),
                Some("Error: etcdserver: mvcc: required revision has been compacted")
            ),
            "[{kind}] compaction again: {stderr}"
        );
        t.push(mask_etcdctl(&stderr));
        let out = srv.etcdctl(&["get", "a", "--rev=1"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            (out.status.code(), stderr.lines().last()),
            (
                Some(1),
                Some("Error: etcdserver: mvcc: required revision has been compacted")
            ),
            "[{kind}] get compacted: {stderr}"
        );
        t.push(mask_etcdctl(&stderr));
        t
    })
    .await;
}
