//! The peer network: openraft's RPCs over gRPC (`kvpb.Peer`) to the peer URL
//! each member advertises. One lazily connected HTTP/2 connection per peer
//! (network/conn.rs: the h2 crate driven from the calling task, not tonic's
//! `Channel`) is kept and reused; every call is bounded (by openraft's
//! deadline, or for entries by one sized to their bytes), so a dead or slow
//! peer costs a timeout, never a stalled leader, and a large entry still
//! gets through.

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
use openraft::{BasicNode, EntryPayload, LogId, RaftNetwork, RaftNetworkFactory, Vote};
use parking_lot::Mutex;

use super::types::{Entry, NodeId, TypeConfig};

#[cfg(test)]
mod append_tests;
mod conn;
#[cfg(test)]
mod conn_tests;
#[cfg(test)]
mod test_peer;
pub use conn::PeerConn;
use kv_client::conn::{Conn, Settings};

/// Largest peer message (a batch of entries or a snapshot chunk).
pub const MAX_PEER_MESSAGE: usize = 256 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How a peer connection is made and kept: a 1 s connect timeout, and a
/// ping every 5 s that must be answered within 5 s (a frozen peer's
/// connection is dropped, not waited on).
const PEER_CONN: Settings = Settings {
    connect_timeout: CONNECT_TIMEOUT,
    keep_alive_interval: Duration::from_secs(5),
    keep_alive_timeout: Duration::from_secs(5),
};
/// Most entry bytes in one AppendEntries (etcd's MaxSizePerMsg); a larger
/// single entry still goes, alone.
pub const MAX_APPEND_BYTES: usize = 1 << 20;
/// The least time an AppendEntries with entries is given, whatever its size.
const APPEND_DEADLINE_BASE: Duration = Duration::from_secs(2);
/// The slowest link an AppendEntries deadline allows for, in bytes a second.
const MIN_THROUGHPUT: usize = 1 << 20;
/// openraft's deadline for one InstallSnapshot chunk (3 MiB by default),
/// the last one including the install of the whole snapshot, in
/// milliseconds: room for a slow link and a large store. A last chunk that
/// runs out of it makes the leader send a fresh snapshot from the start
/// while the follower is still installing the first (a 113 MB install took
/// 49 s in a debug build on a loaded 2-core machine), so it is generous; it
/// only delays noticing a follower that died mid-transfer.
pub const SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PeerFailure(String);

/// The metadata key every peer request carries: the sender's cluster ID.
pub const CLUSTER_ID_HEADER: &str = "x-kvd-cluster-id";

/// The metadata key naming the member a peer request is meant for (hex ID).
/// A process answering at that member's URL under another ID (a removed
/// member restarted from its old data dir at a URL since re-used) refuses
/// it, so its acknowledgements never count for the member that replaced it.
pub const TO_MEMBER_HEADER: &str = "x-kvd-to-member";

type Ascii = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

/// Stamps outgoing peer requests with our cluster ID, so a member of another
/// cluster (say, one started with a different --initial-cluster-token) is
/// refused instead of joining in, and with the member they are for.
#[derive(Clone)]
pub struct StampClusterId {
    cluster: Ascii,
    to: Option<Ascii>,
}

impl StampClusterId {
    fn to(&self, target: NodeId) -> Self {
        StampClusterId {
            cluster: self.cluster.clone(),
            to: format!("{target:x}").parse().ok(),
        }
    }
}

impl tonic::service::Interceptor for StampClusterId {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if super::failpoint::isolated() {
            return Err(super::failpoint::unreachable());
        }
        req.metadata_mut()
            .insert(CLUSTER_ID_HEADER, self.cluster.clone());
        if let Some(to) = &self.to {
            req.metadata_mut().insert(TO_MEMBER_HEADER, to.clone());
        }
        Ok(req)
    }
}

pub type PeerChannel = tonic::service::interceptor::InterceptedService<PeerConn, StampClusterId>;

/// Peer connections, shared by raft replication and request forwarding.
#[derive(Clone)]
pub struct Network {
    channels: Arc<Mutex<HashMap<NodeId, (String, PeerConn)>>>,
    stamp: StampClusterId,
}

