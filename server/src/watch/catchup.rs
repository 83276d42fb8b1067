//! The catch-up loop: replays unsynced watchers from the store's history
//! until they reach the head, then marks them synced under the hub lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::hub::{Stream, WatchHub};
use super::queue::{event_responses, Batch};
use super::wire::Picked;
use crate::mvcc::MvccError;
use kv_proto::etcdserverpb::WatchResponse;

/// Most revisions replayed for one watcher per catch-up pass.
const CATCHUP_REVS: i64 = 1000;
/// Most unsynced watchers served per catch-up pass.
const CATCHUP_WATCHERS: usize = 512;
/// Retry period while no unsynced watcher can move on (their streams are full).
const CATCHUP_RETRY: Duration = Duration::from_millis(20);

impl WatchHub {
    /// The catch-up loop; runs until the process stops.
    pub async fn run_catchup(self: Arc<Self>) {
        loop {
            match self.catchup_pass().await {
                // Replay as fast as readers take it: sleeping between passes
                // that moved capped replay at CATCHUP_REVS per CATCHUP_RETRY.
                Pass::Progressed => tokio::task::yield_now().await,
                // Every unsynced watcher's stream is full (or its read
                // failed): wait for readers to drain.
                Pass::Stuck => tokio::time::sleep(CATCHUP_RETRY).await,
                Pass::Idle => self.wake.notified().await,
            }
        }
    }

    /// One pass over unsynced watchers.
    async fn catchup_pass(&self) -> Pass {
        struct Job {
            stream: u64,
            id: i64,
            read: Read,
        }
        let (mut jobs, head, remaining) = {
            let g = self.inner.lock();
            let mut jobs = Vec::new();
            let mut remaining = false;
            for (sid, s) in &g.streams {
                for (id, w) in &s.watchers {
                    if w.synced {
                        continue;
                    }
                    remaining = true;
                    if s.full() || jobs.len() >= CATCHUP_WATCHERS {
                        continue;
                    }
                    jobs.push(Job {
                        stream: *sid,
                        id: *id,
                        read: Read {
                            key: w.key.clone(),
                            end: w.end.clone(),
                            prev_kv: w.prev_kv,
                            from: w.next_rev,
                            to: 0,
                        },
                    });
                }
            }
            (jobs, g.published, remaining)
        };
        if !remaining {
            return Pass::Idle;
        }
        let mut progressed = false;
        // Watchers replaying the same range share one read (and its bytes);
        // a read is let go after its last job, so the response that takes
        // it out last can move its events instead of copying them.
        let mut uses: HashMap<Read, usize> = HashMap::new();
        for job in &mut jobs {
            job.read.to = head.min(job.read.from.saturating_add(CATCHUP_REVS - 1));
            *uses.entry(job.read.clone()).or_default() += 1;
        }
        let mut reads: HashMap<Read, Batch> = HashMap::new();
        for job in jobs {
            let last_use = match uses.get_mut(&job.read) {
                Some(n) => {
                    *n -= 1;
                    *n == 0
                }
                None => true,
            };
            if self.stream_full(job.stream) {
                continue; // its reader fell behind again: retry later
            }
            let cached = if last_use {
                reads.remove(&job.read)
            } else {
                reads.get(&job.read).cloned()
            };
            let result = match cached {
                Some(b) => Ok(b),
                None => {
                    let store = self.store.clone();
                    let r = job.read.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        store.history(r.from, r.to, &r.key, &r.end, r.prev_kv)
                    })
                    .await;
                    match read {
                        Ok(Ok(evs)) => {
                            let batch: Batch = Arc::new(evs);
                            if !last_use {
                                reads.insert(job.read.clone(), batch.clone());
                            }
                            Ok(batch)
                        }
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(MvccError::Storage(e.to_string())),
                    }
                }
            };
            progressed |= self.deliver(job.stream, job.id, job.read.from, job.read.to, result);
        }
        if progressed {
            Pass::Progressed
        } else {
            Pass::Stuck
        }
    }

    fn stream_full(&self, stream: u64) -> bool {
        self.inner
            .lock()
            .streams
            .get(&stream)
            .is_some_and(Stream::full)
    }

    /// Hands one catch-up read to its watcher; true if the watcher moved on
    /// (advanced, or was canceled as compacted).
    fn deliver(
        &self,
        stream: u64,
        id: i64,
        from: i64,
        to: i64,
        events: Result<Batch, MvccError>,
    ) -> bool {
        let mut g = self.inner.lock();
        let published = g.published;
        let Some(s) = g.streams.get_mut(&stream) else {
            return false;
        };
        if s.full() {
            return false; // stays unsynced at the same revision; retried later
        }
        let Some(w) = s.watchers.get_mut(&id) else {
            return false;
        };
        if w.synced || w.next_rev != from {
            return false;
        }
        match events {
            Err(MvccError::Compacted) => {
                let compact = self.store.compact_rev();
                s.remove(id);
                // etcd's cancel for compaction has revision 0 in its header.
                s.send(WatchResponse {
                    header: Some(self.header.at(0)),
                    watch_id: id,
                    canceled: true,
                    compact_revision: compact,
                    ..Default::default()
                });
                true
            }
            Err(e) => {
                tracing::error!(error = %e, watch_id = id, "watch catch-up failed; will retry");
                false
            }
            Ok(batch) => {
                let runs = w.select(&batch);
                w.next_rev = to + 1;
                if w.next_rev > published {
                    w.synced = true;
                }
                if !runs.is_empty() {
                    let header = self.header.at(to.max(published));
                    let (prev, frag, limit) = (w.prev_kv, w.fragment, self.fragment_bytes());
                    let runs = Arc::new(Picked::new(runs));
                    let q = &s.queue;
                    event_responses(header, id, &batch, &runs, prev, frag, limit, |r| q.send(r));
                }
                true
            }
        }
    }
}

