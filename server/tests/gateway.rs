//! etcd's HTTP/JSON gateway on the client port: the same HTTP calls, made
//! with curl (a client we did not write), against kvd and against Debian's
//! etcd 3.4 give equal status codes and JSON bodies once volatile fields
//! (cluster/member ids, raft term, lease ids, ports) are masked. Streams,
//! methods and malformed input: gateway_streams.rs.

mod common;
mod gateway_util;

use common::*;
use gateway_util::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_kv_lease_cluster_match_etcd() {
    each_kind(|kind| async move {
        let s = Server::start(kind).await;
        let base = s.endpoint();
        let b = base.as_str();
        let mut t = Vec::new();
        // "foo" = Zm9v, "bar" = YmFy, "baz" = YmF6, "fop" = Zm9w, "foo2" = Zm9vMg==
        t.push(
            call(
                kind,
                b,
                "/v3/kv/put",
                r#"{"key":"Zm9v","value":"YmFy"}"#,
                &[],
            )
            .await,
        );
        t.push(
            call(
                kind,
                b,
                "/v3/kv/put",
                r#"{"key":"Zm9vMg==","value":"YmF6","prev_kv":true}"#,
                &[],
            )
            .await,
        );
        t.push(call(kind, b, "/v3/kv/range", r#"{"key":"Zm9v"}"#, &[]).await);
        t.push(
            call(
                kind,
                b,
                "/v3/kv/range",
                r#"{"key":"Zm9v","range_end":"Zm9w","sort_order":"DESCEND","sort_target":"KEY"}"#,
                &[],
            )
            .await,
        );
        t.push(
            call(
                kind,
                b,
                "/v3/kv/range",
                r#"{"key":"Zm9v","range_end":"Zm9w","count_only":true}"#,
                &[],
            )
            .await,
        );
        // Unknown fields are ignored; only the first JSON value counts.
        t.push(
            call(
                kind,
                b,
                "/v3/kv/range",
                r#"{"key":"Zm9v","bogus":1} trailing"#,
                &[],
            )
            .await,
        );
        t.push(
            call(
                kind,
                b,
                "/v3/kv/txn",
                r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],
                    "success":[{"request_put":{"key":"Zm9v","value":"YmF6","prev_kv":true}}],
                    "failure":[{"request_range":{"key":"Zm9v"}}]}"#,
                &[],
            )
            .await,
        );
        t.push(
            call(
                kind,
                b,
                "/v3/kv/txn",
                r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],
                    "success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}],
                    "failure":[{"request_range":{"key":"Zm9v"}}]}"#,
                &[],
            )
            .await,
        );
        t.push(
            call(
                kind,
                b,
                "/v3/kv/deleterange",
                r#"{"key":"Zm9v","range_end":"Zm9w","prev_kv":true}"#,
                &[],
            )
            .await,
        );

        // Leases: IDs are volatile; a granted one is used by ID afterwards.
        let (code, grant) = post(b, "/v3/lease/grant", r#"{"TTL":60}"#, None).await;
        assert_eq!(code, 200, "[{kind}] grant: {grant}");
        let id = lease_id(&grant);
        let mut g: Value = serde_json::from_str(&grant).unwrap();
        mask(&mut g, &["cluster_id", "member_id", "raft_term", "ID"]);
        t.push(format!("grant {g}"));
        t.push(
            call(
                kind,
                b,
                "/v3/kv/put",
                &format!(r#"{{"key":"bGs=","value":"dg==","lease":"{id}"}}"#),
                &[],
            )
            .await,
        );
        let ttl = call(
            kind,
            b,
            "/v3/lease/timetolive",
            &format!(r#"{{"ID":"{id}","keys":true}}"#),
            &["ID", "TTL"],
        )
        .await;
        t.push(ttl);
        t.push(
            call(
                kind,
                b,
                "/v3/lease/keepalive",
                &format!(r#"{{"ID":"{id}"}}"#),
                &["ID", "TTL"],
            )
            .await,
        );
        t.push(
            call(
                kind,
                b,
                "/v3/lease/revoke",
                &format!(r#"{{"ID":"{id}"}}"#),
                &[],
            )
            .await,
        );
        t.push(call(kind, b, "/v3/kv/range", r#"{"key":"bGs="}"#, &[]).await);
        t.push(
            call(
                kind,
                b,
                "/v3/lease/revoke",
                &format!(r#"{{"ID":"{id}"}}"#),
                &[],
            )
            .await,
        );

        // Status and members: every value is member-specific; the field
        // names etcd 3.4 prints are what must match.
        let (code, st) = post(b, "/v3/maintenance/status", "{}", None).await;
        assert_eq!(code, 200, "[{kind}] status: {st}");
        let st: Value = serde_json::from_str(&st).unwrap();
        for k in [
            "header",
            "version",
            "dbSize",
            "leader",
            "raftIndex",
            "raftTerm",
            "raftAppliedIndex",
            "dbSizeInUse",
        ] {
            assert!(st.get(k).is_some(), "[{kind}] status lacks {k}: {st}");
        }
        assert!(
            st["dbSize"].is_string() && st["leader"].is_string(),
            "[{kind}] {st}"
        );
        let ml = call(kind, b, "/v3/cluster/member/list", "{}", &["ID"]).await;
        t.push(
            ml.replace(&base, "<client-url>")
                .replace(&s.peer_url(), "<peer-url>"),
        );

        // Errors: etcd's gateway body and HTTP status.
        t.push(call(kind, b, "/v3/kv/range", r#"{"key":"Zm9v","#, &[]).await);
        t.push(call(kind, b, "/v3/kv/range", r#"{"key":"Zm9v!"}"#, &[]).await);
        t.push(
            call(
                kind,
                b,
                "/v3/kv/range",
                r#"{"key":"Zm9v","limit":abc}"#,
                &[],
            )
            .await,
        );
        t.push(call(kind, b, "/v3/kv/range", "", &[]).await);
        t.push(call(kind, b, "/v3/kv/compaction", r#"{"revision":"100"}"#, &[]).await);
        t.push(call(kind, b, "/v3/auth/user/get", r#"{"name":"nobody"}"#, &[]).await);
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_authorization_header_carries_token() {
    each_kind(|kind| async move {
        let s = Server::start(kind).await;
        let base = s.endpoint();
        let b = base.as_str();
        let mut t = Vec::new();
        t.push(
            call(
                kind,
                b,
                "/v3/auth/user/add",
                r#"{"name":"root","password":"pw"}"#,
                &[],
            )
            .await,
        );
        t.push(
            call(
                kind,
                b,
                "/v3/auth/user/grant",
                r#"{"user":"root","role":"root"}"#,
                &[],
            )
            .await,
        );
        t.push(call(kind, b, "/v3/auth/enable", "{}", &[]).await);
        t.push(
            call(
                kind,
                b,
                "/v3/auth/authenticate",
                r#"{"name":"root","password":"bad"}"#,
                &[],
            )
            .await,
        );
        let (code, auth) = post(
            b,
            "/v3/auth/authenticate",
            r#"{"name":"root","password":"pw"}"#,
            None,
        )
        .await;
        assert_eq!(code, 200, "[{kind}] authenticate: {auth}");
        let v: Value = serde_json::from_str(&auth).unwrap();
        let token = v["token"].as_str().expect("token").to_string();
        t.push(
            call(
                kind,
                b,
                "/v3/kv/put",
                r#"{"key":"YQ==","value":"Yg=="}"#,
                &[],
            )
            .await,
        );
        t.push(
            call_as(
                kind,
                b,
                "/v3/kv/put",
                r#"{"key":"YQ==","value":"Yg=="}"#,
                &[],
                Some(&token),
            )
            .await,
        );
        t.push(
            call_as(
                kind,
                b,
                "/v3/kv/range",
                r#"{"key":"YQ=="}"#,
                &[],
                Some(&token),
            )
            .await,
        );
        t.push(
            call_as(
                kind,
                b,
                "/v3/kv/range",
                r#"{"key":"YQ=="}"#,
                &[],
                Some("bogus.1"),
            )
            .await,
        );
        t
    })
    .await;
}
