//! `kvctl service`: register, list, watch and deregister service instances
//! (kv-discovery's registry layout: `<namespace>/services/<name>/<id>`).

use clap::{Args, Subcommand};
use kv_client::Client;
use kv_discovery::{Check, RegistrationEvent, Registry, ServiceEvent, ServiceInstance};
use tokio::io::AsyncBufReadExt;

use self::checks::{parse_ttl_report, CheckFlags, FilterFlags};

use super::lock::util::{self, Signals};
use crate::exit::{ExitError, EXIT_ERROR};
use crate::global::OutputFormat;

mod checks;
// `service dns` lives beside this file (commands/service_dns.rs).
#[path = "service_dns.rs"]
mod dns;

/// JSON text of anything serializable (instances always are).
macro_rules! json {
    ($v:expr) => {
        serde_json::to_string($v).unwrap_or_default()
    };
}

/// Arguments of `service`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// key namespace of the registry
    #[arg(long, default_value = kv_discovery::DEFAULT_NAMESPACE)]
    pub namespace: String,
    #[command(subcommand)]
    pub command: ServiceCommand,
}

/// The `service` subcommands.
#[derive(Debug, Clone, Subcommand)]
// Parsed once per process: the size of `Register`'s flags costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ServiceCommand {
    /// Registers an instance and keeps it registered (re-registering after a lease loss) until SIGINT or SIGTERM
    Register {
        /// the service name
        name: String,
        /// the instance's address
        addr: String,
        /// the instance ID (default: a random UUID)
        #[arg(long)]
        id: Option<String>,
        /// lease TTL in seconds: a dead instance disappears within it
        #[arg(long, default_value_t = kv_discovery::DEFAULT_REGISTRATION_TTL)]
        ttl: i64,
        /// metadata label key=value (repeatable)
        #[arg(long = "meta")]
        meta: Vec<String>,
        /// the instance's software version
        #[arg(long, default_value = "")]
        version: String,
        /// tag subscribers can filter on (repeatable)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        #[command(flatten)]
        checks: CheckFlags,
    },
    /// Lists the instances of a service
    List {
        /// the service name
        name: String,
        #[command(flatten)]
        filter: FilterFlags,
    },
    /// Prints the instances of a service, then every change
    Watch {
        /// the service name
        name: String,
        #[command(flatten)]
        filter: FilterFlags,
    },
    /// Deletes an instance's entry
    Deregister {
        /// the service name
        name: String,
        /// the instance ID
        id: String,
    },
    /// Answers DNS (A, AAAA, SRV for [tag.]<service>.service.<domain>) from the registry until SIGINT or SIGTERM
    Dns(dns::DnsArgs),
}

impl ServiceArgs {
    /// Checks the arguments before connecting.
    pub fn validate(&self) -> Result<(), ExitError> {
        if let ServiceCommand::Register {
            meta, ttl, checks, ..
        } = &self.command
        {
            for m in meta {
                parse_meta(m)?;
            }
            if *ttl <= 0 {
                return Err(ExitError::bad_args("--ttl must be positive"));
            }
            checks.checks()?;
        }
        Ok(())
    }
}

fn parse_meta(m: &str) -> Result<(String, String), ExitError> {
    match m.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(ExitError::bad_args(format!(
            "invalid --meta {m:?}: expected key=value"
        ))),
    }
}

fn err(e: kv_discovery::Error) -> ExitError {
    ExitError::new(EXIT_ERROR, e.to_string())
}

/// Runs a `service` subcommand.
pub async fn run(
    client: &Client,
    format: OutputFormat,
    args: &ServiceArgs,
) -> Result<(), ExitError> {
    let registry = Registry::new(client.clone()).with_namespace(args.namespace.clone());
    match args.command.clone() {
        ServiceCommand::Register {
            name,
            addr,
            id,
            ttl,
            meta,
            version,
            tags,
            checks,
        } => {
            let mut inst = ServiceInstance::new(name, addr).with_version(version);
            for t in tags {
                inst = inst.with_tag(t);
            }
            if let Some(id) = id {
                inst = inst.with_id(id);
            }
            for m in &meta {
                let (k, v) = parse_meta(m)?;
                inst = inst.with_metadata(k, v);
            }
            register(registry.with_ttl(ttl), inst, checks.checks()?).await
        }
        ServiceCommand::List { name, filter } => {
            let list = registry
                .list_with(&name, &filter.filter())
                .await
                .map_err(err)?;
            print_list(format, &list)
        }
        ServiceCommand::Watch { name, filter } => watch(&registry, format, &name, &filter).await,
        ServiceCommand::Deregister { name, id } => {
            if registry.deregister(&name, &id).await.map_err(err)? {
                util::line(&format!("deregistered {id}"))
            } else {
                Err(ExitError::new(EXIT_ERROR, "service instance not found"))
            }
        }
        ServiceCommand::Dns(dns_args) => dns::run(client, &args.namespace, &dns_args).await,
    }
}

