//! The peer gRPC service (`kvpb.Peer`): the receiving end of raft's network,
//! plus the leader-side answers to followers' forwarded requests (proposals,
//! read index, lease keep-alives).
//!
//! Every request must carry this cluster's ID (`x-kvd-cluster-id`, as etcd's
//! peers require `X-Etcd-Cluster-ID`); one without it, or with another, is
//! refused before its payload is looked at. The one exception is `ClusterId`, which a
//! joining member calls before it knows the ID: it is answered only for a
//! member of the current configuration whose ID is what its peer URLs hash
//! to under this cluster's token. The ID guards against misconfiguration
//! (a member of another cluster, a stale data dir), not against attackers:
//! it is no secret. Peer mutual TLS is the security boundary.

use std::sync::Arc;

use kv_proto::kvpb::peer_server::{Peer, PeerServer};
use kv_proto::kvpb::propose_response::Result as ProposeResult;
use kv_proto::kvpb::{
    ClusterIdRequest, ClusterIdResponse, InternalBatch, LeaseRenewRequest, LeaseRenewResponse,
    PeerError, PreVoteRequest, PreVoteResponse, ProposeBatchResponse, ProposeResponse, RaftMessage,
    ReadIndexRequest, ReadIndexResponse, StartElectionRequest, StartElectionResponse,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::refusals::{Refusal, RefusalLog};
use super::Node;
use crate::apply::Applied;
use crate::error::{KvError, KvResult};
use crate::raft::network::{
    CLUSTER_ID_HEADER, MAX_APPEND_BYTES, MAX_PEER_MESSAGE, TO_MEMBER_HEADER,
};
use crate::raft::snapshot_receiver::{ReceiveError, SnapshotReceiver};
use crate::raft::TypeConfig;

/// The largest snapshot a member accepts: twice the backend quota (a store
/// over quota refuses further growth, so its snapshot stays near the quota),
/// and never less than 64 MiB.
fn snapshot_limit(quota_bytes: u64) -> u64 {
    quota_bytes.saturating_mul(2).max(64 << 20)
}

/// Bytes of snapshot data in one InstallSnapshot chunk (openraft's default,
/// set explicitly in the raft config so the bound below stays true).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 3 << 20;
/// What wraps a payload in a peer message: bincode and protobuf framing,
/// the per-request wrappers of a batch, a snapshot's meta (membership).
const PEER_ENVELOPE_BYTES: usize = 1 << 20;

/// The largest message a legitimate peer sends: a snapshot chunk, an
/// AppendEntries of up to [`MAX_APPEND_BYTES`] of entries or one larger
/// entry (a proposal batch is closed once it reaches the batch limit, so
/// it can exceed it by one request of up to `max_request_bytes`), or a
/// forwarded batch (the same bound); plus framing. The peer server refuses
/// anything larger before reading it, so a stranger cannot make a member
/// buffer hundreds of MiB. Members must share --max-request-bytes.
pub fn max_peer_message(max_request_bytes: usize) -> usize {
    let entry = super::propose::MAX_BATCH_BYTES.saturating_add(max_request_bytes);
    entry
        .max(MAX_APPEND_BYTES)
        .max(SNAPSHOT_CHUNK_BYTES as usize)
        .saturating_add(PEER_ENVELOPE_BYTES)
}

pub struct PeerService {
    node: Arc<Node>,
    /// This cluster's ID as the header carries it (lower-case hex).
    cluster_id: String,
    snapshots: Arc<SnapshotReceiver>,
    /// Refusals get a log line at most once per peer address and interval.
    refusals: Arc<RefusalLog>,
    /// The same for messages from removed members (its own limiter, so
    /// these lines are not suppressed by other refusals).
    removed_refusals: Arc<RefusalLog>,
}

impl PeerService {
    /// Whether a refusal of `kind` from `req`'s sender gets a log line now:
    /// `Some(suppressed since the last line)`, or `None`.
    fn log_refusal<T>(&self, kind: Refusal, req: &Request<T>) -> Option<u64> {
        let peer = req.remote_addr().map(|a| a.ip());
        self.refusals.admit(kind, peer, std::time::Instant::now())
    }

    /// Refuses a request without this cluster's ID (etcd answers a missing
    /// or wrong X-Etcd-Cluster-ID with "cluster ID mismatch").
    fn admit<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let theirs = req
            .metadata()
            .get(CLUSTER_ID_HEADER)
            .and_then(|v| v.to_str().ok());
        if theirs == Some(self.cluster_id.as_str()) {
            return self.addressed_to_me(req);
        }
        let theirs = theirs.unwrap_or("none");
        if let Some(suppressed) = self.log_refusal(Refusal::ClusterId, req) {
            let peer = req.remote_addr().map(|a| a.to_string());
            tracing::warn!(
                peer = %peer.as_deref().unwrap_or("unknown"),
                theirs,
                ours = %self.cluster_id,
                suppressed,
                "refused a peer request from another cluster (cluster ID mismatch)"
            );
        }
        Err(Status::failed_precondition(format!(
            "kvd: cluster ID mismatch (ours {}, request's {theirs}): check --initial-cluster-token",
            self.cluster_id
        )))
    }

    /// Refuses a message meant for another member ID (see
    /// [`TO_MEMBER_HEADER`]; etcd likewise refuses a message whose recipient
    /// is not itself). A request without the header (a joiner asking for
    /// the cluster ID) names no recipient.
    fn addressed_to_me<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(to) = req.metadata().get(TO_MEMBER_HEADER) else {
            return Ok(());
        };
        let me = format!("{:x}", self.node.member_id());
        let to = to.to_str().unwrap_or("?");
        if to == me {
            return Ok(());
        }
        if let Some(suppressed) = self.log_refusal(Refusal::ClusterId, req) {
            tracing::warn!(
                to,
                me = %me,
                suppressed,
                "refused a peer request meant for another member (was this member removed and its URL re-used?)"
            );
        }
        Err(Status::failed_precondition(format!(
            "kvd: request for member {to} reached member {me}"
        )))
    }

    /// Refuses a message from a member removed from the cluster (etcd
    /// answers 410 Gone with this text); the sender stops when it sees it.
    fn refuse_removed<T>(&self, sender: Option<u64>, req: &Request<T>) -> Result<(), Status> {
        let Some(sender) = sender else {
            return Ok(());
        };
        if !self.node.core.removed.lock().contains(&sender) {
            return Ok(());
        }
        let peer = req.remote_addr().map(|a| a.ip());
        if let Some(suppressed) =
            self.removed_refusals
                .admit(Refusal::ClusterId, peer, std::time::Instant::now())
        {
            tracing::warn!(
                peer = %peer.map(|p| p.to_string()).as_deref().unwrap_or("unknown"),
                member_id = %format!("{sender:x}"),
                suppressed,
                "refused a message from a removed member: {}",
                super::removal::REMOVED
            );
        }
        Err(super::removal::refusal())
    }

    /// The configured member whose peer URLs are `urls`, if any.
    fn member_with_urls(&self, urls: &[String]) -> Option<u64> {
        if urls.is_empty() {
            return None;
        }
        let metrics = self.node.raft.metrics();
        let m = metrics.borrow();
        let found = m
            .membership_config
            .membership()
            .nodes()
            .find(|(_, n)| {
                let theirs: Vec<String> = n.addr.split(',').map(str::to_string).collect();
                super::ids::same_urls(&theirs, urls)
            })
            .map(|(id, _)| *id);
        found
    }

    /// Whether a `ClusterId` caller proves to be a member of this cluster:
    /// its ID is what its peer URLs hash to under our token (so a member
    /// started with another token is refused), and a member of the
    /// configuration has those URLs (MemberAdd gave it a fresh ID, which the
    /// answer tells it).
    fn is_member(&self, req: &ClusterIdRequest) -> bool {
        let node = &self.node;
        if req.peer_urls.is_empty()
            || super::ids::member_id(&req.peer_urls, &node.token) != req.member_id
        {
            return false;
        }
        self.member_with_urls(&req.peer_urls).is_some()
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(m: &RaftMessage) -> Result<T, Status> {
    bincode::deserialize(&m.data)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Response<RaftMessage>, Status> {
    bincode::serialize(v)
        .map(|data| Response::new(RaftMessage { data }))
        .map_err(|e| Status::internal(e.to_string()))
}

/// An error as it crosses members: its code and detail from the one
/// table, so the receiver rebuilds the same error (never with a second
/// prefix) and its client gets exactly the text this member's would.
pub fn peer_error(e: &KvError) -> PeerError {
    PeerError {
        code: e.code().to_string(),
        message: e.detail(),
    }
}

pub fn from_peer_error(e: &PeerError) -> KvError {
    KvError::from_code(&e.code, &e.message)
}

/// An applied result as it crosses members.
pub fn to_wire(r: KvResult<Applied>) -> ProposeResponse {
    let result = match r {
        Err(e) => ProposeResult::Error(peer_error(&e)),
        Ok(Applied::None) => ProposeResult::None(true),
        Ok(Applied::Put(r)) => ProposeResult::Put(r),
        Ok(Applied::DeleteRange(r)) => ProposeResult::DeleteRange(r),
        Ok(Applied::Txn(r)) => ProposeResult::Txn(r),
        Ok(Applied::Compaction(r)) => ProposeResult::Compaction(r),
        Ok(Applied::LeaseGrant(r)) => ProposeResult::LeaseGrant(r),
        Ok(Applied::LeaseRevoke(r)) => ProposeResult::LeaseRevoke(r),
        Ok(Applied::Alarm(r)) => ProposeResult::Alarm(r),
    };
    ProposeResponse {
        result: Some(result),
    }
}

pub fn from_wire(r: ProposeResponse) -> KvResult<Applied> {
    match r.result {
        None | Some(ProposeResult::None(_)) => Ok(Applied::None),
        Some(ProposeResult::Error(e)) => Err(from_peer_error(&e)),
        Some(ProposeResult::Put(r)) => Ok(Applied::Put(r)),
        Some(ProposeResult::DeleteRange(r)) => Ok(Applied::DeleteRange(r)),
        Some(ProposeResult::Txn(r)) => Ok(Applied::Txn(r)),
        Some(ProposeResult::Compaction(r)) => Ok(Applied::Compaction(r)),
        Some(ProposeResult::LeaseGrant(r)) => Ok(Applied::LeaseGrant(r)),
        Some(ProposeResult::LeaseRevoke(r)) => Ok(Applied::LeaseRevoke(r)),
        Some(ProposeResult::Alarm(r)) => Ok(Applied::Alarm(r)),
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.admit(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref())?;
        self.refuse_removed(rpc.vote.leader_id().voted_for(), &req)?;
        let resp = self.node.raft.append_entries(rpc).await;
        if !matches!(resp, Ok(AppendEntriesResponse::HigherVote(_)) | Err(_)) {
            self.node.elections.heard_from_leader();
            self.node.eviction.heard_from_leader();
        }
        encode(&resp)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.admit(&req)?;
        let rpc: VoteRequest<u64> = decode(req.get_ref())?;
        self.refuse_removed(rpc.vote.leader_id().voted_for(), &req)?;
        encode(&self.node.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.admit(&req)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req.get_ref())?;
        self.refuse_removed(rpc.vote.leader_id().voted_for(), &req)?;
        let vote = rpc.vote;
        let refused = || self.log_refusal(Refusal::Snapshot, &req);
        let resp = self
            .snapshots
            .receive(&self.node.raft, rpc)
            .await
            .map_err(|e| match e {
                ReceiveError::TooLarge { .. } => {
                    if let Some(suppressed) = refused() {
                        tracing::warn!(error = %e, suppressed, "refused a snapshot chunk");
                    }
                    Status::out_of_range(e.to_string())
                }
                ReceiveError::Io(..) => {
                    tracing::error!(error = %e, "receiving a snapshot");
                    Status::internal(e.to_string())
                }
            })?;
        if matches!(&resp, Ok(r) if r.vote.partial_cmp(&vote) != Some(std::cmp::Ordering::Greater))
        {
            self.node.elections.heard_from_leader();
            self.node.eviction.heard_from_leader();
        }
        encode(&resp)
    }

    async fn propose_batch(
        &self,
        req: Request<InternalBatch>,
    ) -> Result<Response<ProposeBatchResponse>, Status> {
        self.admit(&req)?;
        let requests = req.into_inner().requests;
        // A member never sends more in one call; every request here becomes
        // a waiting future, so the count is bounded before anything else.
        if requests.len() > super::forward::MAX_BATCH_REQUESTS {
            return Err(Status::invalid_argument(format!(
                "kvd: {} forwarded requests in one call (at most {})",
                requests.len(),
                super::forward::MAX_BATCH_REQUESTS
            )));
        }
        let node = &self.node;
        let proposals = requests.into_iter().map(|r| async move {
            node.check_forwarded(&r).await?;
            node.propose_as_leader(r).await
        });
        let results = futures::future::join_all(proposals)
            .await
            .into_iter()
            .map(to_wire)
            .collect();
        Ok(Response::new(ProposeBatchResponse { results }))
    }

    async fn read_index(
        &self,
        req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        self.admit(&req)?;
        self.node.settled().await;
        // One leadership check (a heartbeat round) answers every follower's
        // call and local read waiting when it starts (read_index.rs).
        let check = self.node.reads.leader_index();
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), check)
            .await
            .unwrap_or(Err(KvError::Timeout));
        let resp = match result {
            Ok(index) => ReadIndexResponse { index, error: None },
            Err(e) => ReadIndexResponse {
                index: 0,
                error: Some(peer_error(&e)),
            },
        };
        Ok(Response::new(resp))
    }

    async fn start_election(
        &self,
        req: Request<StartElectionRequest>,
    ) -> Result<Response<StartElectionResponse>, Status> {
        self.admit(&req)?;
        self.node
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(StartElectionResponse {}))
    }

    async fn pre_vote(
        &self,
        req: Request<PreVoteRequest>,
    ) -> Result<Response<PreVoteResponse>, Status> {
        self.admit(&req)?;
        self.refuse_removed(Some(req.get_ref().candidate), &req)?;
        let node = &self.node;
        let granted = node
            .elections
            .grant(&node.raft, node.member_id(), req.get_ref());
        Ok(Response::new(PreVoteResponse { granted }))
    }

    async fn cluster_id(
        &self,
        req: Request<ClusterIdRequest>,
    ) -> Result<Response<ClusterIdResponse>, Status> {
        if self.admit(&req).is_ok() {
            // A member of this cluster asking about itself (removal.rs): a
            // removed one learns it here. (A joining member sends no cluster
            // ID, and its `member_id` is only the derived one, its proof of
            // the token, which may well be a removed member's.)
            self.refuse_removed(Some(req.get_ref().member_id), &req)?;
        } else if !self.is_member(req.get_ref()) {
            return Err(Status::permission_denied(format!(
                "kvd: member {:x} with peer URLs {:?} is not in this cluster's configuration \
                 (add it with MemberAdd first, with the same --initial-cluster-token)",
                req.get_ref().member_id,
                req.get_ref().peer_urls
            )));
        }
        Ok(Response::new(ClusterIdResponse {
            cluster_id: self.node.header.cluster_id,
            member_id: self.member_with_urls(&req.get_ref().peer_urls).unwrap_or(0),
        }))
    }

    async fn lease_renew(
        &self,
        req: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseRenewResponse>, Status> {
        self.admit(&req)?;
        let resp = match self.node.lease_renew_as_leader(req.get_ref().id) {
            Ok(ttl) => LeaseRenewResponse {
                ttl: ttl.unwrap_or(0),
                error: None,
            },
            Err(e) => LeaseRenewResponse {
                ttl: 0,
                error: Some(peer_error(&e)),
            },
        };
        Ok(Response::new(resp))
    }
}

