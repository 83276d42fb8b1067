//! Values crossing the boundary: keys and values in, key-values and
//! headers out. Lease and member IDs are decimal strings in JS because
//! they use all 64 bits (a JS number keeps 53).

use napi::bindgen_prelude::{Either, Float64Array, ToNapiValue, TypeName};
use napi::{ValueType, sys};
use napi_derive::napi;

/// A key or value from JS: a string (UTF-8) or a Buffer.
pub(crate) type Bytes = Either<String, napi::bindgen_prelude::Buffer>;

/// Bytes handed to JS as a Buffer copied into V8's heap. napi's own
/// `Buffer` wraps the Vec as an external buffer with a GC finalizer each,
/// which costs more than the copy for the many small keys and values of
/// reads and watch events.
pub struct JsBytes(pub Vec<u8>);

impl TypeName for JsBytes {
    fn type_name() -> &'static str {
        "Buffer"
    }
    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for JsBytes {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let mut out = std::ptr::null_mut();
        let mut data = std::ptr::null_mut();
        // SAFETY: `val.0` is valid for `len` bytes (none are read when empty)
        // and napi copies them before returning.
        let status = unsafe {
            sys::napi_create_buffer_copy(
                env,
                val.0.len(),
                val.0.as_ptr().cast(),
                &mut data,
                &mut out,
            )
        };
        if status != sys::Status::napi_ok {
            return Err(napi::Error::from_reason("cannot create a Buffer"));
        }
        Ok(out)
    }
}

/// The bytes of a key or value.
pub(crate) fn bytes(b: Bytes) -> Vec<u8> {
    match b {
        Either::A(s) => s.into_bytes(),
        Either::B(b) => b.to_vec(),
    }
}

/// A lease ID from JS ("0" or absent = no lease).
pub(crate) fn lease_id(s: &str) -> napi::Result<i64> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| crate::errors::invalid(format!("lease ID {s:?} is not a decimal integer")))
}

/// One key-value as stored, at its revisions.
#[napi(object, object_from_js = false)]
pub struct KeyValue {
    #[napi(ts_type = "Buffer")]
    pub key: JsBytes,
    #[napi(ts_type = "Buffer")]
    pub value: JsBytes,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    /// The lease ID as a decimal string ("0" = none).
    pub lease: String,
}

impl From<kv_client::KeyValue> for KeyValue {
    fn from(kv: kv_client::KeyValue) -> Self {
        KeyValue {
            key: JsBytes(kv.key),
            value: JsBytes(kv.value),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease.to_string(),
        }
    }
}

/// Numbers per key-value in packed form (see [`PackedKvs`]).
pub(crate) const KV_STRIDE: usize = 7;

/// Appends one key-value to packed form: its [`KV_STRIDE`] numbers to
/// `meta`, its key and value bytes to `data`.
pub(crate) fn pack_kv(kv: &kv_client::KeyValue, meta: &mut Vec<f64>, data: &mut Vec<u8>) {
    let lease = kv.lease as u64;
    meta.extend_from_slice(&[
        kv.key.len() as f64,
        kv.value.len() as f64,
        kv.create_revision as f64,
        kv.mod_revision as f64,
        kv.version as f64,
        (lease >> 32) as f64,
        (lease & 0xffff_ffff) as f64,
    ]);
    data.extend_from_slice(&kv.key);
    data.extend_from_slice(&kv.value);
}

/// Key-values packed for JS. A napi object per key-value (plus a Buffer
/// each for key and value) costs more than the rest of a large read, so
/// the JS layer (`lib/kv.js`) builds the objects from one Float64Array and
/// one Buffer (`bench/node`: "get prefix").
///
/// `meta` holds `count` groups of 7 numbers: key length, value length,
/// create revision, mod revision, version, lease ID high and low 32 bits.
/// `data` holds each key and value, in order.
#[napi(object, object_from_js = false)]
pub struct PackedKvs {
    pub count: u32,
    #[napi(ts_type = "Buffer")]
    pub data: JsBytes,
    pub meta: Float64Array,
}

impl PackedKvs {
    /// Packs `kvs` in one pass into buffers sized up front.
    pub(crate) fn pack(kvs: &[kv_client::KeyValue]) -> PackedKvs {
        let bytes = kvs.iter().map(|kv| kv.key.len() + kv.value.len()).sum();
        let mut data = Vec::with_capacity(bytes);
        let mut meta = Vec::with_capacity(kvs.len() * KV_STRIDE);
        for kv in kvs {
            pack_kv(kv, &mut meta, &mut data);
        }
        PackedKvs {
            count: u32::try_from(kvs.len()).unwrap_or(u32::MAX),
            data: JsBytes(data),
            meta: Float64Array::new(meta),
        }
    }
}

/// The response header: which cluster and member answered, at which revision.
#[napi(object, object_from_js = false)]
pub struct Header {
    pub cluster_id: String,
    pub member_id: String,
    pub revision: i64,
    pub raft_term: String,
}

impl From<&kv_client::ResponseHeader> for Header {
    fn from(h: &kv_client::ResponseHeader) -> Self {
        Header {
            cluster_id: h.cluster_id.to_string(),
            member_id: h.member_id.to_string(),
            revision: h.revision,
            raft_term: h.raft_term.to_string(),
        }
    }
}

/// Milliseconds from JS as a duration (negative or non-finite = invalid).
pub(crate) fn millis(ms: f64, what: &str) -> napi::Result<std::time::Duration> {
    if !ms.is_finite() || !(0.0..=1e12).contains(&ms) {
        return Err(crate::errors::invalid(format!(
            "{what} must be a non-negative number of milliseconds"
        )));
    }
    Ok(std::time::Duration::from_micros((ms * 1000.0) as u64))
}
