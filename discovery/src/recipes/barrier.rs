//! Barriers (etcd's `recipe.Barrier` and `recipe.DoubleBarrier`).

use kv_client::{
    Client, EventType, GetOptions, KeyValue, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};

use super::{RecipeError, Result, put_new, put_unique, wait_event};
use crate::session::Session;

/// A barrier on one key: processes calling [`wait`](Barrier::wait) block
/// while the key exists; [`release`](Barrier::release) deletes it and
/// lets them all through. Same key as Go's `recipe.NewBarrier(client, key)`.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::recipes::Result<()> {
/// use kv_discovery::recipes::Barrier;
/// let b = Barrier::new(&client, "deploy/gate");
/// b.hold().await?;
/// let waiter = { let b = b.clone(); tokio::spawn(async move { b.wait().await }) };
/// b.release().await?;
/// waiter.await.unwrap()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Barrier {
    client: Client,
    key: String,
}

impl Barrier {
    /// A barrier on `key`.
    pub fn new(client: &Client, key: impl Into<String>) -> Barrier {
        Barrier {
            client: client.clone(),
            key: key.into(),
        }
    }

    /// Creates the barrier key (no lease: it outlives this process);
    /// fails with [`RecipeError::KeyExists`] if it is held already.
    pub async fn hold(&self) -> Result<()> {
        put_new(&self.client, &self.key, b"", 0).await.map(|_| ())
    }

    /// Deletes the barrier key, releasing every waiter.
    pub async fn release(&self) -> Result<()> {
        self.client.delete(self.key.as_str(), None).await?;
        Ok(())
    }

    /// Waits until the barrier key is deleted; returns at once if it does
    /// not exist.
    pub async fn wait(&self) -> Result<()> {
        loop {
            let resp = self.client.get(self.key.as_str(), None).await?;
            if resp.kvs().is_empty() {
                return Ok(());
            }
            let from = resp.revision() + 1;
            if wait_event(&self.client, &self.key, false, from, EventType::Delete)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
    }
}

/// A double barrier for `count` participants: [`enter`](DoubleBarrier::enter)
/// returns once `count` have entered, [`Entered::leave`] once all of them
/// have left. Same keys as Go's `recipe.NewDoubleBarrier(session, name, count)`:
/// `<name>/waiters/<unix nanos>` per participant, on its session's lease
/// (a participant that dies leaves by itself when its lease ends), and
/// `<name>/ready`, written by the `count`-th to enter.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::recipes::Result<()> {
/// use kv_discovery::{Session, recipes::DoubleBarrier};
/// let session = Session::with_ttl(&client, 10).await?;
/// let inside = DoubleBarrier::new(&session, "batch/7", 3)?.enter().await?;
/// // ... the three participants work together ...
/// inside.leave().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct DoubleBarrier {
    session: Session,
    name: String,
    count: usize,
}

/// A participant inside a [`DoubleBarrier`]. Dropping it without
/// [`leave`](Entered::leave) keeps its key until the session ends, so the
/// others wait for that.
#[derive(Debug)]
#[must_use = "the others cannot leave until this participant leaves"]
pub struct Entered {
    barrier: DoubleBarrier,
    key: String,
}

impl DoubleBarrier {
    /// A barrier named `name` for `count` (at least 1) participants.
    pub fn new(session: &Session, name: impl Into<String>, count: usize) -> Result<DoubleBarrier> {
        if count == 0 {
            return Err(RecipeError::Invalid("double barrier count 0".into()));
        }
        Ok(DoubleBarrier {
            session: session.clone(),
            name: name.into(),
            count,
        })
    }

    fn client(&self) -> &Client {
        self.session.client()
    }

    /// The `count` oldest participants' keys, oldest first (bounded: we
    /// only ever look at the `count`-th).
    async fn waiters(&self) -> Result<kv_client::GetResponse> {
        let opts = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(i64::try_from(self.count).unwrap_or(i64::MAX));
        Ok(self
            .client()
            .get(format!("{}/waiters/", self.name), opts)
            .await?)
    }

