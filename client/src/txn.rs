//! Transactions: `if compares then ops else ops`, applied atomically.
//!
//! ```no_run
//! # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
//! use kv_client::{Compare, CompareOp, Txn, TxnOp};
//! // Create "lock" only if it does not exist yet.
//! let txn = Txn::new()
//!     .when([Compare::create_revision("lock", CompareOp::Equal, 0)])
//!     .and_then([TxnOp::put("lock", "me", None)])
//!     .or_else([TxnOp::get("lock", None)]);
//! let resp = client.txn(txn).await?;
//! println!("acquired: {}", resp.succeeded());
//! # Ok(())
//! # }
//! ```

use kv_proto::etcdserverpb::{
    Compare as PbCompare, RequestOp, TxnRequest, TxnResponse as PbTxnResponse,
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
    response_op::Response,
};

use crate::kv::{
    DeleteOptions, DeleteResponse, GetOptions, GetResponse, KeyRange, PutOptions, PutResponse,
    header_accessor,
};
use crate::retry::{Repeatable, request};
use crate::{Client, Result};

/// The comparison of a [`Compare`].
///
/// ```
/// use kv_client::{Compare, CompareOp};
/// let c = Compare::version("k", CompareOp::Greater, 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `>`
    Greater,
    /// `<`
    Less,
    /// `!=`
    NotEqual,
}

impl From<CompareOp> for CompareResult {
    fn from(op: CompareOp) -> Self {
        match op {
            CompareOp::Equal => CompareResult::Equal,
            CompareOp::Greater => CompareResult::Greater,
            CompareOp::Less => CompareResult::Less,
            CompareOp::NotEqual => CompareResult::NotEqual,
        }
    }
}

/// One guard of a [`Txn`]: a key's (or range's) value, version, create or
/// mod revision, or lease compared with a constant.
///
/// ```
/// use kv_client::{Compare, CompareOp};
/// let exists = Compare::create_revision("k", CompareOp::Greater, 0);
/// let is_v = Compare::value("k", CompareOp::Equal, "v");
/// let all_old = Compare::mod_revision("dir/", CompareOp::Less, 10).with_prefix();
/// let leased = Compare::lease("a", CompareOp::NotEqual, 0).with_range("c");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Compare(PbCompare);

impl Compare {
    fn new(key: Vec<u8>, op: CompareOp, target: CompareTarget, union: TargetUnion) -> Self {
        Compare(PbCompare {
            result: CompareResult::from(op) as i32,
            target: target as i32,
            key,
            range_end: Vec::new(),
            target_union: Some(union),
        })
    }
    /// Compares the value.
    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Self {
        let v = TargetUnion::Value(value.into());
        Self::new(key.into(), op, CompareTarget::Value, v)
    }
    /// Compares the version (0 = the key does not exist).
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Self {
        let v = TargetUnion::Version(version);
        Self::new(key.into(), op, CompareTarget::Version, v)
    }
    /// Compares the create revision (0 = the key does not exist).
    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, rev: i64) -> Self {
        let v = TargetUnion::CreateRevision(rev);
        Self::new(key.into(), op, CompareTarget::Create, v)
    }
    /// Compares the last modification revision.
    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, rev: i64) -> Self {
        let v = TargetUnion::ModRevision(rev);
        Self::new(key.into(), op, CompareTarget::Mod, v)
    }
    /// Compares the lease ID (0 = no lease).
    pub fn lease(key: impl Into<Vec<u8>>, op: CompareOp, lease: i64) -> Self {
        let v = TargetUnion::Lease(lease);
        Self::new(key.into(), op, CompareTarget::Lease, v)
    }
    /// Applies the comparison to every key with the key as prefix.
    pub fn with_prefix(mut self) -> Self {
        let (key, end) = KeyRange::Prefix.resolve(std::mem::take(&mut self.0.key));
        self.0.key = key;
        self.0.range_end = end;
        self
    }
    /// Applies the comparison to every key in `[key, end)`.
    pub fn with_range(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.0.range_end = end.into();
        self
    }
}

/// One operation of a [`Txn`] branch.
///
/// ```
/// use kv_client::{GetOptions, TxnOp};
/// let ops = [
///     TxnOp::put("a", "1", None),
///     TxnOp::get("dir/", GetOptions::new().with_prefix()),
///     TxnOp::delete("b", None),
/// ];
/// ```
#[derive(Clone, Debug)]
pub struct TxnOp(Request);

impl TxnOp {
    /// A read.
    pub fn get(key: impl Into<Vec<u8>>, options: impl Into<Option<GetOptions>>) -> Self {
        let opts = options.into().unwrap_or_default();
        TxnOp(Request::RequestRange(opts.into_request(key.into())))
    }
    /// A write.
    pub fn put(
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: impl Into<Option<PutOptions>>,
    ) -> Self {
        let opts = options.into().unwrap_or_default();
        TxnOp(Request::RequestPut(
            opts.into_request(key.into(), value.into()),
        ))
    }
    /// A delete.
    pub fn delete(key: impl Into<Vec<u8>>, options: impl Into<Option<DeleteOptions>>) -> Self {
        let opts = options.into().unwrap_or_default();
        TxnOp(Request::RequestDeleteRange(opts.into_request(key.into())))
    }
    /// A nested transaction.
    pub fn txn(txn: Txn) -> Self {
        TxnOp(Request::RequestTxn(txn.0))
    }
}

