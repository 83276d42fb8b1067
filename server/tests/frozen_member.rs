//! A member frozen (SIGSTOP) for several election timeouts and then resumed
//! (SIGCONT) must not cost a three-member kvd cluster its leader, as with
//! etcd's --pre-vote: a resumed follower comes back without an election; a
//! resumed leader that was replaced meanwhile steps down to follow the new
//! one, with no second election and the term unchanged. Each case also runs
//! under writes through every member. Checked with Status (leader,
//! raft_term) on every member before and after, and with puts through the
//! remaining members from the moment of SIGCONT, each of which must succeed
//! at its first try (the client suite once saw NoLeader right there).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, DEADLINE};
use common::{kvd_only, wait_until};
use nix::sys::signal::Signal;

/// kvd's default --election-timeout: the clusters here run on the default
/// timers, as the client suite's do.
const ELECTION: Duration = Duration::from_secs(1);

/// One test of this file at a time: clusters freezing and thawing side by
/// side on a two-core machine would starve each other's heartbeats, which
/// is not what is tested here (the CPU-hog runs load the machine on purpose).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Phases of a test, as the writers record them with each put.
const BEFORE: u8 = 0;
const FROZEN: u8 = 1;
const RESUMED: u8 = 2;

/// A member's view: (leader ID, raft term, applied index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    leader: u64,
    term: u64,
    applied: u64,
}

impl View {
    fn standing(&self) -> (u64, u64) {
        (self.leader, self.term)
    }
}

/// Member `i`'s Status; `None` while it does not answer.
async fn view(c: &Cluster, i: usize) -> Option<View> {
    let mut m = c.client_opt(i).await?;
    let st = tokio::time::timeout(Duration::from_secs(3), m.status())
        .await
        .ok()?
        .ok()?;
    Some(View {
        leader: st.leader(),
        term: st.raft_term(),
        applied: st.raft_applied_index(),
    })
}

/// (leader, term) as member `i` reports them; panics if it does not answer.
async fn standing(c: &Cluster, i: usize) -> (u64, u64) {
    match view(c, i).await {
        Some(v) => v.standing(),
        None => panic!("member {i} does not answer Status\n{}", c.logs()),
    }
}

/// Waits until every member of `members` reports the same leader (not
/// `not`) and term; returns that (leader, term).
async fn agreed(c: &Cluster, members: &[usize], not: u64) -> (u64, u64) {
    wait_until("the members to agree on a leader", DEADLINE, || async {
        let mut seen = Vec::new();
        for &i in members {
            seen.push(view(c, i).await?.standing());
        }
        let first = seen[0];
        (first.0 != 0 && first.0 != not && seen.iter().all(|s| *s == first)).then_some(first)
    })
    .await
}

/// Each member's ID, by index.
async fn member_ids(c: &Cluster) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..c.members.len() {
        let mut m = c.client(i).await;
        let st = m.status().await.expect("status");
        ids.push(st.header().expect("header").member_id());
    }
    ids
}

/// Waits until member `i` has applied everything the leader (`leader`) had
/// in its log when this was called.
async fn caught_up(c: &Cluster, i: usize, leader: usize) {
    let mut l = c.client(leader).await;
    let target = l.status().await.expect("leader status").raft_index();
    wait_until("the resumed member to catch up", DEADLINE, || async {
        (view(c, i).await?.applied >= target).then_some(())
    })
    .await;
}

/// Puts through `members` in turn for `span` from now (the moment of
/// SIGCONT): each must succeed at its first try. Clients are connected
/// before, so the first put leaves at once.
async fn puts_right_after(
    c: &Cluster,
    clients: &mut [(usize, etcd_client::Client)],
    span: Duration,
) {
    let start = Instant::now();
    let mut n = 0usize;
    while n < clients.len() || start.elapsed() < span {
        let (i, client) = &mut clients[n % clients.len()];
        let key = format!("after/{n}");
        if let Err(e) = client.put(key, "v", None).await {
            panic!(
                "put #{n} through member {i}, {:?} after SIGCONT, failed: {e}\n{}",
                start.elapsed(),
                c.logs()
            );
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one writer saw: puts acknowledged and errors, by phase.
#[derive(Debug, Default)]
struct Outcome {
    ok: [u32; 3],
    errors: Vec<(u8, String)>,
}

/// Writers through every member, each recording its puts by the phase in
/// which they started.
struct Load {
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<Outcome>>,
}

impl Load {
    async fn start(c: &Arc<Cluster>) -> Load {
        let phase = Arc::new(AtomicU8::new(BEFORE));
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for i in 0..c.members.len() {
            let mut client = c.client(i).await;
            let (phase, stop) = (phase.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut out = Outcome::default();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let p = phase.load(Ordering::SeqCst);
                    match client.put(format!("w{i}/{n}"), "v", None).await {
                        Ok(_) => out.ok[usize::from(p)] += 1,
                        Err(e) => out.errors.push((p, e.to_string())),
                    }
                    n += 1;
                }
                out
            }));
        }
        Load {
            phase,
            stop,
            writers,
        }
    }

    fn enter(&self, phase: u8) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// Stops the writers and checks what the members other than `frozen`
    /// saw: no error once the cluster had a leader again (`clean_from`,
    /// FROZEN for a frozen follower, RESUMED for a frozen leader, whose loss
    /// rightly fails the writes until the next one is elected), and puts
    /// acknowledged after the resume.
    async fn finish(self, c: &Cluster, frozen: usize, clean_from: u8) {
        self.stop.store(true, Ordering::SeqCst);
        for (i, w) in self.writers.into_iter().enumerate() {
            let out = w.await.expect("writer task");
            eprintln!("writer through member {i}: {out:?}");
            if i == frozen {
                continue;
            }
            let bad: Vec<_> = out
                .errors
                .iter()
                .filter(|(p, _)| *p >= clean_from)
                .collect();
            assert!(
                bad.is_empty(),
                "writes through member {i} failed (phase {clean_from} on): {bad:?}\n{}",
                c.logs()
            );
            assert!(
                out.ok[usize::from(RESUMED)] > 0,
                "no write through member {i} after the resume: {out:?}"
            );
        }
    }
}

