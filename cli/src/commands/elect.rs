//! `kvctl elect <election-name> [proposal]`: etcdctl's `elect`.
//!
//! With a proposal, campaigns (etcd's concurrency key layout, so it
//! competes with `etcdctl elect` on the same name), prints the leader
//! key-value once elected and holds leadership until SIGINT or SIGTERM,
//! then resigns. With `-l`, prints every leader as it is observed.

use clap::Args;
use kv_client::{Client, GetResponse};
use kv_discovery::{Election, Session};

use super::lock::util::{self, Signals};
use super::Output;
use crate::exit::{ExitError, EXIT_ERROR};
use crate::global::OutputFormat;
use crate::printer::{self, PrintOptions};

/// Arguments of `elect`.
#[derive(Debug, Args)]
pub struct ElectArgs {
    /// observation mode
    #[arg(short = 'l', long = "listen")]
    pub listen: bool,
    /// the election name, then the proposal
    pub args: Vec<String>,
}

/// What `elect` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum ElectRequest {
    /// Observe the election.
    Observe(String),
    /// Campaign with a proposal.
    Campaign(String, String),
}

impl ElectArgs {
    /// Checks the arguments with etcdctl's messages.
    pub fn validate(&self) -> Result<ElectRequest, ExitError> {
        match (&self.args[..], self.listen) {
            ([name], true) => Ok(ElectRequest::Observe(name.clone())),
            ([_], false) => Err(ExitError::bad_args("no proposal argument but -l not set")),
            ([_, _], true) => Err(ExitError::bad_args("proposal given but -l is set")),
            ([name, prop], false) => Ok(ElectRequest::Campaign(name.clone(), prop.clone())),
            _ => Err(ExitError::bad_args(
                "elect takes one election name argument and an optional proposal argument",
            )),
        }
    }
}

/// Runs `elect` until a signal (or the session is lost).
pub async fn run(
    client: &Client,
    format: OutputFormat,
    req: ElectRequest,
) -> Result<(), ExitError> {
    let mut signals = Signals::new()?;
    let p = printer::new_printer(format, PrintOptions::default());
    match req {
        ElectRequest::Observe(name) => {
            let mut leaders = kv_discovery::election::observe(client, &name);
            loop {
                tokio::select! {
                    l = leaders.next_leader() => match l {
                        Some(l) => {
                            let mut resp = GetResponse(Default::default());
                            resp.0.header = Some(l.header);
                            resp.0.kvs = vec![l.kv];
                            util::emit(p.as_ref(), &Output::Get(resp))?;
                        }
                        None => return Err(ExitError::new(EXIT_ERROR, "elect: observer lost")),
                    },
                    _ = signals.recv() => return Ok(()),
                }
            }
        }
        ElectRequest::Campaign(name, proposal) => {
            // etcdctl campaigns on a default (60 s) session.
            let session = Session::new(client).await.map_err(err)?;
            let election = Election::new(&session, name);
            let leadership = tokio::select! {
                l = election.campaign(proposal) => l.map_err(err)?,
                _ = signals.recv() => {
                    let _ = session.close().await;
                    return Err(ExitError::new(EXIT_ERROR, "context canceled"));
                }
            };
            let resp = client.get(leadership.key(), None).await?;
            util::emit(p.as_ref(), &Output::Get(resp))?;
            tokio::select! {
                _ = signals.recv() => {
                    let r = leadership.resign().await;
                    let _ = session.close().await;
                    r.map_err(err)
                }
                _ = session.lost() => Err(ExitError::new(EXIT_ERROR, "elect: session expired")),
            }
        }
    }
}

fn err(e: kv_discovery::Error) -> ExitError {
    ExitError::new(EXIT_ERROR, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: bool, a: &[&str]) -> ElectArgs {
        ElectArgs {
            listen,
            args: a.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn validation_matches_etcdctl() {
        assert_eq!(
            args(true, &["e"]).validate().unwrap(),
            ElectRequest::Observe("e".into())
        );
        assert_eq!(
            args(false, &["e", "p"]).validate().unwrap(),
            ElectRequest::Campaign("e".into(), "p".into())
        );
        for (l, a, msg) in [
            (false, &["e"][..], "no proposal argument but -l not set"),
            (true, &["e", "p"][..], "proposal given but -l is set"),
            (
                false,
                &[][..],
                "elect takes one election name argument and an optional proposal argument",
            ),
        ] {
            let e = args(l, a).validate().unwrap_err();
            assert_eq!(
                (e.code, e.message.as_str()),
                (crate::exit::EXIT_BAD_ARGS, msg)
            );
        }
    }
}
