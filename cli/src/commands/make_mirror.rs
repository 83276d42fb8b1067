//! `make-mirror [options] <destination>`: copies the source cluster's keys
//! (or those under `--prefix`) to the destination, then follows the
//! source's watch and applies every change there, as etcdctl's
//! `make-mirror` (3.4's flags, plus 3.5's `--max-txn-ops` and 3.6's
//! `--rev`, `--dest-user`, `--dest-password`).
//!
//! Like etcdctl it runs until interrupted (SIGINT ends the process), and
//! every 30 seconds prints how many keys it has mirrored so far (puts and
//! deletes), a bare number on its own line.

use std::cell::Cell;
use std::time::Duration;

use clap::{ArgAction, Args};
use futures::StreamExt;
use kv_client::options::prefix_end;
use kv_client::{
    Client, ClientConfig, DeleteOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};

use super::password::go_bool;
use super::{Output, Sink};
use crate::exit::{ExitError, EXIT_BAD_CONNECTION};
use crate::global::{parse_duration, GlobalFlags};

/// How often the count of mirrored keys is printed (etcdctl's period).
pub const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Keys read per range request while copying the existing keys
/// (etcdctl's mirror syncer's batch).
const SYNC_BATCH: i64 = 1000;

/// Makes a mirror at the destination etcd cluster
#[derive(Debug, Clone, Args)]
pub struct MakeMirrorArgs {
    /// Key-value prefix to mirror
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long, default_value = "")]
    pub dest_prefix: String,
    /// mirror key-values to the root of the destination cluster
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub no_dest_prefix: bool,
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long)]
    pub dest_cacert: Option<String>,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long)]
    pub dest_cert: Option<String>,
    /// Identify secure client using this TLS key file
    #[arg(long)]
    pub dest_key: Option<String>,
    /// Disable transport security for client connections
    #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub dest_insecure_transport: bool,
    /// Destination username[:password] for authentication (prompt if password is not supplied)
    #[arg(long)]
    pub dest_user: Option<String>,
    /// Destination password for authentication (if this option is used, --dest-user option shouldn't include password)
    #[arg(long)]
    pub dest_password: Option<String>,
    /// Maximum number of operations permitted in a transaction during syncing updates.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Specify the kv revision to start to mirror
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// The destination endpoint (exactly one).
    pub destination: Vec<String>,
}

impl MakeMirrorArgs {
    /// Checks the arguments that etcdctl checks before connecting.
    pub fn validate(&self) -> Result<(), ExitError> {
        if self.destination.len() != 1 {
            return Err(ExitError::bad_args(
                "make-mirror takes one destination argument",
            ));
        }
        if self.max_txn_ops == 0 {
            // A zero limit would never let a transaction through.
            return Err(ExitError::bad_args("--max-txn-ops must be positive"));
        }
        Ok(())
    }

    /// The client of the destination cluster, from the `--dest-*` flags and
    /// the global dial timeout.
    async fn dest_client(&self, global: &GlobalFlags) -> Result<Client, ExitError> {
        let dial = parse_duration("dial-timeout", &global.dial_timeout)?;
        let mut config = ClientConfig::new(self.destination.clone()).with_connect_timeout(dial);
        if let Some((name, password)) = self.dest_credentials()? {
            config = config.with_user(name, password);
        }
        let secure = self.dest_cacert.is_some()
            || self.dest_cert.is_some()
            || self.dest_key.is_some()
            || !self.dest_insecure_transport;
        if secure {
            let read = |path: &str| {
                std::fs::read(path).map_err(|e| ExitError::bad_args(format!("open {path}: {e}")))
            };
            let mut tls = kv_client::tls::TlsConfig::new();
            if let Some(ca) = &self.dest_cacert {
                tls = tls.with_ca_pem(read(ca)?);
            }
            match (&self.dest_cert, &self.dest_key) {
                (Some(c), Some(k)) => tls = tls.with_identity_pem(read(c)?, read(k)?),
                (None, None) => {}
                _ => {
                    return Err(ExitError::bad_args(
                        "--dest-cert and --dest-key must be given together",
                    ))
                }
            }
            config = config.with_tls_config(tls);
        }
        Client::connect(config)
            .await
            .map_err(|e| ExitError::new(EXIT_BAD_CONNECTION, e.to_string()))
    }

    /// `--dest-user name:password`, or with `--dest-password`, or asked on
    /// the terminal (as etcdctl).
    fn dest_credentials(&self) -> Result<Option<(String, String)>, ExitError> {
        let Some(user) = &self.dest_user else {
            return Ok(None);
        };
        if let Some(pw) = self.dest_password.as_deref().filter(|p| !p.is_empty()) {
            return Ok(Some((user.clone(), pw.to_string())));
        }
        match user.split_once(':') {
            Some((n, p)) => Ok(Some((n.to_string(), p.to_string()))),
            None => {
                let pw = super::password::ask("Destination Password: ")?;
                Ok(Some((user.clone(), pw)))
            }
        }
    }
}

