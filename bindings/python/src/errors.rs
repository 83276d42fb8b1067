//! One exception tree rooted at `KvError`. Every exception carries
//! `code` (the client's stable code, e.g. `"compacted"`) and `message`
//! (etcd's text); `CompactedError` also `compact_revision`.
//!
//! The classes are plain Python exception types (abi3 cannot subclass
//! `Exception` from Rust before 3.12); the fields live in `args`
//! (`(message, code, compact_revision)`), so an error can be made without
//! the GIL, on a runtime thread, and is read through properties added at
//! import.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;

create_exception!(
    kvclient,
    KvError,
    PyException,
    "Root of every kvclient error.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.KvError as e:\n...     print(e.code, e.message)"
);
create_exception!(
    kvclient,
    ConnectionFailedError,
    KvError,
    "No server could be reached, or the cluster has no leader (codes `unavailable`, `transport`, `no_leader`, `not_leader`).\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.ConnectionFailedError:\n...     retry_later()"
);
create_exception!(
    kvclient,
    DeadlineExceededError,
    KvError,
    "The request did not finish within its timeout; a write may or may not have been applied.\n\n>>> kvclient.Client([\"127.0.0.1:2379\"], timeout=2.0)"
);
create_exception!(
    kvclient,
    CompactedError,
    KvError,
    "The revision asked for was compacted; `compact_revision` is the oldest one left, when known.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.CompactedError as e:\n...     resync(e.compact_revision)"
);
create_exception!(
    kvclient,
    FutureRevisionError,
    KvError,
    "The revision asked for is newer than the store's.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.FutureRevisionError:\n...     ..."
);
create_exception!(
    kvclient,
    LeaseNotFoundError,
    KvError,
    "The lease does not exist (never granted, revoked or expired).\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.LeaseNotFoundError:\n...     lease = c.lease(10)"
);
create_exception!(
    kvclient,
    KeyNotFoundError,
    KvError,
    "The key does not exist.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.KeyNotFoundError:\n...     ..."
);
create_exception!(
    kvclient,
    PermissionDeniedError,
    KvError,
    "The authenticated user may not do this.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.PermissionDeniedError as e:\n...     print(e.message)"
);
create_exception!(
    kvclient,
    AuthFailedError,
    KvError,
    "Wrong user name or password, or an auth token the server refused.\n\n>>> kvclient.Client(endpoints, user=\"app\", password=\"wrong\")  # raises AuthFailedError"
);
create_exception!(
    kvclient,
    InvalidArgumentError,
    KvError,
    "The request or the client configuration is malformed or too large.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.InvalidArgumentError as e:\n...     print(e.message)"
);
create_exception!(
    kvclient,
    NoSpaceError,
    KvError,
    "The server's storage quota is exhausted.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.NoSpaceError:\n...     c.compact(c.status().revision)"
);
create_exception!(
    kvclient,
    WatchCanceledError,
    KvError,
    "The server canceled a watch for a reason other than compaction.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.WatchCanceledError:\n...     w = c.watch_prefix(\"config/\")"
);
create_exception!(
    kvclient,
    LockedError,
    KvError,
    "`try_lock`/`acquire(timeout=0)` found the lock held by another session.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.LockedError:\n...     ..."
);
create_exception!(
    kvclient,
    SessionExpiredError,
    KvError,
    "The lease behind a lock, election or registration was lost.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.SessionExpiredError:\n...     start_over()"
);
create_exception!(
    kvclient,
    NotLeaderError,
    KvError,
    "This candidate is no longer the election's leader.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.NotLeaderError:\n...     step_down()"
);
create_exception!(
    kvclient,
    NoLeaderError,
    KvError,
    "Nobody is campaigning in the election.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.NoLeaderError:\n...     ..."
);
create_exception!(
    kvclient,
    ClosedError,
    KvError,
    "The object (watch, registration, ...) was closed.\n\n>>> try:\n...     c.get(\"k\")\n... except kvclient.ClosedError:\n...     ..."
);

/// A lazily built exception of class `T` (no GIL needed).
fn err<T: pyo3::PyTypeInfo>(message: String, code: &str, compact: Option<i64>) -> PyErr {
    PyErr::new::<T, _>((message, code.to_string(), compact))
}

