//! etcdctl 3.4 sends the endpoint URL (`http://127.0.0.1:PORT`) as the HTTP/2
//! `:authority` on per-endpoint calls; kvd must accept it like etcd does.

mod common;

use common::*;

#[tokio::test]
async fn etcdctl_url_authority_is_accepted() {
    kvd_only(|| async {
        let server = Server::start(Kind::Kvd).await;
        assert!(server.endpoint().starts_with("http://"));
        for args in [
            &["put", "k", "v"][..],
            &["endpoint", "status", "-w", "json"],
            &["endpoint", "hashkv"],
            &["defrag"],
            &["get", "k"],
            &["endpoint", "status"],
        ] {
            let out = server.etcdctl(args);
            assert!(
                out.status.success(),
                "etcdctl {args:?}: {:?}\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = server.etcdctl(&["get", "k", "--print-value-only"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "v\n");
    })
    .await;
}
