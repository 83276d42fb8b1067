//! The health-check and filter flags of `kvctl service`, after Consul's
//! check definition (`HTTP`, `TCP`, `GRPC`, `Args`, `TTL`, `Interval`,
//! `Timeout`, `DeregisterCriticalServiceAfter`, `TLSServerName`,
//! `TLSSkipVerify`) and its
//! `-passing` / `-tag` filters; kv-discovery's `CheckOptions` turns them
//! into checks the `register` process runs itself.

use clap::Args;
use kv_discovery::check::{split_command, CheckOptions};
use kv_discovery::{Check, Health, HealthFilter, ServiceFilter};

use crate::exit::ExitError;
use crate::global::parse_duration;

/// Health checks `service register` runs; each state change rewrites the entry.
#[derive(Debug, Clone, Default, Args)]
pub struct CheckFlags {
    /// HTTP check: GET this http:// or https:// URL every interval; 2xx passing, 429 warning, else critical (repeatable)
    #[arg(long = "check-http", value_name = "URL")]
    pub http: Vec<String>,
    /// TCP check: connect to host:port every interval (repeatable)
    #[arg(long = "check-tcp", value_name = "ADDR")]
    pub tcp: Vec<String>,
    /// gRPC health check (grpc.health.v1) of host:port or https://host:port (TLS), optionally for one service (repeatable)
    #[arg(long = "check-grpc", value_name = "ADDR[/SERVICE]")]
    pub grpc: Vec<String>,
    /// command check: run "CMD ARGS" (quotes group words); exit 0 passing, 1 warning, else critical (repeatable)
    #[arg(long = "check-cmd", value_name = "CMD ARGS")]
    pub cmd: Vec<String>,
    /// TTL check: critical unless a report arrives within this duration; reports are stdin lines "passing|warning|critical [NOTE]"
    #[arg(long = "check-ttl", value_name = "DURATION")]
    pub check_ttl: Option<String>,
    /// time between two probes of each check (e.g. 5s)
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<String>,
    /// limit on one probe (e.g. 2s)
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// deregister the instance once a check has been critical this long (e.g. 1m)
    #[arg(long = "deregister-critical-after", value_name = "DURATION")]
    pub deregister_critical_after: Option<String>,
    /// consecutive passing probes before a check turns passing
    #[arg(long = "success-before-passing", value_name = "N")]
    pub success_before_passing: Option<u32>,
    /// consecutive failing probes before a check turns warning or critical
    #[arg(long = "failures-before-critical", value_name = "N")]
    pub failures_before_critical: Option<u32>,
    /// The TLS settings of https:// checks (boxed: kvctl's command enum
    /// stays small).
    #[command(flatten)]
    pub tls: Box<CheckTlsFlags>,
}

/// How https:// checks verify their server (Consul's `TLSServerName`,
/// `TLSSkipVerify`, and a CA file).
#[derive(Debug, Clone, Default, Args)]
pub struct CheckTlsFlags {
    /// https:// checks trust the CA certificates of this PEM file instead of the system's roots
    #[arg(long = "check-tls-ca-file", value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// https:// checks verify the server certificate for this name (and send it as SNI) instead of the URL's host
    #[arg(long = "check-tls-server-name", value_name = "NAME")]
    pub server_name: Option<String>,
    /// https:// checks accept any server certificate (encrypted, but the server is not authenticated)
    #[arg(long = "check-tls-skip-verify")]
    pub skip_verify: bool,
}

impl CheckFlags {
    /// The checks asked for (empty: none), validated.
    pub fn checks(&self) -> Result<Vec<Check>, ExitError> {
        let dur =
            |flag, v: &Option<String>| v.as_deref().map(|s| parse_duration(flag, s)).transpose();
        let mut command = Vec::new();
        for c in &self.cmd {
            command.push(split_command(c).map_err(bad)?);
        }
        let opts = CheckOptions {
            http: self.http.clone(),
            tcp: self.tcp.clone(),
            grpc: self.grpc.clone(),
            command,
            ttl: dur("check-ttl", &self.check_ttl)?.into_iter().collect(),
            interval: dur("interval", &self.interval)?,
            timeout: dur("timeout", &self.timeout)?,
            deregister_critical_after: dur(
                "deregister-critical-after",
                &self.deregister_critical_after,
            )?,
            success_before_passing: self.success_before_passing,
            failures_before_critical: self.failures_before_critical,
            tls_ca_file: self.tls.ca_file.clone(),
            tls_server_name: self.tls.server_name.clone(),
            tls_skip_verify: self.tls.skip_verify,
        };
        let settings_only = opts.interval.is_some()
            || opts.timeout.is_some()
            || opts.deregister_critical_after.is_some()
            || opts.success_before_passing.is_some()
            || opts.failures_before_critical.is_some()
            || opts.tls_ca_file.is_some()
            || opts.tls_server_name.is_some()
            || opts.tls_skip_verify;
        if opts.is_empty() && settings_only {
            return Err(ExitError::bad_args(
                "check settings given without a check (--check-http, --check-tcp, --check-grpc, --check-cmd or --check-ttl)",
            ));
        }
        opts.into_checks().map_err(bad)
    }
}

