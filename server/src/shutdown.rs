//! Graceful shutdown on SIGTERM or SIGINT, in etcd's order: stop taking
//! client connections and let in-flight requests finish (bounded), hand
//! leadership to another voter when this member leads, then stop the peer
//! server and raft. A second signal ends the process at once.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::KvError;
use crate::node::Node;

/// How long in-flight client (then peer) requests may take to finish after
/// the listeners close; long-lived streams (watches) are cut after it.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Voters tried in turn as the new leader; each try is bounded by
/// `Node::move_leader`'s own deadline (a few election timeouts), and only
/// a quick failure leads to a second try.
const TRANSFER_TRIES: usize = 2;

/// SIGTERM and SIGINT, caught from start-up on.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers (from now on neither signal kills the process).
    pub fn install() -> io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the first SIGTERM or SIGINT and returns its name.
    pub async fn first(&mut self) -> &'static str {
        next(&mut self.term, &mut self.int).await.0
    }

    /// From now on the next SIGTERM or SIGINT exits the process at once,
    /// with the shell's status for death by that signal (128 + its number),
    /// so supervisors see that the graceful path was cut short.
    pub fn exit_on_next(mut self) {
        tokio::spawn(async move {
            let (name, code) = next(&mut self.term, &mut self.int).await;
            tracing::warn!(
                signal = name,
                "received a second signal while shutting down: exiting at once"
            );
            std::process::exit(code);
        });
    }
}

async fn next(term: &mut Signal, int: &mut Signal) -> (&'static str, i32) {
    tokio::select! {
        _ = term.recv() => ("SIGTERM", 128 + libc_signo::TERM),
        _ = int.recv() => ("SIGINT", 128 + libc_signo::INT),
    }
}

/// Signal numbers (the same on every Unix kvd builds for).
mod libc_signo {
    pub const INT: i32 = 2;
    pub const TERM: i32 = 15;
}

/// The running servers that [`graceful`] winds down.
pub struct Servers<E> {
    /// Turned true to close the client listeners.
    pub client_stop: watch::Sender<bool>,
    pub client: JoinHandle<Result<(), E>>,
    /// Turned true to close the peer listeners.
    pub peer_stop: watch::Sender<bool>,
    pub peer: JoinHandle<Result<(), E>>,
}

/// Stops this member without losing acknowledged work and, when it leads
/// a cluster with other voters, without making clients wait out an election.
pub async fn graceful<E: std::fmt::Display>(node: &Arc<Node>, servers: Servers<E>) {
    let _ = servers.client_stop.send(true);
    drain("client", servers.client).await;
    hand_over_leadership(node).await;
    let _ = servers.peer_stop.send(true);
    drain("peer", servers.peer).await;
    node.shutdown().await;
    tracing::info!("stopped kvd server");
}

/// Waits for a server task to finish its in-flight requests, up to
/// [`DRAIN_TIMEOUT`]; then cuts what is left.
async fn drain<E: std::fmt::Display>(what: &str, mut task: JoinHandle<Result<(), E>>) {
    match tokio::time::timeout(DRAIN_TIMEOUT, &mut task).await {
        Ok(Ok(Ok(()))) => tracing::info!(server = what, "in-flight requests finished"),
        Ok(Ok(Err(e))) => tracing::warn!(server = what, error = %e, "server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(server = what, error = %e, "server task failed"),
        Err(_) => {
            tracing::warn!(
                server = what,
                timeout = ?DRAIN_TIMEOUT,
                "requests still open after the drain timeout: closing them"
            );
            task.abort();
        }
    }
}

/// etcd's TransferLeadership at stop: a leader with other voters hands
/// leadership to the most up-to-date one, so the cluster does not wait an
/// election timeout for a new leader.
pub async fn hand_over_leadership(node: &Node) {
    if !node.is_leader() {
        tracing::info!("skipped leadership transfer; local server is not leader");
        return;
    }
    let candidates = node.transfer_candidates();
    if candidates.is_empty() {
        tracing::info!("skipped leadership transfer for single voting member cluster");
        return;
    }
    for target in candidates.into_iter().take(TRANSFER_TRIES) {
        let transferee = format!("{target:x}");
        tracing::info!(%transferee, "leadership transfer starting");
        match node.move_leader(target).await {
            Ok(()) => {
                tracing::info!(%transferee, "leadership transfer finished");
                return;
            }
            // Someone else won meanwhile: nothing left to hand over.
            Err(_) if !node.is_leader() => return,
            Err(e) => {
                tracing::warn!(%transferee, error = %e, "leadership transfer failed");
                // A timeout used the whole budget: stop rather than double
                // the shutdown time; other failures are quick, try the next.
                if matches!(e, KvError::LeaderTransferTimeout) {
                    return;
                }
            }
        }
    }
}
