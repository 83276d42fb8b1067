//! kvd with TLS and mutual TLS for clients and peers, as real processes on
//! certificates the `openssl` CLI makes per test (client/tests/suite/pki.rs):
//! a 3-member cluster that etcdctl 3.4 uses with --cacert/--cert/--key;
//! plaintext, wrong-CA and no-cert clients refused; a peer without a valid
//! certificate can neither call the peer API nor join; the server
//! certificate rotated on disk while serving; clear start-up errors.

mod common;
#[path = "../../client/tests/suite/pki.rs"]
mod pki;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use kv_proto::kvpb::peer_client::PeerClient;
use kv_proto::kvpb::ClusterIdRequest;
use pki::{make_ca, make_leaf};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Longest wait for anything a test polls for (a member starting, a
/// certificate reload): generous for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(60);

/// CAs "client" (the client side), "peer" (members' peer certificates) and
/// "other" (trusted by nobody), with their leaves.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("kvd-tls-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for ca in ["client", "peer", "other"] {
            make_ca(d, ca);
        }
        make_leaf(d, "client", "server");
        make_leaf(d, "client", "client");
        make_leaf(d, "other", "stranger");
        for i in 0..4 {
            make_leaf(d, "peer", &format!("peer{i}"));
        }
        make_leaf(d, "other", "rogue");
        Pki { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).unwrap()
    }
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Child,
    log: PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Member {
    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.client)
    }

    fn peer_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.peer)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts member `name` on fresh ports with client and peer mutual TLS;
/// `peer_leaf` is the certificate it presents to other members.
fn spawn(
    pki: &Pki,
    name: &str,
    ports: (u16, u16),
    cluster: &str,
    state: &str,
    peer_leaf: &str,
) -> Member {
    let data = pki.path(&format!("{name}-{peer_leaf}-{}.kvd", ports.1));
    let log = pki.path(&format!("{name}-{peer_leaf}-{}.log", ports.1));
    let client = format!("https://127.0.0.1:{}", ports.0);
    let peer = format!("https://127.0.0.1:{}", ports.1);
    let p = |f: &str| pki.path(f).display().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_kvd"))
        .args(["--name", name, "--data-dir"])
        .arg(&data)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args([
            "--initial-cluster",
            cluster,
            "--initial-cluster-state",
            state,
        ])
        .args([
            "--cert-file",
            &p("server.pem"),
            "--key-file",
            &p("server.key"),
        ])
        .args([
            "--trusted-ca-file",
            &p("client-ca.pem"),
            "--client-cert-auth",
        ])
        .args(["--peer-cert-file", &p(&format!("{peer_leaf}.pem"))])
        .args(["--peer-key-file", &p(&format!("{peer_leaf}.key"))])
        .args(["--peer-trusted-ca-file", &p("peer-ca.pem")])
        .arg("--peer-client-cert-auth=true")
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
        // KVD_TEST_LOG=debug to see handshakes in the members' logs.
        .env(
            "RUST_LOG",
            std::env::var("KVD_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn kvd");
    Member {
        name: name.to_string(),
        client: ports.0,
        peer: ports.1,
        child,
        log,
    }
}

/// A 3-member TLS cluster, every member healthy.
fn start_cluster(pki: &Pki) -> Vec<Member> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=https://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let members: Vec<Member> = ports
        .iter()
        .enumerate()
        .map(|(i, &pp)| {
            spawn(
                pki,
                &format!("m{i}"),
                pp,
                &cluster,
                "new",
                &format!("peer{i}"),
            )
        })
        .collect();
    for m in &members {
        wait_healthy(pki, m);
    }
    members
}

/// etcdctl 3.4 against `endpoint` with the given TLS flags.
fn etcdctl(endpoint: &str, tls: &[String], args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["--dial-timeout=2s", "--command-timeout=4s"])
        .args(tls)
        .args(args)
        .output()
        .expect("run etcdctl")
}

/// etcdctl's TLS flags: --cacert of CA `ca`, and the `leaf` identity.
fn tls_flags(pki: &Pki, ca: &str, leaf: Option<&str>) -> Vec<String> {
    let mut f = vec![format!(
        "--cacert={}",
        pki.path(&format!("{ca}-ca.pem")).display()
    )];
    if let Some(l) = leaf {
        f.push(format!(
            "--cert={}",
            pki.path(&format!("{l}.pem")).display()
        ));
        f.push(format!("--key={}", pki.path(&format!("{l}.key")).display()));
    }
    f
}

