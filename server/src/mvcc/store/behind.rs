//! The write transaction the store keeps open across applied batches.
//!
//! A redb commit does the same fixed work whatever it holds (the dirty
//! tables' roots written into the table tree, checksums of the dirty pages,
//! the freed-page bookkeeping): ~15 us, the largest single part of a lone
//! put's apply. So consecutive non-durable batches share one transaction
//! for up to [`COMMIT_BEHIND`], as etcd's backend commits its batch every
//! 100 ms. No guarantee changes: a non-durable commit is lost in a crash
//! anyway, and the raft log replays it. But the index (which shows every
//! applied batch) may now be ahead of redb's last commit, so everything
//! that reads redb or writes it outside the applier first commits what is
//! open ([`Behind::settle`], [`Behind::take`]), under the mutex the
//! applier holds while it uses the transaction.

use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

use crate::mvcc::MvccError;

/// Longest a batch waits in the open transaction for its commit.
pub(in crate::mvcc) const COMMIT_BEHIND: Duration = Duration::from_millis(5);
/// Most batches one transaction carries.
pub(in crate::mvcc) const MAX_BATCHES: u32 = 1024;

/// The open transaction and what it carries.
pub(in crate::mvcc) struct Open {
    pub(in crate::mvcc) wtx: WriteTransaction,
    since: Instant,
    batches: u32,
}

/// The slot for the open transaction.
#[derive(Default)]
pub(in crate::mvcc) struct Behind {
    open: Mutex<Option<Open>>,
}

/// A write transaction to use now: the open one (which carries applied
/// batches: losing it must stop the member) or a fresh one.
pub(in crate::mvcc) struct Taken {
    pub(in crate::mvcc) wtx: WriteTransaction,
    carried: Option<(Instant, u32)>,
}

impl Taken {
    /// Whether it carries batches already applied (and answered).
    pub(in crate::mvcc) fn carries(&self) -> bool {
        self.carried.is_some()
    }

    /// Whether it should be committed now rather than kept for more.
    pub(in crate::mvcc) fn due(&self) -> bool {
        self.carried.is_some_and(|(since, batches)| {
            batches + 1 >= MAX_BATCHES || since.elapsed() >= COMMIT_BEHIND
        })
    }

    /// Commits it (durably if asked); see [`commit_wtx`] for a failure.
    pub(in crate::mvcc) fn commit(self, durable: bool) -> Result<(), MvccError> {
        let carries = self.carries();
        commit_wtx(self.wtx, durable, carries)
    }

    /// Leaves it open holding one more batch.
    pub(in crate::mvcc) fn keep(self, slot: &mut Option<Open>) {
        let (since, batches) = self.carried.unwrap_or((Instant::now(), 0));
        *slot = Some(Open {
            wtx: self.wtx,
            since,
            batches: batches + 1,
        });
    }
}

impl Behind {
    /// The slot, locked: whoever writes holds it while it uses the
    /// transaction. Lock order: the store's `db`, then `state`, then this.
    pub(in crate::mvcc) fn lock(&self) -> MutexGuard<'_, Option<Open>> {
        self.open.lock()
    }

    /// Takes the open transaction out of the locked slot, or begins one
    /// (not durable unless the caller says so).
    pub(in crate::mvcc) fn take(
        slot: &mut Option<Open>,
        db: &Database,
    ) -> Result<Taken, MvccError> {
        if let Some(o) = slot.take() {
            return Ok(Taken {
                wtx: o.wtx,
                carried: Some((o.since, o.batches)),
            });
        }
        let mut wtx = db.begin_write()?;
        wtx.set_durability(redb::Durability::None)?;
        Ok(Taken { wtx, carried: None })
    }

    /// Commits the open transaction, if any, so redb's committed state holds
    /// every applied batch.
    pub(in crate::mvcc) fn settle(&self) -> Result<(), MvccError> {
        settle_locked(&mut self.lock())
    }

    /// Commits the open transaction as the store closes; a failure is only
    /// logged there (the raft log replays what it carried).
    pub(in crate::mvcc) fn close(&self) {
        if let Some(o) = self.lock().take() {
            if let Err(e) = o.wtx.commit() {
                tracing::error!(error = %e, "committing the open backend transaction at close failed (the raft log replays it)");
            }
        }
    }

    /// A read transaction that sees every applied batch.
    pub(in crate::mvcc) fn begin_read(&self, db: &Database) -> Result<ReadTransaction, MvccError> {
        self.settle()?;
        Ok(db.begin_read()?)
    }
}

/// [`Behind::settle`] with the slot already locked.
pub(in crate::mvcc) fn settle_locked(slot: &mut Option<Open>) -> Result<(), MvccError> {
    match slot.take() {
        Some(o) => commit_wtx(o.wtx, false, true),
        None => Ok(()),
    }
}

/// Commits `wtx` (durably if asked). When it `carries` applied batches, a
/// failure stops the process: those batches were answered, and an index
/// that shows them over a backend without them cannot be put back; a
/// restart replays them from the raft log (etcd stops on a failed bolt
/// commit too).
fn commit_wtx(mut wtx: WriteTransaction, durable: bool, carries: bool) -> Result<(), MvccError> {
    let result = (|| {
        if durable {
            wtx.set_durability(redb::Durability::Immediate)?;
        }
        let _timer = crate::metrics::backend_commit();
        wtx.commit()?;
        Ok(())
    })();
    if let (Err(e), true) = (&result, carries) {
        fatal(e);
    }
    result
}

/// Logs `e` as fatal and exits (see [`commit_wtx`]).
pub(in crate::mvcc) fn fatal(e: &MvccError) -> ! {
    tracing::error!(error = %e, "fatal storage error: a backend transaction holding applied batches failed; exiting (restart recovers from the raft log)");
    std::process::exit(1);
}
