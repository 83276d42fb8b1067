//! Elections with pre-vote and check-quorum, driven by kvd instead of
//! openraft's own timer (which openraft 0.9 runs without pre-vote).
//!
//! A member that has not heard from a leader for a randomized
//! `[election-timeout, 2 x election-timeout)` first asks the other voters
//! whether they would vote for it. A voter says yes only if it has not heard
//! from a leader for an election timeout itself, is not the leader, and the
//! candidate's log is at least as up to date as its own. Only with a quorum
//! of yeses does the member start a real election (a new term). So a member
//! cut off from the others never raises its term, and when it comes back it
//! does not depose the healthy leader (etcd's `--pre-vote`, on by default).
//!
//! openraft's leader lease stays as a second guard: voters refuse real votes
//! for a few heartbeats after hearing from a leader. kvd keeps that lease short
//! (see [`raft_timeouts`]) so that MoveLeader can hand over quickly.
//!
//! What it decides on (who leads, the term, the voter sets, the last log
//! entry) it reads through node/leadership.rs, the one place that reads
//! openraft's metrics for leadership.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kv_proto::kvpb::PreVoteRequest;
use rand::Rng;

use super::leadership::{last_log, member_addrs, standing};
use super::Node;
use crate::raft::types::Raft;
use crate::raft::NodeId;

/// openraft's own election timeouts, in milliseconds, for a heartbeat of
/// `heartbeat_ms`. Its timer is off (kvd drives elections); what is left of
/// these is the vote RPC deadline (the minimum) and the leader lease during
/// which voters refuse votes (the maximum).
pub fn raft_timeouts(heartbeat_ms: u64) -> (u64, u64) {
    (heartbeat_ms * 2, heartbeat_ms * 3)
}

/// How long this member has not heard from a leader, counted in ticks of
/// the heartbeat interval (as etcd counts), so that a process that was
/// paused (SIGSTOP, a long GC-like stall) does not count the pause as
/// silence from the leader and campaign the moment it resumes.
pub struct Elections {
    quiet_ticks: AtomicU64,
    /// Counts the times a leader was heard from, so that a pre-vote round
    /// can tell whether one spoke up while it ran.
    heard: AtomicU64,
    tick: Duration,
    timeout: Duration,
}

impl Elections {
    pub fn new(timeout: Duration, tick: Duration) -> Self {
        Elections {
            quiet_ticks: AtomicU64::new(0),
            heard: AtomicU64::new(0),
            tick,
            timeout,
        }
    }