fn good(pki: &Pki) -> Vec<String> {
    tls_flags(pki, "client", Some("client"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `check` until it holds, or panics after [`WAIT`] with `what`.
fn wait_for(what: &str, mut check: impl FnMut() -> bool, logs: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_healthy(pki: &Pki, m: &Member) {
    wait_for(
        &format!("{} to be healthy", m.name),
        || {
            etcdctl(&m.endpoint(), &good(pki), &["endpoint", "health"])
                .status
                .success()
        },
        || m.log(),
    );
}

#[test]
fn tls_cluster_serves_etcdctl_and_refuses_strangers() {
    let pki = Pki::new();
    let members = start_cluster(&pki);
    let (m0, m2) = (&members[0], &members[2]);

    // Writes on one member are read on another: raft ran over peer TLS.
    let put = etcdctl(&m0.endpoint(), &good(&pki), &["put", "greeting", "hello"]);
    assert!(put.status.success(), "{put:?}");
    let mut got = String::new();
    wait_for(
        "the write on m2",
        || {
            got = stdout(&etcdctl(&m2.endpoint(), &good(&pki), &["get", "greeting"]));
            got == "greeting\nhello\n"
        },
        || m2.log(),
    );
    // Every member publishes its name and client URL through raft after it
    // starts (until then it is listed "unstarted", as in etcd): wait for all.
    let mut list = String::new();
    wait_for(
        "every member published over TLS",
        || {
            list = stdout(&etcdctl(&m2.endpoint(), &good(&pki), &["member", "list"]));
            list.matches(", started,").count() == 3
        },
        || m2.log(),
    );
    assert_eq!(list.matches("https://127.0.0.1").count(), 6, "{list}");

    // Refused: no client certificate, one from an untrusted CA, a server we
    // do not trust, plaintext.
    let ep = m0.endpoint();
    let cases = [
        (
            "no client certificate",
            ep.clone(),
            tls_flags(&pki, "client", None),
        ),
        (
            "untrusted client CA",
            ep.clone(),
            tls_flags(&pki, "client", Some("stranger")),
        ),
        (
            "untrusted server",
            ep.clone(),
            tls_flags(&pki, "other", Some("client")),
        ),
        ("plaintext", ep.replace("https://", "http://"), vec![]),
    ];
    for (what, endpoint, flags) in cases {
        let o = etcdctl(&endpoint, &flags, &["get", "greeting"]);
        assert!(!o.status.success(), "{what}: {o:?}");
        assert!(!stdout(&o).contains("hello"), "{what}: {o:?}");
    }
    // The handshake task logs the refusal after the client has given up.
    wait_for(
        "the refusals in m0's log",
        || m0.log().contains("rejected connection"),
        || m0.log(),
    );
}

/// Calls the peer API's ClusterId on `member` over TLS presenting `leaf`.
async fn peer_call(pki: &Pki, member: &Member, leaf: &str) -> Result<(), tonic::Status> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.read("peer-ca.pem")))
        .identity(Identity::from_pem(
            pki.read(&format!("{leaf}.pem")),
            pki.read(&format!("{leaf}.key")),
        ));
    let ep = Endpoint::from_shared(member.peer_url())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(3));
    let ch = ep
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    PeerClient::new(ch)
        .cluster_id(ClusterIdRequest {
            member_id: 1,
            peer_urls: vec!["https://127.0.0.1:1".into()],
        })
        .await
        .map(|_| ())
}

/// Whether the call failed below gRPC (the connection was refused or
/// closed, TLS 1.3 reports a refused client certificate after the
/// handshake) rather than with a status a handler sent.
fn refused_by_transport(e: &tonic::Status) -> bool {
    e.message().starts_with("connect:") || std::error::Error::source(e).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_without_valid_certificate_cannot_call_or_join() {
    let pki = Pki::new();
    let members = start_cluster(&pki);
    let m0 = &members[0];

    // A peer certificate from another CA does not get past the handshake;
    // a member's own certificate reaches the handler (which then refuses
    // the unknown member ID: proof the connection itself was accepted).
    let e = peer_call(&pki, m0, "rogue").await.unwrap_err();
    assert!(refused_by_transport(&e), "{e:?}");
    let e = peer_call(&pki, m0, "peer1").await.unwrap_err();
    assert!(!refused_by_transport(&e), "{e:?}");

    // A new member with a rogue peer certificate is added, then cannot join.
    let ports = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{}", ports.1);
    let add = etcdctl(
        &m0.endpoint(),
        &good(&pki),
        &["member", "add", "m3", &format!("--peer-urls={url}")],
    );
    assert!(add.status.success(), "{add:?}");
    let mut cluster: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect();
    cluster.push(format!("m3={url}"));
    let cluster = cluster.join(",");
    let mut rogue = spawn(&pki, "m3", ports, &cluster, "existing", "rogue");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = rogue.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the rogue member kept running\n{}",
            rogue.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!status.success(), "{}", rogue.log());
    assert!(
        rogue
            .log()
            .contains("no member of --initial-cluster answered"),
        "{}",
        rogue.log()
    );
    let list = stdout(&etcdctl(&m0.endpoint(), &good(&pki), &["member", "list"]));
    assert_eq!(list.matches("unstarted").count(), 1, "{list}");
    wait_for(
        "a member to log the rogue's refused handshake",
        || {
            members
                .iter()
                .any(|m| m.log().contains("rejected connection"))
        },
        || members.iter().map(Member::log).collect(),
    );
    drop(rogue);

    // The same member with a valid peer certificate joins.
    let joiner = spawn(&pki, "m3", ports, &cluster, "existing", "peer3");
    wait_healthy(&pki, &joiner);
    wait_for(
        "m3 to start",
        || {
            let list = stdout(&etcdctl(&m0.endpoint(), &good(&pki), &["member", "list"]));
            list.matches("started").count() == 4 && !list.contains("unstarted")
        },
        || joiner.log(),
    );
}

