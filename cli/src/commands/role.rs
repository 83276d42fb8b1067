//! `role add|get|list|delete|grant-permission|revoke-permission`.

use clap::{ArgAction, Args, Subcommand};
use kv_client::auth::PermissionType;
use kv_client::options::prefix_end;
use kv_client::Client;

use super::auth::AuthOutput;
use super::password::go_bool;
use super::Output;
use crate::exit::ExitError;

/// Role related commands
#[derive(Debug, Clone, Args)]
pub struct RoleArgs {
    #[command(subcommand)]
    pub command: RoleCommand,
}

/// `--prefix` and `--from-key` of the permission commands.
#[derive(Debug, Clone, Args)]
pub struct RangeFlags {
    /// grant or revoke a prefix permission
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    prefix: bool,
    /// a permission of keys that are greater than or equal to the given key using byte compare
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    from_key: bool,
}

/// The role subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum RoleCommand {
    /// Adds a new role
    Add {
        /// <role name>
        args: Vec<String>,
    },
    /// Deletes a role
    Delete {
        /// <role name>
        args: Vec<String>,
    },
    /// Gets detailed information of a role
    Get {
        /// <role name>
        args: Vec<String>,
    },
    /// Lists all roles
    List {
        /// (none accepted)
        args: Vec<String>,
    },
    /// Grants a key to a role
    GrantPermission {
        #[command(flatten)]
        range: RangeFlags,
        /// <role name> <permission type> <key> [endkey]
        args: Vec<String>,
    },
    /// Revokes a key from a role
    RevokePermission {
        #[command(flatten)]
        range: RangeFlags,
        /// <role name> <key> [endkey]
        args: Vec<String>,
    },
}

/// A validated role request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleRequest {
    /// Add a role.
    Add(String),
    /// Get a role's permissions.
    Get(String),
    /// List roles.
    List,
    /// Delete a role.
    Delete(String),
    /// Grant `perm` on `[key, end)` (one key if `end` is empty) to a role.
    Grant(String, PermissionType, Vec<u8>, Vec<u8>),
    /// Revoke `[key, end)` from a role; the key as typed is kept for the
    /// message.
    Revoke(String, Vec<u8>, Vec<u8>, String),
}

fn one_role(args: &[String], command: &str) -> Result<String, ExitError> {
    match args {
        [name] => Ok(name.clone()),
        _ => Err(ExitError::bad_args(format!(
            "role {command} command requires role name as its argument"
        ))),
    }
}

/// etcd's permission type names, case-insensitively (clientv3's
/// `StrToPermissionType`).
fn perm_type(s: &str) -> Result<PermissionType, ExitError> {
    match s.to_uppercase().as_str() {
        "READ" => Ok(PermissionType::Read),
        "WRITE" => Ok(PermissionType::Write),
        "READWRITE" => Ok(PermissionType::Readwrite),
        _ => Err(ExitError::bad_args(format!("invalid permission type: {s}"))),
    }
}

const EXCLUSIVE: &str = "--from-key and --prefix flags are mutually exclusive";

/// The key and range end a permission command sends, as etcdctl's
/// `permRange`: `args` is `key [endkey]`.
fn perm_range(args: &[String], f: &RangeFlags) -> Result<(Vec<u8>, Vec<u8>), ExitError> {
    let key = args[0].as_bytes();
    if key.is_empty() {
        if f.prefix && f.from_key {
            return Err(ExitError::bad_args(EXCLUSIVE));
        }
        // etcd keeps permissions as intervals, so the empty key is [\0, ..);
        // with a flag it means every key (\0 as the end is open ended).
        let end = if f.prefix || f.from_key {
            vec![0]
        } else {
            Vec::new()
        };
        return Ok((vec![0], end));
    }
    let end = match (args.get(1), f.prefix, f.from_key) {
        (None, true, true) => return Err(ExitError::bad_args(EXCLUSIVE)),
        (None, true, false) => prefix_end(key),
        (None, false, true) => vec![0],
        (None, false, false) => Vec::new(),
        (Some(_), true, _) => {
            return Err(ExitError::bad_args(
                "unexpected endkey argument with --prefix flag",
            ))
        }
        (Some(_), false, true) => {
            return Err(ExitError::bad_args(
                "unexpected endkey argument with --from-key flag",
            ))
        }
        (Some(end), false, false) => end.as_bytes().to_vec(),
    };
    Ok((key.to_vec(), end))
}

