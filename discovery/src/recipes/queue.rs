//! FIFO and priority queues (etcd's `recipe.Queue` and
//! `recipe.PriorityQueue`).

use kv_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, SortOrder, SortTarget, Txn, TxnOp,
};

use super::{RecipeError, Result, delete_rev_key, put_unique, wait_event};

/// An item taken off a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dequeued {
    /// The item's key.
    pub key: Vec<u8>,
    /// The enqueued value.
    pub value: Vec<u8>,
    /// The item's create revision: FIFO order of a [`Queue`].
    pub created: i64,
    /// The revision of the delete that claimed it: the order in which
    /// items left the queue, across all consumers.
    pub claimed: i64,
}

/// How a queue picks its next item.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// Oldest first (create revision).
    Created,
    /// Smallest key first (priority, then sequence).
    Key,
}

/// Takes the first item under `prefix`, waiting for one if there is none.
/// A claim is a delete conditioned on the item's mod revision, so each
/// item is taken by exactly one consumer; the loser of a race looks again.
async fn take(client: &Client, prefix: &str, order: Order) -> Result<Dequeued> {
    let target = match order {
        Order::Created => SortTarget::Create,
        Order::Key => SortTarget::Key,
    };
    let opts = GetOptions::new()
        .with_prefix()
        .with_sort(target, SortOrder::Ascend)
        .with_limit(1);
    loop {
        let resp = client.get(prefix, opts.clone()).await?;
        if let Some(kv) = resp.kvs().first() {
            if let Some(claimed) = delete_rev_key(client, &kv.key, kv.mod_revision).await? {
                return Ok(dequeued(kv, claimed));
            }
            continue;
        }
        // Empty at this revision: the first put after it is the oldest
        // item that can exist (for the priority queue, an item put while
        // we wait may be outranked by a later one; etcd does the same).
        let Some(ev) =
            wait_event(client, prefix, true, resp.revision() + 1, EventType::Put).await?
        else {
            continue;
        };
        let Some(kv) = ev.kv.as_ref() else { continue };
        if let Some(claimed) = delete_rev_key(client, &kv.key, kv.mod_revision).await? {
            return Ok(dequeued(kv, claimed));
        }
    }
}

fn dequeued(kv: &KeyValue, claimed: i64) -> Dequeued {
    Dequeued {
        key: kv.key.clone(),
        value: kv.value.clone(),
        created: kv.create_revision,
        claimed,
    }
}

/// A multi-producer, multi-consumer FIFO queue: items are keys
/// `<prefix>/<unix nanos>` (as Go's `recipe.NewQueue(client, prefix)`),
/// dequeued oldest (lowest create revision) first.
///
/// Cancelling [`dequeue`](Queue::dequeue) while its claiming delete is in
/// flight can lose that item, as in etcd.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::recipes::Result<()> {
/// use kv_discovery::recipes::Queue;
/// let q = Queue::new(&client, "jobs");
/// q.enqueue("first").await?;
/// q.enqueue("second").await?;
/// assert_eq!(q.dequeue().await?, b"first");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Queue {
    client: Client,
    /// `<prefix>`, without the trailing slash.
    prefix: String,
}

impl Queue {
    /// A queue under `<prefix>/`.
    pub fn new(client: &Client, prefix: impl Into<String>) -> Queue {
        Queue {
            client: client.clone(),
            prefix: prefix.into(),
        }
    }

    /// Appends `value`; returns the item's key.
    pub async fn enqueue(&self, value: impl AsRef<[u8]>) -> Result<String> {
        let (key, _) = put_unique(&self.client, &self.prefix, value.as_ref(), 0).await?;
        Ok(key)
    }

    /// Takes the oldest item's value, waiting while the queue is empty.
    pub async fn dequeue(&self) -> Result<Vec<u8>> {
        Ok(self.dequeue_item().await?.value)
    }

    /// [`dequeue`](Self::dequeue), returning the item's key and revisions.
    pub async fn dequeue_item(&self) -> Result<Dequeued> {
        // The trailing slash keeps `jobs` from taking `jobs2/...` items
        // (Go's recipe ranges over the bare prefix).
        take(&self.client, &format!("{}/", self.prefix), Order::Created).await
    }
}

/// A queue ordered by a `u16` priority (lower first), FIFO within one
/// priority. Items are `<prefix>/<%05d priority>/<%016d sequence>`, as Go's
/// `recipe.NewPriorityQueue(client, prefix)`; each enqueue also writes the
/// bookkeeping key `__<prefix>/<%05d priority>`, whose mod revision fences
/// the sequence number against concurrent producers.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::recipes::Result<()> {
/// use kv_discovery::recipes::PriorityQueue;
/// let q = PriorityQueue::new(&client, "tasks");
/// q.enqueue("later", 10).await?;
/// q.enqueue("urgent", 1).await?;
/// assert_eq!(q.dequeue().await?, b"urgent");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PriorityQueue {
    client: Client,
    /// `<prefix>/`.
    prefix: String,
}

impl PriorityQueue {
    /// A priority queue under `<prefix>/`.
    pub fn new(client: &Client, prefix: impl AsRef<str>) -> PriorityQueue {
        PriorityQueue {
            client: client.clone(),
            prefix: format!("{}/", prefix.as_ref()),
        }
    }

    /// Adds `value` with `priority` (0 is taken first); returns its key.
    pub async fn enqueue(&self, value: impl AsRef<[u8]>, priority: u16) -> Result<String> {
        let pri = format!("{}{priority:05}", self.prefix);
        let base = format!("__{pri}");
        let last_opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Descend)
            .with_limit(1);
        loop {
            let resp = self.client.get(pri.as_str(), last_opts.clone()).await?;
            let seq = match resp.kvs().first() {
                None => 0,
                Some(kv) => next_seq(&kv.key)?,
            };
            let key = format!("{pri}/{seq:016}");
            // Fails if another producer allocated since our read.
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    base.as_str(),
                    CompareOp::Less,
                    resp.revision() + 1,
                )])
                .and_then([
                    TxnOp::put(base.as_str(), "", None),
                    TxnOp::put(key.as_str(), value.as_ref().to_vec(), None),
                ]);
            if self.client.txn(txn).await?.succeeded() {
                return Ok(key);
            }
        }
    }

    /// Takes the item with the lowest priority number (oldest first within
    /// it), waiting while the queue is empty.
    pub async fn dequeue(&self) -> Result<Vec<u8>> {
        Ok(self.dequeue_item().await?.value)
    }

    /// [`dequeue`](Self::dequeue), returning the item's key and revisions.
    pub async fn dequeue_item(&self) -> Result<Dequeued> {
        take(&self.client, &self.prefix, Order::Key).await
    }
}

/// The sequence number after the one in the last key segment.
fn next_seq(key: &[u8]) -> Result<u64> {
    let malformed = || RecipeError::MalformedKey(String::from_utf8_lossy(key).into_owned());
    let last = key.rsplit(|&b| b == b'/').next().ok_or_else(malformed)?;
    let n: u64 = std::str::from_utf8(last)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed)?;
    n.checked_add(1).ok_or_else(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_follows_the_last_segment() {
        assert_eq!(next_seq(b"q/00003/0000000000000041").unwrap(), 42);
        assert!(matches!(
            next_seq(b"q/00003/x"),
            Err(RecipeError::MalformedKey(_))
        ));
    }
}
