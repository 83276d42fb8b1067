//! Cluster membership: MemberList from the raft configuration plus the
//! attributes members publish; MemberAdd/Remove/Promote/Update through
//! openraft's membership changes (joint consensus), run on the leader.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use kv_proto::etcdserverpb::Member;
use kv_proto::kvpb::internal_request::Request;
use kv_proto::kvpb::MemberAttributes;
use openraft::{BasicNode, ChangeMembers};
use prost::Message;

use super::{ids, Node};
use crate::error::{KvError, KvResult};
use crate::mvcc::MvccError;

/// How long a membership change may take before the caller gets a timeout.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

impl Node {
    /// Every member in the current raft configuration, with published attributes.
    pub fn members_now(&self) -> KvResult<Vec<Member>> {
        // Decoded strictly: a damaged row is an error naming the member,
        // never a member silently listed without its name and URLs.
        let mut attrs: HashMap<u64, MemberAttributes> = HashMap::new();
        for (id, b) in self.core.store.member_attributes()? {
            let a = MemberAttributes::decode(b.as_slice()).map_err(|e| {
                MvccError::Storage(format!(
                    "members table: undecodable attributes of member {id:x}: {e}"
                ))
            })?;
            attrs.insert(id, a);
        }
        let rx = self.raft.metrics();
        let m = rx.borrow();
        let membership = m.membership_config.membership();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        Ok(membership
            .nodes()
            .map(|(id, node)| {
                let a = attrs.get(id);
                Member {
                    id: *id,
                    name: a.map(|a| a.name.clone()).unwrap_or_default(),
                    peer_ur_ls: node.addr.split(',').map(str::to_string).collect(),
                    client_ur_ls: a.map(|a| a.client_urls.clone()).unwrap_or_default(),
                    is_learner: learners.contains(id),
                }
            })
            .collect())
    }

    /// Publishes this member's name and client URLs through the log.
    pub(super) async fn publish_attributes(&self) -> KvResult<()> {
        let me = self.members.iter().find(|m| m.id == self.member_id());
        let attrs = MemberAttributes {
            id: self.member_id(),
            name: self.name.clone(),
            client_urls: me.map(|m| m.client_urls.clone()).unwrap_or_default(),
        };
        self.propose(Request::MemberAttributes(attrs))
            .await
            .map(|_| ())
    }

    /// Marks this member ready (see [`Node::ready`]) once its published
    /// attributes are applied here. On a follower a proposal is answered
    /// when the leader has applied it, not this member: a read barrier
    /// waits until this member has applied everything the leader had
    /// committed by now, the publish entry included.
    pub(super) async fn mark_ready_once_applied(&self) -> KvResult<()> {
        self.read_barrier().await?;
        self.ready.send_replace(true);
        Ok(())
    }

    async fn change(&self, changes: ChangeMembers<u64, BasicNode>, retain: bool) -> KvResult<()> {
        tokio::time::timeout(CHANGE_TIMEOUT, self.raft.change_membership(changes, retain))
            .await
            .map_err(|_| KvError::Timeout)?
            .map(|_| ())
            .map_err(super::leadership::write_error)
    }

    /// Adds a member (a learner, or a voter) by its peer URLs; returns it.
    pub async fn member_add(&self, peer_urls: Vec<String>, is_learner: bool) -> KvResult<Member> {
        self.check_admin()?;
        if peer_urls.is_empty()
            || peer_urls
                .iter()
                .any(|u| crate::config::parse_url(u).is_err())
        {
            return Err(KvError::MemberBadUrls);
        }
        let current = self.members_now()?;
        if current
            .iter()
            .any(|m| m.peer_ur_ls.iter().any(|u| peer_urls.contains(u)))
        {
            return Err(KvError::PeerUrlExists);
        }
        // A fresh ID, never a current or removed one: a member removed and
        // re-added at the same URLs is a new member (etcd mixes in the time).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let id = {
            let removed = self.core.removed.lock();
            ids::fresh_member_id(&peer_urls, &self.token, now, |id| {
                removed.contains(&id) || current.iter().any(|m| m.id == id)
            })
        };
        let node = BasicNode::new(peer_urls.join(","));
        let add = ChangeMembers::AddNodes(BTreeMap::from([(id, node)]));
        self.change(add, true).await?;
        if !is_learner {
            self.promote_in_background(id).await?;
        }
        Ok(Member {
            id,
            name: String::new(),
            peer_ur_ls: peer_urls,
            client_ur_ls: Vec::new(),
            is_learner,
        })
    }

    /// Makes learner `id` a voter. etcd answers MemberAdd once the change
    /// is in the log, before the new member runs; openraft's joint change
    /// commits only with the new member's vote when it makes up a majority
    /// of the new set (adding a second member to one, for instance). So the
    /// change runs in its own task, to the end (dropping it between its two
    /// steps would leave the cluster in the joint configuration), and the
    /// caller is answered once the joint configuration is in the log.
    async fn promote_in_background(&self, id: u64) -> KvResult<()> {
        let raft = self.raft.clone();
        let task = tokio::spawn(async move {
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                .await
        });
        let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
        loop {
            if task.is_finished() {
                return match task.await {
                    Ok(r) => r.map(|_| ()).map_err(super::leadership::write_error),
                    Err(e) => Err(KvError::Internal(e.to_string())),
                };
            }
            let voter = self
                .members_now()?
                .iter()
                .any(|m| m.id == id && !m.is_learner);
            if voter {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(KvError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn member_remove(&self, id: u64) -> KvResult<()> {
        self.check_admin()?;
        let member = self
            .members_now()?
            .into_iter()
            .find(|m| m.id == id)
            .ok_or(KvError::MemberNotFound)?;
        let ids = BTreeSet::from([id]);
        if member.is_learner {
            self.change(ChangeMembers::RemoveNodes(ids), false).await
        } else {
            self.change(ChangeMembers::RemoveVoters(ids), false).await
        }
    }

    pub async fn member_promote(&self, id: u64) -> KvResult<()> {
        self.check_admin()?;
        let member = self
            .members_now()?
            .into_iter()
            .find(|m| m.id == id)
            .ok_or(KvError::MemberNotFound)?;
        if !member.is_learner {
            return Err(KvError::MemberNotLearner);
        }
        // etcd promotes only a learner that has 90% of the leader's log: a
        // voter that cannot ack would leave the change uncommitted and block
        // every later one.
        let ready = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).copied().flatten())
                .map(|l| l.index)
                .unwrap_or(0);
            let last = m.last_log_index.unwrap_or(0);
            matched > 0 && matched * 10 >= last * 9
        };
        if !ready {
            return Err(KvError::LearnerNotReady);
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
            .await
    }

    pub async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> KvResult<()> {
        self.check_admin()?;
        if peer_urls.is_empty()
            || peer_urls
                .iter()
                .any(|u| crate::config::parse_url(u).is_err())
        {
            return Err(KvError::MemberBadUrls);
        }
        if !self.members_now()?.iter().any(|m| m.id == id) {
            return Err(KvError::MemberNotFound);
        }
        let node = BasicNode::new(peer_urls.join(","));
        self.change(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), true)
            .await
    }
}
