//! One round: a fresh cluster, clients and watchers, faults from a seeded
//! RNG, then the end-of-round observations and the checks. A campaign is a
//! number of rounds (or as many as fit a duration).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tracing::{info, warn};

use crate::check::{self, FinalKv, Observed, Verdict};
use crate::faults::{Fault, FaultConfig, Injector, Outcome, Replaced, ALL};
use crate::launcher::{Cluster, Flavor, LaunchError};
use crate::linearizable::Kind;
use crate::traffic::{self, digest, History, Recorder};
use crate::watcher::{self, MAX_MESSAGE};

/// Concurrent watchers per round.
const WATCHERS: usize = 3;
/// How long watchers may take to deliver the final revision once traffic stops.
const WATCH_DRAIN: Duration = Duration::from_secs(90);
/// How long to wait for a worker to notice the stop flag.
const WORKER_STOP: Duration = Duration::from_secs(30);
/// How long a member may take to reach the final revision for HashKV.
const HASH_DEADLINE: Duration = Duration::from_secs(60);
/// Traffic before the first fault and between faults.
const SETTLE: Duration = Duration::from_millis(700);

/// Deliberate corruptions of a recorded history (negative controls).
#[derive(Debug, Clone, Copy, Default)]
pub struct Plant {
    /// Remove one acknowledged write from the final history.
    pub lost_write: bool,
    /// Deliver one event twice to the first watcher.
    pub watch_duplicate: bool,
    /// Make one answered read report a value no one wrote.
    pub phantom_read: bool,
    /// Remove one acknowledged write made while a member was replaced from
    /// the history read from the new member.
    pub replace_lost_write: bool,
}

/// Settings of a campaign.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server under test.
    pub flavor: Flavor,
    /// Members per cluster (1 or 3).
    pub members: usize,
    /// Client workers per round.
    pub clients: usize,
    /// Faults injected per round.
    pub faults_per_round: usize,
    /// The fault kinds to draw from (empty: all).
    pub only: Vec<Fault>,
    /// Rounds to run (at least one).
    pub rounds: usize,
    /// Or: keep starting rounds until this much time has passed.
    pub duration: Option<Duration>,
    /// Seed of every random choice the harness makes.
    pub seed: u64,
    /// Fault settings.
    pub faults: FaultConfig,
    /// Negative controls.
    pub plant: Plant,
}

/// The totals of a campaign.
#[derive(Debug, Default)]
pub struct Report {
    /// Faults injected and recovered from.
    pub faults_survived: usize,
    /// Histories (rounds) fully checked.
    pub histories_checked: usize,
    /// Every violation found, prefixed by its round.
    pub violations: Vec<String>,
    /// Linearizability searches left undecided (bounded search).
    pub undecided: Vec<String>,
    /// Reasons faults were skipped (deduplicated).
    pub skipped: Vec<String>,
    /// Faults skipped (not applicable to this server or cluster).
    pub faults_skipped: usize,
    /// Operations answered and failed, over all rounds.
    pub answered: usize,
    /// Operations that failed or timed out.
    pub failed: usize,
}

impl Report {
    /// The closing line.
    pub fn summary(&self) -> String {
        format!(
            "faults survived {} / histories checked {} / violations {} / faults skipped {}",
            self.faults_survived,
            self.histories_checked,
            self.violations.len(),
            self.faults_skipped
        )
    }
}

/// Runs the campaign.
pub async fn run(cfg: &Config) -> Report {
    let mut report = Report::default();
    let started = Instant::now();
    let mut round = 0;
    loop {
        let more = match cfg.duration {
            Some(d) => round == 0 || started.elapsed() < d,
            None => round < cfg.rounds.max(1),
        };
        if !more {
            break;
        }
        let seed = cfg.seed.wrapping_add(round as u64);
        info!(round, seed, "round starts");
        if let Err(e) = run_round(cfg, round, seed, &mut report).await {
            report
                .violations
                .push(format!("round {round} (seed {seed}): {e}"));
        }
        round += 1;
    }
    report
}

