//! etcd auth: the token the client holds for its configured user, and
//! typed calls of the Auth service (enable/disable, users, roles).
//!
//! With [`ClientConfig::with_user`](crate::ClientConfig::with_user) the
//! client authenticates on connect and sends the token as the `token`
//! metadata header on every request, streams included. When a server
//! answers that the token is invalid (expired, or unknown after a restart),
//! the request was refused before being applied, so the client gets a new
//! token and sends it once more. Concurrent refreshes share one
//! `Authenticate` call.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use kv_proto::authpb::Permission;
use kv_proto::etcdserverpb::auth_client::AuthClient;
// The answers are re-exported below.
use kv_proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGetRequest, AuthRoleGrantPermissionRequest, AuthRoleListRequest,
    AuthRoleRevokePermissionRequest, AuthStatusRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGetRequest,
    AuthUserGrantRoleRequest, AuthUserListRequest, AuthUserRevokeRoleRequest, AuthenticateRequest,
};
use tonic::metadata::AsciiMetadataValue;

use crate::Client;
use crate::balancer::Balancer;
use crate::config::Credentials;
use crate::error::{Error, Result};
use crate::retry::{self, Repeatable, request};

/// The Auth service's answers and a role's permission, as returned by the
/// calls below (for tools that print them, such as kvctl).
pub use kv_proto::authpb::Permission as RolePermission;
pub use kv_proto::authpb::permission::Type as PermissionType;
pub use kv_proto::etcdserverpb::{
    AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse, AuthRoleDeleteResponse,
    AuthRoleGetResponse, AuthRoleGrantPermissionResponse, AuthRoleListResponse,
    AuthRoleRevokePermissionResponse, AuthStatusResponse, AuthUserAddResponse,
    AuthUserChangePasswordResponse, AuthUserDeleteResponse, AuthUserGetResponse,
    AuthUserGrantRoleResponse, AuthUserListResponse, AuthUserRevokeRoleResponse,
};

/// A stream opened with a token older than this gets a fresh one first:
/// etcd checks a stream's token when watches are created on it, possibly
/// long after opening, and a token may be about to expire. Younger tokens
/// are reused so that opening many streams (one per lease keeper) does not
/// cost an `Authenticate` each; etcd's TTL is at least a second, and a
/// watch create refused anyway makes the watch hub reopen its stream.
pub const STREAM_TOKEN_MAX_AGE: Duration = Duration::from_secs(1);

/// The configured user's current token and how to get a new one.
pub(crate) struct TokenCache {
    credentials: Credentials,
    current: Mutex<Current>,
    /// Held while an `Authenticate` is in flight, so concurrent refreshes
    /// wait for it instead of sending their own.
    refreshing: tokio::sync::Mutex<()>,
    authentications: AtomicU64,
}

#[derive(Default)]
struct Current {
    token: Option<AsciiMetadataValue>,
    obtained: Option<Instant>,
    /// Bumped by every new token: a refresh asked for with an old
    /// generation finds the work already done.
    generation: u64,
}

impl TokenCache {
    pub(crate) fn new(credentials: Credentials) -> TokenCache {
        TokenCache {
            credentials,
            current: Mutex::new(Current::default()),
            refreshing: tokio::sync::Mutex::new(()),
            authentications: AtomicU64::new(0),
        }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn generation(&self) -> u64 {
        self.current().generation
    }

    /// Whether a stream about to open should get a fresh token (see
    /// [`STREAM_TOKEN_MAX_AGE`]).
    pub(crate) fn stale_for_stream(&self) -> bool {
        self.current()
            .obtained
            .is_none_or(|t| t.elapsed() > STREAM_TOKEN_MAX_AGE)
    }

    /// The token as a header value, once there is one.
    pub(crate) fn header(&self) -> Option<tonic::codegen::http::HeaderValue> {
        self.current()
            .token
            .as_ref()
            .and_then(|t| t.to_str().ok())
            .and_then(|t| tonic::codegen::http::HeaderValue::from_str(t).ok())
    }

    pub(crate) fn authentications(&self) -> u64 {
        self.authentications.load(Ordering::Relaxed)
    }

    /// Gets a new token unless one newer than generation `seen` arrived
    /// meanwhile.
    pub(crate) async fn refresh(&self, balancer: &Balancer, seen: u64) -> Result<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        if self.generation() != seen {
            return Ok(());
        }
        let creds = &self.credentials;
        self.authentications.fetch_add(1, Ordering::Relaxed);
        let token = authenticate(balancer, &creds.name, &creds.password).await?;
        let value = AsciiMetadataValue::try_from(token.as_str()).map_err(|_| Error::Other {
            code: tonic::Code::Internal,
            message: "the server sent an auth token that is not valid metadata".into(),
        })?;
        let mut current = self.current();
        current.token = Some(value);
        current.obtained = Some(Instant::now());
        current.generation += 1;
        tracing::debug!(user = %creds.name, generation = current.generation, "new auth token");
        Ok(())
    }
}

