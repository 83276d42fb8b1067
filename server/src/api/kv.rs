//! etcdserverpb.KV: validate, call the node, map errors.

use std::sync::Arc;

use kv_proto::etcdserverpb::kv_server::Kv;
use kv_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::node::Node;

pub struct KvService(pub Arc<Node>);

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        self.0
            .range(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.0
            .put(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        self.0
            .delete_range(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.0
            .txn(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        self.0
            .compact(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }
}
