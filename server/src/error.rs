//! The one error type of kvd's request path. `api::status` maps each variant
//! to etcd's exact gRPC status.

use crate::mvcc::MvccError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    #[error("key is not provided")]
    EmptyKey,
    #[error("key not found")]
    KeyNotFound,
    #[error("value is provided")]
    ValueProvided,
    #[error("lease is provided")]
    LeaseProvided,
    #[error("too many operations in txn request")]
    TooManyOps,
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    #[error("request is too large")]
    RequestTooLarge,
    #[error("database space exceeded")]
    NoSpace,
    #[error("requested lease not found")]
    LeaseNotFound,
    #[error("lease already exists")]
    LeaseExists,
    #[error("too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("member not found")]
    MemberNotFound,
    #[error("bad leader transferee")]
    BadLeaderTransferee,
    #[error("no leader")]
    NoLeader,
    #[error("server stopped")]
    Stopped,
    #[error("request timed out")]
    Timeout,
    #[error("not capable")]
    NotCapable,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("internal: {0}")]
    Internal(String),
}

pub type KvResult<T> = Result<T, KvError>;
