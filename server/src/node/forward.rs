//! Writes a follower hands to its leader. Requests that queue while a call is
//! in flight ride together in one `ProposeBatch` call, so a busy follower
//! pays one peer round trip per batch rather than per write (etcd's
//! followers likewise batch proposals into raft messages).

use std::sync::Arc;

use kv_proto::kvpb::internal_request::Request;
use kv_proto::kvpb::{InternalBatch, InternalRequest};
use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::peer::from_wire;
use super::propose::PROPOSE_TIMEOUT;
use super::Node;
use crate::apply::Applied;
use crate::error::{KvError, KvResult};
use crate::raft::network::Network;
use crate::raft::NodeId;
use crate::txn;

/// Most writes in one call (the leader refuses more).
pub(super) const MAX_BATCH_REQUESTS: usize = 512;
/// Stop adding writes to a call once it holds this many bytes.
const MAX_BATCH_BYTES: usize = 2 << 20;
/// Calls in flight at once; more writes wait and batch up meanwhile.
const MAX_INFLIGHT: usize = 4;

struct Pending {
    leader: (NodeId, String),
    req: InternalRequest,
    size: usize,
    tx: oneshot::Sender<KvResult<Applied>>,
}

pub struct Forwarder {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Forwarder {
    pub fn start(net: Network) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_INFLIGHT));
            // A write for another leader than the batch's waits for the next call.
            let mut held: Option<Pending> = None;
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let first = match held.take() {
                    Some(p) => p,
                    None => match rx.recv().await {
                        Some(p) => p,
                        None => return,
                    },
                };
                let mut size = first.size;
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH_REQUESTS && size < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(p) if p.leader == batch[0].leader => {
                            size += p.size;
                            batch.push(p);
                        }
                        Ok(p) => {
                            held = Some(p);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let net = net.clone();
                tokio::spawn(async move {
                    send(&net, batch).await;
                    drop(permit);
                });
            }
        });
        Forwarder { tx }
    }

    /// Hands `req` to the leader and waits for its applied result.
    pub async fn forward(
        &self,
        leader: (NodeId, String),
        req: InternalRequest,
        size: usize,
    ) -> KvResult<Applied> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                leader,
                req,
                size,
                tx,
            })
            .map_err(|_| KvError::Stopped)?;
        match tokio::time::timeout(PROPOSE_TIMEOUT, rx).await {
            Ok(r) => r.map_err(|_| KvError::Stopped)?,
            Err(_) => Err(KvError::Timeout),
        }
    }
}

async fn send(net: &Network, batch: Vec<Pending>) {
    let (leader, addr) = batch[0].leader.clone();
    let (requests, waiters): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.req, p.tx)).unzip();
    let result = match net.client(leader, &addr) {
        Err(_) => Err(KvError::NoLeader),
        Ok(mut client) => {
            let call = client.propose_batch(InternalBatch { requests });
            match tokio::time::timeout(PROPOSE_TIMEOUT, call).await {
                Ok(Ok(resp)) => Ok(resp.into_inner().results),
                Ok(Err(_)) => Err(KvError::NoLeader),
                Err(_) => Err(KvError::Timeout),
            }
        }
    };
    match result {
        Ok(results) if results.len() == waiters.len() => {
            for (w, r) in waiters.into_iter().zip(results) {
                let _ = w.send(from_wire(r));
            }
        }
        Ok(results) => {
            let e = KvError::Internal(format!(
                "{} results for {} forwarded requests",
                results.len(),
                waiters.len()
            ));
            for w in waiters {
                let _ = w.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for w in waiters {
                let _ = w.send(Err(e.clone()));
            }
        }
    }
}

impl Node {
    /// Checks a proposal another member forwarded exactly as this member
    /// checks its own clients' requests (size, keys and shape, quota), with
    /// the same functions: the leader never trusts the sender's checks. A
    /// request kind kvd never forwards is refused.
    pub(super) async fn check_forwarded(&self, req: &InternalRequest) -> KvResult<()> {
        if req.encoded_len() > self.max_request_bytes {
            return Err(KvError::RequestTooLarge);
        }
        match &req.request {
            Some(Request::Put(p)) => {
                txn::check_put(p)?;
                self.check_space().await
            }
            Some(Request::DeleteRange(d)) => txn::check_delete(d),
            Some(Request::Txn(t)) => {
                txn::check_txn_shape(t, self.limits)?;
                if super::kv::has_put(t) {
                    self.check_space().await?;
                }
                Ok(())
            }
            Some(Request::LeaseGrant(_)) => self.check_space().await,
            Some(
                Request::Compaction(_)
                | Request::LeaseRevoke(_)
                | Request::Alarm(_)
                | Request::MemberAttributes(_),
            ) => Ok(()),
            // Auth changes are checked when applied (root only, etcd's texts).
            Some(Request::Auth(_)) => Ok(()),
            Some(Request::Authed(a)) => match a.request.as_ref() {
                Some(inner) if !matches!(inner.request, Some(Request::Authed(_))) => {
                    Box::pin(self.check_forwarded(inner)).await
                }
                _ => Err(KvError::InvalidArgument(
                    "not a request a member forwards".to_string(),
                )),
            },
            // Checkpoints are the leader's own; an empty request is nothing.
            Some(Request::LeaseCheckpoint(_)) | None => Err(KvError::InvalidArgument(
                "not a request a member forwards".to_string(),
            )),
        }
    }
}
