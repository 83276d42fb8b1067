//! Typed errors for reading and writing etcd snapshots.

use std::io;

/// Everything that can go wrong reading or writing a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on the snapshot file, the output or the scratch file.
    #[error("snapshot i/o: {0}")]
    Io(#[from] io::Error),
    /// The SHA-256 trailer does not match the database bytes (etcd: "expected sha256 ...").
    #[error("snapshot hash mismatch: trailer {expected}, computed {actual}")]
    HashMismatch {
        /// Hex of the trailer stored in the file.
        expected: String,
        /// Hex of the hash computed over the database bytes.
        actual: String,
    },
    /// The file has no SHA-256 trailer (its size is a multiple of 512) and the
    /// hash check was not skipped.
    #[error(
        "snapshot has no sha256 trailer (size {0}); use skip_hash_check to read a bare bbolt file"
    )]
    NoTrailer(u64),
    /// The file is too small or not page aligned.
    #[error("invalid snapshot size {0}")]
    BadSize(u64),
    /// Neither meta page is valid (magic, version, checksum).
    #[error("invalid database: no valid meta page ({0})")]
    BadMeta(String),
    /// A page id, page type, element offset or size read from the file is out of bounds or inconsistent.
    #[error("corrupt page {page}: {reason}")]
    CorruptPage {
        /// The page id where the problem was found.
        page: u64,
        /// What was wrong.
        reason: String,
    },
    /// A bucket etcd needs is missing.
    #[error("bucket {0:?} not found")]
    MissingBucket(String),
    /// A record inside a bucket could not be decoded.
    #[error("bad record in bucket {bucket:?}: {reason}")]
    BadRecord {
        /// Bucket name.
        bucket: String,
        /// What was wrong.
        reason: String,
    },
    /// The writer was fed rows out of revision order or an invalid row.
    #[error("writer: {0}")]
    Order(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn corrupt(page: u64, reason: impl Into<String>) -> Error {
    Error::CorruptPage {
        page,
        reason: reason.into(),
    }
}
