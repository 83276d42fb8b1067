//! `get KEY [RANGE_END] [--prefix] [--from-key] [--limit] [--rev]
//! [--keys-only] [--count-only] [--print-value-only] [--sort-by] [--order]
//! [--consistency=l|s]`.

use clap::Args;
use kv_client::{Client, GetOptions, SortOrder, SortTarget};

use super::{check_range_args, Output};
use crate::exit::ExitError;

/// Gets the key or a range of keys
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// Get keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
    /// Maximum number of results
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Specify the kv revision
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Get only the keys
    #[arg(long)]
    pub keys_only: bool,
    /// Get only the count (etcdctl 3.5; with `-w fields` only)
    #[arg(long)]
    pub count_only: bool,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Only write values when using the "simple" output format
    #[arg(long)]
    pub print_value_only: bool,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long, default_value = "")]
    pub sort_by: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub order: String,
    /// KEY [RANGE_END]
    pub args: Vec<String>,
}

impl GetArgs {
    /// Checks the arguments as etcdctl does and builds the request.
    pub fn validate(&self) -> Result<(String, GetOptions), ExitError> {
        check_range_args("get", &self.args, self.prefix, self.from_key)?;
        if self.count_only && self.keys_only {
            return Err(ExitError::bad_args(
                "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
            ));
        }
        let serializable = match self.consistency.as_str() {
            "s" => true,
            "l" => false,
            other => {
                return Err(ExitError::bad_feature(format!(
                    "unknown consistency flag {other:?}"
                )))
            }
        };
        let order = match self.order.to_uppercase().as_str() {
            "ASCEND" => SortOrder::Ascend,
            "DESCEND" => SortOrder::Descend,
            "" => SortOrder::None,
            _ => {
                return Err(ExitError::bad_feature(format!(
                    "bad sort order {}",
                    self.order
                )))
            }
        };
        let target = match self.sort_by.to_uppercase().as_str() {
            "CREATE" => SortTarget::Create,
            "KEY" | "" => SortTarget::Key,
            "MODIFY" => SortTarget::Mod,
            "VALUE" => SortTarget::Value,
            "VERSION" => SortTarget::Version,
            _ => {
                return Err(ExitError::bad_feature(format!(
                    "bad sort target {}",
                    self.sort_by
                )))
            }
        };
        let mut opts = GetOptions::new();
        if let Some(end) = self.args.get(1) {
            opts = opts.with_range(end.clone());
        }
        if self.prefix {
            opts = opts.with_prefix();
        }
        if self.from_key {
            opts = opts.with_from_key();
        }
        if self.limit != 0 {
            opts = opts.with_limit(self.limit);
        }
        if self.rev != 0 {
            opts = opts.with_revision(self.rev);
        }
        if self.keys_only {
            opts = opts.with_keys_only();
        }
        if self.count_only {
            opts = opts.with_count_only();
        }
        if serializable {
            opts = opts.with_serializable();
        }
        // As clientv3.WithSort: key/ascend is the server's default order.
        let order = if target == SortTarget::Key && order == SortOrder::Ascend {
            SortOrder::None
        } else {
            order
        };
        if order != SortOrder::None || target != SortTarget::Key {
            opts = opts.with_sort(target, order);
        }
        Ok((self.args[0].clone(), opts))
    }
}

/// Runs the get.
pub async fn run(client: &Client, key: String, opts: GetOptions) -> Result<Output, ExitError> {
    Ok(Output::Get(client.get(key, opts).await?))
}
