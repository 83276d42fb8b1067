//! `/v3/auth/*`: etcdserverpb.Auth.

use axum::Router;
use kv_proto::etcdserverpb::auth_server::Auth;

use super::{unary_route, Gw};
use crate::api::auth::AuthService;

pub(super) fn routes() -> Router<Gw> {
    let r = Router::new();
    let r = unary_route!(r, "/v3/auth/enable", AuthService, auth_enable);
    let r = unary_route!(r, "/v3/auth/disable", AuthService, auth_disable);
    let r = unary_route!(r, "/v3/auth/status", AuthService, auth_status);
    let r = unary_route!(r, "/v3/auth/authenticate", AuthService, authenticate);
    let r = unary_route!(r, "/v3/auth/user/add", AuthService, user_add);
    let r = unary_route!(r, "/v3/auth/user/get", AuthService, user_get);
    let r = unary_route!(r, "/v3/auth/user/list", AuthService, user_list);
    let r = unary_route!(r, "/v3/auth/user/delete", AuthService, user_delete);
    let r = unary_route!(
        r,
        "/v3/auth/user/changepw",
        AuthService,
        user_change_password
    );
    let r = unary_route!(r, "/v3/auth/user/grant", AuthService, user_grant_role);
    let r = unary_route!(r, "/v3/auth/user/revoke", AuthService, user_revoke_role);
    let r = unary_route!(r, "/v3/auth/role/add", AuthService, role_add);
    let r = unary_route!(r, "/v3/auth/role/get", AuthService, role_get);
    let r = unary_route!(r, "/v3/auth/role/list", AuthService, role_list);
    let r = unary_route!(r, "/v3/auth/role/delete", AuthService, role_delete);
    let r = unary_route!(r, "/v3/auth/role/grant", AuthService, role_grant_permission);
    unary_route!(
        r,
        "/v3/auth/role/revoke",
        AuthService,
        role_revoke_permission
    )
}
