//! `kv-bench compare`: the A/B runner's markdown table, built from the JSON
//! reports of two servers, one report per workload and round. Each cell is
//! the median over the rounds of that column's figure (so a row's medians may
//! come from different rounds); ratios are of the medians. A missing or
//! unreadable report is left out; a workload with none shows as "n/a".

use crate::stats::Report;
use anyhow::{bail, Result};
use std::path::Path;

/// Reads `<dir>/<workload>.json`; `None` if it is missing or not a report.
pub fn load(dir: &Path, workload: &str) -> Option<Report> {
    let text = std::fs::read_to_string(dir.join(format!("{workload}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

/// Every report of `workload` in `dir`: `<workload>.json` and the rounds
/// `<workload>.r<N>.json`, in round order.
pub fn load_all(dir: &Path, workload: &str) -> Vec<Report> {
    let mut rounds: Vec<(u32, Report)> = Vec::new();
    let prefix = format!("{workload}.r");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(n) = name
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(".json"))
                .and_then(|n| n.parse().ok())
            else {
                continue;
            };
            if let Some(r) = load(dir, &format!("{workload}.r{n}")) {
                rounds.push((n, r));
            }
        }
    }
    rounds.sort_by_key(|(n, _)| *n);
    let mut out: Vec<Report> = load(dir, workload).into_iter().collect();
    out.extend(rounds.into_iter().map(|(_, r)| r));
    out
}

/// The median of the figures present; `None` if there are none.
pub fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    Some(if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    })
}

fn med(rs: &[Report], f: impl Fn(&Report) -> Option<f64>) -> Option<f64> {
    median(rs.iter().filter_map(f).collect())
}

fn cell(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "n/a".into(), |x| format!("{x:.decimals$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".into(),
    }
}

fn errors(rs: &[Report]) -> String {
    if rs.is_empty() {
        return "n/a".into();
    }
    rs.iter().map(Report::total_errors).sum::<u64>().to_string()
}

fn setup(r: &Report) -> String {
    match (&r.watch, r.leases) {
        (Some(w), _) if w.streams > 0 && w.streams != w.watchers => format!(
            "{} watchers on {} streams / {} putters / {} conns",
            w.watchers, w.streams, w.putters, r.conns
        ),
        (Some(w), _) => format!(
            "{} watchers / {} putters / {} conns",
            w.watchers, w.putters, r.conns
        ),
        (None, Some(l)) => format!("{l} leases / {} clients / {} conns", r.clients, r.conns),
        (None, None) => format!("{} clients / {} conns", r.clients, r.conns),
    }
}

/// One row: a workload name and the reports of `a` and of `b` (one per round).
pub type Row = (String, Vec<Report>, Vec<Report>);

/// The markdown table comparing `a` (e.g. kvd) with `b` (e.g. etcd).
pub fn table(a_name: &str, b_name: &str, rows: &[Row]) -> String {
    let (a, b) = (a_name, b_name);
    let mut out = format!(
        "| workload | setup | {a} ops/s | {b} ops/s | {a}/{b} ops/s \
         | {a} p99 ms | {b} p99 ms | {a}/{b} p99 \
         | {a} CPU us/op | {b} CPU us/op | {a}/{b} CPU/op \
         | {a} peak RSS MiB | {b} peak RSS MiB | {a}/{b} RSS \
         | rounds {a} / {b} | errors {a} / {b} |\n"
    );
    out += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (name, ra, rb) in rows {
        let setup = ra
            .first()
            .or(rb.first())
            .map_or_else(|| "n/a".into(), setup);
        let label = if ra.iter().chain(rb).any(|r| r.watch.is_some()) {
            format!("{name} (events/s, put->event p99, CPU per event)")
        } else {
            name.clone()
        };
        let rate = |rs: &[Report]| med(rs, |r| Some(r.headline_rate()));
        let p99 = |rs: &[Report]| med(rs, |r| Some(r.headline_p99()));
        let cpu = |rs: &[Report]| med(rs, Report::cpu_per_op);
        let rss = |rs: &[Report]| med(rs, Report::peak_rss_mib);
        out += &format!(
            "| {label} | {setup} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} |\n",
            cell(rate(ra), 0),
            cell(rate(rb), 0),
            ratio(rate(ra), rate(rb)),
            cell(p99(ra), 2),
            cell(p99(rb), 2),
            ratio(p99(ra), p99(rb)),
            cell(cpu(ra), 1),
            cell(cpu(rb), 1),
            ratio(cpu(ra), cpu(rb)),
            cell(rss(ra), 0),
            cell(rss(rb), 0),
            ratio(rss(ra), rss(rb)),
            ra.len(),
            rb.len(),
            errors(ra),
            errors(rb),
        );
    }
    out
}

