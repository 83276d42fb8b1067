//! Who leads, and where a request only the leader serves goes. Every
//! leadership decision in kvd asks this module: proposals (local, or
//! forwarded to the leader), read barriers, lease keep-alives and TTL
//! queries, membership changes, MoveLeader and the leader's background
//! duties (lease expiry, auto compaction). The gRPC handlers decide nothing
//! about leadership; they follow a [`ClientRoute`].
//!
//! election.rs makes leaders (pre-vote, campaigns); this module only reports
//! them, from openraft's metrics, and gives election.rs what it decides on
//! ([`standing`], [`member_addrs`], [`last_log`]).

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState};
use tonic::transport::Channel;

use super::Node;
use crate::error::{KvError, KvResult};
use crate::raft::types::Raft;
use crate::raft::NodeId;

/// Where a request only the leader serves goes, over the peer API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// This member leads: serve it here.
    Local,
    /// Another member leads: hand it over there.
    Leader { id: NodeId, peer_addr: String },
}

/// Where a client-API request only the leader serves goes (membership
/// changes, lease TTL queries): here, or to the leader's client URL.
pub enum ClientRoute {
    /// This member leads: serve it here.
    Local,
    /// A channel to the leader's client URL: forward the call unchanged, so
    /// the client gets the leader's answer as is.
    Leader(Channel),
}

/// Whether `m` says `me` leads.
pub(super) fn leads(m: &RaftMetrics<NodeId, BasicNode>, me: NodeId) -> bool {
    m.current_leader == Some(me)
}

/// Whether `me` leads, asking raft itself rather than its metrics (which
/// may lag right after start).
pub(super) async fn leads_now(raft: &Raft, me: NodeId) -> bool {
    raft.current_leader().await == Some(me)
}

/// The leader as `raft` knows it: its ID and peer address. `None` while
/// there is none, or while its address is not in the configuration yet.
pub(super) fn leader_of(raft: &Raft) -> Option<(NodeId, String)> {
    let rx = raft.metrics();
    let m = rx.borrow();
    let leader = m.current_leader?;
    let addr = m
        .membership_config
        .membership()
        .get_node(&leader)?
        .addr
        .clone();
    Some((leader, addr))
}

/// Where a leader-only request goes, as member `me` sees it now; etcd's "no
/// leader" while there is none.
pub(super) fn route_of(raft: &Raft, me: NodeId) -> KvResult<Route> {
    match leader_of(raft) {
        Some((id, _)) if id == me => Ok(Route::Local),
        Some((id, peer_addr)) => Ok(Route::Leader { id, peer_addr }),
        None => Err(KvError::NoLeader),
    }
}

/// What election.rs decides on, read from one snapshot of openraft's
/// metrics so the parts agree with each other.
#[derive(Debug, Clone)]
pub(super) struct Standing {
    /// openraft's own state says this member leads (it may not have
    /// published `current_leader` yet).
    pub leading: bool,
    /// The term this member is in.
    pub term: u64,
    /// The voter sets of the effective configuration: one, or two during a
    /// joint membership change.
    pub voters: Vec<BTreeSet<NodeId>>,
}

/// This member's [`Standing`] now.
pub(super) fn standing(raft: &Raft) -> Standing {
    let rx = raft.metrics();
    let m = rx.borrow();
    Standing {
        leading: m.state == ServerState::Leader,
        term: m.current_term,
        voters: m.membership_config.membership().get_joint_config().clone(),
    }
}

/// Every member of the effective configuration (voters and learners) with
/// its peer address.
pub(super) fn member_addrs(raft: &Raft) -> Vec<(NodeId, String)> {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect()
}

/// (term, index) of this member's last log entry; (0, 0) for an empty log.
pub(super) fn last_log(raft: &Raft) -> (u64, u64) {
    raft.data_metrics()
        .borrow()
        .last_log
        .map(|l| (l.leader_id.term, l.index))
        .unwrap_or((0, 0))
}

/// openraft's answer to a write (a proposal or a membership change): one
/// that reached a non-leader is etcd's "no leader" (the caller's route was
/// stale), a stopped raft is "server stopped".
pub(super) fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> KvError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => KvError::NoLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            KvError::Internal(e.to_string())
        }
        RaftError::Fatal(_) => KvError::Stopped,
    }
}

impl Node {
    /// Whether this member leads now.
    pub fn is_leader(&self) -> bool {
        leads(&self.raft.metrics().borrow(), self.member_id())
    }

    /// The current leader's member ID, if any.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether this member has a live leader as etcd counts one (/health,
    /// etcd_server_has_leader): a follower heard from its leader within an
    /// election timeout; a leader heard from a quorum within one (etcd's
    /// check-quorum makes such a leader step down).
    pub fn has_live_leader(&self) -> bool {
        let rx = self.raft.metrics();
        let m = rx.borrow();
        if m.current_leader.is_none() {
            return false;
        }
        if leads(&m, self.member_id()) {
            let limit = self.election_timeout.as_millis() as u64;
            return m.millis_since_quorum_ack.is_none_or(|ms| ms < limit);
        }
        self.elections.leader_heard_recently()
    }

    /// `Ok` while this member leads; `not_leader` otherwise.
    pub(super) fn ensure_leader(&self, not_leader: KvError) -> KvResult<()> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(not_leader)
        }
    }

    /// Where a leader-only request goes now.
    pub(super) fn route(&self) -> KvResult<Route> {
        route_of(&self.raft, self.member_id())
    }

    /// [`Node::route`], but during an election it waits a little (two
    /// election timeouts) for the new leader rather than fail at once, as
    /// etcd's proposals wait.
    pub(super) async fn route_waiting(&self) -> KvResult<Route> {
        if leader_of(&self.raft).is_none() {
            let _ = self
                .raft
                .wait(Some(self.election_timeout * 2))
                .metrics(|m| m.current_leader.is_some(), "a leader")
                .await;
        }
        self.route()
    }

    /// Where a client-API request only the leader serves goes: here, or
    /// (from a follower) a channel to the leader's client URL.
    pub async fn client_route(&self) -> KvResult<ClientRoute> {
        if self.is_leader() {
            return Ok(ClientRoute::Local);
        }
        self.leader_client_channel().await.map(ClientRoute::Leader)
    }

    /// A channel to the leader's client URL.
    async fn leader_client_channel(&self) -> KvResult<Channel> {
        // Right after start the leader's published client URLs may not be
        // applied here yet: give them a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let url = loop {
            let url = self.leader_id().and_then(|l| {
                let members = self.members_now().ok()?;
                members
                    .iter()
                    .find(|m| m.id == l)
                    .and_then(|m| m.client_ur_ls.first().cloned())
            });
            match url {
                Some(u) => break u,
                None if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => return Err(KvError::NoLeader),
            }
        };
        // An https client URL gets kvd's client TLS settings (crate::tls).
        let ch = crate::tls::client_endpoint(&url)
            .map_err(KvError::Internal)?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|_| KvError::NoLeader)?;
        Ok(ch)
    }
}
