//! Endpoint choice and health: round robin over the endpoints not set
//! aside; an endpoint whose request failed in a way that blames the member
//! is set aside and only taken back after a background probe answers.
//!
//! Why not tower's `balance` (tonic's `Channel::balance_list`, which this
//! replaced): its power-of-two-choices picks by pending-request load among
//! endpoints whose connection is *ready*. A member that is partitioned or
//! frozen (`SIGSTOP`) keeps its TCP connection, and even a fresh connection
//! succeeds because the kernel completes the handshake, so it stays ready and
//! keeps receiving requests that then hang until their deadline; and a
//! member that answers "no leader" looks perfectly healthy to it. Only the
//! request outcome tells, so that is what decides here:
//! - a transport failure, an attempt that ran out its whole deadline, or an
//!   `Unavailable`/timeout answer from the server sets the endpoint aside;
//! - while aside, it gets no requests (unless every endpoint is aside, then
//!   the one due back soonest is used: better to try than to fail outright);
//! - once its backoff (the client's [`RetryPolicy`](crate::RetryPolicy),
//!   doubling per failed probe) has passed, one `Status` probe is sent; it
//!   counts only if the member answers and knows a leader, so a frozen or
//!   partitioned member never gets user requests back until it recovers.
//!
//! With a single endpoint there is nothing to choose and no probing.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use kv_proto::etcdserverpb::StatusRequest;
use kv_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::{Code, Status};

use crate::auth::TokenCache;
use crate::config::ClientConfig;
use crate::conn::{Conn, Settings};
use crate::error::{Error, Result};
use crate::retry::Backoff;

/// The shortest time a probe may take before it counts as failed (the
/// connect timeout is used when longer).
pub const MIN_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The metadata header etcd reads the auth token from.
const TOKEN_HEADER: &str = "token";
/// The one call that must go out without a token.
const AUTHENTICATE_PATH: &str = "/etcdserverpb.Auth/Authenticate";
/// Long-lived streams: they get a fresh token when opened unless the
/// current one is very young ([`crate::auth::STREAM_TOKEN_MAX_AGE`]).
const STREAM_PATHS: [&str; 2] = [
    "/etcdserverpb.Watch/Watch",
    "/etcdserverpb.Lease/LeaseKeepAlive",
];
const NO_ENDPOINT: usize = usize::MAX;

tokio::task_local! {
    /// Set around one unary attempt: the endpoint the attempt went to.
    static ATTEMPT: Arc<AtomicUsize>;
}

/// The transport every generated client runs on: picks an endpoint per
/// call, attaches the auth token, and records endpoint health.
#[derive(Clone)]
pub(crate) struct Balancer {
    shared: Arc<Shared>,
}

struct Shared {
    members: Vec<Member>,
    next: AtomicUsize,
    config: ClientConfig,
    tokens: Option<TokenCache>,
}

struct Member {
    uri: String,
    conn: Conn,
    health: Mutex<Health>,
}

struct Health {
    /// Set aside until this instant (then probed); `None` = in rotation.
    aside_until: Option<Instant>,
    backoff: Backoff,
    probing: bool,
}

impl Balancer {
    /// One lazily connected channel per endpoint; fails only on a bad
    /// configuration.
    pub(crate) fn new(config: &ClientConfig) -> Result<Balancer> {
        let (interval, timeout) = config.keep_alive();
        let settings = Settings {
            connect_timeout: config.connect_timeout(),
            keep_alive_interval: interval,
            keep_alive_timeout: timeout,
        };
        let uris = config.endpoint_uris()?;
        // One TLS setup shared by every endpoint, made only when needed.
        let tls = if uris.iter().any(|u| u.starts_with("https://")) {
            Some(config.tls().cloned().unwrap_or_default().connector()?)
        } else {
            None
        };
        let mut members = Vec::new();
        for uri in uris {
            members.push(Member {
                conn: Conn::new(&uri, tls.clone(), settings)?,
                uri,
                health: Mutex::new(Health {
                    aside_until: None,
                    backoff: config.retry().backoff(),
                    probing: false,
                }),
            });
        }
        Ok(Balancer {
            shared: Arc::new(Shared {
                members,
                next: AtomicUsize::new(0),
                config: config.clone(),
                tokens: config.user().cloned().map(TokenCache::new),
            }),
        })
    }

