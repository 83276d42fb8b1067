//! `kvctl service dns`: answers DNS queries from the registry
//! (`kv_discovery::dns`) until SIGINT or SIGTERM.

use std::net::SocketAddr;

use clap::Args;
use kv_client::Client;
use kv_discovery::dns::{DnsOptions, DnsServer, DEFAULT_DOMAIN};
use kv_discovery::HealthFilter;

use crate::commands::lock::util::{self, Signals};
use crate::exit::{ExitError, EXIT_ERROR};

/// Arguments of `service dns`.
#[derive(Debug, Clone, Args)]
pub struct DnsArgs {
    /// UDP and TCP address to answer on (port 0: any free port, printed)
    #[arg(long, default_value = "127.0.0.1:8600")]
    pub listen: SocketAddr,
    /// domain served: [tag.]<service>.service.<domain>
    #[arg(long, default_value = DEFAULT_DOMAIN)]
    pub domain: String,
    /// TTL of the answers in seconds (0, Consul's default: resolvers do not cache)
    #[arg(long, default_value_t = 0)]
    pub ttl: u32,
    /// answer only passing instances (default: passing and warning, as Consul)
    #[arg(long)]
    pub only_passing: bool,
    /// most services followed at once (the least recently asked is dropped past it)
    #[arg(long, default_value_t = kv_discovery::dns::DEFAULT_MAX_SUBSCRIPTIONS)]
    pub max_services: usize,
}

/// Serves until a signal; prints the address served first.
pub async fn run(client: &Client, namespace: &str, args: &DnsArgs) -> Result<(), ExitError> {
    let health = if args.only_passing {
        HealthFilter::Passing
    } else {
        HealthFilter::PassingOrWarning
    };
    let options = DnsOptions::new()
        .with_domain(args.domain.clone())
        .with_namespace(namespace)
        .with_ttl(args.ttl)
        .with_health(health)
        .with_max_subscriptions(args.max_services);
    let fail = |e: kv_discovery::dns::DnsError| ExitError::new(EXIT_ERROR, e.to_string());
    let mut signals = Signals::new()?;
    let mut server = DnsServer::bind(client.clone(), args.listen, options)
        .await
        .map_err(fail)?;
    util::line(&format!(
        "serving DNS for *.service.{} on {} (udp, tcp)",
        args.domain.trim_end_matches('.'),
        server.local_addr()
    ))?;
    tokio::select! {
        r = server.wait() => r.map_err(fail),
        _ = signals.recv() => server.shutdown().await.map_err(fail),
    }
}
