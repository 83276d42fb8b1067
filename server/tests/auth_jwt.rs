//! `--auth-token jwt,...` against kvd and etcd 3.4, with keys the test makes
//! with the `openssl` CLI: etcdctl 3.4 and the etcd-client crate
//! authenticate; the token carries etcd's claims and verifies with the
//! public key; tokens the test signs itself are accepted, while forged and
//! expired ones get "invalid auth token"; a token issued before a
//! permission change gets "revision of auth store is old"; bad options
//! stop the server with etcd's texts.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use etcd_client::ConnectOptions;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kv_proto::etcdserverpb::auth_client::AuthClient;
use kv_proto::etcdserverpb::kv_client::KvClient;
use kv_proto::etcdserverpb::{AuthStatusRequest, PutRequest, RangeRequest};
use serde::{Deserialize, Serialize};

/// etcd's claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

const TTL_SECS: u64 = 600;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `<name>.key` (RSA 2048, PKCS#8) and `<name>.pub` in `dir`.
fn rsa_pair(dir: &Path, name: &str) {
    let key = format!("{name}.key");
    let public = format!("{name}.pub");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &key,
        ],
    );
    openssl(dir, &["pkey", "-in", &key, "-pubout", "-out", &public]);
}

struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::Builder::new()
            .prefix("kvd-jwt-")
            .tempdir()
            .unwrap();
        rsa_pair(dir.path(), "real");
        rsa_pair(dir.path(), "forger");
        Keys { dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn read(&self, f: &str) -> Vec<u8> {
        std::fs::read(self.path(f)).unwrap()
    }

    fn flag(&self) -> String {
        format!(
            "jwt,pub-key={},priv-key={},sign-method=RS256,ttl={TTL_SECS}s",
            self.path("real.pub").display(),
            self.path("real.key").display()
        )
    }

    /// A token the test signs itself with `key` ("real" or "forger").
    fn sign(&self, key: &str, user: &str, revision: u64, exp: u64) -> String {
        let claims = Claims {
            username: user.into(),
            revision,
            exp,
        };
        let k = EncodingKey::from_rsa_pem(&self.read(&format!("{key}.key"))).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &k).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn etcdctl_line(srv: &Server, args: &[&str]) -> String {
    let out = srv.etcdctl(args);
    let err: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("\"level\":\"warn\""))
        .map(str::to_string)
        .collect();
    format!(
        "{args:?} rc={} out={:?} err={:?}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim_end(),
        err.join("\n")
    )
}

/// A token from Authenticate as `user`, or the error.
async fn token_of(
    c: &etcd_client::Client,
    user: &str,
    pw: &str,
) -> Result<String, etcd_client::Error> {
    let r = c.auth_client().authenticate(user.into(), pw.into()).await?;
    Ok(r.token().to_string())
}

/// `m` with `token` in its metadata.
fn carrying<T>(m: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    r.metadata_mut().insert("token", token.parse().unwrap());
    r
}

