//! Watchers that pick the same events share kvd's encoding of them (one
//! per prev_kv choice, see server/src/watch/wire.rs); every response must
//! still carry its own watcher's ID, filters and prev_kv choice. Watchers
//! of one prefix on one stream and across two streams, some with prev_kv,
//! one filtered, one on a single key; writes of single puts and of a txn
//! with several events in one revision.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use etcd_client::{Event, EventType, TxnOp, WatchFilterType, WatchOptions, WatchStream};

const MSG_TIMEOUT: Duration = Duration::from_secs(10);

fn ev(e: &Event) -> String {
    let kv = e.kv().expect("event has a kv");
    let ty = match e.event_type() {
        EventType::Put => "PUT",
        EventType::Delete => "DELETE",
    };
    let mut s = format!(
        "{ty} {}={} m{}",
        String::from_utf8_lossy(kv.key()),
        String::from_utf8_lossy(kv.value()),
        kv.mod_revision(),
    );
    if let Some(p) = e.prev_kv() {
        s.push_str(&format!(" prev={}", String::from_utf8_lossy(p.value())));
    }
    s
}

/// Opens a stream with one watcher per (key, options); their IDs, in order.
async fn open(
    kind: Kind,
    c: &mut etcd_client::Client,
    watchers: Vec<(&str, WatchOptions)>,
) -> (WatchStream, Vec<i64>) {
    let mut ws: Option<WatchStream> = None;
    let mut ids = Vec::new();
    for (key, opts) in watchers {
        let ws = match &mut ws {
            Some(ws) => {
                ws.watch(key, Some(opts)).await.expect("watch");
                ws
            }
            None => ws.insert(c.watch(key, Some(opts)).await.expect("watch")),
        };
        let r = tokio::time::timeout(MSG_TIMEOUT, ws.message())
            .await
            .expect("created in time")
            .expect("stream ok")
            .expect("stream open");
        assert!(r.created() && !r.canceled(), "[{kind}] created: {r:?}");
        ids.push(r.watch_id());
    }
    (ws.expect("at least one watcher"), ids)
}

/// Reads `ws` until the watchers hold `want` events in all; each watcher's
/// events in order, by watch ID. Fails on an unknown ID or a response
/// without events.
async fn collect(
    kind: Kind,
    ws: &mut WatchStream,
    ids: &[i64],
    want: usize,
) -> BTreeMap<i64, Vec<String>> {
    let mut got: BTreeMap<i64, Vec<String>> = ids.iter().map(|id| (*id, Vec::new())).collect();
    let mut n = 0;
    while n < want {
        let r = tokio::time::timeout(MSG_TIMEOUT, ws.message())
            .await
            .unwrap_or_else(|_| panic!("[{kind}] only {n} of {want} events: {got:#?}"))
            .expect("stream ok")
            .expect("stream open");
        assert!(
            !r.events().is_empty(),
            "[{kind}] response without events: {r:?}"
        );
        let evs = got
            .get_mut(&r.watch_id())
            .unwrap_or_else(|| panic!("[{kind}] events for unknown watch {}: {r:?}", r.watch_id()));
        evs.extend(r.events().iter().map(ev));
        n += r.events().len();
    }
    got
}

#[tokio::test]
async fn watchers_sharing_events_keep_their_ids_and_options() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let prefix = || WatchOptions::new().with_prefix();
        let (mut s1, ids1) = open(
            kind,
            &mut c,
            vec![
                ("s/", prefix()),
                ("s/", prefix().with_prev_key()),
                ("s/", prefix().with_filters([WatchFilterType::NoPut])),
                ("s/", prefix()),
            ],
        )
        .await;
        let (mut s2, ids2) = open(
            kind,
            &mut c,
            vec![
                ("s/", prefix().with_prev_key()),
                ("s/a", WatchOptions::new()),
            ],
        )
        .await;

        c.put("s/a", "1", None).await.unwrap(); // 2
        c.put("s/c", "1", None).await.unwrap(); // 3
        let txn = etcd_client::Txn::new().and_then([
            TxnOp::put("s/a", "2", None),
            TxnOp::put("s/b", "1", None),
            TxnOp::delete("s/c", None),
        ]);
        c.txn(txn).await.unwrap(); // 4: three events in one revision
        c.put("t/z", "1", None).await.unwrap(); // 5: not watched
        c.put("s/b", "2", None).await.unwrap(); // 6

        // Each prefix watcher gets 6 events but the NoPut one (1), the key
        // watcher 2.
        let got1 = collect(kind, &mut s1, &ids1, 6 + 6 + 1 + 6).await;
        let got2 = collect(kind, &mut s2, &ids2, 6 + 2).await;
        let all = |prev: bool| -> Vec<String> {
            let p = |v: &str| {
                if prev {
                    format!(" prev={v}")
                } else {
                    String::new()
                }
            };
            vec![
                "PUT s/a=1 m2".to_string(),
                "PUT s/c=1 m3".to_string(),
                format!("PUT s/a=2 m4{}", p("1")),
                "PUT s/b=1 m4".to_string(),
                format!("DELETE s/c= m4{}", p("1")),
                format!("PUT s/b=2 m6{}", p("1")),
            ]
        };
        assert_eq!(got1[&ids1[0]], all(false), "[{kind}] prefix watcher");
        assert_eq!(
            got1[&ids1[1]],
            all(true),
            "[{kind}] prefix watcher with prev_kv"
        );
        assert_eq!(got1[&ids1[2]], ["DELETE s/c= m4"], "[{kind}] NoPut watcher");
        assert_eq!(got1[&ids1[3]], all(false), "[{kind}] second prefix watcher");
        assert_eq!(
            got2[&ids2[0]],
            all(true),
            "[{kind}] prefix watcher with prev_kv, stream 2"
        );
        assert_eq!(
            got2[&ids2[1]],
            ["PUT s/a=1 m2", "PUT s/a=2 m4"],
            "[{kind}] key watcher"
        );
        let mut t: Vec<String> = Vec::new();
        for (stream, ids, got) in [(1, &ids1, &got1), (2, &ids2, &got2)] {
            for (i, id) in ids.iter().enumerate() {
                t.push(format!("stream {stream} watcher {i}: {:?}", got[id]));
            }
        }
        t
    })
    .await;
}
