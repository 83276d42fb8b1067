//! etcd 3.7's KV/RangeStream, through a client generated from our .proto
//! (the etcd-client crate has no RangeStream), against kvd and against
//! etcd v3.7.3 (built by scripts/etcd-latest.sh): the chunks merge into
//! Range's answer, all at one pinned revision; only the last chunk carries
//! header, more and count; chunks grow 10, 20, 40, ...; what streaming cannot
//! do is refused with etcd's Unimplemented texts. Also Status reports the
//! 3.7 API version and etcd 3.6's fields.

mod common;

use common::{Kind, Options, Server};
use kv_proto::etcdserverpb::kv_client::KvClient;
use kv_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use kv_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use kv_proto::etcdserverpb::{
    PutRequest, RangeRequest, RangeResponse, RangeStreamResponse, StatusRequest,
};
use tonic::transport::Channel;

fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut e = p.to_vec();
    *e.last_mut().expect("non-empty prefix") += 1;
    e
}

fn prefix(p: &str) -> RangeRequest {
    RangeRequest {
        key: p.as_bytes().to_vec(),
        range_end: prefix_end(p.as_bytes()),
        ..Default::default()
    }
}

async fn put(kv: &mut KvClient<Channel>, k: &str, v: Vec<u8>) -> i64 {
    let r = kv
        .put(PutRequest {
            key: k.as_bytes().to_vec(),
            value: v,
            ..Default::default()
        })
        .await
        .expect("put")
        .into_inner();
    r.header.expect("put header").revision
}

