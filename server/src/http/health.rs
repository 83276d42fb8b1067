//! etcd's health endpoints (etcd 3.7, etcdserver/api/etcdhttp/health.go):
//!
//! - `/health`: JSON `{"health":"true","reason":""}`; 503 with `"false"`
//!   and a reason when an alarm is active (`?exclude=NOSPACE` ignores that
//!   alarm), when there is no leader, or when a read fails.
//!   `?serializable=true` skips the leader check and reads locally.
//! - `/livez` (check `serializable_read`) and `/readyz` (`data_corruption`,
//!   `serializable_read`, `linearizable_read`, `non_learner`): `ok`, with
//!   `?verbose` one `[+]name ok` line per check first; 503 listing every
//!   check (`[-]name failed: reason`) when one fails; `?exclude=NAME` skips
//!   a check; `/livez/NAME` and `/readyz/NAME` run one. As in etcd, a NOSPACE
//!   alarm fails `/health` but neither `/livez` nor `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use kv_proto::etcdserverpb::{AlarmRequest, AlarmType, RangeRequest};

use crate::error::KvError;
use crate::node::Node;

/// Bound on one health read: etcd's request timeout (5 s) plus slack; a
/// read without a leader fails well before it.
const READ_TIMEOUT: Duration = Duration::from_secs(7);

/// `/livez`'s checks.
const LIVEZ: &[&str] = &["serializable_read"];
/// `/readyz`'s checks, in the order `?verbose` lists them.
const READYZ: &[&str] = &[
    "data_corruption",
    "serializable_read",
    "linearizable_read",
    "non_learner",
];

/// The health routes, for the client port and --listen-metrics-urls.
pub fn routes(node: Arc<Node>) -> Router {
    let mut r = Router::new().route("/health", any(health));
    for (kind, checks) in [("livez", LIVEZ), ("readyz", READYZ)] {
        r = r.route(
            &format!("/{kind}"),
            any(move |s, m, q| probe(s, m, q, kind, checks.to_vec())),
        );
        for check in checks {
            r = r.route(
                &format!("/{kind}/{check}"),
                any(move |s, m, q| probe(s, m, q, kind, vec![*check])),
            );
        }
    }
    r.with_state(node)
}

/// The query's values for `key` (`a=1&a=2`), percent-decoded.
fn values<'a>(query: &'a Option<String>, key: &'a str) -> impl Iterator<Item = String> + 'a {
    query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(move |kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k) == key).then(|| decode(v))
        })
}

/// Decodes `+` and `%XX` as Go's url.ParseQuery does; malformed escapes stay.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Go's http.Error: the text plus a newline.
fn error(status: StatusCode, msg: &str) -> Response {
    text(status, format!("{msg}\n"))
}

fn not_get() -> Response {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    r
}

/// The names of the active alarms (etcd's AlarmType names).
async fn alarms(node: &Node) -> Vec<&'static str> {
    let req = AlarmRequest {
        action: 0, // GET
        member_id: 0,
        alarm: 0,
    };
    match node.alarm(req).await {
        Ok(r) => r
            .alarms
            .iter()
            .map(|a| AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name()))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "reading alarms for a health check");
            Vec::new()
        }
    }
}

/// etcd's health read: one key, keys only.
async fn read(node: &Node, serializable: bool) -> Result<(), KvError> {
    let req = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        keys_only: true,
        limit: 1,
        serializable,
        ..Default::default()
    };
    match tokio::time::timeout(READ_TIMEOUT, node.range(req)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(KvError::Timeout),
    }
}

