//! `kvctl service`: register, list, watch and deregister service instances
//! (kv-discovery's registry layout: `<namespace>/services/<name>/<id>`).

use clap::{Args, Subcommand};
use kv_client::Client;
use kv_discovery::{RegistrationEvent, Registry, ServiceEvent, ServiceInstance};

use super::lock::util::{self, Signals};
use crate::exit::{ExitError, EXIT_ERROR};
use crate::global::OutputFormat;

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
    },
    /// Lists the instances of a service
    List {
        /// the service name
        name: String,
    },
    /// Prints the instances of a service, then every change
    Watch {
        /// the service name
        name: String,
    },
    /// Deletes an instance's entry
    Deregister {
        /// the service name
        name: String,
        /// the instance ID
        id: String,
    },
}

impl ServiceArgs {
    /// Checks the arguments before connecting.
    pub fn validate(&self) -> Result<(), ExitError> {
        if let ServiceCommand::Register { meta, ttl, .. } = &self.command {
            for m in meta {
                parse_meta(m)?;
            }
            if *ttl <= 0 {
                return Err(ExitError::bad_args("--ttl must be positive"));
            }
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
        } => {
            let mut inst = ServiceInstance::new(name, addr).with_version(version);
            if let Some(id) = id {
                inst = inst.with_id(id);
            }
            for m in &meta {
                let (k, v) = parse_meta(m)?;
                inst = inst.with_metadata(k, v);
            }
            register(registry.with_ttl(ttl), inst).await
        }
        ServiceCommand::List { name } => {
            let list = registry.list(&name).await.map_err(err)?;
            print_list(format, &list)
        }
        ServiceCommand::Watch { name } => watch(&registry, format, &name).await,
        ServiceCommand::Deregister { name, id } => {
            if registry.deregister(&name, &id).await.map_err(err)? {
                util::line(&format!("deregistered {id}"))
            } else {
                Err(ExitError::new(EXIT_ERROR, "service instance not found"))
            }
        }
    }
}

async fn register(registry: Registry, inst: ServiceInstance) -> Result<(), ExitError> {
    let mut signals = Signals::new()?;
    let mut reg = registry.register(inst).await.map_err(err)?;
    loop {
        tokio::select! {
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

fn print_list(format: OutputFormat, list: &[ServiceInstance]) -> Result<(), ExitError> {
    match format {
        OutputFormat::Json => util::line(&json!(&list)),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = list.iter().map(row).collect();
            let header = ["ID", "HEALTH", "ADDRS", "VERSION", "METADATA"];
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
    ]
}

async fn watch(registry: &Registry, format: OutputFormat, name: &str) -> Result<(), ExitError> {
    let mut signals = Signals::new()?;
    let mut sub = registry.subscribe(name).await.map_err(err)?;
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