    pub(crate) fn tokens(&self) -> Option<&TokenCache> {
        self.shared.tokens.as_ref()
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    /// The endpoints currently set aside (for diagnostics and tests).
    pub(crate) fn set_aside(&self) -> Vec<String> {
        self.shared
            .members
            .iter()
            .filter(|m| lock(&m.health).aside_until.is_some())
            .map(|m| m.uri.clone())
            .collect()
    }

    /// Wraps one unary attempt so its outcome is charged to the endpoint
    /// it went to. An attempt dropped unfinished after using up its time
    /// (`limit`) was timed out by the retry loop and counts as a failure; one
    /// dropped earlier was cancelled by the caller and counts for nothing.
    pub(crate) fn observe<T>(
        &self,
        limit: Duration,
        attempt: impl Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    ) -> impl Future<Output = std::result::Result<tonic::Response<T>, Status>> {
        let slot = Arc::new(AtomicUsize::new(NO_ENDPOINT));
        let attempt = ATTEMPT.scope(slot.clone(), attempt);
        let mut watchdog = Watchdog {
            balancer: self.clone(),
            slot,
            started: Instant::now(),
            limit,
            done: false,
        };
        async move {
            let result = attempt.await;
            watchdog.done = true;
            let i = watchdog.slot.load(Ordering::Relaxed);
            match &result {
                Err(status) if blames_endpoint(status) => watchdog.balancer.failed(i, status),
                _ => watchdog.balancer.succeeded(i),
            }
            result
        }
    }

    /// The endpoint for the next call (see the module docs).
    fn pick(&self) -> usize {
        let members = &self.shared.members;
        let n = members.len();
        if n == 1 {
            return 0;
        }
        let start = self.shared.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        let mut soonest: Option<(Instant, usize)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let mut h = lock(&members[i].health);
            let Some(until) = h.aside_until else {
                return i;
            };
            if until <= now && !h.probing {
                h.probing = true;
                drop(h);
                self.start_probe(i);
            }
            if soonest.is_none_or(|(t, _)| until < t) {
                soonest = Some((until, i));
            }
        }
        soonest.map_or(start, |(_, i)| i)
    }

    fn failed(&self, i: usize, why: &dyn std::fmt::Display) {
        let Some(m) = self.member(i) else { return };
        let mut h = lock(&m.health);
        if h.aside_until.is_none() {
            let wait = h.backoff.next_delay();
            h.aside_until = Some(Instant::now() + wait);
            tracing::warn!(endpoint = %m.uri, %why, ?wait, "endpoint set aside");
        }
    }

    fn succeeded(&self, i: usize) {
        let Some(m) = self.member(i) else { return };
        let mut h = lock(&m.health);
        if h.aside_until.take().is_some() {
            tracing::info!(endpoint = %m.uri, "endpoint back in rotation");
        }
        h.backoff.reset();
    }

    /// A member with a single endpoint is never tracked: it is always used.
    fn member(&self, i: usize) -> Option<&Member> {
        (self.shared.members.len() > 1)
            .then(|| self.shared.members.get(i))
            .flatten()
    }

    fn start_probe(&self, i: usize) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to probe from: just let the endpoint back.
            return self.succeeded(i);
        };
        let this = self.clone();
        runtime.spawn(async move {
            let m = &this.shared.members[i];
            let limit = this.config().connect_timeout().max(MIN_PROBE_TIMEOUT);
            let mut client = MaintenanceClient::new(m.conn.clone());
            let answer = tokio::time::timeout(limit, client.status(StatusRequest {})).await;
            let alive = match answer {
                Ok(Ok(resp)) => resp.get_ref().leader != 0,
                // Any other answer from the server itself (say, an auth
                // error) still shows a live, reachable member.
                Ok(Err(status)) => !blames_endpoint(&status),
                Err(_) => false,
            };
            let mut h = lock(&m.health);
            h.probing = false;
            if alive {
                h.aside_until = None;
                h.backoff.reset();
                tracing::info!(endpoint = %m.uri, "endpoint back in rotation after probe");
            } else {
                h.aside_until = Some(Instant::now() + h.backoff.next_delay());
            }
        });
    }
}

