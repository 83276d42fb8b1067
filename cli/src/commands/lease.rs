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
    /// Keeps leases alive (renew)
    #[command(name = "keep-alive")]
    KeepAlive {
        /// Resets the keep-alive time to its original value and exits immediately
        #[arg(long)]
        once: bool,
        /// lease ID in hex
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
    /// Keep this lease alive (once, or until it is gone).
    KeepAlive(i64, bool),
}

/// One acknowledged renewal of `lease keep-alive`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepAlive {
    /// The lease.
    pub id: i64,
    /// The TTL the server granted again, in seconds.
    pub ttl: i64,
    /// The header of a server answer about the lease (the client's keeper
    /// does not expose its renewals' headers, so this comes from a
    /// time-to-live query right after the renewal).
    pub header: Option<kv_client::ResponseHeader>,
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
            LeaseCommand::KeepAlive { once, args } => {
                if args.len() != 1 {
                    return Err(ExitError::bad_args(
                        "lease keep-alive command needs lease ID as argument",
                    ));
                }
                Ok(LeaseRequest::KeepAlive(parse_id(&args[0])?, *once))
            }
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
        LeaseRequest::List => Ok(Output::LeaseList(client.lease_leases().await?)),
        LeaseRequest::TimeToLive(id, keys) => Ok(Output::LeaseTimeToLive(
            client.lease_time_to_live(id, keys).await?,
            keys,
        )),
        LeaseRequest::KeepAlive(..) => Err(ExitError::new(
            EXIT_ERROR,
            "lease keep-alive is a streaming command",
        )),
    }
}

/// Runs `lease keep-alive`: hands every renewal to `sink`. With `once`, one
/// renewal (a failure exits 2, as etcdctl); otherwise renewals until the
/// lease is gone, which ends the command normally.
pub async fn keep_alive(
    client: &Client,
    id: i64,
    once: bool,
    sink: super::Sink<'_>,
) -> Result<(), ExitError> {
    let keeper = match client.lease_keeper(id).await {
        Ok(k) => k,
        Err(kv_client::Error::LeaseNotFound) if !once => return sink(Output::LeaseExpired(id)),
        Err(e) => {
            return Err(ExitError::new(
                crate::exit::EXIT_BAD_CONNECTION,
                crate::exit::error_text(&e),
            ))
        }
    };
    let renewal = |ttl| async move {
        let header = match client.lease_time_to_live(id, false).await {
            Ok(r) => r.header().cloned(),
            Err(_) => None,
        };
        Output::KeepAlive(KeepAlive { id, ttl, header })
    };
    sink(renewal(keeper.ttl()).await)?;
    if once {
        return Ok(());
    }
    let lost = keeper.lost();
    tokio::pin!(lost);
    loop {
        // The keeper renews every third of the TTL; report at that pace.
        let every = std::time::Duration::from_secs((keeper.ttl() / 3).max(1).unsigned_abs());
        tokio::select! {
            _ = &mut lost => return sink(Output::LeaseExpired(id)),
            _ = tokio::time::sleep(every) => sink(renewal(keeper.ttl()).await)?,
        }
    }
}