impl Network {
    pub fn new(cluster_id: u64) -> Self {
        let value = format!("{cluster_id:x}")
            .parse()
            .unwrap_or_else(|_| tonic::metadata::MetadataValue::from_static("0"));
        Network {
            channels: Arc::default(),
            stamp: StampClusterId {
                cluster: value,
                to: None,
            },
        }
    }

    /// The connection to `target` at `addr` (its first peer URL), created
    /// on first use (it connects on its first call).
    pub fn channel(&self, target: NodeId, addr: &str) -> Result<PeerConn, String> {
        let url = addr.split(',').next().unwrap_or(addr).to_string();
        let mut map = self.channels.lock();
        if let Some((u, ch)) = map.get(&target) {
            if *u == url {
                return Ok(ch.clone());
            }
        }
        let ch = if crate::config::is_https(&url) {
            // https peer URLs get the peer TLS settings (crate::tls::install)
            // through tonic's Channel.
            PeerConn::Tonic(
                crate::tls::peer_endpoint(&url)?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(PEER_CONN.keep_alive_interval)
                    .keep_alive_timeout(PEER_CONN.keep_alive_timeout)
                    .connect_lazy(),
            )
        } else {
            PeerConn::H2(Conn::plaintext(&url, PEER_CONN).map_err(|e| e.to_string())?)
        };
        map.insert(target, (url, ch.clone()));
        Ok(ch)
    }

    pub fn client(&self, target: NodeId, addr: &str) -> Result<PeerClient<PeerChannel>, String> {
        Ok(
            PeerClient::with_interceptor(self.channel(target, addr)?, self.stamp.to(target))
                .max_decoding_message_size(MAX_PEER_MESSAGE)
                .max_encoding_message_size(MAX_PEER_MESSAGE),
        )
    }
}

pub struct Peer {
    target: NodeId,
    addr: String,
    net: Network,
    /// An AppendEntries still running past openraft's deadline (see
    /// [`Peer::append_entries`]).
    inflight: Option<InFlight>,
}

/// One AppendEntries call that outlived openraft's deadline, moved into a
/// task of its own under its payload-sized deadline. openraft resends the
/// same range after a timeout; that resend waits for this call instead of
/// starting over.
struct InFlight {
    key: AppendKey,
    task: tokio::task::JoinHandle<AppendResult>,
}

type AppendResult = Result<AppendEntriesResponse<NodeId>, RpcErr<RaftError<NodeId>>>;

/// An AppendEntries call as it is awaited: on the replication task itself
/// (no task per call: a spawn per AppendEntries cost a task hand-off and a
/// wake across threads), or the task a call that outlived a deadline was
/// moved to.
enum Running {
    Inline(futures::future::BoxFuture<'static, AppendResult>),
    Spawned(tokio::task::JoinHandle<AppendResult>),
}

impl Running {
    async fn wait(&mut self) -> AppendResult {
        match self {
            Running::Inline(call) => call.await,
            Running::Spawned(task) => match task.await {
                Ok(result) => result,
                Err(e) => Err(net_err(e.to_string())),
            },
        }
    }
}

/// The call [`Peer::append_entries`] awaits. If the wait ends first
/// (openraft's deadline dropped it, or the wait's own ran out), the call
/// moves to a task of its own and into `slot`, where openraft's resend of
/// the same range picks it up, so a large entry is never started over.
struct Awaited<'a> {
    slot: &'a mut Option<InFlight>,
    key: AppendKey,
    call: Option<Running>,
}

impl Drop for Awaited<'_> {
    fn drop(&mut self) {
        let task = match self.call.take() {
            None => return,
            Some(Running::Spawned(task)) => task,
            Some(Running::Inline(call)) => match tokio::runtime::Handle::try_current() {
                Ok(rt) => rt.spawn(call),
                // The runtime is shutting down: nothing is left to wait for it.
                Err(_) => return,
            },
        };
        *self.slot = Some(InFlight {
            key: self.key,
            task,
        });
    }
}

/// What identifies an AppendEntries: the same vote, previous log id and last
/// log id mean the same entries (raft's log matching).
type AppendKey = (Vote<NodeId>, Option<LogId<NodeId>>, Option<LogId<NodeId>>);

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(f) = self.inflight.take() {
            f.task.abort();
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            net: self.clone(),
            inflight: None,
        }
    }
}

type RpcErr<E> = RPCError<NodeId, BasicNode, E>;