/// Replaces `dst` by `src` atomically (write aside, rename), as cert
/// managers do.
fn replace(dir: &Path, src: &str, dst: &str) {
    let tmp = dir.join(format!("{dst}.tmp"));
    std::fs::copy(dir.join(src), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(dst)).unwrap();
}

#[test]
fn server_certificate_rotates_while_serving() {
    let pki = Pki::new();
    let d = pki.dir.path();
    make_ca(d, "next");
    make_leaf(d, "next", "server-next");
    let ports = (free_port(), free_port());
    let cluster = format!("m0=https://127.0.0.1:{}", ports.1);
    let m = spawn(&pki, "m0", ports, &cluster, "new", "peer0");
    wait_healthy(&pki, &m);
    let put = etcdctl(&m.endpoint(), &good(&pki), &["put", "k", "v"]);
    assert!(put.status.success(), "{put:?}");
    let next = tls_flags(&pki, "next", Some("client"));
    assert!(!etcdctl(&m.endpoint(), &next, &["get", "k"])
        .status
        .success());

    // Key first, then certificate: between the two the pair mismatches,
    // and kvd keeps serving the old one until both are in place.
    replace(d, "server-next.key", "server.key");
    replace(d, "server-next.pem", "server.pem");
    wait_for(
        "the rotated certificate",
        || stdout(&etcdctl(&m.endpoint(), &next, &["get", "k"])) == "k\nv\n",
        || m.log(),
    );
    // New connections see only the new certificate.
    assert!(!etcdctl(&m.endpoint(), &good(&pki), &["get", "k"])
        .status
        .success());
    assert!(
        m.log().contains("reloaded the TLS certificate"),
        "{}",
        m.log()
    );
}

/// kvd's stderr after it exits, started with `args` (it must exit).
fn start_error(args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let stderr = data.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvd"))
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    // Bounded: a kvd that wrongly starts is killed, not waited for forever.
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} started and kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{args:?} started");
    std::fs::read_to_string(&stderr).unwrap()
}

#[test]
fn bad_tls_flags_stop_kvd_at_start() {
    let pki = Pki::new();
    let p = |f: &str| pki.path(f).display().to_string();
    let client = format!("--listen-client-urls=https://127.0.0.1:{}", free_port());
    let peer = format!("--listen-peer-urls=http://127.0.0.1:{}", free_port());
    let e = start_error(&[&client, &peer]);
    assert!(
        e.contains("TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:"),
        "{e}"
    );
    let (cert, key) = (
        format!("--cert-file={}", p("server.pem")),
        format!("--key-file={}", p("client.key")),
    );
    let e = start_error(&[&client, &peer, &cert, &key]);
    assert!(e.contains("does not match --key-file"), "{e}");
    let missing = format!("--cert-file={}", p("nope.pem"));
    let e = start_error(&[&client, &peer, &missing, &key]);
    assert!(
        e.contains("--cert-file") && e.contains("cannot read"),
        "{e}"
    );
    let https_peer = format!("--listen-peer-urls=https://127.0.0.1:{}", free_port());
    let http_client = format!("--listen-client-urls=http://127.0.0.1:{}", free_port());
    let e = start_error(&[&http_client, &https_peer]);
    assert!(
        e.contains("(--peer-cert-file, --peer-key-file) must be provided for peer url"),
        "{e}"
    );
}
