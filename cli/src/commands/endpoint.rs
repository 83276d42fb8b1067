//! `endpoint health|status|hashkv [--cluster]`: each endpoint in turn (or,
//! with `--cluster`, each member's client URLs).

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use kv_client::{Client, ClientConfig, Error};

use super::Output;
use crate::exit::ExitError;
use crate::global::GlobalFlags;

/// Endpoint related commands
#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, global = true)]
    pub cluster: bool,
    #[command(subcommand)]
    pub command: EndpointCommand,
}

impl EndpointArgs {
    /// The global flags with `--endpoints` replaced by every member's
    /// client URLs when `--cluster` is given.
    pub async fn resolve(&self, global: &GlobalFlags) -> Result<GlobalFlags, ExitError> {
        let mut g = global.clone();
        if self.cluster {
            g.endpoints = Some(super::defrag::endpoints(global, true).await?);
        }
        Ok(g)
    }
}

/// The endpoint subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health,
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status,
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv {
        /// maximum revision to hash (default: all revisions)
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

/// One endpoint's hash, as etcdctl's `epHashKV`.
#[derive(Debug, Clone)]
pub struct EpHash {
    /// The endpoint.
    pub ep: String,
    /// Its answer.
    pub resp: kv_client::HashKvResponse,
}

/// Runs `endpoint hashkv` against each endpoint in turn. As etcdctl, a
/// failure is reported on stderr and the others still run; the hashes
/// gathered are returned with the last failure (the command then exits 1).
pub async fn run_hashkv(
    global: &GlobalFlags,
    rev: i64,
    sink: super::Sink<'_>,
) -> Result<(Output, Option<ExitError>), ExitError> {
    let mut list = Vec::new();
    let mut failed = None;
    for ep in global.endpoint_list() {
        let client = global.client_for(&ep).await?;
        match client.hash_kv(rev).await {
            Ok(resp) => list.push(EpHash { ep, resp }),
            Err(e) => {
                let text = crate::exit::error_text(&e);
                sink(Output::Notice(format!(
                    "Failed to get the hash of endpoint {ep} ({text})"
                )))?;
                failed = Some(ExitError::new(crate::exit::EXIT_ERROR, text));
            }
        }
    }
    Ok((Output::HashKv(list), failed))
}

/// One endpoint's status, as etcdctl's `epStatus`.
#[derive(Debug, Clone)]
pub struct EpStatus {
    /// The endpoint.
    pub ep: String,
    /// Its answer.
    pub resp: kv_client::maintenance::StatusResponse,
}

/// Runs `endpoint status` against each endpoint in turn; the first failure
/// ends the command (as in etcdctl).
pub async fn run_status(global: &GlobalFlags) -> Result<Output, ExitError> {
    let dial = crate::global::parse_duration("dial-timeout", &global.dial_timeout)?;
    let command = crate::global::parse_duration("command-timeout", &global.command_timeout)?;
    let mut list = Vec::new();
    for ep in global.endpoint_list() {
        let config = ClientConfig::new([ep.clone()])
            .with_connect_timeout(dial)
            .with_request_timeout(command);
        let client = Client::connect(config).await?;
        let resp = client.status().await.map_err(|e| {
            ExitError::new(
                crate::exit::EXIT_ERROR,
                format!("failed to get the status of endpoint {ep} ({e})"),
            )
        })?;
        list.push(EpStatus { ep, resp });
    }
    Ok(Output::EndpointStatus(list))
}

/// One endpoint's health, as etcdctl's `epHealth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpHealth {
    /// The endpoint.
    pub ep: String,
    /// Whether it answered.
    pub health: bool,
    /// How long the check took.
    pub took: Duration,
    /// Why it is unhealthy (empty if healthy).
    pub error: String,
}

/// Runs `endpoint health` against every endpoint at once.
pub async fn run(global: &GlobalFlags) -> Result<Output, ExitError> {
    let dial = crate::global::parse_duration("dial-timeout", &global.dial_timeout)?;
    let command = crate::global::parse_duration("command-timeout", &global.command_timeout)?;
    let mut tasks = Vec::new();
    for ep in global.endpoint_list() {
        tasks.push(tokio::spawn(async move {
            let config = ClientConfig::new([ep.clone()])
                .with_connect_timeout(dial)
                .with_request_timeout(command);
            let start = Instant::now();
            let result = match Client::connect(config).await {
                Ok(client) => client.get("health", None).await.map(|_| ()),
                Err(e) => Err(e),
            };
            let took = start.elapsed();
            match result {
                Ok(()) | Err(Error::PermissionDenied) => EpHealth {
                    ep,
                    health: true,
                    took,
                    error: String::new(),
                },
                Err(e) => EpHealth {
                    ep,
                    health: false,
                    took,
                    error: format!("failed to commit proposal: {}", crate::exit::error_text(&e)),
                },
            }
        }));
    }
    let mut list = Vec::new();
    for t in tasks {
        list.push(
            t.await
                .map_err(|e| ExitError::new(crate::exit::EXIT_ERROR, e.to_string()))?,
        );
    }
    Ok(Output::EndpointHealth(list))
}
