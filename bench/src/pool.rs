//! gRPC connections shared round-robin by the logical clients, and the keys
//! and values the workloads write.

use anyhow::{bail, Context, Result};
use etcd_client::{Client, ConnectOptions};
use std::time::Duration;

/// `conns` separate gRPC connections. Each `Client::connect` opens its own
/// HTTP/2 connection; clones of a `Client` share it. Connection `i` goes to
/// endpoint `i % endpoints.len()`.
pub struct Pool {
    conns: Vec<Client>,
}

impl Pool {
    pub async fn connect(endpoints: &[String], conns: usize, timeout: Duration) -> Result<Self> {
        if endpoints.is_empty() {
            bail!("no endpoints given");
        }
        if conns == 0 {
            bail!("--conns must be at least 1");
        }
        let mut out = Vec::with_capacity(conns);
        for i in 0..conns {
            let ep = &endpoints[i % endpoints.len()];
            let opts = ConnectOptions::new()
                .with_connect_timeout(timeout.min(Duration::from_secs(5)))
                .with_timeout(timeout);
            let mut client = Client::connect([ep.as_str()], Some(opts))
                .await
                .with_context(|| format!("connecting to {ep}"))?;
            // A first request makes sure the connection is up before timing.
            client
                .get("kv-bench/ping", None)
                .await
                .with_context(|| format!("first request to {ep}"))?;
            out.push(client);
        }
        Ok(Self { conns: out })
    }

    /// The connection logical client `i` uses.
    pub fn for_client(&self, i: usize) -> Client {
        self.conns[i % self.conns.len()].clone()
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }
}

/// Fixed-size keys: a one-byte workload prefix, then the index zero-padded to
/// `size - 1` digits, so every key has exactly `size` bytes.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    prefix: u8,
    size: usize,
    pub space: u64,
}

impl Keys {
    pub fn new(prefix: u8, size: usize, space: u64) -> Result<Self> {
        if space == 0 {
            bail!("--key-space must be at least 1");
        }
        let digits = (space - 1).to_string().len();
        if size < digits + 1 {
            bail!(
                "--key-size {size} is too small for --key-space {space}: need at least {} bytes",
                digits + 1
            );
        }
        Ok(Self {
            prefix,
            size,
            space,
        })
    }

    pub fn key(&self, index: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.size);
        k.push(self.prefix);
        k.extend_from_slice(format!("{:0width$}", index, width = self.size - 1).as_bytes());
        k
    }

    /// The prefix every key of this workload starts with.
    pub fn prefix(&self) -> Vec<u8> {
        vec![self.prefix]
    }
}

/// A value of `size` bytes.
pub fn value(size: usize) -> Vec<u8> {
    vec![b'v'; size]
}

/// A value of `size` bytes (at least 8) whose first 8 bytes carry `stamp`
/// (nanoseconds since the run's start), for the watch latency.
pub fn stamped_value(size: usize, stamp: u64) -> Vec<u8> {
    let mut v = value(size.max(8));
    v[..8].copy_from_slice(&stamp.to_le_bytes());
    v
}

/// Reads the stamp back out of a value written by [`stamped_value`].
pub fn read_stamp(value: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_requested_size() {
        let k = Keys::new(b'p', 8, 10_000).expect("keys");
        assert_eq!(k.key(0), b"p0000000".to_vec());
        assert_eq!(k.key(9_999), b"p0009999".to_vec());
        assert_eq!(k.prefix(), b"p".to_vec());
    }

    #[test]
    fn too_small_key_size_is_refused() {
        assert!(Keys::new(b'p', 4, 10_000).is_err());
        assert!(Keys::new(b'p', 5, 10_000).is_ok());
        assert!(Keys::new(b'p', 5, 0).is_err());
    }

    #[test]
    fn stamps_round_trip() {
        let v = stamped_value(32, 123_456_789);
        assert_eq!(v.len(), 32);
        assert_eq!(read_stamp(&v), Some(123_456_789));
        assert_eq!(stamped_value(2, 7).len(), 8);
        assert_eq!(read_stamp(b"short"), None);
    }
}
