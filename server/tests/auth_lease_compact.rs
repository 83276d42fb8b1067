//! Auth on LeaseTimeToLive and Compact, kvd against etcd v3.7.3 (built by
//! scripts/etcd-latest.sh; etcd 3.4 predates the lease rule): asking for a
//! lease's keys needs read permission on each of them (root: all), without
//! the keys any user may ask; Compact is root's (etcd 3.4 let anyone
//! compact; v3.7.3 refuses others, and kvd follows it). Driven with the
//! etcd-client crate.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, LeaseTimeToLiveOptions, Permission, PutOptions};

/// Where scripts/etcd-latest.sh leaves its build.
const ETCD_LATEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/etcd-v3.7.3/etcd");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(bin: &Path, dir: &Path) -> (Proc, String) {
    let (c, p) = (common::free_port(), common::free_port());
    let (c, p) = (
        format!("http://127.0.0.1:{c}"),
        format!("http://127.0.0.1:{p}"),
    );
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let child = Command::new(bin)
        .args([
            "--name=n1".to_string(),
            format!("--data-dir={}", dir.join("data").display()),
            format!("--listen-client-urls={c}"),
            format!("--advertise-client-urls={c}"),
            format!("--listen-peer-urls={p}"),
            format!("--initial-advertise-peer-urls={p}"),
            format!("--initial-cluster=n1={p}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let opts = ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
        if let Ok(mut cl) = Client::connect([c.clone()], Some(opts)).await {
            if cl.get("probe", None).await.is_ok() {
                return (proc, c);
            }
        }
        assert!(
            Instant::now() < deadline,
            "{bin:?} did not start:\n{}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn as_user(ep: &str, user: &str, pw: &str) -> Client {
    let opts = ConnectOptions::new().with_user(user, pw);
    Client::connect([ep], Some(opts)).await.unwrap()
}

fn shown<T>(r: Result<T, etcd_client::Error>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => ok(v),
        Err(etcd_client::Error::GRpcStatus(s)) => format!("{:?}: {}", s.code(), s.message()),
        Err(e) => format!("error {e}"),
    }
}

async fn run(bin: &Path) -> Vec<String> {
    let dir = tempfile::Builder::new()
        .prefix("kvd-lease-auth-")
        .tempdir()
        .unwrap();
    let (_proc, ep) = start(bin, dir.path()).await;
    let c = Client::connect([ep.clone()], None).await.unwrap();
    let mut a = c.auth_client();
    a.user_add("root", "rpw", None).await.unwrap();
    a.role_add("root").await.unwrap();
    a.user_grant_role("root", "root").await.unwrap();
    a.role_add("seeab").await.unwrap();
    a.role_grant_permission("seeab", Permission::read("a").with_range_end("c"))
        .await
        .unwrap();
    a.user_add("alice", "apw", None).await.unwrap();
    a.user_grant_role("alice", "seeab").await.unwrap();
    a.user_add("bob", "bpw", None).await.unwrap();
    a.auth_enable().await.unwrap();

    let mut root = as_user(&ep, "root", "rpw").await;
    let inside = root.lease_grant(600, None).await.unwrap().id();
    let mixed = root.lease_grant(600, None).await.unwrap().id();
    let put = |l| Some(PutOptions::new().with_lease(l));
    root.put("b1", "v", put(inside)).await.unwrap();
    root.put("a1", "v", put(mixed)).await.unwrap();
    root.put("z1", "v", put(mixed)).await.unwrap();
    let rev = root
        .get("z1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    let mut t = Vec::new();
    let keys = || Some(LeaseTimeToLiveOptions::new().with_keys());
    let listed = |r: etcd_client::LeaseTimeToLiveResponse| {
        let mut k: Vec<String> = r
            .keys()
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        k.sort();
        format!("ok keys {k:?}")
    };
    let mut alice = as_user(&ep, "alice", "apw").await;
    let mut bob = as_user(&ep, "bob", "bpw").await;
    for (who, cl) in [
        ("root", &mut root),
        ("alice", &mut alice),
        ("bob", &mut bob),
    ] {
        for (name, id) in [("inside", inside), ("mixed", mixed)] {
            let r = cl.lease_time_to_live(id, keys()).await;
            t.push(format!("{who} ttl+keys {name}: {}", shown(r, listed)));
            let r = cl.lease_time_to_live(id, None).await;
            t.push(format!("{who} ttl {name}: {}", shown(r, |_| "ok".into())));
        }
    }
    let mut anon = Client::connect([ep.clone()], None).await.unwrap();
    let r = anon.lease_time_to_live(inside, keys()).await;
    t.push(format!("no user ttl+keys: {}", shown(r, listed)));

    // LeaseGrant and LeaseRevoke need a user (any user) once auth is on
    // (etcd 3.6+; 3.4 let anyone).
    let r = anon.lease_grant(60, None).await;
    t.push(format!("no user grant: {}", shown(r, |_| "ok".into())));
    let r = anon.lease_revoke(inside).await;
    t.push(format!("no user revoke: {}", shown(r, |_| "ok".into())));
    let r = bob.lease_grant(60, None).await;
    t.push(format!("bob grant: {}", shown(r, |_| "ok".into())));
    let bobs = bob.lease_grant(60, None).await.unwrap().id();
    let r = bob.lease_revoke(bobs).await;
    t.push(format!("bob revoke: {}", shown(r, |_| "ok".into())));

    // Compact: root's only.
    let r = bob.compact(rev - 2, None).await;
    t.push(format!("bob compact: {}", shown(r, |_| "ok".into())));
    let r = anon.compact(rev - 2, None).await;
    t.push(format!("no user compact: {}", shown(r, |_| "ok".into())));
    let r = alice.compact(rev - 2, None).await;
    t.push(format!("alice compact: {}", shown(r, |_| "ok".into())));
    let r = root.compact(rev - 1, None).await;
    t.push(format!("root compact: {}", shown(r, |_| "ok".into())));
    let r = root
        .get(
            "z1",
            Some(etcd_client::GetOptions::new().with_revision(rev - 2)),
        )
        .await;
    t.push(format!("read below it: {}", shown(r, |_| "ok".into())));
    for l in &t {
        eprintln!("[{}] {l}", bin.display());
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_keys_need_read_and_compact_needs_root() {
    let kvd = run(Path::new(env!("CARGO_BIN_EXE_kvd"))).await;
    assert!(kvd
        .iter()
        .any(|l| l.contains("alice ttl+keys mixed: PermissionDenied")));
    assert!(kvd
        .iter()
        .any(|l| l.contains("bob compact: PermissionDenied")));
    let latest = PathBuf::from(ETCD_LATEST);
    if !latest.exists() || std::env::var("KV_TEST_ONLY").is_ok_and(|k| k.trim() == "kvd") {
        eprintln!("etcd v3.7.3 not built (scripts/etcd-latest.sh): compared with nothing");
        return;
    }
    let etcd = run(&latest).await;
    common::compare_transcripts(common::Kvd, &kvd, common::Etcd, &etcd);
}
