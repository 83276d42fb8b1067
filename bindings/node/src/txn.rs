//! Transactions: the JS builder (`client.txn().when(...).then(...)`) sends
//! one plain description, turned here into a `kv_client::Txn`.

use kv_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use napi_derive::napi;

use crate::client::NativeClient;
use crate::convert::{Bytes, Header, bytes, lease_id};
use crate::kv::{
    DeleteOpts, DeleteResult, GetOpts, GetResult, PutOpts, PutResult, delete_options, get_options,
    put_options,
};
use crate::{errors, guard};

/// One guard of a transaction.
#[napi(object)]
pub struct TxnCompare {
    pub key: Bytes,
    /// "value" | "version" | "create" | "mod" | "lease"
    pub target: String,
    /// "==" | "!=" | "<" | ">"
    pub op: String,
    /// The value to compare with (target "value").
    pub value: Option<Bytes>,
    /// The number to compare with (version, create, mod).
    pub number: Option<i64>,
    /// The lease ID to compare with (target "lease").
    pub lease: Option<String>,
    pub prefix: Option<bool>,
    pub end: Option<Bytes>,
}

/// One operation of a transaction branch.
#[napi(object)]
pub struct TxnOpSpec {
    /// "get" | "put" | "delete"
    pub kind: String,
    pub key: Bytes,
    pub value: Option<Bytes>,
    pub get: Option<GetOpts>,
    pub put: Option<PutOpts>,
    pub delete: Option<DeleteOpts>,
}

/// A whole transaction.
#[napi(object)]
pub struct TxnSpec {
    pub compares: Vec<TxnCompare>,
    pub success: Vec<TxnOpSpec>,
    pub failure: Vec<TxnOpSpec>,
}

/// The answer to one operation; exactly one of `get`/`put`/`delete` is set.
#[napi(object, object_from_js = false)]
pub struct TxnOpResult {
    pub kind: String,
    pub get: Option<GetResult>,
    pub put: Option<PutResult>,
    pub delete: Option<DeleteResult>,
}

/// Answer to a transaction.
#[napi(object, object_from_js = false)]
pub struct TxnResult {
    pub header: Option<Header>,
    /// Whether the compares held (the success branch ran).
    pub succeeded: bool,
    pub responses: Vec<TxnOpResult>,
}

fn compare(c: TxnCompare) -> napi::Result<Compare> {
    let op = match c.op.as_str() {
        "==" | "===" | "equal" => CompareOp::Equal,
        "!=" | "!==" | "notEqual" => CompareOp::NotEqual,
        "<" | "less" => CompareOp::Less,
        ">" | "greater" => CompareOp::Greater,
        o => return Err(errors::invalid(format!("unknown compare operator {o:?}"))),
    };
    let key = bytes(c.key);
    let number = |what: &str| {
        c.number
            .ok_or_else(|| errors::invalid(format!("compare on {what} needs a number")))
    };
    let mut cmp = match c.target.as_str() {
        "value" => {
            let v = c
                .value
                .ok_or_else(|| errors::invalid("compare on value needs a value"))?;
            Compare::value(key, op, bytes(v))
        }
        "version" => Compare::version(key, op, number("version")?),
        "create" => Compare::create_revision(key, op, number("create")?),
        "mod" => Compare::mod_revision(key, op, number("mod")?),
        "lease" => {
            let l = c
                .lease
                .ok_or_else(|| errors::invalid("compare on lease needs a lease"))?;
            Compare::lease(key, op, lease_id(&l)?)
        }
        t => return Err(errors::invalid(format!("unknown compare target {t:?}"))),
    };
    if c.prefix == Some(true) {
        cmp = cmp.with_prefix();
    }
    if let Some(end) = c.end {
        cmp = cmp.with_range(bytes(end));
    }
    Ok(cmp)
}

fn op(o: TxnOpSpec) -> napi::Result<TxnOp> {
    let key = bytes(o.key);
    Ok(match o.kind.as_str() {
        "get" => TxnOp::get(key, get_options(o.get)?),
        "put" => {
            let v = o
                .value
                .ok_or_else(|| errors::invalid("a put operation needs a value"))?;
            TxnOp::put(key, bytes(v), put_options(o.put)?)
        }
        "delete" => TxnOp::delete(key, delete_options(o.delete)),
        k => return Err(errors::invalid(format!("unknown operation kind {k:?}"))),
    })
}

fn ops(v: Vec<TxnOpSpec>) -> napi::Result<Vec<TxnOp>> {
    v.into_iter().map(op).collect()
}

fn op_result(r: TxnOpResponse) -> TxnOpResult {
    let mut out = TxnOpResult {
        kind: String::new(),
        get: None,
        put: None,
        delete: None,
    };
    match r {
        TxnOpResponse::Get(g) => {
            out.kind = "get".into();
            out.get = Some(g.into());
        }
        TxnOpResponse::Put(p) => {
            out.kind = "put".into();
            out.put = Some(p.into());
        }
        TxnOpResponse::Delete(d) => {
            out.kind = "delete".into();
            out.delete = Some(d.into());
        }
        // The JS builder cannot nest transactions.
        _ => out.kind = "txn".into(),
    }
    out
}

#[napi]
impl NativeClient {
    /// Runs a transaction described by the JS builder.
    #[napi]
    pub async fn txn(&self, spec: TxnSpec) -> napi::Result<TxnResult> {
        let c = self.live()?;
        let compares = spec
            .compares
            .into_iter()
            .map(compare)
            .collect::<napi::Result<Vec<_>>>()?;
        let txn = Txn::new()
            .when(compares)
            .and_then(ops(spec.success)?)
            .or_else(ops(spec.failure)?);
        guard(async move {
            let r = c.txn(txn).await.map_err(errors::client)?;
            Ok(TxnResult {
                header: r.header().map(Header::from),
                succeeded: r.succeeded(),
                responses: r.op_responses().into_iter().map(op_result).collect(),
            })
        })
        .await
    }
}
