//! openraft type configuration.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::apply::Applied;
use crate::error::KvError;

pub type NodeId = u64;

/// One log entry: an encoded `kvpb.InternalBatch`. Keeping the bytes
/// means the log stores exactly what was proposed and decoding happens once, at apply.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RaftRequest {
    pub bytes: Vec<u8>,
}

impl fmt::Display for RaftRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request({} bytes)", self.bytes.len())
    }
}

/// The outcome of applying one entry: one result per batched request, in order.
#[derive(Debug, Clone, Default)]
pub struct RaftResponse(pub Vec<Result<Applied, KvError>>);

// openraft's `serde` feature requires responses to be serializable, but a
// response never leaves the member that applied it; it is serialized as unit
// and cannot be deserialized.
impl Serialize for RaftResponse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for RaftResponse {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("raft responses are local-only"))
    }
}

openraft::declare_raft_types!(
    /// kvd's raft types.
    pub TypeConfig:
        D = RaftRequest,
        R = RaftResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
