//! Latency histograms and the report printed (as text or JSON) after a run.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Highest latency the histograms track, in microseconds (60 s). Longer
/// samples are clamped to it.
const MAX_MICROS: u64 = 60_000_000;

/// A latency histogram in microseconds with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; this cannot fail.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

/// Records one latency sample, clamped into the histogram's range.
pub fn record(hist: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
    hist.saturating_record(micros.clamp(1, MAX_MICROS));
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn from_histogram(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
            mean: hist.mean() / 1000.0,
        }
    }

    fn line(&self) -> String {
        format!(
            "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            self.p50, self.p90, self.p99, self.p999, self.max, self.mean
        )
    }
}

/// Outcome of the compare-and-put transactions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TxnStats {
    /// Transactions whose compare held (the put branch ran).
    pub succeeded: u64,
    /// Transactions whose compare failed (the get branch ran).
    pub failed: u64,
}

/// Numbers of the watch workload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchStats {
    pub watchers: usize,
    /// Watch streams the watchers share (0 in reports older than the field).
    #[serde(default)]
    pub streams: usize,
    pub putters: usize,
    /// Events delivered, summed over all watchers.
    pub events: u64,
    /// Successful puts times watchers: what a lossless server delivers.
    pub expected_events: u64,
    /// Events delivered per second, from the first put to the last event.
    pub events_per_sec: f64,
    /// Time from a put being sent to its event arriving at a watcher.
    pub event_latency_ms: Latency,
    /// Watchers that stopped early (stream error, cancel or close).
    pub watcher_errors: u64,
}

/// What the server processes spent during the measured phase (from /proc,
/// with `--server-pids`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStats {
    /// Server processes summed (3 for a three-member cluster).
    pub pids: usize,
    /// CPU seconds (user + system) of those processes in the measured phase.
    pub cpu_s: f64,
    /// What the CPU is divided by: ops, events delivered (watch) or
    /// keep-alive responses (lease-keepalive).
    pub units: u64,
    /// `cpu_s` per unit, in microseconds.
    pub cpu_us_per_op: f64,
    /// Peak resident set (VmHWM) at the end of the run, summed over the
    /// processes, in KiB. Fresh servers per workload make it per workload.
    pub peak_rss_kib: u64,
}

/// Everything one run measured; `--json` prints exactly this.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// put, range-l, range-s, txn or watch.
    pub workload: String,
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub conns: usize,
    pub key_size: usize,
    pub val_size: usize,
    pub key_space: u64,
    /// Wall time of the measured phase, in seconds.
    pub elapsed_s: f64,
    /// Successful operations (for watch: successful puts).
    pub ops: u64,
    /// Failed operations (for watch: failed puts).
    pub errors: u64,
    pub ops_per_sec: f64,
    /// Latency of successful operations (for watch: of the puts).
    pub latency_ms: Latency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<TxnStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchStats>,
    /// lease-keepalive: leases kept alive, one keep-alive stream each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leases: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerStats>,
    /// The first error seen, if any, to tell what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Report {
    /// Human-readable summary.
    pub fn text(&self) -> String {
        let mut out = format!(
            "workload {}  endpoints {}  clients {}  conns {}  key {}B  value {}B  key-space {}\n",
            self.workload,
            self.endpoints.join(","),
            self.clients,
            self.conns,
            self.key_size,
            self.val_size,
            self.key_space
        );
        let what = if self.watch.is_some() { "puts" } else { "ops" };
        out += &format!(
            "{what}: {} in {:.2}s = {:.1} {what}/s, errors {}\n",
            self.ops, self.elapsed_s, self.ops_per_sec, self.errors
        );
        out += &format!("{what} latency ms: {}\n", self.latency_ms.line());
        if let Some(t) = &self.txn {
            out += &format!("txn compare held {} / failed {}\n", t.succeeded, t.failed);
        }
        if let Some(w) = &self.watch {
            out += &format!(
                "watch: {} watchers on {} streams, {} putters; events {} of {} expected = {:.1} events/s, watcher errors {}\n",
                w.watchers, w.streams, w.putters, w.events, w.expected_events, w.events_per_sec, w.watcher_errors
            );
            out += &format!("put->event latency ms: {}\n", w.event_latency_ms.line());
        }
        if let Some(n) = self.leases {
            out +=
                &format!("{n} leases, one keep-alive stream each; ops are keep-alive responses\n");
        }
        if let Some(s) = &self.server {
            out += &format!(
                "server ({} processes): {:.2} CPU s = {:.1} us per {}, peak RSS {} KiB\n",
                s.pids,
                s.cpu_s,
                s.cpu_us_per_op,
                if self.watch.is_some() { "event" } else { "op" },
                s.peak_rss_kib
            );
        }
        if let Some(e) = &self.first_error {
            out += &format!("first error: {e}\n");
        }
        out
    }

    /// The throughput the A/B table compares: events/s for watch, ops/s otherwise.
    pub fn headline_rate(&self) -> f64 {
        match &self.watch {
            Some(w) => w.events_per_sec,
            None => self.ops_per_sec,
        }
    }

    /// The p99 the A/B table compares: put->event for watch, op latency otherwise.
    pub fn headline_p99(&self) -> f64 {
        match &self.watch {
            Some(w) => w.event_latency_ms.p99,
            None => self.latency_ms.p99,
        }
    }

    /// Server CPU per op (per event for watch) in microseconds, if measured.
    pub fn cpu_per_op(&self) -> Option<f64> {
        self.server.as_ref().map(|s| s.cpu_us_per_op)
    }

    /// Peak RSS of the server processes in MiB, if measured.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        self.server.as_ref().map(|s| s.peak_rss_kib as f64 / 1024.0)
    }

    /// Errors the A/B table shows next to the numbers.
    pub fn total_errors(&self) -> u64 {
        self.errors + self.watch.as_ref().map_or(0, |w| w.watcher_errors)
    }
}

/// Operations per second, zero when nothing was timed.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_samples() {
        let mut h = new_histogram();
        for ms in 1..=100u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let l = Latency::from_histogram(&h);
        assert!((l.p50 - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99 - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max - 100.0).abs() < 0.1, "{l:?}");
    }

    #[test]
    fn empty_histogram_is_zero_and_huge_samples_clamp() {
        let mut h = new_histogram();
        assert_eq!(Latency::from_histogram(&h), Latency::default());
        record(&mut h, Duration::from_secs(3600));
        record(&mut h, Duration::ZERO);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn report_round_trips_through_json() {
        let r = Report {
            workload: "watch".into(),
            ops: 10,
            watch: Some(WatchStats {
                events_per_sec: 5.0,
                ..Default::default()
            }),
            ..Default::default()
        };
        let json = serde_json::to_string(&r).expect("serialize");
        let back: Report = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, r);
        assert_eq!(back.headline_rate(), 5.0);
        assert!(!json.contains("\"txn\""));
    }

    #[test]
    fn rate_handles_zero_time() {
        assert_eq!(rate(10, Duration::ZERO), 0.0);
        assert_eq!(rate(10, Duration::from_secs(2)), 5.0);
    }
}
