//! `kvctl snapshot restore` (issue 14), end to end with real processes:
//! etcd 3.4 is filled (revisions of one key, a delete, a leased key, a
//! compaction, a user and a role, auth on) and saved with `etcdctl snapshot
//! save`; the file is restored by etcdctl 3.4 into an etcd data dir and by
//! kvctl into a kvd data dir, and both servers must answer etcdctl alike
//! (keys, revisions, versions, leases, the compaction, users and roles).
//! Then kvd's own snapshot of that member is restored again (one member,
//! then a three-member cluster from the one file). Damaged and hashless
//! files are refused with etcdctl's texts and exit codes, leaving no dir.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, kvd_bin, mask_number_after, output_bounded, ETCD, ETCDCTL, KVCTL};

const STEP: Duration = Duration::from_secs(30);
const ROOT: &str = "root:rootpw";
const TOKEN: &str = "restore-token";

/// One member process, killed on drop.
struct Member {
    child: Child,
    endpoint: String,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcdctl (the real client) against `ep` as root; (exit code, stdout, stderr).
fn ctl(ep: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(ETCDCTL);
    cmd.env("ETCDCTL_API", "3")
        .args(["--endpoints", ep, "--command-timeout", "5s"])
        .args(args);
    let out = output_bounded(&mut cmd, STEP);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn must(ep: &str, args: &[&str]) -> String {
    let (code, out, err) = ctl(ep, args);
    assert_eq!(code, 0, "etcdctl {args:?}: {out} {err}");
    out
}

/// Ports for one member: (client, peer).
fn ports() -> (u16, u16) {
    (free_port(), free_port())
}

/// Starts `bin` as member `name` of `cluster` on `p`, over `data_dir`.
fn spawn(bin: &Path, name: &str, data_dir: &Path, p: (u16, u16), cluster: &str) -> Member {
    let client = format!("http://127.0.0.1:{}", p.0);
    let peer = format!("http://127.0.0.1:{}", p.1);
    let child = Command::new(bin)
        .args(["--name", name])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", cluster])
        .args(["--initial-cluster-token", TOKEN])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    Member {
        child,
        endpoint: format!("127.0.0.1:{}", p.0),
    }
}

/// Waits until `m` serves a read as root and is the member on our peer port.
fn wait_ready(m: &mut Member, peer_port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            m.child.try_wait().unwrap().is_none(),
            "member on {} exited",
            m.endpoint
        );
        let (code, _, _) = ctl(&m.endpoint, &["--user", ROOT, "get", "probe"]);
        if code == 0 {
            let list = must(&m.endpoint, &["--user", ROOT, "member", "list"]);
            assert!(
                list.contains(&format!(":{peer_port}")),
                "another server answers on {}: {list}",
                m.endpoint
            );
            return;
        }
        assert!(Instant::now() < deadline, "{} not ready", m.endpoint);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kvctl snapshot restore FILE ARGS...`: (exit code, stdout, stderr).
fn restore(bin: &str, file: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin);
    cmd.env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(file)
        .args(args);
    let out = output_bounded(&mut cmd, STEP);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Restore flags for member `name` of `cluster` at `peer_port`.
fn restore_flags(name: &str, dir: &Path, peer_port: u16, cluster: &str) -> Vec<String> {
    vec![
        format!("--name={name}"),
        format!("--data-dir={}", dir.display()),
        format!("--initial-cluster={cluster}"),
        format!("--initial-cluster-token={TOKEN}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
    ]
}

fn restore_ok(bin: &str, file: &Path, flags: &[String]) {
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (code, out, err) = restore(bin, file, &args);
    assert_eq!(code, 0, "{bin} snapshot restore: {out} {err}");
}

/// What a client sees of the restored data, with the fields that differ
/// between clusters (IDs, term, a lease's remaining TTL) masked.
fn observe(ep: &str, lease: &str) -> Vec<String> {
    let reads: Vec<Vec<&str>> = vec![
        vec!["get", "", "--prefix", "-w", "json"],
        vec!["get", "a", "-w", "json"],
        vec!["get", "a", "--rev=5", "-w", "json"],
        vec!["get", "b", "--rev=6", "-w", "json"],
        vec!["get", "a", "--rev=3"],
        vec!["lease", "list"],
        vec!["lease", "timetolive", lease, "--keys", "-w", "json"],
        vec!["user", "list"],
        vec!["user", "get", "u1"],
        vec!["role", "list"],
        vec!["role", "get", "r1"],
    ];
    reads
        .iter()
        .map(|r| {
            let mut args = vec!["--user", ROOT];
            args.extend(r);
            let (code, out, err) = ctl(ep, &args);
            // etcdctl's client logs its retries (with timestamps) on stderr.
            let err: Vec<&str> = err
                .lines()
                .filter(|l| !l.starts_with("{\"level\""))
                .collect();
            let mut s = format!("{r:?} rc={code} out={out} err={err:?}");
            for key in [
                "\"cluster_id\":",
                "\"member_id\":",
                "\"raft_term\":",
                "\"ttl\":",
            ] {
                s = mask_number_after(&s, key);
            }
            s
        })
        .collect()
}

fn assert_same(what: &str, want: &[String], got: &[String]) {
    let differ: Vec<String> = want
        .iter()
        .zip(got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("want: {w}\n got: {g}"))
        .collect();
    assert!(differ.is_empty(), "{what}:\n{}", differ.join("\n"));
}

/// Fills etcd 3.4 and saves its snapshot to `file`; returns the lease ID (hex).
fn fill_etcd(ep: &str, file: &Path) -> String {
    must(ep, &["put", "a", "1"]); // rev 2
    must(ep, &["put", "a", "2"]); // 3
    must(ep, &["put", "a", "3"]); // 4
    must(ep, &["put", "b", "x"]); // 5
    must(ep, &["del", "b"]); // 6
    let granted = must(ep, &["lease", "grant", "600"]);
    let lease = granted.split_whitespace().nth(1).unwrap().to_string();
    must(ep, &["put", "l", "leased", "--lease", &lease]); // 7
    must(ep, &["put", "c", "1"]); // 8
    must(ep, &["compaction", "4"]);
    must(ep, &["put", "a", "4"]); // 9
    for args in [
        vec!["user", "add", ROOT],
        vec!["user", "add", "u1:pw1"],
        vec!["role", "add", "r1"],
        vec!["role", "grant-permission", "r1", "readwrite", "a", "b"],
        vec!["user", "grant-role", "u1", "r1"],
        vec!["auth", "enable"],
    ] {
        must(ep, &args);
    }
    must(
        ep,
        &[
            "--user",
            ROOT,
            "snapshot",
            "save",
            &file.display().to_string(),
        ],
    );
    lease
}

#[test]
fn restore_from_etcd_and_kvd_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let kvd = kvd_bin();

    // etcd 3.4, filled and saved.
    let p = ports();
    let one = |name: &str, p: (u16, u16)| format!("{name}=http://127.0.0.1:{}", p.1);
    let mut etcd = spawn(Path::new(ETCD), "e1", &d("e1"), p, &one("e1", p));
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctl(&etcd.endpoint, &["get", "probe"]).0 != 0 {
        assert!(etcd.child.try_wait().unwrap().is_none(), "etcd exited");
        assert!(Instant::now() < deadline, "etcd not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let snap = d("etcd.db");
    let lease = fill_etcd(&etcd.endpoint, &snap);
    let source = observe(&etcd.endpoint, &lease);
    drop(etcd);

    // etcd's own restore of the file, served by etcd 3.4: the reference.
    let p = ports();
    restore_ok(
        ETCDCTL,
        &snap,
        &restore_flags("r1", &d("r1.etcd"), p.1, &one("r1", p)),
    );
    let mut etcd_r = spawn(Path::new(ETCD), "r1", &d("r1.etcd"), p, &one("r1", p));
    wait_ready(&mut etcd_r, p.1);
    let reference = observe(&etcd_r.endpoint, &lease);
    drop(etcd_r);
    assert_same("etcd restored vs etcd saved", &source, &reference);

    // kvctl's restore of the same file, served by kvd.
    let p = ports();
    restore_ok(
        KVCTL,
        &snap,
        &restore_flags("k1", &d("k1.kvd"), p.1, &one("k1", p)),
    );
    let mut k1 = spawn(&kvd, "k1", &d("k1.kvd"), p, &one("k1", p));
    wait_ready(&mut k1, p.1);
    assert_same(
        "kvd restored from etcd's snapshot",
        &reference,
        &observe(&k1.endpoint, &lease),
    );
    // The password etcd hashed works on kvd; the role's range is enforced.
    let (code, _, err) = ctl(&k1.endpoint, &["--user", "u1:pw1", "get", "c"]);
    assert_eq!(
        (code, err.lines().last()),
        (1, Some("Error: etcdserver: permission denied"))
    );

    // (b) kvd's own snapshot of that member, restored by kvctl into kvd.
    let ksnap = d("kvd.db");
    must(
        &k1.endpoint,
        &[
            "--user",
            ROOT,
            "snapshot",
            "save",
            &ksnap.display().to_string(),
        ],
    );
    drop(k1);
    let p = ports();
    restore_ok(
        KVCTL,
        &ksnap,
        &restore_flags("k2", &d("k2.kvd"), p.1, &one("k2", p)),
    );
    let mut k2 = spawn(&kvd, "k2", &d("k2.kvd"), p, &one("k2", p));
    wait_ready(&mut k2, p.1);
    assert_same(
        "kvd restored from kvd's snapshot",
        &reference,
        &observe(&k2.endpoint, &lease),
    );
    drop(k2);

    // (c) Three kvd members restored from the one file form one cluster.
    let ps: Vec<(u16, u16)> = (0..3).map(|_| ports()).collect();
    let cluster: Vec<String> = ps
        .iter()
        .enumerate()
        .map(|(i, p)| one(&format!("m{i}"), *p))
        .collect();
    let cluster = cluster.join(",");
    let mut members: Vec<Member> = Vec::new();
    for (i, p) in ps.iter().enumerate() {
        let name = format!("m{i}");
        let data = d(&format!("{name}.kvd"));
        restore_ok(KVCTL, &ksnap, &restore_flags(&name, &data, p.1, &cluster));
        members.push(spawn(&kvd, &name, &data, *p, &cluster));
    }
    for (m, p) in members.iter_mut().zip(&ps) {
        wait_ready(m, p.1);
    }
    for m in &members {
        assert_same(
            "a member of the restored cluster",
            &reference,
            &observe(&m.endpoint, &lease),
        );
    }
    let list = must(&members[0].endpoint, &["--user", ROOT, "member", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    for p in &ps {
        assert!(list.contains(&format!(":{}", p.1)), "{list}");
    }
    // A write through one member is read (linearizably) through another.
    must(&members[0].endpoint, &["--user", ROOT, "put", "z", "after"]);
    let got = must(
        &members[2].endpoint,
        &["--user", ROOT, "get", "z", "--print-value-only"],
    );
    assert_eq!(got.trim(), "after");
}

/// etcdctl's error lines and exit code, without its log lines.
fn error_of(r: &(i32, String, String)) -> String {
    let err: Vec<&str> =
        r.2.lines()
            .filter(|l| !l.starts_with("{\"level\""))
            .collect();
    format!("rc={} out={:?} err={:?}", r.0, r.1, err)
}

/// Entries of `dir` (to prove a refused restore left nothing).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn damaged_or_hashless_snapshots_are_refused_as_etcdctl_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let p = ports();
    let one = format!("e1=http://127.0.0.1:{}", p.1);
    let etcd = spawn(Path::new(ETCD), "e1", &d("e1"), p, &one);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctl(&etcd.endpoint, &["put", "k", "v"]).0 != 0 {
        assert!(Instant::now() < deadline, "etcd not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let good = d("good.db");
    must(
        &etcd.endpoint,
        &["snapshot", "save", &good.display().to_string()],
    );
    drop(etcd);
    let bytes = std::fs::read(&good).unwrap();
    let mut flipped = bytes.clone();
    flipped[9000] ^= 0x55;
    std::fs::write(d("flipped.db"), &flipped).unwrap();
    std::fs::write(d("nohash.db"), &bytes[..bytes.len() - 32]).unwrap();
    std::fs::create_dir(d("full")).unwrap();
    std::fs::write(d("full").join("x"), b"x").unwrap();

    // Each side restores into its own parent dir: nothing may appear there
    // after a refusal (etcd 3.4 leaves a half-built member dir; kvctl must not).
    let out = |side: &str| {
        let p = d(side);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let flags = |target: &Path| -> Vec<String> {
        restore_flags("r", target, 2380, "r=http://127.0.0.1:2380")
    };
    let full = d("full");
    type Case<'a> = (&'a str, PathBuf, Option<&'a Path>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        ("flipped byte", d("flipped.db"), None, &[]),
        ("no hash", d("nohash.db"), None, &[]),
        ("missing file", d("missing.db"), None, &[]),
        ("existing data dir", good.clone(), Some(&full), &[]),
    ];
    let mut differ = Vec::new();
    for (what, file, target, extra) in &cases {
        let mut results = Vec::new();
        for (bin, side) in [(KVCTL, "kvctl-out"), (ETCDCTL, "etcdctl-out")] {
            let parent = out(side);
            let target = target.map_or_else(|| parent.join("r.dir"), Path::to_path_buf);
            let mut args = flags(&target);
            args.extend(extra.iter().map(|s| s.to_string()));
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = restore(bin, file, &a);
            if bin == KVCTL {
                assert!(
                    entries(&parent).is_empty(),
                    "{what}: kvctl left {:?}",
                    entries(&parent)
                );
            }
            let _ = std::fs::remove_dir_all(&parent);
            results.push(error_of(&r).replace(&target.display().to_string(), "<dir>"));
        }
        eprintln!(
            "{what}:\n  kvctl:   {}\n  etcdctl: {}",
            results[0], results[1]
        );
        if results[0] != results[1] {
            differ.push(format!(
                "{what}: kvctl {} / etcdctl {}",
                results[0], results[1]
            ));
        }
    }
    assert!(differ.is_empty(), "differences:\n{}", differ.join("\n"));
    assert_eq!(
        entries(&full),
        vec![full.join("x")],
        "the existing dir is untouched"
    );

    // A sound file whose contents kvd cannot take (a lease TTL past etcd's
    // maximum) fails after the store was begun: the partial dir is removed.
    let forged = d("forged.db");
    let mut w = kv_etcdsnap::SnapshotWriter::new(std::fs::File::create(&forged).unwrap()).unwrap();
    let kv = kv_proto_kv(b"k", 2);
    w.push_row(&kv_etcdsnap::Row {
        rev: kv_etcdsnap::Revision { main: 2, sub: 0 },
        tombstone: false,
        kv,
    })
    .unwrap();
    w.put_lease(&kv_etcdsnap::Lease {
        id: 7,
        ttl: 9_000_000_001,
        remaining_ttl: 0,
    });
    w.set_meta(&kv_etcdsnap::MetaInfo::default()).unwrap();
    w.finish().unwrap();
    let parent = d("forged-out");
    std::fs::create_dir(&parent).unwrap();
    let args = flags(&parent.join("r.kvd"));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = restore(KVCTL, &forged, &a);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.2.contains("lease 7 with ttl 9000000001"), "{r:?}");
    assert!(entries(&parent).is_empty(), "left {:?}", entries(&parent));

    // Without a hash, --skip-hash-check lets the restore through.
    let target = d("skip.kvd");
    let mut args = flags(&target);
    args.push("--skip-hash-check".into());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = restore(KVCTL, &d("nohash.db"), &a);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(target.join("member").join("db").exists());
    // No arguments: etcdctl's usage error.
    let r0 = error_of(&run_bare(KVCTL));
    assert_eq!(r0, error_of(&run_bare(ETCDCTL)));
}

/// A put of `key` at revision `rev` (its first version).
fn kv_proto_kv(key: &[u8], rev: i64) -> kv_proto::mvccpb::KeyValue {
    kv_proto::mvccpb::KeyValue {
        key: key.to_vec(),
        create_revision: rev,
        mod_revision: rev,
        version: 1,
        value: b"v".to_vec(),
        lease: 0,
    }
}

fn run_bare(bin: &str) -> (i32, String, String) {
    let mut cmd = Command::new(bin);
    cmd.env("ETCDCTL_API", "3").args(["snapshot", "restore"]);
    let out = output_bounded(&mut cmd, STEP);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
