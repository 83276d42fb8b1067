//! Tests of the hub's publish path (kept apart: hub.rs stays short).

use super::*;
use crate::watch::StreamHandle;
use futures::FutureExt;
use kv_proto::mvccpb::KeyValue;

fn ev(key: &str, rev: i64, put: bool) -> Event {
    let t = if put {
        EventType::Put
    } else {
        EventType::Delete
    };
    Event {
        r#type: t as i32,
        kv: Some(KeyValue {
            key: key.as_bytes().to_vec(),
            mod_revision: rev,
            ..Default::default()
        }),
        prev_kv: None,
    }
}

/// Every queued response: (watch ID, [(key, revision)]) of those with events.
fn take(h: &mut StreamHandle) -> Vec<(i64, Vec<(String, i64)>)> {
    let mut out = Vec::new();
    while let Some(Some(r)) = h.rx.recv().now_or_never() {
        let evs: Vec<_> = r
            .events
            .iter()
            .filter_map(|e| e.kv.as_ref())
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.mod_revision,
                )
            })
            .collect();
        if !evs.is_empty() {
            out.push((r.watch_id, evs));
        }
    }
    out
}

// Watchers of one range share a pick across streams only when their
// filters match and none starts inside the batch.
#[tokio::test]
async fn shared_picks_respect_filters_and_start() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(&dir.path().join("db")).unwrap();
    let hub = WatchHub::new(Arc::new(store), Arc::new(HeaderSource::new(1, 1)));
    let base = hub.inner.lock().published;
    let create = |h: &StreamHandle, id: i64, start: i64, filters: Vec<i32>| {
        hub.create(
            h.id,
            &WatchCreateRequest {
                key: b"k/".to_vec(),
                range_end: b"k0".to_vec(),
                watch_id: id,
                start_revision: start,
                filters,
                ..Default::default()
            },
        )
    };
    let (mut a, mut b) = (hub.open_stream(), hub.open_stream());
    create(&a, 1, 0, vec![]);
    create(&a, 2, 0, vec![FilterType::Noput as i32]);
    create(&a, 3, base + 2, vec![]); // starts inside the batch
    create(&a, 4, 0, vec![]);
    create(&b, 5, 0, vec![]);
    create(&b, 6, 0, vec![FilterType::Nodelete as i32]);
    take(&mut a);
    take(&mut b);
    let batch = vec![
        ev("k/1", base + 1, true),
        ev("k/2", base + 2, true),
        ev("k/3", base + 2, false),
    ];
    hub.publish(base + 2, batch);
    let all = vec![
        ("k/1".into(), base + 1),
        ("k/2".into(), base + 2),
        ("k/3".into(), base + 2),
    ];
    let mut got = take(&mut a);
    got.extend(take(&mut b));
    got.sort();
    let want = vec![
        (1, all.clone()),
        (2, vec![("k/3".into(), base + 2)]),
        (3, all[1..].to_vec()),
        (4, all.clone()),
        (5, all.clone()),
        (6, all[..2].to_vec()),
    ];
    assert_eq!(got, want);

    // Many watchers with one pick, half starting inside the next batch:
    // whatever the map order, those must not reuse the others' pick.
    let mut c = hub.open_stream();
    for id in 0..16 {
        create(&c, 100 + id, if id % 2 == 0 { 0 } else { base + 4 }, vec![]);
    }
    take(&mut c);
    hub.publish(
        base + 4,
        vec![ev("k/4", base + 3, true), ev("k/5", base + 4, true)],
    );
    for (id, evs) in take(&mut c) {
        let want = if id % 2 == 0 { 2 } else { 1 };
        assert_eq!(evs.len(), want, "watch {id}: {evs:?}");
    }
}

/// Every queued response as the gRPC writer sends it, decoded back:
/// (watch ID, [(key, has prev_kv)]).
fn take_wire(h: &mut StreamHandle) -> Vec<(i64, Vec<(String, bool)>)> {
    use prost::Message;
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut out = Vec::new();
    while let std::task::Poll::Ready(Some(o)) = h.rx.poll_recv(&mut cx) {
        let mut buf = Vec::new();
        o.encode(&mut buf);
        let r = WatchResponse::decode(buf.as_slice()).unwrap();
        let evs = r.events.iter().map(|e| {
            let key = e.kv.as_ref().map(|kv| kv.key.clone()).unwrap_or_default();
            (
                String::from_utf8_lossy(&key).into_owned(),
                e.prev_kv.is_some(),
            )
        });
        out.push((r.watch_id, evs.collect()));
    }
    out
}

// Watchers of one range (on one stream and across streams) share one
// encoding of their events per prev_kv choice, and each response still
// carries its own watcher's ID and prev_kv choice.
#[tokio::test]
async fn shared_pick_is_encoded_once_per_prev_kv() {
    use crate::watch::wire::tests::encodings;
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(&dir.path().join("db")).unwrap();
    let hub = WatchHub::new(Arc::new(store), Arc::new(HeaderSource::new(1, 1)));
    let base = hub.inner.lock().published;
    let create = |h: &StreamHandle, id: i64, prev_kv: bool| {
        let req = WatchCreateRequest {
            key: b"k/".to_vec(),
            range_end: b"k0".to_vec(),
            watch_id: id,
            prev_kv,
            ..Default::default()
        };
        hub.create(h.id, &req)
    };
    let (mut a, mut b) = (hub.open_stream(), hub.open_stream());
    for (h, id, prev) in [(&a, 1, false), (&a, 2, true), (&a, 3, false), (&b, 4, true)] {
        create(h, id, prev);
    }
    create(&b, 5, false);
    take(&mut a);
    take(&mut b);
    let with_prev = |key: &str, rev| Event {
        prev_kv: Some(KeyValue {
            key: key.as_bytes().to_vec(),
            mod_revision: rev - 1,
            ..Default::default()
        }),
        ..ev(key, rev, true)
    };
    let before = encodings();
    hub.publish(
        base + 2,
        vec![with_prev("k/1", base + 1), with_prev("k/2", base + 2)],
    );
    let mut got = take_wire(&mut a);
    got.extend(take_wire(&mut b));
    got.sort();
    let events = |prev| vec![("k/1".to_string(), prev), ("k/2".to_string(), prev)];
    let want: Vec<_> = [(1, false), (2, true), (3, false), (4, true), (5, false)]
        .into_iter()
        .map(|(id, prev)| (id, events(prev)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        encodings() - before,
        2,
        "one encoding without prev_kv, one with"
    );
}
