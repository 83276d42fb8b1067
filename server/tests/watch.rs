//! Watch: keys and prefixes, history replay, filters, prev_kv, progress,
//! cancel, compacted start revisions, and replay + live delivery under
//! concurrent writers without loss or duplication.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use etcd_client::{
    Client, DeleteOptions, Event, EventType, WatchFilterType, WatchOptions, WatchResponse,
    WatchStream,
};

const MSG_TIMEOUT: Duration = Duration::from_secs(10);

/// The next message on the stream (fails on end of stream, error, timeout).
async fn next(kind: Kind, ws: &mut WatchStream) -> WatchResponse {
    match tokio::time::timeout(MSG_TIMEOUT, ws.message()).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => panic!("[{kind}] watch stream ended"),
        Ok(Err(e)) => panic!("[{kind}] watch stream error: {e:?}"),
        Err(_) => panic!("[{kind}] no watch response within {MSG_TIMEOUT:?}"),
    }
}

/// Expects the "created" response; returns the watch id.
async fn created(kind: Kind, ws: &mut WatchStream) -> i64 {
    let r = next(kind, ws).await;
    assert!(
        r.created() && !r.canceled() && r.events().is_empty(),
        "[{kind}] expected a created response, got {r:?}"
    );
    r.watch_id()
}

fn ev(e: &Event) -> String {
    let kv = e.kv().expect("event has a kv");
    let ty = match e.event_type() {
        EventType::Put => "PUT",
        EventType::Delete => "DELETE",
    };
    let mut s = format!(
        "{ty} {}={} c{} m{} v{}",
        String::from_utf8_lossy(kv.key()),
        String::from_utf8_lossy(kv.value()),
        kv.create_revision(),
        kv.mod_revision(),
        kv.version()
    );
    if kv.lease() != 0 {
        s.push_str(" leased");
    }
    if let Some(p) = e.prev_kv() {
        s.push_str(&format!(
            " prev({}={} c{} m{} v{})",
            String::from_utf8_lossy(p.key()),
            String::from_utf8_lossy(p.value()),
            p.create_revision(),
            p.mod_revision(),
            p.version()
        ));
    }
    s
}

/// Collects exactly `n` events for watch `id` (responses may batch them).
async fn events(kind: Kind, ws: &mut WatchStream, id: i64, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let r = next(kind, ws).await;
        assert!(
            !r.created() && !r.canceled(),
            "[{kind}] unexpected response while waiting for events: {r:?}"
        );
        assert_eq!(r.watch_id(), id, "[{kind}] events for another watch: {r:?}");
        assert!(
            !r.events().is_empty(),
            "[{kind}] empty event response {r:?}"
        );
        out.extend(r.events().iter().map(ev));
        assert!(
            out.len() <= n,
            "[{kind}] more events than expected ({n}): {out:#?}"
        );
    }
    out
}

async fn watch(kind: Kind, c: &mut Client, key: &str, opts: WatchOptions) -> (WatchStream, i64) {
    let mut ws = c.watch(key, Some(opts)).await.expect("watch");
    let id = created(kind, &mut ws).await;
    (ws, id)
}

