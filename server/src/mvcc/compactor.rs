//! Physical compaction in the background, as etcd's scheduleCompaction does
//! it: applying a compaction records the compaction revision and drops the
//! index entries (reads below it fail at once), and the rows those entries
//! pointed at are deleted here, [`BATCH_ROWS`] per redb write transaction
//! with a pause between batches, so client writes interleave instead of
//! waiting for one transaction over millions of rows.
//!
//! Nothing here needs to be durable to be correct: a crash before the rows
//! are gone leaves rows below the compaction revision that the rebuilt
//! index does not keep, and recovery compacts the rebuilt index again and
//! queues them anew (recover.rs). A snapshot install is the same case.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use redb::Database;

use super::{MvccError, Revision, Store};
use crate::storage::schema::KV;

/// Rows deleted per write transaction (etcd's --experimental-compaction-batch-limit default).
pub const BATCH_ROWS: usize = 1000;
/// Pause between two batches (etcd's compaction sleep interval default), so
/// the applier's transactions get the backend in between.
pub const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// Wait before retrying after a failed batch (the rows stay queued).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The rows one compaction dropped from the index, deleted in order.
struct Job {
    rev: i64,
    revs: Vec<Revision>,
    /// Rows handed out so far (`revs[..done]` are deleted).
    done: usize,
    sorted: bool,
    started: Instant,
    removed: u64,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Bumped when the store is replaced (a snapshot install): a batch taken
    /// before is not applied to the new file.
    epoch: u64,
}

/// One batch handed out by [`Compactor::next_batch`].
struct Batch {
    epoch: u64,
    revs: Vec<Revision>,
    last: bool,
}

/// What one step left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More rows wait: pause, then step again.
    More,
    /// Nothing queued.
    Idle,
}

/// The queue of physical deletions and how far they got.
pub struct Compactor {
    queue: Mutex<Queue>,
    /// One step at a time (the background task or an inline step).
    stepping: Mutex<()>,
    wake: tokio::sync::Notify,
    /// The highest compaction revision whose rows are all deleted.
    finished: tokio::sync::watch::Sender<i64>,
    /// Set once a background task runs the queue; until then (offline
    /// tools, unit tests) a write runs its compaction to the end itself.
    attached: AtomicBool,
    /// While a defragment copies the store: the rows deleted since it
    /// began, for it to delete from its copy (see [`Recording`]).
    recorded: Mutex<Option<Vec<Revision>>>,
}

impl Default for Compactor {
    fn default() -> Self {
        Compactor {
            queue: Mutex::default(),
            stepping: Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            finished: tokio::sync::watch::channel(i64::MIN).0,
            attached: AtomicBool::new(false),
            recorded: Mutex::new(None),
        }
    }
}

impl Compactor {
    /// Queues the rows compaction `rev` dropped (after its commit).
    pub(super) fn push(&self, rev: i64, revs: Vec<Revision>) {
        self.queue.lock().jobs.push_back(Job {
            rev,
            revs,
            done: 0,
            sorted: false,
            started: Instant::now(),
            removed: 0,
        });
        self.wake.notify_one();
    }

    /// Replaces the queue after the store was rebuilt from a file (open,
    /// snapshot install): `revs` are the rows below `rev` its index dropped.
    pub(super) fn reset(&self, rev: i64, revs: Vec<Revision>) {
        let mut q = self.queue.lock();
        q.epoch += 1;
        q.jobs.clear();
        drop(q);
        if revs.is_empty() {
            self.finish(rev);
        } else {
            self.push(rev, revs);
        }
    }

    /// True when no deletion is queued or under way.
    pub(super) fn is_idle(&self) -> bool {
        self.queue.lock().jobs.is_empty()
    }

    /// Rows still to delete.
    pub fn backlog(&self) -> usize {
        let q = self.queue.lock();
        q.jobs.iter().map(|j| j.revs.len() - j.done).sum()
    }

    fn finish(&self, rev: i64) {
        self.finished.send_if_modified(|f| {
            let moved = rev > *f;
            *f = (*f).max(rev);
            moved
        });
    }

    /// The highest compaction revision whose rows are all deleted
    /// (`i64::MIN` before the first).
    pub fn finished_through(&self) -> i64 {
        *self.finished.borrow()
    }

    /// Resolves once every row compaction `rev` dropped is deleted.
    pub async fn finished(&self, rev: i64) {
        let mut rx = self.finished.subscribe();
        // The sender lives as long as the store; a closed channel cannot be waited on anyway.
        let _ = rx.wait_for(|f| *f >= rev).await;
    }