/// (a), and (c) with `load`: a follower frozen for four election timeouts,
/// then resumed. No election at all: the same leader in the same term
/// throughout, on every member.
async fn frozen_follower(load: bool) {
    let c = Arc::new(Cluster::start(3).await);
    let leader = c.leader().await;
    let before = agreed(&c, &[0, 1, 2], 0).await;
    let frozen = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|i| *i != frozen).collect();
    let load = match load {
        true => Some(Load::start(&c).await),
        false => None,
    };
    tokio::time::sleep(ELECTION).await;

    c.signal(frozen, Signal::SIGSTOP);
    load.iter().for_each(|l| l.enter(FROZEN));
    tokio::time::sleep(ELECTION * 4).await;
    for &i in &others {
        assert_eq!(
            standing(&c, i).await,
            before,
            "member {i}: the leadership changed while a follower was frozen\n{}",
            c.logs()
        );
    }

    let mut clients = Vec::new();
    for &i in &others {
        clients.push((i, c.client(i).await));
    }
    c.signal(frozen, Signal::SIGCONT);
    load.iter().for_each(|l| l.enter(RESUMED));
    puts_right_after(&c, &mut clients, ELECTION * 3).await;
    caught_up(&c, frozen, leader).await;
    // A disruption by the resumed member (a campaign after its own election
    // timeout) would have happened by now.
    tokio::time::sleep(ELECTION * 2).await;
    if let Some(l) = load {
        l.finish(&c, frozen, FROZEN).await;
    }
    for i in 0..3 {
        assert_eq!(
            standing(&c, i).await,
            before,
            "member {i}: (leader, term) changed after the follower {frozen} resumed\n{}",
            c.logs()
        );
    }
}

/// (b), and (c) with `load`: the leader frozen until the others elected a
/// new one and then for three more election timeouts, then resumed. The old
/// leader steps down to follow the new one; the new leader stays, in the
/// term it was elected in.
async fn frozen_leader(load: bool) {
    let c = Arc::new(Cluster::start(3).await);
    let ids = member_ids(&c).await;
    let frozen = c.leader().await;
    let before = agreed(&c, &[0, 1, 2], 0).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != frozen).collect();
    let load = match load {
        true => Some(Load::start(&c).await),
        false => None,
    };
    tokio::time::sleep(ELECTION).await;

    c.signal(frozen, Signal::SIGSTOP);
    load.iter().for_each(|l| l.enter(FROZEN));
    let after = agreed(&c, &others, ids[frozen]).await;
    assert!(
        after.1 > before.1,
        "a new leader in an old term: {before:?} -> {after:?}"
    );
    // Frozen for several election timeouts: one election, no more.
    tokio::time::sleep(ELECTION * 3).await;
    for &i in &others {
        assert_eq!(
            standing(&c, i).await,
            after,
            "member {i}: a second election while the old leader was frozen\n{}",
            c.logs()
        );
    }
    let new_leader = ids
        .iter()
        .position(|id| *id == after.0)
        .expect("the new leader is a member");

    let mut clients = Vec::new();
    for &i in &others {
        clients.push((i, c.client(i).await));
    }
    c.signal(frozen, Signal::SIGCONT);
    load.iter().for_each(|l| l.enter(RESUMED));
    puts_right_after(&c, &mut clients, ELECTION * 3).await;
    wait_until("the old leader to follow the new one", DEADLINE, || async {
        (view(&c, frozen).await?.standing() == after).then_some(())
    })
    .await;
    caught_up(&c, frozen, new_leader).await;
    tokio::time::sleep(ELECTION * 2).await;
    if let Some(l) = load {
        l.finish(&c, frozen, RESUMED).await;
    }
    for i in 0..3 {
        assert_eq!(
            standing(&c, i).await,
            after,
            "member {i}: (leader, term) changed after the old leader {frozen} resumed\n{}",
            c.logs()
        );
    }
}

#[tokio::test]
async fn resumed_follower_causes_no_election() {
    let _one = SERIAL.lock().await;
    kvd_only(|| frozen_follower(false)).await;
}

#[tokio::test]
async fn resumed_follower_causes_no_election_under_writes() {
    let _one = SERIAL.lock().await;
    kvd_only(|| frozen_follower(true)).await;
}

#[tokio::test]
async fn resumed_old_leader_steps_down_quietly() {
    let _one = SERIAL.lock().await;
    kvd_only(|| frozen_leader(false)).await;
}

#[tokio::test]
async fn resumed_old_leader_steps_down_quietly_under_writes() {
    let _one = SERIAL.lock().await;
    kvd_only(|| frozen_leader(true)).await;
}
