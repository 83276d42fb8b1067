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
        // The response stream reads the requests itself: each keep-alive is
        // answered on the stream's own task, with no reader task and channel
        // between (one task hand-off less per keep-alive), and a client that
        // stops reading answers stops being read (backpressure, no queue).
        let inbound = req.into_inner();
        let node = self.0.clone();
        let answers = futures::stream::unfold(Some(inbound), move |inbound| {
            let node = node.clone();
            async move {
                let mut inbound = inbound?;
                let r = match inbound.message().await {
                    Ok(Some(r)) => r,
                    // Closed by the client, or broken: the stream ends.
                    Ok(None) | Err(_) => return None,
                };
                match node.lease_renew(r.id).await {
                    // etcd answers an unknown lease with TTL 0, not an error.
                    Ok(ttl) => {
                        let resp = LeaseKeepAliveResponse {
                            header: node.header(0),
                            id: r.id,
                            ttl: ttl.unwrap_or(0),
                        };
                        Some((Ok(resp), Some(inbound)))
                    }
                    // The error ends the stream after it is sent.
                    Err(e) => Some((Err(to_status(e)), None)),
                }
            }
        });
        Ok(Response::new(Box::pin(answers)))
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
