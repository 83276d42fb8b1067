//! The lock recipe (etcd's `concurrency.Mutex`, as the v3lock service runs it).

use std::sync::Arc;

use kv_proto::etcdserverpb::range_request::SortOrder;
use kv_proto::etcdserverpb::request_op::Request as Op;
use kv_proto::etcdserverpb::{DeleteRangeRequest, ResponseHeader, TxnRequest};

use super::{
    by_create, created_at, delete, dir, get, lease_key, missing, op, put, range_at, Cleanup,
    Locked, RecipeError, RecipeResult,
};
use crate::node::Node;

impl Node {
    /// Acquires the lock `name` for `lease` (0: a fresh 60 s lease), waiting
    /// while older holders exist. Locking again with the same lease is the
    /// same acquisition.
    pub async fn lock(self: &Arc<Self>, name: &[u8], lease: i64) -> RecipeResult<Locked> {
        let lease = self.session_lease(lease).await?;
        let dir = dir(name);
        let key = lease_key(&dir, lease);
        let owner = op(Op::RequestRange(by_create(&dir, SortOrder::Ascend, 0)));
        let resp = self
            .txn(TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![put(&key, b"", lease), owner.clone()],
                failure: vec![op(Op::RequestRange(get(&key))), owner],
            })
            .await?;
        let my_rev = if resp.succeeded {
            resp.header.as_ref().map_or(0, |h| h.revision)
        } else {
            range_at(&resp, 0)
                .and_then(|r| r.kvs.first())
                .ok_or_else(|| missing("the lock key"))?
                .create_revision
        };
        let owner = range_at(&resp, 1).ok_or_else(|| missing("the lock owner"))?;
        if owner
            .kvs
            .first()
            .is_none_or(|o| o.create_revision == my_rev)
        {
            return Ok(Locked {
                header: resp.header,
                key,
            });
        }
        let release = Cleanup::new(
            self,
            TxnRequest {
                success: vec![delete(&key)],
                ..Default::default()
            },
        );
        if let Err(e) = self.wait_deletes(&dir, my_rev - 1).await {
            release.run().await;
            return Err(e);
        }
        // etcd 3.5+: the key may have gone with its lease while waiting.
        match self.range(get(&key)).await {
            Err(e) => {
                release.run().await;
                Err(e.into())
            }
            Ok(r) if r.kvs.is_empty() => {
                release.disarm();
                Err(RecipeError::SessionExpired)
            }
            Ok(r) => {
                release.disarm();
                Ok(Locked {
                    header: r.header,
                    key,
                })
            }
        }
    }

    /// Releases a lock by deleting its key (a missing key is not an error).
    pub async fn unlock(&self, key: Vec<u8>) -> RecipeResult<Option<ResponseHeader>> {
        let r = self
            .delete_range(DeleteRangeRequest {
                key,
                ..Default::default()
            })
            .await?;
        Ok(r.header)
    }
}
