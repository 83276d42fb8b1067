//! Auth: users, roles, key-range permissions and tokens (etcd's
//! server/auth). The state is changed only by the applier (replicated
//! through raft, stored in META); tokens are per member, in memory.
//!
//! A client request's token travels from the gRPC layer to the facade in a
//! task-local ([`with_token`]), so the facade's signatures stay as they are.

pub mod check;
pub mod jwt;
mod jwt_es512;
pub mod perm;
pub mod state;
pub mod token;

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kv_proto::errors::{self as wire, WireError};
use kv_proto::kvpb::auth_request::Request as AuthOp;
use kv_proto::kvpb::internal_request::Request;
use kv_proto::kvpb::{AuthHeader, AuthRequest, Authed, InternalRequest};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use tokio::task::futures::TaskLocalFuture;

pub use check::Who;
use jwt::JwtTokens;
pub use state::AuthState;
use token::SimpleTokens;

/// etcd's --bcrypt-cost default.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

tokio::task_local! {
    /// The token of the client request being served: `Some(None)` when the
    /// request carried none. Unset outside client requests.
    static REQUEST_TOKEN: Option<String>;
}

/// Marks a task-local "token" that is really the CN of the request's
/// verified client certificate (etcd's AuthInfoFromTLS: with
/// --client-cert-auth, a request without a token acts as that user). A
/// real token comes from an HTTP header value, which cannot hold NUL, so
/// the two never mix; the CN then rides along wherever the token does
/// (watch creates), and is never forwarded as a token.
const CN_MARK: char = '\0';

/// The task-local value for a request with no token whose verified client
/// certificate names `cn` (see [`with_token`]).
pub fn cn_identity(cn: &str) -> String {
    format!("{CN_MARK}{cn}")
}

/// Runs `f` as a client request carrying `token` (gRPC metadata, or
/// [`cn_identity`]).
pub fn with_token<F: Future>(token: Option<String>, f: F) -> TaskLocalFuture<Option<String>, F> {
    REQUEST_TOKEN.scope(token, f)
}

/// The current client request's token (`None` outside client requests),
/// for work that outlives the request's task (a watch stream's creates).
pub fn current_token() -> Option<Option<String>> {
    REQUEST_TOKEN.try_with(|t| t.clone()).ok()
}

/// Runs `f` as a client request carrying `token` (see [`current_token`]).
pub fn with_token_sync<R>(token: Option<Option<String>>, f: impl FnOnce() -> R) -> R {
    match token {
        Some(t) => REQUEST_TOKEN.sync_scope(t, f),
        None => f(),
    }
}

/// `msg` as a request carrying the current client request's token, for a
/// call this member makes on the client's behalf (membership changes
/// forwarded to the leader): the leader checks the same user.
pub fn forward_token<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let token = REQUEST_TOKEN.try_with(|t| t.clone()).ok().flatten();
    let token = token.filter(|t| !t.starts_with(CN_MARK));
    if let Some(v) = token.and_then(|t| t.parse().ok()) {
        req.metadata_mut().insert("token", v);
    }
    req
}

/// A META row an auth change writes: key, and the new value or `None` to
/// delete it.
pub type MetaRow = (String, Option<Vec<u8>>);

/// etcd answers an Authenticate on a member holding only the JWT public
/// key with this error (ErrVerifyOnly, not a gRPC error: code Unknown).
pub const VERIFY_ONLY: WireError = WireError {
    code: tonic::Code::Unknown,
    message: "auth: token signing attempted with verify-only key",
    stable: "auth_verify_only",
};

/// The auth state of one member plus its tokens.
pub struct AuthStore {
    state: RwLock<AuthState>,
    tokens: Mutex<SimpleTokens>,
    /// Set by `--auth-token jwt,...`: tokens are then JWTs, never simple.
    jwt: RwLock<Option<Arc<JwtTokens>>>,
    bcrypt_cost: AtomicU32,
    next_token: AtomicU64,
}

impl Default for AuthStore {
    fn default() -> Self {
        AuthStore {
            state: RwLock::new(AuthState::default()),
            tokens: Mutex::new(SimpleTokens::new(token::DEFAULT_TTL)),
            jwt: RwLock::new(None),
            bcrypt_cost: AtomicU32::new(DEFAULT_BCRYPT_COST),
            next_token: AtomicU64::new(1),
        }
    }
}