/// The auth store's revision (AuthStatus as root).
async fn auth_revision(srv: &Server, root_token: &str) -> u64 {
    let ch = tonic::transport::Endpoint::from_shared(srv.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    AuthClient::new(ch)
        .auth_status(carrying(AuthStatusRequest {}, root_token))
        .await
        .unwrap()
        .into_inner()
        .auth_revision
}

/// A Range and a Put on `a1` carrying `token` as gRPC metadata, as any
/// etcd client sends it: "ok" or the status.
async fn with_raw_token(srv: &Server, token: &str) -> String {
    let ch = tonic::transport::Endpoint::from_shared(srv.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut kv = KvClient::new(ch);
    let shown = |r: Result<(), tonic::Status>| match r {
        Ok(()) => "ok".to_string(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    };
    let get = kv
        .range(carrying(
            RangeRequest {
                key: b"a1".to_vec(),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(drop);
    let put = kv
        .put(carrying(
            PutRequest {
                key: b"a1".to_vec(),
                value: b"x".to_vec(),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(drop);
    format!("get {} / put {}", shown(get), shown(put))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_behave_as_etcds() {
    let keys = Keys::new();
    let keys = &keys;
    each_kind(|kind| async move {
        let opts = Options::default().arg("auth-token", keys.flag());
        let srv = Server::start_with(kind, opts).await;
        let mut t = Vec::new();
        for args in [
            &["user", "add", "root:rootpw"][..],
            &["role", "add", "root"],
            &["user", "grant-role", "root", "root"],
            &["role", "add", "ro"],
            &["role", "grant-permission", "ro", "read", "a", "c"],
            &["user", "add", "alice:apw"],
            &["user", "grant-role", "alice", "ro"],
            &["auth", "enable"],
            &["--user", "alice:apw", "get", "a1"],
            &["--user", "alice:apw", "put", "a1", "v"],
            &["--user", "root:rootpw", "put", "a1", "v"],
        ] {
            t.push(etcdctl_line(&srv, args));
        }

        // The etcd-client crate: allowed and denied as alice's role says.
        let opts = ConnectOptions::new().with_user("alice", "apw");
        let mut alice = etcd_client::Client::connect([srv.endpoint()], Some(opts))
            .await
            .unwrap();
        let got = alice.get("a1", None).await.unwrap();
        t.push(format!("client get: {:?}", kv_pairs(got.kvs())));
        t.push(expect_grpc_err(
            kind,
            alice.put("a1", "w", None).await,
            tonic::Code::PermissionDenied,
            "etcdserver: permission denied",
        ));

        // The token itself: etcd's claims, verifiable with the public key.
        let anon = srv.client().await;
        let before = now();
        let token = token_of(&anon, "alice", "apw").await.unwrap();
        let after = now();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        t.push(format!("alg {:?}", header.alg));
        let mut v = Validation::new(Algorithm::RS256);
        v.leeway = 0;
        let pubkey = DecodingKey::from_rsa_pem(&keys.read("real.pub")).unwrap();
        let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &pubkey, &v)
            .unwrap()
            .claims;
        let mut names: Vec<&String> = claims.as_object().unwrap().keys().collect();
        names.sort();
        t.push(format!("claims {names:?} user {}", claims["username"]));
        let exp = claims["exp"].as_u64().unwrap();
        assert!(
            (before + TTL_SECS..=after + TTL_SECS).contains(&exp),
            "[{kind}] exp {exp} is not issue time + ttl"
        );
        let root = etcd_client::Client::connect(
            [srv.endpoint()],
            Some(ConnectOptions::new().with_user("root", "rootpw")),
        )
        .await
        .unwrap();
        let root_token = token_of(&anon, "root", "rootpw").await.unwrap();
        let auth_rev = claims["revision"].as_u64().unwrap();
        // etcd 3.4 has no AuthStatus; where there is one, it agrees.
        if kind == Kvd {
            assert_eq!(auth_revision(&srv, &root_token).await, auth_rev);
        }

        t.push(format!("issued: {}", with_raw_token(&srv, &token).await));
        // Signed by the test with the server's key: accepted (the format is
        // etcd's, not the server's own).
        let own = keys.sign("real", "root", auth_rev, now() + 600);
        t.push(format!(
            "test-signed root: {}",
            with_raw_token(&srv, &own).await
        ));
        let forged = keys.sign("forger", "root", auth_rev, now() + 600);
        t.push(format!("forged: {}", with_raw_token(&srv, &forged).await));
        let expired = keys.sign("real", "root", auth_rev, now() - 5);
        t.push(format!("expired: {}", with_raw_token(&srv, &expired).await));
        t.push(format!(
            "garbage: {}",
            with_raw_token(&srv, "not.a.jwt").await
        ));

        // A permission change bumps the auth revision: alice's token from
        // before is refused until she authenticates again.
        root.auth_client()
            .role_grant_permission("ro", etcd_client::Permission::read("x".to_string()))
            .await
            .unwrap();
        t.push(format!(
            "after change: {}",
            with_raw_token(&srv, &token).await
        ));
        let fresh = token_of(&anon, "alice", "apw").await.unwrap();
        t.push(format!("re-issued: {}", with_raw_token(&srv, &fresh).await));
        for line in &t {
            eprintln!("[{kind}] {line}");
        }
        t
    })
    .await;
}

/// Verify-only JWT (pub-key without priv-key): the server cannot issue
/// tokens (Authenticate fails as etcd's does), but tokens another issuer
/// signs with the private key are accepted, and forged ones are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_only_jwt_accepts_tokens_signed_elsewhere() {
    let keys = Keys::new();
    let keys = &keys;
    each_kind(|kind| async move {
        let flag = format!(
            "jwt,pub-key={},sign-method=RS256,ttl={TTL_SECS}s",
            keys.path("real.pub").display()
        );
        let srv = Server::start_with(kind, Options::default().arg("auth-token", flag)).await;
        let mut t = Vec::new();
        for args in [
            &["user", "add", "root:rootpw"][..],
            &["role", "add", "root"],
            &["user", "grant-role", "root", "root"],
            &["auth", "enable"],
            &["--user", "root:rootpw", "get", "a1"],
        ] {
            t.push(etcdctl_line(&srv, args));
        }
        let anon = srv.client().await;
        let r = token_of(&anon, "root", "rootpw").await;
        t.push(match r {
            Ok(_) => "authenticate: ok".to_string(),
            Err(e) => format!("authenticate: {:?}", grpc_status(&e)),
        });
        // A token is accepted from the auth store's current revision on;
        // both servers count the steps above the same way.
        for rev in 1..8 {
            let own = keys.sign("real", "root", rev, now() + 600);
            let got = with_raw_token(&srv, &own).await;
            if got.starts_with("get ok") {
                t.push(format!(
                    "signed elsewhere, first accepted auth revision {rev}: {got}"
                ));
                break;
            }
        }
        let forged = keys.sign("forger", "root", 7, now() + 600);
        t.push(format!("forged: {}", with_raw_token(&srv, &forged).await));
        for line in &t {
            eprintln!("[{kind}] {line}");
        }
        t
    })
    .await;
}

/// Starts `kind` with `--auth-token auth_token`, expecting it to exit;
/// returns its output.
fn start_refused(kind: Kind, auth_token: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (c, p) = (free_port(), free_port());
    let (c, p) = (
        format!("http://127.0.0.1:{c}"),
        format!("http://127.0.0.1:{p}"),
    );
    let mut child = Command::new(kind.binary())
        .args([
            "--name=n1".to_string(),
            format!("--data-dir={}", dir.path().join("d").display()),
            format!("--listen-client-urls={c}"),
            format!("--advertise-client-urls={c}"),
            format!("--listen-peer-urls={p}"),
            format!("--initial-advertise-peer-urls={p}"),
            format!("--initial-cluster=n1={p}"),
            format!("--auth-token={auth_token}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("[{kind}] started with --auth-token={auth_token}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "[{kind}] {auth_token}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jwt_options_stop_the_server_with_etcds_errors() {
    let keys = Keys::new();
    let (public, private) = (keys.path("real.pub"), keys.path("real.key"));
    let (public, private) = (public.display(), private.display());
    let cases = [
        (
            "jwt,sign-method=RS256".to_string(),
            "auth: missing key data",
        ),
        (
            format!("jwt,pub-key={public},priv-key={private},sign-method=XS256"),
            "auth: invalid auth signature method",
        ),
        (
            format!("jwt,pub-key={public},priv-key={private}"),
            "auth: invalid auth options",
        ),
        (
            format!("jwt,pub-key={public},priv-key={private},sign-method=RS256,ttl=5x"),
            "auth: invalid auth options",
        ),
        (
            format!("jwt,pub-key={public},priv-key={private},sign-method=RS256,ttl=1m,ttl=2m"),
            "auth: invalid auth options",
        ),
        (
            format!("jwt,pub-key={public},priv-key={private},sign-method=RS256=x"),
            "auth: invalid auth options",
        ),
    ];
    for kind in kinds() {
        for (flag, text) in &cases {
            let out = start_refused(kind, flag);
            assert!(
                out.contains(text),
                "[{kind}] {flag}: want {text:?} in:\n{out}"
            );
        }
    }
}

/// ES512 (P-521; kvd signs it itself, the JWT crate has no P-521): kvd and
/// etcd 3.4 started with the same key pair (SEC1, as `openssl ecparam`
/// writes) and the same auth steps accept each other's tokens, and refuse a
/// token whose signature was altered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es512_tokens_are_interchangeable_with_etcds() {
    if !Kind::Etcd.enabled() || !Kind::Kvd.enabled() {
        eprintln!("needs both kvd and etcd");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("kvd-jwt-es512-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "secp521r1",
            "-genkey",
            "-noout",
            "-out",
            "es.key",
        ],
    );
    openssl(d, &["ec", "-in", "es.key", "-pubout", "-out", "es.pub"]);
    let flag = format!(
        "jwt,pub-key={},priv-key={},sign-method=ES512,ttl=300s",
        d.join("es.pub").display(),
        d.join("es.key").display()
    );
    let mut servers = Vec::new();
    let mut tokens = Vec::new();
    for kind in [Kind::Kvd, Kind::Etcd] {
        let srv = Server::start_with(kind, Options::default().arg("auth-token", &flag)).await;
        for args in [
            &["user", "add", "root:rootpw"][..],
            &["role", "add", "root"],
            &["user", "grant-role", "root", "root"],
            &["auth", "enable"],
        ] {
            let line = etcdctl_line(&srv, args);
            assert!(line.contains("rc=0"), "[{kind}] {line}");
        }
        let token = token_of(&srv.client().await, "root", "rootpw")
            .await
            .unwrap_or_else(|e| panic!("[{kind}] authenticate: {e}"));
        // jsonwebtoken cannot parse an ES512 header: read it by hand.
        use base64::Engine;
        let first = token.split('.').next().unwrap_or_default();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(first)
                .expect("base64url header"),
        )
        .expect("JSON header");
        assert_eq!(header["alg"], "ES512", "[{kind}]");
        tokens.push(token);
        servers.push(srv);
    }
    let (kvd, etcd) = (&servers[0], &servers[1]);
    let (from_kvd, from_etcd) = (&tokens[0], &tokens[1]);
    assert_eq!(with_raw_token(kvd, from_kvd).await, "get ok / put ok");
    assert_eq!(
        with_raw_token(kvd, from_etcd).await,
        "get ok / put ok",
        "etcd's token on kvd"
    );
    assert_eq!(
        with_raw_token(etcd, from_kvd).await,
        "get ok / put ok",
        "kvd's token on etcd"
    );
    let mut altered = from_etcd.clone();
    altered.replace_range(altered.len() - 6.., "AAAAAA");
    for srv in [kvd, etcd] {
        assert!(
            with_raw_token(srv, &altered)
                .await
                .contains("invalid auth token"),
            "[{}] altered token accepted",
            srv.kind()
        );
    }
}