/// Whether a watch cancel reason says the stream's token was refused
/// (etcd puts the status text, e.g. "rpc error: code = Unauthenticated desc
/// = etcdserver: invalid auth token", in the reason).
pub(crate) fn token_refused(reason: &str) -> bool {
    [
        kv_proto::errors::INVALID_AUTH_TOKEN.message,
        kv_proto::errors::AUTH_OLD_REVISION.message,
    ]
    .iter()
    .any(|m| reason.contains(m))
}

/// One `Authenticate` call under the retry policy: repeating it only mints
/// another token.
async fn authenticate(balancer: &Balancer, name: &str, password: &str) -> Result<String> {
    let config = balancer.config();
    let req = AuthenticateRequest {
        name: name.to_string(),
        password: password.to_string(),
    };
    let resp = retry::call(
        config.retry(),
        config.request_timeout(),
        Repeatable::Yes,
        |left| {
            let mut c = AuthClient::new(balancer.clone());
            let req = req.clone();
            async move { c.authenticate(request(req, left)).await }
        },
    )
    .await?;
    Ok(resp.token)
}

/// One unary Auth call under the client's retry policy: `$req` is cloned
/// for each attempt, which gets the attempt's remaining time as deadline.
macro_rules! auth_call {
    ($client:expr, $repeatable:expr, $method:ident, $req:expr) => {{
        let req = $req;
        $client
            .unary($repeatable, |left| {
                let mut c = $client.auth_client();
                let req = req.clone();
                async move { c.$method(request(req, left)).await }
            })
            .await
    }};
}

impl Client {
    /// Checks a user name and password and returns a fresh token (the
    /// client's own token, from [`ClientConfig::with_user`](crate::ClientConfig::with_user),
    /// is managed for you; this is for tools).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// match client.authenticate("root", "wrong").await {
    ///     Err(kv_client::Error::AuthFailed) => println!("bad password"),
    ///     other => println!("{other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn authenticate(&self, name: &str, password: &str) -> Result<String> {
        authenticate(self.balancer(), name, password).await
    }

    /// How many `Authenticate` calls this client made for its configured
    /// user (on connect and on each token refresh); 0 without a user.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) {
    /// println!("authenticated {} times", client.authentications());
    /// # }
    /// ```
    pub fn authentications(&self) -> u64 {
        self.balancer()
            .tokens()
            .map_or(0, TokenCache::authentications)
    }

    fn auth_client(&self) -> AuthClient<Balancer> {
        AuthClient::new(self.balancer().clone())
    }

    /// Turns auth on (a `root` user with the `root` role must exist).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.user_add("root", "secret").await?;
    /// client.user_grant_role("root", "root").await?;
    /// client.auth_enable().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn auth_enable(&self) -> Result<AuthEnableResponse> {
        auth_call!(self, Repeatable::Yes, auth_enable, AuthEnableRequest {})
    }

    /// Turns auth off (needs the `root` role).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.auth_disable().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn auth_disable(&self) -> Result<AuthDisableResponse> {
        auth_call!(self, Repeatable::Yes, auth_disable, AuthDisableRequest {})
    }

    /// Adds a user with a password.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.user_add("alice", "secret").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn user_add(&self, name: &str, password: &str) -> Result<AuthUserAddResponse> {
        let req = AuthUserAddRequest {
            name: name.to_string(),
            password: password.to_string(),
            ..Default::default()
        };
        auth_call!(self, Repeatable::No, user_add, req)
    }

    /// A user's roles.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// println!("{:?}", client.user_get("alice").await?.roles);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn user_get(&self, name: &str) -> Result<AuthUserGetResponse> {
        let req = AuthUserGetRequest {
            name: name.to_string(),
        };
        auth_call!(self, Repeatable::Yes, user_get, req)
    }

    /// Every user name.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// println!("{:?}", client.user_list().await?.users);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn user_list(&self) -> Result<AuthUserListResponse> {
        auth_call!(self, Repeatable::Yes, user_list, AuthUserListRequest {})
    }

    /// Deletes a user.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.user_delete("alice").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn user_delete(&self, name: &str) -> Result<AuthUserDeleteResponse> {
        let req = AuthUserDeleteRequest {
            name: name.to_string(),
        };
        auth_call!(self, Repeatable::No, user_delete, req)
    }

    /// Gives a user a role.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.user_grant_role("alice", "readers").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn user_grant_role(
        &self,
        user: &str,
        role: &str,
    ) -> Result<AuthUserGrantRoleResponse> {
        let req = AuthUserGrantRoleRequest {
            user: user.to_string(),
            role: role.to_string(),
        };
        auth_call!(self, Repeatable::No, user_grant_role, req)
    }

    /// Adds a role.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.role_add("readers").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn role_add(&self, name: &str) -> Result<AuthRoleAddResponse> {
        let req = AuthRoleAddRequest {
            name: name.to_string(),
        };
        auth_call!(self, Repeatable::No, role_add, req)
    }

    /// Lets a role read and/or write a key, or a range `[key, range_end)`
    /// when `range_end` is given (`Some(b"\0")` = every key from `key` on).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// use kv_client::auth::PermissionType;
    /// client.role_grant_permission("readers", "app/", Some(kv_client::kv::prefix_end(b"app/")), PermissionType::Read).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn role_grant_permission(
        &self,
        role: &str,
        key: impl Into<Vec<u8>>,
        range_end: Option<Vec<u8>>,
        perm: PermissionType,
    ) -> Result<AuthRoleGrantPermissionResponse> {
        let req = AuthRoleGrantPermissionRequest {
            name: role.to_string(),
            perm: Some(Permission {
                perm_type: perm as i32,
                key: key.into(),
                range_end: range_end.unwrap_or_default(),
            }),
        };
        auth_call!(self, Repeatable::No, role_grant_permission, req)
    }
}

