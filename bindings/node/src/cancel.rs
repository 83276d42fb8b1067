//! Cancellation: the client's close, per-handle cancel and AbortSignals.

use tokio_util::sync::CancellationToken;

/// Why a wait ended early.
pub(crate) enum Stopped {
    /// The client (or the handle) was closed.
    Closed,
    /// The call's canceller fired.
    Aborted,
}

impl From<Stopped> for napi::Error {
    fn from(s: Stopped) -> napi::Error {
        match s {
            Stopped::Closed => crate::errors::closed(),
            Stopped::Aborted => crate::errors::aborted(),
        }
    }
}

/// Runs `fut` unless `closed` or `abort` fires first.
pub(crate) async fn until<T>(
    closed: &CancellationToken,
    abort: Option<&CancellationToken>,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Stopped> {
    let aborted = async {
        match abort {
            Some(t) => t.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = closed.cancelled() => Err(Stopped::Closed),
        _ = aborted => Err(Stopped::Aborted),
        v = fut => Ok(v),
    }
}
