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
    /// Applied lags committed too far, or the proposal queue is full.
    #[error("too many requests")]
    TooManyRequests,
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
    #[error("given member URLs are invalid")]
    MemberBadUrls,
    #[error("Peer URLs already exists")]
    PeerUrlExists,
    #[error("can only promote a learner member")]
    MemberNotLearner,
    #[error("can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("bad leader transferee")]
    BadLeaderTransferee,
    #[error("no leader")]
    NoLeader,
    #[error("not leader")]
    NotLeader,
    #[error("server stopped")]
    Stopped,
    #[error("request timed out")]
    Timeout,
    /// etcd has no gRPC mapping for this one: it reaches clients as Unknown
    /// with etcd's full text.
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("not capable")]
    NotCapable,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("internal: {0}")]
    Internal(String),
    /// An auth failure, with etcd's exact status (permission denied,
    /// invalid auth token, user not found, ...).
    #[error("{0}")]
    Auth(kv_proto::errors::WireError),
}

pub type KvResult<T> = Result<T, KvError>;

impl KvError {
    /// A stable code for this error, for crossing members and for bindings.
    pub fn code(&self) -> &'static str {
        match self {
            KvError::Mvcc(MvccError::Compacted) => "compacted",
            KvError::Mvcc(MvccError::FutureRev) => "future_rev",
            KvError::Mvcc(_) => "storage",
            KvError::EmptyKey => "empty_key",
            KvError::KeyNotFound => "key_not_found",
            KvError::ValueProvided => "value_provided",
            KvError::LeaseProvided => "lease_provided",
            KvError::TooManyOps => "too_many_ops",
            KvError::DuplicateKey => "duplicate_key",
            KvError::RequestTooLarge => "request_too_large",
            KvError::TooManyRequests => "too_many_requests",
            KvError::NoSpace => "no_space",
            KvError::LeaseNotFound => "lease_not_found",
            KvError::LeaseExists => "lease_exist",
            KvError::LeaseTtlTooLarge => "lease_ttl_too_large",
            KvError::MemberNotFound => "member_not_found",
            KvError::MemberBadUrls => "member_bad_urls",
            KvError::PeerUrlExists => "peer_url_exist",
            KvError::MemberNotLearner => "member_not_learner",
            KvError::LearnerNotReady => "learner_not_ready",
            KvError::BadLeaderTransferee => "bad_leader_transferee",
            KvError::NoLeader => "no_leader",
            KvError::NotLeader => "not_leader",
            KvError::Stopped => "stopped",
            KvError::Timeout => "timeout",
            KvError::LeaderTransferTimeout => "leader_transfer_timeout",
            KvError::NotCapable => "not_capable",
            KvError::InvalidArgument(_) => "invalid_argument",
            KvError::Internal(_) => "internal",
            KvError::Auth(w) => w.stable,
        }
    }

    /// Rebuilds an error sent by another member as (code, message).
    pub fn from_code(code: &str, message: &str) -> KvError {
        let all = [
            KvError::Mvcc(MvccError::Compacted),
            KvError::Mvcc(MvccError::FutureRev),
            KvError::EmptyKey,
            KvError::KeyNotFound,
            KvError::ValueProvided,
            KvError::LeaseProvided,
            KvError::TooManyOps,
            KvError::DuplicateKey,
            KvError::RequestTooLarge,
            KvError::TooManyRequests,
            KvError::NoSpace,
            KvError::LeaseNotFound,
            KvError::LeaseExists,
            KvError::LeaseTtlTooLarge,
            KvError::MemberNotFound,
            KvError::MemberBadUrls,
            KvError::PeerUrlExists,
            KvError::MemberNotLearner,
            KvError::LearnerNotReady,
            KvError::BadLeaderTransferee,
            KvError::NoLeader,
            KvError::NotLeader,
            KvError::Stopped,
            KvError::Timeout,
            KvError::LeaderTransferTimeout,
            KvError::NotCapable,
        ];
        match all.into_iter().find(|e| e.code() == code) {
            Some(e) => e,
            None if code == "invalid_argument" => KvError::InvalidArgument(message.to_string()),
            None => match kv_proto::errors::from_stable(code) {
                Some(w) => KvError::Auth(*w),
                None => KvError::Internal(message.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for e in [
            KvError::NoLeader,
            KvError::Mvcc(MvccError::Compacted),
            KvError::InvalidArgument("x".into()),
        ] {
            let back = KvError::from_code(e.code(), &e.to_string());
            assert_eq!(back.code(), e.code());
        }
    }
}
