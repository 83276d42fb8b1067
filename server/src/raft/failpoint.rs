//! A test hook for network partitions without root: when the environment
//! variable `KVD_FAILPOINT_ISOLATE` names a path, this member drops all peer
//! traffic, in and out, for as long as that path exists. Cluster tests create
//! and remove the file to cut a member off and bring it back.
//!
//! Disk failpoints for the WAL writer (`storage/wal.rs`): the variable
//! `KVD_FAILPOINTS` (fixed at start) and the file named by
//! `KVD_FAILPOINTS_FILE` (re-read at every WAL write and fsync, so a harness
//! can arm and disarm them while kvd runs) hold `point=action` pairs
//! separated by `,` or `;`. Points: `wal-write` (one record appended),
//! `wal-fsync` (flush + fdatasync). Actions: `eio`, `enospc` (the operation
//! fails with that errno), `sleep(N)` (N ms before the operation), and, on
//! `wal-write` only, `drop`: a planted bug for negative controls, the record
//! is silently not written while the append reports success.
//!
//! They also hold `apply-entry=sleep(N)`: the applier waits N ms (without
//! blocking a thread) before each entry it applies, re-read per entry, for
//! tests of the apply-lag refusal (`apply/mod.rs`).
//! `compaction-batch=sleep(N)` likewise holds each batch of the background
//! compaction's row deletions (`mvcc/compactor.rs`).
//!
//! The same variables hold `backend-commit` (`eio`, `enospc`, `sleep(N)`),
//! run just before the backend (redb) commits an applied batch
//! (`mvcc/store.rs`): a failed commit must stop the member, as a failed
//! bolt commit stops etcd.
//!
//! The hooks exist only in builds with the `failpoints` cargo feature. The
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

/// The variable with disk failpoints fixed at start (in `failpoints` builds).
pub const DISK_ENV: &str = "KVD_FAILPOINTS";
/// The variable naming a file of disk failpoints read at every WAL operation.
pub const DISK_FILE_ENV: &str = "KVD_FAILPOINTS_FILE";

/// A point in the WAL writer where a disk fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalPoint {
    /// Appending one record to the active segment.
    Write,
    /// Flushing and fdatasyncing the active segment.
    Fsync,
}

impl WalPoint {
    /// The point's name in a failpoint spec.
    pub fn name(self) -> &'static str {
        match self {
            WalPoint::Write => "wal-write",
            WalPoint::Fsync => "wal-fsync",
        }
    }
}

/// Runs the disk failpoint at `point`: sleeps or fails as configured.
/// `Ok(true)` means "skip the operation and report success" (the planted
/// `drop` bug); `Ok(false)` means go on as normal.
#[cfg(feature = "failpoints")]
pub fn wal(point: WalPoint) -> std::io::Result<bool> {
    disk::run(point)
}

/// Runs the disk failpoint at `point`: nothing, in a build without the
/// `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn wal(_point: WalPoint) -> std::io::Result<bool> {
    Ok(false)
}

/// Runs the `backend-commit` disk failpoint: sleeps or fails as configured.
#[cfg(feature = "failpoints")]
pub fn backend_commit() -> std::io::Result<()> {
    disk::run_named(BACKEND_COMMIT, false).map(|_| ())
}

/// Runs the `backend-commit` disk failpoint: nothing, in a build without
/// the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn backend_commit() -> std::io::Result<()> {
    Ok(())
}

/// The failpoint at the backend's commit of an applied batch.
pub const BACKEND_COMMIT: &str = "backend-commit";

/// The failpoint before each applied entry: `apply-entry=sleep(N)` makes
/// the applier wait N ms per entry (a slow applier, for the apply-lag
/// refusal). Only `sleep(N)` means anything here.
pub const APPLY_ENTRY: &str = "apply-entry";

/// How long the applier waits before its next entry, when the
/// `apply-entry=sleep(N)` failpoint is armed. Read again for every entry, so
/// removing it from the file lets the applier catch up at once. The applier
/// awaits the delay rather than blocking a runtime thread.
#[cfg(feature = "failpoints")]
pub fn apply_entry_delay() -> Option<std::time::Duration> {
    disk::sleep_named(APPLY_ENTRY)
}

