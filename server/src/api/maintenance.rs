//! etcdserverpb.Maintenance and etcdserverpb.Cluster.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use kv_proto::etcdserverpb::cluster_client::ClusterClient;
use kv_proto::etcdserverpb::cluster_server::Cluster;
use kv_proto::etcdserverpb::maintenance_server::Maintenance;
use kv_proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::node::{ClientRoute, Node};

/// Bytes per Snapshot message.
const SNAPSHOT_CHUNK: usize = 32 * 1024;

pub struct MaintenanceService(pub Arc<Node>);
pub struct ClusterService(pub Arc<Node>);

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

/// Reads the exported snapshot in [`SNAPSHOT_CHUNK`]s and sends them, then
/// the digest; stops when the client goes away. As etcd's, the messages
/// carry no header, and the storage version (etcd 3.6+) in each.
fn send_snapshot(
    snap: crate::node::SnapshotFile,
    tx: tokio::sync::mpsc::Sender<Result<SnapshotResponse, Status>>,
) {
    use std::io::Read;
    let total = snap.len + snap.digest.len() as u64;
    let mut file = std::io::BufReader::new(snap.file);
    let mut sent = 0u64;
    while sent < snap.len {
        let want = (snap.len - sent).min(SNAPSHOT_CHUNK as u64) as usize;
        let mut blob = vec![0u8; want];
        if let Err(e) = file.read_exact(&mut blob) {
            tracing::error!(error = %e, "reading the snapshot file");
            let _ = tx.blocking_send(Err(Status::internal(format!("reading snapshot: {e}"))));
            return;
        }
        sent += want as u64;
        let chunk = SnapshotResponse {
            header: None,
            remaining_bytes: total - sent,
            blob,
            version: crate::node::API_VERSION.to_string(),
        };
        if tx.blocking_send(Ok(chunk)).is_err() {
            return;
        }
    }
    let _ = tx.blocking_send(Ok(SnapshotResponse {
        header: None,
        remaining_bytes: 0,
        blob: snap.digest.to_vec(),
        version: crate::node::API_VERSION.to_string(),
    }));
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    type SnapshotStream = SnapshotStream;

    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        self.0
            .alarm(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.0.status()))
    }

    async fn defragment(
        &self,
        _req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.0
            .defragment()
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn hash(&self, _req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.0.hash().await.map(Response::new).map_err(to_status)
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.0
            .hash_kv(req.get_ref().revision)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn snapshot(
        &self,
        _req: Request<SnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        let snap = self.0.snapshot_file().await.map_err(to_status)?;
        // A small channel: the reader runs at most two chunks ahead of the
        // client, so a snapshot costs a few chunks of memory (HTTP/2 flow
        // control holds the rest back).
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::task::spawn_blocking(move || send_snapshot(snap, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.0
            .move_leader(req.get_ref().target_id)
            .await
            .map_err(to_status)?;
        // etcd's MoveLeaderResponse carries no header.
        Ok(Response::new(MoveLeaderResponse { header: None }))
    }

    async fn downgrade(
        &self,
        _req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented("kvd: downgrade is not supported"))
    }
}

macro_rules! forward_to_leader {
    ($node:expr, $method:ident, $req:expr) => {
        if let ClientRoute::Leader(ch) = $node.client_route().await.map_err(to_status)? {
            return ClusterClient::new(ch)
                .$method(crate::auth::forward_token($req))
                .await;
        }
    };
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        r: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let req = r.into_inner();
        forward_to_leader!(self.0, member_add, req);
        let member = self
            .0
            .member_add(req.peer_ur_ls, req.is_learner)
            .await
            .map_err(to_status)?;
        let members = self.0.members_now().map_err(to_status)?;
        Ok(Response::new(MemberAddResponse {
            header: self.0.cluster_header(),
            member: Some(member),
            members,
        }))
    }

    async fn member_remove(
        &self,
        r: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let req = r.into_inner();
        forward_to_leader!(self.0, member_remove, req);
        self.0.member_remove(req.id).await.map_err(to_status)?;
        let members = self.0.members_now().map_err(to_status)?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.0.cluster_header(),
            members,
        }))
    }

    async fn member_update(
        &self,
        r: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = r.into_inner();
        forward_to_leader!(self.0, member_update, req);
        self.0
            .member_update(req.id, req.peer_ur_ls)
            .await
            .map_err(to_status)?;
        let members = self.0.members_now().map_err(to_status)?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.0.cluster_header(),
            members,
        }))
    }

    async fn member_list(
        &self,
        _r: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        self.0.member_list().map(Response::new).map_err(to_status)
    }

    async fn member_promote(
        &self,
        r: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let req = r.into_inner();
        forward_to_leader!(self.0, member_promote, req);
        self.0.member_promote(req.id).await.map_err(to_status)?;
        let members = self.0.members_now().map_err(to_status)?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.0.cluster_header(),
            members,
        }))
    }
}
