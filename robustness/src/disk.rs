//! Disk and network-delay faults: WAL write and fsync errors and backend
//! (redb) commit errors (which must stop the member: etcd treats a WAL
//! error and a failed backend commit as fatal), slow fsync (which may only
//! slow it down), and latency on peer traffic through the harness's
//! proxies. Disk faults use kvd's failpoints (`server/src/raft/failpoint.rs`,
//! test builds only), armed at runtime through each member's failpoint file.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::faults::{Fault, FaultError, Injector, Outcome};
use crate::launcher::{Cluster, Flavor};

/// How long a member may keep running after its WAL starts failing.
pub const FATAL_DEADLINE: Duration = Duration::from_secs(15);
/// How long after slow fsyncs end a member's exit still counts against them.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// The line kvd logs when it exits on a storage error.
pub const FATAL_LOG: &str = "fatal storage error";
/// The WAL errors injected, as failpoint specs.
const WAL_ERRORS: [&str; 3] = ["wal-fsync=eio", "wal-write=eio", "wal-write=enospc"];
/// The backend commit errors injected, as failpoint specs.
const BACKEND_ERRORS: [&str; 2] = ["backend-commit=enospc", "backend-commit=eio"];

impl Injector {
    /// Why disk faults cannot run against this cluster, if they cannot.
    fn disk_unsupported(&self, c: &Cluster, i: usize) -> Option<String> {
        if matches!(c.flavor(), Flavor::Etcd(_)) {
            return Some("etcd has no kvd disk failpoints (disk faults skipped)".into());
        }
        if !c.has_failpoints(i) {
            return Some(
                "this kvd binary has no failpoints (build it with `cargo test -p kvd` or the \
                 `failpoints` feature); disk faults skipped"
                    .into(),
            );
        }
        None
    }

    /// A WAL write or fsync error ([`Fault::DiskError`]) or a backend commit
    /// error ([`Fault::BackendError`]) on one member: it must exit non-zero
    /// with a clear log line, and restart on its data dir (a restart
    /// re-applies the raft log the backend had not committed).
    pub(crate) async fn disk_error(
        &mut self,
        c: &mut Cluster,
        victim: usize,
        rng: &mut StdRng,
        fault: Fault,
    ) -> Result<Outcome, FaultError> {
        if let Some(why) = self.disk_unsupported(c, victim) {
            return Ok(Outcome::Skipped(why));
        }
        let fail = |source| FaultError::NotRecovered { fault, source };
        if self.cfg.plant_wal_drop && fault == Fault::DiskError {
            return self.planted_wal_drop(c, rng).await;
        }
        let errors: &[&'static str] = if fault == Fault::BackendError {
            &BACKEND_ERRORS
        } else {
            &WAL_ERRORS
        };
        let mut spec = errors.choose(rng).copied().unwrap_or(errors[0]);
        if self.cfg.plant_error_ignored {
            // Negative control: a kvd that swallows the disk error behaves
            // like one whose failpoint does nothing.
            tracing::warn!("planting a kvd that ignores disk errors");
            spec = "wal-fsync=sleep(0)";
        }
        let before = c.log_len(victim);
        c.set_failpoints(victim, Some(spec)).map_err(fail)?;
        let exit = c.wait_exit(victim, FATAL_DEADLINE).await;
        c.set_failpoints(victim, None).map_err(fail)?;
        let full = c.log_since(victim, before);
        let said_fatal = full.contains(FATAL_LOG);
        // The lines worth showing: kvd's own, not a backtrace.
        let lines: Vec<&str> = full.lines().filter(|l| l.contains("Z ")).collect();
        let log = lines[lines.len().saturating_sub(12)..].join("\n");
        let how = match exit {
            None => {
                c.kill9(victim);
                return Err(FaultError::NotFatal {
                    member: victim,
                    spec,
                    how: format!("still running after {FATAL_DEADLINE:?}"),
                    log,
                });
            }
            Some(status) if status.success() => {
                return Err(FaultError::NotFatal {
                    member: victim,
                    spec,
                    how: "exited with status 0".into(),
                    log,
                });
            }
            Some(status) if !said_fatal => {
                return Err(FaultError::NotFatal {
                    member: victim,
                    spec,
                    how: format!("exited ({status}) without logging {FATAL_LOG:?}"),
                    log,
                });
            }
            Some(status) => status,
        };
        tokio::time::sleep(self.hold(rng)).await;
        c.spawn(victim).map_err(fail)?;
        Ok(Outcome::Survived(format!(
            "{spec} on member {victim}: exited ({how}) with {FATAL_LOG:?}, restarted"
        )))
    }

    /// Negative control: every member silently drops its WAL records (the
    /// planted bug acknowledges writes that are not on disk), then all are
    /// killed and restarted. The campaign must report lost writes.
    async fn planted_wal_drop(
        &mut self,
        c: &mut Cluster,
        rng: &mut StdRng,
    ) -> Result<Outcome, FaultError> {
        let fault = Fault::DiskError;
        let fail = |source| FaultError::NotRecovered { fault, source };
        tracing::warn!("planting a WAL that drops records on every member");
        for i in 0..c.len() {
            c.set_failpoints(i, Some("wal-write=drop")).map_err(fail)?;
        }
        let hold = self.hold(rng) * 2;
        tokio::time::sleep(hold).await;
        for i in 0..c.len() {
            c.kill9(i);
        }
        for i in 0..c.len() {
            c.spawn(i).map_err(fail)?;
        }
        Ok(Outcome::Survived(format!(
            "planted: WAL records dropped on every member for {hold:?}, then kill -9 of all"
        )))
    }

