//! etcdserverpb.Auth, and the layer that hands each request's token
//! (gRPC metadata `token`, or `authorization` as etcd also reads) to the
//! facade.

use std::sync::Arc;
use std::task::{Context, Poll};

use kv_proto::etcdserverpb::auth_server::Auth;
use kv_proto::etcdserverpb::*;
use kv_proto::kvpb::auth_request::Request as AuthOp;
use tokio::task::futures::TaskLocalFuture;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::node::Node;

/// etcd's metadata keys for the token (rpctypes.TokenFieldNameGRPC, then
/// TokenFieldNameSwagger).
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];

/// Wraps every client call so the facade sees its token.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenLayer;

impl<S> tower::Layer<S> for TokenLayer {
    type Service = TokenService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TokenService(inner)
    }
}

#[derive(Debug, Clone)]
pub struct TokenService<S>(S);

impl<S, B> tower::Service<http::Request<B>> for TokenService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<Option<String>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let token = TOKEN_KEYS
            .iter()
            .find_map(|k| req.headers().get(*k))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| cert_user(&req));
        crate::auth::with_token(token, self.0.call(req))
    }
}

/// etcd's rule: with --client-cert-auth, a request without a token acts
/// as the user named by its verified client certificate's CN.
fn cert_user<B>(req: &http::Request<B>) -> Option<String> {
    if !crate::tls::client_cert_auth() {
        return None;
    }
    let info = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    let cn = crate::tls::common_name(certs.first()?.as_ref())?;
    Some(crate::auth::cn_identity(&cn))
}

pub struct AuthService(pub Arc<Node>);

type Res<T> = Result<Response<T>, Status>;

impl AuthService {
    fn header(&self) -> Option<ResponseHeader> {
        self.0.header(0)
    }

    async fn change(&self, op: AuthOp) -> Result<Option<ResponseHeader>, Status> {
        self.0.auth_change(op).await.map_err(to_status)?;
        Ok(self.header())
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, r: Request<AuthEnableRequest>) -> Res<AuthEnableResponse> {
        let header = self.change(AuthOp::Enable(r.into_inner())).await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(&self, r: Request<AuthDisableRequest>) -> Res<AuthDisableResponse> {
        let header = self.change(AuthOp::Disable(r.into_inner())).await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn auth_status(&self, _r: Request<AuthStatusRequest>) -> Res<AuthStatusResponse> {
        let (enabled, auth_revision) = self
            .0
            .auth_read(|s| Ok((s.enabled, s.revision)))
            .await
            .map_err(to_status)?;
        Ok(Response::new(AuthStatusResponse {
            header: self.header(),
            enabled,
            auth_revision,
        }))
    }

    async fn authenticate(&self, r: Request<AuthenticateRequest>) -> Res<AuthenticateResponse> {
        let r = r.into_inner();
        let token = self
            .0
            .authenticate(r.name, r.password)
            .await
            .map_err(to_status)?;
        Ok(Response::new(AuthenticateResponse {
            header: self.header(),
            token,
        }))
    }

    async fn user_add(&self, r: Request<AuthUserAddRequest>) -> Res<AuthUserAddResponse> {
        self.0.user_add(r.into_inner()).await.map_err(to_status)?;
        Ok(Response::new(AuthUserAddResponse {
            header: self.header(),
        }))
    }

    async fn user_get(&self, r: Request<AuthUserGetRequest>) -> Res<AuthUserGetResponse> {
        let name = r.into_inner().name;
        let roles = self
            .0
            .auth_read_or(
                |_, who| who.user == name,
                |s| {
                    let u = s.users.get(&name).ok_or(kv_proto::errors::USER_NOT_FOUND)?;
                    Ok(u.roles.clone())
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(AuthUserGetResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn user_list(&self, _r: Request<AuthUserListRequest>) -> Res<AuthUserListResponse> {
        let users = self
            .0
            .auth_read(|s| Ok(s.users.keys().cloned().collect()))
            .await
            .map_err(to_status)?;
        Ok(Response::new(AuthUserListResponse {
            header: self.header(),
            users,
        }))
    }

    async fn user_delete(&self, r: Request<AuthUserDeleteRequest>) -> Res<AuthUserDeleteResponse> {
        let header = self.change(AuthOp::UserDelete(r.into_inner())).await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        r: Request<AuthUserChangePasswordRequest>,
    ) -> Res<AuthUserChangePasswordResponse> {
        self.0
            .user_change_password(r.into_inner())
            .await
            .map_err(to_status)?;
        Ok(Response::new(AuthUserChangePasswordResponse {
            header: self.header(),
        }))
    }

    async fn user_grant_role(
        &self,
        r: Request<AuthUserGrantRoleRequest>,
    ) -> Res<AuthUserGrantRoleResponse> {
        let header = self.change(AuthOp::UserGrantRole(r.into_inner())).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        r: Request<AuthUserRevokeRoleRequest>,
    ) -> Res<AuthUserRevokeRoleResponse> {
        let header = self.change(AuthOp::UserRevokeRole(r.into_inner())).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(&self, r: Request<AuthRoleAddRequest>) -> Res<AuthRoleAddResponse> {
        let header = self.change(AuthOp::RoleAdd(r.into_inner())).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(&self, r: Request<AuthRoleGetRequest>) -> Res<AuthRoleGetResponse> {
        let role = r.into_inner().role;
        let perm = self
            .0
            .auth_read_or(
                |s, who| {
                    s.users
                        .get(&who.user)
                        .is_some_and(|u| u.roles.contains(&role))
                },
                |s| crate::node::role_perms(s, &role),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(AuthRoleGetResponse {
            header: self.header(),
            perm,
        }))
    }

    async fn role_list(&self, _r: Request<AuthRoleListRequest>) -> Res<AuthRoleListResponse> {
        let roles = self
            .0
            .auth_read(|s| Ok(s.roles.keys().cloned().collect()))
            .await
            .map_err(to_status)?;
        Ok(Response::new(AuthRoleListResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn role_delete(&self, r: Request<AuthRoleDeleteRequest>) -> Res<AuthRoleDeleteResponse> {
        let header = self.change(AuthOp::RoleDelete(r.into_inner())).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        r: Request<AuthRoleGrantPermissionRequest>,
    ) -> Res<AuthRoleGrantPermissionResponse> {
        let header = self
            .change(AuthOp::RoleGrantPermission(r.into_inner()))
            .await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        r: Request<AuthRoleRevokePermissionRequest>,
    ) -> Res<AuthRoleRevokePermissionResponse> {
        let header = self
            .change(AuthOp::RoleRevokePermission(r.into_inner()))
            .await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