async fn health(State(node): State<Arc<Node>>, method: Method, RawQuery(q): RawQuery) -> Response {
    if method != Method::GET {
        return not_get();
    }
    let excluded: Vec<String> = values(&q, "exclude").filter(|v| !v.is_empty()).collect();
    let serializable = values(&q, "serializable").next().as_deref() == Some("true");
    let reason = health_reason(&node, &excluded, serializable).await;
    crate::metrics::health(reason.is_none());
    let body = |health: &str, reason: &str| {
        serde_json::json!({ "health": health, "reason": reason }).to_string()
    };
    match reason {
        None => {
            let mut r = text(StatusCode::OK, body("true", ""));
            // Go sniffs the type of a plain write and adds no nosniff.
            r.headers_mut().remove("x-content-type-options");
            r
        }
        Some(why) => {
            tracing::warn!(reason = %why, "serving /health false");
            error(StatusCode::SERVICE_UNAVAILABLE, &body("false", &why))
        }
    }
}

/// Why `/health` fails, in etcd's order (alarms, leader, read), or `None`.
async fn health_reason(node: &Node, excluded: &[String], serializable: bool) -> Option<String> {
    for alarm in alarms(node).await {
        if excluded.iter().any(|e| e == alarm) {
            continue;
        }
        return Some(match alarm {
            "NOSPACE" | "CORRUPT" => format!("ALARM {alarm}"),
            _ => "ALARM UNKNOWN".to_string(),
        });
    }
    if !serializable && !node.has_live_leader() {
        return Some("RAFT NO LEADER".to_string());
    }
    read(node, serializable)
        .await
        .err()
        .map(|e| format!("RANGE ERROR:{}", e.client_text()))
}

/// One named check: `Err(reason)` when it fails.
async fn run_check(node: &Node, name: &str) -> Result<(), String> {
    match name {
        "data_corruption" => match alarms(node).await.contains(&"CORRUPT") {
            true => Err("alarm activated: CORRUPT".to_string()),
            false => Ok(()),
        },
        "serializable_read" => read(node, true).await.map_err(|e| e.client_text()),
        "linearizable_read" => read(node, false).await.map_err(|e| e.client_text()),
        // kvd has no learners yet: every member votes.
        _ => Ok(()),
    }
}

async fn probe(
    State(node): State<Arc<Node>>,
    method: Method,
    RawQuery(q): RawQuery,
    kind: &'static str,
    checks: Vec<&'static str>,
) -> Response {
    if method != Method::GET {
        return not_get();
    }
    // Only the root path filters (etcd: installRootHTTPEndpoint); naming
    // a check that does not exist is ignored, for compatibility.
    let excluded: Vec<String> = match checks.len() {
        1 => Vec::new(),
        _ => values(&q, "exclude").collect(),
    };
    let mut out = String::new();
    let mut failed = false;
    for name in checks.iter().filter(|c| !excluded.iter().any(|e| e == *c)) {
        let result = run_check(&node, name).await;
        crate::metrics::health_check(kind, name, result.is_ok());
        match result {
            Ok(()) => out.push_str(&format!("[+]{name} ok\n")),
            Err(e) => {
                failed = true;
                out.push_str(&format!("[-]{name} failed: {e}\n"));
            }
        }
    }
    if failed {
        tracing::error!(path = %format!("/{kind}"), reason = %out, "health check error");
        return error(StatusCode::SERVICE_UNAVAILABLE, &out);
    }
    let verbose = q
        .as_deref()
        .unwrap_or("")
        .split('&')
        .any(|kv| decode(kv.split_once('=').map_or(kv, |p| p.0)) == "verbose");
    if !verbose {
        out.clear();
    }
    out.push_str("ok\n");
    text(StatusCode::OK, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded_and_repeated() {
        let q = Some("exclude=NOSPACE&exclude=a%20b&serializable=true&x".to_string());
        let ex: Vec<String> = values(&q, "exclude").collect();
        assert_eq!(ex, ["NOSPACE", "a b"]);
        assert_eq!(values(&q, "serializable").next().as_deref(), Some("true"));
        assert_eq!(values(&q, "x").next().as_deref(), Some(""));
        assert_eq!(values(&None, "x").next(), None);
    }
}
