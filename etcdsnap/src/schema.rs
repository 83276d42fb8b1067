//! etcd's bucket layout and record encodings (server/storage/schema in etcd 3.5+,
//! mvcc/backend + etcdserver/api/membership in 3.4).

use serde::{Deserialize, Serialize};

/// MVCC rows: revision bytes -> `mvccpb.KeyValue`.
pub const BUCKET_KEY: &[u8] = b"key";
/// Consistent index, term, compaction revisions, conf state.
pub const BUCKET_META: &[u8] = b"meta";
/// Lease id (8 bytes big-endian) -> `leasepb.Lease`.
pub const BUCKET_LEASE: &[u8] = b"lease";
/// Marshaled `AlarmMember` -> empty.
pub const BUCKET_ALARM: &[u8] = b"alarm";
/// `clusterVersion` (and `downgrade` in 3.5+).
pub const BUCKET_CLUSTER: &[u8] = b"cluster";
/// Member id (lower-case hex) -> member JSON.
pub const BUCKET_MEMBERS: &[u8] = b"members";
/// Removed member id (hex) -> "removed".
pub const BUCKET_MEMBERS_REMOVED: &[u8] = b"members_removed";
/// `authEnabled`, `authRevision`.
pub const BUCKET_AUTH: &[u8] = b"auth";
/// User name -> `authpb.User`.
pub const BUCKET_AUTH_USERS: &[u8] = b"authUsers";
/// Role name -> `authpb.Role`.
pub const BUCKET_AUTH_ROLES: &[u8] = b"authRoles";

/// Every bucket etcd creates, in the order bbolt stores them (byte order).
pub const ALL_BUCKETS: [&[u8]; 10] = [
    BUCKET_ALARM,
    BUCKET_AUTH,
    BUCKET_AUTH_ROLES,
    BUCKET_AUTH_USERS,
    BUCKET_CLUSTER,
    BUCKET_KEY,
    BUCKET_LEASE,
    BUCKET_MEMBERS,
    BUCKET_MEMBERS_REMOVED,
    BUCKET_META,
];

pub(crate) const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
pub(crate) const META_TERM: &[u8] = b"term";
pub(crate) const META_SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
pub(crate) const META_FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
pub(crate) const META_CONF_STATE: &[u8] = b"confState";
pub(crate) const AUTH_ENABLED: &[u8] = b"authEnabled";
pub(crate) const AUTH_REVISION: &[u8] = b"authRevision";
/// Value etcd stores for each id in `members_removed`.
pub(crate) const REMOVED: &[u8] = b"removed";

/// Length of an encoded revision: 8 bytes main, '_', 8 bytes sub (big-endian).
pub const REV_LEN: usize = 17;
/// A revision key with etcd's tombstone mark ('t') appended.
pub const MARKED_REV_LEN: usize = 18;

/// An MVCC revision: `main` is the store revision, `sub` the index inside its txn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    /// Store revision of the transaction.
    pub main: i64,
    /// Position of the change inside the transaction.
    pub sub: i64,
}

impl Revision {
    /// The key-bucket key: 17 bytes, plus 't' for a tombstone.
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut k = Vec::with_capacity(MARKED_REV_LEN);
        k.extend_from_slice(&self.main.to_be_bytes());
        k.push(b'_');
        k.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            k.push(b't');
        }
        k
    }

    /// Parses a key-bucket key into (revision, tombstone); `None` if malformed.
    pub fn from_key(k: &[u8]) -> Option<(Revision, bool)> {
        let tomb = match k.len() {
            REV_LEN => false,
            MARKED_REV_LEN if k[REV_LEN] == b't' => true,
            _ => return None,
        };
        if k[8] != b'_' {
            return None;
        }
        let main = i64::from_be_bytes(k[0..8].try_into().ok()?);
        let sub = i64::from_be_bytes(k[9..17].try_into().ok()?);
        Some((Revision { main, sub }, tomb))
    }
}

/// One row of the `key` bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The revision the row was written at.
    pub rev: Revision,
    /// True for a delete (the key ends in 't'); `kv` then carries only the key.
    pub tombstone: bool,
    /// The stored `mvccpb.KeyValue`.
    pub kv: kv_proto::mvccpb::KeyValue,
}

/// etcd's `leasepb.Lease`, as stored in the `lease` bucket (kv-proto does not carry leasepb).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Lease {
    /// Lease id.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// Granted TTL in seconds.
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    /// Remaining TTL (etcd persists it only for checkpointed leases; usually 0).
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// A cluster member as etcd stores it in the `members` bucket (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Member {
    /// Member id (a JSON number, as Go's `types.ID` marshals).
    pub id: u64,
    /// Peer URLs.
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    /// Whether the member is a learner.
    #[serde(
        rename = "isLearner",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub is_learner: bool,
    /// Name; empty until the member published its attributes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Client URLs.
    #[serde(rename = "clientURLs", default, skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
}

impl Member {
    /// The bucket key: the id in lower-case hex without padding (Go's `types.ID.String()`).
    pub fn key(&self) -> Vec<u8> {
        format!("{:x}", self.id).into_bytes()
    }
}

/// raft's `ConfState`, stored as JSON under `meta/confState` (etcd 3.5+).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConfState {
    /// Voting member ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voters: Vec<u64>,
    /// Learner ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learners: Vec<u64>,
    /// Outgoing voters during a joint change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voters_outgoing: Vec<u64>,
    /// Learners after a joint change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learners_next: Vec<u64>,
    /// Leave the joint configuration automatically.
    #[serde(default)]
    pub auto_leave: bool,
}

/// The `meta` bucket's contents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetaInfo {
    /// Raft index of the last applied entry (`consistent_index`).
    pub consistent_index: u64,
    /// Raft term of that entry (`term`, etcd 3.5+); `None` if absent.
    pub term: Option<u64>,
    /// `scheduledCompactRev`: revision a compaction was requested at.
    pub scheduled_compact_rev: Option<i64>,
    /// `finishedCompactRev`: revision the last finished compaction reached.
    pub finished_compact_rev: Option<i64>,
    /// `confState` (etcd 3.5+).
    pub conf_state: Option<ConfState>,
}

/// The `auth` bucket: whether auth is on and its revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthInfo {
    /// `authEnabled` (one byte, 1 = on).
    pub enabled: bool,
    /// `authRevision` (8 bytes big-endian).
    pub revision: u64,
}