/// Whether a failed attempt says something about the member rather than
/// about the request: the transport broke, or the member cannot serve
/// (unavailable, no leader, timed out inside the server).
fn blames_endpoint(status: &Status) -> bool {
    let local = std::error::Error::source(status).is_some();
    status.code() == Code::Unavailable
        || (local && status.code() != Code::Cancelled)
        || Error::from_status(status) == Error::Timeout
}

fn lock(health: &Mutex<Health>) -> MutexGuard<'_, Health> {
    health
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Charges an attempt that never finished (see [`Balancer::observe`]).
struct Watchdog {
    balancer: Balancer,
    slot: Arc<AtomicUsize>,
    started: Instant,
    limit: Duration,
    done: bool,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // The retry loop's timer and ours start within microseconds of
        // each other; allow for that.
        let timed_out = self.started.elapsed() + Duration::from_millis(5) >= self.limit;
        if !self.done && timed_out {
            let i = self.slot.load(Ordering::Relaxed);
            self.balancer.failed(i, &"no answer before the deadline");
        }
    }
}

impl Service<http::Request<Body>> for Balancer {
    type Response = http::Response<Body>;
    type Error = tonic::codegen::StdError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    /// Always ready: readiness belongs to the endpoint, which is chosen
    /// (and awaited) per call.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            if let Some(tokens) = this.tokens()
                && path != AUTHENTICATE_PATH
            {
                if STREAM_PATHS.contains(&path.as_str()) && tokens.stale_for_stream() {
                    let seen = tokens.generation();
                    if let Err(e) = tokens.refresh(&this, seen).await {
                        // Go on with the old token: the server's answer
                        // reaches the caller, who can act on it.
                        tracing::warn!(%e, "could not refresh the auth token for a stream");
                    }
                }
                if let Some(token) = tokens.header() {
                    req.headers_mut().insert(TOKEN_HEADER, token);
                }
            }
            let i = this.pick();
            let _ = ATTEMPT.try_with(|slot| slot.store(i, Ordering::Relaxed));
            let result = this.shared.members[i].conn.send(req).await;
            if let Err(e) = &result {
                this.failed(i, e);
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RetryPolicy;

    /// Three unreachable endpoints whose set-aside lasts a minute, so no
    /// probe is due during the test.
    fn balancer(endpoints: &[&str]) -> Balancer {
        let slow = RetryPolicy::default()
            .with_initial_backoff(Duration::from_secs(60))
            .with_max_backoff(Duration::from_secs(60))
            .with_jitter(0.0);
        Balancer::new(&ClientConfig::new(endpoints.iter().copied()).with_retry(slow)).unwrap()
    }

    #[tokio::test]
    async fn set_aside_endpoints_get_no_requests() {
        let b = balancer(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        let picks: Vec<usize> = (0..6).map(|_| b.pick()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);

        b.failed(1, &"test");
        assert_eq!(b.set_aside(), ["http://127.0.0.1:2"]);
        assert!((0..6).all(|_| b.pick() != 1));

        // Every endpoint aside: the one due back first is still used.
        b.failed(0, &"test");
        b.failed(2, &"test");
        assert!((0..6).all(|_| b.pick() == 1));

        // An answer from it puts it back in rotation.
        b.succeeded(1);
        assert!((0..6).all(|_| b.pick() == 1));
        assert_eq!(b.set_aside().len(), 2);
    }

    #[tokio::test]
    async fn a_single_endpoint_is_never_set_aside() {
        let b = balancer(&["127.0.0.1:1"]);
        b.failed(0, &"test");
        assert!(b.set_aside().is_empty());
        assert_eq!(b.pick(), 0);
    }

    #[test]
    fn which_failures_blame_the_endpoint() {
        assert!(blames_endpoint(&Status::unavailable(
            "etcdserver: no leader"
        )));
        assert!(blames_endpoint(&kv_proto::errors::TIMEOUT.status()));
        let reset = Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert!(blames_endpoint(&reset));
        assert!(!blames_endpoint(&kv_proto::errors::COMPACTED.status()));
        assert!(!blames_endpoint(
            &kv_proto::errors::INVALID_AUTH_TOKEN.status()
        ));
        assert!(!blames_endpoint(&Status::permission_denied("x")));
    }
}
