//! A follower that fell behind by more than the leader keeps of its raft log
//! in memory (8 MiB, raft/log_cache.rs) catches up from entries the leader
//! reads back from its WAL, with no snapshot in between (the default
//! snapshot count is far away). Real kvd processes; the follower is frozen
//! with SIGSTOP while the others write.

mod common;

use common::cluster::{Cluster, DEADLINE};
use common::{kvd_only, wait_until};
use nix::sys::signal::Signal;

/// 24 MiB in 96 puts: three times what the leader keeps decoded.
const PUTS: usize = 96;
const VALUE_BYTES: usize = 256 << 10;

fn value(i: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; VALUE_BYTES]
}

#[tokio::test]
async fn follower_catches_up_from_entries_read_back_from_disk() {
    kvd_only(|| async {
        let c = Cluster::start(3).await;
        let leader = c.leader().await;
        let behind = (leader + 1) % 3;
        let mut l = c.client(leader).await;
        l.put("before", "1", None).await.expect("put before");
        c.signal(behind, Signal::SIGSTOP);
        for i in 0..PUTS {
            l.put(format!("k{i:03}"), value(i), None)
                .await
                .unwrap_or_else(|e| panic!("put {i}: {e}\n{}", c.logs()));
        }
        c.signal(behind, Signal::SIGCONT);

        let ep = c.endpoint(behind);
        let last = format!("k{:03}", PUTS - 1);
        wait_until("the follower has the last key", DEADLINE * 2, || {
            let (ep, last) = (ep.clone(), last.clone());
            async move {
                let mut f = etcd_client::Client::connect([ep], None).await.ok()?;
                let opts = etcd_client::GetOptions::new().with_serializable();
                let got = f.get(last, Some(opts)).await.ok()?;
                (!got.kvs().is_empty()).then_some(())
            }
        })
        .await;
        // Every value arrived whole, at the leader's revisions (one get
        // each: the whole range is past a client's 4 MiB message limit).
        let mut f = c.client(behind).await;
        for i in 0..PUTS {
            let key = format!("k{i:03}");
            let opts = etcd_client::GetOptions::new().with_serializable();
            let got = f
                .get(key.as_str(), Some(opts))
                .await
                .expect("get on the follower");
            let want = l.get(key.as_str(), None).await.expect("get on the leader");
            let (kv, lkv) = (&got.kvs()[0], &want.kvs()[0]);
            assert_eq!(kv.value(), value(i).as_slice(), "value of {key}");
            assert_eq!(kv.mod_revision(), lkv.mod_revision(), "revision of {key}");
        }
    })
    .await;
}
