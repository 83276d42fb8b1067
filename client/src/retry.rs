//! The retry policy: which RPCs may be sent again, when, and how long to wait.
//!
//! Every RPC is tagged `Repeatable`:
//! - `Yes` (reads: Range, read-only Txn, Status, MemberList, ...): retried on
//!   any `Unavailable` status (server down, no leader, leader changed, ...)
//!   and on local transport failures (a connection that broke mid-call).
//! - `No` (writes: Put, Delete, Txn with writes, Compact, lease grant and
//!   revoke, ...): retried only when the request surely never reached a
//!   server, i.e. the connection could not even be established. A write that
//!   may have been sent is never sent again, so it is never applied twice.
//!
//! All attempts of one call share the call's deadline (the configured request
//! timeout); the waits between attempts grow exponentially with jitter.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::error::{Error, Result, has_source};

/// Default number of attempts of one call (the first one included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 16;
/// Default wait before the first retry.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(25);
/// Default cap on the wait between two attempts.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Default jitter: each wait is shortened by a random fraction up to this.
pub const DEFAULT_JITTER: f64 = 0.3;

/// Whether an RPC may be sent again after a failure that might have
/// reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repeatable {
    /// Safe to repeat: it changes nothing.
    Yes,
    /// Changes state: repeat only if it was surely never sent.
    No,
}

/// Exponential backoff with jitter, bounded attempts.
///
/// ```
/// use std::time::Duration;
/// use kv_client::RetryPolicy;
/// let p = RetryPolicy::default()
///     .with_max_attempts(5)
///     .with_initial_backoff(Duration::from_millis(10))
///     .with_max_backoff(Duration::from_millis(500));
/// assert_eq!(p.max_attempts(), 5);
/// ```
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            jitter: DEFAULT_JITTER,
        }
    }
}

impl RetryPolicy {
    /// Sets the number of attempts per call, the first included (1 = no retries).
    ///
    /// ```
    /// assert_eq!(kv_client::RetryPolicy::default().with_max_attempts(1).max_attempts(), 1);
    /// ```
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the wait before the first retry (doubled each time after).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let p = kv_client::RetryPolicy::default().with_initial_backoff(Duration::from_millis(5));
    /// assert_eq!(p.initial_backoff(), Duration::from_millis(5));
    /// ```
    pub fn with_initial_backoff(mut self, wait: Duration) -> Self {
        self.initial_backoff = wait;
        self
    }

    /// Sets the cap on the wait between two attempts.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let p = kv_client::RetryPolicy::default().with_max_backoff(Duration::from_secs(2));
    /// assert_eq!(p.max_backoff(), Duration::from_secs(2));
    /// ```
    pub fn with_max_backoff(mut self, wait: Duration) -> Self {
        self.max_backoff = wait;
        self
    }

    /// Sets the jitter fraction in `[0, 1]`: each wait is shortened by a
    /// random part of up to this fraction.
    ///
    /// ```
    /// let p = kv_client::RetryPolicy::default().with_jitter(0.0);
    /// assert_eq!(p.jitter(), 0.0);
    /// ```
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Attempts per call, the first included.
    ///
    /// ```
    /// assert!(kv_client::RetryPolicy::default().max_attempts() >= 1);
    /// ```
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Wait before the first retry.
    ///
    /// ```
    /// # use kv_client::{RetryPolicy, retry::DEFAULT_INITIAL_BACKOFF};
    /// assert_eq!(RetryPolicy::default().initial_backoff(), DEFAULT_INITIAL_BACKOFF);
    /// ```
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// Cap on the wait between two attempts.
    ///
    /// ```
    /// # use kv_client::{RetryPolicy, retry::DEFAULT_MAX_BACKOFF};
    /// assert_eq!(RetryPolicy::default().max_backoff(), DEFAULT_MAX_BACKOFF);
    /// ```
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// Jitter fraction.
    ///
    /// ```
    /// # use kv_client::{RetryPolicy, retry::DEFAULT_JITTER};
    /// assert_eq!(RetryPolicy::default().jitter(), DEFAULT_JITTER);
    /// ```
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The sequence of waits this policy prescribes between attempts: the
    /// one policy shared by the client's calls, watch and lease reconnects
    /// and kv-discovery's background tasks.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let p = kv_client::RetryPolicy::default()
    ///     .with_initial_backoff(Duration::from_millis(10))
    ///     .with_max_backoff(Duration::from_millis(40))
    ///     .with_jitter(0.0);
    /// let mut b = p.backoff();
    /// let waits: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
    /// assert_eq!(waits, [10, 20, 40, 40]);
    /// ```
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self)
    }
}

