//! Accepting TLS connections: handshakes run concurrently, each in its own
//! task with a deadline, so a slow or silent client cannot hold up the
//! others; only finished handshakes reach the gRPC server.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// A handshake not done by then is dropped (etcd's clients finish in
/// milliseconds; this is for the ones that never will).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress per listener; a connection beyond it is
/// closed at once, so a flood of half-open connections stays bounded.
const MAX_HANDSHAKES: usize = 256;
/// Finished connections waiting for the gRPC server to take them.
const READY_QUEUE: usize = 64;
/// Pause after a failed accept (say, out of file descriptors) so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The TLS connections accepted on `listener` until `stop` turns true or
/// the stream is dropped. Failed handshakes (plaintext clients, untrusted
/// or missing client certificates) are logged and never yielded.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    stop: watch::Receiver<bool>,
) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Send + 'static {
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    tokio::spawn(accept_loop(listener, acceptor, stop, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    stop: watch::Receiver<bool>,
    tx: mpsc::Sender<std::io::Result<TlsStream<TcpStream>>>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let stopped = crate::grpc::stopped(stop);
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            _ = tx.closed() => return,
            a = listener.accept() => a,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many TLS handshakes in progress: closing the connection");
            continue;
        };
        // Without it, Nagle plus the peer's delayed ACK holds small replies.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(Ok(stream)).await;
                }
                // etcd logs a refused handshake as "rejected connection".
                Ok(Err(e)) => {
                    tracing::info!(%addr, error = %e, "rejected connection: TLS handshake failed")
                }
                Err(_) => tracing::info!(%addr, "rejected connection: TLS handshake timed out"),
            }
        });
    }
}
