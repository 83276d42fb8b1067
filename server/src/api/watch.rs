//! etcdserverpb.Watch: one bidirectional stream carrying many watchers.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kv_proto::etcdserverpb::watch_request::RequestUnion;
use kv_proto::etcdserverpb::watch_server::Watch;
use kv_proto::etcdserverpb::{WatchRequest, WatchResponse};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::server::Node;

pub struct WatchService(pub Arc<Node>);

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        let mut inbound = req.into_inner();
        let hub = self.0.hub().clone();
        let handle = hub.open_stream();
        let id = handle.id;
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                match msg.request_union {
                    Some(RequestUnion::CreateRequest(c)) => hub.create(id, &c),
                    Some(RequestUnion::CancelRequest(c)) => hub.cancel(id, c.watch_id),
                    Some(RequestUnion::ProgressRequest(_)) => hub.progress(id),
                    None => {}
                }
            }
            hub.close_stream(id);
        });
        let pending = handle.pending;
        let out = UnboundedReceiverStream::new(handle.rx).map(move |r| {
            pending.fetch_sub(1, Ordering::AcqRel);
            Ok(r)
        });
        Ok(Response::new(Box::pin(out)))
    }
}