/// Serves the peer API on `listeners` until `stop` turns true.
pub async fn serve(
    node: Arc<Node>,
    listeners: Vec<TcpListener>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let plain = listeners.into_iter().map(|l| (l, None)).collect();
    serve_with_tls(node, plain, stop).await
}

/// Serves the peer API until `stop` turns true: each listener in plaintext,
/// or with TLS when it comes with an acceptor (with --peer-client-cert-auth
/// or a peer CA, a member without a certificate signed by it cannot connect).
pub async fn serve_with_tls(
    node: Arc<Node>,
    listeners: Vec<(TcpListener, Option<crate::tls::TlsAcceptor>)>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let mut servers = Vec::new();
    if crate::raft::failpoint::ENABLED {
        tracing::warn!("built with test failpoints (the `failpoints` feature): not for production");
    }
    // Only the test partition hook runs before the handlers; each handler
    // checks the cluster ID itself (ClusterId is the one that may go without).
    let check = move |req: Request<()>| -> Result<Request<()>, Status> {
        if crate::raft::failpoint::isolated() {
            return Err(crate::raft::failpoint::unreachable());
        }
        Ok(req)
    };
    let snapshots = Arc::new(SnapshotReceiver::new(
        node.member_dir.join("snap"),
        snapshot_limit(node.quota_bytes),
    ));
    let max_recv = max_peer_message(node.max_request_bytes());
    let refusals = Arc::new(RefusalLog::default());
    let removed_refusals = Arc::new(RefusalLog::default());
    for (l, tls) in listeners {
        let svc = tonic::service::interceptor::InterceptedService::new(
            PeerServer::new(PeerService {
                node: node.clone(),
                cluster_id: format!("{:x}", node.header.cluster_id),
                snapshots: snapshots.clone(),
                refusals: refusals.clone(),
                removed_refusals: removed_refusals.clone(),
            })
            .max_decoding_message_size(max_recv)
            .max_encoding_message_size(MAX_PEER_MESSAGE),
            check,
        );
        let shutdown = crate::grpc::stopped(stop.clone());
        let mut builder = tonic::transport::Server::builder()
            // An oversized message is refused as grpc-go refuses it:
            // ResourceExhausted (tonic says OutOfRange).
            .layer(tower::util::MapResponseLayer::new(
                crate::grpc::grpc_go_size_status::<tonic::body::Body>,
            ));
        if let Some(acceptor) = tls {
            let incoming = crate::tls::incoming(l, acceptor, stop.clone());
            servers.push(tokio::spawn(
                builder
                    .add_service(svc)
                    .serve_with_incoming_shutdown(incoming, shutdown),
            ));
            continue;
        }
        // The builder's tcp_nodelay applies only to listeners tonic binds
        // itself; without it here, Nagle plus the peer's delayed ACK held
        // replies to forwarded writes and AppendEntries for ~40 ms.
        let incoming = TcpListenerStream::new(l).map(|conn| {
            conn.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        });
        servers.push(tokio::spawn(
            builder
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, shutdown),
        ));
    }
    for s in servers {
        if let Ok(Err(e)) = s.await {
            return Err(e);
        }
    }
    Ok(())
}