    /// The next rows to delete, in revision order (a job is sorted before
    /// its first batch, outside the queue lock: pushes never wait on it).
    fn next_batch(&self, limit: usize) -> Option<Batch> {
        let mut q = self.queue.lock();
        let epoch = q.epoch;
        let job = q.jobs.front_mut()?;
        if !job.sorted {
            let mut revs = std::mem::take(&mut job.revs);
            drop(q);
            revs.sort_unstable();
            q = self.queue.lock();
            if q.epoch != epoch {
                return None;
            }
            let job = q.jobs.front_mut()?;
            job.revs = revs;
            job.sorted = true;
        }
        let job = q.jobs.front_mut()?;
        let end = (job.done + limit).min(job.revs.len());
        let revs = job.revs[job.done..end].to_vec();
        job.done = end;
        Some(Batch {
            epoch,
            revs,
            last: end == job.revs.len(),
        })
    }

    /// Books a committed batch: metrics, and the job's end.
    fn advance(&self, batch: &Batch, removed: u64, pause: Duration) -> Step {
        crate::metrics::compaction_batch(pause, removed);
        let mut q = self.queue.lock();
        if q.epoch != batch.epoch {
            return if q.jobs.is_empty() {
                Step::Idle
            } else {
                Step::More
            };
        }
        if let Some(job) = q.jobs.front_mut() {
            job.removed += removed;
            if batch.last {
                let job = q.jobs.pop_front();
                if let Some(job) = job {
                    crate::metrics::compaction_finished(job.started.elapsed());
                    tracing::info!(
                        compact_revision = job.rev,
                        took = ?job.started.elapsed(),
                        keys_compacted = job.removed,
                        "finished scheduled compaction"
                    );
                    self.finish(job.rev);
                }
            }
        }
        if q.jobs.is_empty() {
            Step::Idle
        } else {
            Step::More
        }
    }

    /// Deletes the next batch of queued rows in one write transaction.
    /// Lock order: the store's `db` (shared) as every writer takes it.
    pub(super) fn step(&self, db: &RwLock<Database>) -> Result<Step, MvccError> {
        let _one = self.stepping.lock();
        self.step_locked(db)
    }

    fn step_locked(&self, db: &RwLock<Database>) -> Result<Step, MvccError> {
        let Some(batch) = self.next_batch(BATCH_ROWS) else {
            return Ok(if self.is_idle() {
                Step::Idle
            } else {
                Step::More
            });
        };
        let started = Instant::now();
        let mut removed = 0;
        if !batch.revs.is_empty() {
            let db = db.read();
            if self.queue.lock().epoch != batch.epoch {
                return Ok(Step::More);
            }
            let deleted = (|| {
                let mut wtx = db.begin_write()?;
                // The last batch is made durable so a finished compaction
                // stays finished; the others need not be (a crash queues
                // them again).
                wtx.set_durability(if batch.last {
                    redb::Durability::Immediate
                } else {
                    redb::Durability::None
                })?;
                let mut n = 0;
                {
                    let mut kv = wtx.open_table(KV)?;
                    for r in &batch.revs {
                        if kv.remove(r.to_key())?.is_some() {
                            n += 1;
                        }
                    }
                }
                wtx.commit()?;
                // Recorded before `db` is let go: a defragment's swap
                // (which holds `db` exclusively) sees every deletion.
                if let Some(log) = self.recorded.lock().as_mut() {
                    log.extend_from_slice(&batch.revs);
                }
                Ok::<u64, MvccError>(n)
            })();
            match deleted {
                Ok(n) => removed = n,
                Err(e) => {
                    self.requeue(&batch);
                    return Err(e);
                }
            }
        }
        Ok(self.advance(&batch, removed, started.elapsed()))
    }

    /// Puts a batch whose transaction failed back in front of its job.
    fn requeue(&self, batch: &Batch) {
        let mut q = self.queue.lock();
        if q.epoch != batch.epoch {
            return;
        }
        if let Some(job) = q.jobs.front_mut() {
            job.done -= batch.revs.len().min(job.done);
        }
    }
}

/// The background compactor: runs queued deletions until the task is
/// aborted (node shutdown), pausing [`BATCH_PAUSE`] between batches.
pub async fn run(store: Arc<Store>) {
    store.compactor().attach();
    loop {
        // Test builds only (failpoint `compaction-batch=sleep(N)`): a slow
        // compaction, to look at a store whose rows are not deleted yet.
        if let Some(delay) = crate::raft::failpoint::compaction_batch_delay() {
            tokio::time::sleep(delay).await;
        }
        let s = store.clone();
        let step = tokio::task::spawn_blocking(move || s.compact_step()).await;
        match step {
            Ok(Ok(Step::More)) => tokio::time::sleep(BATCH_PAUSE).await,
            // notify_one keeps a permit: a push since the step is not missed.
            Ok(Ok(Step::Idle)) => store.compactor().wake.notified().await,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "compaction batch failed; will retry");
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "compaction task failed; will retry");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

impl Compactor {
    /// Promises a background task (see [`run`]) to the queue: writes then
    /// delete at most one batch themselves.
    pub fn attach(&self) {
        self.attached.store(true, Ordering::Release);
    }

    /// Whether a background task runs the queue (see [`run`]).
    pub(super) fn attached(&self) -> bool {
        self.attached.load(Ordering::Acquire)
    }
}

/// Records the rows the compactor deletes while it lives (a defragment's
/// copy deletes them too); memory is bounded by the queued rows.
pub(super) struct Recording<'a>(&'a Compactor);

