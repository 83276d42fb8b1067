//! Server cost from /proc: CPU time (utime + stime of /proc/PID/stat) spent
//! by the server processes during the measured phase, and their peak RSS
//! (VmHWM of /proc/PID/status). The PIDs come from `--server-pids`.

use crate::stats::ServerStats;
use anyhow::{anyhow, bail, Context, Result};

/// CPU ticks (utime + stime) of one process, all its threads included.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_ticks(&text).with_context(|| format!("parsing {path}"))
}

/// utime + stime from the text of /proc/PID/stat. The command name (field 2)
/// is in parentheses and may itself hold spaces and ')', so fields are counted
/// from the last ')'.
fn parse_stat_ticks(text: &str) -> Result<u64> {
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| anyhow!("no ')' after the command name"))?;
    // After the name: field 3 (state) is index 0, so utime (14) is 11, stime (15) is 12.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize, name: &str| -> Result<u64> {
        fields
            .get(i)
            .ok_or_else(|| anyhow!("too few fields for {name}"))?
            .parse::<u64>()
            .with_context(|| format!("{name} is not a number"))
    };
    Ok(field(11, "utime")? + field(12, "stime")?)
}

/// VmHWM (peak resident set) in KiB from the text of /proc/PID/status.
fn parse_vm_hwm_kib(text: &str) -> Result<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .ok_or_else(|| anyhow!("no VmHWM line"))?;
    let mut parts = line.split_whitespace();
    let n: u64 = parts
        .next()
        .ok_or_else(|| anyhow!("empty VmHWM line"))?
        .parse()
        .context("VmHWM is not a number")?;
    match parts.next() {
        Some("kB") => Ok(n),
        other => bail!("unexpected VmHWM unit {other:?}"),
    }
}

fn peak_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_hwm_kib(&text).with_context(|| format!("parsing {path}"))
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // USER_HZ is 100 on every Linux ABI; fall back to it if sysconf fails.
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Reads the servers' CPU time at the start of the measured phase; [`stop`]
/// turns the difference into [`ServerStats`]. With no PIDs it measures nothing.
///
/// [`stop`]: CpuMeter::stop
pub struct CpuMeter {
    pids: Vec<u32>,
    start_ticks: u64,
}

impl CpuMeter {
    /// Samples every PID now; fails if one is gone (the numbers would be wrong).
    pub fn start(pids: &[u32]) -> Result<Self> {
        let mut start_ticks = 0;
        for &pid in pids {
            start_ticks += cpu_ticks(pid)?;
        }
        Ok(Self {
            pids: pids.to_vec(),
            start_ticks,
        })
    }

    /// Samples again and divides the CPU spent by `units` (ops, events or
    /// keep-alive responses). `None` when no PIDs were given.
    pub fn stop(&self, units: u64) -> Result<Option<ServerStats>> {
        if self.pids.is_empty() {
            return Ok(None);
        }
        let mut ticks = 0;
        let mut rss = 0;
        for &pid in &self.pids {
            ticks += cpu_ticks(pid)?;
            rss += peak_rss_kib(pid)?;
        }
        let cpu_s = ticks.saturating_sub(self.start_ticks) as f64 / ticks_per_second();
        let cpu_us_per_op = if units > 0 {
            cpu_s * 1e6 / units as f64
        } else {
            0.0
        };
        Ok(Some(ServerStats {
            pids: self.pids.len(),
            cpu_s,
            units,
            cpu_us_per_op,
            peak_rss_kib: rss,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_paren() {
        // Field 14 utime = 250, 15 stime = 50; the name holds ") (" on purpose.
        let line =
            "4242 (we ird) (name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_stat_ticks(line).expect("parse"), 300);
        assert!(parse_stat_ticks("4242 no paren").is_err());
        assert!(parse_stat_ticks("4242 (x) S 1 2").is_err());
        assert!(parse_stat_ticks("4242 (x) S 1 2 3 4 5 6 7 8 9 x 1").is_err());
    }

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status = "Name:\tkvd\nVmPeak:\t  999 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(parse_vm_hwm_kib(status).expect("parse"), 51200);
        assert!(parse_vm_hwm_kib("Name:\tkvd\n").is_err());
        assert!(parse_vm_hwm_kib("VmHWM:\t 12 MB\n").is_err());
    }

    #[test]
    fn meters_this_process() {
        let me = std::process::id();
        let m = CpuMeter::start(&[me]).expect("start");
        // Burn a little CPU so the sample can move (not asserted: ticks are coarse).
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let s = m.stop(10).expect("stop").expect("stats");
        assert_eq!(s.pids, 1);
        assert!(s.peak_rss_kib > 0);
        assert!(s.cpu_s >= 0.0);
        assert!(CpuMeter::start(&[])
            .expect("empty")
            .stop(1)
            .expect("stop")
            .is_none());
        // A PID that cannot exist (above pid_max's ceiling) is an error, not a zero.
        assert!(CpuMeter::start(&[u32::MAX]).is_err());
    }
}
