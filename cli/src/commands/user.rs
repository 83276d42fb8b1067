//! `user add|get|list|delete|passwd|grant-role|revoke-role`.

use clap::{ArgAction, Args, Subcommand};
use kv_client::Client;

use super::auth::AuthOutput;
use super::password::{ask_twice, go_bool, scan_word};
use super::Output;
use crate::exit::ExitError;

/// User related commands
#[derive(Debug, Clone, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

/// The user subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Adds a new user
    Add {
        /// Read password from stdin instead of interactive terminal
        #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
        interactive: bool,
        /// Supply password from the command line flag
        #[arg(long, default_value = "")]
        new_user_password: String,
        /// Create a user without password (CN based auth only)
        #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
        no_password: bool,
        /// <user name or user:password>
        args: Vec<String>,
    },
    /// Deletes a user
    Delete {
        /// <user name>
        args: Vec<String>,
    },
    /// Gets detailed information of a user
    Get {
        /// Show permissions of roles granted to the user
        #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
        detail: bool,
        /// <user name>
        args: Vec<String>,
    },
    /// Lists all users
    List {
        /// (none accepted)
        args: Vec<String>,
    },
    /// Changes password of user
    Passwd {
        /// If true, read password from stdin instead of interactive terminal
        #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
        interactive: bool,
        /// <user name>
        args: Vec<String>,
    },
    /// Grants a role to a user
    GrantRole {
        /// <user name> <role name>
        args: Vec<String>,
    },
    /// Revokes a role from a user
    RevokeRole {
        /// <user name> <role name>
        args: Vec<String>,
    },
}

/// A validated user request (passwords already read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRequest {
    /// Add a user; no password for `--no-password`.
    Add(String, Option<String>),
    /// Get a user, with its roles' permissions if `true`.
    Get(String, bool),
    /// List users.
    List,
    /// Delete a user.
    Delete(String),
    /// Set a user's password.
    Passwd(String, String),
    /// Grant a role to a user.
    GrantRole(String, String),
    /// Revoke a role from a user.
    RevokeRole(String, String),
}

fn one_name(args: &[String], command: &str) -> Result<String, ExitError> {
    match args {
        [name] => Ok(name.clone()),
        _ => Err(ExitError::bad_args(format!(
            "user {command} command requires user name as its argument"
        ))),
    }
}

/// The password etcdctl would read: one word from stdin, or asked twice on
/// the terminal.
fn read_password(name: &str, interactive: bool) -> Result<String, ExitError> {
    if interactive {
        ask_twice(name)
    } else {
        Ok(scan_word())
    }
}

impl UserArgs {
    /// Checks the arguments as etcdctl does and reads any password (before
    /// connecting, as etcdctl does).
    pub fn validate(&self) -> Result<UserRequest, ExitError> {
        Ok(match &self.command {
            UserCommand::Add {
                interactive,
                new_user_password,
                no_password,
                args,
            } => {
                let arg = one_name(args, "add")?;
                if *no_password {
                    return Ok(UserRequest::Add(arg, None));
                }
                if !new_user_password.is_empty() {
                    return Ok(UserRequest::Add(arg, Some(new_user_password.clone())));
                }
                match arg.split_once(':') {
                    Some(("", _)) => {
                        return Err(ExitError::bad_args("empty user name is not allowed"))
                    }
                    Some((name, password)) => {
                        UserRequest::Add(name.to_string(), Some(password.to_string()))
                    }
                    None => {
                        let password = read_password(&arg, *interactive)?;
                        UserRequest::Add(arg, Some(password))
                    }
                }
            }
            UserCommand::Delete { args } => UserRequest::Delete(one_name(args, "delete")?),
            UserCommand::Get { detail, args } => UserRequest::Get(one_name(args, "get")?, *detail),
            UserCommand::List { args } => {
                if !args.is_empty() {
                    return Err(ExitError::bad_args(
                        "user list command requires no arguments",
                    ));
                }
                UserRequest::List
            }
            UserCommand::Passwd { interactive, args } => {
                let name = one_name(args, "passwd")?;
                let password = read_password(&name, *interactive)?;
                UserRequest::Passwd(name, password)
            }
            UserCommand::GrantRole { args } => match args.as_slice() {
                [user, role] => UserRequest::GrantRole(user.clone(), role.clone()),
                _ => {
                    return Err(ExitError::bad_args(
                        "user grant command requires user name and role name as its argument",
                    ))
                }
            },
            UserCommand::RevokeRole { args } => match args.as_slice() {
                [user, role] => UserRequest::RevokeRole(user.clone(), role.clone()),
                _ => {
                    return Err(ExitError::bad_args(
                        "user revoke-role requires user name and role name as its argument",
                    ))
                }
            },
        })
    }
}

/// Runs the user request.
pub async fn run(client: &Client, req: UserRequest) -> Result<Output, ExitError> {
    let out = match req {
        UserRequest::Add(name, Some(password)) => {
            let r = client.user_add(&name, &password).await?;
            AuthOutput::UserAdd(name, r)
        }
        UserRequest::Add(name, None) => {
            let r = client.user_add_no_password(&name).await?;
            AuthOutput::UserAdd(name, r)
        }
        UserRequest::Get(name, false) => {
            let r = client.user_get(&name).await?;
            AuthOutput::UserGet(name, r)
        }
        UserRequest::Get(name, true) => {
            let user = client.user_get(&name).await?;
            let mut roles = Vec::with_capacity(user.roles.len());
            let mut failed = None;
            // As etcdctl: the roles listed before a failing one are shown.
            for role in user.roles {
                match client.role_get(&role).await {
                    Ok(r) => roles.push((role, r)),
                    Err(e) => {
                        failed = Some(e.into());
                        break;
                    }
                }
            }
            AuthOutput::UserDetail {
                name,
                roles,
                failed,
            }
        }
        UserRequest::List => AuthOutput::UserList(client.user_list().await?),
        UserRequest::Delete(name) => {
            let r = client.user_delete(&name).await?;
            AuthOutput::UserDelete(name, r)
        }
        UserRequest::Passwd(name, password) => {
            AuthOutput::UserPasswd(client.user_change_password(&name, &password).await?)
        }
        UserRequest::GrantRole(user, role) => {
            let r = client.user_grant_role(&user, &role).await?;
            AuthOutput::UserGrantRole(user, role, r)
        }
        UserRequest::RevokeRole(user, role) => {
            let r = client.user_revoke_role(&user, &role).await?;
            AuthOutput::UserRevokeRole(user, role, r)
        }
    };
    Ok(Output::Auth(out))
}
