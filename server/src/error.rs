//! The one error type of kvd's request path, and its one table
//! ([`KvError::entry`]): each variant's stable code, etcd's exact gRPC
//! status where etcd has the error, and the payload that crosses members.
//! The client-facing mapping (`api::status`) and the peer forwarding
//! (`node::peer`) both read it.

use kv_proto::errors::{self as wire, WireError};
use tonic::Code;

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
    #[error("invalid sort option")]
    InvalidSortOption,
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

/// One row of kvd's error table: how an error leaves this member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// kvd's stable code: what crosses members (with [`Entry::detail`]),
    /// and what bindings see. For an error etcd has, etcd's stable code.
    pub code: &'static str,
    /// etcd's status (exact gRPC code and text), where etcd has the error.
    pub etcd: Option<WireError>,
    /// Where etcd has no entry: the gRPC code clients get, with the
    /// error's own text ([`KvError::client_text`]).
    pub grpc: Code,
    /// The variant's payload, if it carries one; a member rebuilds the
    /// error from (code, detail), so it never gains a second prefix.
    pub detail: Option<&'a str>,
}

/// etcd's status for an error etcd has.
const fn etcd(w: WireError) -> (&'static str, Option<WireError>, Code) {
    (w.stable, Some(w), w.code)
}

/// kvd's own code for an error etcd has no entry for.
const fn own(code: &'static str, grpc: Code) -> (&'static str, Option<WireError>, Code) {
    (code, None, grpc)
}

/// The error table, written once: each payload-free variant is listed here
/// exactly once, and [`KvError::entry`] (generated from this list plus the
/// payload variants) matches every variant without a wildcard, so a new
/// variant does not compile until it has a row. [`KvError::from_code`], the
/// way back, is generated from the same list.
macro_rules! error_table {
    ($( $variant:ident => $row:expr; )*) => {
        impl KvError {
            /// This error's row of the table.
            pub fn entry(&self) -> Entry<'_> {
                let ((code, etcd, grpc), detail) = match self {
                    $( KvError::$variant => ($row, None), )*
                    KvError::Mvcc(MvccError::Compacted) => (etcd(wire::COMPACTED), None),
                    KvError::Mvcc(MvccError::FutureRev) => (etcd(wire::FUTURE_REV), None),
                    KvError::Mvcc(MvccError::Storage(m)) => (own("storage", Code::Unknown), Some(m)),
                    KvError::Mvcc(MvccError::Corrupt(m)) => {
                        (own("storage_corrupt", Code::Unknown), Some(m))
                    }
                    KvError::InvalidArgument(m) => {
                        (own("invalid_argument", Code::InvalidArgument), Some(m))
                    }
                    KvError::Internal(m) => (own("internal", Code::Unknown), Some(m)),
                    KvError::Auth(w) => (etcd(*w), None),
                };
                Entry {
                    code,
                    etcd,
                    grpc,
                    detail: detail.map(String::as_str),
                }
            }

            /// Rebuilds an error another member sent as (code, detail); an
            /// unknown code (a newer member's) is an internal error with
            /// the detail as text.
            pub fn from_code(code: &str, detail: &str) -> KvError {
                $(
                    if code == ($row).0 {
                        return KvError::$variant;
                    }
                )*
                let d = detail.to_string();
                match code {
                    "compacted" => KvError::Mvcc(MvccError::Compacted),
                    "future_rev" => KvError::Mvcc(MvccError::FutureRev),
                    "storage" => KvError::Mvcc(MvccError::Storage(d)),
                    "storage_corrupt" => KvError::Mvcc(MvccError::Corrupt(d)),
                    "invalid_argument" => KvError::InvalidArgument(d),
                    // The auth errors carry etcd's entry itself.
                    _ => match wire::from_stable(code) {
                        Some(w) => KvError::Auth(*w),
                        None => KvError::Internal(d),
                    },
                }
            }
        }
    };
}

