//! A write a follower forwards to the leader fails with exactly the status
//! the leader gives its own clients: same gRPC code, same text (no second
//! "invalid argument:" prefix added on the way back).

mod common;

use etcd_client::{Client, LeaseGrantOptions};

use common::cluster::Cluster;
use common::kvd_only;

/// (gRPC code, message) of a lease grant with `id` through `c`.
async fn grant_error(c: &mut Client, id: i64) -> (tonic::Code, String) {
    let err = c
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(id)))
        .await
        .expect_err("the grant must fail");
    match err {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a gRPC status: {other:?}"),
    }
}

#[tokio::test]
async fn a_follower_returns_exactly_the_leaders_error() {
    kvd_only(|| async {
        let c = Cluster::start(3).await;
        let leader = c.leader().await;
        let follower = (leader + 1) % 3;
        let mut on_leader = c.client(leader).await;
        let mut on_follower = c.client(follower).await;

        // Refused when applied on the leader (kvd's own invalid argument):
        // the follower only relays the leader's answer.
        let direct = grant_error(&mut on_leader, -5).await;
        assert_eq!(direct.0, tonic::Code::InvalidArgument, "{direct:?}");
        assert_eq!(direct.1, "lease id must be positive");
        assert_eq!(grant_error(&mut on_follower, -6).await, direct);

        // An error etcd has (exact etcd text), through the same path.
        on_leader
            .lease_grant(60, Some(LeaseGrantOptions::new().with_id(77)))
            .await
            .expect("grant");
        let direct = grant_error(&mut on_leader, 77).await;
        assert_eq!(direct.1, "etcdserver: lease already exists");
        assert_eq!(grant_error(&mut on_follower, 77).await, direct);
    })
    .await;
}
