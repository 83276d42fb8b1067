//! Helpers shared by the lock, the election and the registry.

use std::time::Duration;

use futures::StreamExt;
use kv_client::retry::Backoff;
use kv_client::{
    Client, DeleteOptions, EventType, GetOptions, KeyValue, ResponseHeader, SortOrder, SortTarget,
    WatchOptions,
};

use crate::Result;

/// A lease ID as etcd's concurrency package prints it in keys (Go's `%x`).
pub(crate) fn lease_hex(id: i64) -> String {
    if id < 0 {
        format!("-{:x}", id.unsigned_abs())
    } else {
        format!("{id:x}")
    }
}

/// The first-created key under `prefix` (etcd's `WithFirstCreate`), and
/// the header of the read.
pub(crate) async fn first_created(
    client: &Client,
    prefix: &str,
) -> Result<(Option<KeyValue>, ResponseHeader)> {
    let opts = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1);
    let mut resp = client.get(prefix, opts).await?;
    let header = resp.header().copied().unwrap_or_default();
    Ok((resp.take_kvs().into_iter().next(), header))
}

/// Waits until every key under `prefix` created at or before
/// `max_create_rev` is deleted (etcd's `waitDeletes`): repeatedly takes the
/// newest such key and waits for its deletion.
pub(crate) async fn wait_deletes(client: &Client, prefix: &str, max_create_rev: i64) -> Result<()> {
    loop {
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_max_create_revision(max_create_rev)
            .with_limit(1);
        let resp = client.get(prefix, opts).await?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(());
        };
        match wait_delete(client, kv.key.clone(), resp.revision()).await {
            Ok(()) => {}
            // History gone: look again at what exists now.
            Err(crate::Error::Client(kv_client::Error::Compacted { .. })) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Waits for a delete of `key` at or after revision `rev`.
async fn wait_delete(client: &Client, key: Vec<u8>, rev: i64) -> Result<()> {
    let mut watch = client
        .watch(key, WatchOptions::new().with_start_revision(rev))
        .await?;
    while let Some(batch) = watch.next().await {
        if batch?
            .events()
            .iter()
            .any(|e| e.r#type() == EventType::Delete)
        {
            return Ok(());
        }
    }
    Err(kv_client::Error::Transport("lost watcher waiting for delete".into()).into())
}

/// Deletes `key` if it still has create revision `rev` (so a key re-created
/// by someone else is left alone).
pub(crate) async fn delete_if_created_at(client: &Client, key: &str, rev: i64) -> Result<()> {
    use kv_client::{Compare, CompareOp, Txn, TxnOp};
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, rev)])
        .and_then([TxnOp::delete(key, DeleteOptions::new())]);
    client.txn(txn).await?;
    Ok(())
}

/// Runs `fut` in the background if a tokio runtime is running (used from
/// `Drop`, where nothing can be awaited).
pub(crate) fn spawn_best_effort<F>(what: &'static str, fut: F)
where
    F: std::future::Future<Output = Result<()>> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move {
                if let Err(e) = fut.await {
                    tracing::debug!(%e, "{what} failed");
                }
            });
        }
        Err(_) => tracing::debug!("{what} skipped: no tokio runtime"),
    }
}

/// Deletes a key in the background when dropped while armed: cleans up a
/// waiter key when a `lock`/`campaign` future is dropped (canceled).
pub(crate) struct Cleanup {
    client: Client,
    key: String,
    rev: i64,
    armed: bool,
}

impl Cleanup {
    pub(crate) fn new(client: &Client, key: &str, rev: i64, armed: bool) -> Cleanup {
        Cleanup {
            client: client.clone(),
            key: key.to_string(),
            rev,
            armed,
        }
    }
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            let (client, key, rev) = (self.client.clone(), self.key.clone(), self.rev);
            spawn_best_effort("waiter key cleanup", async move {
                delete_if_created_at(&client, &key, rev).await
            });
        }
    }
}

/// The waits between retries of background tasks: the client's one retry
/// policy ([`kv_client::RetryPolicy::backoff`], backon's exponential
/// sequence, jittered), with a 10 ms floor so a policy configured with no
/// initial wait cannot make a background task spin.
pub(crate) fn backoff(client: &Client) -> Backoff {
    backoff_for(client.config().retry())
}

fn backoff_for(retry: &kv_client::RetryPolicy) -> Backoff {
    let initial = retry.initial_backoff().max(MIN_BACKOFF);
    retry
        .clone()
        .with_initial_backoff(initial)
        .with_max_backoff(retry.max_backoff().max(initial))
        .backoff()
}

/// The shortest wait between two attempts of a background task.
const MIN_BACKOFF: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_print_like_go() {
        assert_eq!(lease_hex(0x390da1ff104ecf1a), "390da1ff104ecf1a");
        assert_eq!(lease_hex(-255), "-ff");
    }

    #[test]
    fn background_backoff_has_a_floor_and_the_client_cap() {
        let policy = kv_client::RetryPolicy::default()
            .with_initial_backoff(Duration::ZERO)
            .with_max_backoff(Duration::from_millis(40))
            .with_jitter(0.0);
        let mut b = backoff_for(&policy);
        let waits: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 40]);
    }
}
