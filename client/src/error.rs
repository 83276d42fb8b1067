//! The client's typed error, decoded from etcd's wire error table.
//!
//! etcd reports failures as a gRPC status whose code and exact message
//! identify the error ([`kv_proto::errors`]). [`Error`] turns the ones
//! callers branch on into variants, so `match` works instead of string
//! comparison; each variant has a [`stable_code`](Error::stable_code) for
//! language bindings.

use kv_proto::errors as wire;
use tonic::{Code, Status};

/// Result alias used throughout the client.
///
/// ```
/// fn f() -> kv_client::Result<i64> { Ok(1) }
/// assert_eq!(f().unwrap(), 1);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the client reports.
///
/// ```
/// use kv_client::Error;
/// let e = Error::Compacted { compact_revision: Some(7) };
/// assert_eq!(e.stable_code(), "compacted");
/// assert!(matches!(e, Error::Compacted { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The requested revision has been compacted away. `compact_revision`
    /// is the server's compaction point when it told us (watches do; a
    /// Range error does not).
    #[error("etcdserver: mvcc: required revision has been compacted{}", fmt_compact(*.compact_revision))]
    Compacted {
        /// The oldest revision still available, when known.
        compact_revision: Option<i64>,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// The lease does not exist (never granted, revoked or expired).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// The key does not exist (e.g. a put with `ignore_value` on a new key).
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// The cluster has no leader right now.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The member asked is not the leader and cannot serve the request.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// No server could be reached, or the server said it is unavailable.
    #[error("unavailable: {message}")]
    Unavailable {
        /// What the transport or the server said.
        message: String,
    },
    /// The request did not complete within its deadline. A write that
    /// timed out may or may not have been applied.
    #[error("request timed out")]
    Timeout,
    /// The authenticated user may not do this.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// Wrong user name or password (etcd's `Authenticate` answer).
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// The auth token is unknown to the server or has expired. The client
    /// re-authenticates and retries once by itself, so callers only see
    /// this when that did not help.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// The server rejected the request as malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request exceeds the server's `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The backend quota is exhausted (NOSPACE alarm).
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// A transaction names the same key twice in one branch.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A transaction has more operations than the server allows.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// The server canceled a watch for a reason other than compaction.
    #[error("watch canceled: {reason}")]
    WatchCanceled {
        /// The server's cancel reason (may be empty).
        reason: String,
    },
    /// Any other gRPC status.
    #[error("{code:?}: {message}")]
    Other {
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },
    /// A client-side transport failure that is not a server answer.
    #[error("transport error: {0}")]
    Transport(String),
    /// The client was configured wrongly (e.g. no or malformed endpoints).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

fn fmt_compact(rev: Option<i64>) -> String {
    rev.map(|r| format!(" (compact revision {r})"))
        .unwrap_or_default()
}

impl Error {
    /// A stable, lower-snake identifier for this error, the same across
    /// releases and language bindings. Variants that mirror an etcd wire
    /// error use that error's code from [`kv_proto::errors`]; [`Error::Other`]
    /// uses the wire table's code when the status is in it, else `"unknown"`.
    ///
    /// ```
    /// use kv_client::Error;
    /// assert_eq!(Error::NoLeader.stable_code(), "no_leader");
    /// assert_eq!(Error::Timeout.stable_code(), "timeout");
    /// assert_eq!(Error::FutureRevision.stable_code(), "future_rev");
    /// ```
    pub fn stable_code(&self) -> &'static str {
        match self {
            Error::Compacted { .. } => wire::COMPACTED.stable,
            Error::FutureRevision => wire::FUTURE_REV.stable,
            Error::LeaseNotFound => wire::LEASE_NOT_FOUND.stable,
            Error::KeyNotFound => wire::KEY_NOT_FOUND.stable,
            Error::NoLeader => wire::NO_LEADER.stable,
            Error::NotLeader => wire::NOT_LEADER.stable,
            Error::Unavailable { .. } => "unavailable",
            Error::Timeout => wire::TIMEOUT.stable,
            Error::PermissionDenied => wire::PERMISSION_DENIED.stable,
            Error::AuthFailed => wire::AUTH_FAILED.stable,
            Error::InvalidAuthToken => wire::INVALID_AUTH_TOKEN.stable,
            Error::InvalidArgument(_) => "invalid_argument",
            Error::RequestTooLarge => wire::REQUEST_TOO_LARGE.stable,
            Error::NoSpace => wire::NO_SPACE.stable,
            Error::DuplicateKey => wire::DUPLICATE_KEY.stable,
            Error::TooManyOps => wire::TOO_MANY_OPS.stable,
            Error::WatchCanceled { .. } => wire::WATCH_CANCELED.stable,
            Error::Other { code, message } => {
                wire::from_status(&Status::new(*code, message.clone()))
                    .map(|w| w.stable)
                    .unwrap_or("unknown")
            }
            Error::Transport(_) => "transport",
            Error::Config(_) => "config",
        }
    }

    /// Whether a server refused the request because of its auth token
    /// (expired, unknown, minted before an auth change, or missing), i.e.
    /// before applying it: a fresh token and one more attempt is safe even
    /// for writes. etcd's own client refreshes on the same answers.
    pub(crate) fn needs_new_token(&self) -> bool {
        [
            wire::INVALID_AUTH_TOKEN.stable,
            wire::AUTH_OLD_REVISION.stable,
            wire::USER_EMPTY.stable,
        ]
        .contains(&self.stable_code())
    }

    /// Decodes a gRPC status (from etcd, kvd or the local transport).
    ///
    /// ```
    /// use kv_client::Error;
    /// let st = kv_proto::errors::COMPACTED.status();
    /// assert_eq!(Error::from_status(&st), Error::Compacted { compact_revision: None });
    /// let st = tonic::Status::unavailable("tcp connect error");
    /// assert_eq!(Error::from_status(&st).stable_code(), "unavailable");
    /// ```
    pub fn from_status(status: &Status) -> Error {
        if let Some(w) = wire::from_status(status) {
            return from_wire(w, status);
        }
        let message = status.message().to_string();
        match status.code() {
            Code::Unavailable => Error::Unavailable { message },
            Code::DeadlineExceeded => Error::Timeout,
            // tonic reports its own deadline as Cancelled("Timeout expired").
            Code::Cancelled if has_source::<tonic::TimeoutExpired>(status) => Error::Timeout,
            Code::PermissionDenied => Error::PermissionDenied,
            Code::InvalidArgument => Error::InvalidArgument(message),
            // A status with a source was made locally from a transport error.
            code if std::error::Error::source(status).is_some() => {
                Error::Transport(format!("{code:?}: {}", describe_chain(status)))
            }
            code => Error::Other { code, message },
        }
    }
}