/// The sequence of waits between attempts (also used by the watch and lease
/// streams to pace their reconnects, and by kv-discovery).
///
/// The exponential sequence comes from [`backon`]'s `ExponentialBuilder`
/// (factor 2, from the initial wait up to the cap, never exhausted). The
/// jitter is applied on top of it by this type rather than by backon's own
/// `with_jitter`, which *adds* up to 100% and so could double a wait past the
/// cap: here a wait is the base *shortened* by a random fraction up to the
/// policy's jitter, so every wait lies in `[(1 - jitter) * base, base]` and
/// never exceeds [`RetryPolicy::max_backoff`].
///
/// ```
/// # use std::time::Duration;
/// let p = kv_client::RetryPolicy::default()
///     .with_initial_backoff(Duration::from_millis(100))
///     .with_jitter(0.5);
/// let d = p.backoff().next_delay();
/// assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
/// ```
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    fn new(policy: &RetryPolicy) -> Backoff {
        let builder = ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(policy.initial_backoff)
            .with_max_delay(policy.max_backoff)
            .without_max_times();
        Backoff {
            builder,
            delays: builder.build(),
            max: policy.max_backoff,
            jitter: policy.jitter,
        }
    }

    /// The next wait: the current base minus jitter; the base then doubles
    /// up to the cap.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let p = kv_client::RetryPolicy::default().with_max_backoff(Duration::from_millis(30));
    /// let mut b = p.backoff();
    /// assert!((0..10).all(|_| b.next_delay() <= Duration::from_millis(30)));
    /// ```
    pub fn next_delay(&mut self) -> Duration {
        // Never exhausted (no max times). backon starts at the initial
        // wait even when it exceeds the cap; the policy's cap wins.
        let base = round_to_micros(self.delays.next().unwrap_or(self.max)).min(self.max);
        let cut = if self.jitter > 0.0 {
            rand::random::<f64>() * self.jitter
        } else {
            0.0
        };
        base.mul_f64(1.0 - cut)
    }

    /// Starts again from the initial wait (after a success).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let p = kv_client::RetryPolicy::default().with_jitter(0.0);
    /// let mut b = p.backoff();
    /// let first = b.next_delay();
    /// b.next_delay();
    /// b.reset();
    /// assert_eq!(b.next_delay(), first);
    /// ```
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

/// backon doubles in `f32`, which drifts by nanoseconds (50.000001ms):
/// rounding to whole microseconds gives back the exact doubles.
fn round_to_micros(d: Duration) -> Duration {
    let micros = (d.as_nanos() + 500) / 1000;
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// Whether the request surely never reached a server: the connection it
/// was to use could not be established.
pub(crate) fn never_sent(status: &Status) -> bool {
    has_source::<tonic::ConnectError>(status)
}

/// Whether the status was made locally from a transport failure (statuses
/// decoded from a server's answer carry no source error). A connection that
/// closed under a call comes as Cancelled ("operation was canceled:
/// connection closed"); tonic's own deadline is Cancelled too, and is no
/// transport failure.
fn local_transport_failure(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
        && status.code() != Code::DeadlineExceeded
        && !has_source::<tonic::TimeoutExpired>(status)
}

/// Whether a failed attempt may be retried.
pub(crate) fn may_retry(repeatable: Repeatable, status: &Status) -> bool {
    never_sent(status)
        || (repeatable == Repeatable::Yes
            && (status.code() == Code::Unavailable || local_transport_failure(status)))
}

/// A request carrying the remaining time as its gRPC deadline.
pub(crate) fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(timeout);
    req
}

