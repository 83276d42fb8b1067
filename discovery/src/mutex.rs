//! A distributed mutex with etcd's `concurrency.Mutex` semantics and keys.
//!
//! Each contender puts `<name>/<lease id in hex>` (empty value, on its
//! session's lease) if it does not exist yet; the contender whose key has
//! the lowest create revision holds the lock. A waiter waits for the
//! deletion of every key created before its own, then checks its key still
//! exists (its session may have expired meanwhile). So `kvctl lock` and
//! `etcdctl lock` on one name exclude each other.
//!
//! # Fencing
//!
//! Holding the guard does not make writes safe by itself: the session's
//! lease can expire (a long GC pause, a partition) while the holder still
//! runs, and another contender then gets the lock. Guard every write made
//! under the lock with [`LockGuard::is_owner`] (the lock key still has our
//! create revision), or store the [`fencing token`](LockGuard::fencing_token)
//! (it strictly increases from holder to holder) next to the data and
//! reject writes carrying an older one:
//!
//! ```no_run
//! # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
//! use kv_client::{Txn, TxnOp};
//! use kv_discovery::{Mutex, Session};
//!
//! let session = Session::with_ttl(&client, 10).await?;
//! let guard = Mutex::new(&session, "jobs/lock").lock().await?;
//! let txn = Txn::new()
//!     .when([guard.is_owner()])
//!     .and_then([TxnOp::put("jobs/state", format!("token={}", guard.fencing_token()), None)]);
//! if !client.txn(txn).await?.succeeded() {
//!     eprintln!("lost the lock before writing: nothing was written");
//! }
//! guard.unlock().await?;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use kv_client::{
    Client, Compare, CompareOp, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse,
};

use crate::session::Session;
use crate::util::{Cleanup, delete_if_created_at, lease_hex, spawn_best_effort, wait_deletes};
use crate::{Error, Result};

/// A named lock on a [`Session`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
/// let session = kv_discovery::Session::new(&client).await?;
/// let m = kv_discovery::Mutex::new(&session, "my-lock");
/// let guard = m.lock().await?;
/// println!("holding {} with token {}", guard.key(), guard.fencing_token());
/// guard.unlock().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Mutex {
    session: Session,
    /// `<name>/`.
    prefix: String,
}

/// The result of the acquiring transaction.
struct Acquire {
    key: String,
    /// Our key's create revision.
    rev: i64,
    /// Whether this call created the key (else it already existed: this
    /// session holds or waits for the lock elsewhere).
    created: bool,
    /// The key with the lowest create revision (the holder).
    owner: Option<KeyValue>,
    revision: i64,
}

impl Mutex {
    /// A mutex named `name` (keys live under `<name>/`, as in etcd).
    pub fn new(session: &Session, name: impl AsRef<str>) -> Mutex {
        Mutex {
            session: session.clone(),
            prefix: format!("{}/", name.as_ref()),
        }
    }

    /// This session's key for the lock: `<name>/<lease id in hex>`.
    ///
    /// ```no_run
    /// # fn f(m: kv_discovery::Mutex) { println!("{}", m.key()); }
    /// ```
    pub fn key(&self) -> String {
        format!("{}{}", self.prefix, lease_hex(self.session.lease_id()))
    }

    fn client(&self) -> &Client {
        self.session.client()
    }

