//! Defragment while clients write (issue 16): kvd copies the store into a
//! new file while puts and deletes go on, then swaps the files. Every write
//! acknowledged during the copy must be in the new file (a defragment that
//! copied only what it saw when it began would drop them), every delete
//! must stay deleted, and the file must shrink by the garbage a compaction
//! left. Checked on the live server, and again after a restart (the swap is
//! a rename: the new file must be the durable one).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{kvd_only, wait_until, Kind, Options, Server};
use etcd_client::{Client, CompactionOptions, GetOptions};

const WRITERS: usize = 6;
const DEFRAGS: usize = 4;
/// Garbage for the defragments: 80 keys of 64 KiB written 4 times, 3 of
/// every 4 versions then compacted away (~15 MiB of free pages).
const BIG_KEYS: usize = 80;
const BIG_VALUE: usize = 64 << 10;

/// What one writer was told: key -> value of acknowledged puts, and keys
/// whose delete was acknowledged.
#[derive(Default)]
struct Acked {
    puts: BTreeMap<String, String>,
    deleted: Vec<String>,
    /// Keys whose last request failed: their state is unknown.
    unknown: Vec<String>,
}

/// Writer `w`: puts `p/<w>/<i>` and deletes every fifth key two back,
/// until `stop`; counts its acknowledged requests in `progress`.
async fn writer(mut c: Client, w: usize, stop: Arc<AtomicBool>, progress: Arc<AtomicU64>) -> Acked {
    let mut acked = Acked::default();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("p/{w}/{i:06}");
        let value = format!("value {w} {i} {}", "x".repeat(200));
        match c.put(key.clone(), value.clone(), None).await {
            Ok(_) => {
                acked.puts.insert(key, value);
                progress.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => acked.unknown.push(key),
        }
        if i % 5 == 4 {
            let gone = format!("p/{w}/{:06}", i - 2);
            acked.puts.remove(&gone);
            match c.delete(gone.clone(), None).await {
                Ok(_) => acked.deleted.push(gone),
                Err(_) => acked.unknown.push(gone),
            }
        }
        i += 1;
    }
    acked
}

/// Every acknowledged put reads back with its value, no acknowledged
/// delete reads back.
async fn check(c: &mut Client, acked: &[Acked], when: &str) {
    let r = c
        .get("p/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("range p/");
    let live: BTreeMap<String, String> = r
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap_or_default().to_string(),
                kv.value_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut puts = 0;
    for a in acked {
        for (k, v) in &a.puts {
            if a.unknown.contains(k) {
                continue;
            }
            puts += 1;
            assert_eq!(
                live.get(k),
                Some(v),
                "{when}: acknowledged put of {k} is missing or changed"
            );
        }
        for k in &a.deleted {
            assert!(
                !live.contains_key(k),
                "{when}: acknowledged delete of {k} came back"
            );
        }
    }
    assert!(puts > 0, "{when}: no put was acknowledged");
}

fn db_size(srv: &Server) -> u64 {
    std::fs::metadata(srv.data_dir().join("member").join("db"))
        .expect("member/db")
        .len()
}

#[tokio::test]
async fn writes_acknowledged_during_defragment_are_kept() {
    kvd_only(|| async {
        let mut srv = Server::start_with(Kind::Kvd, Options::default()).await;
        let mut c = srv.client().await;
        for version in 0..4u8 {
            for k in 0..BIG_KEYS {
                c.put(format!("big/{k:03}"), vec![version; BIG_VALUE], None)
                    .await
                    .expect("put big");
            }
        }
        let head = c
            .get("big/000", None)
            .await
            .expect("get")
            .header()
            .map(|h| h.revision())
            .unwrap_or(0);
        c.compact(head, Some(CompactionOptions::new().with_physical()))
            .await
            .expect("compact");
        let before = db_size(&srv);

        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(c.clone(), w, stop.clone(), progress.clone())))
            .collect();
        for n in 0..DEFRAGS {
            // Writes in flight before each defragment starts, so they
            // overlap its copy.
            let seen = progress.load(Ordering::Relaxed);
            wait_until("writers make progress", Duration::from_secs(30), || {
                let now = progress.load(Ordering::Relaxed);
                async move { (now >= seen + 20).then_some(()) }
            })
            .await;
            c.defragment()
                .await
                .unwrap_or_else(|e| panic!("defragment {n}: {e}"));
        }
        // Writes after the last swap too: the new file takes them.
        let seen = progress.load(Ordering::Relaxed);
        wait_until(
            "writers after the defragments",
            Duration::from_secs(30),
            || {
                let now = progress.load(Ordering::Relaxed);
                async move { (now >= seen + 20).then_some(()) }
            },
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        for w in writers {
            acked.push(w.await.expect("writer task"));
        }

        check(&mut c, &acked, "after the defragments").await;
        let after = db_size(&srv);
        assert!(
            after < before / 2,
            "the store file did not shrink: {before} bytes before, {after} after"
        );
        assert!(
            !srv.data_dir().join("member").join("db.defrag").exists(),
            "the defragment's copy was left behind"
        );
        // The large values are still whole.
        let big = c.get("big/042", None).await.expect("get big");
        assert_eq!(big.kvs()[0].value(), &vec![3u8; BIG_VALUE][..]);

        srv.restart().await;
        let mut c = srv.client().await;
        check(&mut c, &acked, "after a restart").await;
    })
    .await;
}
