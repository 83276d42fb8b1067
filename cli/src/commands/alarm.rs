//! `alarm list`, `alarm disarm`.

use clap::{Args, Subcommand};
use kv_client::Client;

use super::Output;
use crate::exit::ExitError;

/// Alarm related commands
#[derive(Debug, Clone, Args)]
pub struct AlarmArgs {
    #[command(subcommand)]
    pub command: AlarmCommand,
}

/// The alarm subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum AlarmCommand {
    /// Lists all alarms
    List {
        /// (none accepted)
        args: Vec<String>,
    },
    /// Disarms all alarms
    Disarm {
        /// (none accepted)
        args: Vec<String>,
    },
}

impl AlarmArgs {
    /// Checks the arguments as etcdctl does.
    pub fn validate(&self) -> Result<(), ExitError> {
        match &self.command {
            AlarmCommand::List { args } if !args.is_empty() => Err(ExitError::bad_args(
                "alarm list command accepts no arguments",
            )),
            AlarmCommand::Disarm { args } if !args.is_empty() => Err(ExitError::bad_args(
                "alarm disarm command accepts no arguments",
            )),
            AlarmCommand::List { .. } | AlarmCommand::Disarm { .. } => Ok(()),
        }
    }
}

/// Runs `alarm list` or `alarm disarm`.
pub async fn run(client: &Client, command: &AlarmCommand) -> Result<Output, ExitError> {
    match command {
        AlarmCommand::List { .. } => Ok(Output::AlarmList(client.alarm_list().await?)),
        // As etcdctl: disarm every alarm of every member.
        AlarmCommand::Disarm { .. } => Ok(Output::AlarmDisarm(
            client
                .alarm_disarm(0, kv_client::maintenance::Alarm::None)
                .await?,
        )),
    }
}
