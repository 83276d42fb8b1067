//! Auth requests: changes go through raft (checked for root when applied,
//! passwords hashed here first); reads are served locally after a read
//! barrier, for root only once auth is enabled.

use kv_proto::authpb::{permission::Type, Permission};
use kv_proto::errors::{self as wire, WireError};
use kv_proto::etcdserverpb::{AuthUserAddRequest, AuthUserChangePasswordRequest};
use kv_proto::kvpb::auth_request::Request as AuthOp;
use kv_proto::kvpb::internal_request::Request;
use kv_proto::kvpb::{AuthRequest, AuthenticateInternal};

use super::Node;
use crate::apply::Applied;
use crate::auth::perm::Access;
use crate::auth::{check, state::ROOT, AuthState, Who};
use crate::error::{KvError, KvResult};

fn auth_err(e: WireError) -> KvError {
    KvError::Auth(e)
}

impl Node {
    /// Admin RPCs (members, maintenance, auth reads) need the root role
    /// once auth is enabled.
    pub fn check_admin(&self) -> KvResult<()> {
        self.core.auth.check(check::admin).map_err(auth_err)
    }

    /// Requests any authenticated user may make once auth is enabled.
    pub fn check_user(&self) -> KvResult<()> {
        self.core.auth.check(check::user).map_err(auth_err)
    }

    /// Proposes one auth change and waits for it to be applied.
    pub async fn auth_change(&self, op: AuthOp) -> KvResult<()> {
        let req = Request::Auth(AuthRequest { request: Some(op) });
        match self.propose(req).await? {
            Applied::None => Ok(()),
            other => Err(KvError::Internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    /// Runs `f` on the auth state after a read barrier, for root only.
    pub async fn auth_read<T>(
        &self,
        f: impl FnOnce(&AuthState) -> Result<T, WireError>,
    ) -> KvResult<T> {
        self.auth_read_or(|_, _| false, f).await
    }

    /// [`Node::auth_read`], also allowed to whom `also` admits (etcd lets a
    /// user get itself and the roles it holds).
    pub async fn auth_read_or<T>(
        &self,
        also: impl FnOnce(&AuthState, &Who) -> bool,
        f: impl FnOnce(&AuthState) -> Result<T, WireError>,
    ) -> KvResult<T> {
        self.read_barrier().await?;
        self.core
            .auth
            .check(|s, who| match check::admin(s, who) {
                Err(_) if also(s, who) => Ok(()),
                other => other,
            })
            .map_err(auth_err)?;
        f(&self.core.auth.state()).map_err(auth_err)
    }

    /// LeaseTimeToLive asking for the keys: may this client see them?
    pub fn check_lease_keys(&self, keys: &[Vec<u8>]) -> KvResult<()> {
        self.core
            .auth
            .check(|s, who| check::lease_ttl_keys(s, who, keys.iter()))
            .map_err(auth_err)
    }

    /// Whether a watch on the create's range may start (etcd's
    /// isWatchPermitted: READ on the range). A refusal is the cancel reason
    /// etcd sends: the gRPC status's Go text, naming an expired token,
    /// an old auth revision or a missing user as such (clients reopen the
    /// stream with a fresh token on the first two), else "permission denied".
    pub fn watch_permitted(
        &self,
        token: &Option<Option<String>>,
        c: &kv_proto::etcdserverpb::WatchCreateRequest,
    ) -> Result<(), &'static str> {
        use kv_proto::errors::{AUTH_OLD_REVISION, INVALID_AUTH_TOKEN, USER_EMPTY};
        crate::auth::with_token_sync(token.clone(), || {
            self.core
                .auth
                .check(|s, who| check::op(s, who, Access::Read, &c.key, &c.range_end))
        })
        .map_err(|e| {
            if e == INVALID_AUTH_TOKEN {
                "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
            } else if e == AUTH_OLD_REVISION {
                "rpc error: code = InvalidArgument desc = etcdserver: revision of auth store is old"
            } else if e == USER_EMPTY {
                "rpc error: code = InvalidArgument desc = etcdserver: user name is empty"
            } else {
                "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
            }
        })
    }

    /// Checks the password here (bcrypt, on a blocking thread), then
    /// proposes a fresh simple token so that every member knows it.
    pub async fn authenticate(&self, name: String, password: String) -> KvResult<String> {
        // As etcd's Authenticate (LinearizableReadNotify first): a follower
        // that has not applied a recent "auth enable" or password change
        // must not judge the password by its older state.
        self.read_barrier().await?;
        let auth = self.core.auth.clone();
        let user = name.clone();
        tokio::task::spawn_blocking(move || auth.check_password(&user, &password))
            .await
            .map_err(|e| KvError::Internal(e.to_string()))?
            .map_err(auth_err)?;
        let token = self.core.auth.generate_token();
        let op = AuthOp::Authenticate(AuthenticateInternal {
            name: name.clone(),
            simple_token: token.clone(),
        });
        // A stale token sent along must not stop the client getting a new one.
        crate::auth::with_token(None, self.auth_change(op)).await?;
        // From a follower the leader answered once it applied the token;
        // this member must know it too before the client uses it here.
        self.read_barrier().await?;
        // With --auth-token jwt the client gets a JWT instead.
        self.core.auth.issue_token(&name, token).map_err(auth_err)
    }

    async fn hash_new_password(&self, password: String) -> KvResult<String> {
        let auth = self.core.auth.clone();
        tokio::task::spawn_blocking(move || auth.hash_password(&password))
            .await
            .map_err(|e| KvError::Internal(e.to_string()))?
            .map_err(KvError::Internal)
    }

    /// etcd 3.5+: the password is hashed before proposing, with --bcrypt-cost.
    pub async fn user_add(&self, mut r: AuthUserAddRequest) -> KvResult<()> {
        if r.name.is_empty() {
            return Err(auth_err(wire::USER_EMPTY));
        }
        let no_password = r.options.is_some_and(|o| o.no_password);
        r.hashed_password = if no_password {
            String::new()
        } else {
            self.hash_new_password(std::mem::take(&mut r.password))
                .await?
        };
        r.password.clear();
        self.auth_change(AuthOp::UserAdd(r)).await
    }

    pub async fn user_change_password(&self, mut r: AuthUserChangePasswordRequest) -> KvResult<()> {
        r.hashed_password = self
            .hash_new_password(std::mem::take(&mut r.password))
            .await?;
        self.auth_change(AuthOp::UserChangePassword(r)).await
    }
}

/// The permissions RoleGet reports: the root role's are implicit (all keys).
pub fn role_perms(s: &AuthState, role: &str) -> Result<Vec<Permission>, WireError> {
    let r = s.roles.get(role).ok_or(wire::ROLE_NOT_FOUND)?;
    if role == ROOT {
        return Ok(vec![Permission {
            perm_type: Type::Readwrite as i32,
            key: vec![],
            range_end: vec![0],
        }]);
    }
    Ok(r.key_permission.clone())
}