/// Errors that end a round before its history can be checked.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// The cluster could not be started or did not serve at the end.
    #[error("{0}")]
    Launch(#[from] LaunchError),
    /// A fault was not recovered from.
    #[error("{0}")]
    Fault(#[from] crate::faults::FaultError),
    /// The end-of-round reads failed.
    #[error("final read: {0}")]
    Final(String),
}

async fn run_round(
    cfg: &Config,
    round: usize,
    seed: u64,
    report: &mut Report,
) -> Result<(), RoundError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::start(cfg.flavor.clone(), cfg.members).await?;
    let endpoints: Vec<String> = (0..cluster.len()).map(|i| cluster.endpoint(i)).collect();
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicI64::new(i64::MAX));
    let start_rev = cluster.status(0).await.map(|s| s.2).unwrap_or(1).max(1);
    let watchers: Vec<_> = (0..WATCHERS)
        .map(|w| {
            let from = if w == 0 { 1 } else { start_rev + 1 };
            tokio::spawn(watcher::run(
                endpoints.clone(),
                w,
                from,
                target.clone(),
                WATCH_DRAIN,
            ))
        })
        .collect();
    let workers: Vec<_> = (0..cfg.clients)
        .map(|id| {
            let ep = endpoints[id % endpoints.len()].clone();
            tokio::spawn(traffic::worker(id, seed, ep, rec.clone(), stop.clone()))
        })
        .collect();

    let mut injector = Injector::new(cfg.faults.clone());
    let mut plan: Vec<_> = Vec::new();
    while plan.len() < cfg.faults_per_round {
        let mut kinds = if cfg.only.is_empty() {
            ALL.to_vec()
        } else {
            cfg.only.clone()
        };
        kinds.shuffle(&mut rng);
        plan.extend(kinds);
    }
    plan.truncate(cfg.faults_per_round);
    tokio::time::sleep(SETTLE).await;
    let mut fault_err = None;
    for fault in plan {
        match injector.inject(&mut cluster, fault, &mut rng, &rec).await {
            Ok(Outcome::Survived(what)) => {
                info!(round, "fault survived: {what}");
                report.faults_survived += 1;
            }
            Ok(Outcome::Skipped(why)) => {
                info!(round, "fault skipped: {why}");
                report.faults_skipped += 1;
                if !report.skipped.contains(&why) {
                    report.skipped.push(why);
                }
            }
            Err(e) => {
                warn!(round, "fault not survived: {e}");
                fault_err = Some(e);
                break;
            }
        }
        tokio::time::sleep(SETTLE).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        if tokio::time::timeout(WORKER_STOP, w).await.is_err() {
            warn!(round, "a client worker did not stop in time");
        }
    }
    if let Some(e) = fault_err {
        target.store(0, Ordering::Relaxed);
        return Err(e.into());
    }
    cluster.wait_all_ready().await?;
    let (final_rev, state) = final_state(&cluster).await?;
    target.store(final_rev, Ordering::Relaxed);
    let mut recordings = Vec::new();
    for w in watchers {
        if let Ok(r) = w.await {
            recordings.push(r);
        }
    }
    let reference = watcher::read_range(&endpoints[0], 1, final_rev)
        .await
        .map_err(RoundError::Final)?;
    let from = rng.random_range(1..=final_rev.max(1));
    let other = &endpoints[endpoints.len() - 1];
    let resumed = Some((from, watcher::read_range(other, from, final_rev).await));
    let hashes = hashes(&cluster, final_rev).await;
    // The whole history again from each member that was replaced: it must
    // hold every acknowledged write, those made while it was away included.
    let mut replaced = Vec::new();
    for r in &injector.replaced {
        if replaced.iter().all(|(slot, _)| *slot != r.slot) {
            let events = watcher::read_range(&endpoints[r.slot], 1, final_rev).await;
            replaced.push((r.slot, events));
        }
    }
    let mut obs = Observed {
        final_rev,
        reference,
        state,
        watchers: recordings,
        resumed,
        hashes,
        replaced,
    };
    info!(
        round,
        final_rev,
        reference_events = obs.reference.len(),
        watcher_events = ?obs.watchers.iter().map(|w| w.events().len()).collect::<Vec<_>>(),
        watcher_resumes = ?obs.watchers.iter().map(|w| w.resumes.len()).collect::<Vec<_>>(),
        hashes = ?obs.hashes,
        "observed"
    );
    let mut history = rec.snapshot();
    plant(cfg.plant, &mut history, &mut obs);
    if cfg.plant.replace_lost_write {
        plant_replace_lost_write(&injector.replaced, &history, &mut obs);
    }
    let verdict = check::check(&history, &obs);
    if !verdict.violations.is_empty() {
        dump(round, seed, &history, &obs);
    }
    record(round, seed, &mut history, verdict, report);
    Ok(())
}

/// Applies the negative controls to the observations.
fn plant(p: Plant, history: &mut History, obs: &mut Observed) {
    if p.phantom_read {
        let read = history
            .ops
            .iter_mut()
            .find(|o| o.ret.is_some() && matches!(o.kind, Kind::Read(_)));
        if let Some(op) = read {
            warn!("planting a phantom read on {}", op.key);
            op.kind = Kind::Read(Some("planted-never-written".into()));
        }
    }
    if p.lost_write {
        let acked: Vec<_> = history
            .acks
            .iter()
            .filter(|a| a.value.is_some() && a.key.starts_with(traffic::KV_PREFIX))
            .collect();
        if let Some(a) = acked.get(acked.len() / 2) {
            warn!("planting a lost write: {} at revision {}", a.key, a.rev);
            obs.reference
                .retain(|e| !(e.rev == a.rev && e.key == a.key));
        }
    }
    if p.watch_duplicate {
        if let Some(w) = obs.watchers.first_mut() {
            if let Some(resp) = w.responses.iter_mut().find(|r| !r.is_empty()) {
                let dup = resp[0].clone();
                warn!("planting a duplicate watch event at revision {}", dup.rev);
                resp.insert(1, dup);
            }
        }
    }
}

