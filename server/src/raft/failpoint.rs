//! A test hook for network partitions without root: when the environment
//! variable `KVD_FAILPOINT_ISOLATE` names a path, this member drops all peer
//! traffic, in and out, for as long as that path exists. Cluster tests create
//! and remove the file to cut a member off and bring it back. Unset (always,
//! outside tests) it costs one branch per peer request.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The variable that arms the hook.
pub const ISOLATE_ENV: &str = "KVD_FAILPOINT_ISOLATE";

static ISOLATE: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Whether this member is cut off from its peers right now.
pub fn isolated() -> bool {
    match ISOLATE.get_or_init(|| std::env::var_os(ISOLATE_ENV).map(PathBuf::from)) {
        None => false,
        Some(path) => path.exists(),
    }
}

/// The status an isolated member's peer requests fail with.
pub fn unreachable() -> tonic::Status {
    tonic::Status::unavailable("peer unreachable (isolated by KVD_FAILPOINT_ISOLATE)")
}
