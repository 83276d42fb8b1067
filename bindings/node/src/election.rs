//! Elections (etcd's `concurrency.Election` layout, interoperable with
//! `etcdctl elect`): campaign on a session of its own, proclaim, resign,
//! the current leader and an observer.

use std::sync::Arc;

use kv_discovery::election::{self, Observer};
use kv_discovery::{Election, Leader, Leadership, Session};
use napi_derive::napi;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::cancel::until;
use crate::client::NativeClient;
use crate::convert::{Bytes, JsBytes, bytes};
use crate::{errors, guard};

/// A leader as observed.
#[napi(object, object_from_js = false)]
pub struct LeaderInfo {
    #[napi(ts_type = "Buffer")]
    pub key: JsBytes,
    /// The leader's proposal.
    #[napi(ts_type = "Buffer")]
    pub value: JsBytes,
    /// The create revision of the leader key.
    pub create_revision: i64,
    pub mod_revision: i64,
    /// The lease of the leader's session (decimal).
    pub lease: String,
}

impl From<Leader> for LeaderInfo {
    fn from(l: Leader) -> Self {
        LeaderInfo {
            create_revision: l.kv.create_revision,
            mod_revision: l.kv.mod_revision,
            lease: l.kv.lease.to_string(),
            key: JsBytes(l.kv.key),
            value: JsBytes(l.kv.value),
        }
    }
}

/// A candidacy: `campaign()` once; `cancel()` withdraws while waiting.
#[napi]
pub struct NativeCampaign {
    client: kv_client::Client,
    name: String,
    value: Vec<u8>,
    ttl: i64,
    closed: CancellationToken,
    abort: CancellationToken,
}

#[napi]
impl NativeClient {
    /// Prepares a campaign in election `name` with `value`.
    #[napi]
    pub fn election(
        &self,
        name: String,
        value: Bytes,
        ttl_sec: Option<i64>,
    ) -> napi::Result<NativeCampaign> {
        Ok(NativeCampaign {
            client: self.live()?,
            name,
            value: bytes(value),
            ttl: ttl_sec.unwrap_or(60),
            closed: self.closed.clone(),
            abort: CancellationToken::new(),
        })
    }

    /// The current leader of election `name` (`ELECTION_NO_LEADER` if none).
    #[napi]
    pub async fn election_leader(&self, name: String) -> napi::Result<LeaderInfo> {
        let c = self.live()?;
        guard(async move {
            let l = election::leader(&c, &name)
                .await
                .map_err(errors::discovery)?;
            Ok(l.into())
        })
        .await
    }

    /// Observes the leader of election `name`.
    #[napi]
    pub async fn observe(&self, name: String) -> napi::Result<NativeObserver> {
        let c = self.live()?;
        let cancel = self.closed.child_token();
        // Async so that the observer task is spawned on napi's runtime.
        guard(async move {
            Ok(NativeObserver {
                observer: Arc::new(Mutex::new(Some(election::observe(&c, &name)))),
                cancel,
            })
        })
        .await
    }
}

#[napi]
impl NativeCampaign {
    /// Gives up: a waiting `campaign()` fails with `ABORTED`.
    #[napi]
    pub fn cancel(&self) {
        self.abort.cancel();
    }

    /// Campaigns and resolves once leader.
    #[napi]
    pub async fn campaign(&self) -> napi::Result<NativeLeadership> {
        let (c, name, value, ttl) = (
            self.client.clone(),
            self.name.clone(),
            self.value.clone(),
            self.ttl,
        );
        let (closed, abort) = (self.closed.clone(), self.abort.clone());
        guard(async move {
            let session = Session::with_ttl(&c, ttl)
                .await
                .map_err(errors::discovery)?;
            let e = Election::new(&session, name);
            let got = until(&closed, Some(&abort), e.campaign(value)).await;
            match got {
                Ok(Ok(l)) => Ok(NativeLeadership {
                    key: l.key().to_string(),
                    revision: l.revision(),
                    lease: session.lease_id().to_string(),
                    inner: Mutex::new(Some((l, session))),
                    rt: tokio::runtime::Handle::current(),
                }),
                Ok(Err(e)) => {
                    let _ = session.close().await;
                    Err(errors::discovery(e))
                }
                Err(stopped) => {
                    let _ = session.close().await;
                    Err(stopped.into())
                }
            }
        })
        .await
    }
}

/// Leadership won by a campaign.
#[napi]
pub struct NativeLeadership {
    inner: Mutex<Option<(Leadership, Session)>>,
    key: String,
    revision: i64,
    lease: String,
    /// Where a collected leadership resigns.
    rt: tokio::runtime::Handle,
}

#[napi]
impl NativeLeadership {
    #[napi(getter)]
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// The create revision of the leader key (a fencing token).
    #[napi(getter)]
    pub fn revision(&self) -> i64 {
        self.revision
    }

    #[napi(getter)]
    pub fn lease(&self) -> String {
        self.lease.clone()
    }

    /// Announces a new value; `ELECTION_NOT_LEADER` if no longer leader.
    #[napi]
    pub async fn proclaim(&self, value: Bytes) -> napi::Result<()> {
        let value = bytes(value);
        let g = self.inner.lock().await;
        let Some((l, _)) = g.as_ref() else {
            return Err(errors::discovery(kv_discovery::Error::NotLeader));
        };
        guard(async { l.proclaim(value).await.map_err(errors::discovery) }).await
    }

    /// Resigns (the next candidate wins) and ends the session. A second
    /// call is a no-op.
    #[napi]
    pub async fn resign(&self) -> napi::Result<()> {
        let taken = self.inner.lock().await.take();
        let Some((l, session)) = taken else {
            return Ok(());
        };
        guard(async move {
            let r = l.resign().await;
            let _ = session.close().await;
            r.map_err(errors::discovery)
        })
        .await
    }
}

/// The leaders of an election, one after the other.
#[napi]
pub struct NativeObserver {
    observer: Arc<Mutex<Option<Observer>>>,
    cancel: CancellationToken,
}

#[napi]
impl NativeObserver {
    /// The next leader; `null` once cancelled or the client is closed.
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<LeaderInfo>> {
        let (observer, cancel) = (self.observer.clone(), self.cancel.clone());
        guard(async move {
            let mut slot = observer.lock().await;
            let Some(o) = slot.as_mut() else {
                return Ok(None);
            };
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => None,
                l = o.next_leader() => l,
            };
            if next.is_none() {
                *slot = None;
            }
            Ok(next.map(LeaderInfo::from))
        })
        .await
    }

    /// Stops observing.
    #[napi]
    pub fn cancel(&self) {
        self.cancel.cancel();
        if let Ok(mut slot) = self.observer.try_lock() {
            *slot = None;
        }
    }
}

impl Drop for NativeLeadership {
    /// Leadership collected without `resign()` resigns in the background.
    fn drop(&mut self) {
        let held = self.inner.get_mut().take();
        crate::drop_in_runtime(&self.rt, held);
    }
}
