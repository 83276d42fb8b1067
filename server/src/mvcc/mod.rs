//! Revisioned key-value storage with etcd's MVCC semantics.
//!
//! One global revision per committed mutation; each key keeps its history of
//! revisions (a delete leaves a tombstone); reads can target any revision not
//! yet compacted. Current values are cached in memory beside the index so reads
//! at the head revision never touch disk.

mod index;
mod revision;
mod store;

pub use index::{in_range, Index, KeyHistory};
pub use revision::Revision;
pub use store::{ReadView, Recovered, Snapshot, Store, WriteBatch};

/// Errors of the MVCC layer. The wire layer maps them to etcd's statuses.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
    #[error("storage: {0}")]
    Storage(String),
    #[error("storage: corrupt record at revision {0}")]
    Corrupt(String),
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for MvccError {
            fn from(e: $t) -> Self {
                MvccError::Storage(e.to_string())
            }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::StorageError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError,
    redb::DatabaseError,
    redb::CompactionError,
    redb::SetDurabilityError,
    std::io::Error
);