/// Negative control: removes, from the history read from the first replaced
/// member, one acknowledged write made while it was being replaced.
fn plant_replace_lost_write(replaced: &[Replaced], history: &History, obs: &mut Observed) {
    let Some(r) = replaced.first() else {
        warn!("no member was replaced: nothing to plant");
        return;
    };
    let in_window = |rev: i64| rev > r.from_rev && rev <= r.to_rev;
    let acked: Vec<_> = history
        .acks
        .iter()
        .filter(|a| a.value.is_some() && a.key.starts_with(traffic::KV_PREFIX))
        .collect();
    // Writes made while the member was away; failing that, any after.
    let pick = acked
        .iter()
        .find(|a| in_window(a.rev))
        .or_else(|| acked.iter().find(|a| a.rev > r.from_rev));
    let Some(a) = pick else {
        warn!("no acknowledged write after the replace: nothing to plant");
        return;
    };
    if let Some((slot, Ok(events))) = obs.replaced.iter_mut().find(|(s, _)| *s == r.slot) {
        warn!(
            "planting a write lost across the replace of member {slot}: {} at revision {}",
            a.key, a.rev
        );
        events.retain(|e| !(e.rev == a.rev && e.key == a.key));
    }
}

fn record(round: usize, seed: u64, history: &mut History, verdict: Verdict, report: &mut Report) {
    report.histories_checked += 1;
    report.answered += history.answered;
    report.failed += history.failed;
    info!(
        round,
        ops = history.ops.len(),
        acks = history.acks.len(),
        answered = history.answered,
        failed = history.failed,
        violations = verdict.violations.len(),
        "history checked"
    );
    for v in verdict.violations {
        report
            .violations
            .push(format!("round {round} (seed {seed}): {v}"));
    }
    for u in verdict.undecided {
        report
            .undecided
            .push(format!("round {round} (seed {seed}): {u}"));
    }
}

/// Writes a failed round's history and final history to the temp dir, for
/// whoever investigates the violation.
fn dump(round: usize, seed: u64, history: &History, obs: &Observed) {
    let path = std::env::temp_dir().join(format!("kv-robustness-seed{seed}-round{round}.txt"));
    let mut ops = history.ops.clone();
    ops.sort_by(|a, b| (&a.key, a.call).cmp(&(&b.key, b.call)));
    let mut text = String::from("# operations: key call_us ret_us kind\n");
    for o in &ops {
        let ret = o.ret.map(|r| (r / 1000).to_string()).unwrap_or("-".into());
        text.push_str(&format!("{} {} {ret} {:?}\n", o.key, o.call / 1000, o.kind));
    }
    text.push_str("# acknowledged writes\n");
    for a in &history.acks {
        text.push_str(&format!("{a:?}\n"));
    }
    text.push_str(&format!("# final history to revision {}\n", obs.final_rev));
    for e in &obs.reference {
        text.push_str(&format!("{e:?}\n"));
    }
    match std::fs::write(&path, text) {
        Ok(()) => warn!(round, "history written to {}", path.display()),
        Err(e) => warn!(round, "could not write {}: {e}", path.display()),
    }
}

/// The whole keyspace at the final revision, read linearizably.
async fn final_state(c: &Cluster) -> Result<(i64, BTreeMap<String, FinalKv>), RoundError> {
    let leader = c.leader().await.unwrap_or(0);
    let client = c
        .client(leader)
        .await
        .map_err(|e| RoundError::Final(e.to_string()))?;
    let mut kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
    let r = kv
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .map_err(|e| RoundError::Final(e.to_string()))?;
    let rev = r.header().map(|h| h.revision()).unwrap_or(0);
    let state = r
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                FinalKv {
                    value: digest(kv.value()),
                    mod_rev: kv.mod_revision(),
                    lease: kv.lease(),
                },
            )
        })
        .collect();
    Ok((rev, state))
}

/// HashKV at `rev` on every member, retried while a member catches up.
async fn hashes(c: &Cluster, rev: i64) -> Vec<Result<(u32, i64), String>> {
    let mut out = Vec::new();
    for i in 0..c.len() {
        let mut last = Err("no answer".to_string());
        let deadline = Instant::now() + HASH_DEADLINE;
        while Instant::now() < deadline {
            // Wait until the member has applied `rev` (HashKV of a future
            // revision is an error).
            let applied = c.status(i).await.map(|s| s.2).unwrap_or(0);
            if applied >= rev {
                last = match c.client(i).await {
                    Ok(mut client) => client
                        .hash_kv(rev)
                        .await
                        .map(|h| (h.hash(), h.compact_version()))
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if last.is_ok() {
                    break;
                }
            } else {
                last = Err(format!("member at revision {applied} only"));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        out.push(last);
    }
    out
}
