//! etcdserverpb.KV: validate, call the node, map errors.
//!
//! The unary methods are inherent async fns as well, so
//! [`super::kv_unary`] calls them without the boxed futures of the
//! generated trait; the trait (for the HTTP gateway and RangeStream) calls
//! the same fns.

use std::sync::Arc;

use kv_proto::etcdserverpb::kv_server::Kv;
use kv_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, TxnRequest, TxnResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::node::{range_stream, Node};

pub struct KvService(pub Arc<Node>);

/// The chunks of one RangeStream, errors mapped to etcd's statuses.
pub type RangeChunks =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<RangeStreamResponse, Status>> + Send>>;

impl KvService {
    pub(crate) async fn range_call(
        &self,
        req: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        self.0
            .range(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    pub(crate) async fn put_call(
        &self,
        req: Request<PutRequest>,
    ) -> Result<Response<PutResponse>, Status> {
        self.0
            .put(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    pub(crate) async fn delete_range_call(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        self.0
            .delete_range(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    pub(crate) async fn txn_call(
        &self,
        req: Request<TxnRequest>,
    ) -> Result<Response<TxnResponse>, Status> {
        self.0
            .txn(req.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    pub(crate) async fn compact_call(
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

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        self.range_call(req).await
    }

    type RangeStreamStream = RangeChunks;

    async fn range_stream(
        &self,
        req: Request<RangeRequest>,
    ) -> Result<Response<RangeChunks>, Status> {
        let req = req.into_inner();
        // etcd's order: Range's own checks, then what streaming cannot do.
        crate::txn::check_range(&req).map_err(to_status)?;
        if let Err(why) = range_stream::check(&req) {
            return Err(Status::unimplemented(why.text()));
        }
        let rx = self.0.range_stream(req).await.map_err(to_status)?;
        let chunks = ReceiverStream::new(rx).map(|r| r.map_err(to_status));
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.put_call(req).await
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        self.delete_range_call(req).await
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.txn_call(req).await
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        self.compact_call(req).await
    }
}