/// Rewrites a source key for the destination: the first occurrence of the
/// source prefix becomes the destination prefix (Go's
/// `strings.Replace(key, prefix, dest, 1)`, which etcdctl uses).
fn modify_prefix(key: &[u8], prefix: &[u8], dest: &[u8]) -> Vec<u8> {
    let at = if prefix.is_empty() {
        Some(0)
    } else {
        key.windows(prefix.len()).position(|w| w == prefix)
    };
    match at {
        Some(i) => [&key[..i], dest, &key[i + prefix.len()..]].concat(),
        None => key.to_vec(),
    }
}

/// Mirrors until the process is interrupted or an error ends it (a
/// destination failure, or the source compacting past the watch).
pub async fn run(
    global: &GlobalFlags,
    args: &MakeMirrorArgs,
    sink: Sink<'_>,
) -> Result<(), ExitError> {
    // etcdctl connects to the destination first, then to the source.
    let dest = args.dest_client(global).await?;
    let src = global.client().await?;
    if args.no_dest_prefix && !args.dest_prefix.is_empty() {
        return Err(ExitError::bad_args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let dest_prefix = if !args.no_dest_prefix && args.dest_prefix.is_empty() {
        args.prefix.clone()
    } else {
        args.dest_prefix.clone()
    };
    // Read by the report below while `mirror` is suspended (one thread).
    let total = Cell::new(0i64);
    let start = tokio::time::Instant::now() + REPORT_EVERY;
    let mut ticks = tokio::time::interval_at(start, REPORT_EVERY);
    let mirror = mirror(&src, &dest, args, dest_prefix.as_bytes(), &total);
    tokio::pin!(mirror);
    loop {
        tokio::select! {
            r = &mut mirror => return r,
            _ = ticks.tick() => sink(Output::MirrorTotal(total.get()))?,
        }
    }
}

/// Copies the existing keys (unless `--rev` is given), then applies the
/// watched changes, one destination transaction per source revision (split
/// at `--max-txn-ops`).
async fn mirror(
    src: &Client,
    dest: &Client,
    args: &MakeMirrorArgs,
    dest_prefix: &[u8],
    total: &Cell<i64>,
) -> Result<(), ExitError> {
    let prefix = args.prefix.as_bytes();
    let rename = |key: &[u8]| modify_prefix(key, prefix, dest_prefix);
    // The whole key space from "\0" when no prefix is given, as etcdctl.
    let (first, end) = if prefix.is_empty() {
        (vec![0u8], vec![0u8])
    } else {
        (prefix.to_vec(), prefix_end(prefix))
    };
    let mut rev = (args.rev - 1).max(0);
    if rev == 0 {
        // Copy a consistent snapshot of the source at its current revision.
        rev = src.get("foo", GetOptions::new()).await?.revision();
        let mut key = first.clone();
        loop {
            let opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(SYNC_BATCH)
                .with_revision(rev);
            let mut resp = src.get(key, opts).await?;
            let more = resp.more();
            let kvs = resp.take_kvs();
            for kv in &kvs {
                dest.put(rename(&kv.key), kv.value.clone(), PutOptions::new())
                    .await?;
                total.set(total.get() + 1);
            }
            match kvs.last() {
                Some(last) if more => key = [last.key.as_slice(), &[0]].concat(),
                _ => break,
            }
        }
    }
    let opts = WatchOptions::new()
        .with_range(end)
        .with_start_revision(rev + 1);
    let mut watch = src.watch(first, opts).await?;
    let max_ops = args.max_txn_ops as usize;
    while let Some(batch) = watch.next().await {
        let batch = batch?;
        let mut ops: Vec<TxnOp> = Vec::new();
        let mut last_rev = 0;
        for ev in batch.events() {
            let Some(kv) = &ev.kv else { continue };
            // One source revision, one destination transaction.
            if (last_rev != 0 && kv.mod_revision > last_rev) || ops.len() == max_ops {
                dest.txn(Txn::new().and_then(std::mem::take(&mut ops)))
                    .await?;
            }
            last_rev = kv.mod_revision;
            ops.push(match ev.r#type() {
                EventType::Put => TxnOp::put(rename(&kv.key), kv.value.clone(), PutOptions::new()),
                EventType::Delete => TxnOp::delete(rename(&kv.key), DeleteOptions::new()),
            });
            total.set(total.get() + 1);
        }
        if !ops.is_empty() {
            dest.txn(Txn::new().and_then(ops)).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::modify_prefix;

    #[test]
    fn prefix_replaced_once_like_go() {
        assert_eq!(modify_prefix(b"a/k", b"a/", b"b/"), b"b/k");
        assert_eq!(modify_prefix(b"k", b"", b"x/"), b"x/k");
        assert_eq!(modify_prefix(b"a/k", b"a/", b""), b"k");
        assert_eq!(modify_prefix(b"za/a/", b"a/", b"b/"), b"zb/a/");
    }
}
