//! Permission checks on requests, etcd's isOpPermitted/IsAdminPermitted:
//! the same functions run before a read and again when a write is applied.

use kv_proto::errors::{self as wire, WireError};
use kv_proto::etcdserverpb::request_op::Request as Op;
use kv_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};

use super::perm::{permitted, Access};
use super::state::AuthState;

/// Who asks, and the auth revision their token was checked at (0: no
/// token at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub user: String,
    pub revision: u64,
}

type Checked = Result<(), WireError>;

/// `access` on `[key, range_end)`.
pub fn op(s: &AuthState, who: &Who, access: Access, key: &[u8], range_end: &[u8]) -> Checked {
    if !s.enabled {
        return Ok(());
    }
    if who.user.is_empty() || who.revision == 0 {
        return Err(wire::USER_EMPTY);
    }
    if who.revision < s.revision {
        return Err(wire::AUTH_OLD_REVISION);
    }
    let user = s.users.get(&who.user).ok_or(wire::PERMISSION_DENIED)?;
    if AuthState::is_root(user) || permitted(s.perms_of(user), access, key, range_end) {
        return Ok(());
    }
    Err(wire::PERMISSION_DENIED)
}

/// Admin RPCs (auth management, members, maintenance) need the root role.
pub fn admin(s: &AuthState, who: &Who) -> Checked {
    if !s.enabled {
        return Ok(());
    }
    if who.user.is_empty() {
        return Err(wire::USER_EMPTY);
    }
    let user = s.users.get(&who.user).ok_or(wire::USER_NOT_FOUND)?;
    if AuthState::is_root(user) {
        Ok(())
    } else {
        Err(wire::PERMISSION_DENIED)
    }
}

/// Any authenticated user (etcd 3.6+'s requireAuthInfo, for LeaseGrant and
/// LeaseRevoke): a token is needed, no permission.
pub fn user(s: &AuthState, who: &Who) -> Checked {
    if s.enabled && who.user.is_empty() {
        return Err(wire::USER_EMPTY);
    }
    Ok(())
}

pub fn range(s: &AuthState, who: &Who, r: &RangeRequest) -> Checked {
    op(s, who, Access::Read, &r.key, &r.range_end)
}

pub fn put(s: &AuthState, who: &Who, r: &PutRequest) -> Checked {
    op(s, who, Access::Write, &r.key, &[])?;
    if r.prev_kv {
        op(s, who, Access::Read, &r.key, &[])?;
    }
    Ok(())
}

pub fn delete(s: &AuthState, who: &Who, r: &DeleteRangeRequest) -> Checked {
    op(s, who, Access::Write, &r.key, &r.range_end)?;
    if r.prev_kv {
        op(s, who, Access::Read, &r.key, &r.range_end)?;
    }
    Ok(())
}

/// Every compare (read) and every op of both branches, nested txns too.
pub fn txn(s: &AuthState, who: &Who, t: &TxnRequest) -> Checked {
    if !s.enabled {
        return Ok(());
    }
    for c in &t.compare {
        op(s, who, Access::Read, &c.key, &c.range_end)?;
    }
    for o in t.success.iter().chain(&t.failure) {
        match &o.request {
            Some(Op::RequestRange(r)) => range(s, who, r)?,
            Some(Op::RequestPut(p)) => put(s, who, p)?,
            Some(Op::RequestDeleteRange(d)) => delete(s, who, d)?,
            Some(Op::RequestTxn(inner)) => txn(s, who, inner)?,
            None => {}
        }
    }
    Ok(())
}

/// Write on every key attached to a lease being revoked.
pub fn lease_keys<'a>(
    s: &AuthState,
    who: &Who,
    keys: impl Iterator<Item = &'a Vec<u8>>,
) -> Checked {
    for k in keys {
        op(s, who, Access::Write, k, &[])?;
    }
    Ok(())
}

/// etcd 3.5+'s LeaseTimeToLive with keys (checkLeaseTimeToLive): a user
/// is needed, and unless root, read permission on every attached key.
pub fn lease_ttl_keys<'a>(
    s: &AuthState,
    who: &Who,
    keys: impl Iterator<Item = &'a Vec<u8>>,
) -> Checked {
    if !s.enabled {
        return Ok(());
    }
    if who.user.is_empty() {
        return Err(wire::USER_EMPTY);
    }
    if admin(s, who).is_ok() {
        return Ok(());
    }
    for k in keys {
        op(s, who, Access::Read, k, &[])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_proto::authpb::{permission::Type, Permission, Role};
    use kv_proto::etcdserverpb::{
        AuthUserAddRequest, AuthUserGrantRoleRequest, Compare, RequestOp,
    };

    fn state() -> AuthState {
        let mut s = AuthState::default();
        for u in ["root", "ro"] {
            s.user_add(&AuthUserAddRequest {
                name: u.into(),
                hashed_password: "h".into(),
                ..Default::default()
            })
            .unwrap();
        }
        s.role_add("reader").unwrap();
        s.roles.insert(
            "reader".into(),
            Role {
                name: b"reader".to_vec(),
                key_permission: vec![Permission {
                    perm_type: Type::Read as i32,
                    key: b"a".to_vec(),
                    range_end: b"b".to_vec(),
                }],
            },
        );
        for (user, role) in [("root", "root"), ("ro", "reader")] {
            s.user_grant_role(&AuthUserGrantRoleRequest {
                user: user.into(),
                role: role.into(),
            })
            .unwrap();
        }
        s.enable().unwrap();
        s
    }

    fn who(s: &AuthState, u: &str) -> Who {
        Who {
            user: u.into(),
            revision: s.revision,
        }
    }

    #[test]
    fn txn_compares_and_branches_are_checked() {
        let s = state();
        let read = TxnRequest {
            compare: vec![Compare {
                key: b"a1".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(txn(&s, &who(&s, "ro"), &read), Ok(()));
        let mut write = read.clone();
        write.failure.push(RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: b"a1".to_vec(),
                ..Default::default()
            })),
        });
        assert_eq!(
            txn(&s, &who(&s, "ro"), &write),
            Err(wire::PERMISSION_DENIED)
        );
        assert_eq!(txn(&s, &who(&s, "root"), &write), Ok(()));
        let mut outside = read;
        outside.compare[0].key = b"z".to_vec();
        assert_eq!(
            txn(&s, &who(&s, "ro"), &outside),
            Err(wire::PERMISSION_DENIED)
        );
    }

    #[test]
    fn stale_revision_missing_user_and_admin() {
        let s = state();
        let stale = Who {
            user: "ro".into(),
            revision: s.revision - 1,
        };
        assert_eq!(
            op(&s, &stale, Access::Read, b"a", b""),
            Err(wire::AUTH_OLD_REVISION)
        );
        let anon = Who {
            user: String::new(),
            revision: 0,
        };
        assert_eq!(
            op(&s, &anon, Access::Read, b"a", b""),
            Err(wire::USER_EMPTY)
        );
        assert_eq!(admin(&s, &who(&s, "ro")), Err(wire::PERMISSION_DENIED));
        assert_eq!(admin(&s, &who(&s, "nobody")), Err(wire::USER_NOT_FOUND));
        assert_eq!(admin(&s, &who(&s, "root")), Ok(()));
    }
}