/// A transaction: when every compare holds, the `and_then` ops run,
/// otherwise the `or_else` ops; all in one revision.
///
/// ```
/// use kv_client::{Compare, CompareOp, Txn, TxnOp};
/// let txn = Txn::new()
///     .when([Compare::value("k", CompareOp::Equal, "old")])
///     .and_then([TxnOp::put("k", "new", None)]);
/// assert!(!txn.is_read_only());
/// let read = Txn::new().and_then([TxnOp::get("k", None)]).or_else([]);
/// assert!(read.is_read_only());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Txn(TxnRequest);

impl Txn {
    /// An empty transaction (no compares: the `and_then` branch runs).
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds compares (all must hold).
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.0.compare.extend(compares.into_iter().map(|c| c.0));
        self
    }
    /// Adds operations to run when the compares hold.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.0.success.extend(ops.into_iter().map(to_request_op));
        self
    }
    /// Adds operations to run when a compare fails.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.0.failure.extend(ops.into_iter().map(to_request_op));
        self
    }
    /// Whether every operation (nested ones included) is a read, so the
    /// transaction is safe to repeat.
    pub fn is_read_only(&self) -> bool {
        read_only(&self.0)
    }
}

fn to_request_op(op: TxnOp) -> RequestOp {
    RequestOp {
        request: Some(op.0),
    }
}

fn read_only(txn: &TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(txn.failure.iter())
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) | None => true,
            Some(Request::RequestTxn(inner)) => read_only(inner),
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
        })
}

/// Answer to [`Client::txn`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client, txn: kv_client::Txn) -> kv_client::Result<()> {
/// use kv_client::TxnOpResponse;
/// let resp = client.txn(txn).await?;
/// for r in resp.op_responses() {
///     if let TxnOpResponse::Get(get) = r {
///         println!("{} keys", get.kvs().len());
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TxnResponse(pub PbTxnResponse);
header_accessor!(TxnResponse);

impl TxnResponse {
    /// Whether the compares held (the `and_then` branch ran).
    pub fn succeeded(&self) -> bool {
        self.0.succeeded
    }
    /// One answer per operation of the branch that ran, in order.
    pub fn op_responses(&self) -> Vec<TxnOpResponse> {
        self.0
            .responses
            .iter()
            .filter_map(|r| r.response.clone())
            .map(|r| match r {
                Response::ResponseRange(r) => TxnOpResponse::Get(GetResponse(r)),
                Response::ResponsePut(r) => TxnOpResponse::Put(PutResponse(r)),
                Response::ResponseDeleteRange(r) => TxnOpResponse::Delete(DeleteResponse(r)),
                Response::ResponseTxn(r) => TxnOpResponse::Txn(TxnResponse(r)),
            })
            .collect()
    }
}

/// The answer to one [`TxnOp`].
///
/// ```
/// # fn f(r: kv_client::TxnOpResponse) {
/// match r {
///     kv_client::TxnOpResponse::Get(get) => println!("{:?}", get.kvs()),
///     other => println!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum TxnOpResponse {
    /// Answer to [`TxnOp::get`].
    Get(GetResponse),
    /// Answer to [`TxnOp::put`].
    Put(PutResponse),
    /// Answer to [`TxnOp::delete`].
    Delete(DeleteResponse),
    /// Answer to [`TxnOp::txn`].
    Txn(TxnResponse),
}

impl Client {
    /// Runs a transaction. A read-only transaction is retried like a read;
    /// one that writes is retried only if it surely never reached a server.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// use kv_client::{Compare, CompareOp, Txn, TxnOp};
    /// let resp = client
    ///     .txn(Txn::new()
    ///         .when([Compare::version("k", CompareOp::Equal, 0)])
    ///         .and_then([TxnOp::put("k", "first", None)]))
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let repeatable = if txn.is_read_only() {
            Repeatable::Yes
        } else {
            Repeatable::No
        };
        let req = txn.0;
        let resp = self
            .unary(repeatable, |left| {
                let mut c = self.kv_client();
                let req = req.clone();
                async move { c.txn(request(req, left)).await }
            })
            .await?;
        Ok(TxnResponse(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_detection() {
        let ro = Txn::new()
            .and_then([TxnOp::get("a", None)])
            .or_else([TxnOp::txn(Txn::new().and_then([TxnOp::get("b", None)]))]);
        assert!(ro.is_read_only());
        let rw = ro
            .clone()
            .or_else([TxnOp::txn(Txn::new().and_then([TxnOp::delete("c", None)]))]);
        assert!(!rw.is_read_only());
        assert!(
            !Txn::new()
                .and_then([TxnOp::put("a", "b", None)])
                .is_read_only()
        );
    }

    #[test]
    fn compare_with_prefix_sets_range() {
        let c = Compare::version("a/", CompareOp::Greater, 0).with_prefix();
        assert_eq!((c.0.key, c.0.range_end), (b"a/".to_vec(), b"a0".to_vec()));
    }
}