/// What one catch-up pass did.
enum Pass {
    /// No watcher is unsynced.
    Idle,
    /// Some watcher moved on; more may remain.
    Progressed,
    /// Watchers remain unsynced but none could move on.
    Stuck,
}

/// One history read of the catch-up loop.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Read {
    key: Vec<u8>,
    end: Vec<u8>,
    prev_kv: bool,
    from: i64,
    to: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::HeaderSource;
    use crate::mvcc::{Store, WriteBatch};
    use crate::storage::schema::KV;
    use crate::watch::StreamHandle;
    use crate::watch::MAX_PENDING_RESPONSES;
    use futures::FutureExt;
    use kv_proto::etcdserverpb::WatchCreateRequest;
    use std::sync::atomic::Ordering;

    /// A store holding `n` revisions, one put of `k/<i>` each.
    fn store(dir: &std::path::Path, n: i64) -> Arc<Store> {
        let (store, _) = Store::open(&dir.join("db")).unwrap();
        store
            .write(false, |st, wtx| {
                let mut kv = wtx.open_table(KV)?;
                let mut b = WriteBatch::new(st, &mut kv);
                for i in 0..n {
                    b.begin();
                    b.put(format!("k/{i}").as_bytes(), b"v".to_vec(), 0)?;
                    b.end();
                }
                Ok(())
            })
            .unwrap();
        Arc::new(store)
    }

    /// Takes every queued response out; the number of events they carry.
    fn take(h: &mut StreamHandle) -> usize {
        let mut events = 0;
        while let Some(Some(r)) = h.rx.recv().now_or_never() {
            h.pending.fetch_sub(1, Ordering::AcqRel);
            events += r.events.len();
        }
        events
    }

    // The loop runs another pass at once after a pass that moved a watcher
    // (it used to sleep CATCHUP_RETRY after every pass, which capped replay
    // at CATCHUP_REVS revisions per 20 ms), and sleeps only when stuck.
    #[tokio::test]
    async fn passes_report_progress_stuck_and_idle() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), 3 * CATCHUP_REVS);
        let first = store.current_rev() - 3 * CATCHUP_REVS + 1;
        let hub = WatchHub::new(store, Arc::new(HeaderSource::new(1, 1)));
        let mut h = hub.open_stream();
        let req = WatchCreateRequest {
            key: b"k/".to_vec(),
            range_end: b"k0".to_vec(),
            start_revision: first,
            ..Default::default()
        };
        hub.create(h.id, &req);
        assert_eq!(take(&mut h), 0, "only the created response so far");
        assert!(matches!(hub.catchup_pass().await, Pass::Progressed));
        // A full stream: nothing can move, the loop must wait.
        h.pending.fetch_add(MAX_PENDING_RESPONSES, Ordering::AcqRel);
        assert!(matches!(hub.catchup_pass().await, Pass::Stuck));
        h.pending.fetch_sub(MAX_PENDING_RESPONSES, Ordering::AcqRel);
        let mut passes = 1;
        while matches!(hub.catchup_pass().await, Pass::Progressed) {
            passes += 1;
        }
        assert_eq!(passes, 3, "one pass per CATCHUP_REVS revisions");
        assert!(matches!(hub.catchup_pass().await, Pass::Idle));
        assert_eq!(take(&mut h) as i64, 3 * CATCHUP_REVS, "every event once");
    }
}
