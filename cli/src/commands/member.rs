//! `member list|add|remove|update|promote`.

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
    /// Adds a member into the cluster
    Add {
        /// comma separated peer URLs for the new member.
        #[arg(long, default_value = "")]
        peer_urls: String,
        /// indicates if the new member is raft learner
        #[arg(long)]
        learner: bool,
        /// NAME
        args: Vec<String>,
    },
    /// Removes a member from the cluster
    Remove {
        /// MEMBER_ID (hex)
        args: Vec<String>,
    },
    /// Updates a member in the cluster
    Update {
        /// comma separated peer URLs for the updated member.
        #[arg(long, default_value = "")]
        peer_urls: String,
        /// MEMBER_ID (hex)
        args: Vec<String>,
    },
    /// Promotes a non-voting member in the cluster
    Promote {
        /// MEMBER_ID (hex)
        args: Vec<String>,
    },
}

/// Which change `member remove|update|promote` made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `member remove`.
    Removed,
    /// `member update`.
    Updated,
    /// `member promote`.
    Promoted,
}

impl Change {
    /// The verb etcdctl prints (`Member %16x <verb> cluster %16x`).
    pub fn phrase(self) -> &'static str {
        match self {
            Change::Removed => "removed from",
            Change::Updated => "updated in",
            Change::Promoted => "promoted in",
        }
    }
}

/// A validated member request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRequest {
    /// List the members.
    List,
    /// Add member `name` at these peer URLs, maybe as a learner.
    Add(String, Vec<String>, bool),
    /// Remove this member.
    Remove(u64),
    /// Set this member's peer URLs.
    Update(u64, Vec<String>),
    /// Promote this learner.
    Promote(u64),
}

fn parse_id(args: &[String]) -> Result<u64, ExitError> {
    let Some(s) = args.first() else {
        return Err(ExitError::bad_args("member ID is not provided"));
    };
    u64::from_str_radix(s, 16).map_err(|_| {
        ExitError::bad_args(format!(
            "bad member ID arg (strconv.ParseUint: parsing \"{s}\": invalid syntax), expecting ID in Hex"
        ))
    })
}

fn urls(s: &str) -> Result<Vec<String>, ExitError> {
    if s.is_empty() {
        return Err(ExitError::bad_args("member peer urls not provided"));
    }
    Ok(s.split(',').map(str::to_string).collect())
}

impl MemberArgs {
    /// Checks the arguments as etcdctl does.
    pub fn validate(&self) -> Result<MemberRequest, ExitError> {
        match &self.command {
            MemberCommand::List => Ok(MemberRequest::List),
            MemberCommand::Add {
                peer_urls,
                learner,
                args,
            } => {
                if args.len() != 1 {
                    return Err(ExitError::bad_args("member name not provided"));
                }
                Ok(MemberRequest::Add(
                    args[0].clone(),
                    urls(peer_urls)?,
                    *learner,
                ))
            }
            MemberCommand::Remove { args } => Ok(MemberRequest::Remove(parse_id(args)?)),
            MemberCommand::Update { peer_urls, args } => {
                let id = parse_id(args)?;
                Ok(MemberRequest::Update(id, urls(peer_urls)?))
            }
            MemberCommand::Promote { args } => Ok(MemberRequest::Promote(parse_id(args)?)),
        }
    }
}

/// Runs the member request.
pub async fn run(client: &Client, req: MemberRequest) -> Result<Output, ExitError> {
    Ok(match req {
        MemberRequest::List => Output::MemberList(client.member_list().await?),
        MemberRequest::Add(name, urls, learner) => {
            Output::MemberAdd(client.member_add(urls, learner).await?, name)
        }
        MemberRequest::Remove(id) => {
            Output::MemberChange(Change::Removed, id, client.member_remove(id).await?)
        }
        MemberRequest::Update(id, urls) => {
            Output::MemberChange(Change::Updated, id, client.member_update(id, urls).await?)
        }
        MemberRequest::Promote(id) => {
            Output::MemberChange(Change::Promoted, id, client.member_promote(id).await?)
        }
    })
}
