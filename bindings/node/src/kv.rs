//! KV calls: get (one key, prefix, range), put, delete, compact.

use kv_client::{DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget};
use napi_derive::napi;

use crate::client::NativeClient;
use crate::convert::{Bytes, Header, KeyValue, PackedKvs, bytes, lease_id};
use crate::{errors, guard};

/// Options of a read.
#[napi(object)]
pub struct GetOpts {
    /// Every key starting with the key.
    pub prefix: Option<bool>,
    /// Every key >= the key.
    pub from_key: Option<bool>,
    /// Keys in [key, end).
    pub end: Option<Bytes>,
    pub limit: Option<i64>,
    /// Read at this revision (0 = latest).
    pub revision: Option<i64>,
    pub serializable: Option<bool>,
    pub keys_only: Option<bool>,
    pub count_only: Option<bool>,
    /// "key" | "version" | "create" | "mod" | "value"
    pub sort_target: Option<String>,
    /// "ascend" | "descend" | "none"
    pub sort_order: Option<String>,
    pub min_mod_revision: Option<i64>,
    pub max_mod_revision: Option<i64>,
    pub min_create_revision: Option<i64>,
    pub max_create_revision: Option<i64>,
}

pub(crate) fn get_options(o: Option<GetOpts>) -> napi::Result<GetOptions> {
    let mut g = GetOptions::new();
    let Some(o) = o else { return Ok(g) };
    if o.prefix == Some(true) {
        g = g.with_prefix();
    }
    if o.from_key == Some(true) {
        g = g.with_from_key();
    }
    if let Some(end) = o.end {
        g = g.with_range(bytes(end));
    }
    if let Some(n) = o.limit {
        g = g.with_limit(n);
    }
    if let Some(r) = o.revision {
        g = g.with_revision(r);
    }
    if o.serializable == Some(true) {
        g = g.with_serializable();
    }
    if o.keys_only == Some(true) {
        g = g.with_keys_only();
    }
    if o.count_only == Some(true) {
        g = g.with_count_only();
    }
    if o.sort_target.is_some() || o.sort_order.is_some() {
        let target = match o.sort_target.as_deref().unwrap_or("key") {
            "key" => SortTarget::Key,
            "version" => SortTarget::Version,
            "create" => SortTarget::Create,
            "mod" => SortTarget::Mod,
            "value" => SortTarget::Value,
            t => return Err(errors::invalid(format!("unknown sortTarget {t:?}"))),
        };
        let order = match o.sort_order.as_deref().unwrap_or("ascend") {
            "ascend" => SortOrder::Ascend,
            "descend" => SortOrder::Descend,
            "none" => SortOrder::None,
            t => return Err(errors::invalid(format!("unknown sortOrder {t:?}"))),
        };
        g = g.with_sort(target, order);
    }
    if let Some(r) = o.min_mod_revision {
        g = g.with_min_mod_revision(r);
    }
    if let Some(r) = o.max_mod_revision {
        g = g.with_max_mod_revision(r);
    }
    if let Some(r) = o.min_create_revision {
        g = g.with_min_create_revision(r);
    }
    if let Some(r) = o.max_create_revision {
        g = g.with_max_create_revision(r);
    }
    Ok(g)
}

/// Options of a write.
#[napi(object)]
pub struct PutOpts {
    /// Attach the key to this lease (decimal ID).
    pub lease: Option<String>,
    pub prev_kv: Option<bool>,
    pub ignore_value: Option<bool>,
    pub ignore_lease: Option<bool>,
}

pub(crate) fn put_options(o: Option<PutOpts>) -> napi::Result<PutOptions> {
    let mut p = PutOptions::new();
    let Some(o) = o else { return Ok(p) };
    if let Some(l) = o.lease {
        p = p.with_lease(lease_id(&l)?);
    }
    if o.prev_kv == Some(true) {
        p = p.with_prev_kv();
    }
    if o.ignore_value == Some(true) {
        p = p.with_ignore_value();
    }
    if o.ignore_lease == Some(true) {
        p = p.with_ignore_lease();
    }
    Ok(p)
}

