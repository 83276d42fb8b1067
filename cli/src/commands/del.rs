//! `del KEY [RANGE_END] [--prefix] [--from-key] [--prev-kv]`.

use clap::Args;
use kv_client::{Client, DeleteOptions};

use super::{check_range_args, Output};
use crate::exit::ExitError;

/// Removes the specified key or range of keys [key, range_end)
#[derive(Debug, Clone, Args)]
pub struct DelArgs {
    /// delete keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
    /// return deleted key-value pairs
    #[arg(long)]
    pub prev_kv: bool,
    /// KEY [RANGE_END]
    pub args: Vec<String>,
}

impl DelArgs {
    /// Checks the arguments as etcdctl does and builds the request.
    pub fn validate(&self) -> Result<(String, DeleteOptions), ExitError> {
        check_range_args("del", &self.args, self.prefix, self.from_key)?;
        let mut opts = DeleteOptions::new();
        if let Some(end) = self.args.get(1) {
            opts = opts.with_range(end.clone());
        }
        if self.prefix {
            opts = opts.with_prefix();
        }
        if self.from_key {
            opts = opts.with_from_key();
        }
        if self.prev_kv {
            opts = opts.with_prev_kv();
        }
        Ok((self.args[0].clone(), opts))
    }
}

/// Runs the delete.
pub async fn run(client: &Client, key: String, opts: DeleteOptions) -> Result<Output, ExitError> {
    Ok(Output::Del(client.delete(key, opts).await?))
}
