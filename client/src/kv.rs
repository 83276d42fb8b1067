//! The KV service: get, put, delete, compact (transactions are in [`crate::txn`]).
//!
//! Options are in [`crate::options`] (re-exported here); responses are thin wrappers with `header()` and typed accessors.

use kv_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeResponse, PutResponse as PbPutResponse,
    RangeResponse,
};
use kv_proto::mvccpb::KeyValue;

use crate::retry::{Repeatable, request};
use crate::{Client, Result};

pub(crate) use crate::options::KeyRange;
pub use crate::options::{
    DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, prefix_end,
};

macro_rules! header_accessor {
    ($ty:ident) => {
        impl $ty {
            /// The response header (cluster, member, revision, raft term).
            pub fn header(&self) -> Option<&$crate::ResponseHeader> {
                self.0.header.as_ref()
            }

            /// The store revision when the request was served (0 if the
            /// server sent no header).
            pub fn revision(&self) -> i64 {
                self.0.header.as_ref().map_or(0, |h| h.revision)
            }
        }
    };
}
pub(crate) use header_accessor;

/// Answer to [`Client::get`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// let resp = client.get("k", None).await?;
/// for kv in resp.kvs() {
///     println!("{:?} = {:?} @ {}", kv.key, kv.value, kv.mod_revision);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GetResponse(pub RangeResponse);
header_accessor!(GetResponse);

impl GetResponse {
    /// The key-values found.
    pub fn kvs(&self) -> &[KeyValue] {
        &self.0.kvs
    }
    /// Takes the key-values out.
    pub fn take_kvs(&mut self) -> Vec<KeyValue> {
        std::mem::take(&mut self.0.kvs)
    }
    /// How many keys matched (before the limit).
    pub fn count(&self) -> i64 {
        self.0.count
    }
    /// Whether more keys matched than were returned.
    pub fn more(&self) -> bool {
        self.0.more
    }
}

/// Answer to [`Client::put`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// let resp = client.put("k", "v", kv_client::PutOptions::new().with_prev_kv()).await?;
/// println!("written at {}, was {:?}", resp.revision(), resp.prev_kv());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct PutResponse(pub PbPutResponse);
header_accessor!(PutResponse);

impl PutResponse {
    /// The previous key-value, if asked for and the key existed.
    pub fn prev_kv(&self) -> Option<&KeyValue> {
        self.0.prev_kv.as_ref()
    }
}

/// Answer to [`Client::delete`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// let resp = client.delete("dir/", kv_client::DeleteOptions::new().with_prefix()).await?;
/// println!("deleted {}", resp.deleted());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct DeleteResponse(pub DeleteRangeResponse);
header_accessor!(DeleteResponse);

impl DeleteResponse {
    /// How many keys were deleted.
    pub fn deleted(&self) -> i64 {
        self.0.deleted
    }
    /// The deleted key-values, if asked for.
    pub fn prev_kvs(&self) -> &[KeyValue] {
        &self.0.prev_kvs
    }
}

/// Answer to [`Client::compact`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// let resp = client.compact(100, false).await?;
/// println!("compacted at header revision {}", resp.revision());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CompactResponse(pub CompactionResponse);
header_accessor!(CompactResponse);

impl Client {
    /// Reads one key, or a range with [`GetOptions`]. Retried on
    /// `Unavailable` (reads are repeatable).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// use kv_client::GetOptions;
    /// let one = client.get("k", None).await?;
    /// let dir = client.get("dir/", GetOptions::new().with_prefix().with_limit(100)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        options: impl Into<Option<GetOptions>>,
    ) -> Result<GetResponse> {
        let req = options.into().unwrap_or_default().into_request(key.into());
        let resp = self
            .unary(Repeatable::Yes, |left| {
                let mut c = self.kv_client();
                let req = req.clone();
                async move { c.range(request(req, left)).await }
            })
            .await?;
        Ok(GetResponse(resp))
    }

    /// Writes one key. Retried only if it surely never reached a server.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.put("k", "v", None).await?;
    /// client.put("k", b"bytes".to_vec(), kv_client::PutOptions::new().with_prev_kv()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: impl Into<Option<PutOptions>>,
    ) -> Result<PutResponse> {
        let req = options
            .into()
            .unwrap_or_default()
            .into_request(key.into(), value.into());
        let resp = self
            .unary(Repeatable::No, |left| {
                let mut c = self.kv_client();
                let req = req.clone();
                async move { c.put(request(req, left)).await }
            })
            .await?;
        Ok(PutResponse(resp))
    }

    /// Deletes one key, or a range with [`DeleteOptions`]. Retried only if
    /// it surely never reached a server.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.delete("k", None).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete(
        &self,
        key: impl Into<Vec<u8>>,
        options: impl Into<Option<DeleteOptions>>,
    ) -> Result<DeleteResponse> {
        let req = options.into().unwrap_or_default().into_request(key.into());
        let resp = self
            .unary(Repeatable::No, |left| {
                let mut c = self.kv_client();
                let req = req.clone();
                async move { c.delete_range(request(req, left)).await }
            })
            .await?;
        Ok(DeleteResponse(resp))
    }

    /// Compacts the history up to `revision`; with `physical`, waits until
    /// the space is reclaimed. Not retried after it may have been sent.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// let rev = client.get("k", None).await?.revision();
    /// client.compact(rev, true).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn compact(&self, revision: i64, physical: bool) -> Result<CompactResponse> {
        let req = CompactionRequest { revision, physical };
        let resp = self
            .unary(Repeatable::No, |left| {
                let mut c = self.kv_client();
                async move { c.compact(request(req, left)).await }
            })
            .await?;
        Ok(CompactResponse(resp))
    }
}
