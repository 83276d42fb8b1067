//! Our writer's snapshot must be a real etcd snapshot: `etcdctl snapshot status`
//! (3.4) prints what `status()` computes, and `etcdutl snapshot restore` (newest
//! etcd) / `etcdctl snapshot restore` (3.4) give an etcd that serves every key at
//! every revision, the compaction mark and the lease.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use kv_etcdsnap::*;
use kv_proto::authpb::{Permission, Role, User};
use kv_proto::mvccpb::KeyValue;

const LEASE: i64 = 0x1234_5678;
const COMPACT: i64 = 3;
const BULK: i64 = 2000;

/// Rows of a small history: puts, an overwrite, a txn with a delete, a value
/// larger than a page (overflow), and enough keys for several leaf pages and a branch level.
fn history() -> Vec<Row> {
    let put =
        |main: i64, sub: i64, key: &str, create: i64, ver: i64, val: Vec<u8>, lease: i64| Row {
            rev: Revision { main, sub },
            tombstone: false,
            kv: KeyValue {
                key: key.into(),
                create_revision: create,
                mod_revision: main,
                version: ver,
                value: val,
                lease,
            },
        };
    let mut rows = vec![
        put(2, 0, "k1", 2, 1, b"v1".to_vec(), 0),
        put(3, 0, "k2", 3, 1, b"v2".to_vec(), LEASE),
        put(4, 0, "k1", 2, 2, b"v1b".to_vec(), 0),
        put(5, 0, "k3", 5, 1, b"v3".to_vec(), 0),
        Row {
            rev: Revision { main: 5, sub: 1 },
            tombstone: true,
            kv: KeyValue {
                key: b"k2".to_vec(),
                ..Default::default()
            },
        },
        put(
            6,
            0,
            "big",
            6,
            1,
            (0..10_000u32).map(|i| (i % 251) as u8).collect(),
            0,
        ),
    ];
    for i in 0..BULK {
        let rev = 7 + i;
        rows.push(put(
            rev,
            0,
            &format!("bulk/{i:05}"),
            rev,
            1,
            format!("value-{i}").into_bytes(),
            // The first bulk key is attached to the lease: etcd rebuilds attachments from rows.
            if i == 0 { LEASE } else { 0 },
        ));
    }
    rows
}

fn write_snapshot(path: &Path) {
    let mut w = SnapshotWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for r in history() {
        w.push_row(&r).unwrap();
    }
    w.put_lease(&Lease {
        id: LEASE,
        ttl: 300,
        remaining_ttl: 0,
    });
    w.put_member(&Member {
        id: 1,
        peer_urls: vec!["http://127.0.0.1:1".into()],
        name: "kvd".into(),
        ..Default::default()
    })
    .unwrap();
    w.set_meta(&MetaInfo {
        consistent_index: 10,
        term: Some(2),
        scheduled_compact_rev: Some(COMPACT),
        finished_compact_rev: Some(COMPACT),
        conf_state: Some(ConfState {
            voters: vec![1],
            ..Default::default()
        }),
    })
    .unwrap();
    w.put_user(&User {
        name: b"alice".to_vec(),
        roles: vec!["r1".into()],
        ..Default::default()
    });
    w.put_role(&Role {
        name: b"r1".to_vec(),
        key_permission: vec![Permission {
            perm_type: 1,
            key: b"/foo".to_vec(),
            range_end: b"/fop".to_vec(),
        }],
    });
    w.set_auth(&AuthInfo {
        enabled: false,
        revision: 3,
    });
    w.put_removed_member(0xdead);
    w.put_raw(
        BUCKET_CLUSTER,
        b"clusterVersion".to_vec(),
        b"3.4.0".to_vec(),
    );
    w.finish().unwrap();
}

/// key -> KeyValue visible at `rev` according to the history.
fn state_at(rows: &[Row], rev: i64) -> BTreeMap<Vec<u8>, KeyValue> {
    let mut m = BTreeMap::new();
    for r in rows.iter().filter(|r| r.rev.main <= rev) {
        if r.tombstone {
            m.remove(&r.kv.key);
        } else {
            m.insert(r.kv.key.clone(), r.kv.clone());
        }
    }
    m
}

fn check_served(etcd: &Etcd) {
    let rows = history();
    let last = rows.last().unwrap().rev.main;
    for rev in [COMPACT, 4, 5, 6, 7, 1000, last] {
        let got = etcd.ctl_json(&["get", "", "--from-key", &format!("--rev={rev}")]);
        assert_eq!(
            got["header"]["revision"].as_i64(),
            Some(last),
            "header revision at --rev={rev}"
        );
        let want = state_at(&rows, rev);
        let kvs = got["kvs"].as_array().cloned().unwrap_or_default();
        assert_eq!(kvs.len(), want.len(), "key count at rev {rev}");
        for (g, (k, w)) in kvs.iter().zip(&want) {
            assert_eq!(&b64(&g["key"]), k);
            assert_eq!(
                b64(&g["value"]),
                w.value,
                "value of {:?} at {rev}",
                String::from_utf8_lossy(k)
            );
            assert_eq!(
                g["create_revision"].as_i64().unwrap_or(0),
                w.create_revision
            );
            assert_eq!(g["mod_revision"].as_i64().unwrap_or(0), w.mod_revision);
            assert_eq!(g["version"].as_i64().unwrap_or(0), w.version);
            assert_eq!(g["lease"].as_i64().unwrap_or(0), w.lease);
        }
    }
    let compacted = etcd.ctl_raw(&["get", "k1", &format!("--rev={}", COMPACT - 1)]);
    assert!(!compacted.status.success());
    assert!(
        String::from_utf8_lossy(&compacted.stderr).contains("required revision has been compacted")
    );
    let leases = etcd.ctl(&["lease", "list"]);
    assert!(
        leases.contains(&format!("{LEASE:x}")),
        "lease list: {leases}"
    );
    let user = etcd.ctl(&["user", "get", "alice"]);
    assert!(
        user.contains("User: alice") && user.contains("r1"),
        "user get: {user}"
    );
    let role = etcd.ctl(&["role", "get", "r1"]);
    assert!(
        role.contains("[/foo, /fop)") && role.contains("KV Write"),
        "role get: {role}"
    );
    let ttl = etcd.ctl(&["lease", "timetolive", &format!("{LEASE:x}"), "--keys"]);
    assert!(
        ttl.contains("granted with TTL(300s)") && ttl.contains("attached keys([bulk/00000])"),
        "timetolive: {ttl}"
    );
}

