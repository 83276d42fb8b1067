//! `/v3/kv/*` and `/v3/watch`: etcdserverpb.KV and etcdserverpb.Watch.

use axum::Router;
use kv_proto::etcdserverpb::kv_server::Kv;
use kv_proto::etcdserverpb::watch_server::Watch;

use super::stream::stream_route;
use super::{unary_route, Gw};
use crate::api::kv::KvService;
use crate::api::watch::WatchService;

pub(super) fn routes() -> Router<Gw> {
    let r = Router::new();
    let r = unary_route!(r, "/v3/kv/range", KvService, range);
    let r = unary_route!(r, "/v3/kv/put", KvService, put);
    let r = unary_route!(r, "/v3/kv/deleterange", KvService, delete_range);
    let r = unary_route!(r, "/v3/kv/txn", KvService, txn);
    let r = unary_route!(r, "/v3/kv/compaction", KvService, compact);
    // A watch keeps streaming after the body's create requests, until the
    // HTTP client goes away (etcd's gateway closes only its send side).
    stream_route!(r, "/v3/watch", WatchService, watch, bidi(true))
}
