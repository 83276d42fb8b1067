//! Watches: delivery, resume after a crash, compacted resume, half-open
//! connections.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use kv_client::{Client, Error, EventType, WatchOptions, WatchStream};

use crate::proxy::{Mode, Proxy};
use crate::{Kind, Server, WAIT, fast_config, on_both, within};

on_both!(
    watch_events_and_replay,
    resume_after_kill_sees_every_revision_once,
    resume_notify_reports_a_reconnect_once,
    compacted_resume_is_an_error,
    half_open_connection_is_detected,
);

/// The next batch's events as `(type, key, mod_revision)`.
async fn next_events(stream: &mut WatchStream) -> Vec<(EventType, String, i64)> {
    let batch = within("a watch batch", WAIT, stream.next())
        .await
        .expect("stream ended")
        .expect("watch error");
    batch
        .events()
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().expect("event kv");
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            (e.r#type(), key, kv.mod_revision)
        })
        .collect()
}

async fn watch_events_and_replay(kind: Kind) {
    let server = Server::start(kind).await;
    let c = server.client().await;
    let before = c.put("w/0", "zero", None).await.unwrap().revision();

    let mut live = c
        .watch("w/", WatchOptions::new().with_prefix())
        .await
        .unwrap();
    let r1 = c.put("w/1", "one", None).await.unwrap().revision();
    let r2 = c.delete("w/0", None).await.unwrap().revision();
    c.put("x", "not watched", None).await.unwrap();
    let mut seen = next_events(&mut live).await;
    if seen.len() < 2 {
        seen.extend(next_events(&mut live).await);
    }
    assert_eq!(
        seen,
        [
            (EventType::Put, "w/1".to_string(), r1),
            (EventType::Delete, "w/0".to_string(), r2)
        ]
    );

    // A second watch on the same shared stream replays from a revision.
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(before)
        .with_prev_kv();
    let mut replay = c.watch("w/", opts).await.unwrap();
    let mut revs = Vec::new();
    while revs.len() < 3 {
        revs.extend(next_events(&mut replay).await.into_iter().map(|e| e.2));
    }
    assert_eq!(revs, [before, r1, r2]);

    // Dropping one watch leaves the other working.
    drop(replay);
    let r3 = c.put("w/2", "two", None).await.unwrap().revision();
    assert_eq!(
        next_events(&mut live).await,
        [(EventType::Put, "w/2".to_string(), r3)]
    );
}

/// A writer keeps writing while the server is SIGKILLed and restarted on
/// the same data dir and ports, and the watcher stays cut off (behind a
/// proxy) until the writer has written more after the restart: on resume
/// the watcher sees every revision exactly once, in order.
async fn resume_after_kill_sees_every_revision_once(kind: Kind) {
    const EVENTS_BEFORE_KILL: usize = 30;
    const WRITES_WHILE_CUT_OFF: usize = 20;
    let mut server = Server::start(kind).await;
    let proxy = Proxy::start(server.addr()).await;
    let watcher = Client::connect(fast_config(proxy.endpoint()))
        .await
        .unwrap();
    let writer = server.client().await;
    let mut stream = watcher
        .watch("r/", WatchOptions::new().with_prefix())
        .await
        .unwrap();
    let start = writer.get("r/", None).await.unwrap().revision();

    // The writer publishes how many puts succeeded; it stops when told.
    let (written_tx, mut written) = tokio::sync::watch::channel(0usize);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let w = writer.clone();
    let writing = tokio::spawn(async move {
        let mut i = 0u64;
        while !*stop_rx.borrow() {
            i += 1;
            // Failures while the server is down are expected; a timed-out
            // put may or may not have landed, which the watcher decides.
            if w.put(format!("r/{i}"), i.to_string(), None).await.is_ok() {
                written_tx.send_modify(|n| *n += 1);
            }
            tokio::task::yield_now().await;
        }
    });

    let mut seen: Vec<i64> = Vec::new();
    collect_until(&mut stream, &mut seen, EVENTS_BEFORE_KILL).await;
    server.kill9();
    proxy.set(Mode::Refuse);
    server.restart().await;
    let target = *written.borrow() + WRITES_WHILE_CUT_OFF;
    within(
        "writes after the restart",
        WAIT,
        written.wait_for(|n| *n >= target),
    )
    .await
    .unwrap();
    proxy.set(Mode::Forward);
    let more = seen.len() + WRITES_WHILE_CUT_OFF;
    within("events after the restart", WAIT, async {
        collect_until(&mut stream, &mut seen, more).await
    })
    .await;
    stop_tx.send_replace(true);
    within("the writer to stop", WAIT, writing).await.unwrap();

    let end = writer.get("r/", None).await.unwrap().revision();
    within("the last revision", WAIT, async {
        while seen.last().copied().unwrap_or(0) < end {
            let n = seen.len() + 1;
            collect_until(&mut stream, &mut seen, n).await;
        }
    })
    .await;
    let expected: Vec<i64> = (start + 1..=end).collect();
    let distinct: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "a revision was delivered twice");
    assert_eq!(seen, expected, "revisions lost, repeated or out of order");
}

