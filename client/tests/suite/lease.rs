//! Leases and the lease keeper against both servers.

use std::sync::Mutex;
use std::time::Duration;

use kv_client::{Client, Error, LeaseKeeper, LeaseLost, PutOptions};

use crate::proxy::{Mode, Proxy};
use crate::{Kind, Server, WAIT, fast_config, on_both, within};

on_both!(
    lease_calls,
    keeper_keeps_alive_then_sees_revoke,
    keeper_loses_unreachable_lease,
    lost_future_outlives_the_keeper,
);

/// TTL for keeper tests: etcd raises anything below ~2 s to its minimum.
const TTL: i64 = 3;

async fn lease_calls(kind: Kind) {
    let server = Server::start(kind).await;
    let c = server.client().await;
    let lease = c.lease_grant(60).await.unwrap();
    assert_eq!(lease.ttl(), 60);
    c.put("owned", "v", PutOptions::new().with_lease(lease.id()))
        .await
        .unwrap();
    let ttl = c.lease_time_to_live(lease.id(), true).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 60);
    assert!(ttl.ttl() > 0 && ttl.ttl() <= 60);
    assert_eq!(ttl.keys(), [b"owned".to_vec()]);
    assert!(c.leases().await.unwrap().contains(&lease.id()));

    c.lease_revoke(lease.id()).await.unwrap();
    assert!(c.get("owned", None).await.unwrap().kvs().is_empty());
    assert!(!c.leases().await.unwrap().contains(&lease.id()));
    assert_eq!(
        c.lease_keeper(lease.id()).await.unwrap_err(),
        Error::LeaseNotFound
    );
}

async fn keeper_keeps_alive_then_sees_revoke(kind: Kind) {
    let server = Server::start(kind).await;
    let c = server.client().await;
    let id = c.lease_grant(TTL).await.unwrap().id();
    c.put("alive", "v", PutOptions::new().with_lease(id))
        .await
        .unwrap();
    let keeper = c.lease_keeper(id).await.unwrap();
    assert_eq!(keeper.id(), id);
    assert!(keeper.ttl() > 0);

    // Longer than the TTL: the keeper must hold the lease the whole time.
    let held = tokio::time::timeout(Duration::from_secs(TTL as u64 + 1), keeper.lost()).await;
    assert!(held.is_err(), "lease lost while kept alive: {held:?}");
    assert_eq!(c.get("alive", None).await.unwrap().kvs().len(), 1);

    // Someone else revokes it: the keeper reports the loss.
    let other = server.client().await;
    other.lease_revoke(id).await.unwrap();
    let reason = within("the keeper to report the loss", WAIT, keeper.lost()).await;
    assert_eq!(reason, LeaseLost::NotFound);
    assert_eq!(keeper.lost_reason(), Some(LeaseLost::NotFound));
}

async fn keeper_loses_unreachable_lease(kind: Kind) {
    let server = Server::start(kind).await;
    let proxy = Proxy::start(server.addr()).await;
    let c = Client::connect(fast_config(proxy.endpoint()))
        .await
        .unwrap();
    let id = c.lease_grant(TTL).await.unwrap().id();
    let keeper = c.lease_keeper(id).await.unwrap();
    let lost = keeper.lost();
    proxy.set(Mode::Refuse);
    let limit = Duration::from_secs(TTL as u64 + 2);
    let reason = within("the keeper to give up", limit, lost).await;
    assert_eq!(reason, LeaseLost::TtlElapsed);
}

/// Lends the keeper behind a lock to `f` (as the bindings do): `f`'s
/// result cannot name the borrow's lifetime.
fn with_keeper<T>(slot: &Mutex<Option<LeaseKeeper>>, f: impl FnOnce(&LeaseKeeper) -> T) -> T {
    f(slot.lock().unwrap().as_ref().expect("keeper"))
}

/// `lost()` captures no borrow (`use<>`): the future can be made under a
/// lock, outlives its keeper, is moved into a task, and resolves with
/// `KeeperDropped` once the keeper is dropped. (With a future that captured
/// `&self`, `with_keeper(.., LeaseKeeper::lost)` does not compile.)
async fn lost_future_outlives_the_keeper(kind: Kind) {
    let server = Server::start(kind).await;
    let c = server.client().await;
    let id = c.lease_grant(60).await.unwrap().id();
    let slot = Mutex::new(Some(c.lease_keeper(id).await.unwrap()));
    let lost = tokio::spawn(with_keeper(&slot, LeaseKeeper::lost));
    let other = with_keeper(&slot, LeaseKeeper::lost);
    drop(slot.lock().unwrap().take());
    let reason = within("the lost future", WAIT, lost).await.unwrap();
    assert_eq!(reason, LeaseLost::KeeperDropped);
    assert_eq!(
        within("the second one", WAIT, other).await,
        LeaseLost::KeeperDropped
    );
    c.lease_revoke(id).await.unwrap();
}
