//! `member list`.

use clap::{Args, Subcommand};
use kv_client::Client;

use super::Output;
use crate::exit::ExitError;

/// Membership related commands
#[derive(Debug, Clone, Args)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub command: MemberCommand,
}

/// The member subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum MemberCommand {
    /// Lists all members in the cluster
    List,
}

impl MemberArgs {
    /// Checks the arguments (nothing to check for `list`).
    pub fn validate(&self) -> Result<(), ExitError> {
        Ok(())
    }
}

/// Runs `member list`.
pub async fn run(client: &Client) -> Result<Output, ExitError> {
    Ok(Output::MemberList(client.member_list().await?))
}
