//! Elections against real servers.

use std::time::Duration;

use futures::StreamExt;
use kv_discovery::{Election, Error, Observer, Session, election};

use crate::{Kind, Server, WAIT, on_both, within};

on_both!(next_leader_observed_once_by_every_observer);

async fn next_value(o: &mut Observer) -> String {
    let l = within("a leader", WAIT, o.next())
        .await
        .expect("observer ended");
    String::from_utf8(l.value().to_vec()).unwrap()
}

async fn next_leader_observed_once_by_every_observer(kind: Kind) {
    let server = Server::start(kind).await;
    let client = server.client().await;
    assert_eq!(
        election::leader(&client, "el").await.unwrap_err(),
        Error::NoLeader
    );
    // One observer before any candidate, one after.
    let mut early = election::observe(&client, "el");
    let sessions = [
        Session::with_ttl(&client, 10).await.unwrap(),
        Session::with_ttl(&server.client().await, 10).await.unwrap(),
        Session::with_ttl(&server.client().await, 10).await.unwrap(),
    ];
    let e: Vec<Election> = sessions.iter().map(|s| Election::new(s, "el")).collect();
    let l1 = e[0].campaign("one").await.unwrap();
    let mut late = election::observe(&client, "el");
    let c2 = {
        let e = e[1].clone();
        tokio::spawn(async move { e.campaign("two").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c3 = {
        let e = e[2].clone();
        tokio::spawn(async move { e.campaign("three").await })
    };
    for o in [&mut early, &mut late] {
        assert_eq!(next_value(o).await, "one");
    }
    l1.proclaim("one'").await.unwrap();
    for o in [&mut early, &mut late] {
        assert_eq!(next_value(o).await, "one'");
    }
    assert!(!c2.is_finished() && !c3.is_finished());

    // The leader dies.
    client.lease_revoke(sessions[0].lease_id()).await.unwrap();
    let l2 = within("the second leader", WAIT, c2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l2.key(), format!("el/{:x}", sessions[1].lease_id()));
    for o in [&mut early, &mut late] {
        assert_eq!(next_value(o).await, "two");
    }
    assert_eq!(
        String::from_utf8(e[2].leader().await.unwrap().value().to_vec()).unwrap(),
        "two"
    );
    assert!(!c3.is_finished());
    // The next one resigns.
    l2.resign().await.unwrap();
    let l3 = within("the third leader", WAIT, c3).await.unwrap().unwrap();
    for o in [&mut early, &mut late] {
        assert_eq!(next_value(o).await, "three");
    }
    // And nothing is reported twice.
    for o in [&mut early, &mut late] {
        let extra = tokio::time::timeout(Duration::from_millis(300), o.next()).await;
        assert!(extra.is_err(), "[{kind}] reported again: {extra:?}");
    }
    // The lost leader cannot proclaim.
    assert_eq!(l1.proclaim("zombie").await.unwrap_err(), Error::NotLeader);
    l3.resign().await.unwrap();
}
