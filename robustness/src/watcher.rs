//! Watchers that record every response they get, resuming on another member
//! from (last revision + 1) whenever their stream breaks, as etcd's client
//! does; and the one-shot watch that reads a revision range back.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchOptions};

use crate::launcher::{connect, REQUEST_TIMEOUT};
use crate::traffic::digest;

/// Largest watch response the harness accepts (large values are in play).
pub const MAX_MESSAGE: usize = 256 << 20;
/// How long a watcher waits for one message before checking its target.
const POLL: Duration = Duration::from_millis(500);

/// One event as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's revision (mod revision of the key-value).
    pub rev: i64,
    /// The key.
    pub key: String,
    /// Put value, or None for a delete.
    pub value: Option<String>,
}

/// What one watcher saw.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// The revision it first asked to start from.
    pub start: i64,
    /// Events grouped by the response that carried them.
    pub responses: Vec<Vec<Event>>,
    /// Indices into `responses` where a resumed stream began.
    pub resumes: Vec<usize>,
    /// The highest revision it knows it has seen everything up to.
    pub reached: i64,
}

impl Recording {
    /// All events in delivery order.
    pub fn events(&self) -> Vec<Event> {
        self.responses.iter().flatten().cloned().collect()
    }
}

fn convert(resp: &etcd_client::WatchResponse) -> Vec<Event> {
    resp.events()
        .iter()
        .filter_map(|e| {
            let kv = e.kv()?;
            Some(Event {
                rev: kv.mod_revision(),
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: match e.event_type() {
                    EventType::Put => Some(digest(kv.value())),
                    EventType::Delete => None,
                },
            })
        })
        .collect()
}

/// Watches all keys from `start`, cycling through `endpoints` on failure,
/// until it has seen revision `target` (set once traffic ends; i64::MAX
/// before) or `deadline` passes after the target was set.
pub async fn run(
    endpoints: Vec<String>,
    first: usize,
    start: i64,
    target: Arc<AtomicI64>,
    deadline: Duration,
) -> Recording {
    let mut rec = Recording {
        start,
        reached: start - 1,
        ..Recording::default()
    };
    let mut next = first;
    let mut target_seen_at: Option<Instant> = None;
    'outer: loop {
        let ep = &endpoints[next % endpoints.len()];
        next += 1;
        let stream = async {
            let c = connect(ep, REQUEST_TIMEOUT).await.ok()?;
            let opts = WatchOptions::new()
                .with_all_keys()
                .with_start_revision(rec.reached + 1);
            let mut w = c.watch_client().max_decoding_message_size(MAX_MESSAGE);
            tokio::time::timeout(REQUEST_TIMEOUT, w.watch("", Some(opts)))
                .await
                .ok()?
                .ok()
        }
        .await;
        let resumed_at = rec.responses.len();
        if let Some(mut stream) = stream {
            if rec.reached >= start {
                rec.resumes.push(resumed_at);
            }
            loop {
                if done(&rec, &target, &mut target_seen_at, deadline) {
                    break 'outer;
                }
                match tokio::time::timeout(POLL, stream.message()).await {
                    Err(_) => continue,
                    Ok(Ok(Some(resp))) => {
                        if resp.canceled() {
                            break;
                        }
                        let events = convert(&resp);
                        if let Some(last) = events.last() {
                            rec.reached = rec.reached.max(last.rev);
                        }
                        if !events.is_empty() {
                            rec.responses.push(events);
                        }
                    }
                    Ok(Ok(None)) | Ok(Err(_)) => break,
                }
            }
        }
        if done(&rec, &target, &mut target_seen_at, deadline) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rec
}

fn done(
    rec: &Recording,
    target: &AtomicI64,
    seen_at: &mut Option<Instant>,
    deadline: Duration,
) -> bool {
    let t = target.load(Ordering::Relaxed);
    if t == i64::MAX {
        return false;
    }
    let since = *seen_at.get_or_insert_with(Instant::now);
    rec.reached >= t || since.elapsed() > deadline
}

/// Reads every event in [from, to] from one member with a single watch.
pub async fn read_range(endpoint: &str, from: i64, to: i64) -> Result<Vec<Event>, String> {
    let target = Arc::new(AtomicI64::new(to));
    let rec = run(
        vec![endpoint.to_string()],
        0,
        from,
        target,
        Duration::from_secs(60),
    )
    .await;
    if rec.reached < to {
        return Err(format!(
            "watch from {from} on {endpoint} stopped at {} before {to}",
            rec.reached
        ));
    }
    Ok(rec.events().into_iter().filter(|e| e.rev <= to).collect())
}
