//! A session: one lease kept alive in the background (etcd's
//! `concurrency.Session`). Locks and elections attach their keys to it, so
//! they vanish when the session's process dies or loses the cluster for
//! longer than the TTL.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kv_client::{Client, LeaseKeeper, LeaseLost};

use crate::Result;

/// The default TTL of a session, in seconds (etcd's default too).
pub const DEFAULT_SESSION_TTL: i64 = 60;

/// A lease kept alive by the client's [`LeaseKeeper`]. Cheap to clone;
/// when the last clone is dropped without [`close`](Session::close), the
/// lease is revoked in the background (best effort; otherwise it expires
/// after its TTL).
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
/// use kv_discovery::Session;
/// let session = Session::with_ttl(&client, 10).await?;
/// println!("lease {:x}", session.lease_id());
/// tokio::select! {
///     reason = session.lost() => eprintln!("session lost: {reason}"),
///     _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
/// }
/// session.close().await?; // revokes the lease: its keys are deleted now
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    ttl: i64,
    keeper: LeaseKeeper,
    closed: AtomicBool,
}

impl Session {
    /// A session with the default TTL ([`DEFAULT_SESSION_TTL`]).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
    /// let session = kv_discovery::Session::new(&client).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn new(client: &Client) -> Result<Session> {
        Self::with_ttl(client, DEFAULT_SESSION_TTL).await
    }

    /// A session on a new lease of `ttl` seconds.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
    /// let session = kv_discovery::Session::with_ttl(&client, 5).await?;
    /// assert!(session.ttl() > 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn with_ttl(client: &Client, ttl: i64) -> Result<Session> {
        let lease = client.lease_grant(ttl).await?;
        let keeper = match client.lease_keeper(lease.id()).await {
            Ok(k) => k,
            Err(e) => {
                let _ = client.lease_revoke(lease.id()).await;
                return Err(e.into());
            }
        };
        Ok(Session {
            inner: Arc::new(Inner {
                client: client.clone(),
                ttl: lease.ttl(),
                keeper,
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The lease ID.
    ///
    /// ```no_run
    /// # fn f(s: kv_discovery::Session) { println!("{:x}", s.lease_id()); }
    /// ```
    pub fn lease_id(&self) -> i64 {
        self.inner.keeper.id()
    }

    /// The TTL the lease was granted with, in seconds.
    ///
    /// ```no_run
    /// # fn f(s: kv_discovery::Session) { println!("{}s", s.ttl()); }
    /// ```
    pub fn ttl(&self) -> i64 {
        self.inner.ttl
    }

    /// The client the session uses.
    ///
    /// ```no_run
    /// # fn f(s: kv_discovery::Session) { let _c = s.client().clone(); }
    /// ```
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Resolves when the lease is lost (revoked, expired, or not renewed
    /// within its TTL): anything fenced by it must stop. Independent of
    /// `self` (can be moved into another task).
    ///
    /// ```no_run
    /// # async fn demo(s: kv_discovery::Session) {
    /// let reason = s.lost().await;
    /// eprintln!("lost: {reason}");
    /// # }
    /// ```
    pub fn lost(&self) -> impl Future<Output = LeaseLost> + Send + 'static + use<> {
        self.inner.keeper.lost()
    }

    /// Why the lease was lost, if it was.
    ///
    /// ```no_run
    /// # fn f(s: kv_discovery::Session) { assert!(s.lost_reason().is_none()); }
    /// ```
    pub fn lost_reason(&self) -> Option<LeaseLost> {
        self.inner.keeper.lost_reason()
    }

    /// Revokes the lease now (deleting every key attached to it) and stops
    /// renewing it. Other clones of this session are closed too.
    ///
    /// ```no_run
    /// # async fn demo(s: kv_discovery::Session) -> kv_discovery::Result<()> {
    /// s.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(self) -> Result<()> {
        self.inner.closed.store(true, Ordering::SeqCst);
        match self.inner.client.lease_revoke(self.lease_id()).await {
            Ok(_) | Err(kv_client::Error::LeaseNotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let client = self.client.clone();
        let id = self.keeper.id();
        crate::util::spawn_best_effort("session lease revoke", async move {
            client.lease_revoke(id).await?;
            Ok(())
        });
    }
}
