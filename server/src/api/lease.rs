//! etcdserverpb.Lease.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use kv_proto::etcdserverpb::lease_client::LeaseClient;
use kv_proto::etcdserverpb::lease_server::Lease;
use kv_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tonic::{Request, Response, Status, Streaming};

use super::nudge::Handed;
use super::status::to_status;
use crate::error::KvResult;
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
        let answers = KeepAlives {
            node: self.0.clone(),
            inbound: Some(req.into_inner()),
            forwarded: None,
            handed: Handed::Idle,
        };
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

/// A renewal forwarded to the leader (on a follower): the lease's ID and
/// the leader's answer.
type Forwarded = Pin<Box<dyn Future<Output = (i64, KvResult<Option<i64>>)> + Send>>;

/// The answers of one LeaseKeepAlive stream, made on the response stream's
/// own task as its requests are read: no reader task and channel between
/// (one task hand-off less per keep-alive), and a client that stops reading
/// answers stops being read (backpressure, no queue).
struct KeepAlives {
    node: Arc<Node>,
    /// `None` once the stream is over.
    inbound: Option<Streaming<LeaseKeepAliveRequest>>,
    /// The renewal being forwarded to the leader, if any: requests are
    /// answered in order, one at a time.
    forwarded: Option<Forwarded>,
    /// Where the writer is in handing answers over (see api/nudge.rs).
    handed: Handed,
}

impl Stream for KeepAlives {
    type Item = Result<LeaseKeepAliveResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let (id, renewed) = loop {
            if let Some(f) = this.forwarded.as_mut() {
                let Poll::Ready(r) = f.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                this.forwarded = None;
                break r;
            }
            let Some(inbound) = this.inbound.as_mut() else {
                return Poll::Ready(None);
            };
            let r = match Pin::new(inbound).poll_next(cx) {
                Poll::Ready(Some(Ok(r))) => r,
                // Closed by the client, or broken: the stream ends.
                Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                    this.inbound = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    this.handed.pending();
                    return Poll::Pending;
                }
            };
            if let Some(renewed) = this.node.lease_renew_here(r.id) {
                break (r.id, renewed);
            }
            // Another member leads: it renews, this member answers.
            let (node, id) = (this.node.clone(), r.id);
            this.forwarded = Some(Box::pin(async move { (id, node.lease_renew(id).await) }));
        };
        this.handed = Handed::Taken;
        Poll::Ready(Some(match renewed {
            // etcd answers an unknown (or expired) lease with TTL 0, not an error.
            Ok(ttl) => Ok(LeaseKeepAliveResponse {
                header: this.node.header(0),
                id,
                ttl: ttl.unwrap_or(0),
            }),
            // The error ends the stream after it is sent.
            Err(e) => {
                this.inbound = None;
                Err(to_status(e))
            }
        }))
    }
}
