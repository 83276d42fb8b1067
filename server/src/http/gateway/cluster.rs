//! `/v3/cluster/*` and `/v3/maintenance/*`: etcdserverpb.Cluster and
//! etcdserverpb.Maintenance.

use axum::Router;
use kv_proto::etcdserverpb::cluster_server::Cluster;
use kv_proto::etcdserverpb::maintenance_server::Maintenance;

use super::stream::stream_route;
use super::{unary_route, Gw};
use crate::api::maintenance::{ClusterService, MaintenanceService};

pub(super) fn routes() -> Router<Gw> {
    let r = Router::new();
    let r = unary_route!(r, "/v3/cluster/member/add", ClusterService, member_add);
    let r = unary_route!(
        r,
        "/v3/cluster/member/remove",
        ClusterService,
        member_remove
    );
    let r = unary_route!(
        r,
        "/v3/cluster/member/update",
        ClusterService,
        member_update
    );
    let r = unary_route!(r, "/v3/cluster/member/list", ClusterService, member_list);
    let r = unary_route!(
        r,
        "/v3/cluster/member/promote",
        ClusterService,
        member_promote
    );
    let r = unary_route!(r, "/v3/maintenance/alarm", MaintenanceService, alarm);
    let r = unary_route!(r, "/v3/maintenance/status", MaintenanceService, status);
    let r = unary_route!(
        r,
        "/v3/maintenance/defragment",
        MaintenanceService,
        defragment
    );
    // etcd's rpc.proto binds both Hash and HashKV to this path; etcd's
    // gateway answers it with Hash (a `revision` in the body is ignored).
    let r = unary_route!(r, "/v3/maintenance/hash", MaintenanceService, hash);
    let r = unary_route!(
        r,
        "/v3/maintenance/transfer-leadership",
        MaintenanceService,
        move_leader
    );
    let r = unary_route!(
        r,
        "/v3/maintenance/downgrade",
        MaintenanceService,
        downgrade
    );
    stream_route!(
        r,
        "/v3/maintenance/snapshot",
        MaintenanceService,
        snapshot,
        server_stream
    )
}
