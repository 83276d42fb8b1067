//! `/v3/lock/*` and `/v3/election/*`: v3lockpb.Lock and
//! v3electionpb.Election.

use axum::Router;
use kv_proto::v3electionpb::election_server::Election;
use kv_proto::v3lockpb::lock_server::Lock;

use super::stream::stream_route;
use super::{unary_route, Gw};
use crate::api::election::ElectionService;
use crate::api::lock::LockService;

pub(super) fn routes() -> Router<Gw> {
    let r = Router::new();
    let r = unary_route!(r, "/v3/lock/lock", LockService, lock);
    let r = unary_route!(r, "/v3/lock/unlock", LockService, unlock);
    let r = unary_route!(r, "/v3/election/campaign", ElectionService, campaign);
    let r = unary_route!(r, "/v3/election/proclaim", ElectionService, proclaim);
    let r = unary_route!(r, "/v3/election/leader", ElectionService, leader);
    let r = unary_route!(r, "/v3/election/resign", ElectionService, resign);
    stream_route!(
        r,
        "/v3/election/observe",
        ElectionService,
        observe,
        server_stream
    )
}
