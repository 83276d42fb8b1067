//! Lease keep-alives sent to a follower: renewed at the leader (where the
//! deadlines live, as in etcd) and answered by the follower on the stream.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::kvd_only;

#[tokio::test]
async fn keep_alive_on_a_follower_renews_at_the_leader() {
    kvd_only(|| async {
        let c = Cluster::start(3).await;
        let leader = c.leader().await;
        let follower = (leader + 1) % 3;
        let mut f = c.client(follower).await;
        let id = f.lease_grant(5, None).await.expect("grant").id();
        let (mut keeper, mut stream) = f.lease_keep_alive(id).await.expect("keep-alive");
        // Let the deadline run down, so only a renewal at the leader puts
        // it back to a full TTL.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for _ in 0..3 {
            keeper.keep_alive().await.expect("send keep-alive");
            let r = stream
                .message()
                .await
                .expect("answer")
                .expect("stream open");
            assert_eq!((r.id(), r.ttl()), (id, 5), "answer on the follower");
        }
        let mut l = c.client(leader).await;
        let ttl = l
            .lease_time_to_live(id, None)
            .await
            .expect("ttl at the leader")
            .ttl();
        assert!(ttl >= 4, "leader reports {ttl}s left after the renewals");

        // Revoked: the follower's stream answers TTL 0, as etcd's does.
        l.lease_revoke(id).await.expect("revoke");
        keeper.keep_alive().await.expect("send keep-alive");
        let r = stream
            .message()
            .await
            .expect("answer")
            .expect("stream open");
        assert_eq!((r.id(), r.ttl()), (id, 0), "revoked lease");
    })
    .await;
}
