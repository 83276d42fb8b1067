//! The peer connection (conn.rs) against a bare h2 server: what tonic's
//! `Channel` gave the peer calls and the h2 connection must keep.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kv_proto::kvpb::RaftMessage;
use tokio::net::TcpListener;

use super::test_peer::answer;
use super::{Network, CLUSTER_ID_HEADER, TO_MEMBER_HEADER};

/// A gRPC server that answers every unary call with a `RaftMessage` whose
/// data is the request's cluster-ID and to-member headers, and counts the
/// connections it accepted. `close` ends every connection it holds.
struct EchoServer {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    close: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl EchoServer {
    async fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (close, closed) = tokio::sync::watch::channel(0u64);
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let mut closed = closed.clone();
                drop(closed.borrow_and_update());
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    loop {
                        let next = tokio::select! {
                            next = conn.accept() => next,
                            _ = closed.changed() => return,
                        };
                        let Some(Ok((req, respond))) = next else {
                            return;
                        };
                        tokio::spawn(async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .map(|v| v.as_bytes().to_vec())
                                    .unwrap_or_default()
                            };
                            let mut data = header(CLUSTER_ID_HEADER);
                            data.push(b'/');
                            data.extend(header(TO_MEMBER_HEADER));
                            let mut body = req.into_body();
                            while let Some(chunk) = body.data().await {
                                if chunk.is_err() {
                                    return;
                                }
                            }
                            answer(respond, &RaftMessage { data });
                        });
                    }
                });
            }
        });
        EchoServer {
            addr,
            accepted,
            close,
            task,
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
        self.close.send_modify(|n| *n += 1);
    }
}

/// Calls go over one connection, carry the cluster ID and the target
/// member, and after the peer closed the connection a later call
/// connects again (a call in flight then may fail; none is repeated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_share_a_connection_carry_the_cluster_id_and_reconnect() {
    let server = EchoServer::start().await;
    let net = Network::new(0xabc);
    let url = format!("http://{}", server.addr);
    for _ in 0..3 {
        let mut client = net.client(0x12, &url).unwrap();
        let got = client.vote(RaftMessage { data: vec![1; 100] }).await;
        assert_eq!(got.unwrap().into_inner().data, b"abc/12");
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);

    server.close.send_modify(|n| *n += 1);
    let mut answered = false;
    for _ in 0..100 {
        let mut client = net.client(0x12, &url).unwrap();
        if let Ok(got) = client.vote(RaftMessage { data: vec![2] }).await {
            assert_eq!(got.into_inner().data, b"abc/12");
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        answered,
        "no call got through after the peer closed its connection"
    );
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
}

/// A peer that is not listening is Unavailable (what `Channel` reported,
/// and what raft's network turns into `Unreachable`, so openraft backs off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let net = Network::new(1);
    let mut client = net.client(2, &format!("http://{addr}")).unwrap();
    let err = client.vote(RaftMessage { data: vec![] }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
}

/// An https peer URL keeps tonic's `Channel` with the peer TLS settings;
/// without them it is refused when the connection is set up.
#[test]
fn https_peers_need_the_peer_tls_settings() {
    let net = Network::new(1);
    let err = net.channel(2, "https://127.0.0.1:1").err();
    assert!(err.is_some_and(|e| e.contains("https")));
}
