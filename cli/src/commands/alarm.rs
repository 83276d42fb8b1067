//! `alarm list`.

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
}

impl AlarmArgs {
    /// Checks the arguments as etcdctl does.
    pub fn validate(&self) -> Result<(), ExitError> {
        match &self.command {
            AlarmCommand::List { args } if !args.is_empty() => Err(ExitError::bad_args(
                "alarm list command accepts no arguments",
            )),
            AlarmCommand::List { .. } => Ok(()),
        }
    }
}

/// Runs `alarm list`.
pub async fn run(client: &Client) -> Result<Output, ExitError> {
    Ok(Output::AlarmList(client.alarm_list().await?))
}
