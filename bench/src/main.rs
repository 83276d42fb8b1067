//! kv-bench: a load generator for any etcd v3 endpoint (kvd or etcd).
//!
//! `kv-bench --endpoints http://127.0.0.1:2379 --clients 64 --conns 8 put`
//! runs 64 closed-loop logical clients (tokio tasks) sharing 8 gRPC
//! connections round-robin, and prints throughput and latency percentiles.

mod compare;
mod driver;
mod lease;
mod pool;
mod procstat;
mod stats;
mod watch;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use driver::{Limit, Op, Worker};
use pool::{Keys, Pool};
use procstat::CpuMeter;
use stats::{Latency, Report};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "kv-bench",
    version,
    about = "Load generator for etcd v3 endpoints"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Comma-separated endpoints; connection i goes to endpoint i % count.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
    /// Concurrent logical clients (tokio tasks), each with one request in flight.
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    /// gRPC connections, shared round-robin among the clients.
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Stop after this many operations (default 10000 when --duration is not given).
    #[arg(long, global = true)]
    total: Option<u64>,
    /// Stop after this long: "10", "10s", "500ms", "1m".
    #[arg(long, global = true, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Key size in bytes (a one-byte workload prefix plus a zero-padded index).
    #[arg(long, global = true, default_value_t = 8)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, global = true, default_value_t = 256)]
    val_size: usize,
    /// Number of distinct keys; each op picks one uniformly at random.
    #[arg(long, global = true, default_value_t = 10_000)]
    key_space: u64,
    /// Per-request timeout.
    #[arg(long, global = true, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
    /// Seed of the key choice.
    #[arg(long, global = true, default_value_t = 1)]
    seed: u64,
    /// PIDs of the server processes (comma-separated): the report then holds
    /// their CPU time during the measured phase per op, and their peak RSS.
    #[arg(long, global = true, value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// Print the report as one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Put random keys.
    Put,
    /// Get single random keys (the key space is written first).
    Range {
        /// l = linearizable (through the leader/quorum), s = serializable (local).
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
        /// Skip writing the key space first (when a previous run already did).
        #[arg(long)]
        no_prefill: bool,
    },
    /// Compare-and-put: put if the key's mod_revision is the one last seen, else read it.
    Txn {
        /// All clients draw from the whole key space, so they overwrite each
        /// other and compares fail. By default each client owns a disjoint
        /// share of the keys, so its compares hold (a CAS that succeeds).
        #[arg(long)]
        shared_keys: bool,
    },
    /// W watchers on one prefix while P putters write keys under it.
    Watch {
        /// Watchers, spread over the streams.
        #[arg(long, default_value_t = 16)]
        watchers: usize,
        /// Watch streams (spread over the connections); default: one per watcher.
        #[arg(long)]
        streams: Option<usize>,
        /// Putters (default: --clients).
        #[arg(long)]
        putters: Option<usize>,
        /// How long watchers may take after the last put to deliver the rest.
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        drain: Duration,
    },
    /// Leases kept alive: `--clients` closed loops cycle through them, one
    /// keep-alive stream per lease; ops are keep-alive responses.
    LeaseKeepalive {
        /// Leases granted before the timed phase.
        #[arg(long, default_value_t = 1000)]
        leases: usize,
    },
    /// One get against the first endpoint; exit 0 if it answers (for readiness checks).
    Ping,
    /// Print the markdown A/B table from two directories of `--json` reports.
    Compare {
        /// Reports of server A, as <dir>/<workload>.json or, one per round,
        /// <dir>/<workload>.r<N>.json; the table shows medians over rounds.
        #[arg(long)]
        a_dir: PathBuf,
        /// Reports of server B.
        #[arg(long)]
        b_dir: PathBuf,
        #[arg(long, default_value = "kvd")]
        a_name: String,
        #[arg(long, default_value = "etcd")]
        b_name: String,
        /// Rows, in order.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "put,range-l,range-s,txn,watch"
        )]
        workloads: Vec<String>,
        /// Fail unless every workload has a report from both servers with
        /// ops, server CPU and RSS (the CI smoke; no speed is asserted).
        #[arg(long)]
        check: bool,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Consistency {
    L,
    S,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("bad duration {s:?}: {e}"))
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("kv-bench: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let c = cli.common;
    match cli.cmd {
        Cmd::Compare {
            a_dir,
            b_dir,
            a_name,
            b_name,
            workloads,
            check,
        } => {
            let rows: Vec<_> = workloads
                .into_iter()
                .map(|w| {
                    let (a, b) = (compare::load_all(&a_dir, &w), compare::load_all(&b_dir, &w));
                    (w, a, b)
                })
                .collect();
            print!("{}", compare::table(&a_name, &b_name, &rows));
            if check {
                compare::check(&a_name, &b_name, &rows)?;
            }
            return Ok(());
        }
        Cmd::Ping => {
            let ep = c.endpoints.first().cloned().unwrap_or_default();
            let pool = Pool::connect(&[ep], 1, c.timeout).await?;
            drop(pool);
            return Ok(());
        }
        _ => {}
    }
    if c.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let limit = Limit {
        total: match (c.total, c.duration) {
            (None, None) => Some(10_000),
            (t, _) => t,
        },
        duration: c.duration,
    };
    let pool = Pool::connect(&c.endpoints, c.conns, c.timeout).await?;
    let mut report = Report {
        endpoints: c.endpoints.clone(),
        clients: c.clients,
        conns: pool.len(),
        key_size: c.key_size,
        val_size: c.val_size,
        key_space: c.key_space,
        ..Default::default()
    };
    let (op, prefix) = match &cli.cmd {
        Cmd::Put => (Op::Put, b'p'),
        Cmd::Range { consistency, .. } => (
            Op::Range {
                serializable: *consistency == Consistency::S,
            },
            b'r',
        ),
        Cmd::Txn { .. } => (Op::Txn, b't'),
        Cmd::Watch { .. } => (Op::Put, b'w'),
        Cmd::LeaseKeepalive { .. } => (Op::Put, b'l'),
        Cmd::Ping | Cmd::Compare { .. } => unreachable!("handled above"),
    };
    let keys = Keys::new(prefix, c.key_size, c.key_space)?;

    let outcome = match cli.cmd {
        Cmd::Watch {
            watchers,
            streams,
            putters,
            drain,
        } => {
            let putters = putters.unwrap_or(c.clients);
            report.workload = "watch".into();
            report.clients = putters;
            report.val_size = c.val_size.max(8);
            let params = watch::Params {
                watchers,
                streams: streams.unwrap_or(watchers),
                putters,
                val_size: c.val_size,
                seed: c.seed,
                limit,
                drain,
                server_pids: c.server_pids.clone(),
            };
            let w = watch::run(&pool, keys, params).await?;
            report.watch = Some(w.stats);
            report.server = w.server;
            report.first_error = w.first_error;
            w.puts
        }
        Cmd::LeaseKeepalive { leases } => {
            report.workload = "lease-keepalive".into();
            report.leases = Some(leases);
            let mut meter = None;
            let out = lease::run(&pool, leases, c.clients, c.timeout, limit, || {
                meter = Some(CpuMeter::start(&c.server_pids)?);
                Ok(())
            })
            .await?;
            if let Some(m) = meter {
                report.server = m.stop(out.ops)?;
            }
            report.first_error = out.first_error.clone();
            out
        }
        cmd => {
            report.workload = match cmd {
                Cmd::Range { consistency, .. } => match consistency {
                    Consistency::L => "range-l",
                    Consistency::S => "range-s",
                },
                Cmd::Txn { .. } => "txn",
                _ => "put",
            }
            .into();
            if let Cmd::Range {
                no_prefill: false, ..
            } = cmd
            {
                let t = Instant::now();
                driver::prefill(&pool, c.clients, keys, c.val_size)
                    .await
                    .context("writing the key space before the range run")?;
                eprintln!(
                    "prefilled {} keys in {:.2}s",
                    c.key_space,
                    t.elapsed().as_secs_f64()
                );
            }
            let own = matches!(cmd, Cmd::Txn { shared_keys: false });
            let workers = (0..c.clients)
                .map(|i| {
                    let w = Worker::new(&pool, i, c.seed, keys, c.val_size, op);
                    if own {
                        w.own_keys(i, c.clients)
                    } else {
                        w
                    }
                })
                .collect();
            let meter = CpuMeter::start(&c.server_pids)?;
            let out = driver::drive(workers, limit).await?;
            report.server = meter.stop(out.ops)?;
            if op == Op::Txn {
                report.txn = Some(out.txn.clone());
            }
            report.first_error = out.first_error.clone();
            out
        }
    };
    report.elapsed_s = outcome.elapsed.as_secs_f64();
    report.ops = outcome.ops;
    report.errors = outcome.errors;
    report.ops_per_sec = stats::rate(outcome.ops, outcome.elapsed);
    report.latency_ms = Latency::from_histogram(&outcome.hist);

    if c.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn flags_go_before_or_after_the_workload() {
        let cli = Cli::try_parse_from([
            "kv-bench",
            "--clients",
            "64",
            "range",
            "--consistency",
            "s",
            "--conns",
            "8",
        ])
        .expect("parse");
        assert_eq!(cli.common.clients, 64);
        assert_eq!(cli.common.conns, 8);
        assert!(matches!(
            cli.cmd,
            Cmd::Range {
                consistency: Consistency::S,
                ..
            }
        ));
    }
}
