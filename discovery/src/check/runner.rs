//! The check loops of one registration, and the aggregator that turns
//! their state changes into writes of the instance.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Check, CheckKind, CheckState, probe};
use crate::registration::Cmd;
use crate::{Error, Health, Result};

/// How many TTL reports may wait for their check loop.
const TTL_QUEUE: usize = 16;
/// How many state changes may wait for the aggregator.
const CHANGE_QUEUE: usize = 64;

/// The running checks of a registration; dropping it stops them all.
#[derive(Debug)]
pub(crate) struct Checks {
    ttl: HashMap<String, mpsc::Sender<(Health, String)>>,
    _tasks: JoinSet<()>,
}

impl Checks {
    /// Reports a TTL check's state.
    pub(crate) async fn update_ttl(
        &self,
        check: &str,
        health: Health,
        output: String,
    ) -> Result<()> {
        let tx = self
            .ttl
            .get(check)
            .ok_or_else(|| Error::UnknownCheck(check.to_string()))?;
        tx.send((health, super::bounded(output)))
            .await
            .map_err(|_| Error::Closed)
    }
}

/// The states a registration starts with: every check critical until its
/// first result, as Consul's are.
pub(crate) fn initial_states(checks: &[Check]) -> BTreeMap<String, CheckState> {
    checks
        .iter()
        .map(|c| {
            let st = CheckState {
                health: Health::Critical,
                output: "not run yet".into(),
            };
            (c.name.clone(), st)
        })
        .collect()
}

/// Starts the loops of `checks`; state changes go to the registration's
/// task through `cmds` (held weakly, so the registration's drop still
/// closes its channel).
pub(crate) fn spawn(checks: Vec<Check>, cmds: &mpsc::UnboundedSender<Cmd>) -> Checks {
    let mut tasks = JoinSet::new();
    let mut ttl = HashMap::new();
    let (change_tx, change_rx) = mpsc::channel(CHANGE_QUEUE);
    let reap: Vec<(String, Duration)> = checks
        .iter()
        .filter_map(|c| c.deregister_critical_after.map(|d| (c.name.clone(), d)))
        .collect();
    let states = initial_states(&checks);
    for check in checks {
        let tx = change_tx.clone();
        if let CheckKind::Ttl { ttl: limit } = check.kind {
            let (ping_tx, ping_rx) = mpsc::channel(TTL_QUEUE);
            ttl.insert(check.name.clone(), ping_tx);
            tasks.spawn(ttl_loop(check.name, limit, ping_rx, tx));
        } else {
            tasks.spawn(probe_loop(check, tx));
        }
    }
    tasks.spawn(aggregate(states, reap, change_rx, cmds.downgrade()));
    Checks { ttl, _tasks: tasks }
}

/// Runs one probe under the check's timeout.
async fn probe_once(check: &Check) -> probe::Outcome {
    let run = async {
        match &check.kind {
            CheckKind::Http { url } => probe::http(url, &check.tls).await,
            CheckKind::Tcp { addr } => probe::tcp(addr).await,
            CheckKind::Grpc { addr, service } => probe::grpc(addr, service, &check.tls).await,
            CheckKind::Command { program, args } => probe::command(program, args).await,
            CheckKind::Ttl { .. } => (Health::Critical, String::new()),
        }
    };
    match tokio::time::timeout(check.timeout, run).await {
        Ok(outcome) => outcome,
        Err(_) => (
            Health::Critical,
            format!("check timed out after {:?}", check.timeout),
        ),
    }
}

/// Probes every interval; reports a state only when the thresholds say it
/// changed, and the first state the thresholds settle on even if it is the
/// initial critical (so a check failing from the start shows why, not
/// "not run yet").
async fn probe_loop(check: Check, changes: mpsc::Sender<(String, CheckState)>) {
    let mut state = Health::Critical;
    let mut reported = false;
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (health, output) = probe_once(&check).await;
        let next = if health == Health::Passing {
            successes = successes.saturating_add(1);
            failures = 0;
            (successes >= check.success_before_passing).then_some(health)
        } else {
            failures = failures.saturating_add(1);
            successes = 0;
            (failures >= check.failures_before_critical).then_some(health)
        };
        tracing::trace!(check = %check.name, %health, ?next, "probe");
        if let Some(next) = next.filter(|n| *n != state || !reported) {
            state = next;
            reported = true;
            let st = CheckState {
                health: next,
                output,
            };
            if changes.send((check.name.clone(), st)).await.is_err() {
                return;
            }
        }
    }
}

/// Holds the last report for `limit`; turns critical when none follows.
async fn ttl_loop(
    name: String,
    limit: Duration,
    mut pings: mpsc::Receiver<(Health, String)>,
    changes: mpsc::Sender<(String, CheckState)>,
) {
    let mut state = Health::Critical;
    let mut expires: Option<Instant> = None;
    loop {
        let (health, output) = tokio::select! {
            ping = pings.recv() => match ping {
                None => return,
                Some(p) => {
                    expires = Some(Instant::now() + limit);
                    p
                }
            },
            () = sleep_until(expires) => {
                expires = None;
                (Health::Critical, format!("TTL expired: no update within {limit:?}"))
            }
        };
        if health != state {
            state = health;
            let st = CheckState { health, output };
            if changes.send((name.clone(), st)).await.is_err() {
                return;
            }
        }
    }
}

/// Sleeps until `at`; forever if `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Keeps every check's state; each change is one write of the instance
/// (sent to the registration's task). Deregisters once a check with
/// `deregister_critical_after` stays critical that long.
async fn aggregate(
    mut states: BTreeMap<String, CheckState>,
    reap: Vec<(String, Duration)>,
    mut changes: mpsc::Receiver<(String, CheckState)>,
    cmds: mpsc::WeakUnboundedSender<Cmd>,
) {
    // Checks start critical: the clock runs from the start.
    let start = Instant::now();
    let mut critical_since: HashMap<String, Instant> =
        reap.iter().map(|(n, _)| (n.clone(), start)).collect();
    loop {
        let deadline = reap
            .iter()
            .filter_map(|(n, after)| critical_since.get(n).map(|t| (*t + *after, n)))
            .min();
        let change = tokio::select! {
            c = changes.recv() => c,
            () = sleep_until(deadline.map(|(at, _)| at)) => {
                let name = deadline.map(|(_, n)| n.clone()).unwrap_or_default();
                tracing::info!(check = %name, "critical past deregister_critical_after: deregistering");
                if let Some(tx) = cmds.upgrade() {
                    let _ = tx.send(Cmd::Deregister(name));
                }
                return;
            }
        };
        let Some((name, st)) = change else { return };
        if st.health == Health::Critical {
            critical_since
                .entry(name.clone())
                .or_insert_with(Instant::now);
        } else {
            critical_since.remove(&name);
        }
        states.insert(name, st);
        let Some(tx) = cmds.upgrade() else { return };
        if tx.send(Cmd::Checks(states.clone())).is_err() {
            return;
        }
    }
}
