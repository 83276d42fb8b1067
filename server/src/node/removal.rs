//! Removed members stay out. The cluster remembers every removed member ID
//! (the applier's `Core::removed`, replicated through the log and carried by
//! snapshots); peers refuse messages from those IDs with etcd's text, and a
//! member that learns it was removed stops, as etcd's does ("the member has
//! been permanently removed from the cluster"), so that a supervisor
//! restarting it does not quietly loop it back into the cluster.
//!
//! A member learns of its removal in one of two ways: it applies the
//! membership change that drops it (the applier adds its ID to the set), or
//! a peer refuses it. A removed member usually stops hearing from the leader
//! (it no longer replicates to it), and kvd's own election traffic does not
//! report refusals back here; so a member that has not heard from a leader
//! for an election timeout asks a peer about itself with the `ClusterId`
//! RPC, which a peer answers with that refusal for a removed ID.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kv_proto::kvpb::ClusterIdRequest;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::Node;

/// etcd's text for a message from a removed member (rafthttp's
/// errMemberRemoved, sent with HTTP 410 Gone).
pub const REMOVED: &str = "the member has been permanently removed from the cluster";

/// How long one probe of a peer may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a member that applied its own removal keeps running (as etcd's
/// stopWithDelay): the MemberRemove answer, and a removed leader's last
/// heartbeats carrying the commit to the others, still go out.
const STOP_DELAY: Duration = Duration::from_secs(1);

/// Whether this member was removed, and since when it has heard no leader.
pub struct Eviction {
    removed: AtomicBool,
    notify: Notify,
    /// When a leader's message last reached this member.
    heard: Mutex<Instant>,
}

impl Default for Eviction {
    fn default() -> Self {
        Eviction {
            removed: AtomicBool::new(false),
            notify: Notify::new(),
            heard: Mutex::new(Instant::now()),
        }
    }
}

impl Eviction {
    /// A leader's AppendEntries or snapshot reached this member.
    pub fn heard_from_leader(&self) {
        *self.heard.lock() = Instant::now();
    }

    fn quiet_for(&self) -> Duration {
        self.heard.lock().elapsed()
    }

