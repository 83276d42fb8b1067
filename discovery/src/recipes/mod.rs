//! Coordination recipes with the key layout of etcd's
//! `client/v3/experimental/recipes` package, so they interoperate with Go
//! programs using those recipes on the same keys:
//!
//! - [`Queue`]: FIFO, multi-producer multi-consumer; items are keys
//!   `<prefix>/<unix nanos>` (no lease).
//! - [`PriorityQueue`]: items are `<prefix>/<%05d priority>/<%016d seq>`,
//!   dequeued lowest priority number first, FIFO within a priority; a
//!   bookkeeping key `__<prefix>/<%05d priority>` fences the sequence.
//! - [`Barrier`]: one key `<name>`; held while it exists.
//! - [`DoubleBarrier`]: `<name>/waiters/<unix nanos>` per participant (on
//!   its session's lease) and `<name>/ready` once N are in.
//! - [`RwMutex`]: `<name>/read/<unix nanos>` and `<name>/write/<unix nanos>`
//!   on the session's lease; a reader waits for the last older writer, a
//!   writer for the last older key of either kind.
//! - [`Semaphore`]: n holders; our own layout (etcd has none), see its docs.
//!
//! Values and keys are bytes on the wire; Go's recipes use strings, so
//! interoperating programs should enqueue UTF-8.

mod barrier;
mod queue;
mod rwmutex;
mod semaphore;

use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kv_client::{
    Client, Compare, CompareOp, DeleteOptions, Event, EventType, PutOptions, Txn, TxnOp,
    WatchOptions,
};

pub use barrier::{Barrier, DoubleBarrier, Entered};
pub use queue::{Dequeued, PriorityQueue, Queue};
pub use rwmutex::{RwMutex, RwMutexGuard};
pub use semaphore::{Permit, Semaphore};

/// Result alias of the recipes.
pub type Result<T, E = RecipeError> = std::result::Result<T, E>;

/// A recipe failure. Texts of etcd's recipe errors are etcd's.
///
/// ```
/// use kv_discovery::recipes::RecipeError;
/// assert_eq!(RecipeError::KeyExists.to_string(), "key already exists");
/// assert_eq!(RecipeError::TooManyClients.to_string(), "too many clients");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecipeError {
    /// A request to the server failed.
    #[error(transparent)]
    Client(#[from] kv_client::Error),
    /// A toolkit operation failed.
    #[error(transparent)]
    Discovery(#[from] crate::Error),
    /// The key to create exists already (e.g. a barrier already held).
    #[error("key already exists")]
    KeyExists,
    /// A double barrier already has its N participants.
    #[error("too many clients")]
    TooManyClients,
    /// The session's lease (and so the recipe's key) was lost.
    #[error("session is expired")]
    SessionExpired,
    /// A semaphore or double barrier size of 0, or an empty name.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A key in the recipe's range that the layout cannot parse.
    #[error("malformed recipe key {0:?}")]
    MalformedKey(String),
}

/// Nanoseconds since the Unix epoch (Go's `time.Now().UnixNano()`), the
/// unique suffix of etcd's `newUniqueKV`.
fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Creates `key` only if it does not exist (etcd's `putNewKV`); returns the
/// revision of the creating write.
async fn put_new(client: &Client, key: &str, value: &[u8], lease: i64) -> Result<i64> {
    let txn = Txn::new()
        .when([Compare::version(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            value.to_vec(),
            PutOptions::new().with_lease(lease),
        )]);
    let resp = client.txn(txn).await?;
    if !resp.succeeded() {
        return Err(RecipeError::KeyExists);
    }
    Ok(resp.revision())
}

/// Creates a new key `<prefix>/<unix nanos>` (etcd's `newUniqueKV` and,
/// with a lease, `newUniqueEphemeralKV`); retries on a clash.
async fn put_unique(
    client: &Client,
    prefix: &str,
    value: &[u8],
    lease: i64,
) -> Result<(String, i64)> {
    loop {
        let key = format!("{prefix}/{}", unix_nanos());
        match put_new(client, &key, value, lease).await {
            Ok(rev) => return Ok((key, rev)),
            Err(RecipeError::KeyExists) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Deletes `key` if its mod revision is still `rev` (etcd's
/// `deleteRevKey`); the revision of the delete if this call deleted it.
async fn delete_rev_key(client: &Client, key: &[u8], rev: i64) -> Result<Option<i64>> {
    let txn = Txn::new()
        .when([Compare::mod_revision(key.to_vec(), CompareOp::Equal, rev)])
        .and_then([TxnOp::delete(key.to_vec(), DeleteOptions::new())]);
    let resp = client.txn(txn).await?;
    Ok(resp.succeeded().then(|| resp.revision()))
}

/// Waits for the first event of type `kind` on `key` (or under it with
/// `prefix`) at or after revision `from` (etcd's `WaitEvents` /
/// `WaitPrefixEvents`). `None` if the history from `from` was compacted:
/// the caller reads the current state again.
async fn wait_event(
    client: &Client,
    key: &str,
    prefix: bool,
    from: i64,
    kind: EventType,
) -> Result<Option<Event>> {
    let mut opts = WatchOptions::new().with_start_revision(from);
    if prefix {
        opts = opts.with_prefix();
    }
    let mut watch = client.watch(key, opts).await?;
    while let Some(batch) = watch.next().await {
        let batch = match batch {
            Ok(b) => b,
            Err(kv_client::Error::Compacted { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if let Some(ev) = batch.events().iter().find(|e| e.r#type() == kind) {
            return Ok(Some(ev.clone()));
        }
    }
    Err(kv_client::Error::Transport("watch ended while waiting for an event".into()).into())
}

/// Deletes `key` if it still has create revision `rev`, ignoring the
/// outcome (a key re-created by someone else is left alone).
async fn delete_if_created_at(client: &Client, key: &str, rev: i64) -> Result<()> {
    Ok(crate::util::delete_if_created_at(client, key, rev).await?)
}
