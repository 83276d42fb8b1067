//! `version`: prints kvctl's version and the API version it speaks.

use super::Output;

/// The etcd API version kvctl speaks.
pub const API_VERSION: &str = "3.5";

/// Runs `version` (no RPC).
pub fn run() -> Output {
    Output::Version {
        version: env!("CARGO_PKG_VERSION").to_string(),
        api_version: API_VERSION.to_string(),
    }
}
