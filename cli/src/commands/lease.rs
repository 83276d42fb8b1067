//! `lease grant TTL`, `lease revoke ID`, `lease timetolive ID [--keys]`.

use clap::{Args, Subcommand};
use kv_client::Client;

use super::Output;
use crate::exit::{ExitError, EXIT_ERROR};

/// Lease related commands
#[derive(Debug, Clone, Args)]
pub struct LeaseArgs {
    #[command(subcommand)]
    pub command: LeaseCommand,
}

/// The lease subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum LeaseCommand {
    /// Creates leases
    Grant {
        /// TTL in seconds
        args: Vec<String>,
    },
    /// Revokes leases
    Revoke {
        /// lease ID in hex
        args: Vec<String>,
    },
    /// List all active leases
    List {
        /// (none accepted)
        args: Vec<String>,
    },
    /// Get lease information
    Timetolive {
        /// Get keys attached to this lease
        #[arg(long)]
        keys: bool,
        /// lease ID in hex
        args: Vec<String>,
    },
}

/// A validated lease request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseRequest {
    /// Grant a lease with this TTL.
    Grant(i64),
    /// Revoke this lease.
    Revoke(i64),
    /// Ask this lease's TTL, with or without its keys.
    TimeToLive(i64, bool),
    /// List the active leases.
    List,
}

fn parse_id(s: &str) -> Result<i64, ExitError> {
    i64::from_str_radix(s, 16).map_err(|_| {
        ExitError::bad_args(format!(
            "bad lease ID arg (strconv.ParseInt: parsing \"{s}\": invalid syntax), expecting ID in Hex"
        ))
    })
}

impl LeaseArgs {
    /// Checks the arguments as etcdctl does.
    pub fn validate(&self) -> Result<LeaseRequest, ExitError> {
        match &self.command {
            LeaseCommand::Grant { args } => {
                if args.len() != 1 {
                    return Err(ExitError::bad_args(
                        "lease grant command needs TTL argument",
                    ));
                }
                let ttl = args[0].parse::<i64>().map_err(|_| {
                    ExitError::bad_args(format!(
                        "bad TTL (strconv.ParseInt: parsing \"{}\": invalid syntax)",
                        args[0]
                    ))
                })?;
                Ok(LeaseRequest::Grant(ttl))
            }
            LeaseCommand::Revoke { args } => {
                if args.len() != 1 {
                    return Err(ExitError::bad_args("lease revoke command needs 1 argument"));
                }
                Ok(LeaseRequest::Revoke(parse_id(&args[0])?))
            }
            // etcdctl ignores extra arguments here.
            LeaseCommand::List { .. } => Ok(LeaseRequest::List),
            LeaseCommand::Timetolive { keys, args } => {
                if args.len() != 1 {
                    return Err(ExitError::bad_args(
                        "lease timetolive command needs lease ID as argument",
                    ));
                }
                Ok(LeaseRequest::TimeToLive(parse_id(&args[0])?, *keys))
            }
        }
    }
}

/// Runs the lease request.
pub async fn run(client: &Client, req: LeaseRequest) -> Result<Output, ExitError> {
    match req {
        LeaseRequest::Grant(ttl) => Ok(Output::LeaseGrant(client.lease_grant(ttl).await?)),
        LeaseRequest::Revoke(id) => {
            let resp = client
                .lease_revoke(id)
                .await
                .map_err(|e| ExitError::new(EXIT_ERROR, format!("failed to revoke lease ({e})")))?;
            Ok(Output::LeaseRevoke(id, resp))
        }
        LeaseRequest::List => Ok(Output::LeaseList(client.leases().await?)),
        LeaseRequest::TimeToLive(id, keys) => Ok(Output::LeaseTimeToLive(
            client.lease_time_to_live(id, keys).await?,
            keys,
        )),
    }
}
