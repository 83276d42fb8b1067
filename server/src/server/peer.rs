//! The peer gRPC service (`kvpb.Peer`): the receiving end of raft's network,
//! plus the leader-side answers to followers' forwarded requests (proposals,
//! read index, lease keep-alives).

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

use super::Node;
use crate::apply::Applied;
use crate::error::{KvError, KvResult};
use crate::raft::network::{CLUSTER_ID_HEADER, MAX_PEER_MESSAGE};
use crate::raft::TypeConfig;

pub struct PeerService(pub Arc<Node>);

fn decode<T: serde::de::DeserializeOwned>(m: &RaftMessage) -> Result<T, Status> {
    bincode::deserialize(&m.data)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Response<RaftMessage>, Status> {
    bincode::serialize(v)
        .map(|data| Response::new(RaftMessage { data }))
        .map_err(|e| Status::internal(e.to_string()))
}

pub fn peer_error(e: &KvError) -> PeerError {
    PeerError {
        code: e.code().to_string(),
        message: e.to_string(),
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
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref())?;
        let resp = self.0.raft.append_entries(rpc).await;
        if !matches!(resp, Ok(AppendEntriesResponse::HigherVote(_)) | Err(_)) {
            self.0.elections.heard_from_leader();
        }
        encode(&resp)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<u64> = decode(req.get_ref())?;
        encode(&self.0.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req.get_ref())?;
        let vote = rpc.vote;
        let resp = self.0.raft.install_snapshot(rpc).await;
        if matches!(&resp, Ok(r) if r.vote.partial_cmp(&vote) != Some(std::cmp::Ordering::Greater))
        {
            self.0.elections.heard_from_leader();
        }
        encode(&resp)
    }

    async fn propose_batch(
        &self,
        req: Request<InternalBatch>,
    ) -> Result<Response<ProposeBatchResponse>, Status> {
        let node = &self.0;
        let proposals = req
            .into_inner()
            .requests
            .into_iter()
            .map(|r| node.propose_as_leader(r));
        let results = futures::future::join_all(proposals)
            .await
            .into_iter()
            .map(to_wire)
            .collect();
        Ok(Response::new(ProposeBatchResponse { results }))
    }

    async fn read_index(
        &self,
        _req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        self.0.settled().await;
        let check = super::read_index::leader_read_index(&self.0.raft, self.0.watermark);
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
        _req: Request<StartElectionRequest>,
    ) -> Result<Response<StartElectionResponse>, Status> {
        self.0
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
        let node = &self.0;
        let granted = node
            .elections
            .grant(&node.raft, node.member_id(), req.get_ref());
        Ok(Response::new(PreVoteResponse { granted }))
    }

    async fn cluster_id(
        &self,
        _req: Request<ClusterIdRequest>,
    ) -> Result<Response<ClusterIdResponse>, Status> {
        Ok(Response::new(ClusterIdResponse {
            cluster_id: self.0.header.cluster_id,
        }))
    }

    async fn lease_renew(
        &self,
        req: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseRenewResponse>, Status> {
        let resp = match self.0.lease_renew_as_leader(req.get_ref().id) {
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
    let mut servers = Vec::new();
    let ours = format!("{:x}", node.header.cluster_id);
    let check = move |req: Request<()>| -> Result<Request<()>, Status> {
        if crate::raft::failpoint::isolated() {
            return Err(crate::raft::failpoint::unreachable());
        }
        match req
            .metadata()
            .get(CLUSTER_ID_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            Some(theirs) if theirs != ours => {
                tracing::warn!(theirs, ours = %ours, "refused a peer request from another cluster");
                Err(Status::failed_precondition(format!(
                    "kvd: cluster ID mismatch (ours {ours}, request's {theirs}): check --initial-cluster-token"
                )))
            }
            _ => Ok(req),
        }
    };
    for l in listeners {
        let svc = tonic::service::interceptor::InterceptedService::new(
            PeerServer::new(PeerService(node.clone()))
                .max_decoding_message_size(MAX_PEER_MESSAGE)
                .max_encoding_message_size(MAX_PEER_MESSAGE),
            check.clone(),
        );
        let shutdown = crate::api::stopped(stop.clone());
        // The builder's tcp_nodelay applies only to listeners tonic binds
        // itself; without it here, Nagle plus the peer's delayed ACK held
        // replies to forwarded writes and AppendEntries for ~40 ms.
        let incoming = TcpListenerStream::new(l).map(|conn| {
            conn.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        });
        servers.push(tokio::spawn(
            tonic::transport::Server::builder()
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