impl RoleArgs {
    /// Checks the arguments as etcdctl does.
    pub fn validate(&self) -> Result<RoleRequest, ExitError> {
        Ok(match &self.command {
            RoleCommand::Add { args } => RoleRequest::Add(one_role(args, "add")?),
            RoleCommand::Delete { args } => RoleRequest::Delete(one_role(args, "delete")?),
            RoleCommand::Get { args } => RoleRequest::Get(one_role(args, "get")?),
            RoleCommand::List { args } => {
                if !args.is_empty() {
                    return Err(ExitError::bad_args(
                        "role list command requires no arguments",
                    ));
                }
                RoleRequest::List
            }
            RoleCommand::GrantPermission { range, args } => {
                if args.len() < 3 {
                    return Err(ExitError::bad_args(
                        "role grant command requires role name, permission type, and key [endkey] as its argument",
                    ));
                }
                let perm = perm_type(&args[1])?;
                let (key, end) = perm_range(&args[2..], range)?;
                RoleRequest::Grant(args[0].clone(), perm, key, end)
            }
            RoleCommand::RevokePermission { range, args } => {
                if args.len() < 2 {
                    return Err(ExitError::bad_args(
                        "role revoke-permission command requires role name and key [endkey] as its argument",
                    ));
                }
                let (key, end) = perm_range(&args[1..], range)?;
                RoleRequest::Revoke(args[0].clone(), key, end, args[1].clone())
            }
        })
    }
}

/// Runs the role request.
pub async fn run(client: &Client, req: RoleRequest) -> Result<Output, ExitError> {
    let some = |end: Vec<u8>| (!end.is_empty()).then_some(end);
    let out = match req {
        RoleRequest::Add(name) => {
            let r = client.role_add(&name).await?;
            AuthOutput::RoleAdd(name, r)
        }
        RoleRequest::Get(name) => {
            let r = client.role_get(&name).await?;
            AuthOutput::RoleGet(name, r)
        }
        RoleRequest::List => AuthOutput::RoleList(client.role_list().await?),
        RoleRequest::Delete(name) => {
            let r = client.role_delete(&name).await?;
            AuthOutput::RoleDelete(name, r)
        }
        RoleRequest::Grant(name, perm, key, end) => {
            let r = client
                .role_grant_permission(&name, key, some(end), perm)
                .await?;
            AuthOutput::RoleGrant(name, r)
        }
        RoleRequest::Revoke(name, key, end, typed) => {
            let r = client
                .role_revoke_permission(&name, key, some(end.clone()))
                .await?;
            AuthOutput::RoleRevoke(name, typed, end, r)
        }
    };
    Ok(Output::Auth(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(prefix: bool, from_key: bool) -> RangeFlags {
        RangeFlags { prefix, from_key }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ranges_like_etcdctl() {
        let f = flags(false, false);
        assert_eq!(
            perm_range(&args(&["k"]), &f).unwrap(),
            (b"k".to_vec(), vec![])
        );
        assert_eq!(
            perm_range(&args(&["a", "z"]), &f).unwrap(),
            (b"a".to_vec(), b"z".to_vec())
        );
        assert_eq!(perm_range(&args(&[""]), &f).unwrap(), (vec![0], vec![]));
        let p = flags(true, false);
        assert_eq!(
            perm_range(&args(&["p/"]), &p).unwrap(),
            (b"p/".to_vec(), b"p0".to_vec())
        );
        assert_eq!(perm_range(&args(&[""]), &p).unwrap(), (vec![0], vec![0]));
        let k = flags(false, true);
        assert_eq!(
            perm_range(&args(&["k"]), &k).unwrap(),
            (b"k".to_vec(), vec![0])
        );
        assert!(perm_range(&args(&["k"]), &flags(true, true)).is_err());
        assert!(perm_range(&args(&["a", "b"]), &p).is_err());
        assert!(perm_type("readWrite").is_ok());
        assert!(perm_type("bogus").is_err());
    }
}