impl Compactor {
    /// Starts recording deletions until the returned guard drops.
    pub(super) fn record_deletions(&self) -> Recording<'_> {
        *self.recorded.lock() = Some(Vec::new());
        Recording(self)
    }
}

impl Recording<'_> {
    /// The rows deleted since the last call (or since recording began).
    pub(super) fn take(&self) -> Vec<Revision> {
        self.0
            .recorded
            .lock()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        *self.0.recorded.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{ReadView, WriteBatch};
    use redb::ReadableTable;

    /// 2500 rows over 10 keys (revisions 2..=2501).
    fn fill(store: &Store) {
        for i in 0..2500 {
            store
                .write(false, |st, wtx| {
                    let mut kv = wtx.open_table(KV)?;
                    let mut b = WriteBatch::new(st, &mut kv);
                    b.begin();
                    b.put(format!("k{}", i % 10).as_bytes(), vec![i as u8], 0)?;
                    b.end();
                    Ok(())
                })
                .unwrap();
        }
    }

    fn compact(store: &Store, rev: i64) {
        store
            .write(false, |st, wtx| {
                let mut kv = wtx.open_table(KV)?;
                WriteBatch::new(st, &mut kv).compact(rev)
            })
            .unwrap();
    }

    fn rows(store: &Store) -> usize {
        store
            .with_read_txn(|rtx, _| Ok(rtx.open_table(KV)?.iter()?.count()))
            .unwrap()
    }

    fn drain(store: &Store) -> usize {
        let mut steps = 0;
        while store.compact_step().unwrap() == Step::More {
            steps += 1;
        }
        steps + 1
    }

    #[test]
    fn rows_go_in_batches_after_the_apply_and_reads_below_fail_at_once() {
        let d = tempfile::tempdir().unwrap();
        let (reference, _) = Store::open(&d.path().join("ref")).unwrap();
        fill(&reference);
        compact(&reference, 2000); // not attached: deleted within the write
        assert_eq!(rows(&reference), 10 + 501);

        let (store, _) = Store::open(&d.path().join("db")).unwrap();
        store.compactor().attach();
        fill(&store);
        compact(&store, 2000);
        assert_eq!(store.compact_rev(), 2000);
        assert!(store.snapshot().index().get(b"k0").is_some());
        // Recorded, nothing deleted yet: 1989 rows wait.
        assert_eq!(rows(&store), 2500);
        assert_eq!(store.compactor().backlog(), 1989);
        // The hash ignores rows waiting for deletion.
        assert_eq!(
            store.hash_kv(2400).unwrap(),
            reference.hash_kv(2400).unwrap()
        );
        let finished = store.compactor().finished(2000);
        assert_eq!(drain(&store), 2, "1989 rows in batches of {BATCH_ROWS}");
        assert_eq!(rows(&store), 10 + 501);
        assert_eq!(
            store.hash_kv(2400).unwrap(),
            reference.hash_kv(2400).unwrap()
        );
        // Resolved: every row of that compaction is gone.
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(5), finished)
                    .await
                    .expect("finished")
            });
    }

    #[test]
    fn a_restart_queues_the_rows_a_crash_left() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        {
            let (store, _) = Store::open(&path).unwrap();
            store.compactor().attach();
            fill(&store);
            compact(&store, 2000);
            // One batch deleted, then the "crash".
            assert_eq!(store.compact_step().unwrap(), Step::More);
            assert_eq!(rows(&store), 2500 - BATCH_ROWS);
        }
        let (store, _) = Store::open(&path).unwrap();
        assert_eq!(store.compact_rev(), 2000);
        // Whatever of the deletion reached the disk, the rest is queued.
        assert!(rows(&store) > 10 + 501);
        assert_eq!(store.compactor().backlog(), rows(&store) - (10 + 501));
        // The rebuilt index holds only what reads at 2000 and above need.
        let h = store.snapshot().index().get(b"k8").cloned().unwrap();
        assert_eq!(h.revs.first().map(|(r, _)| r.main), Some(2000));
        drain(&store);
        assert_eq!(rows(&store), 10 + 501);
        assert!(store.compactor().is_idle());
    }
}