#[tokio::test]
async fn watch_key_and_prefix() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        let (mut wk, idk) = watch(kind, &mut c, "foo", WatchOptions::new()).await;
        let (mut wp, idp) = watch(kind, &mut c, "dir/", WatchOptions::new().with_prefix()).await;

        c.put("foo", "1", None).await.unwrap(); // 2
        c.put("foo2", "x", None).await.unwrap(); // 3 (not watched by wk)
        c.put("dir/a", "1", None).await.unwrap(); // 4
        c.put("dirx", "1", None).await.unwrap(); // 5 (not in prefix)
        c.put("foo", "2", None).await.unwrap(); // 6
        c.delete("foo", None).await.unwrap(); // 7
        c.put("dir/b", "2", None).await.unwrap(); // 8
        c.delete("dir/", Some(DeleteOptions::new().with_prefix()))
            .await
            .unwrap(); // 9

        let got = events(kind, &mut wk, idk, 3).await;
        assert_eq!(
            got,
            [
                "PUT foo=1 c2 m2 v1",
                "PUT foo=2 c2 m6 v2",
                "DELETE foo= c0 m7 v0",
            ],
            "[{kind}] key watch"
        );
        t.extend(got);
        let got = events(kind, &mut wp, idp, 4).await;
        assert_eq!(
            got,
            [
                "PUT dir/a=1 c4 m4 v1",
                "PUT dir/b=2 c8 m8 v1",
                "DELETE dir/a= c0 m9 v0",
                "DELETE dir/b= c0 m9 v0",
            ],
            "[{kind}] prefix watch"
        );
        t.extend(got);

        // Nothing else was delivered: the next event is the sentinel.
        c.put("foo", "s", None).await.unwrap(); // 10
        c.put("dir/s", "s", None).await.unwrap(); // 11
        assert_eq!(
            events(kind, &mut wk, idk, 1).await,
            ["PUT foo=s c10 m10 v1"],
            "[{kind}]"
        );
        assert_eq!(
            events(kind, &mut wp, idp, 1).await,
            ["PUT dir/s=s c11 m11 v1"],
            "[{kind}]"
        );

        // A txn's events come in one response, in the txn's op order.
        let r = c
            .txn(etcd_client::Txn::new().and_then([
                etcd_client::TxnOp::put("dir/z", "1", None),
                etcd_client::TxnOp::put("dir/c", "1", None),
            ]))
            .await
            .unwrap();
        assert_eq!(rev(r.header()), 12);
        let resp = next(kind, &mut wp).await;
        let got: Vec<String> = resp.events().iter().map(ev).collect();
        assert_eq!(
            got,
            ["PUT dir/z=1 c12 m12 v1", "PUT dir/c=1 c12 m12 v1"],
            "[{kind}] txn events (in op order)"
        );
        assert_eq!(
            rev(resp.header()),
            12,
            "[{kind}] event response header revision"
        );

        // Several watches on one stream, each with its own id.
        let (mut ws, id1) = watch(kind, &mut c, "m1", WatchOptions::new()).await;
        ws.watch("m2", None).await.unwrap();
        let id2 = created(kind, &mut ws).await;
        assert_ne!(id1, id2, "[{kind}] distinct watch ids");
        c.put("m2", "b", None).await.unwrap(); // 13
        c.put("m1", "a", None).await.unwrap(); // 14
        assert_eq!(events(kind, &mut ws, id2, 1).await, ["PUT m2=b c13 m13 v1"]);
        assert_eq!(events(kind, &mut ws, id1, 1).await, ["PUT m1=a c14 m14 v1"]);
        t
    })
    .await;
}