/// The exception for a client error.
pub(crate) fn client_err(e: kv_client::Error) -> PyErr {
    use kv_client::Error as E;
    let code = e.stable_code();
    let msg = e.to_string();
    match e {
        E::Compacted { compact_revision } => err::<CompactedError>(msg, code, compact_revision),
        E::FutureRevision => err::<FutureRevisionError>(msg, code, None),
        E::LeaseNotFound => err::<LeaseNotFoundError>(msg, code, None),
        E::KeyNotFound => err::<KeyNotFoundError>(msg, code, None),
        E::NoLeader | E::NotLeader | E::Unavailable { .. } | E::Transport(_) => {
            err::<ConnectionFailedError>(msg, code, None)
        }
        E::Timeout => err::<DeadlineExceededError>(msg, code, None),
        E::PermissionDenied => err::<PermissionDeniedError>(msg, code, None),
        E::AuthFailed | E::InvalidAuthToken => err::<AuthFailedError>(msg, code, None),
        E::InvalidArgument(_)
        | E::RequestTooLarge
        | E::DuplicateKey
        | E::TooManyOps
        | E::Config(_) => err::<InvalidArgumentError>(msg, code, None),
        E::NoSpace => err::<NoSpaceError>(msg, code, None),
        E::WatchCanceled { .. } => err::<WatchCanceledError>(msg, code, None),
        _ => err::<KvError>(msg, code, None),
    }
}

/// The exception for a discovery error.
pub(crate) fn discovery_err(e: kv_discovery::Error) -> PyErr {
    use kv_discovery::Error as E;
    let msg = e.to_string();
    match e {
        E::Client(c) => client_err(c),
        E::Locked => err::<LockedError>(msg, "locked", None),
        E::SessionExpired | E::LeaseLost(_) => {
            err::<SessionExpiredError>(msg, "session_expired", None)
        }
        E::NotLeader => err::<NotLeaderError>(msg, "election_not_leader", None),
        E::NoLeader => err::<NoLeaderError>(msg, "election_no_leader", None),
        E::InvalidName(_) | E::Encode(_) => {
            err::<InvalidArgumentError>(msg, "invalid_argument", None)
        }
        E::Closed => err::<ClosedError>(msg, "closed", None),
        _ => err::<KvError>(msg, "unknown", None),
    }
}

/// A closed-object error.
pub(crate) fn closed(what: &str) -> PyErr {
    err::<ClosedError>(format!("the {what} is closed"), "closed", None)
}

/// An invalid-argument error raised by the binding itself.
pub(crate) fn invalid(message: impl Into<String>) -> PyErr {
    err::<InvalidArgumentError>(message.into(), "invalid_argument", None)
}

/// Why `args` holds the fields: see the module doc.
const ACCESSORS: &std::ffi::CStr = c"
KvError.message = property(lambda self: self.args[0] if self.args else '', doc='The error text (etcd\\'s, for server errors).')
KvError.code = property(lambda self: self.args[1] if len(self.args) > 1 else 'unknown', doc='A stable, lower-snake identifier, e.g. \"compacted\".')
KvError.__str__ = lambda self: str(self.args[0]) if self.args else ''
CompactedError.compact_revision = property(lambda self: self.args[2] if len(self.args) > 2 else None, doc='The oldest revision still available, when known.')
";

/// Adds the exception classes and their accessors to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    macro_rules! add {
        ($($t:ident),*) => {{
            let globals = PyDict::new(py);
            $(
                m.add(stringify!($t), py.get_type::<$t>())?;
                globals.set_item(stringify!($t), py.get_type::<$t>())?;
            )*
            globals
        }};
    }
    let globals = add!(
        KvError,
        ConnectionFailedError,
        DeadlineExceededError,
        CompactedError,
        FutureRevisionError,
        LeaseNotFoundError,
        KeyNotFoundError,
        PermissionDeniedError,
        AuthFailedError,
        InvalidArgumentError,
        NoSpaceError,
        WatchCanceledError,
        LockedError,
        SessionExpiredError,
        NotLeaderError,
        NoLeaderError,
        ClosedError
    );
    py.run(ACCESSORS, Some(&globals), None)?;
    Ok(())
}
