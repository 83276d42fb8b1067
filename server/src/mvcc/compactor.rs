//! Compaction in the background, as etcd's scheduled compaction job does
//! it: applying a compaction only records the compaction revision, durably
//! (reads below it fail at once). Here the in-memory index is then compacted
//! [`INDEX_STEP_KEYS`] keys per hold of the state lock, writes and reads
//! going on between two steps (etcd's treeIndex.Compact takes its lock per
//! key); then the rows the index dropped are deleted, [`BATCH_ROWS`] per
//! redb write transaction with a pause between batches, so client writes
//! interleave instead of waiting for one pass over millions of keys or one
//! transaction over millions of rows.
//!
//! Until the index pass ends, the index still holds revisions the
//! compaction drops: what reads at or above the compaction revision see
//! does not change with them (the newest revision at or below it stays),
//! and everything that must not depend on a member's progress (HashKV's
//! keep set, watch history at the compaction revision) asks the index what
//! a compaction at that revision keeps (`KeyHistory::kept`), not what it
//! holds now.
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

use super::footprint::{row_bytes, Footprint};
use super::store::behind::{self, Behind};
use super::store::State;
use super::{MvccError, Revision, Store};
use crate::storage::schema::KV;

/// Rows deleted per write transaction (etcd's --experimental-compaction-batch-limit default).
pub const BATCH_ROWS: usize = 1000;
/// Pause between two batches (etcd's compaction sleep interval default), so
/// the applier's transactions get the backend in between.
pub const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// Keys compacted per hold of the state lock (writes wait that long at
/// most): about 0.5 ms at ~0.5 us per key. A million keys held writes for
/// 0.4-0.65 s when the whole pass ran in the apply.
pub const INDEX_STEP_KEYS: usize = 1000;
/// Wait before retrying after a failed batch (the rows stay queued).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One compaction: its pass over the index, then the rows that pass
/// dropped, deleted in order.
struct Job {
    rev: i64,
    /// The index pass is not over yet (rows are deleted only after it).
    indexing: bool,
    /// The last key the index pass compacted (`None`: from the first).
    after: Option<Vec<u8>>,
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
    /// Queues compaction `rev` after its commit: its index pass, then
    /// the deletion of the rows it drops (and of `revs`, dropped already).
    pub(super) fn push(&self, rev: i64, revs: Vec<Revision>) {
        self.enqueue(rev, revs, true);
    }

    fn enqueue(&self, rev: i64, revs: Vec<Revision>, indexing: bool) {
        self.queue.lock().jobs.push_back(Job {
            rev,
            indexing,
            after: None,
            revs,
            done: 0,
            sorted: false,
            started: Instant::now(),
            removed: 0,
        });
        self.wake.notify_one();
    }

    /// Replaces the queue after the store was rebuilt from a file (open,
    /// snapshot install): `revs` are the rows below `rev` its index
    /// dropped (the rebuilt index is compacted already).
    pub(super) fn reset(&self, rev: i64, revs: Vec<Revision>) {
        let mut q = self.queue.lock();
        q.epoch += 1;
        q.jobs.clear();
        drop(q);
        if revs.is_empty() {
            self.finish(rev);
        } else {
            self.enqueue(rev, revs, false);
        }
    }

    /// True while the next step is one of an index pass.
    pub(super) fn indexing(&self) -> bool {
        self.queue.lock().jobs.front().is_some_and(|j| j.indexing)
    }

    /// True when no deletion is queued or under way.
    pub(super) fn is_idle(&self) -> bool {
        self.queue.lock().jobs.is_empty()
    }

    /// Rows still to delete (of a compaction whose index pass is under
    /// way, those it dropped so far).
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
        if job.indexing {
            // Its rows are not all known yet.
            return None;
        }
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

    /// Compacts the next keys of the index, or deletes the next batch of
    /// queued rows in one write transaction. Lock order: the store's `db`
    /// (shared) as every writer takes it, `state` before the queue.
    pub(super) fn step(
        &self,
        db: &RwLock<Database>,
        state: &RwLock<State>,
        footprint: &Footprint,
        open: &Behind,
    ) -> Result<Step, MvccError> {
        let _one = self.stepping.lock();
        if self.indexing() {
            return Ok(self.index_step(state));
        }
        self.step_locked(db, footprint, open)
    }

    /// Compacts the next [`INDEX_STEP_KEYS`] keys of the index at the
    /// front job's revision, under the state lock.
    fn index_step(&self, state: &RwLock<State>) -> Step {
        let mut st = state.write();
        // Read under the state lock: a store replaced meanwhile (its
        // queue reset) is never compacted at the old store's revision.
        let (epoch, rev, after) = {
            let mut q = self.queue.lock();
            let epoch = q.epoch;
            match q.jobs.front_mut() {
                Some(job) if job.indexing => (epoch, job.rev, job.after.take()),
                _ => return Step::More,
            }
        };
        let mut dropped = Vec::new();
        let next = st
            .index
            .compact_some(rev, after.as_deref(), INDEX_STEP_KEYS, &mut dropped);
        let mut q = self.queue.lock();
        // Only a reset (a new epoch) removes the front job besides this
        // task's own steps.
        if q.epoch == epoch {
            if let Some(job) = q.jobs.front_mut() {
                job.revs.append(&mut dropped);
                job.after = next;
                if job.after.is_none() {
                    job.indexing = false;
                    tracing::info!(
                        compact_revision = job.rev,
                        took = ?job.started.elapsed(),
                        rows = job.revs.len(),
                        "compacted the key index"
                    );
                }
            }
        }
        drop(q);
        // Hand the lock to a waiting writer or reader before the next step.
        parking_lot::RwLockWriteGuard::unlock_fair(st);
        Step::More
    }

    fn step_locked(
        &self,
        db: &RwLock<Database>,
        footprint: &Footprint,
        open: &Behind,
    ) -> Result<Step, MvccError> {
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
            // The applier's open transaction (if any) is used and committed
            // here: beginning another would wait for it.
            let mut slot = open.lock();
            let mut carries = false;
            let deleted = (|| {
                let taken = Behind::take(&mut slot, &db)?;
                carries = taken.carries();
                let mut n = 0;
                let mut freed = 0;
                {
                    let mut kv = taken.wtx.open_table(KV)?;
                    for r in &batch.revs {
                        if let Some(row) = kv.remove(r.to_key())? {
                            n += 1;
                            freed += row_bytes(row.value().len());
                        }
                    }
                }
                // The last batch is made durable so a finished compaction
                // stays finished; the others need not be (a crash queues
                // them again).
                taken.commit(batch.last)?;
                footprint.remove(freed);
                // Recorded before `db` is let go: a defragment's swap
                // (which holds `db` exclusively) sees every deletion.
                if let Some(log) = self.recorded.lock().as_mut() {
                    log.extend_from_slice(&batch.revs);
                }
                Ok::<u64, MvccError>(n)
            })();
            drop(slot);
            match deleted {
                Ok(n) => removed = n,
                Err(e) => {
                    if carries {
                        // The applier's answered batches went with it.
                        behind::fatal(&e);
                    }
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
            // The index pass goes on at once (each step held the state
            // lock briefly and let waiters in); row batches pause.
            Ok(Ok(Step::More)) if store.compactor().indexing() => tokio::task::yield_now().await,
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
#[path = "compactor_tests.rs"]
mod tests;
