//! The one mapping from kvd errors to etcd's wire statuses.

use kv_proto::errors::{self as wire, WireError};
use tonic::Status;

use crate::error::KvError;
use crate::mvcc::MvccError;

fn wire_error(e: &KvError) -> Option<WireError> {
    Some(match e {
        KvError::Mvcc(MvccError::Compacted) => wire::COMPACTED,
        KvError::Mvcc(MvccError::FutureRev) => wire::FUTURE_REV,
        KvError::Mvcc(_) => return None,
        KvError::EmptyKey => wire::EMPTY_KEY,
        KvError::KeyNotFound => wire::KEY_NOT_FOUND,
        KvError::ValueProvided => wire::VALUE_PROVIDED,
        KvError::LeaseProvided => wire::LEASE_PROVIDED,
        KvError::TooManyOps => wire::TOO_MANY_OPS,
        KvError::DuplicateKey => wire::DUPLICATE_KEY,
        KvError::RequestTooLarge => wire::REQUEST_TOO_LARGE,
        KvError::TooManyRequests => wire::TOO_MANY_REQUESTS,
        KvError::NoSpace => wire::NO_SPACE,
        KvError::LeaseNotFound => wire::LEASE_NOT_FOUND,
        KvError::LeaseExists => wire::LEASE_EXIST,
        KvError::LeaseTtlTooLarge => wire::LEASE_TTL_TOO_LARGE,
        KvError::MemberNotFound => wire::MEMBER_NOT_FOUND,
        KvError::MemberBadUrls => wire::MEMBER_BAD_URLS,
        KvError::PeerUrlExists => wire::PEER_URL_EXIST,
        KvError::MemberNotLearner => wire::MEMBER_NOT_LEARNER,
        KvError::LearnerNotReady => wire::LEARNER_NOT_READY,
        KvError::BadLeaderTransferee => wire::BAD_LEADER_TRANSFEREE,
        KvError::NoLeader => wire::NO_LEADER,
        KvError::NotLeader => wire::NOT_LEADER,
        KvError::Stopped => wire::STOPPED,
        KvError::Timeout => wire::TIMEOUT,
        KvError::NotCapable => wire::NOT_CAPABLE,
        KvError::Auth(w) => *w,
        KvError::InvalidArgument(_) | KvError::Internal(_) | KvError::LeaderTransferTimeout => {
            return None
        }
    })
}

/// etcd's status for `e`; errors etcd has no entry for keep their own text.
pub fn to_status(e: KvError) -> Status {
    if let Some(w) = wire_error(&e) {
        return w.status();
    }
    match e {
        KvError::InvalidArgument(m) => Status::invalid_argument(m),
        KvError::LeaderTransferTimeout => Status::unknown(e.to_string()),
        other => {
            tracing::error!(error = %other, "request failed");
            Status::unknown(other.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_etcd_texts() {
        let s = to_status(KvError::Mvcc(MvccError::Compacted));
        assert_eq!(s.code(), tonic::Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s = to_status(KvError::EmptyKey);
        assert_eq!(s.message(), "etcdserver: key is not provided");
    }
}