#[test]
fn status_matches_etcdctl_and_reader_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kv.snap");
    write_snapshot(&file);
    let snap = Snapshot::open(&file).unwrap();
    let rows: Vec<Row> = snap.rows().unwrap().collect::<Result<_>>().unwrap();
    assert_eq!(rows, history());
    assert_eq!(
        snap.leases().unwrap(),
        vec![Lease {
            id: LEASE,
            ttl: 300,
            remaining_ttl: 0
        }]
    );
    assert_eq!(snap.meta().unwrap().finished_compact_rev, Some(COMPACT));
    assert_eq!(snap.members().unwrap()[0].name, "kvd");
    assert_eq!(snap.removed_members().unwrap(), vec![0xdead]);
    assert_eq!(snap.users().unwrap()[0].roles, vec!["r1".to_string()]);
    assert_eq!(snap.roles().unwrap()[0].key_permission[0].key, b"/foo");
    assert_eq!(
        snap.auth().unwrap(),
        AuthInfo {
            enabled: false,
            revision: 3
        }
    );

    let st = snap.status().unwrap();
    let (_, etcdctl) = etcd34();
    let (hash, rev, total, size) = etcdctl_status(&etcdctl, &file);
    assert_eq!(
        (u64::from(st.hash), st.revision, st.total_key, st.total_size),
        (hash, rev, total, size)
    );
    assert_eq!(st.revision, 6 + BULK);
}

#[test]
fn etcd34_restores_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kv.snap");
    write_snapshot(&file);
    let (etcd_bin, etcdctl) = etcd34();
    let mut restore = Command::new(&etcdctl);
    restore.env("ETCDCTL_API", "3");
    restore_and_serve(restore, dir.path(), &file, &etcd_bin, &etcdctl);
}

/// Restores `file` into a fresh single-member data dir under `dir` with
/// `restore` (etcdutl, or etcdctl 3.4 with `ETCDCTL_API=3`), starts `etcd_bin`
/// on it and checks that it serves the history.
fn restore_and_serve(
    mut restore: Command,
    dir: &Path,
    file: &Path,
    etcd_bin: &Path,
    etcdctl: &Path,
) {
    let data = dir.join("data");
    let peer = peer_url();
    run_ok(
        restore
            .args(["snapshot", "restore"])
            .arg(file)
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--name",
                "r1",
                "--initial-cluster",
                &format!("r1={peer}"),
                "--initial-advertise-peer-urls",
                &peer,
            ]),
        "restore",
    );
    let etcd = Etcd::start(etcd_bin, etcdctl, &data, "r1", &peer);
    check_served(&etcd);
}

#[test]
fn etcd_latest_restores_and_serves() {
    let (Some((etcd_bin, etcdctl)), Some(etcdutl)) = (etcd_latest(), etcdutl_latest()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kv.snap");
    write_snapshot(&file);
    let st = Snapshot::open(&file).unwrap().status().unwrap();
    let v = snapshot_status_json(Command::new(&etcdutl), &file);
    assert_eq!(v["hash"].as_u64(), Some(u64::from(st.hash)));
    assert_eq!(v["revision"].as_i64(), Some(st.revision));
    // etcdutl 3.6+ counts live keys, not records.
    assert_eq!(v["totalKey"].as_u64(), Some(st.live_keys));
    assert_eq!(v["totalSize"].as_u64(), Some(st.total_size));

    restore_and_serve(
        Command::new(&etcdutl),
        dir.path(),
        &file,
        &etcd_bin,
        &etcdctl,
    );
}

#[test]
fn empty_snapshot_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.snap");
    let mut w = SnapshotWriter::new(std::fs::File::create(&file).unwrap()).unwrap();
    w.set_meta(&MetaInfo {
        consistent_index: 1,
        ..Default::default()
    })
    .unwrap();
    w.finish().unwrap();
    let snap = Snapshot::open(&file).unwrap();
    assert_eq!(snap.rows().unwrap().count(), 0);
    let st = snap.status().unwrap();
    let (hash, rev, total, size) = etcdctl_status(&etcd34().1, &file);
    assert_eq!(
        (u64::from(st.hash), st.revision, st.total_key, st.total_size),
        (hash, rev, total, size)
    );
    assert_eq!((st.revision, st.total_key), (0, 1));
}
