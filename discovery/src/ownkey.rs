//! A registration's watch on its own key: notices the entry deleted behind
//! its back (`etcdctl del`, [`Registry::deregister`](crate::Registry::deregister),
//! an operator's cleanup) while its lease is still alive.

use futures::StreamExt;
use kv_client::retry::Backoff;
use kv_client::{Client, EventType, GetOptions, WatchOptions, WatchStream};

/// Watches one key from a revision on; [`deleted`](OwnKey::deleted)
/// resolves when the key is gone.
pub(crate) struct OwnKey {
    client: Client,
    key: String,
    /// The next revision to watch from.
    from: i64,
    watch: Option<WatchStream>,
    backoff: Backoff,
    /// A rewrite failed: report the key deleted again after a backoff wait.
    retry: bool,
}

impl OwnKey {
    /// Watches `key` for changes after revision `written` (the revision of
    /// the registration's own write).
    pub(crate) fn new(client: &Client, key: &str, written: i64) -> OwnKey {
        OwnKey {
            client: client.clone(),
            key: key.to_string(),
            from: written + 1,
            watch: None,
            backoff: crate::util::backoff(client),
            retry: false,
        }
    }

    /// Starts over after the registration wrote the key again at `written`.
    pub(crate) fn rewritten(&mut self, written: i64) {
        self.watch = None;
        self.from = written + 1;
        self.retry = false;
        self.backoff.reset();
    }

    /// A rewrite after [`deleted`](Self::deleted) failed: the next call
    /// resolves again after a backoff wait, so the rewrite is retried.
    pub(crate) fn retry_later(&mut self) {
        self.retry = true;
    }

    /// Resolves once the key is found deleted: a delete event, or the key
    /// absent when the watch had to be restarted (history compacted, watch
    /// canceled). Cancel-safe: state changes only between awaits, so it can
    /// be a `select!` branch.
    pub(crate) async fn deleted(&mut self) {
        if self.retry {
            tokio::time::sleep(self.backoff.next_delay()).await;
            self.retry = false;
            return;
        }
        loop {
            let Some(watch) = self.watch.as_mut() else {
                let opts = WatchOptions::new().with_start_revision(self.from);
                match self.client.watch(self.key.as_str(), opts).await {
                    Ok(w) => self.watch = Some(w),
                    Err(e) => {
                        tracing::debug!(key = %self.key, %e, "own-key watch failed");
                        tokio::time::sleep(self.backoff.next_delay()).await;
                    }
                }
                continue;
            };
            match watch.next().await {
                Some(Ok(batch)) => {
                    self.backoff.reset();
                    let mut gone = false;
                    for event in batch.events() {
                        if let Some(kv) = event.kv.as_ref() {
                            self.from = self.from.max(kv.mod_revision + 1);
                        }
                        gone = event.r#type() == EventType::Delete;
                    }
                    if gone {
                        return;
                    }
                }
                other => {
                    // The watch ended (compacted history, cancel): look at
                    // the key itself, then watch again from that read.
                    if let Some(Err(e)) = other {
                        tracing::debug!(key = %self.key, %e, "own-key watch ended");
                    }
                    self.watch = None;
                    match self.client.get(self.key.as_str(), GetOptions::new()).await {
                        Ok(resp) => {
                            self.from = resp.revision() + 1;
                            if resp.kvs().is_empty() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::debug!(key = %self.key, %e, "own-key read failed");
                            tokio::time::sleep(self.backoff.next_delay()).await;
                        }
                    }
                }
            }
        }
    }
}
