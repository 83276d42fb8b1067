//! Watch memory stays bounded against clients that do not read: a flood of
//! progress requests, and 500 watchers of one key behind a stalled reader
//! when a 1 MB value is written. Measured as kvd's resident set size (from
//! /proc), with every response still delivered once the client reads. Also
//! the per-stream watcher limit and its error.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use kv_proto::etcdserverpb::watch_client::WatchClient;
use kv_proto::etcdserverpb::watch_request::RequestUnion;
use kv_proto::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

/// Growth of kvd's resident memory a test may cause. Without the bounds,
/// the progress flood costs about 190 MB and the fan-out about 500 MB.
const RSS_BUDGET_KIB: u64 = 50 * 1024;
/// Progress requests the flood test offers.
const FLOOD: u64 = 2_000_000;
const MSG_TIMEOUT: Duration = Duration::from_secs(60);

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

async fn watch_client(server: &Server) -> WatchClient<Channel> {
    let ch = Channel::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    WatchClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

fn create(key: &str) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

async fn next(rs: &mut Streaming<WatchResponse>) -> WatchResponse {
    match tokio::time::timeout(MSG_TIMEOUT, rs.message()).await {
        Ok(Ok(Some(r))) => r,
        other => panic!("no watch response: {other:?}"),
    }
}

/// Waits until `count` stops moving (the sender is held back) or reaches
/// `done`; returns it. Polls, never asserts on time.
async fn settle(count: &AtomicU64, done: u64) -> u64 {
    let mut last = u64::MAX;
    let mut still = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = count.load(Ordering::Acquire);
        if now >= done {
            return now;
        }
        still = if now == last { still + 1 } else { 0 };
        if still >= 6 {
            return now;
        }
        last = now;
    }
}

#[tokio::test]
async fn unread_progress_requests_are_held_back() {
    kvd_only(|| async {
        let server = Server::start(Kind::Kvd).await;
        let pid = server.pid().expect("kvd pid");
        let mut wc = watch_client(&server).await;
        let rss0 = rss_kib(pid);

        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (sent.clone(), stop.clone());
        let reqs = futures::stream::iter(0..FLOOD)
            .take_while(move |_| std::future::ready(!st.load(Ordering::Acquire)))
            .map(move |_| {
                s.fetch_add(1, Ordering::AcqRel);
                WatchRequest {
                    request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
                }
            });
        let mut rs = wc.watch(reqs).await.expect("watch").into_inner();
        // Nothing is read: kvd must stop reading requests instead of queueing
        // a response to each.
        let offered = settle(&sent, FLOOD).await;
        let rss1 = rss_kib(pid);
        eprintln!("{offered} progress requests taken; kvd RSS {rss0} -> {rss1} KiB");
        assert!(
            offered < FLOOD,
            "kvd took all {FLOOD} requests without a response being read"
        );
        assert!(
            rss1 < rss0 + RSS_BUDGET_KIB,
            "kvd RSS grew from {rss0} KiB to {rss1} KiB"
        );

        // Reading again: every request taken gets its response, then the
        // stream ends with the requests.
        stop.store(true, Ordering::Release);
        let mut answered = 0u64;
        while let Ok(Ok(Some(r))) = tokio::time::timeout(MSG_TIMEOUT, rs.message()).await {
            assert_eq!(r.watch_id, -1, "not a progress response: {r:?}");
            answered += 1;
        }
        assert_eq!(answered, sent.load(Ordering::Acquire));
    })
    .await;
}

