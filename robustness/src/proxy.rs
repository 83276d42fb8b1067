//! A TCP proxy in front of one member's peer port, so the harness can delay
//! traffic between members without root: members advertise the proxy's port
//! as their peer URL, so every peer connection *to* a member (requests in,
//! its answers out) passes through that member's proxy.
//!
//! Each chunk read is stamped with a delivery time `now + delay + jitter`
//! and written no earlier than that; a connection keeps its byte order
//! (a chunk never overtakes the one before it). The queue per direction is
//! bounded, so a slow side pushes back through TCP flow control.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks in flight per direction of one connection.
const QUEUE: usize = 256;
/// Largest chunk read at once.
const CHUNK: usize = 64 * 1024;

/// The delay the proxy adds, shared with its connections.
#[derive(Debug, Default)]
struct Delay {
    base_ms: AtomicU64,
    jitter_ms: AtomicU64,
}

/// A running proxy; dropping it stops accepting (open connections end when
/// either side closes).
pub struct Proxy {
    /// The port members connect to.
    pub port: u16,
    delay: Arc<Delay>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: u16) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let delay = Arc::new(Delay::default());
        let d = delay.clone();
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let d = d.clone();
                tokio::spawn(async move {
                    // The member may be down (killed): then the caller sees
                    // the connection close, as it would without a proxy.
                    if let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        relay(down, up, d).await;
                    }
                });
            }
        });
        Ok(Proxy { port, delay, task })
    }

    /// Sets the added latency (each chunk: `base` plus up to `jitter`).
    pub fn set_delay(&self, base: Duration, jitter: Duration) {
        self.delay
            .base_ms
            .store(base.as_millis() as u64, Ordering::Relaxed);
        self.delay
            .jitter_ms
            .store(jitter.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(down: TcpStream, up: TcpStream, delay: Arc<Delay>) {
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (dr, dw) = down.into_split();
    let (ur, uw) = up.into_split();
    // Each direction half-closes its output at EOF; the peer then closes
    // its side, which ends the other direction.
    let a = tokio::spawn(pump(dr, uw, delay.clone()));
    let b = tokio::spawn(pump(ur, dw, delay));
    let _ = tokio::join!(a, b);
}

/// Copies `r` to `w`, each chunk delivered after the current delay.
async fn pump<R, W>(mut r: R, mut w: W, delay: Arc<Delay>)
where
    R: AsyncReadExt + Unpin + Send + 'static,
    W: AsyncWriteExt + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    let mut last = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let base = delay.base_ms.load(Ordering::Relaxed);
        let jitter = delay.jitter_ms.load(Ordering::Relaxed);
        let extra = if jitter > 0 {
            rand::rng().random_range(0..=jitter)
        } else {
            0
        };
        // Never before the previous chunk: TCP keeps order.
        let at = (Instant::now() + Duration::from_millis(base + extra)).max(last);
        last = at;
        if tx.send((at, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a free port.
    async fn echo() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    /// Bytes pass unchanged and in order, with and without a delay, and a
    /// delayed round trip takes at least the delay twice (a lower bound
    /// the proxy's own sleeps guarantee, not a wall-clock expectation).
    #[tokio::test]
    async fn relays_in_order_and_delays() {
        let proxy = Proxy::start(echo().await).await.expect("proxy");
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port))
            .await
            .expect("connect");
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        s.write_all(&sent).await.expect("write");
        let mut got = vec![0u8; sent.len()];
        s.read_exact(&mut got).await.expect("read");
        assert!(got == sent, "bytes changed or reordered without a delay");

        proxy.set_delay(Duration::from_millis(40), Duration::from_millis(20));
        let started = Instant::now();
        for round in 0..5u8 {
            let msg: Vec<u8> = (0..1000u32).map(|i| (i as u8) ^ round).collect();
            s.write_all(&msg).await.expect("write");
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back).await.expect("read");
            assert!(back == msg, "bytes changed or reordered under jitter");
        }
        assert!(
            started.elapsed() >= Duration::from_millis(5 * 2 * 40),
            "the delay was not applied"
        );
    }
}
