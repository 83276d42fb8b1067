//! Leases: grant, revoke, inspect, and keep alive in the background.
//!
//! A [`LeaseKeeper`] renews a lease over a keep-alive stream every third of
//! its TTL, re-opening the stream (with backoff) when it breaks, and reports
//! through [`LeaseKeeper::lost`] when the lease is gone: the server answered
//! TTL 0 (revoked, or expired server-side), or no renewal was acknowledged
//! within the TTL (the lease may have expired: anything fenced by it must
//! stop).
//!
//! ```no_run
//! # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
//! let lease = client.lease_grant(10).await?;
//! let keeper = client.lease_keeper(lease.id()).await?;
//! client.put("service/me", "addr", kv_client::PutOptions::new().with_lease(lease.id())).await?;
//! let reason = keeper.lost().await; // resolves only when the lease is lost
//! eprintln!("lease lost: {reason}");
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use kv_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse as PbGrant, LeaseKeepAliveRequest, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse as PbRevoke,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::kv::header_accessor;
use crate::retry::{Repeatable, request};
use crate::{Client, Error, Result};

/// Shortest wait between two keep-alives (for TTLs of a second or less).
pub const MIN_KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(100);

/// Answer to [`Client::lease_grant`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// let lease = client.lease_grant(30).await?;
/// println!("lease {:x} for {}s", lease.id(), lease.ttl());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseGrantResponse(pub PbGrant);
header_accessor!(LeaseGrantResponse);

impl LeaseGrantResponse {
    /// The lease ID.
    pub fn id(&self) -> i64 {
        self.0.id
    }
    /// The granted TTL in seconds.
    pub fn ttl(&self) -> i64 {
        self.0.ttl
    }
}

/// Answer to [`Client::lease_revoke`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client, id: i64) -> kv_client::Result<()> {
/// let resp = client.lease_revoke(id).await?;
/// println!("revoked at revision {}", resp.revision());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseRevokeResponse(pub PbRevoke);
header_accessor!(LeaseRevokeResponse);

/// Answer to [`Client::lease_time_to_live`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client, id: i64) -> kv_client::Result<()> {
/// let resp = client.lease_time_to_live(id, true).await?;
/// println!("{}s left of {}s, {} keys", resp.ttl(), resp.granted_ttl(), resp.keys().len());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseTtlResponse(pub LeaseTimeToLiveResponse);
header_accessor!(LeaseTtlResponse);

impl LeaseTtlResponse {
    /// Seconds left (-1 when the lease does not exist).
    pub fn ttl(&self) -> i64 {
        self.0.ttl
    }
    /// The TTL the lease was granted with.
    pub fn granted_ttl(&self) -> i64 {
        self.0.granted_ttl
    }
    /// The keys attached (when asked for).
    pub fn keys(&self) -> &[Vec<u8>] {
        &self.0.keys
    }
}

/// Answer to [`Client::lease_leases`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// let resp = client.lease_leases().await?;
/// for id in resp.ids() {
///     println!("{id:x}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseListResponse(pub LeaseLeasesResponse);
header_accessor!(LeaseListResponse);

impl LeaseListResponse {
    /// The IDs of the leases, in the server's order.
    pub fn ids(&self) -> Vec<i64> {
        self.0.leases.iter().map(|l| l.id).collect()
    }
}

/// Why a [`LeaseKeeper`] gave up.
///
/// ```
/// let l = kv_client::LeaseLost::NotFound;
/// assert_eq!(l.to_string(), "the server no longer has the lease");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseLost {
    /// The server answered TTL 0: the lease was revoked or expired.
    #[error("the server no longer has the lease")]
    NotFound,
    /// No keep-alive was acknowledged within the lease's TTL.
    #[error("no keep-alive acknowledged within the lease TTL")]
    TtlElapsed,
    /// The keeper was dropped.
    #[error("the lease keeper was dropped")]
    KeeperDropped,
}