/// The smoke's check: every workload ran on both servers, did some work and
/// carries the server's CPU and RSS. Says nothing about speed.
pub fn check(a_name: &str, b_name: &str, rows: &[Row]) -> Result<()> {
    let mut problems = Vec::new();
    for (name, ra, rb) in rows {
        for (side, rs) in [(a_name, ra), (b_name, rb)] {
            if rs.is_empty() {
                problems.push(format!("{name}: no report from {side}"));
            }
            for r in rs {
                if r.headline_rate() <= 0.0 {
                    problems.push(format!("{name}: {side} did no work"));
                }
                if r.server.as_ref().is_none_or(|s| s.peak_rss_kib == 0) {
                    problems.push(format!("{name}: {side} has no CPU/RSS figures"));
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!("benchmark smoke failed: {}", problems.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Latency, ServerStats, WatchStats};

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

    fn with_server(mut r: Report, cpu_us: f64, rss_mib: u64) -> Report {
        r.server = Some(ServerStats {
            pids: 1,
            cpu_s: 1.0,
            units: 1,
            cpu_us_per_op: cpu_us,
            peak_rss_kib: rss_mib * 1024,
        });
        r
    }

    #[test]
    fn ratios_and_missing_servers() {
        let rows = vec![
            (
                "put".to_string(),
                vec![with_server(report("put", 2000.0, 5.0), 30.0, 50)],
                vec![with_server(report("put", 1000.0, 10.0), 60.0, 25)],
            ),
            ("txn".to_string(), vec![], vec![report("txn", 1000.0, 10.0)]),
        ];
        let t = table("kvd", "etcd", &rows);
        assert!(
            t.contains(
                "| put | 64 clients / 8 conns | 2000 | 1000 | 2.00 | 5.00 | 10.00 | 0.50 \
                 | 30.0 | 60.0 | 0.50 | 50 | 25 | 2.00 | 1 / 1 | 0 / 0 |"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "| txn | 64 clients / 8 conns | n/a | 1000 | n/a | n/a | 10.00 | n/a \
                 | n/a | n/a | n/a | n/a | n/a | n/a | 0 / 1 | n/a / 0 |"
            ),
            "{t}"
        );
    }

    #[test]
    fn cells_are_medians_over_rounds() {
        let a = vec![
            with_server(report("put", 900.0, 9.0), 10.0, 40),
            with_server(report("put", 3000.0, 1.0), 50.0, 60),
            with_server(report("put", 2000.0, 5.0), 30.0, 50),
        ];
        let b = vec![
            with_server(report("put", 1000.0, 10.0), 60.0, 25),
            with_server(report("put", 500.0, 20.0), 80.0, 35),
        ];
        let t = table("kvd", "etcd", &[("put".to_string(), a, b)]);
        assert!(
            t.contains(
                "| put | 64 clients / 8 conns | 2000 | 750 | 2.67 | 5.00 | 15.00 | 0.33 \
                 | 30.0 | 70.0 | 0.43 | 50 | 30 | 1.67 | 3 / 2 | 0 / 0 |"
            ),
            "{t}"
        );
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![f64::NAN, 2.0]), Some(2.0));
    }

    #[test]
    fn watch_rows_use_event_numbers() {
        let mut r = report("watch", 100.0, 1.0);
        r.watch = Some(WatchStats {
            watchers: 1000,
            streams: 100,
            putters: 8,
            events_per_sec: 1600.0,
            event_latency_ms: Latency {
                p99: 3.0,
                ..Default::default()
            },
            ..Default::default()
        });
        let t = table("kvd", "etcd", &[("watch".to_string(), vec![], vec![r])]);
        assert!(t.contains("| watch (events/s, put->event p99, CPU per event) | 1000 watchers on 100 streams / 8 putters / 8 conns | n/a | 1600 |"), "{t}");
        assert!(t.contains("| 3.00 |"), "{t}");
    }

    #[test]
    fn check_wants_both_servers_working_and_measured() {
        let good = || with_server(report("put", 10.0, 1.0), 1.0, 1);
        let row = |a: Vec<Report>, b: Vec<Report>| vec![("put".to_string(), a, b)];
        assert!(check("a", "b", &row(vec![good()], vec![good()])).is_ok());
        assert!(check("a", "b", &row(vec![], vec![good()])).is_err());
        assert!(check("a", "b", &row(vec![good()], vec![report("put", 10.0, 1.0)])).is_err());
        assert!(check(
            "a",
            "b",
            &row(
                vec![good()],
                vec![with_server(report("put", 0.0, 1.0), 1.0, 1)]
            )
        )
        .is_err());
    }

    #[test]
    fn load_tolerates_missing_and_garbage_files_and_finds_rounds() {
        let dir = std::env::temp_dir().join(format!("kv-bench-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("bad.json"), "not json").expect("write");
        let json = |rate| serde_json::to_string(&report("put", rate, 1.0)).expect("json");
        std::fs::write(dir.join("put.json"), json(1.0)).expect("write");
        std::fs::write(dir.join("put.r2.json"), json(2.0)).expect("write");
        std::fs::write(dir.join("put.r10.json"), json(10.0)).expect("write");
        std::fs::write(dir.join("put.r3.json"), "garbage").expect("write");
        std::fs::write(dir.join("put-256.r1.json"), json(256.0)).expect("write");
        assert!(load(&dir, "missing").is_none());
        assert!(load(&dir, "bad").is_none());
        let rates: Vec<f64> = load_all(&dir, "put")
            .iter()
            .map(|r| r.ops_per_sec)
            .collect();
        assert_eq!(rates, vec![1.0, 2.0, 10.0]);
        assert_eq!(load_all(&dir, "put-256").len(), 1);
        assert!(load_all(&dir, "missing").is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
