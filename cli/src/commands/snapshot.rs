//! `snapshot save FILE`: streams a member's backend into `FILE.part`, then
//! renames it to `FILE` (so a partial download never looks complete).
//! `snapshot status FILE` is in snapshot_status.rs.

use clap::{Args, Subcommand};
use tokio::io::AsyncWriteExt;

use super::Output;
use crate::exit::{ExitError, EXIT_INTERRUPTED};
use crate::global::GlobalFlags;

/// Manages etcd node snapshots
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

/// The snapshot subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotCommand {
    /// Stores an etcd node backend snapshot to a given file
    Save {
        /// FILE
        args: Vec<String>,
    },
    /// Gets backend snapshot status of a given file
    Status {
        /// FILE
        args: Vec<String>,
    },
}

impl SnapshotArgs {
    /// Checks `snapshot save`'s arguments as etcdctl does; returns the target file.
    pub fn validate_save(args: &[String], global: &GlobalFlags) -> Result<String, ExitError> {
        if args.len() != 1 {
            return Err(ExitError::bad_args("snapshot save expects one argument"));
        }
        let eps = global.endpoint_list();
        if eps.len() != 1 {
            return Err(ExitError::new(
                EXIT_INTERRUPTED,
                format!(
                    "snapshot must be requested to one selected node, not multiple [{}]",
                    eps.join(" ")
                ),
            ));
        }
        Ok(args[0].clone())
    }
}

/// Downloads the snapshot into `path`.
pub async fn run(global: &GlobalFlags, path: String) -> Result<Output, ExitError> {
    let fail = |m: String| ExitError::new(EXIT_INTERRUPTED, m);
    let part = format!("{path}.part");
    let mut file = tokio::fs::File::create(&part)
        .await
        .map_err(|e| fail(format!("could not open {part} ({})", io_text(&part, &e))))?;
    let result = async {
        let client = global.client().await?;
        let mut stream = client
            .snapshot()
            .await
            .map_err(|e| fail(crate::exit::error_text(&e)))?;
        let bar = crate::progress::bytes();
        while let Some(chunk) = stream
            .next_chunk()
            .await
            .map_err(|e| fail(crate::exit::error_text(&e)))?
        {
            file.write_all(&chunk)
                .await
                .map_err(|e| fail(e.to_string()))?;
            if let Some(bar) = &bar {
                bar.inc(chunk.len() as u64);
            }
        }
        // Cleared, so the result line etcdctl prints stands alone.
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        file.sync_all().await.map_err(|e| fail(e.to_string()))?;
        tokio::fs::rename(&part, &path)
            .await
            .map_err(|e| fail(format!("could not rename {part} to {path} ({e})")))
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e);
    }
    Ok(Output::SnapshotSaved(path))
}

/// An I/O error worded like Go's `*PathError` (`open PATH: no such file or
/// directory`).
fn io_text(path: &str, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    format!("open {path}: {what}")
}
