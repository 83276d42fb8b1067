//! `kv-bench compare`: the A/B runner's markdown table, built from the JSON
//! reports of two servers. A missing or unreadable report shows as "n/a".

use crate::stats::Report;
use std::path::Path;

/// Reads `<dir>/<workload>.json`; `None` if it is missing or not a report.
pub fn load(dir: &Path, workload: &str) -> Option<Report> {
    let text = std::fs::read_to_string(dir.join(format!("{workload}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn rate(r: Option<&Report>) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{:.0}", r.headline_rate()))
}

fn p99(r: Option<&Report>) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{:.2}", r.headline_p99()))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".into(),
    }
}

fn errors(r: Option<&Report>) -> String {
    r.map_or_else(|| "n/a".into(), |r| r.total_errors().to_string())
}

fn setup(r: &Report) -> String {
    match &r.watch {
        Some(w) => format!(
            "{} watchers / {} putters / {} conns",
            w.watchers, w.putters, r.conns
        ),
        None => format!("{} clients / {} conns", r.clients, r.conns),
    }
}

/// The markdown table comparing `a` (e.g. kvd) with `b` (e.g. etcd).
pub fn table(
    a_name: &str,
    b_name: &str,
    rows: &[(String, Option<Report>, Option<Report>)],
) -> String {
    let mut out = format!(
        "| workload | setup | {a_name} ops/s | {b_name} ops/s | {a_name}/{b_name} ops/s \
         | {a_name} p99 ms | {b_name} p99 ms | {a_name}/{b_name} p99 | errors {a_name} / {b_name} |\n"
    );
    out += "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (name, a, b) in rows {
        let (a, b) = (a.as_ref(), b.as_ref());
        let setup = a.or(b).map_or_else(|| "n/a".into(), setup);
        let label = if a.or(b).is_some_and(|r| r.watch.is_some()) {
            format!("{name} (events/s, put->event p99)")
        } else {
            name.clone()
        };
        out += &format!(
            "| {label} | {setup} | {} | {} | {} | {} | {} | {} | {} / {} |\n",
            rate(a),
            rate(b),
            ratio(a.map(Report::headline_rate), b.map(Report::headline_rate)),
            p99(a),
            p99(b),
            ratio(a.map(Report::headline_p99), b.map(Report::headline_p99)),
            errors(a),
            errors(b),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Latency, WatchStats};

    fn report(workload: &str, rate: f64, p99: f64) -> Report {
        Report {
            workload: workload.into(),
            clients: 64,
            conns: 8,
            ops_per_sec: rate,
            latency_ms: Latency {
                p99,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn ratios_and_missing_servers() {
        let rows = vec![
            (
                "put".to_string(),
                Some(report("put", 2000.0, 5.0)),
                Some(report("put", 1000.0, 10.0)),
            ),
            ("txn".to_string(), None, Some(report("txn", 1000.0, 10.0))),
        ];
        let t = table("kvd", "etcd", &rows);
        assert!(
            t.contains(
                "| put | 64 clients / 8 conns | 2000 | 1000 | 2.00 | 5.00 | 10.00 | 0.50 | 0 / 0 |"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "| txn | 64 clients / 8 conns | n/a | 1000 | n/a | n/a | 10.00 | n/a | n/a / 0 |"
            ),
            "{t}"
        );
    }

    #[test]
    fn watch_rows_use_event_numbers() {
        let mut r = report("watch", 100.0, 1.0);
        r.watch = Some(WatchStats {
            watchers: 16,
            putters: 8,
            events_per_sec: 1600.0,
            event_latency_ms: Latency {
                p99: 3.0,
                ..Default::default()
            },
            ..Default::default()
        });
        let t = table("kvd", "etcd", &[("watch".to_string(), None, Some(r))]);
        assert!(t.contains("| watch (events/s, put->event p99) | 16 watchers / 8 putters / 8 conns | n/a | 1600 |"), "{t}");
        assert!(t.contains("| 3.00 |"), "{t}");
    }

    #[test]
    fn load_tolerates_missing_and_garbage_files() {
        let dir = std::env::temp_dir().join(format!("kv-bench-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("bad.json"), "not json").expect("write");
        let good = serde_json::to_string(&report("put", 1.0, 1.0)).expect("json");
        std::fs::write(dir.join("put.json"), good).expect("write");
        assert!(load(&dir, "missing").is_none());
        assert!(load(&dir, "bad").is_none());
        assert_eq!(
            load(&dir, "put").map(|r| r.workload),
            Some("put".to_string())
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