/// How long the applier waits before its next entry: never, in a build
/// without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn apply_entry_delay() -> Option<std::time::Duration> {
    None
}

/// The failpoint before each batch of background compaction:
/// `compaction-batch=sleep(N)` holds the deletion of compacted rows N ms
/// per batch, so tests can look at a store whose compaction is recorded but
/// whose rows are not deleted yet. Only `sleep(N)` means anything here.
pub const COMPACTION_BATCH: &str = "compaction-batch";

/// How long the background compaction waits before its next batch, when the
/// `compaction-batch=sleep(N)` failpoint is armed (read again per batch).
#[cfg(feature = "failpoints")]
pub fn compaction_batch_delay() -> Option<std::time::Duration> {
    disk::sleep_named(COMPACTION_BATCH)
}

/// How long the background compaction waits before its next batch: never,
/// in a build without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn compaction_batch_delay() -> Option<std::time::Duration> {
    None
}

#[cfg(feature = "failpoints")]
mod disk {
    use std::path::PathBuf;
    use std::sync::OnceLock;
    use std::time::Duration;

    use super::WalPoint;

    // Linux errno values; the hooks only run in test builds on Linux.
    const EIO: i32 = 5;
    const ENOSPC: i32 = 28;

    struct Armed {
        fixed: String,
        file: Option<PathBuf>,
    }

    static ARMED: OnceLock<Armed> = OnceLock::new();

    pub fn run(point: WalPoint) -> std::io::Result<bool> {
        run_named(point.name(), point == WalPoint::Write)
    }

    /// Runs the failpoint named `point`; `drop` applies only where `may_drop`.
    pub fn run_named(point: &str, may_drop: bool) -> std::io::Result<bool> {
        let armed = ARMED.get_or_init(|| Armed {
            fixed: std::env::var(super::DISK_ENV).unwrap_or_default(),
            file: std::env::var_os(super::DISK_FILE_ENV).map(PathBuf::from),
        });
        let from_file = armed
            .file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let mut skip = false;
        for spec in [armed.fixed.as_str(), from_file.as_str()] {
            for pair in spec.split([',', ';', '\n']) {
                let Some((name, action)) = pair.trim().split_once('=') else {
                    continue;
                };
                if name.trim() != point {
                    continue;
                }
                let action = action.trim();
                match action {
                    "eio" => return Err(std::io::Error::from_raw_os_error(EIO)),
                    "enospc" => return Err(std::io::Error::from_raw_os_error(ENOSPC)),
                    "drop" if may_drop => skip = true,
                    _ => {
                        let ms = action
                            .strip_prefix("sleep(")
                            .and_then(|a| a.strip_suffix(')'))
                            .and_then(|n| n.parse::<u64>().ok());
                        match ms {
                            // Bounded so a typo cannot hang a test forever.
                            Some(ms) => std::thread::sleep(Duration::from_millis(ms.min(60_000))),
                            None => {
                                tracing::warn!(point, action, "unknown failpoint action ignored")
                            }
                        }
                    }
                }
            }
        }
        Ok(skip)
    }

    /// The `sleep(N)` armed for `point`, if any (the longest when several
    /// are), for a caller that waits asynchronously. Capped as above.
    pub fn sleep_named(point: &str) -> Option<Duration> {
        let armed = ARMED.get_or_init(|| Armed {
            fixed: std::env::var(super::DISK_ENV).unwrap_or_default(),
            file: std::env::var_os(super::DISK_FILE_ENV).map(PathBuf::from),
        });
        let from_file = armed
            .file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        [armed.fixed.as_str(), from_file.as_str()]
            .into_iter()
            .flat_map(|spec| spec.split([',', ';', '\n']))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| name.trim() == point)
            .filter_map(|(_, action)| {
                action
                    .trim()
                    .strip_prefix("sleep(")
                    .and_then(|a| a.strip_suffix(')'))
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .max()
            .map(|ms| Duration::from_millis(ms.min(60_000)))
    }
}

/// Whether this build has the failpoints compiled in.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// The status an isolated member's peer requests fail with.
pub fn unreachable() -> tonic::Status {
    tonic::Status::unavailable("peer unreachable (isolated by KVD_FAILPOINT_ISOLATE)")
}
