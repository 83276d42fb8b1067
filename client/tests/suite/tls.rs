//! https endpoints against kvd and etcd 3.4, both with the same
//! `--cert-file`/`--key-file`/`--trusted-ca-file`/`--client-cert-auth`
//! flags, using a throwaway CA and certificates made with the `openssl` CLI
//! per test.

use std::path::PathBuf;

use futures::StreamExt;
use kv_client::tls::TlsConfig;
use kv_client::{Client, ClientConfig, WatchOptions};

use crate::cluster::{Cluster, ServerTls};
use crate::pki::{make_ca, make_leaf};
use crate::{Kind, WAIT, fast_config, on_both, within};

struct Pki {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Pki {
    /// CA "good" with a server and a client certificate; CA "other" with a
    /// client certificate the server does not trust.
    fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("kvclient-pki-")
            .tempdir()
            .unwrap();
        let path = dir.path().to_path_buf();
        make_ca(&path, "good");
        make_ca(&path, "other");
        make_leaf(&path, "good", "server");
        make_leaf(&path, "good", "client");
        make_leaf(&path, "other", "stranger");
        Pki { _dir: dir, path }
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path.join(file)).unwrap()
    }

    fn client_tls(&self, ca: &str, leaf: Option<&str>) -> TlsConfig {
        let mut tls = TlsConfig::new().with_ca_pem(self.read(&format!("{ca}-ca.pem")));
        if let Some(leaf) = leaf {
            tls = tls.with_identity_pem(
                self.read(&format!("{leaf}.pem")),
                self.read(&format!("{leaf}.key")),
            );
        }
        tls
    }

    fn server(&self) -> ServerTls {
        ServerTls {
            ca: self.path.join("good-ca.pem"),
            cert: self.path.join("server.pem"),
            key: self.path.join("server.key"),
            client: self.client_tls("good", Some("client")),
        }
    }
}

/// Whether a get through `config` fails (it must, and within the deadline).
async fn refused(config: ClientConfig) -> bool {
    let c = Client::connect(config).await.unwrap();
    within("a refused request", WAIT, c.get("k", None))
        .await
        .is_err()
}

on_both!(mutual_tls);

async fn mutual_tls(kind: Kind) {
    let pki = Pki::new();
    let cluster = Cluster::start(kind, 1, &[], Some(pki.server())).await;
    let https = cluster.endpoint(0);
    assert!(https.starts_with("https://"), "{https}");

    // CA + client certificate, through with_tls: everything works,
    // watches included.
    let config = fast_config(https.clone()).with_tls(
        pki.read("good-ca.pem"),
        Some((pki.read("client.pem"), pki.read("client.key"))),
    );
    let c = Client::connect(config).await.unwrap();
    let mut w = c.watch("k", WatchOptions::new()).await.unwrap();
    let rev = c.put("k", "v", None).await.unwrap().revision();
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value, b"v");
    let batch = within("a watch event", WAIT, w.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.events()[0].kv.as_ref().unwrap().mod_revision, rev);

    // A bare host:port means https once TLS is configured.
    let bare = https.trim_start_matches("https://").to_string();
    let c =
        Client::connect(fast_config(bare).with_tls_config(pki.client_tls("good", Some("client"))))
            .await
            .unwrap();
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value, b"v");

    // Refused: no client certificate, a certificate from an untrusted
    // CA, a server certificate we do not trust, plain http.
    let tls = |ca, leaf| fast_config(https.clone()).with_tls_config(pki.client_tls(ca, leaf));
    assert!(refused(tls("good", None)).await, "no client certificate");
    assert!(
        refused(tls("good", Some("stranger"))).await,
        "untrusted client"
    );
    assert!(
        refused(tls("other", Some("client"))).await,
        "untrusted server"
    );
    // Skipping verification accepts the server we do not trust (the
    // server still demands our certificate).
    let skip = pki
        .client_tls("other", Some("client"))
        .with_insecure_skip_verify(true);
    let c = Client::connect(fast_config(https.clone()).with_tls_config(skip))
        .await
        .unwrap();
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value, b"v");
    let skip = pki
        .client_tls("other", None)
        .with_insecure_skip_verify(true);
    assert!(
        refused(fast_config(https.clone()).with_tls_config(skip)).await,
        "skip, no cert"
    );
    let plain = https.replace("https://", "http://");
    assert!(refused(fast_config(plain)).await, "plain http");
}
