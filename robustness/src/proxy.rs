//! A TCP proxy in front of one member's peer port, so the harness can delay
//! and cut traffic between members without root: members advertise the
//! proxy's port as their peer URL, so every peer connection *to* a member
//! (requests in, its answers out) passes through that member's proxy.
//!
//! Each chunk read is stamped with a delivery time `now + delay + jitter`
//! and written no earlier than that; a connection keeps its byte order
//! (a chunk never overtakes the one before it). The queue per direction is
//! bounded, so a slow side pushes back through TCP flow control.
//!
//! Partitions (used for etcd, which has no isolation hook like kvd's): an
//! isolated proxy refuses and cuts every connection to its member; a proxy
//! can also refuse and cut the connections *from* a given member. etcd's
//! raft transport names its sender in every request it opens (the
//! `X-PeerURLs` header carries the sender's advertised URL, that is its
//! proxy's port), so the proxy reads the request head of each new
//! connection to learn where it comes from. Requests without that header
//! (etcd's forwarded lease renewals, version probes) are let through.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Chunks in flight per direction of one connection.
const QUEUE: usize = 256;
/// Largest chunk read at once.
const CHUNK: usize = 64 * 1024;
/// Most bytes read to find the end of a connection's request head.
const HEAD_LIMIT: usize = 16 * 1024;
/// How long a new connection may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The header etcd's peers name their advertised URLs in (lower case).
const PEER_URLS_HEADER: &str = "x-peerurls:";

/// The proxy's settings, shared with its connections.
#[derive(Debug)]
struct Shared {
    base_ms: AtomicU64,
    jitter_ms: AtomicU64,
    /// Every connection to the member is refused.
    isolated: AtomicBool,
    /// Connections from members advertising these (proxy) ports are refused.
    blocked: Mutex<HashSet<u16>>,
    /// Bumped whenever a cut is made, so open connections look again.
    cuts: watch::Sender<u64>,
}

impl Shared {
    /// Whether a connection from `source` (its proxy port, if known) must go.
    fn refuses(&self, source: Option<u16>) -> bool {
        if self.isolated.load(Ordering::Relaxed) {
            return true;
        }
        let blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        source.is_some_and(|p| blocked.contains(&p))
    }

    fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// A running proxy; dropping it stops accepting (open connections end when
/// either side closes).
pub struct Proxy {
    /// The port members connect to.
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: u16) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            base_ms: AtomicU64::new(0),
            jitter_ms: AtomicU64::new(0),
            isolated: AtomicBool::new(false),
            blocked: Mutex::new(HashSet::new()),
            cuts: watch::Sender::new(0),
        });
        let d = shared.clone();
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
        Ok(Proxy { port, shared, task })
    }

    /// Sets the added latency (each chunk: `base` plus up to `jitter`).
    pub fn set_delay(&self, base: Duration, jitter: Duration) {
        self.shared
            .base_ms
            .store(base.as_millis() as u64, Ordering::Relaxed);
        self.shared
            .jitter_ms
            .store(jitter.as_millis() as u64, Ordering::Relaxed);
    }

    /// Refuses (`on`) every connection to the member, cutting open ones.
    pub fn set_isolated(&self, on: bool) {
        self.shared.isolated.store(on, Ordering::Relaxed);
        self.shared.cut();
    }

    /// Refuses (`on`) connections from the member whose proxy listens on
    /// `source`, cutting open ones.
    pub fn block_source(&self, source: u16, on: bool) {
        {
            let mut blocked = self
                .shared
                .blocked
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if on {
                blocked.insert(source);
            } else {
                blocked.remove(&source);
            }
        }
        self.shared.cut();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the first bytes of a connection, up to the end of an HTTP request
/// head (or [`HEAD_LIMIT`], EOF, or [`HEAD_TIMEOUT`]): what it read, and the
/// sender's proxy port if the head names one.
async fn read_head(down: &mut TcpStream) -> (Vec<u8>, Option<u16>) {
    let mut head = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + HEAD_TIMEOUT;
    while head.len() < HEAD_LIMIT && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, down.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let source = sender_port(&head);
    (head, source)
}

/// The port of the first URL in an `X-PeerURLs` header of `head`.
fn sender_port(head: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(head);
    let line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with(PEER_URLS_HEADER))?;
    let urls = line.get(PEER_URLS_HEADER.len()..)?;
    let first = urls.split(',').next()?.trim().trim_end_matches('/');
    first.rsplit(':').next()?.parse().ok()
}

