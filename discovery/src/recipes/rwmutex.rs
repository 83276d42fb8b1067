//! A readers-writer lock (etcd's `recipe.RWMutex`).

use kv_client::{Client, Compare, EventType, GetOptions, SortOrder, SortTarget};

use super::semaphore::HeldKey;
use super::{RecipeError, Result, put_unique, wait_event};
use crate::session::Session;
use crate::util::Cleanup;

/// A readers-writer lock on a [`Session`]: any number of readers, or one
/// writer. Same keys as Go's `recipe.NewRWMutex(session, name)`: a reader
/// puts `<name>/read/<unix nanos>`, a writer `<name>/write/<unix nanos>`,
/// both on the session's lease. A reader waits until no writer key older
/// than its own remains; a writer until no key of either kind older than
/// its own remains (each waits on the newest such key, then looks again).
/// Waiters are served in arrival order, so writers do not starve.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::recipes::Result<()> {
/// use kv_discovery::{Session, recipes::RwMutex};
/// let session = Session::with_ttl(&client, 10).await?;
/// let lock = RwMutex::new(&session, "config");
/// let r = lock.read().await?; // shared with other readers
/// r.unlock().await?;
/// let w = lock.write().await?; // alone
/// w.unlock().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RwMutex {
    session: Session,
    /// `<name>/`.
    prefix: String,
}

impl RwMutex {
    /// A lock named `name` (keys under `<name>/`).
    pub fn new(session: &Session, name: impl AsRef<str>) -> RwMutex {
        RwMutex {
            session: session.clone(),
            prefix: format!("{}/", name.as_ref()),
        }
    }

    fn client(&self) -> &Client {
        self.session.client()
    }

    /// Takes the lock shared, waiting for older writers. Dropping the
    /// future withdraws the request; fails with
    /// [`RecipeError::SessionExpired`] if the session ends meanwhile.
    pub async fn read(&self) -> Result<RwMutexGuard> {
        let blockers = format!("{}write/", self.prefix);
        self.acquire("read", &blockers).await
    }

    /// Takes the lock exclusive, waiting for every older reader and writer.
    pub async fn write(&self) -> Result<RwMutexGuard> {
        let blockers = self.prefix.clone();
        self.acquire("write", &blockers).await
    }

    async fn acquire(&self, kind: &str, blockers: &str) -> Result<RwMutexGuard> {
        let lease = self.session.lease_id();
        let own = format!("{}{kind}", self.prefix);
        let (key, rev) = put_unique(self.client(), &own, b"", lease).await?;
        let mut cleanup = Cleanup::new(self.client(), &key, rev, true);
        let lost = self.session.lost();
        tokio::pin!(lost);
        loop {
            // The newest blocking key older than ours.
            let opts = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Mod, SortOrder::Descend)
                .with_max_mod_revision(rev - 1)
                .with_limit(1);
            let resp = self.client().get(blockers, opts).await?;
            let Some(last) = resp.kvs().first() else {
                break;
            };
            let last = String::from_utf8_lossy(&last.key).into_owned();
            tokio::select! {
                r = wait_event(self.client(), &last, false, rev, EventType::Delete) => { r?; }
                _ = &mut lost => return Err(RecipeError::SessionExpired),
            }
        }
        let held =
            HeldKey::confirm(self.client(), &mut cleanup, key, rev, "rwmutex unlock").await?;
        Ok(RwMutexGuard { held })
    }
}

/// A held read or write lock. [`unlock`](RwMutexGuard::unlock) releases
/// it; dropping the guard releases it in the background (best effort).
#[derive(Debug)]
pub struct RwMutexGuard {
    held: HeldKey,
}

impl RwMutexGuard {
    /// The lock key (`<name>/read/...` or `<name>/write/...`).
    pub fn key(&self) -> &str {
        self.held.key()
    }

    /// A compare that holds only while this guard's key still exists
    /// (its session did not end): put it in the `when` of writes made
    /// under the lock.
    pub fn is_owner(&self) -> Compare {
        self.held.is_current()
    }

    /// Releases the lock (deletes the key).
    pub async fn unlock(self) -> Result<()> {
        self.held.release().await
    }
}
