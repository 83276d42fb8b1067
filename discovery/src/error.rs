//! The toolkit's typed error.

use kv_client::LeaseLost;

/// Result alias of this crate.
///
/// ```
/// fn f() -> kv_discovery::Result<u8> { Ok(1) }
/// assert_eq!(f().unwrap(), 1);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure of the toolkit. Texts of the lock and election errors are
/// etcd's (`concurrency` package).
///
/// ```
/// use kv_discovery::Error;
/// assert_eq!(Error::Locked.to_string(), "mutex: Locked by another session");
/// assert_eq!(Error::NoLeader.to_string(), "election: no leader");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request to the server failed.
    #[error(transparent)]
    Client(#[from] kv_client::Error),
    /// `try_lock` found the lock held by another session.
    #[error("mutex: Locked by another session")]
    Locked,
    /// The session's lease (and so its keys) was lost while waiting.
    #[error("mutex: session is expired")]
    SessionExpired,
    /// The caller is no longer the leader (its key was deleted or replaced).
    #[error("election: not leader")]
    NotLeader,
    /// No candidate is campaigning.
    #[error("election: no leader")]
    NoLeader,
    /// A service name, instance ID or namespace that cannot be a key part.
    #[error("invalid name {0:?}: must be non-empty and contain no '/'")]
    InvalidName(String),
    /// An instance could not be encoded as JSON.
    #[error("cannot encode service instance: {0}")]
    Encode(String),
    /// The lease behind a session was lost.
    #[error("lease lost: {0}")]
    LeaseLost(LeaseLost),
    /// The registration's background task has stopped.
    #[error("the registration is closed")]
    Closed,
    /// No TTL check of that name in the registration.
    #[error("no TTL check named {0:?}")]
    UnknownCheck(String),
    /// Two checks of one registration share a name, or a name is empty.
    #[error("invalid check name {0:?}: must be non-empty and unique")]
    InvalidCheck(String),
}
