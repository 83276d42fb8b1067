//! Loopback ports for test servers that stay theirs across restarts.
//!
//! A port found by binding `127.0.0.1:0` comes from the kernel's ephemeral
//! range, which every outgoing connection draws from as well. While a test's
//! member is down (kill -9, then a restart on the same ports), any process's
//! `connect()` or port probe can take that port, and the restart fails with
//! "Address already in use": CI lost a snapshot-install test to exactly that.
//! Ports handed out here lie below the ephemeral range, so no `connect()`
//! picks them, and each is held for the life of this process by an exclusive
//! `flock` on a file in a directory every test process shares, so no other
//! process that asks here gets it either. The kernel drops the locks when
//! the process ends, however it ends.
//!
//! ```
//! let a = kv_robustness::ports::free_port().unwrap();
//! let b = kv_robustness::ports::free_port().unwrap();
//! assert_ne!(a, b);
//! ```

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};
use rand::Rng;

/// Lowest port handed out: above the registered services that listen on a
/// developer's machine, far below the ephemeral range.
const LOWEST: u16 = 20_000;

/// Where the lock files live: one shared path, whatever TMPDIR a test
/// process was given, so every process sees the same locks.
const LOCK_DIR: &str = "/tmp/kv-test-ports";

/// The locks this process holds: kept until it exits.
static HELD: Mutex<Vec<Flock<File>>> = Mutex::new(Vec::new());

/// A loopback port below the ephemeral range that no other user of this
/// module holds and nothing listens on now. It stays reserved for this
/// process until it exits (tests restart members on the same ports).
pub fn free_port() -> std::io::Result<u16> {
    let high = ephemeral_low().max(LOWEST + 1_000);
    let span = high - LOWEST;
    let start = rand::rng().random_range(0..span);
    std::fs::create_dir_all(LOCK_DIR)?;
    for step in 0..span {
        let port = LOWEST + (start + step) % span;
        let Some(lock) = try_lock(port) else {
            continue;
        };
        // Something outside this scheme may listen there: keep the lock
        // (no one else should try it either) and move on.
        let bindable = TcpListener::bind(("127.0.0.1", port)).is_ok();
        HELD.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(lock);
        if bindable {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port in {LOWEST}..{high}"),
    ))
}

/// The exclusive lock on `port`'s file, or None if another holder has it.
fn try_lock(port: u16) -> Option<Flock<File>> {
    let path: PathBuf = [LOCK_DIR, &port.to_string()].iter().collect();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
}

/// The first port of the kernel's ephemeral range (Linux's default if it
/// cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_below_the_ephemeral_range_and_held() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().expect("port")).collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "no port handed out twice");
        for &p in &ports {
            assert!(
                (LOWEST..ephemeral_low()).contains(&p),
                "{p} below the range"
            );
            // A second lock on a held port fails, even from this process
            // (flock locks belong to the open file, not the process).
            assert!(try_lock(p).is_none(), "{p} is held");
            TcpListener::bind(("127.0.0.1", p)).expect("a handed-out port binds");
        }
    }
}