    /// Slow fsync on one member or all: every member must keep running.
    pub(crate) async fn slow_fsync(
        &mut self,
        c: &mut Cluster,
        leader: Option<usize>,
        rng: &mut StdRng,
    ) -> Result<Outcome, FaultError> {
        let fault = Fault::SlowFsync;
        if let Some(why) = self.disk_unsupported(c, 0) {
            return Ok(Outcome::Skipped(why));
        }
        let fail = |source| FaultError::NotRecovered { fault, source };
        let n = c.len();
        let mut victims: Vec<usize> = match leader {
            _ if rng.random_bool(0.3) => (0..n).collect(),
            Some(l) if rng.random_bool(0.5) => vec![l],
            _ => vec![rng.random_range(0..n)],
        };
        let ms: u64 = rng.random_range(20..=300);
        let mut spec = format!("wal-fsync=sleep({ms})");
        let planted = self.cfg.plant_slow_fsync_drop;
        if planted {
            // Negative control: a kvd that acknowledges a record before its
            // slow write is done, on every member (the records are dropped
            // while acknowledged), then all killed: lost writes.
            tracing::warn!("planting slow fsyncs that acknowledge unwritten records");
            victims = (0..n).collect();
            spec = format!("{spec},wal-write=drop");
        } else if self.cfg.plant_slow_fsync_exit {
            // Negative control: a kvd that gives up on a slow disk and
            // exits; the fault must report the member died.
            tracing::warn!("planting a kvd that exits on a slow fsync");
            spec = "wal-fsync=eio".to_string();
        }
        for &v in &victims {
            c.set_failpoints(v, Some(&spec)).map_err(fail)?;
        }
        let hold = self.hold(rng) * 3;
        tokio::time::sleep(hold).await;
        if planted {
            for i in 0..n {
                c.kill9(i);
            }
        }
        for &v in &victims {
            c.set_failpoints(v, None).map_err(fail)?;
        }
        if planted {
            for i in 0..n {
                c.spawn(i).map_err(fail)?;
            }
            return Ok(Outcome::Survived(format!(
                "planted: {spec} on every member for {hold:?}, then kill -9 of all"
            )));
        }
        // A member that dies just after the slow fsyncs died of them too.
        tokio::time::sleep(EXIT_GRACE).await;
        for &v in &victims {
            // The planted exit gets the time a fatal error may take, so the
            // control does not depend on how fast the member exits.
            let wait = if self.cfg.plant_slow_fsync_exit {
                FATAL_DEADLINE
            } else {
                Duration::ZERO
            };
            if let Some(status) = c.wait_exit(v, wait).await {
                return Err(FaultError::Died {
                    member: v,
                    what: format!("{spec} ({status})"),
                    log: c.log_tail(v, 20),
                });
            }
        }
        Ok(Outcome::Survived(format!(
            "{spec} on members {victims:?} for {hold:?}"
        )))
    }

    /// Latency (plus jitter) on peer traffic to one member or to all.
    pub(crate) async fn delay(
        &mut self,
        c: &mut Cluster,
        leader: Option<usize>,
        rng: &mut StdRng,
    ) -> Result<Outcome, FaultError> {
        let n = c.len();
        let victims: Vec<usize> = match leader {
            _ if rng.random_bool(0.4) => (0..n).collect(),
            Some(l) if rng.random_bool(0.5) => vec![l],
            _ => vec![rng.random_range(0..n)],
        };
        let base = Duration::from_millis(rng.random_range(10..=150));
        let jitter = Duration::from_millis(rng.random_range(0..=base.as_millis() as u64));
        for &v in &victims {
            c.set_delay(v, base, jitter);
        }
        let hold = self.hold(rng) * 3;
        let started = tokio::time::Instant::now();
        // For the record (not asserted): a linearizable read through a
        // delayed member needs a round trip to the leader.
        let probe = probe_read(c, victims[0]).await;
        tokio::time::sleep(hold.saturating_sub(started.elapsed())).await;
        for &v in &victims {
            c.set_delay(v, Duration::ZERO, Duration::ZERO);
        }
        Ok(Outcome::Survived(format!(
            "peer traffic to members {victims:?} delayed {base:?} + up to {jitter:?} for {hold:?} \
             (a linearizable read through member {}: {probe})",
            victims[0]
        )))
    }
}

/// How long one linearizable get through member `i` took, or why it failed.
async fn probe_read(c: &Cluster, i: usize) -> String {
    let started = tokio::time::Instant::now();
    match c.client(i).await {
        Ok(mut client) => match client.get("probe", None).await {
            Ok(_) => format!("{:?}", started.elapsed()),
            Err(e) => format!("failed: {e}"),
        },
        Err(e) => format!("no client: {e}"),
    }
}