async fn register(
    registry: Registry,
    inst: ServiceInstance,
    checks: Vec<Check>,
) -> Result<(), ExitError> {
    let mut signals = Signals::new()?;
    // A TTL check's reports come as stdin lines (kvctl is the agent here).
    let ttl_check = checks
        .iter()
        .find(|c| matches!(c.kind(), kv_discovery::CheckKind::Ttl { .. }))
        .map(|c| c.name().to_string());
    let mut reports = ttl_check
        .is_some()
        .then(|| tokio::io::BufReader::new(tokio::io::stdin()).lines());
    let mut reg = registry
        .register_with_checks(inst, checks)
        .await
        .map_err(err)?;
    loop {
        tokio::select! {
            line = next_report(&mut reports) => match line {
                Some(line) => match (parse_ttl_report(&line), &ttl_check) {
                    (Some((health, note)), Some(check)) => {
                        reg.update_ttl(check, health, note).await.map_err(err)?;
                    }
                    _ if line.trim().is_empty() => {}
                    _ => eprintln!("ignored TTL report {line:?}: expected \"passing|warning|critical [NOTE]\""),
                },
                // stdin closed: no more reports, the check expires by itself.
                None => reports = None,
            },
            event = reg.next_event() => match event {
                Some(RegistrationEvent::Registered { lease }) => {
                    util::line(&format!("registered {} lease {lease:x}", reg.key()))?;
                }
                Some(RegistrationEvent::LeaseLost { lease, reason }) => {
                    util::line(&format!("lease {lease:x} lost: {reason}"))?;
                }
                Some(RegistrationEvent::RetryFailed { error }) => {
                    eprintln!("re-registering failed (retrying): {error}");
                }
                Some(RegistrationEvent::Reregistered { lease }) => {
                    util::line(&format!("re-registered {} lease {lease:x}", reg.key()))?;
                }
                Some(RegistrationEvent::HealthChanged { health }) => {
                    util::line(&format!("health {health}"))?;
                }
                None => return Err(ExitError::new(EXIT_ERROR, "registration stopped")),
            },
            _ = signals.recv() => return reg.close().await.map_err(err),
        }
    }
}

/// The next stdin line while reports are read; pending forever otherwise.
async fn next_report(
    reports: &mut Option<tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>>,
) -> Option<String> {
    match reports {
        Some(r) => r.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

fn print_list(format: OutputFormat, list: &[ServiceInstance]) -> Result<(), ExitError> {
    match format {
        OutputFormat::Json => util::line(&json!(&list)),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = list.iter().map(row).collect();
            let header = ["ID", "HEALTH", "ADDRS", "VERSION", "METADATA", "TAGS"];
            let text = crate::printer::table::render(&header, &rows);
            util::line(text.trim_end_matches('\n'))
        }
        OutputFormat::Simple => {
            for inst in list {
                util::line(&row(inst).join(", "))?;
            }
            Ok(())
        }
        OutputFormat::Fields => Err(ExitError::bad_feature(
            "printer \"fields\" does not support service list",
        )),
        // Added by h2 (session 20) with `-w protobuf`: no message to marshal.
        OutputFormat::Protobuf => Err(ExitError::bad_feature(
            "printer \"protobuf\" does not support service list",
        )),
    }
}

fn row(inst: &ServiceInstance) -> Vec<String> {
    let meta: Vec<String> = inst
        .metadata
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    vec![
        inst.id.clone(),
        inst.health.to_string(),
        inst.addrs.join(","),
        inst.version.clone(),
        meta.join(","),
        inst.tags.join(","),
    ]
}

async fn watch(
    registry: &Registry,
    format: OutputFormat,
    name: &str,
    filter: &FilterFlags,
) -> Result<(), ExitError> {
    let mut signals = Signals::new()?;
    let mut sub = registry
        .subscribe_with(name, filter.filter())
        .await
        .map_err(err)?;
    loop {
        let event = tokio::select! {
            e = sub.next_event() => match e {
                Some(e) => e,
                None => return Err(ExitError::new(EXIT_ERROR, "watch stopped")),
            },
            _ = signals.recv() => return Ok(()),
        };
        let (kind, inst) = match &event {
            ServiceEvent::Added(i) => ("added", i),
            ServiceEvent::Updated(i) => ("updated", i),
            ServiceEvent::Removed(i) => ("removed", i),
        };
        let text = match format {
            OutputFormat::Json => json!(&serde_json::json!({ "type": kind, "instance": inst })),
            _ => format!("{} {}", kind.to_uppercase(), json!(inst)),
        };
        util::line(&text)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_needs_key_and_value() {
        assert_eq!(parse_meta("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_meta("novalue").is_err());
        assert!(parse_meta("=v").is_err());
    }
}
