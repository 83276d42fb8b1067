//! Calls the greeter service (`greeter_server`) through a channel that
//! balances over its live instances, found in kv: start and kill servers
//! while it runs and watch the answers move, with no restart.
//!
//! ```sh
//! bash scripts/run-kvd.sh &     # kvd on 127.0.0.1:2379
//! cargo run -p kv-discovery --example greeter_server -- --id a &
//! cargo run -p kv-discovery --example greeter_server -- --id b &
//! cargo run -p kv-discovery --example greeter_client -- --calls 20
//! ```
//!
//! Flags (all optional): `--endpoints 127.0.0.1:2379` (kv, comma-separated),
//! `--service greeter`, `--calls 0` (0: until Ctrl-C), `--interval-ms 200`.
//! Each call prints the instance that answered, or the error.

use std::time::Duration;

use kv_client::{Client, ClientConfig};
use kv_discovery::{HealthFilter, Registry, ServiceFilter};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The value of `--name`, if given.
fn flag(name: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
    }
    None
}

fn flag_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, Error> {
    match flag(name) {
        Some(v) => v
            .parse()
            .map_err(|_| format!("bad value for {name}: {v:?}").into()),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoints = flag("--endpoints").unwrap_or_else(|| "127.0.0.1:2379".into());
    let service = flag("--service").unwrap_or_else(|| "greeter".into());
    let calls: u64 = flag_or("--calls", 0)?;
    let interval = Duration::from_millis(flag_or("--interval-ms", 200)?);

    let client = Client::connect(ClientConfig::new(endpoints.split(','))).await?;
    let registry = Registry::new(client);
    let filter = ServiceFilter::new().with_health(HealthFilter::PassingOrWarning);
    let channel = kv_discovery::grpc::channel(&registry, &service, filter, |ep| {
        ep.timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(1))
    })
    .await?;
    let mut greeter = HealthClient::new(channel);

    let mut n = 0u64;
    while calls == 0 || n < calls {
        n += 1;
        let req = HealthCheckRequest {
            service: String::new(),
        };
        match greeter.check(req).await {
            Ok(resp) => {
                let from = resp
                    .metadata()
                    .get("x-instance-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?");
                println!("call {n}: answered by {from}");
            }
            Err(status) => println!("call {n}: {:?} {}", status.code(), status.message()),
        }
        tokio::time::sleep(interval).await;
    }
    Ok(())
}
