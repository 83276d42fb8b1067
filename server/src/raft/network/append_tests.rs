//! An AppendEntries that outlives the wait for it (openraft's deadline drops
//! the call, or the wait's own deadline runs out) keeps running in a task of
//! its own, and openraft's resend of the same range picks its answer up
//! instead of sending the entries again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kv_proto::kvpb::RaftMessage;
use openraft::error::RaftError;
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::{
    BasicNode, CommittedLeaderId, EntryPayload, LogId, RaftNetwork, RaftNetworkFactory, Vote,
};
use tokio::net::TcpListener;

use super::test_peer::answer;
use super::{Entry, Network, NodeId, TypeConfig};
use crate::raft::RaftRequest;

/// A peer that answers every call `delay` after its request arrived, with
/// a successful AppendEntries, and counts the calls it got.
async fn slow_peer(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((req, respond))) = conn.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        while let Some(chunk) = body.data().await {
                            let Ok(chunk) = chunk else { return };
                            let _ = body.flow_control().release_capacity(chunk.len());
                        }
                        tokio::time::sleep(delay).await;
                        let ok: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
                            Ok(AppendEntriesResponse::Success);
                        let data = bincode::serialize(&ok).unwrap();
                        answer(respond, &RaftMessage { data });
                    });
                }
            });
        }
    });
    (url, calls)
}

fn request(index: u64) -> AppendEntriesRequest<TypeConfig> {
    let entry = Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(RaftRequest {
            bytes: vec![7; 1000],
        }),
    };
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        leader_commit: None,
        entries: vec![entry],
    }
}

/// Waits (bounded) until the call left in flight has finished on its own,
/// with nobody awaiting it.
async fn finishes_unattended(peer: &super::Peer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let f = peer
            .inflight
            .as_ref()
            .expect("the call that outlived the wait is kept");
        if f.task.is_finished() {
            return;
        }
        assert!(Instant::now() < deadline, "the call never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_outliving_the_wait_finishes_alone_and_is_not_sent_again() {
    let (url, calls) = slow_peer(Duration::from_millis(300)).await;
    let mut net = Network::new(1);
    let mut peer = net.new_client(2, &BasicNode::new(url)).await;

    // openraft's own deadline drops the call (it wraps ours in a timeout).
    let dropped = tokio::time::timeout(
        Duration::from_millis(50),
        peer.append_entries(request(1), RPCOption::new(Duration::from_secs(10))),
    )
    .await;
    assert!(dropped.is_err());
    finishes_unattended(&peer).await;
    let resent = peer
        .append_entries(request(1), RPCOption::new(Duration::from_secs(10)))
        .await;
    assert!(matches!(resent, Ok(AppendEntriesResponse::Success)));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the resend started over");
    assert!(peer.inflight.is_none());

    // The wait's own deadline runs out.
    let short = peer
        .append_entries(request(2), RPCOption::new(Duration::from_millis(50)))
        .await;
    assert!(short.is_err());
    finishes_unattended(&peer).await;
    let resent = peer
        .append_entries(request(2), RPCOption::new(Duration::from_secs(10)))
        .await;
    assert!(matches!(resent, Ok(AppendEntriesResponse::Success)));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the resend started over");

    // A different range is a new call.
    let other = peer
        .append_entries(request(3), RPCOption::new(Duration::from_secs(10)))
        .await;
    assert!(matches!(other, Ok(AppendEntriesResponse::Success)));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
