//! etcdserverpb.Lease.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use kv_proto::etcdserverpb::lease_client::LeaseClient;
use kv_proto::etcdserverpb::lease_server::Lease;
use kv_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::status::to_status;
use crate::node::{ClientRoute, Node};

pub struct LeaseService(pub Arc<Node>);

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        self.0
            .lease_grant(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        self.0
            .lease_revoke(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let node = self.0.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok(Some(r)) = inbound.message().await {
                let resp = match node.lease_renew(r.id).await {
                    // etcd answers an unknown lease with TTL 0, not an error.
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: node.header(0),
                        id: r.id,
                        ttl: ttl.unwrap_or(0),
                    }),
                    Err(e) => Err(to_status(e)),
                };
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        // Deadlines live on the leader: a follower asks it.
        if let ClientRoute::Leader(ch) = self.0.client_route().await.map_err(to_status)? {
            // The leader checks the same user's permission on the keys.
            return LeaseClient::new(ch)
                .lease_time_to_live(crate::auth::forward_token(req.into_inner()))
                .await;
        }
        let resp = self
            .0
            .lease_time_to_live(req.get_ref())
            .map_err(to_status)?;
        if req.get_ref().keys {
            self.0.check_lease_keys(&resp.keys).map_err(to_status)?;
        }
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        Ok(Response::new(self.0.lease_leases()))
    }
}