#[derive(Clone, Debug)]
struct KeeperState {
    ttl: i64,
    lost: Option<LeaseLost>,
}

/// Keeps a lease alive in the background until dropped (dropping does not
/// revoke the lease: it then expires after its TTL).
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// let keeper = client.lease_keeper(client.lease_grant(5).await?.id()).await?;
/// tokio::select! {
///     reason = keeper.lost() => eprintln!("stop working: {reason}"),
///     _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct LeaseKeeper {
    id: i64,
    state: watch::Receiver<KeeperState>,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// The lease ID.
    pub fn id(&self) -> i64 {
        self.id
    }
    /// The TTL in the last keep-alive answer, in seconds.
    pub fn ttl(&self) -> i64 {
        self.state.borrow().ttl
    }
    /// Why the lease was lost, if it was.
    pub fn lost_reason(&self) -> Option<LeaseLost> {
        self.state.borrow().lost
    }
    /// Resolves when the lease is lost. Independent of `self` (it captures
    /// no borrow, hence `use<>`): it can be moved into another task and
    /// outlive the keeper, resolving with [`LeaseLost::KeeperDropped`] if
    /// the keeper is dropped first.
    pub fn lost(&self) -> impl Future<Output = LeaseLost> + Send + 'static + use<> {
        let mut state = self.state.clone();
        async move {
            loop {
                if let Some(reason) = state.borrow_and_update().lost {
                    return reason;
                }
                if state.changed().await.is_err() {
                    return state.borrow().lost.unwrap_or(LeaseLost::KeeperDropped);
                }
            }
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Grants a lease of `ttl` seconds (the server picks the ID). Not
    /// retried once it may have been sent.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// let id = client.lease_grant(10).await?.id();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lease_grant(&self, ttl: i64) -> Result<LeaseGrantResponse> {
        let req = LeaseGrantRequest { ttl, id: 0 };
        let resp = self
            .unary(Repeatable::No, |left| {
                let mut c = self.lease_client();
                async move { c.lease_grant(request(req, left)).await }
            })
            .await?;
        Ok(LeaseGrantResponse(resp))
    }

    /// Revokes a lease, deleting its keys. Not retried once it may have
    /// been sent.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client, id: i64) -> kv_client::Result<()> {
    /// client.lease_revoke(id).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        let req = LeaseRevokeRequest { id };
        let resp = self
            .unary(Repeatable::No, |left| {
                let mut c = self.lease_client();
                async move { c.lease_revoke(request(req, left)).await }
            })
            .await?;
        Ok(LeaseRevokeResponse(resp))
    }

    /// A lease's remaining TTL (and keys, with `keys`).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client, id: i64) -> kv_client::Result<()> {
    /// let left = client.lease_time_to_live(id, false).await?.ttl();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTtlResponse> {
        let req = LeaseTimeToLiveRequest { id, keys };
        let resp = self
            .unary(Repeatable::Yes, |left| {
                let mut c = self.lease_client();
                async move { c.lease_time_to_live(request(req, left)).await }
            })
            .await?;
        Ok(LeaseTtlResponse(resp))
    }

    /// The IDs of every lease.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// for id in client.leases().await? {
    ///     println!("{id:x}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn leases(&self) -> Result<Vec<i64>> {
        Ok(self.lease_leases().await?.ids())
    }

    /// Every lease, with the response header (for callers that need the
    /// revision or member the list was read from).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// let resp = client.lease_leases().await?;
    /// println!("{} leases at revision {}", resp.ids().len(), resp.revision());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lease_leases(&self) -> Result<LeaseListResponse> {
        // Read-only, so safe to repeat on another member after a failure.
        let resp: LeaseLeasesResponse = self
            .unary(Repeatable::Yes, |left| {
                let mut c = self.lease_client();
                async move { c.lease_leases(request(LeaseLeasesRequest {}, left)).await }
            })
            .await?;
        Ok(LeaseListResponse(resp))
    }

    /// Starts keeping lease `id` alive. Returns after the first renewal
    /// was acknowledged; fails with [`Error::LeaseNotFound`] if the server
    /// does not know the lease, or [`Error::Timeout`] if no renewal was
    /// acknowledged within the request timeout.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// let keeper = client.lease_keeper(client.lease_grant(10).await?.id()).await?;
    /// assert!(keeper.ttl() > 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lease_keeper(&self, id: i64) -> Result<LeaseKeeper> {
        let initial = KeeperState { ttl: 0, lost: None };
        let (tx, mut state) = watch::channel(initial);
        let first_deadline = Instant::now() + self.config().request_timeout();
        let task = tokio::spawn(keep_alive(self.clone(), id, first_deadline, tx));
        let keeper = LeaseKeeper {
            id,
            state: state.clone(),
            task,
        };
        let first = state
            .wait_for(|s| s.ttl > 0 || s.lost.is_some())
            .await
            .map(|s| s.lost);
        match first {
            Ok(None) => Ok(keeper),
            Ok(Some(LeaseLost::NotFound)) => Err(Error::LeaseNotFound),
            Ok(Some(_)) | Err(_) => Err(Error::Timeout),
        }
    }
}

