//! The watch workload: W watchers on one prefix, spread over S watch streams
//! (one per watcher by default), while P putters write under it. Each put's
//! value carries its send time, so a watcher measures the put->event latency
//! of every event it gets.

use crate::driver::{self, Limit, Op, Worker};
use crate::pool::{self, Keys, Pool};
use crate::procstat::CpuMeter;
use crate::stats::{self, Latency, ServerStats, WatchStats};
use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{EventType, WatchOptions, WatchStream};
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};
use tokio::sync::watch as signal;

pub struct Params {
    pub watchers: usize,
    /// Watch streams the watchers are spread over (at most `watchers`).
    pub streams: usize,
    pub putters: usize,
    pub val_size: usize,
    pub seed: u64,
    pub limit: Limit,
    /// How long watchers may take, after the last put, to deliver the rest.
    pub drain: Duration,
    /// Server processes whose CPU and peak RSS the report includes.
    pub server_pids: Vec<u32>,
}

/// What the watch run measured.
pub struct WatchOutcome {
    pub puts: driver::Outcome,
    pub stats: WatchStats,
    pub server: Option<ServerStats>,
    pub first_error: Option<String>,
}

/// Tells watchers how many events to expect once the putters are done, or to stop.
#[derive(Debug, Clone, Copy, Default)]
struct Phase {
    expected: Option<u64>,
    stop: bool,
}

struct WatcherResult {
    hist: Histogram<u64>,
    events: u64,
    last_event: Option<Instant>,
    error: Option<String>,
}

pub async fn run(pool: &Pool, keys: Keys, p: Params) -> Result<WatchOutcome> {
    if p.watchers == 0 || p.putters == 0 || p.streams == 0 {
        bail!("watch needs at least one watcher, one stream and one putter");
    }
    let start = Instant::now();
    // Open every stream and its watchers, and wait for every `created` answer
    // before writing. Stream s carries watchers s, s + streams, ...
    let streams_n = p.streams.min(p.watchers);
    let mut streams = Vec::with_capacity(streams_n);
    for s in 0..streams_n {
        let on_stream = (p.watchers - s).div_ceil(streams_n);
        let stream = open_stream(pool, s, keys, on_stream)
            .await
            .with_context(|| format!("watch stream {s}"))?;
        streams.push((stream, on_stream as u64));
    }

    let (phase_tx, phase_rx) = signal::channel(Phase::default());
    let mut watcher_tasks = Vec::with_capacity(p.watchers);
    for (stream, on_stream) in streams {
        watcher_tasks.push(tokio::spawn(watcher(
            stream,
            on_stream,
            phase_rx.clone(),
            start,
        )));
    }

    let workers = (0..p.putters)
        .map(|i| Worker::new(pool, i, p.seed, keys, p.val_size, Op::StampedPut { start }))
        .collect();
    let meter = CpuMeter::start(&p.server_pids)?;
    let put_start = Instant::now();
    let puts = driver::drive(workers, p.limit).await?;

    // Every successful put is one event per watcher. A put that timed out may
    // still have landed, so watchers stop at "at least this many".
    phase_tx.send_replace(Phase {
        expected: Some(puts.ops),
        stop: false,
    });
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(p.drain).await;
        phase_tx.send_modify(|ph| ph.stop = true);
    });

    let mut hist = stats::new_histogram();
    let mut events = 0;
    let mut last_event = put_start;
    let mut watcher_errors = 0;
    let mut first_error = puts.first_error.clone();
    for t in watcher_tasks {
        let r = t.await.map_err(|e| anyhow!("watcher task failed: {e}"))?;
        hist.add(&r.hist)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
        events += r.events;
        if let Some(at) = r.last_event {
            last_event = last_event.max(at);
        }
        if let Some(e) = r.error {
            watcher_errors += 1;
            first_error.get_or_insert(e);
        }
    }
    stopper.abort();
    let server = meter.stop(events)?;

    let stats = WatchStats {
        watchers: p.watchers,
        streams: streams_n,
        putters: p.putters,
        events,
        expected_events: puts.ops * p.watchers as u64,
        events_per_sec: stats::rate(events, last_event.duration_since(put_start)),
        event_latency_ms: Latency::from_histogram(&hist),
        watcher_errors,
    };
    Ok(WatchOutcome {
        puts,
        stats,
        server,
        first_error,
    })
}

/// Opens watch stream `s` with `n` watchers on the workload's prefix and
/// waits until the server confirmed each one.
async fn open_stream(pool: &Pool, s: usize, keys: Keys, n: usize) -> Result<WatchStream> {
    let opts = || Some(WatchOptions::new().with_prefix());
    let mut stream = pool
        .for_client(s)
        .watch_client()
        .watch(keys.prefix(), opts())
        .await
        .context("opening the stream")?;
    for _ in 1..n {
        stream
            .watch(keys.prefix(), opts())
            .await
            .context("adding a watcher")?;
    }
    let mut created = 0;
    while created < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .map_err(|_| anyhow!("{created} of {n} `created` answers within 10s"))?
            .context("waiting for `created`")?;
        match msg {
            Some(resp) if resp.created() && !resp.canceled() => created += 1,
            Some(resp) => bail!(
                "expected `created`, got canceled={} reason={:?}",
                resp.canceled(),
                resp.cancel_reason()
            ),
            None => bail!("stream closed before `created`"),
        }
    }
    Ok(stream)
}

/// Reads one stream's events until its `watchers` each got the expected
/// count (events are counted over all the stream's watchers), or told to stop.
async fn watcher(
    mut stream: WatchStream,
    watchers: u64,
    mut phase: signal::Receiver<Phase>,
    start: Instant,
) -> WatcherResult {
    let mut res = WatcherResult {
        hist: stats::new_histogram(),
        events: 0,
        last_event: None,
        error: None,
    };
    loop {
        let now_phase = *phase.borrow_and_update();
        if now_phase.stop
            || now_phase
                .expected
                .is_some_and(|n| res.events >= n.saturating_mul(watchers))
        {
            break;
        }
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(resp)) => {
                    if resp.canceled() {
                        res.error = Some(format!("watch canceled: {:?}", resp.cancel_reason()));
                        break;
                    }
                    let now = start.elapsed();
                    for ev in resp.events() {
                        if ev.event_type() != EventType::Put {
                            continue;
                        }
                        if let Some(stamp) = ev.kv().and_then(|kv| pool::read_stamp(kv.value())) {
                            let sent = Duration::from_nanos(stamp);
                            stats::record(&mut res.hist, now.saturating_sub(sent));
                        }
                        res.events += 1;
                    }
                    if !resp.events().is_empty() {
                        res.last_event = Some(Instant::now());
                    }
                }
                Ok(None) => {
                    res.error = Some("watch stream closed by the server".into());
                    break;
                }
                Err(e) => {
                    res.error = Some(format!("watch stream: {e}"));
                    break;
                }
            },
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    res
}
