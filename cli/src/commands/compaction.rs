//! `compaction REV [--physical]`.

use clap::Args;
use kv_client::Client;

use super::Output;
use crate::exit::{ExitError, EXIT_ERROR};

/// Compacts the event history in etcd
#[derive(Debug, Clone, Args)]
pub struct CompactionArgs {
    /// 'true' to wait for compaction to physically remove all old revisions
    #[arg(long)]
    pub physical: bool,
    /// REVISION
    pub args: Vec<String>,
}

impl CompactionArgs {
    /// Checks the arguments as etcdctl does; returns the revision.
    pub fn validate(&self) -> Result<i64, ExitError> {
        if self.args.len() != 1 {
            return Err(ExitError::bad_args("compaction command needs 1 argument"));
        }
        let s = &self.args[0];
        s.parse::<i64>().map_err(|_| {
            ExitError::new(
                EXIT_ERROR,
                format!("strconv.ParseInt: parsing \"{s}\": invalid syntax"),
            )
        })
    }
}

/// Runs the compaction.
pub async fn run(client: &Client, rev: i64, physical: bool) -> Result<Output, ExitError> {
    client.compact(rev, physical).await?;
    Ok(Output::Compaction(rev))
}