/// The typed error for a wire-table entry.
fn from_wire(w: &wire::WireError, status: &Status) -> Error {
    match w.stable {
        s if s == wire::COMPACTED.stable => Error::Compacted {
            compact_revision: None,
        },
        s if s == wire::FUTURE_REV.stable => Error::FutureRevision,
        s if s == wire::LEASE_NOT_FOUND.stable => Error::LeaseNotFound,
        s if s == wire::KEY_NOT_FOUND.stable => Error::KeyNotFound,
        s if s == wire::NO_LEADER.stable => Error::NoLeader,
        s if s == wire::NOT_LEADER.stable => Error::NotLeader,
        s if s == wire::PERMISSION_DENIED.stable => Error::PermissionDenied,
        s if s == wire::AUTH_FAILED.stable => Error::AuthFailed,
        s if s == wire::INVALID_AUTH_TOKEN.stable => Error::InvalidAuthToken,
        s if s == wire::REQUEST_TOO_LARGE.stable => Error::RequestTooLarge,
        s if s == wire::NO_SPACE.stable => Error::NoSpace,
        s if s == wire::DUPLICATE_KEY.stable => Error::DuplicateKey,
        s if s == wire::TOO_MANY_OPS.stable => Error::TooManyOps,
        s if s == wire::WATCH_CANCELED.stable => Error::WatchCanceled {
            reason: status.message().to_string(),
        },
        s if [
            wire::TIMEOUT.stable,
            wire::TIMEOUT_DUE_TO_LEADER_FAIL.stable,
            wire::TIMEOUT_DUE_TO_CONNECTION_LOST.stable,
            wire::TIMEOUT_WAIT_APPLIED_INDEX.stable,
            wire::DEADLINE_EXCEEDED.stable,
        ]
        .contains(&s) =>
        {
            Error::Timeout
        }
        s if [
            wire::EMPTY_KEY.stable,
            wire::VALUE_PROVIDED.stable,
            wire::LEASE_PROVIDED.stable,
            wire::INVALID_SORT_OPTION.stable,
        ]
        .contains(&s) =>
        {
            Error::InvalidArgument(status.message().to_string())
        }
        // Everything else in the table keeps its code and message; its
        // stable code comes from the table.
        _ => Error::Other {
            code: status.code(),
            message: status.message().to_string(),
        },
    }
}

