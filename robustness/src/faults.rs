//! The faults the campaign injects, each followed by a wait until every
//! member serves again (a member that never does is a violation).

use std::time::{Duration, Instant};

/// How long a follower restarted behind large values may take to catch up.
pub const CATCH_UP_DEADLINE: Duration = Duration::from_secs(120);

use rand::rngs::StdRng;
use rand::Rng;

use crate::launcher::{Cluster, Flavor, LaunchError};
use crate::traffic::{digest, Recorder};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// kill -9 of a follower, restarted after a pause.
    KillFollower,
    /// kill -9 of the leader, restarted after a pause.
    KillLeader,
    /// kill -9 of every member at once, all restarted.
    KillAll,
    /// SIGSTOP of a member (the leader half of the time), then SIGCONT.
    Pause,
    /// A member (the leader half of the time) cut off from its peers.
    Partition,
    /// MoveLeader to a follower while the clients write.
    MoveLeader,
    /// A follower killed, large values written, the follower restarted and
    /// required to catch up.
    LargeValuesRestart,
    /// A WAL write or fsync error (EIO, ENOSPC) on one member, through kvd's
    /// failpoints: the member must exit non-zero, and restarts.
    DiskError,
    /// fsync of the WAL slowed by 20 to 300 ms on one member or all.
    SlowFsync,
    /// A backend (redb) commit error (EIO, ENOSPC) on one member, through
    /// kvd's `backend-commit` failpoint: the member must exit non-zero, and
    /// restarts (re-applying its raft log).
    BackendError,
    /// Latency and jitter on peer traffic to one member or all (a proxy).
    Delay,
    /// A follower removed (MemberRemove) and added back as a new member
    /// with an empty data dir (MemberAdd; as a learner half of the time,
    /// then promoted).
    MemberReplace,
}

/// Every fault kind, in a fixed order (the campaign shuffles it).
pub const ALL: [Fault; 12] = [
    Fault::KillFollower,
    Fault::KillLeader,
    Fault::KillAll,
    Fault::Pause,
    Fault::Partition,
    Fault::MoveLeader,
    Fault::LargeValuesRestart,
    Fault::DiskError,
    Fault::SlowFsync,
    Fault::BackendError,
    Fault::Delay,
    Fault::MemberReplace,
];

/// Settings of the faults.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Longest time a fault is held before healing.
    pub max_hold: Duration,
    /// Values written while a follower is down (LargeValuesRestart).
    pub large_values: usize,
    /// Size of each large value in bytes.
    pub large_value_size: usize,
    /// Negative control: the disk fault plants a WAL that drops records on
    /// every member, then kills them all.
    pub plant_wal_drop: bool,
    /// Negative control: the disk fault arms a failpoint that does nothing,
    /// as a kvd that swallowed WAL errors would behave.
    pub plant_error_ignored: bool,
    /// Negative control: the slow-fsync fault also drops WAL records while
    /// acknowledging them, on every member, then kills them all.
    pub plant_slow_fsync_drop: bool,
    /// Negative control: the slow-fsync fault arms an fsync error instead,
    /// as a kvd that exits on a slow disk would behave.
    pub plant_slow_fsync_exit: bool,
}

/// What became of one injected fault.
#[derive(Debug)]
pub enum Outcome {
    /// Injected, healed, and every member serves again.
    Survived(String),
    /// Not applicable here (the reason is printed).
    Skipped(String),
}

/// Errors that end a round: the cluster did not recover.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// A member did not serve again after the fault.
    #[error("after {fault:?}: {source}")]
    NotRecovered { fault: Fault, source: LaunchError },
    /// A follower restarted behind large values never caught up.
    #[error(
        "member {member} stayed at revision {at} behind {want} after a restart behind large values"
    )]
    NoCatchUp { member: usize, at: i64, want: i64 },
    /// A WAL or backend commit error did not stop the member as it must.
    #[error("member {member} with failpoint {spec}: {how} (a disk error must be fatal); log tail:\n{log}")]
    NotFatal {
        member: usize,
        spec: &'static str,
        how: String,
        log: String,
    },
    /// The cluster did not take a member back.
    #[error("membership change: {0}")]
    Membership(String),
    /// A member exited under a fault that may only slow it down.
    #[error("member {member} exited under {what}; log tail:\n{log}")]
    Died {
        member: usize,
        what: String,
        log: String,
    },
}

/// Per-round fault state: whether the partition hook works in this binary.
pub struct Injector {
    pub(crate) cfg: FaultConfig,
    partition: Option<Result<(), String>>,
    /// Members added so far (names the next one).
    pub(crate) generation: usize,
    /// Every member replaced this round, for the end-of-round checks.
    pub replaced: Vec<Replaced>,
}

