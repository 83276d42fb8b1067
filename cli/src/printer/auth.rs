//! How the `auth`, `user` and `role` answers print, per format, as
//! etcdctl 3.4's printers (`auth status` as newer etcdctl's). Formats
//! etcdctl does not support for an answer report so (exit 4) after the
//! request was made, as etcdctl does.

use std::io::Write;

use kv_client::auth::{AuthRoleGetResponse, PermissionType, RolePermission};
use kv_client::options::prefix_end;
use kv_client::ResponseHeader;

use super::json::{header, quote, Obj};
use super::{io_err, unsupported, Printer};
use crate::commands::auth::AuthOutput;
use crate::exit::ExitError;

/// Prints an auth answer with `printer`: the parts etcdctl prints the same
/// in every format here, the rest with [`Printer::auth`].
pub fn print(printer: &dyn Printer, w: &mut dyn Write, out: &AuthOutput) -> Result<(), ExitError> {
    match out {
        AuthOutput::Enabled => writeln!(w, "Authentication Enabled").map_err(io_err),
        AuthOutput::Disabled => writeln!(w, "Authentication Disabled").map_err(io_err),
        AuthOutput::UserDetail {
            name,
            roles,
            failed,
        } => {
            writeln!(w, "User: {name}").map_err(io_err)?;
            for (role, r) in roles {
                writeln!(w).map_err(io_err)?;
                printer.auth(w, &AuthOutput::RoleGet(role.clone(), r.clone()))?;
            }
            match failed {
                Some(e) => {
                    writeln!(w).map_err(io_err)?;
                    Err(e.clone())
                }
                None => Ok(()),
            }
        }
        out => printer.auth(w, out),
    }
}

/// The `simple` format.
pub fn simple(w: &mut dyn Write, out: &AuthOutput) -> Result<(), ExitError> {
    let mut lines: Vec<u8> = Vec::new();
    let b = &mut lines;
    match out {
        AuthOutput::Status(r) => {
            b.extend(format!("Authentication Status: {}\n", r.enabled).bytes());
            b.extend(format!("AuthRevision: {}\n", r.auth_revision).bytes());
        }
        AuthOutput::UserAdd(name, _) => b.extend(format!("User {name} created\n").bytes()),
        AuthOutput::UserGet(name, r) => {
            b.extend(format!("User: {name}\nRoles:").bytes());
            for role in &r.roles {
                b.extend(format!(" {role}").bytes());
            }
            b.push(b'\n');
        }
        AuthOutput::UserList(r) => r.users.iter().for_each(|u| {
            b.extend(u.bytes());
            b.push(b'\n');
        }),
        AuthOutput::UserDelete(name, _) => b.extend(format!("User {name} deleted\n").bytes()),
        AuthOutput::UserPasswd(_) => b.extend(b"Password updated\n"),
        AuthOutput::UserGrantRole(user, role, _) => {
            b.extend(format!("Role {role} is granted to user {user}\n").bytes())
        }
        AuthOutput::UserRevokeRole(user, role, _) => {
            b.extend(format!("Role {role} is revoked from user {user}\n").bytes())
        }
        AuthOutput::RoleAdd(name, _) => b.extend(format!("Role {name} created\n").bytes()),
        AuthOutput::RoleGet(name, r) => role_get_simple(b, name, r),
        AuthOutput::RoleList(r) => r.roles.iter().for_each(|role| {
            b.extend(role.bytes());
            b.push(b'\n');
        }),
        AuthOutput::RoleDelete(name, _) => b.extend(format!("Role {name} deleted\n").bytes()),
        AuthOutput::RoleGrant(name, _) => b.extend(format!("Role {name} updated\n").bytes()),
        AuthOutput::RoleRevoke(role, key, end, _) => {
            if end.is_empty() {
                b.extend(format!("Permission of key {key} is revoked from role {role}\n").bytes());
            } else if end.as_slice() != b"\0" {
                b.extend(format!("Permission of range [{key}, ").bytes());
                b.extend(end);
                b.extend(format!(") is revoked from role {role}\n").bytes());
            } else {
                b.extend(
                    format!(
                        "Permission of range [{key}, <open ended> is revoked from role {role}\n"
                    )
                    .bytes(),
                );
            }
        }
        AuthOutput::Enabled | AuthOutput::Disabled | AuthOutput::UserDetail { .. } => {}
    }
    w.write_all(&lines).map_err(io_err)
}

/// `role get` in the simple format: keys and ranges as raw bytes, read
/// permissions then write permissions, in the server's order.
fn role_get_simple(b: &mut Vec<u8>, name: &str, r: &AuthRoleGetResponse) {
    b.extend(format!("Role {name}\nKV Read:\n").bytes());
    let line = |b: &mut Vec<u8>, p: &RolePermission| {
        b.push(b'\t');
        if p.range_end.is_empty() {
            b.extend(&p.key);
            b.push(b'\n');
            return;
        }
        b.push(b'[');
        b.extend(&p.key);
        if p.range_end != b"\0" {
            b.extend(b", ");
            b.extend(&p.range_end);
            b.push(b')');
        } else {
            b.extend(b", <open ended>");
        }
        if prefix_end(&p.key) == p.range_end {
            b.extend(b" (prefix ");
            b.extend(&p.key);
            b.push(b')');
        }
        b.push(b'\n');
    };
    let reads = |p: &&RolePermission| p.perm_type != PermissionType::Write as i32;
    let writes = |p: &&RolePermission| p.perm_type != PermissionType::Read as i32;
    r.perm.iter().filter(reads).for_each(|p| line(b, p));
    b.extend(b"KV Write:\n");
    r.perm.iter().filter(writes).for_each(|p| line(b, p));
}

