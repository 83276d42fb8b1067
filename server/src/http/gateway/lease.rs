//! `/v3/lease/*` (and the `/v3/kv/lease/*` aliases): etcdserverpb.Lease.

use axum::Router;
use kv_proto::etcdserverpb::lease_server::Lease;

use super::stream::stream_route;
use super::{unary_route, Gw};
use crate::api::lease::LeaseService;

pub(super) fn routes() -> Router<Gw> {
    let r = Router::new();
    let r = unary_route!(r, "/v3/lease/grant", LeaseService, lease_grant);
    let r = unary_route!(r, "/v3/lease/revoke", LeaseService, lease_revoke);
    let r = unary_route!(r, "/v3/kv/lease/revoke", LeaseService, lease_revoke);
    let r = unary_route!(r, "/v3/lease/timetolive", LeaseService, lease_time_to_live);
    let r = unary_route!(
        r,
        "/v3/kv/lease/timetolive",
        LeaseService,
        lease_time_to_live
    );
    let r = unary_route!(r, "/v3/lease/leases", LeaseService, lease_leases);
    let r = unary_route!(r, "/v3/kv/lease/leases", LeaseService, lease_leases);
    // One answer per request in the body, then the stream ends.
    stream_route!(
        r,
        "/v3/lease/keepalive",
        LeaseService,
        lease_keep_alive,
        bidi(false)
    )
}