async fn relay(mut down: TcpStream, mut up: TcpStream, shared: Arc<Shared>) {
    let mut cuts = shared.cuts.subscribe();
    let (head, source) = read_head(&mut down).await;
    if shared.refuses(source) || up.write_all(&head).await.is_err() {
        return;
    }
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (dr, dw) = down.into_split();
    let (ur, uw) = up.into_split();
    // Each direction half-closes its output at EOF; the peer then closes
    // its side, which ends the other direction.
    let mut a = tokio::spawn(pump(dr, uw, shared.clone()));
    let mut b = tokio::spawn(pump(ur, dw, shared.clone()));
    let cut = async {
        loop {
            if cuts.changed().await.is_err() {
                // The proxy is gone: never cut.
                std::future::pending::<()>().await;
            }
            if shared.refuses(source) {
                return;
            }
        }
    };
    tokio::select! {
        _ = async { let _ = (&mut a).await; let _ = (&mut b).await; } => {}
        () = cut => {
            // Aborting the pumps drops both sockets: the connection closes
            // on both sides, as a cut link eventually would.
            a.abort();
            b.abort();
        }
    }
}

/// Copies `r` to `w`, each chunk delivered after the current delay.
async fn pump<R, W>(mut r: R, mut w: W, delay: Arc<Shared>)
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

    /// Sends an HTTP-like request head naming `from` as the sender's port
    /// and reads the echo; whether the proxy relayed it.
    async fn round_trip(s: &mut TcpStream, from: u16) -> bool {
        let head =
            format!("GET /raft/stream HTTP/1.1\r\nX-Peerurls: http://127.0.0.1:{from}\r\n\r\n");
        if s.write_all(head.as_bytes()).await.is_err() {
            return false;
        }
        let mut back = vec![0u8; head.len()];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back)).await,
            Ok(Ok(_))
        ) && back == head.as_bytes()
    }

    /// A blocked sender's open connection is cut and new ones are refused,
    /// another sender's pass; isolation refuses everyone; both heal.
    #[tokio::test]
    async fn cuts_blocked_senders_and_isolated_members() {
        let proxy = Proxy::start(echo().await).await.expect("proxy");
        let connect = || TcpStream::connect(("127.0.0.1", proxy.port));
        let mut from_a = connect().await.expect("connect");
        let mut from_b = connect().await.expect("connect");
        assert!(round_trip(&mut from_a, 1111).await);
        assert!(round_trip(&mut from_b, 2222).await);

        proxy.block_source(1111, true);
        let mut buf = [0u8; 1];
        // The open connection from the blocked sender is closed.
        let read = tokio::time::timeout(Duration::from_secs(10), from_a.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        assert!(!round_trip(&mut connect().await.expect("connect"), 1111).await);
        assert!(round_trip(&mut from_b, 2222).await);
        assert!(round_trip(&mut connect().await.expect("connect"), 2222).await);

        proxy.block_source(1111, false);
        assert!(round_trip(&mut connect().await.expect("connect"), 1111).await);

        proxy.set_isolated(true);
        assert!(!round_trip(&mut from_b, 2222).await);
        assert!(!round_trip(&mut connect().await.expect("connect"), 3333).await);
        proxy.set_isolated(false);
        assert!(round_trip(&mut connect().await.expect("connect"), 3333).await);
    }

    #[test]
    fn finds_the_sender_in_a_request_head() {
        let head = b"POST /raft HTTP/1.1\r\nHost: x\r\nX-Peerurls: http://127.0.0.1:4242,http://127.0.0.1:5\r\n\r\n";
        assert_eq!(sender_port(head), Some(4242));
        assert_eq!(sender_port(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), None);
    }
}
