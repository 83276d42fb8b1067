//! `put KEY [VALUE] [--prev-kv] [--lease=hex] [--ignore-value]
//! [--ignore-lease]`; without VALUE the value is all of stdin.

use std::io::Read;

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
    /// updates the key using its current value
    #[arg(long)]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long)]
    pub ignore_lease: bool,
    /// KEY VALUE
    pub args: Vec<String>,
}

/// The validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRequest {
    /// The key.
    pub key: String,
    /// The value (empty with `ignore_value`).
    pub value: Vec<u8>,
    /// The request options.
    pub lease: i64,
    /// Whether to return the previous pair.
    pub prev_kv: bool,
    /// Keep the key's current value.
    pub ignore_value: bool,
    /// Keep the key's current lease.
    pub ignore_lease: bool,
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
    /// Checks the arguments as etcdctl does (a `txn` line: the value must
    /// be given, stdin holds the rest of the transaction).
    pub fn validate(&self) -> Result<PutRequest, ExitError> {
        self.validate_with(&mut std::io::empty())
    }

    /// Checks the arguments as etcdctl does; with only the key (and no
    /// `--ignore-value`) the value is everything `stdin` holds, which must
    /// not be empty.
    pub fn validate_with(&self, stdin: &mut dyn Read) -> Result<PutRequest, ExitError> {
        let needs = || {
            ExitError::bad_args("put command needs 1 argument and input from stdin or 2 arguments")
        };
        let Some(key) = self.args.first() else {
            return Err(needs());
        };
        if self.ignore_value && self.args.len() > 1 {
            return Err(ExitError::bad_args(
                "put command needs only 1 argument when 'ignore-value' is set",
            ));
        }
        let value = match self.args.get(1) {
            _ if self.ignore_value => Vec::new(),
            Some(v) => v.clone().into_bytes(),
            None => {
                let mut buf = Vec::new();
                stdin.read_to_end(&mut buf).map_err(|_| needs())?;
                if buf.is_empty() {
                    return Err(needs());
                }
                buf
            }
        };
        Ok(PutRequest {
            key: key.clone(),
            value,
            lease: parse_lease(&self.lease)?,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        })
    }
}

impl PutRequest {
    /// The request's options.
    pub fn options(&self) -> PutOptions {
        let mut opts = PutOptions::new();
        if self.lease != 0 {
            opts = opts.with_lease(self.lease);
        }
        if self.prev_kv {
            opts = opts.with_prev_kv();
        }
        if self.ignore_value {
            opts = opts.with_ignore_value();
        }
        if self.ignore_lease {
            opts = opts.with_ignore_lease();
        }
        opts
    }
}

/// Runs the put.
pub async fn run(client: &Client, req: PutRequest) -> Result<Output, ExitError> {
    let opts = req.options();
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

    fn args(list: &[&str], ignore_value: bool) -> PutArgs {
        PutArgs {
            lease: "0".into(),
            prev_kv: false,
            ignore_value,
            ignore_lease: false,
            args: list.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn value_from_stdin() {
        let r = args(&["k"], false)
            .validate_with(&mut &b"a\nb\n"[..])
            .unwrap();
        assert_eq!(r.value, b"a\nb\n");
        let e = args(&["k"], false).validate_with(&mut &b""[..]);
        assert_eq!(e.unwrap_err().code, 128);
        // --ignore-value reads nothing and refuses a value.
        let r = args(&["k"], true).validate_with(&mut &b"x"[..]).unwrap();
        assert!(r.value.is_empty());
        let e = args(&["k", "v"], true).validate_with(&mut &b""[..]);
        assert!(e.unwrap_err().message.contains("ignore-value"));
    }
}