/// Runs one unary call under the policy: each attempt gets the time left
/// before `timeout` runs out; failures are retried while [`may_retry`] allows
/// and attempts and time remain.
pub(crate) async fn call<T, F, Fut>(
    policy: &RetryPolicy,
    timeout: Duration,
    repeatable: Repeatable,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
{
    let deadline = Instant::now() + timeout;
    let mut backoff = policy.backoff();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout);
        }
        let status = match tokio::time::timeout(left, attempt(left)).await {
            Err(_) => return Err(Error::Timeout),
            Ok(Ok(resp)) => return Ok(resp.into_inner()),
            Ok(Err(status)) => status,
        };
        if attempts >= policy.max_attempts || !may_retry(repeatable, &status) {
            return Err(Error::from_status(&status));
        }
        let wait = backoff.next_delay();
        if Instant::now() + wait >= deadline {
            // No time left for another attempt: report what went wrong.
            return Err(Error::from_status(&status));
        }
        tracing::debug!(?repeatable, attempts, ?wait, %status, "retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy::default()
            .with_initial_backoff(Duration::from_millis(1))
            .with_max_backoff(Duration::from_millis(4))
            .with_jitter(0.0)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = fast().backoff();
        let waits: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(waits, [1, 2, 4, 4, 4]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 1);
    }

    #[test]
    fn default_sequence_is_exact_and_capped() {
        // backon computes in f32: the waits must still be the exact doubles.
        let mut b = RetryPolicy::default().with_jitter(0.0).backoff();
        let waits: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        let want: Vec<_> = [25, 50, 100, 200, 400, 800, 1000, 1000]
            .map(Duration::from_millis)
            .to_vec();
        assert_eq!(waits, want);
        // An initial wait above the cap is capped (as before backon).
        let p = fast().with_initial_backoff(Duration::from_millis(9));
        assert_eq!(p.backoff().next_delay(), Duration::from_millis(4));
    }

    #[test]
    fn jittered_waits_stay_within_bounds() {
        let mut b = RetryPolicy::default().backoff();
        let mut base = DEFAULT_INITIAL_BACKOFF;
        for _ in 0..200 {
            let d = b.next_delay();
            assert!(
                d <= base && d >= base.mul_f64(1.0 - DEFAULT_JITTER),
                "{d:?} vs {base:?}"
            );
            base = (base * 2).min(DEFAULT_MAX_BACKOFF);
        }
    }

    #[test]
    fn jitter_only_shortens() {
        let p = RetryPolicy::default()
            .with_jitter(0.5)
            .with_initial_backoff(Duration::from_millis(100));
        let mut b = p.backoff();
        let d = b.next_delay();
        assert!(
            d <= Duration::from_millis(100) && d >= Duration::from_millis(50),
            "{d:?}"
        );
    }

    #[test]
    fn connect_failures_are_retried_for_writes_too() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let st = Status::from_error(Box::new(tonic::ConnectError(Box::new(refused))));
        assert_eq!(st.code(), Code::Unavailable);
        assert!(never_sent(&st));
        assert!(may_retry(Repeatable::No, &st));
    }

    #[test]
    fn writes_are_not_retried_on_plain_unavailable() {
        let st = Status::unavailable("etcdserver: no leader");
        assert!(may_retry(Repeatable::Yes, &st));
        assert!(!may_retry(Repeatable::No, &st));
        assert!(!may_retry(Repeatable::Yes, &Status::internal("x")));
        let broken = Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert_eq!(broken.code(), Code::Unknown);
        assert!(may_retry(Repeatable::Yes, &broken));
        assert!(!may_retry(Repeatable::No, &broken));
    }

    #[test]
    fn a_connection_closed_under_a_read_is_retried() {
        // What tonic makes of hyper's "operation was canceled: connection
        // closed" when the server dies during a call.
        let mut closed = Status::cancelled("operation was canceled: connection closed");
        closed.set_source(std::sync::Arc::new(std::io::Error::other(
            "connection closed",
        )));
        assert!(may_retry(Repeatable::Yes, &closed));
        assert!(!may_retry(Repeatable::No, &closed));
        // tonic's own deadline is not a transport failure.
        let mut expired = Status::cancelled("Timeout expired");
        expired.set_source(std::sync::Arc::new(tonic::TimeoutExpired(())));
        assert!(!may_retry(Repeatable::Yes, &expired));
    }

    async fn count_calls(repeatable: Repeatable, status: fn() -> Status) -> (u32, Result<()>) {
        let n = AtomicU32::new(0);
        let r = call(&fast(), Duration::from_secs(5), repeatable, |_| {
            n.fetch_add(1, Ordering::SeqCst);
            let st = status();
            async move { Err::<tonic::Response<()>, _>(st) }
        })
        .await;
        (n.load(Ordering::SeqCst), r)
    }

    #[tokio::test]
    async fn reads_retry_until_attempts_run_out() {
        let (n, r) = count_calls(Repeatable::Yes, || Status::unavailable("down")).await;
        assert_eq!(n, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(r.unwrap_err().stable_code(), "unavailable");
        let (n, _) = count_calls(Repeatable::No, || Status::unavailable("down")).await;
        assert_eq!(n, 1);
        let (n, r) = count_calls(Repeatable::Yes, || kv_proto::errors::COMPACTED.status()).await;
        assert_eq!((n, r.unwrap_err().stable_code()), (1, "compacted"));
    }

    #[tokio::test]
    async fn a_hanging_attempt_times_out() {
        let r: Result<()> = call(&fast(), Duration::from_millis(50), Repeatable::Yes, |_| {
            futures::future::pending()
        })
        .await;
        assert_eq!(r.unwrap_err(), Error::Timeout);
    }
}
