//! `defrag [--cluster]`: defragments each endpoint's backend in turn.

use clap::Args;
use kv_client::Client;

use super::Output;
use crate::exit::ExitError;
use crate::global::GlobalFlags;

/// Defragments the storage of the etcd members with given endpoints
#[derive(Debug, Clone, Args)]
pub struct DefragArgs {
    /// use all endpoints from the cluster member list
    #[arg(long)]
    pub cluster: bool,
}

/// The endpoints to defragment: the flags', or with `--cluster` every
/// member's client URLs.
pub(crate) async fn endpoints(
    global: &GlobalFlags,
    cluster: bool,
) -> Result<Vec<String>, ExitError> {
    if !cluster {
        return Ok(global.endpoint_list());
    }
    let client = global.client().await?;
    let members = client.member_list().await.map_err(|e| {
        ExitError::new(
            crate::exit::EXIT_ERROR,
            format!(
                "failed to fetch endpoints from etcd cluster member list: {}",
                crate::exit::error_text(&e)
            ),
        )
    })?;
    Ok(members
        .members()
        .iter()
        .flat_map(|m| m.client_ur_ls.iter().cloned())
        .collect())
}

/// Runs the defragmentation; returns the per-endpoint results and whether
/// any failed (etcdctl then exits 1 after printing them all).
pub async fn run(global: &GlobalFlags, cluster: bool) -> Result<(Output, bool), ExitError> {
    let mut list = Vec::new();
    let mut failed = false;
    let eps = endpoints(global, cluster).await?;
    let bar = crate::progress::steps(eps.len() as u64, "{pos}/{len} [{bar:40}] {msg}");
    for ep in eps {
        if let Some(bar) = &bar {
            bar.set_message(format!("defragmenting {ep}"));
        }
        let client: Client = global.client_for(&ep).await?;
        let result = client.defragment().await.err().map(|e| {
            failed = true;
            crate::exit::error_text(&e)
        });
        list.push((ep, result));
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    // Cleared, so the per-endpoint lines etcdctl prints stand alone.
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok((Output::Defrag(list), failed))
}