fn bad(e: kv_discovery::check::CheckOptionsError) -> ExitError {
    ExitError::bad_args(e.to_string())
}

/// Which instances `service list` and `service watch` show.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterFlags {
    /// only instances whose health is passing
    #[arg(long, visible_alias = "passing")]
    pub healthy: bool,
    /// only instances carrying this tag (repeatable: all of them)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

impl FilterFlags {
    /// The filter the flags describe.
    pub fn filter(&self) -> ServiceFilter {
        let mut f = ServiceFilter::new();
        for t in &self.tags {
            f = f.with_tag(t.clone());
        }
        if self.healthy {
            f = f.with_health(HealthFilter::Passing);
        }
        f
    }
}

/// A TTL report read from stdin: `passing|warning|critical [NOTE]` (also
/// Consul's `pass`, `warn`, `fail`).
pub fn parse_ttl_report(line: &str) -> Option<(Health, String)> {
    let line = line.trim();
    let (word, note) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let health = match word {
        "passing" | "pass" => Health::Passing,
        "warning" | "warn" => Health::Warning,
        "critical" | "fail" => Health::Critical,
        _ => return None,
    };
    Some((health, note.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_named_checks() {
        let f = CheckFlags {
            http: vec!["http://127.0.0.1:1/h".into()],
            grpc: vec!["127.0.0.1:2/svc".into()],
            cmd: vec!["sh -c 'exit 1'".into()],
            check_ttl: Some("30s".into()),
            interval: Some("500ms".into()),
            ..Default::default()
        };
        let checks = f.checks().unwrap();
        let names: Vec<&str> = checks.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["http", "grpc", "cmd", "ttl"]);
        assert!(CheckFlags {
            interval: Some("5s".into()),
            ..Default::default()
        }
        .checks()
        .is_err());
        assert!(CheckFlags {
            http: vec!["x".into()],
            interval: Some("fast".into()),
            ..Default::default()
        }
        .checks()
        .is_err());
        assert!(CheckFlags::default().checks().unwrap().is_empty());
    }

    #[test]
    fn tls_flags_reach_https_checks() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            checks: CheckFlags,
        }
        let parse = |args: &[&str]| {
            let argv = std::iter::once("kvctl").chain(args.iter().copied());
            Cmd::try_parse_from(argv).unwrap().checks.checks()
        };
        let checks = parse(&[
            "--check-http",
            "https://127.0.0.1:1/h",
            "--check-tls-skip-verify",
            "--check-tls-server-name",
            "web.internal",
        ])
        .unwrap();
        assert!(checks[0].tls().skip_verify);
        assert_eq!(checks[0].tls().server_name.as_deref(), Some("web.internal"));
        // TLS settings without an https check, or with a missing CA file.
        assert!(parse(&["--check-tls-skip-verify"]).is_err());
        let plain = parse(&["--check-http", "http://h/", "--check-tls-skip-verify"]);
        assert!(plain.is_err());
        let missing = parse(&[
            "--check-grpc",
            "https://127.0.0.1:1",
            "--check-tls-ca-file",
            "/nonexistent/ca.pem",
        ]);
        assert!(missing.is_err());
    }

    #[test]
    fn ttl_reports() {
        assert_eq!(
            parse_ttl_report("pass all good\n"),
            Some((Health::Passing, "all good".into()))
        );
        assert_eq!(
            parse_ttl_report("critical"),
            Some((Health::Critical, String::new()))
        );
        assert_eq!(parse_ttl_report("maybe"), None);
    }
}
