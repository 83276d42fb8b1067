//! Node.js bindings for kv-client and kv-discovery (napi-rs 3).
//!
//! A thin layer: every class wraps a type of `kv_client` or `kv_discovery`
//! and never speaks gRPC itself. The idiomatic JS API (Error subclasses,
//! async iterators, EventEmitters, AbortSignal) lives in `lib/` and wraps
//! the `Native*` classes generated into `index.js`/`index.d.ts`.
//!
//! Conventions shared by every file:
//! - Errors carry their stable code in the message as `[CODE] text`
//!   ([`errors`]); the JS layer turns that into an Error subclass whose
//!   `code` is `CODE`. (napi's async functions only take its own status
//!   enum, so the code cannot travel in `Error::status`.)
//! - Every long wait (watch, keeper, lock, observe, subscription) also
//!   listens to the client's [`cancel::Stop`], so `close()` settles every
//!   pending promise and the process can exit.
//! - Every future runs under [`guard`]: a panic becomes a rejected promise
//!   with code `INTERNAL`, never a crashed process.

#![deny(clippy::all)]
// napi's macros register nothing under cfg(test), so clippy's test build
// (`--all-targets`) would see every export as dead code.
#![cfg_attr(test, allow(dead_code))]

mod cancel;
mod checks;
mod client;
mod convert;
mod election;
mod errors;
mod kv;
mod lease;
mod lock;
mod registry;
mod txn;
mod watch;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

/// Runs `fut`, turning a panic into an `INTERNAL` error.
pub(crate) async fn guard<T>(fut: impl Future<Output = napi::Result<T>>) -> napi::Result<T> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(%what, "panic in kvclient native code");
            Err(errors::coded("INTERNAL", format!("internal error: {what}")))
        }
    }
}

/// Drops `value` inside the runtime `rt`: a JS finalizer runs outside any
/// Tokio runtime, and the toolkit spawns its background cleanup (unlock,
/// resign, lease revoke) onto the current one. A handle captured at
/// creation keeps working while Node tears the environment down, when
/// napi's own runtime may be gone; and nothing here may unwind into Node.
pub(crate) fn drop_in_runtime<T>(rt: &tokio::runtime::Handle, value: T) {
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let _entered = rt.enter();
        drop(value);
    }));
}

/// Test hook: panics inside an async call, which must reject with code
/// `INTERNAL` instead of crashing the process (`test/errors.test.mjs`).
#[napi_derive::napi]
pub async fn panic_probe_async() -> napi::Result<()> {
    guard(async { panic!("panic probe (async)") }).await
}

/// Test hook: the same for a synchronous call.
#[napi_derive::napi(catch_unwind)]
pub fn panic_probe_sync() -> napi::Result<()> {
    panic!("panic probe (sync)")
}
