//! The replicated auth state (users, roles, enabled flag, auth revision)
//! and its changes, with etcd's checks and texts (server/auth/store.go).
//! Every change is checked in full before it mutates anything.

use std::collections::BTreeMap;

use kv_proto::authpb::{Permission, Role, User, UserAddOptions};
use kv_proto::errors::{self as wire, WireError};
use kv_proto::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
};
use prost::Message;

use crate::storage::schema::{
    META_AUTH_ENABLED, META_AUTH_REVISION, META_AUTH_ROLE, META_AUTH_USER,
};

/// etcd's fixed names: the user and role that may enable auth.
pub const ROOT: &str = "root";

/// A stored row that changed: written back to META by the applier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dirty {
    Enabled,
    Revision,
    User(String),
    Role(String),
}

/// Users, roles, the enabled flag and the auth revision.
#[derive(Debug, Clone)]
pub struct AuthState {
    pub enabled: bool,
    /// Bumped by every change that can alter a permission.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
}

impl Default for AuthState {
    fn default() -> Self {
        // etcd's auth store starts at revision 1.
        AuthState {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

type Changed = Result<Vec<Dirty>, WireError>;

impl AuthState {
    /// Whether `user` holds the root role.
    pub fn is_root(user: &User) -> bool {
        user.roles.iter().any(|r| r == ROOT)
    }

    /// Every permission of every role `user` holds.
    pub fn perms_of<'a>(&'a self, user: &'a User) -> impl Iterator<Item = &'a Permission> + 'a {
        user.roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.key_permission.iter())
    }

    fn bump(&mut self, mut dirty: Vec<Dirty>) -> Vec<Dirty> {
        self.revision += 1;
        dirty.push(Dirty::Revision);
        dirty
    }

    pub fn enable(&mut self) -> Changed {
        if self.enabled {
            return Ok(vec![]);
        }
        let root = self.users.get(ROOT).ok_or(wire::ROOT_USER_NOT_EXIST)?;
        if !Self::is_root(root) {
            return Err(wire::ROOT_ROLE_NOT_EXIST);
        }
        self.enabled = true;
        Ok(vec![Dirty::Enabled])
    }

    pub fn disable(&mut self) -> Changed {
        self.enabled = false;
        Ok(vec![Dirty::Enabled])
    }

    /// Adds a user; `r.hashed_password` was computed before proposing.
    pub fn user_add(&mut self, r: &AuthUserAddRequest) -> Changed {
        if r.name.is_empty() {
            return Err(wire::USER_EMPTY);
        }
        if self.users.contains_key(&r.name) {
            return Err(wire::USER_ALREADY_EXIST);
        }
        let options = r.options.unwrap_or(UserAddOptions { no_password: false });
        let password = if options.no_password {
            Vec::new()
        } else {
            r.hashed_password.as_bytes().to_vec()
        };
        let user = User {
            name: r.name.as_bytes().to_vec(),
            password,
            roles: vec![],
            options: Some(options),
        };
        self.users.insert(r.name.clone(), user);
        Ok(self.bump(vec![Dirty::User(r.name.clone())]))
    }

    pub fn user_delete(&mut self, name: &str) -> Changed {
        if self.enabled && name == ROOT {
            return Err(wire::INVALID_AUTH_MGMT);
        }
        self.users.remove(name).ok_or(wire::USER_NOT_FOUND)?;
        Ok(self.bump(vec![Dirty::User(name.to_string())]))
    }

    pub fn user_change_password(&mut self, r: &AuthUserChangePasswordRequest) -> Changed {
        let user = self.users.get_mut(&r.name).ok_or(wire::USER_NOT_FOUND)?;
        user.password = r.hashed_password.as_bytes().to_vec();
        Ok(self.bump(vec![Dirty::User(r.name.clone())]))
    }

    pub fn user_grant_role(&mut self, r: &AuthUserGrantRoleRequest) -> Changed {
        if !self.users.contains_key(&r.user) {
            return Err(wire::USER_NOT_FOUND);
        }
        // The root role may be granted before it is created (etcd's rule).
        if r.role != ROOT && !self.roles.contains_key(&r.role) {
            return Err(wire::ROLE_NOT_FOUND);
        }
        let user = self.users.get_mut(&r.user).ok_or(wire::USER_NOT_FOUND)?;
        match user.roles.binary_search(&r.role) {
            Ok(_) => Ok(vec![]),
            Err(at) => {
                user.roles.insert(at, r.role.clone());
                Ok(self.bump(vec![Dirty::User(r.user.clone())]))
            }
        }
    }

    pub fn user_revoke_role(&mut self, r: &AuthUserRevokeRoleRequest) -> Changed {
        if self.enabled && r.name == ROOT && r.role == ROOT {
            return Err(wire::INVALID_AUTH_MGMT);
        }
        let user = self.users.get_mut(&r.name).ok_or(wire::USER_NOT_FOUND)?;
        let at = user
            .roles
            .iter()
            .position(|x| *x == r.role)
            .ok_or(wire::ROLE_NOT_GRANTED)?;
        user.roles.remove(at);
        Ok(self.bump(vec![Dirty::User(r.name.clone())]))
    }

    pub fn role_add(&mut self, name: &str) -> Changed {
        if name.is_empty() {
            return Err(wire::ROLE_EMPTY);
        }
        if self.roles.contains_key(name) {
            return Err(wire::ROLE_ALREADY_EXIST);
        }
        let role = Role {
            name: name.as_bytes().to_vec(),
            key_permission: vec![],
        };
        self.roles.insert(name.to_string(), role);
        Ok(self.bump(vec![Dirty::Role(name.to_string())]))
    }

    pub fn role_delete(&mut self, name: &str) -> Changed {
        if self.enabled && name == ROOT {
            return Err(wire::INVALID_AUTH_MGMT);
        }
        self.roles.remove(name).ok_or(wire::ROLE_NOT_FOUND)?;
        let mut dirty = vec![Dirty::Role(name.to_string())];
        // The role is taken from every user holding it, as etcd does.
        for (uname, user) in self.users.iter_mut() {
            if let Some(at) = user.roles.iter().position(|r| r == name) {
                user.roles.remove(at);
                dirty.push(Dirty::User(uname.clone()));
            }
        }
        Ok(self.bump(dirty))
    }

    pub fn role_grant_permission(&mut self, r: &AuthRoleGrantPermissionRequest) -> Changed {
        let perm = r.perm.clone().ok_or(wire::PERMISSION_NOT_GIVEN)?;
        let role = self.roles.get_mut(&r.name).ok_or(wire::ROLE_NOT_FOUND)?;
        let key = |p: &Permission| (p.key.clone(), p.range_end.clone());
        match role
            .key_permission
            .binary_search_by(|p| key(p).cmp(&key(&perm)))
        {
            Ok(at) => role.key_permission[at].perm_type = perm.perm_type,
            Err(at) => role.key_permission.insert(at, perm),
        }
        Ok(self.bump(vec![Dirty::Role(r.name.clone())]))
    }

    pub fn role_revoke_permission(&mut self, r: &AuthRoleRevokePermissionRequest) -> Changed {
        let role = self.roles.get_mut(&r.role).ok_or(wire::ROLE_NOT_FOUND)?;
        let at = role
            .key_permission
            .iter()
            .position(|p| p.key == r.key && p.range_end == r.range_end)
            .ok_or(wire::PERMISSION_NOT_GRANTED)?;
        role.key_permission.remove(at);
        Ok(self.bump(vec![Dirty::Role(r.role.clone())]))
    }

    /// The META row for `d`: key and value, `None` when it was deleted.
    pub fn row(&self, d: &Dirty) -> (String, Option<Vec<u8>>) {
        match d {
            Dirty::Enabled => (
                META_AUTH_ENABLED.to_string(),
                Some(vec![u8::from(self.enabled)]),
            ),
            Dirty::Revision => (
                META_AUTH_REVISION.to_string(),
                Some(self.revision.to_le_bytes().to_vec()),
            ),
            Dirty::User(n) => (
                format!("{META_AUTH_USER}{n}"),
                self.users.get(n).map(|u| u.encode_to_vec()),
            ),
            Dirty::Role(n) => (
                format!("{META_AUTH_ROLE}{n}"),
                self.roles.get(n).map(|r| r.encode_to_vec()),
            ),
        }
    }

    /// Rebuilds the state from META rows (restart, snapshot install). A row
    /// that does not decode is an error: silently dropping a user or role
    /// would change who may do what.
    pub fn load(meta: &[(String, Vec<u8>)]) -> Result<AuthState, String> {
        let mut s = AuthState::default();
        for (k, v) in meta {
            if k == META_AUTH_ENABLED {
                s.enabled = v.first() == Some(&1);
            } else if k == META_AUTH_REVISION {
                let b: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| format!("meta {k}: expected 8 bytes"))?;
                s.revision = u64::from_le_bytes(b);
            } else if let Some(name) = k.strip_prefix(META_AUTH_USER) {
                let u = User::decode(v.as_slice()).map_err(|e| format!("meta {k}: {e}"))?;
                s.users.insert(name.to_string(), u);
            } else if let Some(name) = k.strip_prefix(META_AUTH_ROLE) {
                let r = Role::decode(v.as_slice()).map_err(|e| format!("meta {k}: {e}"))?;
                s.roles.insert(name.to_string(), r);
            }
        }
        Ok(s)
    }
}