fn net_err<E: std::error::Error>(m: String) -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&PeerFailure(m)))
}

/// Sends one bincode-encoded openraft message to `target` and decodes the
/// remote's `Result<Resp, E>`, giving up after `deadline`.
async fn call<Req, Resp, E>(
    net: &Network,
    target: NodeId,
    addr: &str,
    kind: Kind,
    req: &Req,
    deadline: Duration,
) -> Result<Resp, RpcErr<E>>
where
    Req: serde::Serialize,
    Resp: serde::de::DeserializeOwned,
    E: std::error::Error + serde::de::DeserializeOwned,
{
    let data = bincode::serialize(req).map_err(|e| net_err(e.to_string()))?;
    let mut client = net
        .client(target, addr)
        .map_err(|e| RPCError::Unreachable(Unreachable::new(&PeerFailure(e))))?;
    let (sent, start) = (data.len(), std::time::Instant::now());
    let msg = RaftMessage { data };
    let fut = async {
        match kind {
            Kind::Append => client.append_entries(msg).await,
            Kind::Vote => client.vote(msg).await,
            Kind::Snapshot => client.install_snapshot(msg).await,
        }
    };
    let resp = tokio::time::timeout(deadline, fut)
        .await
        .map_err(|_| net_err(format!("peer {target:x}: timed out")))?
        .map_err(|s| {
            let e = PeerFailure(format!("peer {target:x}: {}", s.message()));
            if s.code() == tonic::Code::Unavailable {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
    let data = resp.into_inner().data;
    crate::metrics::peer_exchange(target, sent, data.len(), Some(start.elapsed()));
    let result: Result<Resp, E> =
        decode_response(&data).map_err(|e| net_err(format!("peer {target:x}: {e}")))?;
    result.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
}

/// Largest error response decoded. openraft's errors nest (`AnyError`'s
/// `source` chain), and bincode decodes nesting by recursion with no depth
/// limit: every 10 bytes can open one more level, so a 100 KB response
/// overflowed a 2 MiB worker stack and aborted the process. 8 KiB bounds
/// the depth to ~800 levels, while real errors are a few hundred bytes.
const MAX_ERROR_RESPONSE: usize = 8 << 10;

/// Decodes a peer's bincode `Result<Resp, E>`. The success types do not
/// nest; an error response larger than [`MAX_ERROR_RESPONSE`] is refused
/// before decoding.
pub(crate) fn decode_response<Resp, E>(data: &[u8]) -> Result<Result<Resp, E>, String>
where
    Resp: serde::de::DeserializeOwned,
    E: serde::de::DeserializeOwned,
{
    // bincode writes a Result as its u32 variant index (0 = Ok), then the value.
    let ok = data.get(..4) == Some(&0u32.to_le_bytes()[..]);
    if !ok && data.len() > MAX_ERROR_RESPONSE {
        return Err(format!(
            "error response of {} bytes exceeds {MAX_ERROR_RESPONSE}",
            data.len()
        ));
    }
    bincode::deserialize(data).map_err(|e| e.to_string())
}

/// Bytes an entry adds to an AppendEntries message (payload plus a
/// generous allowance for its log id and framing).
fn entry_bytes(e: &Entry) -> usize {
    let payload = match &e.payload {
        EntryPayload::Normal(r) => r.bytes.len(),
        EntryPayload::Membership(m) => 64 * m.nodes().count(),
        EntryPayload::Blank => 0,
    };
    payload + 64
}

/// Cuts `rpc` to the entries that fit in [`MAX_APPEND_BYTES`] (always at
/// least one, as etcd's MaxSizePerMsg). Returns the bytes kept and, when
/// entries were cut, the last log id actually sent.
fn bound_entries(rpc: &mut AppendEntriesRequest<TypeConfig>) -> (usize, Option<LogId<NodeId>>) {
    let mut bytes = 0;
    let mut keep = 0;
    for e in &rpc.entries {
        let n = entry_bytes(e);
        if keep > 0 && bytes + n > MAX_APPEND_BYTES {
            break;
        }
        bytes += n;
        keep += 1;
    }
    if keep == rpc.entries.len() {
        return (bytes, None);
    }
    rpc.entries.truncate(keep);
    (bytes, rpc.entries.last().map(|e| e.log_id))
}

/// How long an AppendEntries of `bytes` may take in all: a floor for the
/// round trip and the follower's fsync, plus the payload at a slow link's
/// [`MIN_THROUGHPUT`].
fn payload_deadline(bytes: usize) -> Duration {
    APPEND_DEADLINE_BASE + Duration::from_secs_f64(bytes as f64 / MIN_THROUGHPUT as f64)
}

impl Peer {
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
        call(
            &self.net,
            self.target,
            &self.addr,
            kind,
            req,
            option.hard_ttl(),
        )
        .await
        .inspect_err(|_| {
            crate::metrics::peer_send_failed(self.target, matches!(kind, Kind::Append))
        })
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Peer {
    /// Sends at most [`MAX_APPEND_BYTES`] of entries (openraft batches up to
    /// `max_payload_entries` entries regardless of size) and reports a cut
    /// batch as `PartialSuccess`, so openraft sends the rest next. openraft
    /// gives each call one heartbeat interval; a call carrying entries keeps
    /// running past that under [`payload_deadline`], and openraft's resend of
    /// the same range picks its result up instead of starting over, so a
    /// large entry is never retried forever.
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        if rpc.entries.is_empty() {
            return self.call(Kind::Append, &rpc, &option).await;
        }
        let (bytes, cut) = bound_entries(&mut rpc);
        let last = rpc.entries.last().map(|e| e.log_id);
        let key: AppendKey = (rpc.vote, rpc.prev_log_id, last);
        let running = match self.inflight.take() {
            Some(f) if f.key == key => Running::Spawned(f.task),
            other => {
                if let Some(f) = other {
                    f.task.abort();
                }
                let (net, target, addr) = (self.net.clone(), self.target, self.addr.clone());
                let deadline = payload_deadline(bytes);
                let sent = Box::pin(async move {
                    call(&net, target, &addr, Kind::Append, &rpc, deadline)
                        .await
                        .inspect_err(|_| crate::metrics::peer_send_failed(target, false))
                });
                Running::Inline(sent)
            }
        };
        let target = self.target;
        let mut awaited = Awaited {
            slot: &mut self.inflight,
            key,
            call: Some(running),
        };
        let done = tokio::time::timeout(option.hard_ttl(), async {
            let result = match awaited.call.as_mut() {
                Some(running) => running.wait().await,
                None => Err(net_err("no call in flight".to_string())),
            };
            awaited.call = None;
            result
        })
        .await;
        // Still running (the wait ran out): it moves to a task of its own.
        drop(awaited);
        let Ok(result) = done else {
            return Err(net_err(format!(
                "peer {target:x}: {bytes} bytes of entries still in flight"
            )));
        };
        match (result?, cut) {
            (AppendEntriesResponse::Success, Some(sent)) => {
                Ok(AppendEntriesResponse::PartialSuccess(Some(sent)))
            }
            (resp, _) => Ok(resp),
        }
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

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::raft::RaftRequest;

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(RaftRequest {
                bytes: vec![0; bytes],
            }),
        }
    }

    fn request(sizes: &[usize]) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: sizes
                .iter()
                .enumerate()
                .map(|(i, n)| entry(i as u64 + 1, *n))
                .collect(),
        }
    }

    #[test]
    fn batches_are_cut_at_the_byte_budget() {
        let mut rpc = request(&[400 << 10, 400 << 10, 400 << 10, 10]);
        let (_, cut) = bound_entries(&mut rpc);
        assert_eq!(rpc.entries.len(), 2);
        assert_eq!(cut.map(|l| l.index), Some(2));
    }

    #[test]
    fn a_large_entry_goes_alone_and_small_batches_whole() {
        let mut rpc = request(&[3 << 20, 10]);
        let (bytes, cut) = bound_entries(&mut rpc);
        assert_eq!(rpc.entries.len(), 1);
        assert!(bytes > 3 << 20);
        assert_eq!(cut.map(|l| l.index), Some(1));
        let mut rpc = request(&[10, 20, 30]);
        assert_eq!(bound_entries(&mut rpc).1, None);
        assert_eq!(rpc.entries.len(), 3);
    }

    #[test]
    fn the_deadline_grows_with_the_payload() {
        assert!(payload_deadline(16 << 20) > payload_deadline(1 << 20));
        assert!(payload_deadline(0) >= APPEND_DEADLINE_BASE);
    }
}