    async fn try_acquire(&self) -> Result<Acquire> {
        let key = self.key();
        let lease = self.session.lease_id();
        let owner_opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(key.as_str(), "", PutOptions::new().with_lease(lease)),
                TxnOp::get(self.prefix.as_str(), owner_opts.clone()),
            ])
            .or_else([
                TxnOp::get(key.as_str(), None),
                TxnOp::get(self.prefix.as_str(), owner_opts),
            ]);
        let resp = self.client().txn(txn).await?;
        let revision = resp.revision();
        let ops = resp.op_responses();
        let created = resp.succeeded();
        let first_kv = |i: usize| match ops.get(i) {
            Some(TxnOpResponse::Get(g)) => g.kvs().first().cloned(),
            _ => None,
        };
        let rev = if created {
            revision
        } else {
            // The key vanished between compare and read cannot happen in
            // one txn; a missing answer means a broken server.
            first_kv(0)
                .map(|kv| kv.create_revision)
                .ok_or(Error::SessionExpired)?
        };
        Ok(Acquire {
            key,
            rev,
            created,
            owner: first_kv(1),
            revision,
        })
    }

    /// Acquires the lock, waiting as long as it takes. To give up, drop
    /// the future (e.g. with `tokio::time::timeout`, or [`lock_timeout`](Self::lock_timeout)):
    /// the waiter key is then deleted in the background. Fails with
    /// [`Error::SessionExpired`] if the session is lost while waiting.
    pub async fn lock(&self) -> Result<LockGuard> {
        let a = self.try_acquire().await?;
        let mut cleanup = Cleanup::new(self.client(), &a.key, a.rev, a.created);
        if a.owner.as_ref().is_none_or(|o| o.create_revision == a.rev) {
            cleanup.disarm();
            return Ok(self.guard(a.key, a.rev, a.revision));
        }
        tokio::select! {
            r = wait_deletes(self.client(), &self.prefix, a.rev - 1) => r?,
            _ = self.session.lost() => return Err(Error::SessionExpired),
        }
        // Our key may have gone with an expired session meanwhile.
        let resp = self.client().get(a.key.as_str(), None).await?;
        if resp.kvs().is_empty() {
            cleanup.disarm();
            return Err(Error::SessionExpired);
        }
        cleanup.disarm();
        Ok(self.guard(a.key, a.rev, resp.revision()))
    }

    /// [`lock`](Self::lock) with a time limit; on timeout fails with
    /// [`kv_client::Error::Timeout`] and withdraws from the queue.
    ///
    /// ```no_run
    /// # async fn demo(m: kv_discovery::Mutex) -> kv_discovery::Result<()> {
    /// let guard = m.lock_timeout(std::time::Duration::from_secs(5)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lock_timeout(&self, limit: Duration) -> Result<LockGuard> {
        match tokio::time::timeout(limit, self.lock()).await {
            Ok(r) => r,
            Err(_) => Err(kv_client::Error::Timeout.into()),
        }
    }

    /// Acquires the lock if nobody holds it; else fails with
    /// [`Error::Locked`] at once (withdrawing our key).
    ///
    /// ```no_run
    /// # async fn demo(m: kv_discovery::Mutex) -> kv_discovery::Result<()> {
    /// match m.try_lock().await {
    ///     Ok(guard) => guard.unlock().await?,
    ///     Err(kv_discovery::Error::Locked) => println!("busy"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn try_lock(&self) -> Result<LockGuard> {
        let a = self.try_acquire().await?;
        if a.owner.as_ref().is_none_or(|o| o.create_revision == a.rev) {
            return Ok(self.guard(a.key, a.rev, a.revision));
        }
        if a.created {
            delete_if_created_at(self.client(), &a.key, a.rev).await?;
        }
        Err(Error::Locked)
    }

    fn guard(&self, key: String, rev: i64, revision: i64) -> LockGuard {
        LockGuard {
            session: self.session.clone(),
            key,
            rev,
            revision,
            released: false,
        }
    }
}

/// A held lock. [`unlock`](LockGuard::unlock) releases it; dropping the
/// guard releases it in the background (best effort). The lock is also lost
/// when the session is ([`LockGuard::session_lost`]).
#[derive(Debug)]
pub struct LockGuard {
    session: Session,
    key: String,
    rev: i64,
    revision: i64,
    released: bool,
}

impl LockGuard {
    /// The lock key (`<name>/<lease id in hex>`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The fencing token: the create revision of the lock key. It strictly
    /// increases from one holder of the lock to the next.
    pub fn fencing_token(&self) -> i64 {
        self.rev
    }

    /// The store revision when the lock was acquired (etcd's
    /// `ETCD_LOCK_REV`).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The session the lock is held on.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// A compare that holds only while this guard still owns the lock
    /// (etcd's `Mutex.IsOwner`): put it in the `when` of every transaction
    /// that must happen under the lock.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client, g: kv_discovery::LockGuard) -> kv_client::Result<()> {
    /// use kv_client::{Txn, TxnOp};
    /// let ok = client
    ///     .txn(Txn::new().when([g.is_owner()]).and_then([TxnOp::put("k", "v", None)]))
    ///     .await?
    ///     .succeeded();
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_owner(&self) -> Compare {
        Compare::create_revision(self.key.as_str(), CompareOp::Equal, self.rev)
    }

    /// Resolves when the session (and so the lock) is lost.
    pub fn session_lost(
        &self,
    ) -> impl std::future::Future<Output = kv_client::LeaseLost> + Send + 'static {
        self.session.lost()
    }

    /// Releases the lock (deletes the key).
    pub async fn unlock(mut self) -> Result<()> {
        self.released = true;
        delete_if_created_at(self.session.client(), &self.key, self.rev).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            let (client, key, rev) = (self.session.client().clone(), self.key.clone(), self.rev);
            spawn_best_effort("unlock", async move {
                delete_if_created_at(&client, &key, rev).await
            });
        }
    }
}
