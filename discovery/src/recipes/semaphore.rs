//! A counting semaphore: at most n holders at once (as Consul's and
//! Curator's semaphores). etcd's recipes have none, so the layout is ours.
//!
//! # Key layout
//!
//! | what | key | value | lease |
//! | --- | --- | --- | --- |
//! | a contender (waiting or holding) | `<name>/<unix nanos>` | the limit n, decimal | the session's |
//!
//! Contenders are ranked by create revision. A contender holds a permit
//! while fewer than n keys older than its own exist; otherwise it waits
//! for a delete under `<name>/` and counts again. Since new keys are
//! always younger, a contender's rank only falls while its key exists, so
//! at most n keys can ever rank below n: never more than n holders. A
//! holder whose process dies loses its key with its session's lease and
//! frees the slot. All contenders must use the same n (it is stored in the
//! value so an operator can see it); a contender with a larger n sees
//! more slots than the others.
//!
//! Every waiter counts again after every delete under `<name>/`, so one
//! release costs one read per waiter: fine for tens of contenders, not
//! for thousands.

use kv_client::{Client, Compare, CompareOp, EventType, GetOptions};

use super::{RecipeError, Result, delete_if_created_at, put_unique, wait_event};
use crate::session::Session;
use crate::util::{Cleanup, spawn_best_effort};

/// A semaphore with `limit` permits on a [`Session`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::recipes::Result<()> {
/// use kv_discovery::{Session, recipes::Semaphore};
/// let session = Session::with_ttl(&client, 10).await?;
/// let sem = Semaphore::new(&session, "downloads", 3)?;
/// let permit = sem.acquire().await?; // at most 3 processes get here at once
/// permit.release().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Semaphore {
    session: Session,
    /// `<name>/`.
    prefix: String,
    limit: u32,
}

impl Semaphore {
    /// A semaphore named `name` with `limit` (at least 1) permits.
    pub fn new(session: &Session, name: impl AsRef<str>, limit: u32) -> Result<Semaphore> {
        if limit == 0 {
            return Err(RecipeError::Invalid("semaphore limit 0".into()));
        }
        Ok(Semaphore {
            session: session.clone(),
            prefix: format!("{}/", name.as_ref()),
            limit,
        })
    }

    fn client(&self) -> &Client {
        self.session.client()
    }

    /// The number of contenders created before revision `rev` that still
    /// hold or wait (capped at the limit), and the revision of the read.
    async fn older(&self, rev: i64) -> Result<(i64, i64)> {
        // Not count_only: etcd counts before applying the revision
        // filters, so read the keys, at most `limit` of them.
        let opts = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_max_create_revision(rev - 1)
            .with_limit(i64::from(self.limit));
        let resp = self.client().get(self.prefix.as_str(), opts).await?;
        let n = i64::try_from(resp.kvs().len()).unwrap_or(i64::MAX);
        Ok((n, resp.revision()))
    }

    /// Takes a permit, waiting while `limit` older contenders hold or wait.
    /// Dropping the future withdraws; fails with
    /// [`RecipeError::SessionExpired`] if the session ends meanwhile.
    pub async fn acquire(&self) -> Result<Permit> {
        let lease = self.session.lease_id();
        let base = self.prefix.trim_end_matches('/');
        let value = self.limit.to_string();
        let (key, rev) = put_unique(self.client(), base, value.as_bytes(), lease).await?;
        let mut cleanup = Cleanup::new(self.client(), &key, rev, true);
        let lost = self.session.lost();
        tokio::pin!(lost);
        loop {
            let (count, read_at) = self.older(rev).await?;
            if count < i64::from(self.limit) {
                break;
            }
            // Any delete may move us up; count again after each.
            tokio::select! {
                r = wait_event(self.client(), &self.prefix, true, read_at + 1, EventType::Delete) => { r?; }
                _ = &mut lost => return Err(RecipeError::SessionExpired),
            }
        }
        let held =
            HeldKey::confirm(self.client(), &mut cleanup, key, rev, "semaphore release").await?;
        Ok(Permit { held })
    }

    /// Takes a permit if one is free now; else `Ok(None)` (withdrawing).
    pub async fn try_acquire(&self) -> Result<Option<Permit>> {
        let lease = self.session.lease_id();
        let base = self.prefix.trim_end_matches('/');
        let value = self.limit.to_string();
        let (key, rev) = put_unique(self.client(), base, value.as_bytes(), lease).await?;
        let (count, _) = self.older(rev).await?;
        if count >= i64::from(self.limit) {
            delete_if_created_at(self.client(), &key, rev).await?;
            return Ok(None);
        }
        Ok(Some(Permit {
            held: HeldKey::new(self.client(), key, rev, "semaphore release"),
        }))
    }
}

/// A held permit. [`release`](Permit::release) frees it; dropping it frees
/// it in the background (best effort); it is also freed when the session's
/// lease ends.
#[derive(Debug)]
pub struct Permit {
    held: HeldKey,
}

impl Permit {
    /// The permit's key (`<name>/<unix nanos>`).
    pub fn key(&self) -> &str {
        self.held.key()
    }

    /// A compare that holds only while this permit's key still exists:
    /// guard writes made under the permit with it.
    pub fn is_holder(&self) -> Compare {
        self.held.is_current()
    }

    /// Frees the permit (deletes the key).
    pub async fn release(self) -> Result<()> {
        self.held.release().await
    }
}

/// A key held by a permit or an [`RwMutexGuard`](super::RwMutexGuard):
/// deleted by [`release`](HeldKey::release), or in the background when
/// dropped unreleased.
#[derive(Debug)]
pub(super) struct HeldKey {
    client: Client,
    key: String,
    rev: i64,
    released: bool,
    /// Names the background delete in logs.
    what: &'static str,
}

impl HeldKey {
    pub(super) fn new(client: &Client, key: String, rev: i64, what: &'static str) -> HeldKey {
        HeldKey {
            client: client.clone(),
            key,
            rev,
            released: false,
            what,
        }
    }

    /// After a wait for `key`'s turn: the key as held, or `SessionExpired`
    /// when it went with an expired session meanwhile. `cleanup` (armed
    /// for the wait) is disarmed either way.
    pub(super) async fn confirm(
        client: &Client,
        cleanup: &mut Cleanup,
        key: String,
        rev: i64,
        what: &'static str,
    ) -> Result<HeldKey> {
        let gone = client.get(key.as_str(), None).await?.kvs().is_empty();
        cleanup.disarm();
        if gone {
            return Err(RecipeError::SessionExpired);
        }
        Ok(HeldKey::new(client, key, rev, what))
    }

    pub(super) fn key(&self) -> &str {
        &self.key
    }

    /// Holds only while the key still exists with the create revision it
    /// was taken at.
    pub(super) fn is_current(&self) -> Compare {
        Compare::create_revision(self.key.as_str(), CompareOp::Equal, self.rev)
    }

    pub(super) async fn release(mut self) -> Result<()> {
        self.released = true;
        delete_if_created_at(&self.client, &self.key, self.rev).await
    }
}

impl Drop for HeldKey {
    fn drop(&mut self) {
        if !self.released {
            let (client, key, rev) = (self.client.clone(), self.key.clone(), self.rev);
            spawn_best_effort(self.what, async move {
                crate::util::delete_if_created_at(&client, &key, rev).await
            });
        }
    }
}
