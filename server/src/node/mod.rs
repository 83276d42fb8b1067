//! The facade between the gRPC handlers and the rest: proposes writes through
//! raft, serves reads after a read-index barrier, fills headers, and runs the
//! leader's background duties (lease expiry, auto compaction).

mod auth;
mod background;
mod cluster;
pub(crate) mod concurrency;
mod election;
mod forward;
mod ids;
mod kv;
mod leadership;
mod lease;
mod maintenance;
pub mod peer;
mod propose;
pub mod range_stream;
mod read_index;
mod refusals;
mod removal;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kv_proto::etcdserverpb::ResponseHeader;
use kv_proto::kvpb::{internal_request::Request, InternalRequest};
use parking_lot::Mutex;
use prost::Message;

use crate::apply::{Applied, Core, StateMachine};
use crate::config::{Config, ConfigError, Retention};
use crate::error::{KvError, KvResult};
use crate::header::HeaderSource;
use crate::mvcc::Store;
use crate::raft::log_store::LogStore;
use crate::raft::network::Network;
use crate::raft::types::Raft;
use crate::raft::NodeId;
use crate::txn::Limits;
use crate::watch::WatchHub;

pub use auth::role_perms;
pub use ids::MemberInfo;
pub use leadership::ClientRoute;
use leadership::Route;
pub use maintenance::{SnapshotFile, API_VERSION};

/// etcd's maxGapBetweenApplyAndCommitIndex: past this many entries between
/// the log and the applier, new proposals get "too many requests".
pub const MAX_APPLY_LAG: u64 = 5000;

/// Why a member must stop: its storage failed (a restart recovers from
/// disk), or it was removed from the cluster (a restart will not rejoin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fatal {
    Storage(String),
    Removed(String),
}

/// Errors that stop kvd from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create data dir {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error(transparent)]
    Wal(#[from] crate::storage::wal::WalError),
    #[error("backend {0}: {1}")]
    Backend(PathBuf, crate::mvcc::MvccError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("joining the existing cluster: {0}")]
    Join(String),
}

/// One running member.
pub struct Node {
    raft: Raft,
    core: Arc<Core>,
    header: Arc<HeaderSource>,
    limits: Limits,
    max_request_bytes: usize,
    quota_bytes: u64,
    retention: Retention,
    election_timeout: Duration,
    heartbeat_interval: Duration,
    elections: election::Elections,
    /// Held for writing while leadership is handed over (MoveLeader): new
    /// proposals and reads wait so that the leader stays quiet.
    transfer: tokio::sync::RwLock<()>,
    /// The members named by the bootstrap flags (this member's client URLs).
    members: Vec<MemberInfo>,
    name: String,
    token: String,
    next_id: AtomicU64,
    reads: read_index::ReadIndex,
    network: Network,
    /// The one batcher for this member's proposals, local and forwarded.
    proposer: propose::Proposer,
    /// Completion handles of the background tasks, aborted on shutdown.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// `<data-dir>/member`: snapshots from the leader are received under it.
    member_dir: PathBuf,
    /// Whether a peer said this member was removed (removal.rs).
    eviction: removal::Eviction,
    /// Turns true once this member's published attributes are applied
    /// here (etcd's ReadyNotify): clients are served only from then on.
    ready: tokio::sync::watch::Sender<bool>,
}