#[tokio::test]
async fn start_revision_filters_and_prev_kv() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        c.put("k", "1", None).await.unwrap(); // 2
        c.put("k", "2", None).await.unwrap(); // 3
        c.put("other", "x", None).await.unwrap(); // 4
        c.delete("k", None).await.unwrap(); // 5
        c.put("k", "3", None).await.unwrap(); // 6

        // Replay from history.
        let (mut w, id) = watch(
            kind,
            &mut c,
            "k",
            WatchOptions::new().with_start_revision(3),
        )
        .await;
        let got = events(kind, &mut w, id, 3).await;
        assert_eq!(
            got,
            ["PUT k=2 c2 m3 v2", "DELETE k= c0 m5 v0", "PUT k=3 c6 m6 v1"],
            "[{kind}] replay from 3"
        );
        t.extend(got);
        c.put("k", "4", None).await.unwrap(); // 7
        assert_eq!(
            events(kind, &mut w, id, 1).await,
            ["PUT k=4 c6 m7 v2"],
            "[{kind}] live after replay"
        );

        // Replay from revision 1 with prev_kv.
        let (mut w, id) = watch(
            kind,
            &mut c,
            "k",
            WatchOptions::new().with_start_revision(1).with_prev_key(),
        )
        .await;
        let got = events(kind, &mut w, id, 5).await;
        assert_eq!(
            got,
            [
                "PUT k=1 c2 m2 v1",
                "PUT k=2 c2 m3 v2 prev(k=1 c2 m2 v1)",
                "DELETE k= c0 m5 v0 prev(k=2 c2 m3 v2)",
                "PUT k=3 c6 m6 v1",
                "PUT k=4 c6 m7 v2 prev(k=3 c6 m6 v1)",
            ],
            "[{kind}] replay with prev_kv"
        );
        t.extend(got);

        // A start revision in the future: events from there on only.
        let (mut wf, idf) = watch(
            kind,
            &mut c,
            "k",
            WatchOptions::new().with_start_revision(9),
        )
        .await;

        // Filters.
        let (mut np, idnp) = watch(
            kind,
            &mut c,
            "f",
            WatchOptions::new()
                .with_prefix()
                .with_filters([WatchFilterType::NoPut]),
        )
        .await;
        let (mut nd, idnd) = watch(
            kind,
            &mut c,
            "f",
            WatchOptions::new()
                .with_prefix()
                .with_filters([WatchFilterType::NoDelete])
                .with_prev_key(),
        )
        .await;
        c.put("f1", "a", None).await.unwrap(); // 8
        c.put("k", "5", None).await.unwrap(); // 9
        c.put("f1", "b", None).await.unwrap(); // 10
        c.delete("f1", Some(DeleteOptions::new().with_prev_key()))
            .await
            .unwrap(); // 11
        c.put("k", "6", None).await.unwrap(); // 12
        c.put("f2", "c", None).await.unwrap(); // 13
        c.delete("f2", None).await.unwrap(); // 14

        let got = events(kind, &mut np, idnp, 2).await;
        assert_eq!(
            got,
            ["DELETE f1= c0 m11 v0", "DELETE f2= c0 m14 v0"],
            "[{kind}] NOPUT"
        );
        t.extend(got);
        let got = events(kind, &mut nd, idnd, 3).await;
        assert_eq!(
            got,
            [
                "PUT f1=a c8 m8 v1",
                "PUT f1=b c8 m10 v2 prev(f1=a c8 m8 v1)",
                "PUT f2=c c13 m13 v1",
            ],
            "[{kind}] NODELETE with prev_kv"
        );
        t.extend(got);
        let got = events(kind, &mut wf, idf, 2).await;
        assert_eq!(
            got,
            ["PUT k=5 c6 m9 v3", "PUT k=6 c6 m12 v4"],
            "[{kind}] future start revision"
        );
        t.extend(got);
        t
    })
    .await;
}

#[tokio::test]
async fn progress_and_cancel() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        c.put("p", "1", None).await.unwrap(); // 2
        c.put("unrelated", "1", None).await.unwrap(); // 3

        let (mut w, id) = watch(
            kind,
            &mut c,
            "p",
            WatchOptions::new().with_progress_notify(),
        )
        .await;
        // A progress request is answered with the current revision and no
        // events.
        w.request_progress().await.unwrap();
        let r = next(kind, &mut w).await;
        assert!(
            r.events().is_empty() && !r.created() && !r.canceled(),
            "[{kind}] progress response {r:?}"
        );
        assert_eq!(rev(r.header()), 3, "[{kind}] progress revision");
        // Not tied to one watch: etcd uses watch id -1 (clientv3.InvalidWatchID).
        assert_eq!(r.watch_id(), -1, "[{kind}] progress response watch id");
        t.push(format!(
            "progress watch_id={} compact={}",
            r.watch_id(),
            r.compact_revision()
        ));

        c.put("unrelated", "2", None).await.unwrap(); // 4
        c.put("p", "2", None).await.unwrap(); // 5
        assert_eq!(events(kind, &mut w, id, 1).await, ["PUT p=2 c2 m5 v2"]);
        c.put("unrelated", "3", None).await.unwrap(); // 6
        w.request_progress().await.unwrap();
        let r = next(kind, &mut w).await;
        assert!(r.events().is_empty(), "[{kind}] progress response {r:?}");
        assert_eq!(
            rev(r.header()),
            6,
            "[{kind}] progress revision after writes"
        );

        // Cancel: acknowledged with canceled=true for that id, and no more
        // events for it; another watch on the same stream keeps working.
        w.watch("q", None).await.unwrap();
        let idq = created(kind, &mut w).await;
        w.cancel(id).await.unwrap();
        let r = next(kind, &mut w).await;
        assert!(
            r.canceled() && r.watch_id() == id && r.events().is_empty(),
            "[{kind}] cancel response {r:?}"
        );
        assert_eq!(r.compact_revision(), 0);
        c.put("p", "3", None).await.unwrap(); // 7
        c.put("q", "1", None).await.unwrap(); // 8
        let r = next(kind, &mut w).await;
        assert_eq!(
            r.watch_id(),
            idq,
            "[{kind}] event after cancel must be q's: {r:?}"
        );
        let got: Vec<String> = r.events().iter().map(ev).collect();
        assert_eq!(got, ["PUT q=1 c8 m8 v1"], "[{kind}]");
        t.extend(got);
        t
    })
    .await;
}

