//! Applying auth changes, and re-checking a client's write against the
//! auth revision it was permitted at (etcd's authApplierV3): a permission
//! changed after the check but before the apply is never bypassed.

use kv_proto::kvpb::internal_request::Request;
use kv_proto::kvpb::{AuthHeader, AuthRequest, Authed, InternalRequest};

use super::request::{dispatch, Tables};
use super::Applied;
use crate::auth::{check, Who};
use crate::error::{KvError, KvResult};
use crate::lease::Lessor;
use crate::mvcc::{MvccError, WriteBatch};

/// Applies one auth change and writes the rows it changed to META.
pub(super) fn change(
    t: &mut Tables,
    header: Option<&AuthHeader>,
    r: &AuthRequest,
) -> KvResult<Applied> {
    let rows = t.auth.apply(header, r).map_err(KvError::Auth)?;
    for (key, value) in rows {
        let done = match value {
            Some(v) => t.meta.insert(key.as_str(), v.as_slice()).map(|_| ()),
            None => t.meta.remove(key.as_str()).map(|_| ()),
        };
        done.map_err(|e| KvError::Mvcc(MvccError::Storage(e.to_string())))?;
    }
    Ok(Applied::None)
}

/// A client's request: permission re-checked, then applied as usual.
pub(super) fn authed(
    b: &mut WriteBatch,
    lessor: &mut Lessor,
    t: &mut Tables,
    a: Authed,
) -> KvResult<Applied> {
    let header = a.header.unwrap_or_default();
    let Some(inner) = a.request.and_then(|r| r.request) else {
        return Err(KvError::InvalidArgument("empty internal request".into()));
    };
    let who = Who {
        user: header.username.clone(),
        revision: header.auth_revision,
    };
    {
        let s = t.auth.state();
        let checked = match &inner {
            Request::Put(p) => check::put(&s, &who, p),
            Request::DeleteRange(d) => check::delete(&s, &who, d),
            Request::Txn(x) => check::txn(&s, &who, x),
            Request::LeaseRevoke(r) => match lessor.get(r.id) {
                Some(l) => check::lease_keys(&s, &who, l.keys.iter()),
                None => Ok(()),
            },
            // etcd 3.6+ keeps compaction to root (3.4 let anyone compact).
            Request::Alarm(_) | Request::Compaction(_) => check::admin(&s, &who),
            _ => Ok(()),
        };
        checked.map_err(KvError::Auth)?;
    }
    match inner {
        Request::Auth(r) => change(t, Some(&header), &r),
        Request::Authed(_) => Err(KvError::InvalidArgument("nested auth header".into())),
        other => dispatch(
            b,
            lessor,
            t,
            InternalRequest {
                id: 0,
                request: Some(other),
            },
        ),
    }
}