/// Whether an error of type `T` is in the status's source chain.
pub(crate) fn has_source<T: std::error::Error + 'static>(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<T>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn describe_chain(status: &Status) -> String {
    let mut out = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Error::from_status(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_errors_decode_to_typed_variants() {
        let cases = [
            (wire::COMPACTED, "compacted"),
            (wire::FUTURE_REV, "future_rev"),
            (wire::LEASE_NOT_FOUND, "lease_not_found"),
            (wire::KEY_NOT_FOUND, "key_not_found"),
            (wire::NO_LEADER, "no_leader"),
            (wire::NOT_LEADER, "not_leader"),
            (wire::TIMEOUT, "timeout"),
            (wire::TIMEOUT_DUE_TO_LEADER_FAIL, "timeout"),
            (wire::PERMISSION_DENIED, "permission_denied"),
            (wire::REQUEST_TOO_LARGE, "request_too_large"),
            (wire::NO_SPACE, "no_space"),
            (wire::DUPLICATE_KEY, "duplicate_key"),
            (wire::TOO_MANY_OPS, "too_many_ops"),
            (wire::EMPTY_KEY, "invalid_argument"),
            (wire::AUTH_FAILED, "auth_failed"),
            (wire::INVALID_AUTH_TOKEN, "invalid_auth_token"),
            (wire::LEASE_EXIST, "lease_exist"),
            (wire::STOPPED, "stopped"),
        ];
        for (w, stable) in cases {
            let e = Error::from_status(&w.status());
            assert_eq!(e.stable_code(), stable, "{w:?} -> {e:?}");
        }
        assert_eq!(
            Error::from_status(&wire::AUTH_FAILED.status()).to_string(),
            wire::AUTH_FAILED.message
        );
        let refresh = |w: wire::WireError| Error::from_status(&w.status()).needs_new_token();
        assert!(refresh(wire::INVALID_AUTH_TOKEN));
        assert!(refresh(wire::AUTH_OLD_REVISION));
        assert!(!refresh(wire::AUTH_FAILED));
        assert!(matches!(
            Error::from_status(&wire::EMPTY_KEY.status()),
            Error::InvalidArgument(m) if m == wire::EMPTY_KEY.message
        ));
    }

    #[test]
    fn every_wire_error_has_a_stable_code() {
        for w in wire::ALL {
            let e = Error::from_status(&w.status());
            assert_ne!(e.stable_code(), "unknown", "{w:?} -> {e:?}");
        }
    }

    #[test]
    fn generic_statuses_decode_by_code() {
        let e = Error::from_status(&Status::unavailable("connection refused"));
        assert_eq!(
            e,
            Error::Unavailable {
                message: "connection refused".into()
            }
        );
        assert_eq!(
            Error::from_status(&Status::deadline_exceeded("x")),
            Error::Timeout
        );
        let e = Error::from_status(&Status::internal("boom"));
        assert_eq!(e.stable_code(), "unknown");
        assert!(matches!(
            e,
            Error::Other {
                code: Code::Internal,
                ..
            }
        ));
    }

    #[test]
    fn compacted_display_mentions_revision() {
        let e = Error::Compacted {
            compact_revision: Some(9),
        };
        assert!(e.to_string().ends_with("(compact revision 9)"), "{e}");
    }
}
