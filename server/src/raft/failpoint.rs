//! A test hook for network partitions without root: when the environment
//! variable `KVD_FAILPOINT_ISOLATE` names a path, this member drops all peer
//! traffic, in and out, for as long as that path exists. Cluster tests create
//! and remove the file to cut a member off and bring it back.
//!
//! The hook exists only in builds with the `failpoints` cargo feature. The
//! kvd package enables that feature on itself through a dev-dependency, so
//! `cargo test` builds the kvd binary its integration tests spawn with the
//! hook, while `cargo build`/`cargo run --release` (no dev-dependencies)
//! build one where the variable does nothing and `isolated()` is a constant.

/// The variable that arms the hook (in `failpoints` builds).
pub const ISOLATE_ENV: &str = "KVD_FAILPOINT_ISOLATE";

#[cfg(feature = "failpoints")]
mod hook {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    static ISOLATE: OnceLock<Option<PathBuf>> = OnceLock::new();

    pub fn isolated() -> bool {
        match ISOLATE.get_or_init(|| std::env::var_os(super::ISOLATE_ENV).map(PathBuf::from)) {
            None => false,
            Some(path) => path.exists(),
        }
    }
}

/// Whether this member is cut off from its peers right now.
#[cfg(feature = "failpoints")]
pub fn isolated() -> bool {
    hook::isolated()
}

/// Whether this member is cut off from its peers right now: never, in a
/// build without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn isolated() -> bool {
    false
}

/// Whether this build has the failpoints compiled in.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// The status an isolated member's peer requests fail with.
pub fn unreachable() -> tonic::Status {
    tonic::Status::unavailable("peer unreachable (isolated by KVD_FAILPOINT_ISOLATE)")
}
