//! The peer network: openraft's RPCs over gRPC (`kvpb.Peer`) to the peer URL
//! each member advertises. One lazily connected channel per peer is kept and
//! reused; every call carries openraft's deadline, so a dead or slow peer
//! costs a timeout, never a stalled leader.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kv_proto::kvpb::peer_client::PeerClient;
use kv_proto::kvpb::RaftMessage;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use super::types::{NodeId, TypeConfig};

/// Largest peer message (a batch of entries or a snapshot chunk).
pub const MAX_PEER_MESSAGE: usize = 256 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PeerFailure(String);

/// The metadata key every peer request carries: the sender's cluster ID.
pub const CLUSTER_ID_HEADER: &str = "x-kvd-cluster-id";

/// Stamps outgoing peer requests with our cluster ID, so a member of another
/// cluster (say, one started with a different --initial-cluster-token) is
/// refused instead of joining in.
#[derive(Clone)]
pub struct StampClusterId(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for StampClusterId {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if super::failpoint::isolated() {
            return Err(super::failpoint::unreachable());
        }
        req.metadata_mut().insert(CLUSTER_ID_HEADER, self.0.clone());
        Ok(req)
    }
}

pub type PeerChannel = tonic::service::interceptor::InterceptedService<Channel, StampClusterId>;

/// Peer channels, shared by raft replication and request forwarding.
#[derive(Clone)]
pub struct Network {
    channels: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
    stamp: StampClusterId,
}

impl Network {
    pub fn new(cluster_id: u64) -> Self {
        let value = format!("{cluster_id:x}")
            .parse()
            .unwrap_or_else(|_| tonic::metadata::MetadataValue::from_static("0"));
        Network {
            channels: Arc::default(),
            stamp: StampClusterId(value),
        }
    }

    /// The channel to `target` at `addr` (its first peer URL), created on first use.
    pub fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, String> {
        let url = addr.split(',').next().unwrap_or(addr).to_string();
        let mut map = self.channels.lock();
        if let Some((u, ch)) = map.get(&target) {
            if *u == url {
                return Ok(ch.clone());
            }
        }
        let ch = Endpoint::from_shared(url.clone())
            .map_err(|e| format!("bad peer URL {url:?}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        map.insert(target, (url, ch.clone()));
        Ok(ch)
    }

    pub fn client(&self, target: NodeId, addr: &str) -> Result<PeerClient<PeerChannel>, String> {
        Ok(
            PeerClient::with_interceptor(self.channel(target, addr)?, self.stamp.clone())
                .max_decoding_message_size(MAX_PEER_MESSAGE)
                .max_encoding_message_size(MAX_PEER_MESSAGE),
        )
    }
}

pub struct Peer {
    target: NodeId,
    addr: String,
    net: Network,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            net: self.clone(),
        }
    }
}

type RpcErr<E> = RPCError<NodeId, BasicNode, E>;

impl Peer {
    /// Sends one bincode-encoded openraft message and decodes the remote's
    /// `Result<Resp, E>`.
    async fn call<Req, Resp, E>(
        &self,
        kind: Kind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let net_err = |m: String| RPCError::Network(NetworkError::new(&PeerFailure(m)));
        let data = bincode::serialize(req).map_err(|e| net_err(e.to_string()))?;
        let mut client = self
            .net
            .client(self.target, &self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&PeerFailure(e))))?;
        let msg = RaftMessage { data };
        let fut = async {
            match kind {
                Kind::Append => client.append_entries(msg).await,
                Kind::Vote => client.vote(msg).await,
                Kind::Snapshot => client.install_snapshot(msg).await,
            }
        };
        let resp = tokio::time::timeout(option.hard_ttl(), fut)
            .await
            .map_err(|_| net_err(format!("peer {:x}: timed out", self.target)))?
            .map_err(|s| {
                let e = PeerFailure(format!("peer {:x}: {}", self.target, s.message()));
                if s.code() == tonic::Code::Unavailable {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let result: Result<Resp, E> =
            bincode::deserialize(&resp.into_inner().data).map_err(|e| net_err(e.to_string()))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        self.call(Kind::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(Kind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        self.call(Kind::Vote, &rpc, &option).await
    }
}
