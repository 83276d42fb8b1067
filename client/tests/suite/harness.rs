//! Test-body plumbing shared by the client and discovery suites (the
//! discovery suite includes this file by path): a bound on each body, a
//! bound on each awaited observation, and `on_both!`, which declares one
//! test per server kind. The including crate root must `pub use` this
//! module's items and `server::Kind`.

use std::future::Future;
use std::time::Duration;

use crate::Kind;

/// Upper bound for one test body against one server.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `body` under [`BODY_TIMEOUT`].
pub async fn run<Fut: Future<Output = ()>>(kind: Kind, body: Fut) {
    if tokio::time::timeout(BODY_TIMEOUT, body).await.is_err() {
        panic!("[{kind}] test body did not finish within {BODY_TIMEOUT:?}");
    }
}

/// Awaits `fut`, failing the test if it takes longer than `limit`.
pub async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Declares one `#[tokio::test]` per server kind for an `async fn(Kind)`
/// body.
#[macro_export]
macro_rules! on_both {
    ($($body:ident),* $(,)?) => {
        $(
            mod $body {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn kvd() {
                    $crate::run($crate::Kind::Kvd, super::$body($crate::Kind::Kvd)).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn etcd() {
                    $crate::run($crate::Kind::Etcd, super::$body($crate::Kind::Etcd)).await;
                }
            }
        )*
    };
}
