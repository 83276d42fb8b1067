//! `kv-robustness`: runs the fault campaign and prints
//! "faults survived N / histories checked M / violations V"; exits 1 on any
//! violation.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kv_robustness::campaign::{self, Config, Plant};
use kv_robustness::faults::{Fault, FaultConfig};
use kv_robustness::launcher::Flavor;

/// Fault campaign against a cluster of real kvd (or etcd) processes.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// kvd binary (default: <workspace>/target/debug/kvd).
    #[arg(long)]
    kvd_bin: Option<PathBuf>,
    /// Run against this etcd binary instead of kvd (a check on the harness).
    #[arg(long, conflicts_with = "kvd_bin")]
    etcd_bin: Option<PathBuf>,
    /// Members per cluster: 1 or 3.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    members: u8,
    /// The CI preset: one round with every fault kind once (well under a minute).
    #[arg(long)]
    short: bool,
    /// Rounds to run (each a fresh cluster and one checked history).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Keep starting rounds until this much time has passed (e.g. 600, 10m, 2h).
    #[arg(long, value_parser = parse_duration, conflicts_with = "rounds")]
    duration: Option<Duration>,
    /// Faults per round.
    #[arg(long, default_value_t = 14)]
    faults: usize,
    /// Draw faults only from these kinds (comma-separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Fault>,
    /// Concurrent client workers.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Seed of every random choice (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Longest hold of a fault, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    max_hold_ms: u64,
    /// Values written while a follower is down.
    #[arg(long, default_value_t = 24)]
    large_values: usize,
    /// Size of each large value in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    large_value_size: usize,
    /// Negative control: remove one acknowledged write from the final history.
    #[arg(long)]
    plant_lost_write: bool,
    /// Negative control: deliver one watch event twice.
    #[arg(long)]
    plant_watch_duplicate: bool,
    /// Negative control: make one answered read report a value no one wrote.
    #[arg(long)]
    plant_phantom_read: bool,
    /// Negative control: the disk-error fault makes every kvd member drop
    /// its WAL records while acknowledging them (a planted server bug,
    /// through kvd's `wal-write=drop` failpoint), then kills them all.
    #[arg(long)]
    plant_wal_drop: bool,
    /// Negative control: the disk-error fault arms a no-op failpoint, as a
    /// kvd that ignored WAL errors would behave; the campaign must say the
    /// member did not stop.
    #[arg(long)]
    plant_error_ignored: bool,
    /// Negative control: the slow-fsync fault also drops WAL records while
    /// acknowledging them (kvd's `wal-write=drop`), on every member, then
    /// kills them all; the campaign must report lost writes.
    #[arg(long)]
    plant_slow_fsync_drop: bool,
    /// Negative control: the slow-fsync fault arms an fsync error instead,
    /// as a kvd that exits on a slow disk would behave; the campaign must
    /// say the member died.
    #[arg(long)]
    plant_slow_fsync_exit: bool,
    /// Negative control: remove one acknowledged write made while a member
    /// was replaced from the history read from the new member.
    #[arg(long)]
    plant_replace_lost_write: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("bad duration unit in {s:?} (use s, m or h)")),
    };
    Ok(Duration::from_secs(secs))
}

fn default_kvd() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("debug").join("kvd")
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kv_robustness=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let flavor = match (&a.etcd_bin, &a.kvd_bin) {
        (Some(e), _) => Flavor::Etcd(e.clone()),
        (None, Some(k)) => Flavor::Kvd(k.clone()),
        (None, None) => Flavor::Kvd(default_kvd()),
    };
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut cfg = Config {
        flavor,
        members: usize::from(a.members),
        clients: a.clients,
        faults_per_round: a.faults,
        only: a.only,
        rounds: a.rounds,
        duration: a.duration,
        seed,
        faults: FaultConfig {
            max_hold: Duration::from_millis(a.max_hold_ms),
            large_values: a.large_values,
            large_value_size: a.large_value_size,
            plant_wal_drop: a.plant_wal_drop,
            plant_error_ignored: a.plant_error_ignored,
            plant_slow_fsync_drop: a.plant_slow_fsync_drop,
            plant_slow_fsync_exit: a.plant_slow_fsync_exit,
        },
        plant: Plant {
            lost_write: a.plant_lost_write,
            watch_duplicate: a.plant_watch_duplicate,
            phantom_read: a.plant_phantom_read,
            replace_lost_write: a.plant_replace_lost_write,
        },
    };
    if a.short {
        cfg.rounds = 1;
        cfg.duration = None;
        cfg.faults_per_round = if cfg.only.is_empty() {
            kv_robustness::faults::ALL.len()
        } else {
            cfg.only.len()
        };
        cfg.clients = cfg.clients.min(4);
        cfg.faults.max_hold = cfg.faults.max_hold.min(Duration::from_millis(600));
        cfg.faults.large_values = cfg.faults.large_values.min(6);
    }
    println!(
        "kv-robustness: {} x{} seed {seed} ({} faults per round)",
        cfg.flavor.name(),
        cfg.members,
        cfg.faults_per_round
    );
    let report = campaign::run(&cfg).await;
    for why in &report.skipped {
        println!("skipped: {why}");
    }
    for u in &report.undecided {
        println!("undecided: {u}");
    }
    for v in report.violations.iter().take(50) {
        println!("VIOLATION: {v}");
    }
    println!(
        "operations answered {} / failed {}",
        report.answered, report.failed
    );
    println!("{}", report.summary());
    if report.violations.is_empty() && report.histories_checked > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
