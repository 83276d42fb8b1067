//! Leases: grant, revoke, time-to-live, list, and a keeper whose `lost()`
//! resolves with the reason when the lease is gone.

use std::sync::Mutex;

use kv_client::{LeaseKeeper, LeaseLost};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use tokio_util::sync::CancellationToken;

use crate::client::NativeClient;
use crate::convert::lease_id;
use crate::{errors, guard};

/// A granted lease.
#[napi(object, object_from_js = false)]
pub struct LeaseGrant {
    /// The lease ID as a decimal string.
    pub id: String,
    pub ttl: i64,
}

/// Answer to `leaseTimeToLive`.
#[napi(object, object_from_js = false)]
pub struct LeaseTtl {
    pub id: String,
    /// Seconds left (-1 = the lease does not exist).
    pub ttl: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Buffer>,
}

/// The stable code of a loss reason.
pub(crate) fn lost_code(l: LeaseLost) -> String {
    match l {
        LeaseLost::NotFound => "LEASE_NOT_FOUND",
        LeaseLost::TtlElapsed => "TTL_ELAPSED",
        LeaseLost::KeeperDropped => "KEEPER_DROPPED",
    }
    .into()
}

#[napi]
impl NativeClient {
    /// Grants a lease of `ttl` seconds.
    #[napi]
    pub async fn lease_grant(&self, ttl: i64) -> napi::Result<LeaseGrant> {
        let c = self.live()?;
        guard(async move {
            let r = c.lease_grant(ttl).await.map_err(errors::client)?;
            Ok(LeaseGrant {
                id: r.id().to_string(),
                ttl: r.ttl(),
            })
        })
        .await
    }

    /// Revokes a lease, deleting its keys.
    #[napi]
    pub async fn lease_revoke(&self, id: String) -> napi::Result<()> {
        let c = self.live()?;
        let id = lease_id(&id)?;
        guard(async move {
            c.lease_revoke(id).await.map_err(errors::client)?;
            Ok(())
        })
        .await
    }

    /// The lease's remaining and granted TTL, and its keys with `keys`.
    #[napi]
    pub async fn lease_time_to_live(
        &self,
        id: String,
        keys: Option<bool>,
    ) -> napi::Result<LeaseTtl> {
        let c = self.live()?;
        let n = lease_id(&id)?;
        guard(async move {
            let r = c
                .lease_time_to_live(n, keys.unwrap_or(false))
                .await
                .map_err(errors::client)?;
            Ok(LeaseTtl {
                id,
                ttl: r.ttl(),
                granted_ttl: r.granted_ttl(),
                keys: r.keys().iter().map(|k| Buffer::from(k.clone())).collect(),
            })
        })
        .await
    }

    /// The IDs of every lease.
    #[napi]
    pub async fn leases(&self) -> napi::Result<Vec<String>> {
        let c = self.live()?;
        guard(async move {
            let ids = c.leases().await.map_err(errors::client)?;
            Ok(ids.into_iter().map(|i| i.to_string()).collect())
        })
        .await
    }

    /// Starts renewing a lease every TTL/3.
    #[napi]
    pub async fn lease_keeper(&self, id: String) -> napi::Result<NativeLeaseKeeper> {
        let c = self.live()?;
        let n = lease_id(&id)?;
        let cancel = self.closed.child_token();
        guard(async move {
            let keeper = c.lease_keeper(n).await.map_err(errors::client)?;
            Ok(NativeLeaseKeeper {
                id,
                ttl: keeper.ttl(),
                keeper: Mutex::new(Some(keeper)),
                cancel,
            })
        })
        .await
    }
}

/// Renews a lease in the background until closed.
#[napi]
pub struct NativeLeaseKeeper {
    id: String,
    ttl: i64,
    keeper: Mutex<Option<LeaseKeeper>>,
    cancel: CancellationToken,
}

#[napi]
impl NativeLeaseKeeper {
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// The TTL granted by the server, in seconds.
    #[napi(getter)]
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// Resolves with the loss reason ("LEASE_NOT_FOUND" | "TTL_ELAPSED"),
    /// or `null` once the keeper (or its client) is closed.
    #[napi]
    pub async fn lost(&self) -> napi::Result<Option<String>> {
        let lost = {
            let k = self.keeper.lock().unwrap_or_else(|p| p.into_inner());
            match k.as_ref() {
                Some(k) => k.lost(),
                None => return Ok(None),
            }
        };
        let cancel = self.cancel.clone();
        guard(async move {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => Ok(None),
                l = lost => Ok(Some(lost_code(l))),
            }
        })
        .await
    }

    /// Stops renewing (the lease then expires after its TTL unless revoked).
    #[napi]
    pub fn close(&self) {
        self.cancel.cancel();
        self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}