// The rest of the Auth service, for tools such as kvctl's `auth`, `user`
// and `role` commands.
impl Client {
    /// Whether auth is on, and the auth revision.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// println!("{}", client.auth_status().await?.enabled);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn auth_status(&self) -> Result<AuthStatusResponse> {
        auth_call!(self, Repeatable::Yes, auth_status, AuthStatusRequest {})
    }

    /// Adds a user without a password: it can only authenticate with a
    /// client certificate whose CN is its name (etcd 3.5's `--no-password`;
    /// etcd 3.4 ignores the option and stores an empty password).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.user_add_no_password("cn-user").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn user_add_no_password(&self, name: &str) -> Result<AuthUserAddResponse> {
        let req = AuthUserAddRequest {
            name: name.to_string(),
            options: Some(kv_proto::authpb::UserAddOptions { no_password: true }),
            ..Default::default()
        };
        auth_call!(self, Repeatable::No, user_add, req)
    }

    /// Sets a user's password.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.user_change_password("alice", "new-secret").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn user_change_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<AuthUserChangePasswordResponse> {
        let req = AuthUserChangePasswordRequest {
            name: name.to_string(),
            password: password.to_string(),
            ..Default::default()
        };
        auth_call!(self, Repeatable::Yes, user_change_password, req)
    }

    /// Takes a role away from a user.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.user_revoke_role("alice", "readers").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn user_revoke_role(
        &self,
        user: &str,
        role: &str,
    ) -> Result<AuthUserRevokeRoleResponse> {
        let req = AuthUserRevokeRoleRequest {
            name: user.to_string(),
            role: role.to_string(),
        };
        auth_call!(self, Repeatable::No, user_revoke_role, req)
    }

    /// A role's permissions.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// println!("{:?}", client.role_get("readers").await?.perm);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn role_get(&self, role: &str) -> Result<AuthRoleGetResponse> {
        let req = AuthRoleGetRequest {
            role: role.to_string(),
        };
        auth_call!(self, Repeatable::Yes, role_get, req)
    }

    /// Every role name.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// println!("{:?}", client.role_list().await?.roles);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn role_list(&self) -> Result<AuthRoleListResponse> {
        auth_call!(self, Repeatable::Yes, role_list, AuthRoleListRequest {})
    }

    /// Deletes a role (and takes it from every user).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.role_delete("readers").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn role_delete(&self, role: &str) -> Result<AuthRoleDeleteResponse> {
        let req = AuthRoleDeleteRequest {
            role: role.to_string(),
        };
        auth_call!(self, Repeatable::No, role_delete, req)
    }

    /// Takes back the permission a role has on exactly `key` (or on
    /// `[key, range_end)` when `range_end` is given), as granted.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.role_revoke_permission("readers", "app/", Some(b"app0".to_vec())).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn role_revoke_permission(
        &self,
        role: &str,
        key: impl Into<Vec<u8>>,
        range_end: Option<Vec<u8>>,
    ) -> Result<AuthRoleRevokePermissionResponse> {
        let req = AuthRoleRevokePermissionRequest {
            role: role.to_string(),
            key: key.into(),
            range_end: range_end.unwrap_or_default(),
        };
        auth_call!(self, Repeatable::No, role_revoke_permission, req)
    }
}
