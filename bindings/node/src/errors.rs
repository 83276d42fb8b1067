//! Errors crossing into JS: `[CODE] message`, parsed by `lib/errors.js`.
//!
//! Codes are the upper-case stable codes of `kv_client::Error::stable_code`
//! plus the toolkit's own (see `lib/errors.d.ts` for the documented set).

use napi::Status;

/// An error with a stable `code` for the JS layer.
pub(crate) fn coded(code: &str, message: impl std::fmt::Display) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("[{code}] {message}"))
}

/// A client error with its stable code (`Compacted` keeps the compact
/// revision in its message, where the JS layer reads it back).
pub(crate) fn client(e: kv_client::Error) -> napi::Error {
    coded(&e.stable_code().to_ascii_uppercase(), &e)
}

/// A discovery-toolkit error with its stable code.
pub(crate) fn discovery(e: kv_discovery::Error) -> napi::Error {
    use kv_discovery::Error as D;
    let code = match &e {
        D::Client(c) => return client(c.clone()),
        D::Locked => "LOCKED",
        D::SessionExpired => "SESSION_EXPIRED",
        D::NotLeader => "ELECTION_NOT_LEADER",
        D::NoLeader => "ELECTION_NO_LEADER",
        D::InvalidName(_) | D::Encode(_) => "INVALID_ARGUMENT",
        D::LeaseLost(_) => "LEASE_LOST",
        D::Closed => "CLOSED",
        _ => "UNKNOWN",
    };
    coded(code, &e)
}

/// A bad argument from JS.
pub(crate) fn invalid(message: impl std::fmt::Display) -> napi::Error {
    coded("INVALID_ARGUMENT", message)
}

/// The operation was stopped by `close()` or `cancel()`.
pub(crate) fn closed() -> napi::Error {
    coded("CLOSED", "the client or handle was closed")
}

/// The operation was given up through its `AbortSignal`.
pub(crate) fn aborted() -> napi::Error {
    coded("ABORTED", "the operation was aborted")
}