#[tokio::test]
async fn fan_out_to_a_stalled_reader_shares_event_bytes() {
    kvd_only(|| async {
        const WATCHERS: usize = 500;
        let server = Server::start(Kind::Kvd).await;
        let pid = server.pid().expect("kvd pid");
        let mut c = server.client().await;
        let mut wc = watch_client(&server).await;
        let (tx, rx) = mpsc::channel(WATCHERS + 1);
        let mut rs = wc
            .watch(ReceiverStream::new(rx))
            .await
            .expect("watch")
            .into_inner();
        for _ in 0..WATCHERS {
            tx.send(create("big")).await.expect("send create");
        }
        let mut ids = Vec::new();
        for _ in 0..WATCHERS {
            let r = next(&mut rs).await;
            assert!(r.created && !r.canceled, "{r:?}");
            ids.push(r.watch_id);
        }
        let rss0 = rss_kib(pid);

        // The reader stalls; one 1 MB value reaches all 500 watchers.
        let value = vec![b'v'; 1 << 20];
        let rev = c
            .put("big", value.clone(), None)
            .await
            .expect("put 1 MB")
            .header()
            .expect("header")
            .revision();
        let small = put(&mut c, "big", "small").await;
        // Let the catch-up loop try (the reader is still stalled).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss1 = rss_kib(pid);
        eprintln!("kvd RSS {rss0} -> {rss1} KiB with {WATCHERS} watchers behind a stalled reader");
        assert!(
            rss1 < rss0 + RSS_BUDGET_KIB,
            "kvd RSS grew from {rss0} KiB to {rss1} KiB"
        );

        // Reading again: each watcher gets both events, once and in order
        // (the slow ones replayed from history).
        let mut got: HashMap<i64, Vec<(i64, usize)>> = HashMap::new();
        let mut total = 0;
        while total < 2 * WATCHERS {
            let r = next(&mut rs).await;
            assert!(!r.canceled && !r.created, "{r:?}");
            for e in &r.events {
                let kv = e.kv.as_ref().expect("event kv");
                got.entry(r.watch_id)
                    .or_default()
                    .push((kv.mod_revision, kv.value.len()));
                total += 1;
            }
        }
        let want = vec![(rev, value.len()), (small, "small".len())];
        for id in &ids {
            assert_eq!(got.get(id), Some(&want), "watch {id}");
        }
        assert_eq!(got.len(), WATCHERS);
    })
    .await;
}

#[tokio::test]
async fn watchers_per_stream_are_capped() {
    kvd_only(|| async {
        const LIMIT: usize = 10_000;
        let server = Server::start(Kind::Kvd).await;
        let mut wc = watch_client(&server).await;
        let (tx, rx) = mpsc::channel(64);
        let mut rs = wc
            .watch(ReceiverStream::new(rx))
            .await
            .expect("watch")
            .into_inner();
        let feeder = tokio::spawn({
            let tx = tx.clone();
            async move {
                for i in 0..=LIMIT {
                    tx.send(create(&format!("k{i}")))
                        .await
                        .expect("send create");
                }
            }
        });
        let mut first = 0;
        for i in 0..LIMIT {
            let r = next(&mut rs).await;
            assert!(r.created && !r.canceled, "create {i}: {r:?}");
            if i == 0 {
                first = r.watch_id;
            }
        }
        feeder.await.expect("feeder");
        let r = next(&mut rs).await;
        assert!(r.created && r.canceled, "create past the limit: {r:?}");
        assert_eq!(r.watch_id, -1);
        assert_eq!(
            r.cancel_reason,
            "etcdserver: too many watchers on this watch stream (limit 10000)"
        );
        // A cancel makes room again.
        let cancel = WatchRequest {
            request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: first,
            })),
        };
        tx.send(cancel).await.expect("send cancel");
        let r = next(&mut rs).await;
        assert!(r.canceled && r.watch_id == first, "{r:?}");
        tx.send(create("again")).await.expect("send create");
        let r = next(&mut rs).await;
        assert!(r.created && !r.canceled, "{r:?}");
        // Other streams have their own budget.
        let mut c = server.client().await;
        let mut ws = c.watch("other", None).await.expect("watch on a new stream");
        let r = ws.message().await.expect("message").expect("response");
        assert!(r.created() && !r.canceled(), "{r:?}");
        let rev = put(&mut c, "other", "1").await;
        let r = ws.message().await.expect("message").expect("response");
        assert_eq!(r.events()[0].kv().expect("kv").mod_revision(), rev);
    })
    .await;
}

#[tokio::test]
async fn refused_creates_answer_like_etcd() {
    each_kind(|kind| async move {
        let server = Server::start(kind).await;
        let mut wc = watch_client(&server).await;
        let with = |key: &str, end: &str, id: i64| WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.as_bytes().to_vec(),
                range_end: end.as_bytes().to_vec(),
                watch_id: id,
                ..Default::default()
            })),
        };
        // An empty range, a duplicate ID, an empty range with an ID.
        let reqs = [
            with("b", "a", 0),
            with("a", "", 7),
            with("a", "", 7),
            with("b", "a", 9),
        ];
        let n = reqs.len();
        // Queued before the call: grpc-go sends its response headers only
        // with the first response.
        let reqs = futures::stream::iter(reqs).chain(futures::stream::pending());
        let mut rs = wc.watch(reqs).await.expect("watch").into_inner();
        let mut transcript = Vec::new();
        for _ in 0..n {
            let r = next(&mut rs).await;
            transcript.push(format!(
                "created={} canceled={} id={} reason={:?}",
                r.created, r.canceled, r.watch_id, r.cancel_reason
            ));
        }
        eprintln!("[{kind}] {transcript:#?}");
        transcript
    })
    .await;
}
