//! openraft type configuration.

use std::fmt;

use kv_proto::etcdserverpb::{
    AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, TxnResponse,
};
use serde::{Deserialize, Serialize};

use crate::error::KvError;

pub type NodeId = u64;

/// One log entry: an encoded `kvpb.InternalBatch`. Keeping the bytes
/// means the log stores exactly what was proposed and decoding happens once, at apply.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RaftRequest {
    #[serde(with = "as_bytes")]
    pub bytes: Vec<u8>,
}

/// Serializes the entry payload as one byte string rather than a sequence of
/// `u8`s. bincode writes both identically (a u64 length, then the bytes), so
/// the WAL and peer formats are unchanged, but this way a multi-megabyte
/// entry is one copy instead of a per-byte loop: AppendEntries of large
/// values must fit in a heartbeat interval, even in debug builds.
mod as_bytes {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        // Self-describing formats (serde_json) encode bytes as a sequence.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // Never trust a size hint from the input: grow as bytes arrive.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

impl fmt::Display for RaftRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request({} bytes)", self.bytes.len())
    }
}

/// The result of one applied request; headers carry only the revision here.
#[derive(Debug, Clone)]
pub enum Applied {
    None,
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Alarm(AlarmResponse),
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
        // A snapshot is a file (exported from the store when first read):
        // openraft seeks and reads it a chunk at a time to send it, and
        // installs from it, so no step holds a whole snapshot in memory.
        SnapshotData = crate::raft::snapshot_file::SnapshotFile,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_bytes_encode_as_before_and_round_trip() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let req = RaftRequest {
            bytes: bytes.clone(),
        };
        // The same bytes a plain `Vec<u8>` field produced: peers of either
        // build understand each other.
        let encoded = bincode::serialize(&req).expect("encode");
        assert_eq!(encoded, bincode::serialize(&bytes).expect("encode vec"));
        let back: RaftRequest = bincode::deserialize(&encoded).expect("decode");
        assert_eq!(back, req);
        let json = serde_json::to_vec(&req).expect("json");
        let back: RaftRequest = serde_json::from_slice(&json).expect("json decode");
        assert_eq!(back, req);
    }

    #[test]
    fn a_huge_length_prefix_is_an_error_not_an_allocation() {
        let mut forged = (u64::MAX / 2).to_le_bytes().to_vec();
        forged.extend_from_slice(b"short");
        assert!(bincode::deserialize::<RaftRequest>(&forged).is_err());
    }
}
