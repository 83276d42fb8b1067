//! Typed errors from both servers, and requests that must fail in time.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kv_client::{Client, Error, GetOptions, PutOptions, RetryPolicy, Txn, TxnOp, WatchOptions};

use crate::proxy::{Mode, Proxy};
use crate::{Kind, Server, WAIT, fast_config, on_both, within};

on_both!(
    typed_errors,
    stopped_server_fails_in_time,
    blackholed_server_times_out,
    unsent_write_is_retried_until_the_server_is_back,
);

async fn typed_errors(kind: Kind) {
    let server = Server::start(kind).await;
    let c = server.client().await;

    let r1 = c.put("k", "1", None).await.unwrap().revision();
    c.put("k", "2", None).await.unwrap();
    let r3 = c.put("k", "3", None).await.unwrap().revision();
    c.compact(r3, true).await.unwrap();

    let old = c.get("k", GetOptions::new().with_revision(r1)).await;
    let err = old.unwrap_err();
    assert_eq!(
        err,
        Error::Compacted {
            compact_revision: None
        }
    );
    assert_eq!(err.stable_code(), "compacted");

    // A watch from a compacted revision fails the same way (at creation or
    // as the stream's first item, depending on the server).
    let opts = WatchOptions::new().with_start_revision(r1);
    let watched = match c.watch("k", opts).await {
        Ok(mut stream) => within("the watch error", WAIT, stream.next()).await,
        Err(e) => Some(Err(e)),
    };
    match watched {
        Some(Err(Error::Compacted { compact_revision })) => {
            assert_eq!(compact_revision, Some(r3))
        }
        other => panic!("expected Compacted, got {other:?}"),
    }

    let future = c.get("k", GetOptions::new().with_revision(r3 + 100)).await;
    assert_eq!(future.unwrap_err(), Error::FutureRevision);

    let dup = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    assert_eq!(c.txn(dup).await.unwrap_err(), Error::DuplicateKey);

    assert_eq!(
        c.lease_revoke(0x1234).await.unwrap_err(),
        Error::LeaseNotFound
    );
    let missing_lease = c.put("l", "v", PutOptions::new().with_lease(0x1234)).await;
    assert_eq!(missing_lease.unwrap_err(), Error::LeaseNotFound);

    let ignore = c
        .put("absent", "", PutOptions::new().with_ignore_value())
        .await;
    assert_eq!(ignore.unwrap_err(), Error::KeyNotFound);

    let empty = c.put("", "v", None).await.unwrap_err();
    assert!(matches!(empty, Error::InvalidArgument(_)), "{empty:?}");
}

/// Reads and writes to a server that is gone fail (`Unavailable`) within
/// the request timeout instead of hanging.
async fn stopped_server_fails_in_time(kind: Kind) {
    let mut server = Server::start(kind).await;
    let c = server.client().await;
    c.put("k", "v", None).await.unwrap();
    server.kill9();

    let limit = c.config().request_timeout() + Duration::from_secs(1);
    let started = Instant::now();
    let read = c.get("k", None).await.unwrap_err();
    assert!(
        started.elapsed() < limit,
        "read took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(read, Error::Unavailable { .. } | Error::Timeout),
        "{read:?}"
    );

    let started = Instant::now();
    let write = c.put("k", "v2", None).await.unwrap_err();
    assert!(
        started.elapsed() < limit,
        "write took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(write, Error::Unavailable { .. } | Error::Timeout),
        "{write:?}"
    );

    // A fresh client to the dead endpoint fails the same way.
    let fresh = Client::connect(fast_config(server.endpoint()))
        .await
        .unwrap();
    let started = Instant::now();
    let err = fresh.get("k", None).await.unwrap_err();
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    assert_eq!(err.stable_code(), "unavailable", "{err:?}");
}

/// A server that accepts the connection but never answers (no RST, no
/// bytes): the request fails with `Timeout` at its deadline.
async fn blackholed_server_times_out(kind: Kind) {
    let server = Server::start(kind).await;
    let proxy = Proxy::start(server.addr()).await;
    proxy.set(Mode::Blackhole);
    let c = Client::connect(fast_config(proxy.endpoint()))
        .await
        .unwrap();
    let timeout = c.config().request_timeout();
    let started = Instant::now();
    let err = c.get("k", None).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, Error::Timeout);
    assert!(took >= timeout - Duration::from_millis(100), "{took:?}");
    assert!(took < timeout + Duration::from_secs(1), "{took:?}");
    let err = c.put("k", "v", None).await.unwrap_err();
    assert_eq!(err, Error::Timeout);
}

/// A write whose connection cannot even be established surely never reached
/// a server, so it is retried; once the server is back it is applied once.
async fn unsent_write_is_retried_until_the_server_is_back(kind: Kind) {
    let mut server = Server::start(kind).await;
    let before = server.client().await.put("k", "v0", None).await.unwrap();
    server.kill9();
    // A fresh client: its first attempt finds nobody listening.
    let config = fast_config(server.endpoint())
        .with_request_timeout(Duration::from_secs(30))
        .with_retry(
            RetryPolicy::default()
                .with_max_attempts(10_000)
                .with_initial_backoff(Duration::from_millis(10))
                .with_max_backoff(Duration::from_millis(100)),
        );
    let c = Client::connect(config).await.unwrap();
    let put = tokio::spawn({
        let c = c.clone();
        async move { c.put("k", "v1", None).await }
    });
    server.restart().await;
    let resp = within("the retried put", WAIT, put).await.unwrap().unwrap();
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!(kv.value, b"v1");
    assert_eq!(kv.version, 2, "applied more than once");
    assert_eq!(kv.mod_revision, resp.revision());
    assert_eq!(resp.revision(), before.revision() + 1);
}
