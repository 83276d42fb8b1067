//! The gateway's paths outside its services: etcd's `/v3beta/` prefix,
//! served as `/v3/` (embed/serve.go rewrites the path before routing, in
//! etcd 3.4 and 3.7 alike; `/v3alpha/` is gone since 3.4 and stays a plain
//! 404), and grpc-gateway's answer for an unknown `/v3/` path.

use std::str::FromStr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::uri::{PathAndQuery, Uri};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tower::ServiceExt;

/// The older prefix etcd still serves (`/v3beta/kv/range` is `/v3/kv/range`).
const V3BETA: &str = "/v3beta/";

/// `v3` (the gateway's `/v3/` routes) plus `/v3beta/` in front of them and
/// the catch-all for unknown `/v3/` paths.
pub(super) fn with_prefixes(v3: Router) -> Router {
    let v3 = v3.route("/v3/{*rest}", any(not_found));
    let beta = Router::new()
        .route("/v3beta/{*rest}", any(v3beta))
        .with_state(v3.clone());
    v3.merge(beta)
}

/// grpc-gateway v1's unknown path: Go's http.Error with "Not Found".
async fn not_found(req: Request) -> Response {
    crate::http::drain_body(req).await;
    let mut resp = super::reply::with_gateway_headers(Response::new(Body::from("Not Found\n")));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `/v3beta/...` with its query, as the `/v3/...` path etcd serves it as.
fn rewritten(uri: &Uri) -> Option<Uri> {
    let rest = uri.path().strip_prefix(V3BETA)?;
    let pq = match uri.query() {
        Some(q) => format!("/v3/{rest}?{q}"),
        None => format!("/v3/{rest}"),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::from_str(&pq).ok()?);
    Uri::from_parts(parts).ok()
}

async fn v3beta(State(v3): State<Router>, mut req: Request) -> Response {
    match rewritten(req.uri()) {
        Some(uri) => *req.uri_mut() = uri,
        // Unreachable from the route's pattern; answered as an unknown path.
        None => return not_found(req).await,
    }
    match v3.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3beta_paths_become_v3_with_their_query() {
        let uri = Uri::from_static("/v3beta/kv/range?x=1");
        assert_eq!(rewritten(&uri).unwrap(), "/v3/kv/range?x=1");
        let uri = Uri::from_static("http://h:1/v3beta/watch");
        assert_eq!(rewritten(&uri).unwrap(), "http://h:1/v3/watch");
        assert!(rewritten(&Uri::from_static("/v3alpha/kv/range")).is_none());
    }
}
