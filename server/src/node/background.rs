//! Background duties: tracking term and leadership, lease expiry, auto
//! compaction, watch catch-up and progress notifications.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kv_proto::etcdserverpb::{CompactionRequest, LeaseRevokeRequest};
use kv_proto::kvpb::internal_request::Request;

use super::Node;
use crate::config::Retention;
use crate::error::KvError;

/// How often expired leases are looked for.
const EXPIRY_TICK: Duration = Duration::from_millis(250);
/// Most revokes proposed per tick (etcd limits revokes per second too).
const EXPIRY_BATCH: usize = 64;
/// How long a lease being revoked is left alone before trying again.
const REVOKE_RETRY: Duration = Duration::from_secs(3);
/// Pause between attempts to publish this member's attributes.
const PUBLISH_RETRY: Duration = Duration::from_millis(200);
/// Publish failures are logged as warnings at most this often.
const PUBLISH_WARN_EVERY: Duration = Duration::from_secs(5);
/// etcd's default interval between progress notifications.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

pub fn spawn_all(node: &Arc<Node>) {
    let mut tasks = node.tasks.lock();
    tasks.push(tokio::spawn(node.hub().clone().run_catchup()));
    tasks.push(tokio::spawn(track_leadership(node.clone())));
    tasks.push(tokio::spawn(expire_leases(node.clone())));
    tasks.push(tokio::spawn(auto_compact(node.clone())));
    tasks.push(tokio::spawn(crate::mvcc::compactor::run(
        node.core.store.clone(),
    )));
    tasks.push(tokio::spawn(publish(node.clone())));
    tasks.push(tokio::spawn(super::election::run(
        node.clone(),
        node.heartbeat_interval,
    )));
    let hub = node.hub().clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            hub.notify_progress();
        }
    }));
}

/// Keeps the header term current; on becoming leader, gives every lease a full
/// TTL so a leader change never expires a live lease.
///
/// Waits on `server_metrics()`, which openraft re-sends only when the vote,
/// role, leader or membership changed; `metrics()` is re-sent after every
/// turn of its core loop (three per write), and a waiter there would be
/// woken, and scheduled, three times per write for nothing.
async fn track_leadership(node: Arc<Node>) {
    let mut rx = node.raft.server_metrics();
    let mut was_leader = false;
    loop {
        let (term, leader) = {
            let m = rx.borrow_and_update();
            crate::metrics::observe_leader(m.current_leader);
            // The vote as stored: its term is the one this member is in.
            (
                m.vote.leader_id().term,
                m.current_leader == Some(node.member_id()),
            )
        };
        node.header.set_term(term);
        if leader && !was_leader {
            tracing::info!(term, "became leader");
            node.core.lessor.lock().refresh_all(node.election_timeout);
        }
        was_leader = leader;
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn expire_leases(node: Arc<Node>) {
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    loop {
        tick.tick().await;
        if !node.is_leader() {
            continue;
        }
        let expired = {
            let mut lessor = node.core.lessor.lock();
            let ids = lessor.expired(Instant::now(), EXPIRY_BATCH);
            for id in &ids {
                lessor.postpone(*id, REVOKE_RETRY);
            }
            ids
        };
        for id in expired {
            let node = node.clone();
            tokio::spawn(async move {
                match node
                    .propose(Request::LeaseRevoke(LeaseRevokeRequest { id }))
                    .await
                {
                    Ok(_) | Err(KvError::LeaseNotFound) => {
                        tracing::debug!(lease = id, "lease expired")
                    }
                    Err(e) => {
                        tracing::warn!(lease = id, error = %e, "revoking expired lease failed")
                    }
                }
            });
        }
    }
}

/// etcd's auto compaction: periodic keeps `retention` worth of history,
/// checked every tenth of it (at least every second... at most hourly);
/// revision mode keeps the last N revisions, checked every 5 minutes.
async fn auto_compact(node: Arc<Node>) {
    let (tick, keep_revs, period) = match node.retention {
        Retention::Off => return,
        Retention::Revisions(n) => (Duration::from_secs(300), Some(n), None),
        Retention::Period(p) => (
            (p / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600)),
            None,
            Some(p),
        ),
    };
    // (when, revision) samples for periodic mode.
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        let now = Instant::now();
        let rev = node.core.store.current_rev();
        samples.push_back((now, rev));
        if !node.is_leader() {
            continue;
        }
        let target = match (keep_revs, period) {
            (Some(n), _) => rev - n,
            (_, Some(p)) => {
                while samples.len() > 1 && now.duration_since(samples[1].0) >= p {
                    samples.pop_front();
                }
                match samples.front() {
                    Some((t, r)) if now.duration_since(*t) >= p => *r,
                    _ => 0,
                }
            }
            _ => 0,
        };
        if target <= 0 || target <= node.core.store.compact_rev() {
            continue;
        }
        let req = CompactionRequest {
            revision: target,
            physical: false,
        };
        match node.propose(Request::Compaction(req)).await {
            Ok(_) => tracing::info!(revision = target, "auto compaction done"),
            Err(e) => tracing::warn!(revision = target, error = %e, "auto compaction failed"),
        }
    }
}

/// etcd's publish: this member's attributes go through the log once a
/// leader can take them; once they are applied here the member is ready
/// to serve clients. Both steps retry until they succeed: a member without
/// a quorum serves no client, as etcd's does.
async fn publish(node: Arc<Node>) {
    let since = Instant::now();
    let mut last_warn = since;
    let mut failed = |step: &str, e: KvError| {
        // Failures are expected while a leader is elected: warn only when
        // they last, and then once every PUBLISH_WARN_EVERY.
        if last_warn.elapsed() >= PUBLISH_WARN_EVERY {
            last_warn = Instant::now();
            tracing::warn!(
                member_id = format_args!("{:x}", node.member_id()),
                waited = ?since.elapsed(),
                error = %e,
                "{step}; not serving clients yet, will retry"
            );
        } else {
            tracing::debug!(error = %e, "{step}; will retry");
        }
    };
    while let Err(e) = node.publish_attributes().await {
        failed("failed to publish local member to cluster through raft", e);
        tokio::time::sleep(PUBLISH_RETRY).await;
    }
    tracing::info!(
        member_id = format_args!("{:x}", node.member_id()),
        "published local member to cluster through raft"
    );
    while let Err(e) = node.mark_ready_once_applied().await {
        failed("failed to catch up with the published entry", e);
        tokio::time::sleep(PUBLISH_RETRY).await;
    }
}
