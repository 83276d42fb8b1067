//! etcd 3.4 writes a snapshot (`etcdctl snapshot save`); our reader must see
//! every row, revision, lease, member and compaction mark that was written,
//! and `status()` must equal `etcdctl snapshot status`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use kv_etcdsnap::{Revision, Row, Snapshot};
use kv_proto::mvccpb::KeyValue;

fn kv(key: &str, create: i64, modr: i64, ver: i64, val: &str, lease: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        create_revision: create,
        mod_revision: modr,
        version: ver,
        value: val.into(),
        lease,
    }
}

fn row(main: i64, sub: i64, tombstone: bool, kv: KeyValue) -> Row {
    Row {
        rev: Revision { main, sub },
        tombstone,
        kv,
    }
}

#[test]
fn reads_what_etcd34_saved() {
    let (etcd_bin, etcdctl) = etcd34();
    let saved = save_and_check(&etcd_bin, &etcdctl);
    assert_eq!(
        saved.snap.meta().unwrap().term,
        None,
        "etcd 3.4 writes no term"
    );
}

#[test]
fn reads_what_etcd_latest_saved() {
    let (Some((etcd_bin, etcdctl)), Some(etcdutl)) = (etcd_latest(), etcdutl_latest()) else {
        return;
    };
    let Saved { path, snap, .. } = &save_and_check(&etcd_bin, &etcdctl);
    let meta = snap.meta().unwrap();
    assert!(
        meta.term.is_some_and(|t| t >= 1),
        "etcd 3.5+ writes the term: {meta:?}"
    );
    assert!(
        meta.conf_state.is_some_and(|c| c.voters.len() == 1),
        "etcd 3.5+ writes confState"
    );
    let st = snap.status().unwrap();
    let v = snapshot_status_json(Command::new(&etcdutl), path);
    assert_eq!(v["hash"].as_u64(), Some(u64::from(st.hash)));
    assert_eq!(v["revision"].as_i64(), Some(st.revision));
    assert_eq!(v["totalKey"].as_u64(), Some(st.live_keys));
    assert_eq!(v["totalKey"].as_u64(), Some(5), "a, c, d, e, f are live");
    // storageVersion is written by etcd's version monitor (a timer), so a snapshot taken
    // right after start may not have it yet: etcdutl then prints "".
    let utl_version = v["version"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    assert_eq!(utl_version, st.version);
}

/// Writes a known history into a fresh etcd, saves a snapshot with its etcdctl and
/// checks our reader against it.
fn save_and_check(etcd_bin: &Path, etcdctl: &Path) -> Saved {
    let dir = tempfile::tempdir().unwrap();
    let peer = peer_url();
    let etcd = Etcd::start(etcd_bin, etcdctl, &dir.path().join("data"), "n1", &peer);

    etcd.ctl(&["put", "a", "1"]); // rev 2
    etcd.ctl(&["put", "b", "2"]); // rev 3
    etcd.ctl(&["put", "a", "3"]); // rev 4
    etcd.ctl(&["del", "b"]); // rev 5
    let grant = etcd.ctl_json(&["lease", "grant", "600"]);
    let lease_id = grant["ID"].as_i64().unwrap();
    etcd.ctl(&["put", "c", "4", &format!("--lease={lease_id:x}")]); // rev 6
                                                                    // One txn with two puts: rev 7, subs 0 and 1.
    let mut txn = Command::new(etcdctl)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoint, "txn"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    txn.stdin
        .take()
        .unwrap()
        .write_all(b"\nput d 5\nput e 6\n\n\n")
        .unwrap();
    assert!(txn.wait().unwrap().success());
    etcd.ctl(&["compaction", "--physical", "4"]);
    etcd.ctl(&["put", "f", "7"]); // rev 8
                                  // Auth records (auth stays off so the calls above need no credentials).
    etcd.ctl(&["user", "add", "alice:secret"]);
    etcd.ctl(&["role", "add", "r1"]);
    etcd.ctl(&[
        "role",
        "grant-permission",
        "r1",
        "readwrite",
        "/foo",
        "/fop",
    ]);
    etcd.ctl(&["user", "grant-role", "alice", "r1"]);
    let members = etcd.ctl_json(&["member", "list"]);
    let member_id = members["members"][0]["ID"].as_u64().unwrap();

    let file = dir.path().join("snap.db");
    etcd.ctl(&["snapshot", "save", file.to_str().unwrap()]);

    let snap = Snapshot::open(&file).unwrap();
    let rows: Vec<Row> = snap.rows().unwrap().collect::<Result<_, _>>().unwrap();
    let want = vec![
        // a@2 is gone: compaction at 4 keeps only the newest version <= 4 of each key.
        row(3, 0, false, kv("b", 3, 3, 1, "2", 0)),
        row(4, 0, false, kv("a", 2, 4, 2, "3", 0)),
        row(
            5,
            0,
            true,
            KeyValue {
                key: b"b".to_vec(),
                ..Default::default()
            },
        ),
        row(6, 0, false, kv("c", 6, 6, 1, "4", lease_id)),
        row(7, 0, false, kv("d", 7, 7, 1, "5", 0)),
        row(7, 1, false, kv("e", 7, 7, 1, "6", 0)),
        row(8, 0, false, kv("f", 8, 8, 1, "7", 0)),
    ];
    assert_eq!(rows, want);

    let leases = snap.leases().unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!((leases[0].id, leases[0].ttl), (lease_id, 600));

    let meta = snap.meta().unwrap();
    assert_eq!(meta.finished_compact_rev, Some(4));
    assert_eq!(meta.scheduled_compact_rev, Some(4));
    assert!(
        meta.consistent_index >= 8,
        "consistent index {}",
        meta.consistent_index
    );

    let m = snap.members().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].id, member_id);
    assert_eq!(m[0].peer_urls, vec![peer.clone()]);

    let users = snap.users().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(
        (users[0].name.as_slice(), users[0].roles.clone()),
        (&b"alice"[..], vec!["r1".to_string()])
    );
    assert!(users[0].password.starts_with(b"$2"), "bcrypt hash stored");
    let roles = snap.roles().unwrap();
    assert_eq!(roles.len(), 1);
    let p = &roles[0].key_permission[0];
    assert_eq!(
        (
            roles[0].name.as_slice(),
            p.key.as_slice(),
            p.range_end.as_slice(),
            p.perm_type
        ),
        (&b"r1"[..], &b"/foo"[..], &b"/fop"[..], 2)
    );
    let auth = snap.auth().unwrap();
    assert!(!auth.enabled);
    assert!(auth.revision >= 4, "auth revision {}", auth.revision);

    let st = snap.status().unwrap();
    // etcdctl 3.4's status reads any etcd's snapshot.
    let (hash, rev, total, size) = etcdctl_status(&etcd34().1, &file);
    assert_eq!(
        (u64::from(st.hash), st.revision, st.total_key, st.total_size),
        (hash, rev, total, size)
    );
    assert_eq!(st.revision, 8);
    assert!(snap.sha256().is_some());
    drop(etcd);
    Saved {
        _dir: dir,
        path: file,
        snap,
    }
}

struct Saved {
    _dir: tempfile::TempDir,
    path: PathBuf,
    snap: Snapshot,
}
