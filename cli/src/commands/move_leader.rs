//! `move-leader TRANSFEREE_ID`: finds the leader among `--endpoints` (by
//! each endpoint's own status) and asks it to hand leadership to the
//! member with that hex ID.

use clap::Args;

use super::Output;
use crate::exit::{error_text, ExitError, EXIT_ERROR};
use crate::global::GlobalFlags;

/// Transfers leadership to another etcd cluster member.
#[derive(Debug, Clone, Args)]
pub struct MoveLeaderArgs {
    /// <transferee-member-id>
    pub args: Vec<String>,
}

impl MoveLeaderArgs {
    /// The transferee's member ID, checked as etcdctl does.
    pub fn validate(&self) -> Result<u64, ExitError> {
        let [id] = self.args.as_slice() else {
            return Err(ExitError::bad_args("move-leader command needs 1 argument"));
        };
        u64::from_str_radix(id, 16).map_err(|_| {
            ExitError::bad_args(format!(
                "strconv.ParseUint: parsing \"{id}\": invalid syntax"
            ))
        })
    }
}

/// Asks the leader to transfer leadership to `target`.
pub async fn run(global: &GlobalFlags, target: u64) -> Result<Output, ExitError> {
    let eps = global.endpoint_list();
    for ep in &eps {
        let client = global.client_for(ep).await?;
        let status = client
            .status()
            .await
            .map_err(|e| ExitError::new(EXIT_ERROR, error_text(&e)))?;
        let member = status.header().map_or(0, |h| h.member_id);
        if member != 0 && member == status.leader() {
            client.move_leader(target).await?;
            return Ok(Output::MoveLeader(member, target));
        }
    }
    Err(ExitError::bad_args(format!(
        "no leader endpoint given at [{}]",
        eps.join(" ")
    )))
}