#[tokio::test]
async fn watch_from_compacted_revision_is_canceled() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        let mut t = Vec::new();
        for i in 0..5 {
            c.put("c", i.to_string(), None).await.unwrap(); // 2..=6
        }
        c.compact(5, None).await.unwrap();

        let mut w = c
            .watch("c", Some(WatchOptions::new().with_start_revision(3)))
            .await
            .unwrap();
        // etcd sends the created response, then a cancel carrying the
        // compaction revision.
        let mut responses = Vec::new();
        loop {
            let r = next(kind, &mut w).await;
            let done = r.canceled();
            responses.push(r);
            if done {
                break;
            }
            assert!(responses.len() < 3, "[{kind}] no cancel: {responses:?}");
        }
        let last = responses.last().unwrap();
        assert_eq!(
            last.compact_revision(),
            5,
            "[{kind}] compact_revision {last:?}"
        );
        assert!(
            last.events().is_empty(),
            "[{kind}] no events for a compacted watch"
        );
        let shape: Vec<String> = responses
            .iter()
            .map(|r| {
                format!(
                    "created={} canceled={} compact={} events={}",
                    r.created(),
                    r.canceled(),
                    r.compact_revision(),
                    r.events().len()
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                "created=true canceled=false compact=0 events=0",
                "created=false canceled=true compact=5 events=0"
            ],
            "[{kind}] compacted watch responses"
        );
        t.extend(shape);

        // Watching from exactly the compaction revision works.
        let (mut w, id) = watch(
            kind,
            &mut c,
            "c",
            WatchOptions::new().with_start_revision(5),
        )
        .await;
        let got = events(kind, &mut w, id, 2).await;
        assert_eq!(
            got,
            ["PUT c=3 c2 m5 v4", "PUT c=4 c2 m6 v5"],
            "[{kind}] from compaction rev"
        );
        t.extend(got);
        t
    })
    .await;
}