fn names(list: &[String]) -> Option<String> {
    if list.is_empty() {
        return None;
    }
    let quoted: Vec<String> = list.iter().map(|s| quote(s)).collect();
    Some(format!("[{}]", quoted.join(",")))
}

fn only_header(h: Option<&ResponseHeader>) -> String {
    Obj::new().raw("header", header(h)).finish()
}

/// The `json` format: the response as Go's encoding/json renders it.
pub fn json(w: &mut dyn Write, out: &AuthOutput) -> Result<(), ExitError> {
    let s = match out {
        AuthOutput::Status(r) => Obj::new()
            .raw("header", header(r.header.as_ref()))
            .bool("enabled", r.enabled)
            .num("authRevision", r.auth_revision)
            .finish(),
        AuthOutput::UserGet(_, r) => Obj::new()
            .raw("header", header(r.header.as_ref()))
            .raw("roles", names(&r.roles))
            .finish(),
        AuthOutput::UserList(r) => Obj::new()
            .raw("header", header(r.header.as_ref()))
            .raw("users", names(&r.users))
            .finish(),
        AuthOutput::RoleList(r) => Obj::new()
            .raw("header", header(r.header.as_ref()))
            .raw("roles", names(&r.roles))
            .finish(),
        AuthOutput::RoleGet(_, r) => {
            let perms: Vec<String> = r
                .perm
                .iter()
                .map(|p| {
                    Obj::new()
                        .num("permType", p.perm_type)
                        .bytes("key", &p.key)
                        .bytes("range_end", &p.range_end)
                        .finish()
                })
                .collect();
            let perms = (!perms.is_empty()).then(|| format!("[{}]", perms.join(",")));
            Obj::new()
                .raw("header", header(r.header.as_ref()))
                .raw("perm", perms)
                .finish()
        }
        AuthOutput::UserAdd(_, r) => only_header(r.header.as_ref()),
        AuthOutput::UserDelete(_, r) => only_header(r.header.as_ref()),
        AuthOutput::UserPasswd(r) => only_header(r.header.as_ref()),
        AuthOutput::UserGrantRole(_, _, r) => only_header(r.header.as_ref()),
        AuthOutput::UserRevokeRole(_, _, r) => only_header(r.header.as_ref()),
        AuthOutput::RoleAdd(_, r) => only_header(r.header.as_ref()),
        AuthOutput::RoleDelete(_, r) => only_header(r.header.as_ref()),
        AuthOutput::RoleGrant(_, r) => only_header(r.header.as_ref()),
        AuthOutput::RoleRevoke(_, _, _, r) => only_header(r.header.as_ref()),
        AuthOutput::Enabled | AuthOutput::Disabled | AuthOutput::UserDetail { .. } => return Ok(()),
    };
    writeln!(w, "{s}").map_err(io_err)
}

/// The `fields` format: the header's fields, and a role's permissions or
/// the role names; etcdctl 3.4 has no fields for `user get|list` and `auth
/// status`.
pub fn fields(w: &mut dyn Write, out: &AuthOutput) -> Result<(), ExitError> {
    let h = match out {
        AuthOutput::UserAdd(_, r) => r.header,
        AuthOutput::UserDelete(_, r) => r.header,
        AuthOutput::UserPasswd(r) => r.header,
        AuthOutput::UserGrantRole(_, _, r) => r.header,
        AuthOutput::UserRevokeRole(_, _, r) => r.header,
        AuthOutput::RoleAdd(_, r) => r.header,
        AuthOutput::RoleDelete(_, r) => r.header,
        AuthOutput::RoleGrant(_, r) => r.header,
        AuthOutput::RoleRevoke(_, _, _, r) => r.header,
        AuthOutput::RoleGet(_, r) => r.header,
        AuthOutput::RoleList(r) => r.header,
        AuthOutput::Status(_) | AuthOutput::UserGet(..) | AuthOutput::UserList(_) => {
            return Err(unsupported("fields"))
        }
        AuthOutput::Enabled | AuthOutput::Disabled | AuthOutput::UserDetail { .. } => return Ok(()),
    };
    let mut b: Vec<u8> = Vec::new();
    super::fields::hdr(&mut b, h.as_ref()).map_err(io_err)?;
    match out {
        AuthOutput::RoleGet(_, r) => {
            for p in &r.perm {
                // Go's enum String() falls back to the number.
                let name = PermissionType::try_from(p.perm_type)
                    .map_or_else(|_| p.perm_type.to_string(), |t| t.as_str_name().to_string());
                // Go's Println puts a space after the label's own space.
                b.extend(format!("\"PermType\" :  {name}\n").bytes());
                b.extend(format!("\"Key\" : {}\n", super::fields::go_quote(&p.key)).bytes());
                b.extend(
                    format!("\"RangeEnd\" : {}\n", super::fields::go_quote(&p.range_end)).bytes(),
                );
            }
        }
        AuthOutput::RoleList(r) => {
            b.extend(b"\"Roles\" :");
            for role in &r.roles {
                b.extend(format!(" {}", super::fields::go_quote(role.as_bytes())).bytes());
            }
            b.push(b'\n');
        }
        _ => {}
    }
    w.write_all(&b).map_err(io_err)
}
