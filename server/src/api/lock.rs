//! v3lockpb.Lock: thin handlers over the node's lock recipe
//! (`node::concurrency`), plus the status mapping both recipe services use.

use std::sync::Arc;

use kv_proto::v3lockpb::lock_server::Lock;
use kv_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::node::concurrency::RecipeError;
use crate::node::Node;

pub struct LockService(pub Arc<Node>);

/// etcd serves these services through an in-process client, which turns
/// every etcd error it recognises into a plain Go error: clients get gRPC
/// `Unknown` with etcd's exact text. Errors it does not recognise keep their
/// status, and the recipes' own errors are plain text too.
pub(super) fn recipe_status(e: RecipeError) -> Status {
    match e {
        RecipeError::Kv(e) => {
            let st = to_status(e);
            if kv_proto::errors::from_status(&st).is_some() {
                Status::unknown(st.message())
            } else {
                st
            }
        }
        other => Status::unknown(other.to_string()),
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let req = req.into_inner();
        let locked = self
            .0
            .lock(&req.name, req.lease)
            .await
            .map_err(recipe_status)?;
        Ok(Response::new(LockResponse {
            header: locked.header,
            key: locked.key,
        }))
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let header = self
            .0
            .unlock(req.into_inner().key)
            .await
            .map_err(recipe_status)?;
        Ok(Response::new(UnlockResponse { header }))
    }
}
