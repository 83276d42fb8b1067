//! `auth enable|disable|status`, and what the `auth`, `user` and `role`
//! commands hand to the printer.

use clap::{Args, Subcommand};
use kv_client::auth::{
    AuthRoleAddResponse, AuthRoleDeleteResponse, AuthRoleGetResponse,
    AuthRoleGrantPermissionResponse, AuthRoleListResponse, AuthRoleRevokePermissionResponse,
    AuthStatusResponse, AuthUserAddResponse, AuthUserChangePasswordResponse,
    AuthUserDeleteResponse, AuthUserGetResponse, AuthUserGrantRoleResponse, AuthUserListResponse,
    AuthUserRevokeRoleResponse,
};
use kv_client::Client;

use super::Output;
use crate::exit::{error_text, ExitError};

/// Enable or disable authentication
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub command: AuthCommand,
}

/// The auth subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum AuthCommand {
    /// Enables authentication
    Enable {
        /// (none accepted)
        args: Vec<String>,
    },
    /// Disables authentication
    Disable {
        /// (none accepted)
        args: Vec<String>,
    },
    /// Returns authentication status
    Status {
        /// (none accepted)
        args: Vec<String>,
    },
}

impl AuthArgs {
    /// Checks the arguments as etcdctl does.
    pub fn validate(&self) -> Result<(), ExitError> {
        let (name, args) = match &self.command {
            AuthCommand::Enable { args } => ("enable", args),
            AuthCommand::Disable { args } => ("disable", args),
            AuthCommand::Status { args } => ("status", args),
        };
        if !args.is_empty() {
            return Err(ExitError::bad_args(format!(
                "auth {name} command does not accept any arguments"
            )));
        }
        Ok(())
    }
}

/// What `auth`, `user` and `role` commands produced.
#[derive(Debug)]
pub enum AuthOutput {
    /// `auth enable` succeeded.
    Enabled,
    /// `auth disable` succeeded.
    Disabled,
    /// Answer of `auth status`.
    Status(AuthStatusResponse),
    /// Answer of `user add` for this user.
    UserAdd(String, AuthUserAddResponse),
    /// Answer of `user get` for this user.
    UserGet(String, AuthUserGetResponse),
    /// `user get --detail`: the user's roles with their permissions, and
    /// the error that stopped the listing, if one did.
    UserDetail {
        /// The user.
        name: String,
        /// Each role and its `role get` answer, in the user's order.
        roles: Vec<(String, AuthRoleGetResponse)>,
        /// The failure of the next role's `role get`.
        failed: Option<ExitError>,
    },
    /// Answer of `user list`.
    UserList(AuthUserListResponse),
    /// Answer of `user delete` for this user.
    UserDelete(String, AuthUserDeleteResponse),
    /// Answer of `user passwd`.
    UserPasswd(AuthUserChangePasswordResponse),
    /// Answer of `user grant-role` for this user and role.
    UserGrantRole(String, String, AuthUserGrantRoleResponse),
    /// Answer of `user revoke-role` for this user and role.
    UserRevokeRole(String, String, AuthUserRevokeRoleResponse),
    /// Answer of `role add` for this role.
    RoleAdd(String, AuthRoleAddResponse),
    /// Answer of `role get` for this role.
    RoleGet(String, AuthRoleGetResponse),
    /// Answer of `role list`.
    RoleList(AuthRoleListResponse),
    /// Answer of `role delete` for this role.
    RoleDelete(String, AuthRoleDeleteResponse),
    /// Answer of `role grant-permission` for this role.
    RoleGrant(String, AuthRoleGrantPermissionResponse),
    /// Answer of `role revoke-permission`: the role, the key as typed and
    /// the range end sent (empty for one key).
    RoleRevoke(String, String, Vec<u8>, AuthRoleRevokePermissionResponse),
}

/// etcd's answer to `AuthEnable` without a root role, on which etcdctl
/// creates the role and grants it to `root` itself.
const ROOT_ROLE_NOT_EXIST: &str = "etcdserver: root user does not have root role";

/// How many times `auth enable` creates the root role and retries before
/// giving up (etcdctl loops without bound; one retry suffices on etcd).
const ENABLE_ATTEMPTS: usize = 3;

/// Runs `auth enable|disable|status`.
pub async fn run(client: &Client, command: &AuthCommand) -> Result<Output, ExitError> {
    let out = match command {
        AuthCommand::Enable { .. } => {
            enable(client).await?;
            AuthOutput::Enabled
        }
        AuthCommand::Disable { .. } => {
            client.auth_disable().await?;
            AuthOutput::Disabled
        }
        AuthCommand::Status { .. } => AuthOutput::Status(client.auth_status().await?),
    };
    Ok(Output::Auth(out))
}

/// `AuthEnable`, creating the `root` role and granting it to the `root`
/// user first when the server says it is missing, as etcdctl does.
async fn enable(client: &Client) -> Result<(), ExitError> {
    let mut attempt = 0;
    loop {
        let e = match client.auth_enable().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        attempt += 1;
        if error_text(&e) != ROOT_ROLE_NOT_EXIST || attempt >= ENABLE_ATTEMPTS {
            return Err(e.into());
        }
        client.role_add("root").await?;
        client.user_grant_role("root", "root").await?;
    }
}