    /// A peer said this member was removed.
    fn mark(&self) {
        self.removed.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Resolves once this member is known to be removed: a peer said so, or
    /// the applied configuration history lists its ID as removed.
    ///
    /// Woken only by those two events (the applier notifies
    /// `Core::removed_changed` when the set changes), never by writes:
    /// openraft's `metrics()` is re-sent after every turn of its core loop.
    pub async fn wait(&self, node: &Node) -> String {
        let me = node.member_id();
        loop {
            // Registered before the checks, so a mark or an applied removal
            // in between is not lost.
            let notified = self.notify.notified();
            let applied_change = node.core.removed_changed.notified();
            if self.removed.load(Ordering::SeqCst) {
                tracing::error!(
                    member_id = %format!("{me:x}"),
                    "a peer refused this member: {REMOVED}; stopping"
                );
                return REMOVED.to_string();
            }
            let applied = node.core.removed.lock().contains(&me);
            if applied {
                tracing::error!(
                    member_id = %format!("{me:x}"),
                    "applied this member's own removal: {REMOVED}; stopping"
                );
                tokio::time::sleep(STOP_DELAY).await;
                return REMOVED.to_string();
            }
            tokio::select! {
                _ = notified => {}
                _ = applied_change => {}
            }
        }
    }
}

/// Whether `status` is a peer's refusal of a removed member.
pub fn is_removed_refusal(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::FailedPrecondition && status.message() == REMOVED
}

/// The refusal a peer sends a removed member.
pub fn refusal() -> tonic::Status {
    tonic::Status::failed_precondition(REMOVED)
}

/// Background task: while no leader has been heard from for an election
/// timeout, asks one peer of the last known configuration per timeout
/// whether this member was removed.
pub async fn probe_loop(node: Arc<Node>) {
    let every = node.election_timeout.max(Duration::from_millis(100));
    let mut turn = 0usize;
    loop {
        tokio::time::sleep(every).await;
        if node.eviction.removed.load(Ordering::SeqCst) || node.eviction.quiet_for() < every {
            continue;
        }
        let me = node.member_id();
        let (peers, mine): (Vec<(u64, String)>, Vec<String>) = {
            let metrics = node.raft.metrics();
            let m = metrics.borrow();
            // A leader hears from no leader; it learns of its own removal
            // by applying it.
            if m.current_leader == Some(me) {
                continue;
            }
            let nodes = m.membership_config.membership().nodes();
            let mut peers = Vec::new();
            let mut mine = Vec::new();
            for (id, n) in nodes {
                if *id == me {
                    mine = n.addr.split(',').map(str::to_string).collect();
                } else {
                    peers.push((*id, n.addr.clone()));
                }
            }
            (peers, mine)
        };
        if peers.is_empty() {
            continue;
        }
        turn = turn.wrapping_add(1);
        let (target, addr) = &peers[turn % peers.len()];
        let Ok(mut client) = node.network.client(*target, addr) else {
            continue;
        };
        let req = ClusterIdRequest {
            member_id: me,
            peer_urls: mine,
        };
        if let Ok(Err(status)) = tokio::time::timeout(PROBE_TIMEOUT, client.cluster_id(req)).await {
            if is_removed_refusal(&status) {
                tracing::error!(
                    peer = %format!("{target:x}"),
                    "peer refused this member: {REMOVED}"
                );
                node.eviction.mark();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;
    use std::time::Duration;

    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
    use openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership};

    use crate::apply::{Core, StateMachine};
    use crate::header::HeaderSource;
    use crate::mvcc::Store;
    use crate::raft::types::{Entry, LogId};

    fn state_machine(dir: &std::path::Path) -> (Arc<Core>, StateMachine) {
        let (store, rec) = Store::open(&dir.join("db")).expect("open store");
        let core = Core::new(
            Arc::new(store),
            Arc::new(HeaderSource::new(1, 1)),
            Duration::from_secs(1),
        );
        core.restore(&rec);
        let sm = StateMachine::new(core.clone(), &rec, dir.join("snap"));
        (core, sm)
    }

    fn config(index: u64, ids: &[u64]) -> Entry {
        let nodes: BTreeMap<u64, BasicNode> = ids
            .iter()
            .map(|id| (*id, BasicNode::new(format!("http://127.0.0.1:{id}"))))
            .collect();
        let voters: BTreeSet<u64> = ids.iter().copied().collect();
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Membership(Membership::new(vec![voters], nodes)),
        }
    }

    /// The removed set is applied from membership changes, survives a
    /// restart (META) and travels in a snapshot to a member that never saw
    /// the change.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn removed_ids_are_applied_persisted_and_carried_by_snapshots() {
        let a = tempfile::tempdir().expect("tempdir");
        let (core, mut sm) = state_machine(a.path());
        sm.apply([config(1, &[1, 2, 3]), config(2, &[1, 2, 3, 4])])
            .await
            .expect("apply");
        assert!(
            core.removed.lock().is_empty(),
            "an addition removed nothing"
        );
        sm.apply([config(3, &[1, 2, 4])]).await.expect("apply");
        assert_eq!(*core.removed.lock(), BTreeSet::from([3]));

        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        let b = tempfile::tempdir().expect("tempdir");
        let (core_b, mut sm_b) = state_machine(b.path());
        sm_b.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .expect("install");
        assert_eq!(*core_b.removed.lock(), BTreeSet::from([3]));

        // Later removals add to the set, which never shrinks.
        sm_b.apply([config(4, &[1, 4])]).await.expect("apply");
        assert_eq!(*core_b.removed.lock(), BTreeSet::from([2, 3]));
        drop((sm_b, core_b));
        let (core_b, _sm) = state_machine(b.path());
        assert_eq!(*core_b.removed.lock(), BTreeSet::from([2, 3]));
    }
}