    /// A leader in the current (or a newer) term reached this member.
    pub fn heard_from_leader(&self) {
        self.quiet_ticks.store(0, Ordering::Relaxed);
        self.heard.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times a leader was heard from so far (see [`Round`]).
    fn heard_count(&self) -> u64 {
        self.heard.load(Ordering::Relaxed)
    }

    /// Whether a leader was heard from within an election timeout: etcd's
    /// follower forgets its leader after that (it pre-campaigns).
    pub(super) fn leader_heard_recently(&self) -> bool {
        self.quiet_for() < self.timeout
    }

    fn tick(&self) {
        self.quiet_ticks.fetch_add(1, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let ticks = self.quiet_ticks.load(Ordering::Relaxed);
        self.tick * u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    /// Whether this member would vote for `req`'s candidate now.
    pub fn grant(&self, raft: &Raft, me: NodeId, req: &PreVoteRequest) -> bool {
        let now = standing(raft);
        if req.candidate == me || now.leading {
            return false;
        }
        // Check-quorum: a member that heard from its leader within an
        // election timeout still believes in it.
        if self.quiet_for() < self.timeout {
            return false;
        }
        if req.next_term < now.term {
            return false;
        }
        let mine = last_log(raft);
        (req.last_log_term, req.last_log_index) >= mine
    }
}

/// Whether `granted` holds a majority of every configuration (a joint
/// configuration during a membership change needs both).
fn is_quorum(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !configs.is_empty()
        && configs
            .iter()
            .all(|c| c.intersection(granted).count() * 2 > c.len())
}

/// Where a pre-vote round stands: `Some(true)` once `granted` holds a
/// quorum, `Some(false)` once the voters that have not refused (`open`)
/// cannot make one any more, `None` while it is undecided.
fn tally(
    configs: &[BTreeSet<NodeId>],
    granted: &BTreeSet<NodeId>,
    open: &BTreeSet<NodeId>,
) -> Option<bool> {
    if is_quorum(configs, granted) {
        Some(true)
    } else if !is_quorum(configs, open) {
        Some(false)
    } else {
        None
    }
}

fn random_timeout(base: Duration) -> Duration {
    let ms = base.as_millis().max(1) as u64;
    Duration::from_millis(rand::rng().random_range(ms..ms * 2))
}

/// What a pre-vote round started from: a campaign after it is still
/// wanted only if nothing changed meanwhile.
struct Round {
    term: u64,
    heard: u64,
}

impl Round {
    fn start(node: &Node) -> Round {
        Round {
            term: standing(&node.raft).term,
            heard: node.elections.heard_count(),
        }
    }

    /// Whether a campaign is still wanted after the pre-vote round: no
    /// leader was heard from and the term did not move while it ran, and
    /// this member does not lead. A round can last up to an election
    /// timeout (a frozen voter answers nothing), and its grants are as old
    /// as that: another member may have won an election meanwhile. A
    /// campaign then would depose that new leader (openraft's leader grants
    /// a higher term's vote once its short lease ran out); etcd's
    /// pre-candidate likewise falls back to follower when a leader's
    /// message reaches it.
    fn still_wanted(&self, node: &Node) -> bool {
        let now = standing(&node.raft);
        !now.leading && now.term == self.term && node.elections.heard_count() == self.heard
    }
}

/// Asks every other voter for a pre-vote; true as soon as a quorum would
/// elect us, false as soon as none can (a voter that does not answer, such
/// as a frozen one, costs at most an election timeout, and not when the
/// others have decided already).
async fn pre_vote(node: &Node, configs: &[BTreeSet<NodeId>], round: &Round) -> bool {
    use futures::stream::{FuturesUnordered, StreamExt};

    let me = node.member_id();
    let term = round.term;
    let members = member_addrs(&node.raft);
    let (last_log_term, last_log_index) = last_log(&node.raft);
    let req = PreVoteRequest {
        candidate: me,
        next_term: term + 1,
        last_log_term,
        last_log_index,
    };
    let voters: BTreeSet<NodeId> = configs.iter().flatten().copied().collect();
    let mut asks: FuturesUnordered<_> = members
        .into_iter()
        .filter(|(id, _)| *id != me && voters.contains(id))
        .map(|(id, addr)| {
            let net = node.network.clone();
            async move {
                let Ok(mut client) = net.client(id, &addr) else {
                    return (id, false);
                };
                let ask = client.pre_vote(req);
                match tokio::time::timeout(node.election_timeout, ask).await {
                    Ok(Ok(resp)) => (id, resp.into_inner().granted),
                    _ => (id, false),
                }
            }
        })
        .collect();
    let mut granted = BTreeSet::from([me]);
    // Voters that have not refused: while they could still make a quorum
    // without one, wait for the next answer.
    let mut open = voters;
    loop {
        if let Some(won) = tally(configs, &granted, &open) {
            return won;
        }
        let Some((id, yes)) = asks.next().await else {
            return false;
        };
        if yes {
            granted.insert(id);
        } else {
            open.remove(&id);
        }
    }
}

/// Runs this member's election timer until the node stops.
pub async fn run(node: Arc<Node>, tick: Duration) {
    let mut wait = random_timeout(node.election_timeout);
    let mut since_attempt = Duration::ZERO;
    let mut first = true;
    loop {
        tokio::time::sleep(tick).await;
        node.elections.tick();
        since_attempt += tick;
        let now = standing(&node.raft);
        let configs = now.voters;
        let me = node.member_id();
        if now.leading || !configs.iter().any(|c| c.contains(&me)) {
            node.elections.heard_from_leader();
            continue;
        }
        // The only voter elects itself at once, as openraft would (and
        // again only after a full timeout should that not take).
        let alone = configs.iter().all(|c| c.len() == 1 && c.contains(&me));
        let quiet = node.elections.quiet_for().min(since_attempt);
        if !(alone && first) && quiet < wait {
            continue;
        }
        first = false;
        since_attempt = Duration::ZERO;
        wait = random_timeout(node.election_timeout);
        let round = Round::start(&node);
        let won = alone || pre_vote(&node, &configs, &round).await;
        if won && !round.still_wanted(&node) {
            tracing::info!(
                "pre-vote won, but a leader spoke up or the term moved meanwhile; not campaigning"
            );
            continue;
        }
        if won {
            tracing::info!("pre-vote won; starting an election");
            if let Err(e) = node.raft.trigger().elect().await {
                tracing::warn!(error = %e, "starting an election");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn quorum_needs_a_majority_of_every_configuration() {
        let one = vec![set(&[1, 2, 3])];
        assert!(is_quorum(&one, &set(&[1, 2])));
        assert!(!is_quorum(&one, &set(&[1])));
        let joint = vec![set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(!is_quorum(&joint, &set(&[1, 2, 3])));
        assert!(is_quorum(&joint, &set(&[1, 3, 4])));
        assert!(!is_quorum(&[], &set(&[1])));
    }

    #[test]
    fn a_round_ends_once_the_answers_decide_it() {
        let one = vec![set(&[1, 2, 3])];
        // Candidate 1 alone: undecided while 2 and 3 could still grant.
        assert_eq!(tally(&one, &set(&[1]), &set(&[1, 2, 3])), None);
        // One grant decides it; the third (say frozen) need not answer.
        assert_eq!(tally(&one, &set(&[1, 2]), &set(&[1, 2, 3])), Some(true));
        // One refusal leaves a quorum possible; two do not.
        assert_eq!(tally(&one, &set(&[1]), &set(&[1, 3])), None);
        assert_eq!(tally(&one, &set(&[1]), &set(&[1])), Some(false));
        // A joint configuration needs both majorities.
        let joint = vec![set(&[1, 2, 3]), set(&[1, 4, 5])];
        assert_eq!(tally(&joint, &set(&[1, 2]), &set(&[1, 2, 3, 4, 5])), None);
        assert_eq!(tally(&joint, &set(&[1, 2]), &set(&[1, 2, 3])), Some(false));
        assert_eq!(
            tally(&joint, &set(&[1, 2, 4]), &set(&[1, 2, 3, 4, 5])),
            Some(true)
        );
    }

    #[test]
    fn random_timeout_stays_within_one_and_two_timeouts() {
        let base = Duration::from_millis(100);
        for _ in 0..100 {
            let t = random_timeout(base);
            assert!(t >= base && t < base * 2);
        }
    }
}