/// A member replaced during a round (MemberRemove, then MemberAdd of a new
/// member with an empty data dir in the same slot).
#[derive(Debug, Clone, Copy)]
pub struct Replaced {
    /// The slot (member index) the new member took.
    pub slot: usize,
    /// The leader's revision just before the old member was removed.
    pub from_rev: i64,
    /// The leader's revision once the new member was started (and promoted).
    pub to_rev: i64,
}

impl Injector {
    /// A new injector; the partition (kvd's hook, or the peer proxies for
    /// etcd) is probed on first use.
    pub fn new(cfg: FaultConfig) -> Injector {
        Injector {
            cfg,
            partition: None,
            generation: 0,
            replaced: Vec::new(),
        }
    }

    pub(crate) fn hold(&self, rng: &mut StdRng) -> Duration {
        let max = self.cfg.max_hold.as_millis().max(200) as u64;
        Duration::from_millis(rng.random_range(100..=max))
    }

    /// Injects `fault`, heals it, and waits until every member serves.
    pub async fn inject(
        &mut self,
        c: &mut Cluster,
        fault: Fault,
        rng: &mut StdRng,
        rec: &Recorder,
    ) -> Result<Outcome, FaultError> {
        let n = c.len();
        let leader = c.leader().await;
        let follower = leader.map(|l| (l + 1 + rng.random_range(0..n.max(2) - 1)) % n);
        let hold = self.hold(rng);
        let done = match fault {
            Fault::KillFollower
            | Fault::KillLeader
            | Fault::LargeValuesRestart
            | Fault::Partition
            | Fault::MoveLeader
            | Fault::Delay
            | Fault::MemberReplace
                if n < 2 =>
            {
                return Ok(Outcome::Skipped(format!("{fault:?} needs 3 members")));
            }
            Fault::KillFollower => {
                let Some(f) = follower else {
                    return Ok(Outcome::Skipped("no leader to tell a follower".into()));
                };
                c.kill9(f);
                tokio::time::sleep(hold).await;
                self.respawn(c, f, fault)?;
                format!("kill -9 follower {f}, down {hold:?}")
            }
            Fault::KillLeader => {
                let Some(l) = leader else {
                    return Ok(Outcome::Skipped("no leader to kill".into()));
                };
                c.kill9(l);
                tokio::time::sleep(hold).await;
                self.respawn(c, l, fault)?;
                format!("kill -9 leader {l}, down {hold:?}")
            }
            Fault::KillAll => {
                for i in 0..n {
                    c.kill9(i);
                }
                tokio::time::sleep(hold).await;
                for i in 0..n {
                    self.respawn(c, i, fault)?;
                }
                format!("kill -9 of all {n} members, down {hold:?}")
            }
            Fault::Pause => {
                let victim = match leader {
                    Some(l) if rng.random_bool(0.5) => l,
                    _ => rng.random_range(0..n),
                };
                c.pause(victim, true);
                tokio::time::sleep(hold * 2).await;
                c.pause(victim, false);
                format!("SIGSTOP member {victim} for {:?}", hold * 2)
            }
            Fault::Partition => {
                let Some(f) = follower else {
                    return Ok(Outcome::Skipped("no leader".into()));
                };
                if let Err(why) = self.probe_partition(c, f).await {
                    return Ok(Outcome::Skipped(why));
                }
                let victim = match leader {
                    Some(l) if rng.random_bool(0.5) => l,
                    _ => f,
                };
                let cut = hold * 3;
                c.isolate(victim, true)
                    .map_err(|source| FaultError::NotRecovered { fault, source })?;
                tokio::time::sleep(cut).await;
                // Cut off, the member has no quorum: a linearizable read
                // through it must not be served (reported, for the record).
                let refused = !served_read(c, victim).await;
                c.isolate(victim, false)
                    .map_err(|source| FaultError::NotRecovered { fault, source })?;
                let role = if Some(victim) == leader {
                    "leader"
                } else {
                    "follower"
                };
                format!("{role} {victim} partitioned for {cut:?} (linearizable read refused while cut off: {refused})")
            }
            Fault::MoveLeader => {
                let (Some(l), Some(f)) = (leader, follower) else {
                    return Ok(Outcome::Skipped("no leader to move".into()));
                };
                let Some((target, _, _)) = c.status(f).await else {
                    return Ok(Outcome::Skipped(format!("member {f} gave no status")));
                };
                let moved = match c.client(l).await {
                    Ok(mut client) => client.move_leader(target).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = moved {
                    return Ok(Outcome::Skipped(format!(
                        "MoveLeader {l} -> {f} refused: {e}"
                    )));
                }
                format!("MoveLeader {l} -> {f}")
            }
            Fault::LargeValuesRestart => {
                let (Some(l), Some(f)) = (leader, follower) else {
                    return Ok(Outcome::Skipped("no leader".into()));
                };
                c.kill9(f);
                let written = self.write_large(c, l, rng, rec).await;
                self.respawn(c, f, fault)?;
                self.catch_up(c, l, f).await?;
                format!(
                    "member {f} restarted behind {written} values of {} bytes",
                    self.cfg.large_value_size
                )
            }
            Fault::DiskError | Fault::BackendError => {
                let victim = match (leader, follower) {
                    (Some(l), _) if n == 1 || rng.random_bool(0.5) => l,
                    (_, Some(f)) => f,
                    _ => rng.random_range(0..n),
                };
                match self.disk_error(c, victim, rng, fault).await? {
                    Outcome::Survived(what) => what,
                    skipped => return Ok(skipped),
                }
            }
            Fault::SlowFsync => match self.slow_fsync(c, leader, rng).await? {
                Outcome::Survived(what) => what,
                skipped => return Ok(skipped),
            },
            Fault::MemberReplace => {
                let (Some(l), Some(f)) = (leader, follower) else {
                    return Ok(Outcome::Skipped("no leader".into()));
                };
                match self.replace_member(c, l, f, rng).await? {
                    Outcome::Survived(what) => what,
                    skipped => return Ok(skipped),
                }
            }
            Fault::Delay => match self.delay(c, leader, rng).await? {
                Outcome::Survived(what) => what,
                skipped => return Ok(skipped),
            },
        };
        c.wait_all_ready()
            .await
            .map_err(|source| FaultError::NotRecovered { fault, source })?;
        Ok(Outcome::Survived(done))
    }

    fn respawn(&self, c: &mut Cluster, i: usize, fault: Fault) -> Result<(), FaultError> {
        c.spawn(i)
            .map_err(|source| FaultError::NotRecovered { fault, source })
    }

    /// Whether the binary has the isolation hook: an isolated follower must
    /// not serve a linearizable read (it cannot reach the leader).
    async fn probe_partition(&mut self, c: &mut Cluster, f: usize) -> Result<(), String> {
        if let Some(known) = &self.partition {
            return known.clone();
        }
        if c.isolate(f, true).is_err() {
            return Err("cannot create the isolation file".into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let served = served_read(c, f).await;
        let _ = c.isolate(f, false);
        let verdict = if served && matches!(c.flavor(), Flavor::Etcd(_)) {
            Err(
                "an etcd member cut off by the peer proxies still served a linearizable read; \
                 partition skipped"
                    .to_string(),
            )
        } else if served {
            Err("this kvd binary has no KVD_FAILPOINT_ISOLATE hook (build it with `cargo test -p kvd` \
                 or the `failpoints` feature); partition skipped"
                .to_string())
        } else {
            Ok(())
        };
        self.partition = Some(verdict.clone());
        if verdict.is_ok() {
            let _ = c.wait_all_ready().await;
        }
        verdict
    }

    /// Puts the configured large values through the leader; acknowledged
    /// ones join the history. Returns how many were acknowledged.
    async fn write_large(&self, c: &Cluster, l: usize, rng: &mut StdRng, rec: &Recorder) -> usize {
        let Ok(mut client) = c.client(l).await else {
            return 0;
        };
        let mut acked = 0;
        for i in 0..self.cfg.large_values {
            let key = format!("big/{}", i % 3);
            let tag: u64 = rng.random();
            let mut value = format!("{tag:016x}").into_bytes();
            value.resize(self.cfg.large_value_size.max(16), b'x');
            if let Ok(r) = client.put(key.as_str(), value.clone(), None).await {
                let rev = r.header().map(|h| h.revision()).unwrap_or(0);
                rec.ack(&key, Some(&digest(&value)), rev, 0);
                acked += 1;
            }
        }
        acked
    }

    /// Waits until follower `f` has applied the leader's revision.
    async fn catch_up(&self, c: &Cluster, l: usize, f: usize) -> Result<(), FaultError> {
        let want = c.status(l).await.map(|s| s.2).unwrap_or(0);
        let deadline = Instant::now() + CATCH_UP_DEADLINE;
        let mut at = 0;
        while Instant::now() < deadline {
            if let Some((_, _, rev)) = c.status(f).await {
                at = rev;
                if rev >= want {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(FaultError::NoCatchUp {
            member: f,
            at,
            want,
        })
    }
}

/// Whether member `i` serves a linearizable read within a few seconds.
async fn served_read(c: &Cluster, i: usize) -> bool {
    match c.client(i).await {
        Ok(mut client) => tokio::time::timeout(Duration::from_secs(4), client.get("probe", None))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false),
        Err(_) => false,
    }
}