/// Options of a delete.
#[napi(object)]
pub struct DeleteOpts {
    pub prefix: Option<bool>,
    pub from_key: Option<bool>,
    pub end: Option<Bytes>,
    pub prev_kv: Option<bool>,
}

pub(crate) fn delete_options(o: Option<DeleteOpts>) -> DeleteOptions {
    let mut d = DeleteOptions::new();
    let Some(o) = o else { return d };
    if o.prefix == Some(true) {
        d = d.with_prefix();
    }
    if o.from_key == Some(true) {
        d = d.with_from_key();
    }
    if let Some(end) = o.end {
        d = d.with_range(bytes(end));
    }
    if o.prev_kv == Some(true) {
        d = d.with_prev_kv();
    }
    d
}

/// Answer to a read.
#[napi(object, object_from_js = false)]
pub struct GetResult {
    pub header: Option<Header>,
    /// The key-values, packed (`lib/kv.js` unpacks them).
    pub kvs: PackedKvs,
    /// How many keys matched (more than `kvs` with a limit).
    pub count: i64,
    pub more: bool,
}

impl From<kv_client::GetResponse> for GetResult {
    fn from(mut r: kv_client::GetResponse) -> Self {
        GetResult {
            header: r.header().map(Header::from),
            count: r.count(),
            more: r.more(),
            kvs: PackedKvs::pack(&r.take_kvs()),
        }
    }
}

/// Answer to a write.
#[napi(object, object_from_js = false)]
pub struct PutResult {
    pub header: Option<Header>,
    pub prev_kv: Option<KeyValue>,
}

impl From<kv_client::PutResponse> for PutResult {
    fn from(r: kv_client::PutResponse) -> Self {
        PutResult {
            header: r.header().map(Header::from),
            prev_kv: r.0.prev_kv.map(KeyValue::from),
        }
    }
}

/// Answer to a delete.
#[napi(object, object_from_js = false)]
pub struct DeleteResult {
    pub header: Option<Header>,
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
}

impl From<kv_client::DeleteResponse> for DeleteResult {
    fn from(r: kv_client::DeleteResponse) -> Self {
        DeleteResult {
            header: r.header().map(Header::from),
            deleted: r.deleted(),
            prev_kvs: r.0.prev_kvs.into_iter().map(KeyValue::from).collect(),
        }
    }
}

#[napi]
impl NativeClient {
    /// Reads a key, or a prefix or range with options.
    #[napi]
    pub async fn get(&self, key: Bytes, options: Option<GetOpts>) -> napi::Result<GetResult> {
        let c = self.live()?;
        let opts = get_options(options)?;
        let key = bytes(key);
        guard(async move {
            let r = c.get(key, opts).await.map_err(errors::client)?;
            Ok(GetResult::from(r))
        })
        .await
    }

    /// Writes a key.
    #[napi]
    pub async fn put(
        &self,
        key: Bytes,
        value: Bytes,
        options: Option<PutOpts>,
    ) -> napi::Result<PutResult> {
        let c = self.live()?;
        let opts = put_options(options)?;
        let (key, value) = (bytes(key), bytes(value));
        guard(async move {
            let r = c.put(key, value, opts).await.map_err(errors::client)?;
            Ok(PutResult::from(r))
        })
        .await
    }

    /// Deletes a key, or a prefix or range with options.
    #[napi]
    pub async fn delete(
        &self,
        key: Bytes,
        options: Option<DeleteOpts>,
    ) -> napi::Result<DeleteResult> {
        let c = self.live()?;
        let opts = delete_options(options);
        let key = bytes(key);
        guard(async move {
            let r = c.delete(key, opts).await.map_err(errors::client)?;
            Ok(DeleteResult::from(r))
        })
        .await
    }

    /// Compacts the history up to `revision`; returns the header revision.
    #[napi]
    pub async fn compact(&self, revision: i64, physical: Option<bool>) -> napi::Result<i64> {
        let c = self.live()?;
        guard(async move {
            let r = c
                .compact(revision, physical.unwrap_or(false))
                .await
                .map_err(errors::client)?;
            Ok(r.revision())
        })
        .await
    }
}