impl AuthStore {
    /// Applies --auth-token, --bcrypt-cost and --auth-token-ttl (seconds),
    /// refusing values etcd refuses.
    pub fn configure(
        &self,
        auth_token: &str,
        bcrypt_cost: u32,
        token_ttl: u64,
    ) -> Result<(), String> {
        let mut parts = auth_token.split(',');
        let kind = parts.next().unwrap_or_default();
        let jwt = match kind {
            "simple" => None,
            "jwt" => {
                let opts: Vec<&str> = parts.collect();
                let t = JwtTokens::from_options(&opts)
                    .map_err(|e| format!("--auth-token {auth_token:?}: {e}"))?;
                Some(Arc::new(t))
            }
            other => return Err(format!("unknown token type {other:?} in --auth-token")),
        };
        if !(4..=31).contains(&bcrypt_cost) {
            return Err(format!(
                "--bcrypt-cost {bcrypt_cost}: must be between 4 and 31"
            ));
        }
        if token_ttl == 0 {
            return Err("--auth-token-ttl must be at least 1 second".into());
        }
        self.bcrypt_cost.store(bcrypt_cost, Ordering::Relaxed);
        self.tokens.lock().set_ttl(Duration::from_secs(token_ttl));
        *self.jwt.write() = jwt;
        Ok(())
    }

    /// Reloads the state from META rows (restart, snapshot install); tokens
    /// are forgotten, as etcd forgets them.
    /// Rows that do not decode fail closed: auth enabled, nobody known, so
    /// nothing is allowed until the store is repaired.
    pub fn restore(&self, meta: &[(String, Vec<u8>)]) -> Result<(), String> {
        self.tokens.lock().clear();
        let (loaded, result) = match AuthState::load(meta) {
            Ok(s) => (s, Ok(())),
            Err(e) => {
                let closed = AuthState {
                    enabled: true,
                    ..AuthState::default()
                };
                (closed, Err(e))
            }
        };
        *self.state.write() = loaded;
        result
    }

