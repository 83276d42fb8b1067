//! Every redb table kvd uses, declared in one place.
//!
//! The MVCC store, leases, alarms and the raft apply pointer live in one redb
//! file (`<data-dir>/member/db`) so that one write transaction records a batch
//! of applied entries together with the index it reached.

use redb::TableDefinition;

/// Revision (`main << 64 | sub`) -> `[kind][mvccpb.KeyValue]` (kind: 0 put, 1 tombstone).
pub const KV: TableDefinition<u128, &[u8]> = TableDefinition::new("kv");
/// Small named values: see the `META_*` keys.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Lease id -> granted TTL in seconds.
pub const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");
/// Alarm (member id, alarm type) -> unit.
pub const ALARMS: TableDefinition<(u64, i32), ()> = TableDefinition::new("alarms");

/// Member id -> encoded `kvpb.MemberAttributes` (name, client URLs).
pub const MEMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("members");

/// serde_json of the last applied raft log id.
pub const META_APPLIED: &str = "applied";
/// serde_json of the last applied membership.
pub const META_MEMBERSHIP: &str = "membership";
/// i64 LE: the store's current revision.
pub const META_REVISION: &str = "revision";
/// i64 LE: the revision compacted up to.
pub const META_COMPACT: &str = "compact";
/// JSON array of u64: every member ID ever removed (never reused, refused).
pub const META_REMOVED: &str = "members/removed";

// Auth state lives in META (so snapshots and restarts carry it with the
// rest of the store): see `auth::state`.
/// `[0|1]`: whether auth is enabled.
pub const META_AUTH_ENABLED: &str = "auth/enabled";
/// u64 LE: the auth revision.
pub const META_AUTH_REVISION: &str = "auth/revision";
/// Prefix; `auth/user/<name>` -> encoded `authpb.User` (bcrypt hash, roles).
pub const META_AUTH_USER: &str = "auth/user/";
/// Prefix; `auth/role/<name>` -> encoded `authpb.Role` (permissions).
pub const META_AUTH_ROLE: &str = "auth/role/";
