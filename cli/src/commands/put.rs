//! `put KEY VALUE [--prev-kv] [--lease=hex]`.

use clap::Args;
use kv_client::{Client, PutOptions};

use super::Output;
use crate::exit::ExitError;

/// Puts the given key into the store
#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long)]
    pub prev_kv: bool,
    /// KEY VALUE
    pub args: Vec<String>,
}

/// The validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRequest {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// The request options.
    pub lease: i64,
    /// Whether to return the previous pair.
    pub prev_kv: bool,
}

/// Parses etcdctl's hex lease ID.
pub fn parse_lease(s: &str) -> Result<i64, ExitError> {
    i64::from_str_radix(s, 16).map_err(|_| {
        ExitError::bad_args(format!(
            "bad lease ID (strconv.ParseInt: parsing \"{s}\": invalid syntax), expecting ID in Hex"
        ))
    })
}

impl PutArgs {
    /// Checks the arguments as etcdctl does.
    pub fn validate(&self) -> Result<PutRequest, ExitError> {
        if self.args.len() < 2 {
            return Err(ExitError::bad_args(
                "put command needs 1 argument and input from stdin or 2 arguments",
            ));
        }
        Ok(PutRequest {
            key: self.args[0].clone(),
            value: self.args[1].clone(),
            lease: parse_lease(&self.lease)?,
            prev_kv: self.prev_kv,
        })
    }
}

/// Runs the put.
pub async fn run(client: &Client, req: PutRequest) -> Result<Output, ExitError> {
    let mut opts = PutOptions::new();
    if req.lease != 0 {
        opts = opts.with_lease(req.lease);
    }
    if req.prev_kv {
        opts = opts.with_prev_kv();
    }
    Ok(Output::Put(client.put(req.key, req.value, opts).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_is_hex() {
        assert_eq!(parse_lease("1f").unwrap(), 31);
        assert_eq!(parse_lease("zz").unwrap_err().code, 128);
    }
}