/// All chunks of one stream, or the status it failed with.
async fn chunks(
    kv: &mut KvClient<Channel>,
    req: RangeRequest,
) -> Result<Vec<RangeResponse>, tonic::Status> {
    let mut s = kv.range_stream(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(c) = s.message().await? {
        let RangeStreamResponse { range_response } = c;
        out.push(range_response.unwrap_or_default());
    }
    Ok(out)
}

/// One line describing a stream relative to revision `base`, checking on the
/// way that it merges into `whole` (Range's answer to the same request).
fn describe(base: i64, got: &[RangeResponse], whole: &RangeResponse) -> String {
    let (last, rest) = got.split_last().expect("at least one chunk");
    for c in rest {
        assert!(c.header.is_none(), "only the last chunk has a header");
        assert_eq!((c.count, c.more), (0, false), "only the last chunk counts");
    }
    let merged: Vec<_> = got.iter().flat_map(|c| c.kvs.clone()).collect();
    assert_eq!(merged, whole.kvs, "chunks merge into Range's kvs");
    assert_eq!((last.count, last.more), (whole.count, whole.more));
    let h = last.header.as_ref().expect("the last chunk has a header");
    assert!(h.member_id != 0 && h.cluster_id != 0 && h.raft_term != 0);
    let sizes: Vec<usize> = got.iter().map(|c| c.kvs.len()).collect();
    format!(
        "chunks={sizes:?} count={} more={} rev=base+{}",
        last.count,
        last.more,
        h.revision - base
    )
}

fn refusal(r: Result<Vec<RangeResponse>, tonic::Status>) -> String {
    match r {
        Ok(c) => format!("streamed {} chunks", c.len()),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

async fn run(kind: Kind, opts: Options) -> Vec<String> {
    let srv = Server::start_with(kind, opts).await;
    let ch = common::channel(srv.endpoint()).await;
    let mut kv = KvClient::new(ch.clone());
    let mut t = Vec::new();

    let base = put(&mut kv, "before", b"x".to_vec()).await;
    for i in 0..300 {
        put(&mut kv, &format!("k/{i:03}"), vec![b'v'; 100 + i % 7]).await;
    }
    let head = put(&mut kv, "other", b"o".to_vec()).await;
    assert_eq!(head, base + 301);

    for (name, req) in [
        ("prefix", prefix("k/")),
        (
            "limit 150",
            RangeRequest {
                limit: 150,
                ..prefix("k/")
            },
        ),
        (
            "at base+100",
            RangeRequest {
                revision: base + 100,
                ..prefix("k/")
            },
        ),
        (
            "keys only, serializable",
            RangeRequest {
                keys_only: true,
                serializable: true,
                ..prefix("k/")
            },
        ),
        ("single key", {
            RangeRequest {
                key: b"k/007".to_vec(),
                ..Default::default()
            }
        }),
        (
            "ascending by key",
            RangeRequest {
                sort_order: SortOrder::Ascend as i32,
                sort_target: SortTarget::Key as i32,
                ..prefix("k/")
            },
        ),
    ] {
        let whole = kv.range(req.clone()).await.expect("range").into_inner();
        let got = chunks(&mut kv, req).await.expect("range stream");
        t.push(format!("{name}: {}", describe(base, &got, &whole)));
    }

    // Count only: one chunk with the count and the header.
    let got = chunks(
        &mut kv,
        RangeRequest {
            count_only: true,
            ..prefix("k/")
        },
    )
    .await
    .expect("count only");
    t.push(format!(
        "count only: chunks={} count={} kvs={} rev=base+{}",
        got.len(),
        got[0].count,
        got[0].kvs.len(),
        got[0].header.as_ref().map_or(0, |h| h.revision) - base
    ));

    // Pinned: a key written after the first chunk arrived is not in the rest.
    let mut s = kv
        .range_stream(prefix("k/"))
        .await
        .expect("range stream")
        .into_inner();
    let mut seen = s
        .message()
        .await
        .expect("first chunk")
        .and_then(|c| c.range_response)
        .map_or(0, |r| r.kvs.len());
    put(&mut kv, "k/299x", b"late".to_vec()).await;
    let mut last = None;
    while let Some(c) = s.message().await.expect("chunk") {
        let r = c.range_response.unwrap_or_default();
        assert!(r.kvs.iter().all(|kv| kv.key != b"k/299x"), "pinned");
        seen += r.kvs.len();
        last = Some(r);
    }
    let last = last.expect("more than one chunk");
    t.push(format!(
        "write during the stream: seen={seen} count={} rev=base+{}",
        last.count,
        last.header.map_or(0, |h| h.revision) - base
    ));

    // What a stream refuses, and how.
    let sorted = RangeRequest {
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Mod as i32,
        ..prefix("k/")
    };
    t.push(format!(
        "sorted by mod: {}",
        refusal(chunks(&mut kv, sorted).await)
    ));
    let filtered = RangeRequest {
        min_mod_revision: base + 10,
        ..prefix("k/")
    };
    t.push(format!(
        "revision filter: {}",
        refusal(chunks(&mut kv, filtered).await)
    ));
    t.push(format!(
        "empty key: {}",
        refusal(chunks(&mut kv, RangeRequest::default()).await)
    ));
    let bad_sort = RangeRequest {
        sort_order: 7,
        ..prefix("k/")
    };
    t.push(format!(
        "unknown sort order: {}",
        refusal(chunks(&mut kv, bad_sort.clone()).await)
    ));
    let range_err = kv.range(bad_sort).await.expect_err("range, unknown sort");
    t.push(format!(
        "range, unknown sort order: {:?}: {}",
        range_err.code(),
        range_err.message()
    ));
    let future = RangeRequest {
        revision: base + 1000,
        ..prefix("k/")
    };
    t.push(format!(
        "future revision: {}",
        refusal(chunks(&mut kv, future).await)
    ));

    // Status: the API version clients gate features on, and 3.6's fields.
    let st = MaintenanceClient::new(ch)
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let minor: Vec<&str> = st.version.split('.').take(2).collect();
    t.push(format!(
        "status: version {} storage {:?} quota {} downgrade {:?}",
        minor.join("."),
        st.storage_version.split('.').take(2).collect::<Vec<_>>(),
        st.db_size_quota,
        st.downgrade_info.map(|d| (d.enabled, d.target_version)),
    ));
    eprintln!("[{kind}] {}", t.join("\n"));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_stream_matches_etcd_3_7() {
    let kvd = run(Kind::Kvd, Options::default()).await;
    assert!(kvd
        .iter()
        .any(|l| l.starts_with("prefix: chunks=[10, 20, 40, 80, 150]")));
    assert!(kvd
        .iter()
        .any(|l| l == "status: version 3.7 storage [\"3\", \"7\"] quota 2147483648 downgrade Some((false, \"\"))"));
    let Some(latest) = common::etcd_latest() else {
        eprintln!("etcd v3.7.3 not built (scripts/etcd-latest.sh): compared with nothing");
        return;
    };
    let etcd = run(Kind::Etcd, Options::default().binary(latest)).await;
    common::compare_transcripts(Kind::Kvd, &kvd, Kind::Etcd, &etcd);
}