error_table! {
    EmptyKey => etcd(wire::EMPTY_KEY);
    KeyNotFound => etcd(wire::KEY_NOT_FOUND);
    ValueProvided => etcd(wire::VALUE_PROVIDED);
    LeaseProvided => etcd(wire::LEASE_PROVIDED);
    TooManyOps => etcd(wire::TOO_MANY_OPS);
    DuplicateKey => etcd(wire::DUPLICATE_KEY);
    RequestTooLarge => etcd(wire::REQUEST_TOO_LARGE);
    TooManyRequests => etcd(wire::TOO_MANY_REQUESTS);
    InvalidSortOption => etcd(wire::INVALID_SORT_OPTION);
    NoSpace => etcd(wire::NO_SPACE);
    LeaseNotFound => etcd(wire::LEASE_NOT_FOUND);
    LeaseExists => etcd(wire::LEASE_EXIST);
    LeaseTtlTooLarge => etcd(wire::LEASE_TTL_TOO_LARGE);
    MemberNotFound => etcd(wire::MEMBER_NOT_FOUND);
    MemberBadUrls => etcd(wire::MEMBER_BAD_URLS);
    PeerUrlExists => etcd(wire::PEER_URL_EXIST);
    MemberNotLearner => etcd(wire::MEMBER_NOT_LEARNER);
    LearnerNotReady => etcd(wire::LEARNER_NOT_READY);
    BadLeaderTransferee => etcd(wire::BAD_LEADER_TRANSFEREE);
    NoLeader => etcd(wire::NO_LEADER);
    NotLeader => etcd(wire::NOT_LEADER);
    Stopped => etcd(wire::STOPPED);
    Timeout => etcd(wire::TIMEOUT);
    NotCapable => etcd(wire::NOT_CAPABLE);
    // etcd has no gRPC mapping for this one: clients get Unknown with
    // etcd's full text.
    LeaderTransferTimeout => own("leader_transfer_timeout", Code::Unknown);
}

impl KvError {
    /// A stable code for this error, for crossing members and for bindings.
    pub fn code(&self) -> &'static str {
        self.entry().code
    }

    /// The payload that crosses members with [`KvError::code`]: the
    /// variant's own text if it carries one, else its display text (which
    /// the receiver does not need: the code says it all).
    pub fn detail(&self) -> String {
        match self.entry().detail {
            Some(d) => d.to_string(),
            None => self.to_string(),
        }
    }

    /// The status text a client gets: etcd's exact text where etcd has the
    /// error; an invalid argument's own text; otherwise the display text.
    pub fn client_text(&self) -> String {
        let entry = self.entry();
        match (entry.etcd, self) {
            (Some(w), _) => w.message.to_string(),
            (None, KvError::InvalidArgument(m)) => m.clone(),
            (None, _) => self.to_string(),
        }
    }

    /// The gRPC status a client gets for this error.
    pub fn client_status(&self) -> tonic::Status {
        let entry = self.entry();
        match entry.etcd {
            Some(w) => w.status(),
            None => tonic::Status::new(entry.grpc, self.client_text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every payload variant, and a few payload-free ones.
    fn samples() -> Vec<KvError> {
        vec![
            KvError::NoLeader,
            KvError::LeaderTransferTimeout,
            KvError::LeaseExists,
            KvError::Mvcc(MvccError::Compacted),
            KvError::Mvcc(MvccError::FutureRev),
            KvError::Mvcc(MvccError::Storage("disk on fire".into())),
            KvError::Mvcc(MvccError::Corrupt("7".into())),
            KvError::InvalidArgument("lease id must be positive".into()),
            KvError::Internal("x".into()),
            KvError::Auth(wire::PERMISSION_DENIED),
        ]
    }

    #[test]
    fn codes_and_texts_round_trip_between_members() {
        for e in samples() {
            let back = KvError::from_code(e.code(), &e.detail());
            assert_eq!(back.code(), e.code(), "{e:?}");
            // What a follower's client sees is what the leader's client sees.
            assert_eq!(back.client_text(), e.client_text(), "{e:?}");
            assert_eq!(back.client_status().code(), e.client_status().code());
        }
    }

    #[test]
    fn no_double_prefix_on_a_rebuilt_error() {
        let e = KvError::InvalidArgument("lease id must be positive".into());
        let back = KvError::from_code(e.code(), &e.detail());
        assert_eq!(
            back.to_string(),
            "invalid argument: lease id must be positive"
        );
        assert_eq!(back.client_text(), "lease id must be positive");
        let e = KvError::Internal("boom".into());
        let back = KvError::from_code(e.code(), &e.detail());
        assert_eq!(back.to_string(), "internal: boom");
    }

    #[test]
    fn etcd_rows_use_etcd_stable_codes_and_texts() {
        let e = KvError::LeaseExists;
        assert_eq!(e.code(), "lease_exist");
        assert_eq!(e.client_text(), "etcdserver: lease already exists");
        let unknown = KvError::from_code("from_a_newer_member", "text");
        assert_eq!(unknown.client_text(), "internal: text");
    }
}
