//! Tests of the raft log store (raft/log_store.rs).

use super::*;
use openraft::storage::RaftLogStorageExt;

#[test]
fn entry_codec_round_trips() {
    let e = Entry {
        log_id: openraft::LogId::new(CommittedLeaderId::new(3, 7), 42),
        payload: EntryPayload::Normal(RaftRequest {
            bytes: vec![1, 2, 3],
        }),
    };
    let back = decode_entry(&encode_entry(&e)).unwrap();
    assert_eq!(back.log_id, e.log_id);
    assert!(matches!(back.payload, EntryPayload::Normal(r) if r.bytes == vec![1, 2, 3]));
}

fn big_entry(term: u64, index: u64) -> Entry {
    // 1 MiB, the index in every byte: a record read from the wrong
    // place cannot pass for this one.
    Entry {
        log_id: openraft::LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(RaftRequest {
            bytes: vec![(index + term) as u8; 1 << 20],
        }),
    }
}

fn assert_entries(got: &[Entry], want: &[(u64, u64)]) {
    let got: Vec<(u64, u64, u8)> = got
        .iter()
        .map(|e| match &e.payload {
            EntryPayload::Normal(r) => (e.log_id.leader_id.term, e.log_id.index, r.bytes[0]),
            _ => (0, 0, 0),
        })
        .collect();
    let want: Vec<(u64, u64, u8)> = want.iter().map(|&(t, i)| (t, i, (i + t) as u8)).collect();
    assert_eq!(got, want);
}

/// More entries than the memory cache holds: the oldest are read back
/// from disk, across truncation, purge and a reopen.
#[tokio::test]
async fn entries_past_the_cache_are_read_from_disk() {
    let d = tempfile::tempdir().unwrap();
    let n = (2 * log_cache::CACHE_BYTES / (1 << 20)) as u64 + 4;
    {
        let mut s = LogStore::open(d.path()).unwrap();
        for i in 1..=n {
            s.blocking_append(vec![big_entry(1, i)]).await.unwrap();
        }
        assert!(s.mem.lock().cached_len() < n as usize / 2 + 2);
        let want: Vec<(u64, u64)> = (1..=n).map(|i| (1, i)).collect();
        assert_entries(&s.try_get_log_entries(1..=n).await.unwrap(), &want);
        // A conflicting suffix replaced by a newer leader's entries.
        s.truncate(openraft::LogId::new(CommittedLeaderId::new(1, 1), n - 1))
            .await
            .unwrap();
        s.blocking_append(vec![big_entry(2, n - 1)]).await.unwrap();
        s.purge(openraft::LogId::new(CommittedLeaderId::new(1, 1), 2))
            .await
            .unwrap();
        let mut want: Vec<(u64, u64)> = (3..n - 1).map(|i| (1, i)).collect();
        want.push((2, n - 1));
        assert_entries(&s.try_get_log_entries(0..=n).await.unwrap(), &want);
    }
    let mut s = LogStore::open(d.path()).unwrap();
    let mut want: Vec<(u64, u64)> = (3..n - 1).map(|i| (1, i)).collect();
    want.push((2, n - 1));
    assert_entries(&s.try_get_log_entries(0..=n).await.unwrap(), &want);
    assert_eq!(
        s.get_log_state()
            .await
            .unwrap()
            .last_log_id
            .map(|l| l.index),
        Some(n - 1)
    );
}

#[tokio::test]
async fn reopen_restores_entries_vote_and_purge() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(d.path()).unwrap();
        s.save_vote(&Vote::new(2, 1)).await.unwrap();
        let entries: Vec<Entry> = (1..=5)
            .map(|i| Entry {
                log_id: openraft::LogId::new(CommittedLeaderId::new(2, 1), i),
                payload: EntryPayload::Blank,
            })
            .collect();
        s.blocking_append(entries).await.unwrap();
        s.purge(openraft::LogId::new(CommittedLeaderId::new(2, 1), 2))
            .await
            .unwrap();
        s.truncate(openraft::LogId::new(CommittedLeaderId::new(2, 1), 5))
            .await
            .unwrap();
        s.save_vote(&Vote::new(3, 1)).await.unwrap();
    }
    let mut s = LogStore::open(d.path()).unwrap();
    assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    let st = s.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(2));
    assert_eq!(st.last_log_id.map(|l| l.index), Some(4));
    assert_eq!(s.try_get_log_entries(0..100).await.unwrap().len(), 2);
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wal")
        })
        .count()
}

/// A purge deletes the sealed segments it emptied at once (not at the next
/// rotation, 64 MiB of writes later), and the vote and purge point, first
/// written in the deleted segment, survive a reopen.
#[tokio::test]
async fn purge_deletes_emptied_segments_and_keeps_the_vote() {
    let d = tempfile::tempdir().unwrap();
    // One rotation: the first segment fills past SEGMENT_BYTES.
    let n = SEGMENT_BYTES / (1 << 20) + 4;
    {
        let mut s = LogStore::open(d.path()).unwrap();
        s.save_vote(&Vote::new(4, 1)).await.unwrap();
        for i in 1..=n {
            s.blocking_append(vec![big_entry(1, i)]).await.unwrap();
        }
        assert_eq!(segments(d.path()), 2, "one rotation");
        s.purge(openraft::LogId::new(CommittedLeaderId::new(1, 1), n - 1))
            .await
            .unwrap();
        // The single writer thread takes ops in order: once this append is
        // flushed, the purge before it was written (and acted on).
        s.blocking_append(vec![big_entry(1, n + 1)]).await.unwrap();
        assert_eq!(segments(d.path()), 1, "the emptied segment is deleted");
    }
    let mut s = LogStore::open(d.path()).unwrap();
    assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(4, 1)));
    let st = s.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(n - 1));
    assert_entries(
        &s.try_get_log_entries(0..=n + 1).await.unwrap(),
        &[(1, n), (1, n + 1)],
    );
}
