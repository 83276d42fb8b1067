//! v3electionpb.Election: thin handlers over the node's election recipe
//! (`node::concurrency`).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kv_proto::v3electionpb::election_server::Election;
use kv_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::lock::recipe_status;
use crate::node::Node;

pub struct ElectionService(pub Arc<Node>);

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    type ObserveStream = ObserveStream;

    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let req = req.into_inner();
        let elected = self
            .0
            .campaign(&req.name, req.lease, &req.value)
            .await
            .map_err(recipe_status)?;
        Ok(Response::new(CampaignResponse {
            header: elected.header,
            leader: Some(elected.leader),
        }))
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let req = req.into_inner();
        let header = self
            .0
            .proclaim(req.leader, &req.value)
            .await
            .map_err(recipe_status)?;
        Ok(Response::new(ProclaimResponse { header }))
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        self.0
            .election_leader(&req.into_inner().name)
            .await
            .map(Response::new)
            .map_err(recipe_status)
    }

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<ObserveStream>, Status> {
        let mut rx = self.0.observe(&req.into_inner().name);
        // grpc-go sends response headers with the first message, so etcd's
        // clients only see the stream open once there is a leader: do the same.
        let first = rx.recv().await;
        let stream = futures::stream::iter(first)
            .chain(ReceiverStream::new(rx))
            .map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let header = self
            .0
            .resign(req.into_inner().leader)
            .await
            .map_err(recipe_status)?;
        Ok(Response::new(ResignResponse { header }))
    }
}