/// With `with_resume_notify`, a broken connection yields exactly one
/// "resumed" batch, naming the next undelivered revision, before the
/// events written meanwhile (none lost or repeated).
async fn resume_notify_reports_a_reconnect_once(kind: Kind) {
    let server = Server::start(kind).await;
    let proxy = Proxy::start(server.addr()).await;
    let watcher = Client::connect(fast_config(proxy.endpoint()))
        .await
        .unwrap();
    let writer = server.client().await;
    let opts = WatchOptions::new().with_prefix().with_resume_notify();
    let mut stream = watcher.watch("n/", opts).await.unwrap();
    let r1 = writer.put("n/1", "a", None).await.unwrap().revision();
    let first = within("the first batch", WAIT, stream.next()).await;
    let first = first.expect("stream ended").expect("watch error");
    assert_eq!(first.resumed_at(), None);
    assert_eq!(first.events().len(), 1);

    proxy.set(Mode::Refuse);
    let r2 = writer.put("n/2", "b", None).await.unwrap().revision();
    let r3 = writer.put("n/3", "c", None).await.unwrap().revision();
    proxy.set(Mode::Forward);

    let mut items = Vec::new();
    while items.last() != Some(&Ok(r3)) {
        let batch = within("a batch after the reconnect", WAIT, stream.next()).await;
        let batch = batch.expect("stream ended").expect("watch error");
        match batch.resumed_at() {
            Some(at) => {
                assert!(!batch.is_progress_notify() && batch.events().is_empty());
                items.push(Err(at));
            }
            None => items.extend(
                batch
                    .events()
                    .iter()
                    .map(|e| Ok(e.kv.as_ref().unwrap().mod_revision)),
            ),
        }
    }
    assert_eq!(
        items,
        [Err(r1 + 1), Ok(r2), Ok(r3)],
        "[{kind}] one resume, then each event once"
    );
}

/// Appends the revisions of the next batches until `seen` has `n`.
async fn collect_until(stream: &mut WatchStream, seen: &mut Vec<i64>, n: usize) {
    while seen.len() < n {
        seen.extend(next_events(stream).await.into_iter().map(|e| e.2));
    }
}

/// A watch cut off while its next revision gets compacted away reports
/// `Error::Compacted` on resume instead of silently skipping ahead.
async fn compacted_resume_is_an_error(kind: Kind) {
    let server = Server::start(kind).await;
    let proxy = Proxy::start(server.addr()).await;
    let watcher = Client::connect(fast_config(proxy.endpoint()))
        .await
        .unwrap();
    let direct = server.client().await;
    let mut stream = watcher
        .watch("c/", WatchOptions::new().with_prefix())
        .await
        .unwrap();
    let r1 = direct.put("c/1", "1", None).await.unwrap().revision();
    assert_eq!(next_events(&mut stream).await[0].2, r1);

    proxy.set(Mode::Refuse);
    direct.put("c/2", "2", None).await.unwrap();
    direct.put("c/3", "3", None).await.unwrap();
    let last = direct.put("c/4", "4", None).await.unwrap().revision();
    direct.compact(last, true).await.unwrap();
    proxy.set(Mode::Forward);

    let item = within("the compacted error", WAIT, stream.next()).await;
    match item {
        Some(Err(Error::Compacted { compact_revision })) => {
            assert_eq!(compact_revision, Some(last));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(
        within("the stream end", WAIT, stream.next())
            .await
            .is_none()
    );
}

/// A connection that stays open but carries nothing (half-open) is caught
/// by HTTP/2 keep-alive pings; the watch resumes on a new connection.
async fn half_open_connection_is_detected(kind: Kind) {
    let server = Server::start(kind).await;
    let proxy = Proxy::start(server.addr()).await;
    let config = fast_config(proxy.endpoint())
        .with_keep_alive(Duration::from_millis(300), Duration::from_millis(500));
    let watcher = Client::connect(config).await.unwrap();
    let direct = server.client().await;
    let mut stream = watcher
        .watch("h/", WatchOptions::new().with_prefix())
        .await
        .unwrap();
    let r1 = direct.put("h/1", "1", None).await.unwrap().revision();
    assert_eq!(next_events(&mut stream).await[0].2, r1);

    proxy.set(Mode::FreezeExisting);
    let r2 = direct.put("h/2", "2", None).await.unwrap().revision();
    let events = next_events(&mut stream).await;
    assert_eq!(events, [(EventType::Put, "h/2".to_string(), r2)]);
    // Unary calls work too, over the new connection.
    assert_eq!(watcher.get("h/2", None).await.unwrap().kvs().len(), 1);
}