impl Node {
    /// Opens the data dir, starts raft and the background tasks.
    pub async fn start(cfg: &Config) -> Result<Arc<Node>, StartError> {
        let dir = cfg.data_dir();
        let member_dir = dir.join("member");
        std::fs::create_dir_all(&member_dir).map_err(|e| StartError::DataDir(dir.clone(), e))?;
        let retention = cfg.retention()?;
        let members = ids::members(cfg)?;
        let me =
            members
                .iter()
                .find(|m| m.name == cfg.name)
                .cloned()
                .ok_or(ConfigError::BadCluster(
                    cfg.name.clone(),
                    "does not name this member",
                ))?;
        let identity = Self::identity(cfg, &member_dir, &members, &me).await?;
        // This member as the rest of the node knows it: by its real ID (a
        // joined member's differs from the one derived from the flags).
        let mut members = members;
        if let Some(m) = members.iter_mut().find(|m| m.name == cfg.name) {
            m.id = identity.member_id;
        }

        let db_path = member_dir.join("db");
        let (store, recovered) =
            Store::open(&db_path).map_err(|e| StartError::Backend(db_path.clone(), e))?;
        let store = Arc::new(store);
        // Compacted rows are deleted by the background compactor (spawned
        // with the other tasks), not by the applies replayed at start.
        store.compactor().attach();
        let header = Arc::new(HeaderSource::new(identity.cluster_id, identity.member_id));
        let election_timeout = Duration::from_millis(cfg.election_timeout);
        let core = Core::new(store, header.clone(), election_timeout);
        // etcd splits above --max-request-bytes plus its gRPC overhead allowance.
        core.hub
            .set_fragment_bytes(cfg.max_request_bytes + 512 * 1024);
        core.restore(&recovered);
        core.auth
            .configure(&cfg.auth_token, cfg.bcrypt_cost, cfg.auth_token_ttl)
            .map_err(ConfigError::BadAuth)?;
        let sm = StateMachine::open(core.clone(), &recovered, member_dir.join("snap"))
            .map_err(|e| StartError::Backend(db_path.clone(), e))?;
        let log = LogStore::open(&cfg.wal_dir())?;

        let raft_cfg = openraft::Config {
            cluster_name: cfg.initial_cluster_token.clone(),
            heartbeat_interval: cfg.heartbeat_interval,
            election_timeout_min: election::raft_timeouts(cfg.heartbeat_interval).0,
            election_timeout_max: election::raft_timeouts(cfg.heartbeat_interval).1,
            // kvd runs elections itself, with pre-vote (election.rs).
            enable_elect: false,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_count),
            max_in_snapshot_log_to_keep: cfg.experimental_snapshot_catchup_entries,
            // openraft's 200 ms default per chunk (the last one includes the
            // install) cannot carry a 3 MiB chunk over a slow link.
            install_snapshot_timeout: crate::raft::network::SNAPSHOT_CHUNK_TIMEOUT_MS,
            // The peer server's message limit is computed from this size.
            snapshot_max_chunk_size: peer::SNAPSHOT_CHUNK_BYTES,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let network = Network::new(identity.cluster_id);
        let raft = Raft::new(
            identity.member_id,
            Arc::new(raft_cfg),
            network.clone(),
            log,
            sm,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        // A member joining an existing cluster waits for the leader instead.
        if !initialized && cfg.initial_cluster_state == "new" {
            let nodes: BTreeMap<NodeId, openraft::BasicNode> = members
                .iter()
                .map(|m| (m.id, openraft::BasicNode::new(m.peer_urls.join(","))))
                .collect();
            raft.initialize(nodes)
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
        }

        // openraft resumes a restarted leader's leadership in its old term,
        // with its commit index only as far as its last durable apply: until
        // it has applied its whole log again, a read could miss writes
        // acknowledged before the crash. Reads on this leader wait for that.
        let watermark = if leadership::leads_now(&raft, identity.member_id).await {
            raft.metrics().borrow().last_log_index.unwrap_or(0)
        } else {
            0
        };

        let node = Arc::new(Node {
            reads: read_index::ReadIndex::start(
                raft.clone(),
                network.clone(),
                identity.member_id,
                watermark,
            ),
            proposer: propose::Proposer::start(
                raft.clone(),
                network.clone(),
                identity.member_id,
                core.replies.clone(),
            ),
            network,

            raft,
            core,
            header,
            limits: Limits {
                max_txn_ops: cfg.max_txn_ops,
            },
            max_request_bytes: cfg.max_request_bytes,
            quota_bytes: cfg.quota_bytes(),
            retention,
            election_timeout,
            heartbeat_interval: Duration::from_millis(cfg.heartbeat_interval),
            elections: election::Elections::new(
                election_timeout,
                Duration::from_millis(cfg.heartbeat_interval),
            ),
            transfer: tokio::sync::RwLock::new(()),
            members,
            name: identity.name.clone(),
            token: identity.token.clone(),
            next_id: AtomicU64::new(rand::random::<u64>() >> 16),
            tasks: Mutex::new(Vec::new()),
            member_dir,
            eviction: removal::Eviction::default(),
            ready: tokio::sync::watch::channel(false).0,
        });
        background::spawn_all(&node);
        node.tasks
            .lock()
            .push(tokio::spawn(removal::probe_loop(node.clone())));
        Ok(node)
    }

    /// This member's identity: from its data dir after the first start,
    /// otherwise from the flags (and, joining an existing cluster, from a peer).
    async fn identity(
        cfg: &Config,
        member_dir: &std::path::Path,
        members: &[MemberInfo],
        me: &MemberInfo,
    ) -> Result<ids::Identity, StartError> {
        let io = |e: std::io::Error| StartError::DataDir(member_dir.to_path_buf(), e);
        if let Some(id) = ids::load_identity(member_dir).map_err(io)? {
            if id.token != cfg.initial_cluster_token || id.name != cfg.name {
                tracing::warn!(
                    name = %id.name,
                    token = %id.token,
                    "member already bootstrapped: ignoring --name/--initial-cluster-* flags that differ"
                );
            }
            return Ok(id);
        }
        let token = &cfg.initial_cluster_token;
        // A joining member's ID is the one MemberAdd gave it, learned from
        // the cluster (it is not derived from the flags: see ids.rs).
        let (cluster_id, member_id) = match cfg.initial_cluster_state.as_str() {
            "new" => (ids::cluster_id(members, token), me.id),
            "existing" => {
                let joined = ids::fetch_cluster_id(members, me)
                    .await
                    .map_err(StartError::Join)?;
                tracing::info!(
                    member_id = %format!("{:x}", joined.member_id),
                    "joined the existing cluster"
                );
                (joined.cluster_id, joined.member_id)
            }
            other => return Err(ConfigError::UnsupportedState(other.to_string()).into()),
        };
        let id = ids::Identity {
            name: cfg.name.clone(),
            member_id,
            cluster_id,
            token: token.clone(),
        };
        ids::save_identity(member_dir, &id).map_err(io)?;
        Ok(id)
    }

    /// A response header at `revision` (0 = the current revision).
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        let rev = if revision > 0 {
            revision
        } else {
            self.core.store.current_rev()
        };
        Some(self.header.at(rev))
    }

