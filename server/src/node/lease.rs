//! Lease requests. Grants and revokes go through the log; keep-alives and
//! TTL queries are answered from the leader's lessor, as in etcd.

use std::time::Instant;

use kv_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use kv_proto::kvpb::internal_request::Request;
use kv_proto::kvpb::LeaseRenewRequest;

use super::leadership::Route;
use super::Node;
use crate::apply::Applied;
use crate::error::{KvError, KvResult};

impl Node {
    pub async fn lease_grant(&self, mut req: LeaseGrantRequest) -> KvResult<LeaseGrantResponse> {
        self.check_user()?;
        self.check_space().await?;
        if req.id == 0 {
            // Positive, unused, chosen before proposing so every member applies the same ID.
            let lessor = self.core.lessor.lock();
            loop {
                let id = (rand::random::<u64>() >> 1) as i64;
                if id != 0 && lessor.get(id).is_none() {
                    req.id = id;
                    break;
                }
            }
        }
        match self.propose(Request::LeaseGrant(req)).await? {
            Applied::LeaseGrant(mut r) => {
                self.fill(&mut r.header);
                Ok(r)
            }
            other => Err(KvError::Internal(format!("unexpected {other:?}"))),
        }
    }

    pub async fn lease_revoke(&self, req: LeaseRevokeRequest) -> KvResult<LeaseRevokeResponse> {
        self.check_user()?;
        match self.propose(Request::LeaseRevoke(req)).await? {
            Applied::LeaseRevoke(mut r) => {
                self.fill(&mut r.header);
                Ok(r)
            }
            other => Err(KvError::Internal(format!("unexpected {other:?}"))),
        }
    }

    /// Renews a lease at the leader; `Ok(None)` when it does not exist (etcd
    /// answers TTL 0). A follower forwards the keep-alive.
    pub async fn lease_renew(&self, id: i64) -> KvResult<Option<i64>> {
        match self.route()? {
            Route::Local => self.lease_renew_as_leader(id),
            Route::Leader {
                id: leader,
                peer_addr,
            } => {
                let mut client = self
                    .network
                    .client(leader, &peer_addr)
                    .map_err(|_| KvError::NoLeader)?;
                let resp = client
                    .lease_renew(LeaseRenewRequest { id })
                    .await
                    .map_err(|_| KvError::NoLeader)?
                    .into_inner();
                match resp.error {
                    Some(e) => Err(super::peer::from_peer_error(&e)),
                    None => Ok((resp.ttl > 0).then_some(resp.ttl)),
                }
            }
        }
    }

    /// [`Node::lease_renew`] when this member leads, without a future;
    /// `None` when another member (or none) leads, so the caller awaits
    /// [`Node::lease_renew`] instead. The keep-alive stream's fast path.
    pub fn lease_renew_here(&self, id: i64) -> Option<KvResult<Option<i64>>> {
        self.is_leader()
            .then(|| Ok(self.core.lessor.lock().renew(id)))
    }

    pub(crate) fn lease_renew_as_leader(&self, id: i64) -> KvResult<Option<i64>> {
        self.ensure_leader(KvError::NoLeader)?;
        Ok(self.core.lessor.lock().renew(id))
    }

    pub fn lease_time_to_live(
        &self,
        req: &LeaseTimeToLiveRequest,
    ) -> KvResult<LeaseTimeToLiveResponse> {
        let lessor = self.core.lessor.lock();
        let mut resp = match lessor.get(req.id) {
            Some(l) => LeaseTimeToLiveResponse {
                header: None,
                id: l.id,
                ttl: l.remaining(Instant::now()),
                granted_ttl: l.ttl,
                keys: if req.keys {
                    l.keys.iter().cloned().collect()
                } else {
                    Vec::new()
                },
            },
            None => LeaseTimeToLiveResponse {
                header: None,
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        drop(lessor);
        self.fill(&mut resp.header);
        Ok(resp)
    }

    pub fn lease_leases(&self) -> LeaseLeasesResponse {
        let ids = self.core.lessor.lock().ids();
        LeaseLeasesResponse {
            header: self.header(0),
            leases: ids.into_iter().map(|id| LeaseStatus { id }).collect(),
        }
    }
}