/// Asserts two long sequences are equal, reporting the first difference
/// with a little context instead of both sequences in full.
fn assert_same_sequence<T: PartialEq + std::fmt::Debug>(
    kind: Kind,
    what: &str,
    got: &[T],
    want: &[T],
) {
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        let lo = i.saturating_sub(3);
        panic!(
            "[{kind}] {what}: first difference at index {i} (lost, repeated or out of order)\n  got[{lo}..]:  {:?}\n  want[{lo}..]: {:?}",
            &got[lo..got.len().min(i + 4)],
            &want[lo..want.len().min(i + 4)]
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "[{kind}] {what}: lengths differ; tail of the longer: {:?}",
        if got.len() > want.len() {
            format!("{:?}", &got[want.len()..])
        } else {
            format!("{:?}", &want[got.len()..])
        }
    );
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Put {
    key: String,
    value: String,
}

#[tokio::test]
async fn replay_plus_live_under_concurrent_writers() {
    const WRITERS: usize = 4;
    const PUTS_PER_WRITER: usize = 60;
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let c = srv.client().await;
        // revision -> acknowledged put
        let acked: Arc<Mutex<BTreeMap<i64, Put>>> = Arc::default();
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let mut c = c.clone();
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..PUTS_PER_WRITER {
                    // a few keys per writer so versions grow too
                    let key = format!("w/{w}/{}", i % 3);
                    let value = format!("{w}-{i}");
                    let r = c.put(key.clone(), value.clone(), None).await.expect("put");
                    let rv = rev(r.header());
                    let prev = acked.lock().unwrap().insert(rv, Put { key, value });
                    assert!(prev.is_none(), "revision {rv} acknowledged twice");
                    if i % 16 == 15 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        // Start watching from the beginning while the writers are running.
        wait_until("some puts acknowledged", WAIT_TIMEOUT, || {
            let n = acked.lock().unwrap().len();
            async move { (n >= WRITERS * PUTS_PER_WRITER / 4).then_some(()) }
        })
        .await;
        let mut wc = c.clone();
        let (mut ws, id) = watch(
            kind,
            &mut wc,
            "w/",
            WatchOptions::new().with_prefix().with_start_revision(1),
        )
        .await;
        let mut got: Vec<(i64, Put)> = Vec::new();
        let total = WRITERS * PUTS_PER_WRITER;
        while got.len() < total {
            let r = next(kind, &mut ws).await;
            assert_eq!(r.watch_id(), id);
            assert!(!r.canceled(), "[{kind}] watch canceled: {r:?}");
            for e in r.events() {
                assert_eq!(e.event_type(), EventType::Put, "[{kind}]");
                let kv = e.kv().unwrap();
                got.push((
                    kv.mod_revision(),
                    Put {
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        value: String::from_utf8_lossy(kv.value()).into_owned(),
                    },
                ));
            }
            assert!(
                got.len() <= total,
                "[{kind}] more events than puts: {}",
                got.len()
            );
        }
        for w in writers {
            w.await.expect("writer task");
        }
        let acked = acked.lock().unwrap().clone();
        assert_eq!(acked.len(), total);
        // Every revision once, in order, exactly the acknowledged puts.
        let revs: Vec<i64> = got.iter().map(|(r, _)| *r).collect();
        let want_revs: Vec<i64> = (2..2 + total as i64).collect();
        assert_same_sequence(kind, "event revisions", &revs, &want_revs);
        let want: Vec<(i64, Put)> = acked.into_iter().collect();
        assert_same_sequence(kind, "events vs acknowledged puts", &got, &want);

        // Live events continue after the replay, with nothing extra.
        let mut c2 = c.clone();
        let r = c2.put("w/end", "end", None).await.unwrap();
        let got = events(kind, &mut ws, id, 1).await;
        assert_eq!(
            got,
            [format!("PUT w/end=end c{0} m{0} v1", rev(r.header()))],
            "[{kind}] live event after replay"
        );
        vec![format!("{total} events")]
    })
    .await;
}

#[tokio::test]
async fn large_replay_is_fragmented_when_asked() {
    each_kind(|kind| async move {
        let srv = Server::start(kind).await;
        let mut c = srv.client().await;
        // Six 500 KB values: a 3 MB replay batch, over etcd's split size
        // (--max-request-bytes 1.5 MiB plus 512 KiB).
        let value = "v".repeat(500_000);
        for i in 0..6 {
            c.put(format!("frag/{i:02}"), value.clone(), None)
                .await
                .unwrap();
        }
        let wopts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(1)
            .with_fragment();
        let (mut ws, _) = watch(kind, &mut c, "frag/", wopts).await;
        let mut got = 0;
        let mut shape = Vec::new();
        while got < 6 {
            let r = next(kind, &mut ws).await;
            got += r.events().len();
            shape.push(r.events().len());
        }
        assert_eq!(got, 6, "[{kind}] every event once");
        assert!(shape.len() > 1, "[{kind}] the batch was split: {shape:?}");
        // etcd-client does not expose the fragment flag: the split shows as
        // several responses, none over the limit (at most 4 events of 500 KB).
        assert!(shape.iter().all(|n| *n <= 4), "[{kind}] {shape:?}");
        vec![format!("fragments: {}", shape.len() > 1)]
    })
    .await;
}