    /// Replaces a header that carries only a revision with a full one.
    pub fn fill(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map(|h| h.revision).unwrap_or(0);
        *h = self.header(rev);
    }

    pub fn member_id(&self) -> u64 {
        self.header.member_id
    }

    pub fn members(&self) -> &[MemberInfo] {
        &self.members
    }

    pub fn hub(&self) -> &Arc<WatchHub> {
        &self.core.hub
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// etcd's overload guard: refuses new proposals while this member's
    /// applier is more than [`MAX_APPLY_LAG`] entries behind its log (etcd
    /// compares with the commit index, which openraft 0.9 does not publish;
    /// the log's end is at most a few uncommitted entries past it).
    fn check_apply_lag(&self) -> KvResult<()> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let last = m.last_log_index.unwrap_or(0);
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        if last.saturating_sub(applied) > MAX_APPLY_LAG {
            return Err(KvError::TooManyRequests);
        }
        Ok(())
    }

    /// Proposes one request and waits until it is applied: on the leader
    /// directly, from a follower through the leader.
    pub async fn propose(&self, request: Request) -> KvResult<Applied> {
        // A client's request carries who sent it, for the applier's re-check.
        let request = self.core.auth.wrap(request).map_err(KvError::Auth)?;
        let req = InternalRequest {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            request: Some(request),
        };
        let size = req.encoded_len();
        if size > self.max_request_bytes {
            return Err(KvError::RequestTooLarge);
        }
        self.check_apply_lag()?;
        self.settled().await;
        // Only waits for a leader to exist: the batcher routes the request
        // (here, or to the leader) as it leaves the queue.
        self.route_waiting().await?;
        self.proposer.propose(req, size, true).await
    }

    /// A proposal forwarded by a follower: accepted only while leader.
    pub(crate) async fn propose_as_leader(&self, req: InternalRequest) -> KvResult<Applied> {
        let size = req.encoded_len();
        if size > self.max_request_bytes {
            return Err(KvError::RequestTooLarge);
        }
        self.check_apply_lag()?;
        self.settled().await;
        match self.route()? {
            Route::Local => self.proposer.propose(req, size, false).await,
            Route::Leader { .. } => Err(KvError::NoLeader),
        }
    }

    /// Waits until this member has applied everything committed before the call.
    pub async fn read_barrier(&self) -> KvResult<()> {
        self.settled().await;
        self.reads.wait().await
    }

    /// Waits while a leadership hand-over is in progress on this member.
    async fn settled(&self) {
        drop(self.transfer.read().await);
    }

    /// Resolves, with the reason, once raft has stopped on a fatal error: a
    /// raft log write or fsync failed, or the backend could not commit an
    /// applied batch. Such a member can serve nothing any more (it would keep
    /// answering "server stopped" and still call itself leader), so kvd
    /// exits, as etcd does; a restart recovers from what is on disk.
    pub async fn fatal(self: &Arc<Self>) -> Fatal {
        // openraft 0.9 re-sends `metrics()` after every turn of its core loop
        // (about three per write), waking each waiter. This future runs on
        // the thread that runs main, where each wake is a futex call made on
        // the write path; so it waits on `server_metrics()` (changed only by
        // role, leader and membership; closed once raft stopped) and runs the
        // removal wait (removal.rs, woken by the applier and by peers) as a
        // task on the runtime's workers.
        let node = self.clone();
        // A removed member stops too (etcd exits): see removal.rs.
        let mut removed = AbortOnDrop(tokio::spawn(async move { node.eviction.wait(&node).await }));
        let mut server = self.raft.server_metrics();
        loop {
            if let Err(e) = &self.raft.metrics().borrow().running_state {
                return Fatal::Storage(e.to_string());
            }
            tokio::select! {
                reason = &mut removed.0 => {
                    return Fatal::Removed(reason.unwrap_or_else(|e| e.to_string()));
                }
                changed = server.changed() => {
                    if changed.is_err() {
                        // RaftCore set its error in `metrics()` before it
                        // stopped and dropped this sender.
                        return match &self.raft.metrics().borrow().running_state {
                            Err(e) => Fatal::Storage(e.to_string()),
                            Ok(()) => Fatal::Storage("raft stopped".to_string()),
                        };
                    }
                }
            }
        }
    }

    /// Resolves once this member may serve clients: its attributes
    /// ("publish") are applied here, so it has caught up with what the
    /// cluster had committed when it (re)started, and a client never reads
    /// older data from it than it served before a crash (etcd's ReadyNotify).
    pub async fn ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives as long as `self`: no error while we wait.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Whether [`Node::ready`] has resolved.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Stops raft and the background tasks.
    pub async fn shutdown(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// Aborts its task when dropped (`Node::fatal` returning or being dropped).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