    /// In one read: the two participant keys with the lowest mod revision
    /// and the one with the highest (bounded however many there are).
    async fn extremes(&self) -> Result<(Vec<KeyValue>, Option<KeyValue>)> {
        let prefix = format!("{}/waiters/", self.name);
        let by_mod = |order, limit| {
            GetOptions::new()
                .with_prefix()
                .with_keys_only()
                .with_sort(SortTarget::Mod, order)
                .with_limit(limit)
        };
        let txn = Txn::new().and_then([
            TxnOp::get(prefix.as_str(), by_mod(SortOrder::Ascend, 2)),
            TxnOp::get(prefix.as_str(), by_mod(SortOrder::Descend, 1)),
        ]);
        let mut ops = self.client().txn(txn).await?.op_responses().into_iter();
        let kvs = |ops: &mut std::vec::IntoIter<TxnOpResponse>| match ops.next() {
            Some(TxnOpResponse::Get(mut g)) => g.take_kvs(),
            _ => Vec::new(),
        };
        let lowest = kvs(&mut ops);
        let highest = kvs(&mut ops).into_iter().next();
        Ok((lowest, highest))
    }

    /// Enters, waiting until `count` participants are in. Fails with
    /// [`RecipeError::TooManyClients`] if `count` are in already, and with
    /// [`RecipeError::SessionExpired`] if the session ends while waiting.
    pub async fn enter(&self) -> Result<Entered> {
        if self.waiters().await?.kvs().len() >= self.count {
            return Err(RecipeError::TooManyClients);
        }
        let lease = self.session.lease_id();
        let prefix = format!("{}/waiters", self.name);
        let (key, rev) = put_unique(self.client(), &prefix, b"", lease).await?;
        let entered = Entered {
            barrier: self.clone(),
            key,
        };
        let resp = self.waiters().await?;
        if let Some(last) = resp.kvs().get(self.count - 1) {
            if rev > last.create_revision {
                // Too late: withdraw now rather than when the lease ends.
                let _ = self.client().delete(entered.key.as_str(), None).await;
                return Err(RecipeError::TooManyClients);
            }
            if rev == last.create_revision {
                self.client()
                    .put(format!("{}/ready", self.name), "", None)
                    .await?;
                return Ok(entered);
            }
        }
        let ready = format!("{}/ready", self.name);
        let mut from = rev;
        let lost = self.session.lost();
        tokio::pin!(lost);
        loop {
            tokio::select! {
                r = wait_event(self.client(), &ready, false, from, EventType::Put) => {
                    if r?.is_some() {
                        return Ok(entered);
                    }
                }
                _ = &mut lost => return Err(RecipeError::SessionExpired),
            }
            // History compacted: was it written after we entered?
            let r = self.client().get(ready.as_str(), None).await?;
            if r.kvs().first().is_some_and(|kv| kv.mod_revision >= rev) {
                return Ok(entered);
            }
            from = r.revision() + 1;
        }
    }
}

impl Entered {
    /// This participant's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Leaves, waiting until every participant has left (etcd's scheme:
    /// the oldest participant waits for the newest to go, the others
    /// delete their key and wait for the oldest; the last one out deletes
    /// `<name>/ready`).
    pub async fn leave(self) -> Result<()> {
        let b = &self.barrier;
        let client = b.client();
        loop {
            let (lowest2, highest) = b.extremes().await?;
            let (Some(lowest), Some(highest)) = (lowest2.first(), highest) else {
                return Ok(());
            };
            let is_lowest = lowest.key == self.key.as_bytes();
            if lowest2.len() == 1 && is_lowest {
                client.delete(format!("{}/ready", b.name), None).await?;
                client.delete(self.key.as_str(), None).await?;
                return Ok(());
            }
            let (wait_key, from) = if is_lowest {
                (highest.key.clone(), highest.mod_revision)
            } else {
                client.delete(self.key.as_str(), None).await?;
                (lowest.key.clone(), lowest.mod_revision)
            };
            let wait_key = String::from_utf8_lossy(&wait_key).into_owned();
            // Compacted history or not, look again at who is left.
            wait_event(client, &wait_key, false, from, EventType::Delete).await?;
        }
    }
}