    /// The current state, for reads and checks.
    pub fn state(&self) -> RwLockReadGuard<'_, AuthState> {
        self.state.read()
    }

    pub fn enabled(&self) -> bool {
        self.state.read().enabled
    }

    /// Who the current client request is: `None` outside a client request
    /// (kvd's own work). A token that is unknown or expired is etcd's
    /// "invalid auth token", whether or not auth is enabled (etcd's
    /// AuthInfoFromCtx); no token is the empty user.
    pub fn who(&self) -> Result<Option<Who>, WireError> {
        let Ok(token) = REQUEST_TOKEN.try_with(|t| t.clone()) else {
            return Ok(None);
        };
        let Some(token) = token else {
            return Ok(Some(Who {
                user: String::new(),
                revision: 0,
            }));
        };
        if let Some(cn) = token.strip_prefix(CN_MARK) {
            // etcd: the CN's user at the current auth revision.
            return Ok(Some(Who {
                user: cn.to_string(),
                revision: self.state.read().revision,
            }));
        }
        let jwt = self.jwt.read().clone();
        if let Some(jwt) = jwt {
            // A JWT carries the revision it was issued at: a permission
            // change since makes it "revision of auth store is old".
            let c = jwt.info(&token).ok_or(wire::INVALID_AUTH_TOKEN)?;
            return Ok(Some(Who {
                user: c.username,
                revision: c.revision,
            }));
        }
        let user = self
            .tokens
            .lock()
            .resolve(&token)
            .ok_or(wire::INVALID_AUTH_TOKEN)?;
        Ok(Some(Who {
            user,
            revision: self.state.read().revision,
        }))
    }

    /// Runs `f` on the state for the current client request's identity;
    /// kvd's own requests pass.
    pub fn check(
        &self,
        f: impl FnOnce(&AuthState, &Who) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        match self.who()? {
            None => Ok(()),
            Some(who) => f(&self.state.read(), &who),
        }
    }

    /// Wraps a client's request with its identity, for the applier's
    /// re-check; kvd's own requests go as they are.
    pub fn wrap(&self, request: Request) -> Result<Request, WireError> {
        Ok(match self.who()? {
            None => request,
            Some(who) => Request::Authed(Box::new(Authed {
                header: Some(AuthHeader {
                    username: who.user,
                    auth_revision: who.revision,
                }),
                request: Some(Box::new(InternalRequest {
                    id: 0,
                    request: Some(request),
                })),
            })),
        })
    }

    /// A new simple token, unique on this member.
    pub fn generate_token(&self) -> String {
        SimpleTokens::generate(self.next_token.fetch_add(1, Ordering::Relaxed))
    }

    /// The token to hand `user` once its Authenticate (carrying `simple`)
    /// is applied here: `simple` itself, or with --auth-token jwt a JWT at
    /// this member's auth revision, which is then at least the one the
    /// Authenticate was applied at (etcd signs at apply).
    pub fn issue_token(&self, user: &str, simple: String) -> Result<String, WireError> {
        let jwt = self.jwt.read().clone();
        match jwt {
            None => Ok(simple),
            Some(j) => j
                .assign(user, self.state.read().revision)
                .ok_or(VERIFY_ONLY),
        }
    }

    /// Hashes a password with --bcrypt-cost (before proposing: never in the
    /// applier). Slow on purpose: call from a blocking thread.
    pub fn hash_password(&self, password: &str) -> Result<String, String> {
        bcrypt::hash(password, self.bcrypt_cost.load(Ordering::Relaxed)).map_err(|e| e.to_string())
    }

    /// etcd's CheckPassword: the user exists, has a password, and it matches.
    /// Slow on purpose: call from a blocking thread.
    pub fn check_password(&self, name: &str, password: &str) -> Result<(), WireError> {
        let hash = {
            let s = self.state.read();
            if !s.enabled {
                return Err(wire::AUTH_NOT_ENABLED);
            }
            let user = s.users.get(name).ok_or(wire::AUTH_FAILED)?;
            if user.options.is_some_and(|o| o.no_password) {
                return Err(wire::AUTH_FAILED);
            }
            String::from_utf8_lossy(&user.password).into_owned()
        };
        match bcrypt::verify(password, &hash) {
            Ok(true) => Ok(()),
            _ => Err(wire::AUTH_FAILED),
        }
    }

    /// Applies one auth change (the applier only). Returns the META rows to
    /// write: key and new value, `None` to delete.
    pub fn apply(
        &self,
        header: Option<&AuthHeader>,
        r: &AuthRequest,
    ) -> Result<Vec<MetaRow>, WireError> {
        let mut s = self.state.write();
        let op = r.request.as_ref().ok_or(wire::INVALID_AUTH_MGMT)?;
        if let Some(h) = header {
            // Authenticate is open to anyone; every other change is root's.
            if !matches!(op, AuthOp::Authenticate(_)) {
                let who = Who {
                    user: h.username.clone(),
                    revision: h.auth_revision,
                };
                check::admin(&s, &who)?;
            }
        }
        let dirty = match op {
            AuthOp::Enable(_) => s.enable()?,
            AuthOp::Disable(_) => {
                let d = s.disable()?;
                self.tokens.lock().clear();
                d
            }
            AuthOp::Authenticate(a) => {
                // The password was checked before proposing; the user may have
                // gone since.
                if !s.enabled {
                    return Err(wire::AUTH_NOT_ENABLED);
                }
                if !s.users.contains_key(&a.name) {
                    return Err(wire::AUTH_FAILED);
                }
                // With JWT the proposed simple token is never valid.
                if self.jwt.read().is_none() {
                    self.tokens
                        .lock()
                        .assign(a.simple_token.clone(), a.name.clone());
                }
                vec![]
            }
            AuthOp::UserAdd(u) => s.user_add(u)?,
            AuthOp::UserDelete(u) => {
                let d = s.user_delete(&u.name)?;
                self.tokens.lock().invalidate_user(&u.name);
                d
            }
            AuthOp::UserChangePassword(u) => {
                let d = s.user_change_password(u)?;
                self.tokens.lock().invalidate_user(&u.name);
                d
            }
            AuthOp::UserGrantRole(u) => s.user_grant_role(u)?,
            AuthOp::UserRevokeRole(u) => s.user_revoke_role(u)?,
            AuthOp::RoleAdd(r) => s.role_add(&r.name)?,
            AuthOp::RoleDelete(r) => s.role_delete(&r.role)?,
            AuthOp::RoleGrantPermission(r) => s.role_grant_permission(r)?,
            AuthOp::RoleRevokePermission(r) => s.role_revoke_permission(r)?,
        };
        Ok(dirty.iter().map(|d| s.row(d)).collect())
    }
}
