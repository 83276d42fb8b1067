//! The double barrier with a participant process that is SIGKILLed.
//!
//! etcd's recipe (`client/v3/experimental/recipes/double_barrier.go`), which
//! ours follows: each participant's key `<name>/waiters/<nanos>` is on its
//! session's lease, and `<name>/ready` (no lease) is put by the participant
//! whose key is the count-th oldest. So a dead participant stays counted
//! until its lease expires, then vanishes:
//! - Inside (entered, never leaves): the others' Leave waits on its key's
//!   delete, which the expiry makes; Leave then completes. If the dead one
//!   was the oldest (lowest mod revision), nobody is left to delete
//!   `<name>/ready`: etcd leaves it behind, and so do we (harmless to a
//!   later round: Enter waits for a put of it after its own key).
//! - Waiting in Enter: once its key is gone it no longer counts, so the
//!   barrier opens only when `count` live participants are in. (Before the
//!   expiry it still counts, and a live count-th participant opens the
//!   barrier with the dead one inside: that is etcd's semantics, and a
//!   timing race to test, so it is left untested.)

use std::time::Duration;

use kv_client::Client;
use kv_discovery::Session;
use kv_discovery::recipes::{DoubleBarrier, Entered};
use tokio::task::JoinHandle;

use crate::child::{self, Child};
use crate::{Kind, Server, WAIT, on_both, within};

on_both!(
    double_barrier_leave_completes_once_killed_oldest_expires,
    double_barrier_leave_completes_once_killed_newest_expires,
    double_barrier_killed_waiter_stops_counting_once_expired,
);

/// Not a test by itself: a participant process of the tests below. Its
/// argument: `<barrier name> <count>`. Says `HOLDING <key>` once entered.
#[tokio::test]
#[ignore = "helper process, started by the killed-participant tests"]
async fn barrier_child_participant() {
    let Some((endpoint, arg)) = child::role() else {
        return;
    };
    let (name, count) = arg.split_once(' ').unwrap();
    let session = child::session(&endpoint).await;
    let b = DoubleBarrier::new(&session, name, count.parse().unwrap()).unwrap();
    let inside = b.enter().await.unwrap();
    child::say("HOLDING", inside.key());
    // Never leaves: the parent kills this process first.
    child::hold().await;
}

/// Starts a child participant of `name` for `count`; returns it with its
/// waiter key once that key exists (the child is in Enter by then).
async fn child_participant(
    server: &Server,
    client: &Client,
    name: &str,
    count: usize,
    before: usize,
) -> (Child, String) {
    let c = Child::spawn(
        "recipes_barrier_killed::barrier_child_participant",
        &server.endpoint(),
        &format!("{name} {count}"),
    );
    let keys = child::keys_under(client, &format!("{name}/waiters/"), before + 1).await;
    (c, keys[before].clone())
}

/// A participant in this process (own client and session, like a
/// process), entering in a task.
struct Local {
    entered: JoinHandle<(Entered, Session)>,
}

impl Local {
    async fn enter(server: &Server, name: &str, count: usize) -> Local {
        let c = server.client().await;
        let s = Session::with_ttl(&c, 10).await.unwrap();
        let b = DoubleBarrier::new(&s, name, count).unwrap();
        Local {
            entered: tokio::spawn(async move { (b.enter().await.unwrap(), s) }),
        }
    }
}

/// Leaves in a task that also tells whether the killed child's `key`
/// still existed right after Leave returned.
fn leave_in_task(client: &Client, inside: Entered, s: Session, key: &str) -> JoinHandle<bool> {
    let (client, key) = (client.clone(), key.to_string());
    tokio::spawn(async move {
        inside.leave().await.unwrap();
        let early = child::exists(&client, &key).await;
        s.close().await.unwrap();
        early
    })
}

/// Three participants, the child one of them (the oldest if
/// `child_first`, else the newest, whose Enter puts `ready`); it is killed
/// inside, and the other two must leave once its key expires.
async fn leave_after_killed_participant(kind: Kind, child_first: bool) {
    const N: usize = 3;
    let name = "dbk";
    let server = Server::start(kind).await;
    let client = server.client().await;
    let mut locals = Vec::new();
    let mut child = None;
    for i in 0..N {
        let is_child = if child_first { i == 0 } else { i == N - 1 };
        if is_child {
            child = Some(child_participant(&server, &client, name, N, i).await);
        } else {
            locals.push(Local::enter(&server, name, N).await);
            child::keys_under(&client, &format!("{name}/waiters/"), i + 1).await;
        }
    }
    let (mut child, key) = child.unwrap();
    assert_eq!(child.expect("HOLDING").await, key, "[{kind}] child key");
    let mut leaving = Vec::new();
    for l in locals {
        let (inside, s) = within("a participant to enter", WAIT, l.entered)
            .await
            .unwrap();
        leaving.push(leave_in_task(&client, inside, s, &key));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        leaving.iter().all(|t| !t.is_finished()),
        "[{kind}] left while the child is inside"
    );
    // SIGKILL: the child never leaves; its lease expiry removes its key.
    child.kill();
    for t in leaving {
        let early = within("a participant to leave", WAIT, t).await.unwrap();
        assert!(!early, "[{kind}] left before the killed one's key expired");
    }
    child::keys_under(&client, &format!("{name}/waiters/"), 0).await;
    let ready = format!("{name}/ready");
    // etcd's scheme: the oldest participant's Leave deletes `ready`; dead,
    // it cannot.
    assert_eq!(
        child::exists(&client, &ready).await,
        child_first,
        "[{kind}] ready key"
    );
}

async fn double_barrier_leave_completes_once_killed_oldest_expires(kind: Kind) {
    leave_after_killed_participant(kind, true).await;
}

async fn double_barrier_leave_completes_once_killed_newest_expires(kind: Kind) {
    leave_after_killed_participant(kind, false).await;
}

/// A child killed while waiting in Enter: once its key expired, the
/// barrier opens only with `count` live participants, never counting it.
async fn double_barrier_killed_waiter_stops_counting_once_expired(kind: Kind) {
    const N: usize = 3;
    let name = "dbw";
    let server = Server::start(kind).await;
    let client = server.client().await;
    let (mut child, key) = child_participant(&server, &client, name, N, 0).await;
    let a = Local::enter(&server, name, N).await;
    child::keys_under(&client, &format!("{name}/waiters/"), 2).await;
    child.kill();
    // Its key goes with its lease: now only `a` is in.
    let left = child::keys_under(&client, &format!("{name}/waiters/"), 1).await;
    assert_ne!(left[0], key, "[{kind}] the killed waiter's key stayed");
    // A second live participant: two keys, N = 3, so nobody enters.
    let b = Local::enter(&server, name, N).await;
    child::keys_under(&client, &format!("{name}/waiters/"), 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !a.entered.is_finished() && !b.entered.is_finished(),
        "[{kind}] entered with the killed waiter counted"
    );
    let ready = format!("{name}/ready");
    assert!(
        !child::exists(&client, &ready).await,
        "[{kind}] ready put for a killed waiter"
    );
    // The third live one opens it for all.
    let c = Local::enter(&server, name, N).await;
    let mut leaving = Vec::new();
    for l in [a, b, c] {
        let (inside, s) = within("a participant to enter", WAIT, l.entered)
            .await
            .unwrap();
        leaving.push(leave_in_task(&client, inside, s, &key));
    }
    for t in leaving {
        within("a participant to leave", WAIT, t).await.unwrap();
    }
    child::keys_under(&client, &format!("{name}/"), 0).await;
}