/// The keeper task: renews every third of the TTL until the lease is lost.
async fn keep_alive(
    client: Client,
    id: i64,
    mut deadline: Instant,
    state: watch::Sender<KeeperState>,
) {
    let lose = |reason| {
        state.send_modify(|s| s.lost = Some(reason));
    };
    let mut backoff = client.config().retry().backoff();
    loop {
        if Instant::now() >= deadline {
            return lose(LeaseLost::TtlElapsed);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        // Queue the first renewal before the call: etcd answers the call
        // only once it has something to send.
        let mut sent: VecDeque<Instant> = VecDeque::from([Instant::now()]);
        let _ = tx.send(LeaseKeepAliveRequest { id });
        let mut lease = client.lease_client();
        let call = lease.lease_keep_alive(UnboundedReceiverStream::new(rx));
        let opened = tokio::time::timeout_at(deadline, call).await;
        if let Ok(Ok(resp)) = opened {
            let mut responses = resp.into_inner();
            let mut next_send = deadline;
            loop {
                tokio::select! {
                    msg = responses.message() => match msg {
                        Ok(Some(r)) => {
                            let sent_at = sent.pop_front().unwrap_or_else(Instant::now);
                            if r.ttl <= 0 {
                                return lose(LeaseLost::NotFound);
                            }
                            backoff.reset();
                            deadline = sent_at + Duration::from_secs(r.ttl.unsigned_abs());
                            next_send = Instant::now() + interval(r.ttl);
                            state.send_modify(|s| s.ttl = r.ttl);
                        }
                        Ok(None) | Err(_) => break,
                    },
                    _ = tokio::time::sleep_until(next_send) => {
                        sent.push_back(Instant::now());
                        if tx.send(LeaseKeepAliveRequest { id }).is_err() {
                            break;
                        }
                        next_send = Instant::now() + interval(state.borrow().ttl);
                    },
                    _ = tokio::time::sleep_until(deadline) => {
                        return lose(LeaseLost::TtlElapsed);
                    }
                }
            }
        }
        let wait = backoff.next_delay();
        tokio::time::sleep_until((Instant::now() + wait).min(deadline)).await;
    }
}

/// A third of the TTL, but not less than [`MIN_KEEP_ALIVE_INTERVAL`].
fn interval(ttl_secs: i64) -> Duration {
    (Duration::from_secs(ttl_secs.max(0).unsigned_abs()) / 3).max(MIN_KEEP_ALIVE_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_every_third_of_the_ttl() {
        assert_eq!(interval(9), Duration::from_secs(3));
        assert_eq!(interval(0), MIN_KEEP_ALIVE_INTERVAL);
    }
}
