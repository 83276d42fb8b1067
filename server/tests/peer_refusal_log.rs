//! A peer that keeps sending with another cluster's ID (a misconfigured
//! member retries many times a second) is refused every time, but logged
//! at most once per peer address per interval, with the count of refusals
//! the log left out.

mod common;

use std::time::{Duration, Instant};

use kv_proto::kvpb::peer_client::PeerClient;
use kv_proto::kvpb::PreVoteRequest;

use common::{kvd_only, Kind, Server};

/// kvd's interval (node/refusals.rs): one line per peer and interval.
const EVERY: Duration = Duration::from_secs(10);
const REFUSAL_LINE: &str = "refused a peer request from another cluster";

#[tokio::test]
async fn refused_peer_requests_are_logged_at_most_once_per_interval() {
    kvd_only(|| async {
        let srv = Server::start(Kind::Kvd).await;
        let mut p = PeerClient::connect(srv.peer_url())
            .await
            .expect("connect to the peer port");
        let sends = 60;
        let started = Instant::now();
        for _ in 0..sends {
            let mut req = tonic::Request::new(PreVoteRequest::default());
            req.metadata_mut()
                .insert("x-kvd-cluster-id", "deadbeef".parse().expect("header"));
            let err = p.pre_vote(req).await.expect_err("refused");
            assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
            assert!(err.message().contains("cluster ID mismatch"), "{err:?}");
        }
        // The bound follows from how long the sends took, not from a guess
        // at the machine's speed: one line, plus one per interval elapsed.
        let intervals = started.elapsed().as_secs() / EVERY.as_secs();
        let log = srv.log_tail(100_000);
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(REFUSAL_LINE)).collect();
        assert!(
            !lines.is_empty() && lines.len() as u64 <= 1 + intervals,
            "{} refusal lines for {sends} refusals in {intervals} intervals:\n{}",
            lines.len(),
            lines.join("\n")
        );
        // Each line names the peer and counts what it left out.
        assert!(lines[0].contains("peer=127.0.0.1:"), "{}", lines[0]);
        assert!(lines[0].contains("suppressed=0"), "{}", lines[0]);
        for l in &lines[1..] {
            assert!(!l.contains("suppressed=0"), "{l}");
        }
    })
    .await;
}
