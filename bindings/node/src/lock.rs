//! Locks (etcd's `concurrency.Mutex` layout, interoperable with
//! `etcdctl lock`): each lock runs on its own session (lease), closed on
//! release so the next waiter gets the lock at once.

use std::time::Duration;

use kv_discovery::{LockGuard, Mutex as KvMutex, Session};
use napi_derive::napi;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::cancel::until;
use crate::client::NativeClient;
use crate::convert::millis;
use crate::lease::lost_code;
use crate::{errors, guard};

/// Options of `lock`.
#[napi(object)]
pub struct LockOpts {
    /// TTL of the lock's session lease in seconds (default 60): a crashed
    /// holder releases the lock after this long.
    pub ttl_sec: Option<i64>,
    /// Give up with `TIMEOUT` after this long.
    pub timeout_ms: Option<f64>,
    /// Fail with `LOCKED` at once instead of waiting.
    pub try_only: Option<bool>,
}

/// A held lock.
#[napi]
pub struct NativeLock {
    guard: Mutex<Option<(LockGuard, Session)>>,
    key: String,
    fencing_token: i64,
    revision: i64,
    lease: String,
    lost: CancellationToken,
    cancel: CancellationToken,
    /// Where a collected, unreleased lock is released.
    rt: tokio::runtime::Handle,
}

async fn acquire(
    m: &KvMutex,
    try_only: bool,
    timeout: Option<Duration>,
) -> kv_discovery::Result<LockGuard> {
    match (try_only, timeout) {
        (true, _) => m.try_lock().await,
        (false, Some(d)) => m.lock_timeout(d).await,
        (false, None) => m.lock().await,
    }
}

/// A lock being acquired: `acquire()` once; `cancel()` (an AbortSignal)
/// makes a waiting `acquire()` fail with `ABORTED` and withdraws from the queue.
#[napi]
pub struct NativeLockRequest {
    client: kv_client::Client,
    name: String,
    ttl: i64,
    try_only: bool,
    timeout: Option<Duration>,
    closed: CancellationToken,
    abort: CancellationToken,
}

#[napi]
impl NativeClient {
    /// Prepares to acquire the lock `name` (see `NativeLockRequest.acquire`).
    #[napi]
    pub fn lock(&self, name: String, options: Option<LockOpts>) -> napi::Result<NativeLockRequest> {
        let client = self.live()?;
        let (ttl, timeout, try_only) = match options {
            Some(o) => (
                o.ttl_sec,
                o.timeout_ms.map(|ms| millis(ms, "timeoutMs")).transpose()?,
                o.try_only == Some(true),
            ),
            None => (None, None, false),
        };
        Ok(NativeLockRequest {
            client,
            name,
            ttl: ttl.unwrap_or(60),
            try_only,
            timeout,
            closed: self.closed.clone(),
            abort: CancellationToken::new(),
        })
    }
}

#[napi]
impl NativeLockRequest {
    /// Gives up waiting: a pending `acquire()` fails with `ABORTED`.
    #[napi]
    pub fn cancel(&self) {
        self.abort.cancel();
    }

    /// Acquires the lock, waiting for it unless `tryOnly`.
    #[napi]
    pub async fn acquire(&self) -> napi::Result<NativeLock> {
        let (c, name, ttl) = (self.client.clone(), self.name.clone(), self.ttl);
        let (try_only, timeout) = (self.try_only, self.timeout);
        let (closed, abort) = (self.closed.clone(), self.abort.clone());
        guard(async move {
            let session = Session::with_ttl(&c, ttl)
                .await
                .map_err(errors::discovery)?;
            let m = KvMutex::new(&session, &name);
            let got = until(&closed, Some(&abort), acquire(&m, try_only, timeout)).await;
            let g = match got {
                Ok(Ok(g)) => g,
                Ok(Err(e)) => {
                    let _ = session.close().await;
                    return Err(errors::discovery(e));
                }
                Err(stopped) => {
                    // The dropped lock future withdrew our waiter key; the
                    // closed session removes anything left.
                    let _ = session.close().await;
                    return Err(stopped.into());
                }
            };
            let lost = CancellationToken::new();
            let cancel = closed.child_token();
            let session_lost = session.lost();
            let (l, k) = (lost.clone(), cancel.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = session_lost => l.cancel(),
                    _ = k.cancelled() => {}
                }
            });
            Ok(NativeLock {
                key: g.key().to_string(),
                fencing_token: g.fencing_token(),
                revision: g.revision(),
                lease: session.lease_id().to_string(),
                guard: Mutex::new(Some((g, session))),
                lost,
                cancel,
                rt: tokio::runtime::Handle::current(),
            })
        })
        .await
    }
}

#[napi]
impl NativeLock {
    /// The lock key (`<name>/<lease id in hex>`).
    #[napi(getter)]
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// The create revision of the lock key: strictly increases from one
    /// holder to the next, so storage can refuse writes of an older holder.
    #[napi(getter)]
    pub fn fencing_token(&self) -> i64 {
        self.fencing_token
    }

    /// The store revision when the lock was acquired.
    #[napi(getter)]
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The lease the lock is held on (decimal).
    #[napi(getter)]
    pub fn lease(&self) -> String {
        self.lease.clone()
    }

    /// Resolves with a reason when the lock's session is lost (the lock is
    /// then gone), or `null` once released or the client is closed.
    #[napi]
    pub async fn lost(&self) -> napi::Result<Option<String>> {
        let (lost, cancel) = (self.lost.clone(), self.cancel.clone());
        let reason = {
            let g = self.guard.lock().await;
            match g.as_ref() {
                Some((_, s)) => s.lost_reason(),
                None => return Ok(None),
            }
        };
        if let Some(r) = reason {
            return Ok(Some(lost_code(r)));
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Ok(None),
            _ = lost.cancelled() => Ok(Some("LEASE_LOST".into())),
        }
    }

    /// Releases the lock (deletes the key, revokes the session lease).
    /// Releasing twice is a no-op.
    #[napi]
    pub async fn release(&self) -> napi::Result<()> {
        let taken = self.guard.lock().await.take();
        self.cancel.cancel();
        let Some((g, session)) = taken else {
            return Ok(());
        };
        guard(async move {
            let r = g.unlock().await;
            let _ = session.close().await;
            r.map_err(errors::discovery)
        })
        .await
    }
}

impl Drop for NativeLock {
    /// A lock collected without `release()` is released in the background.
    fn drop(&mut self) {
        let held = self.guard.get_mut().take();
        self.cancel.cancel();
        crate::drop_in_runtime(&self.rt, held);
    }
}
