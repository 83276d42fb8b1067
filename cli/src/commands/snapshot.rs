//! `snapshot save FILE`: streams a member's backend into `FILE.part`, then
//! renames it to `FILE` (so a partial download never looks complete).
//! `snapshot status FILE` is in snapshot_status.rs. `snapshot restore FILE`
//! builds a kvd data dir from an etcd v3 snapshot (kvd's or etcd's), through
//! the kvd library (`kvd::storage::restore`).

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
    /// Restores an etcd member snapshot to a kvd data directory
    Restore(RestoreArgs),
}

/// `snapshot restore <filename>`: etcdctl 3.4's flags and defaults, except
/// the data dir's default, `<name>.kvd` (kvd's own default; etcdctl's is
/// `<name>.etcd`).
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// FILE
    pub args: Vec<String>,
    /// Path to the data directory
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long)]
    pub wal_dir: Option<String>,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub skip_hash_check: bool,
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

/// Builds the data dir `a` names from its snapshot file. The result line
/// goes to stderr, where etcdctl logs its restore (exit 0, nothing on stdout).
pub fn restore(a: &RestoreArgs) -> Result<Output, ExitError> {
    let [file] = a.args.as_slice() else {
        return Err(ExitError::bad_args(
            "snapshot restore requires exactly one argument",
        ));
    };
    let cfg = kvd::storage::restore::RestoreConfig {
        snapshot: file.into(),
        data_dir: a.data_dir.as_ref().map(Into::into),
        wal_dir: a.wal_dir.as_ref().map(Into::into),
        name: a.name.clone(),
        initial_cluster: a.initial_cluster.clone(),
        initial_cluster_token: a.initial_cluster_token.clone(),
        initial_advertise_peer_urls: a
            .initial_advertise_peer_urls
            .split(',')
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect(),
        skip_hash_check: a.skip_hash_check,
    };
    let r = kvd::storage::restore::restore(&cfg)
        .map_err(|e| ExitError::new(crate::exit::EXIT_ERROR, e.to_string()))?;
    let data_dir = r.data_dir.display().to_string();
    let wal_dir = cfg.wal_dir.as_ref().map_or_else(
        || r.data_dir.join("member").join("wal").display().to_string(),
        |w| w.display().to_string(),
    );
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    // etcdctl 3.4's "restored snapshot" log line (its field order), with
    // what was carried.
    let q = |v: &str| serde_json::Value::from(v).to_string();
    let line = format!(
        "{{\"level\":\"info\",\"ts\":{ts},\"msg\":\"restored snapshot\",\"path\":{},\
         \"wal-dir\":{},\"data-dir\":{},\"revision\":{},\"compact-revision\":{},\
         \"rows\":{},\"leases\":{},\"users\":{},\"roles\":{},\"auth-enabled\":{}}}",
        q(file),
        q(&wal_dir),
        q(&data_dir),
        r.revision,
        r.compact_revision,
        r.rows,
        r.leases,
        r.users,
        r.roles,
        r.auth_enabled,
    );
    Ok(Output::Notice(line))
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
