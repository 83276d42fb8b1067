//! Linearizability under failures: clients doing puts, gets and
//! compare-and-swap txns on a few keys through a 3-member kvd cluster while
//! members are killed (-9) and restarted; the recorded history must have a
//! legal sequential order (checked by common::linearizable, which re-exports
//! the kv-robustness crate's checker; the fault campaign uses the same one).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};

use common::cluster::Cluster;
use common::kvd_only;
use common::linearizable::{check, Kind, Op};

const CLIENTS: usize = 4;
const KEYS: usize = 3;
const OPS_PER_CLIENT: usize = 200;
/// Pause between a client's operations, so traffic spans every kill.
const PACE: Duration = Duration::from_millis(15);
const RUN_FOR: Duration = Duration::from_secs(12);

fn now(t0: Instant) -> u128 {
    t0.elapsed().as_nanos()
}

async fn client_for(endpoints: Vec<String>) -> Client {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(2));
    Client::connect(endpoints, Some(opts))
        .await
        .expect("connect")
}

async fn run_client(id: usize, endpoints: Vec<String>, t0: Instant, history: Arc<Mutex<Vec<Op>>>) {
    let mut c = client_for(endpoints).await;
    let mut last_seen: Vec<Option<String>> = vec![None; KEYS];
    for n in 0..OPS_PER_CLIENT {
        if t0.elapsed() > RUN_FOR {
            break;
        }
        let k = (id + n) % KEYS;
        let key = format!("lin{k}");
        let value = format!("c{id}-{n}");
        let call = now(t0);
        let op = match n % 3 {
            0 => {
                let r = c.put(key.clone(), value.clone(), None).await;
                Some((Kind::Write(value), r.is_ok()))
            }
            1 => match c.get(key.clone(), None).await {
                Ok(resp) => {
                    let v = resp
                        .kvs()
                        .first()
                        .map(|kv| kv.value_str().unwrap_or("").to_string());
                    last_seen[k] = v.clone();
                    Some((Kind::Read(v), true))
                }
                // A failed read constrains nothing.
                Err(_) => None,
            },
            _ => {
                let Some(old) = last_seen[k].clone() else {
                    continue;
                };
                let txn = Txn::new()
                    .when([Compare::value(key.clone(), CompareOp::Equal, old.clone())])
                    .and_then([TxnOp::put(key.clone(), value.clone(), None)]);
                match c.txn(txn).await {
                    Ok(r) => Some((
                        Kind::Cas {
                            old,
                            new: value,
                            ok: Some(r.succeeded()),
                        },
                        true,
                    )),
                    Err(_) => Some((
                        Kind::Cas {
                            old,
                            new: value,
                            ok: None,
                        },
                        false,
                    )),
                }
            }
        };
        let ret = now(t0);
        tokio::time::sleep(PACE).await;
        if let Some((kind, answered)) = op {
            history.lock().unwrap().push(Op {
                key,
                kind,
                call,
                ret: answered.then_some(ret),
            });
        }
    }
}

#[tokio::test]
async fn history_under_member_kills_is_linearizable() {
    kvd_only(|| async {
        let mut cluster = Cluster::start(3).await;
        let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
        let history = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| tokio::spawn(run_client(id, endpoints.clone(), t0, history.clone())))
            .collect();
        // Kill and restart members, one at a time, while the clients run.
        for round in 0..3 {
            tokio::time::sleep(Duration::from_millis(800)).await;
            // Mostly the leader, restarted quickly: the hard case (it comes
            // back believing it still leads).
            let victim = if round == 1 {
                round % 3
            } else {
                cluster.leader().await
            };
            cluster.kill9(victim);
            tokio::time::sleep(Duration::from_millis(300)).await;
            cluster.spawn(victim);
            cluster.wait_ready(victim).await;
        }
        for c in clients {
            c.await.expect("client task");
        }
        let history = history.lock().unwrap().clone();
        let answered = history.iter().filter(|o| o.ret.is_some()).count();
        eprintln!("history: {} ops, {answered} answered", history.len());
        assert!(
            answered > 50,
            "too few operations completed: {answered}\n{}",
            cluster.logs()
        );
        if let Err(e) = check(&history) {
            let path = std::env::temp_dir().join("kv-linearizability-history.txt");
            let mut sorted = history.clone();
            sorted.sort_by_key(|o| (o.key.clone(), o.call));
            let text: Vec<String> = sorted
                .iter()
                .map(|o| {
                    format!(
                        "{} {:>12} {:>12} {:?}",
                        o.key,
                        o.call / 1000,
                        o.ret.map(|r| r / 1000).unwrap_or(0),
                        o.kind
                    )
                })
                .collect();
            let _ = std::fs::write(&path, text.join("\n"));
            panic!(
                "history is not linearizable: {e} (history in {})\n{}",
                path.display(),
                cluster.logs()
            );
        }
    })
    .await;
}

fn op(kind: Kind, call: u128, ret: Option<u128>) -> Op {
    Op {
        key: "k".into(),
        kind,
        call,
        ret,
    }
}

#[test]
fn checker_accepts_legal_and_rejects_illegal_histories() {
    let w = |v: &str| Kind::Write(v.into());
    let r = |v: Option<&str>| Kind::Read(v.map(str::to_string));
    assert!(check(&[op(w("a"), 0, Some(1)), op(r(Some("a")), 2, Some(3))]).is_ok());
    // A stale read after a completed write.
    assert!(check(&[
        op(w("a"), 0, Some(1)),
        op(w("b"), 2, Some(3)),
        op(r(Some("a")), 4, Some(5))
    ])
    .is_err());
    // Concurrent write and read: either order.
    assert!(check(&[op(w("a"), 0, Some(10)), op(r(None), 1, Some(2))]).is_ok());
    // An unanswered write may explain a later read.
    assert!(check(&[op(w("a"), 0, None), op(r(Some("a")), 5, Some(6))]).is_ok());
    // A value never written.
    assert!(check(&[op(r(Some("z")), 0, Some(1))]).is_err());
    // A failed CAS after unanswered writes nobody read: one of them took effect.
    let failed = Kind::Cas {
        old: "a".into(),
        new: "c".into(),
        ok: Some(false),
    };
    assert!(check(&[
        op(w("a"), 0, Some(1)),
        op(w("x"), 2, None),
        op(failed.clone(), 3, Some(4))
    ])
    .is_ok());
    assert!(check(&[op(w("a"), 0, Some(1)), op(failed, 3, Some(4))]).is_err());
    // A successful CAS needs the old value.
    let cas = Kind::Cas {
        old: "a".into(),
        new: "b".into(),
        ok: Some(true),
    };
    assert!(check(&[op(cas.clone(), 0, Some(1))]).is_err());
    assert!(check(&[
        op(w("a"), 0, Some(1)),
        op(cas, 2, Some(3)),
        op(r(Some("b")), 4, Some(5))
    ])
    .is_ok());
    // A read that still sees a value after its delete returned.
    assert!(check(&[
        op(w("a"), 0, Some(1)),
        op(Kind::Delete, 2, Some(3)),
        op(r(Some("a")), 4, Some(5))
    ])
    .is_err());
}
