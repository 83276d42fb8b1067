//! The store as an etcd v3 snapshot file (issue 14): what Maintenance.Snapshot
//! sends, so that `etcdctl snapshot status`, `etcdutl snapshot restore` and
//! kvctl read it as they read etcd's. Written with kv-etcdsnap from one read
//! transaction: MVCC rows in revision order (etcd's `key` bucket), leases,
//! members with the removed ones, auth, alarms and `meta` (the applied raft
//! index and term as etcd's consistent index, the compaction revision, the
//! voters as `confState`). Rows stream through the writer's scratch file, so
//! memory stays small whatever the store's size.

use std::fs::File;
use std::io::Write;

use kv_etcdsnap::{
    AuthInfo, ConfState, Lease, Member, MetaInfo, Revision as EtcdRev, Row, SnapshotWriter,
};
use kv_proto::authpb::{Role, User};
use kv_proto::etcdserverpb::AlarmMember;
use kv_proto::kvpb::MemberAttributes;
use kv_proto::mvccpb::KeyValue;
use prost::Message;
use redb::{ReadTransaction, ReadableTable};

use super::schema::{
    ALARMS, KV, LEASES, MEMBERS, META, META_APPLIED, META_AUTH_ENABLED, META_AUTH_REVISION,
    META_AUTH_ROLE, META_AUTH_USER, META_COMPACT, META_MEMBERSHIP, META_REMOVED,
};
use crate::mvcc::row::decode_row;
use crate::mvcc::{MvccError, Revision};
use crate::raft::types::{LogId, StoredMembership};

fn snap_err(e: kv_etcdsnap::Error) -> MvccError {
    MvccError::Storage(format!("writing the etcd snapshot: {e}"))
}

fn bad_meta(key: &str, e: impl std::fmt::Display) -> MvccError {
    MvccError::Corrupt(format!("meta {key}: {e}"))
}

/// Writes the state `rtx` sees to `out` in etcd's snapshot format (bbolt
/// database, then its SHA-256), spooling pages to `scratch`. Returns `out`
/// and the number of bytes written. `compaction_done` is the highest
/// compaction revision whose rows were all deleted before `rtx` began
/// (`Compactor::finished_through`).
pub fn export<W: Write>(
    rtx: &ReadTransaction,
    out: W,
    scratch: File,
    compaction_done: i64,
) -> Result<(W, u64), MvccError> {
    let mut w = SnapshotWriter::with_scratch(out, scratch).map_err(snap_err)?;
    for entry in rtx.open_table(KV)?.iter()? {
        let (k, v) = entry?;
        let rev = Revision::from_key(k.value());
        let (tombstone, kv) = decode_row(rev, v.value())?;
        // etcd's tombstone row holds the key alone.
        let kv = if tombstone {
            KeyValue {
                key: kv.key,
                ..Default::default()
            }
        } else {
            kv
        };
        let row = Row {
            rev: EtcdRev {
                main: rev.main,
                sub: rev.sub,
            },
            tombstone,
            kv,
        };
        w.push_row(&row).map_err(snap_err)?;
    }
    for entry in rtx.open_table(LEASES)?.iter()? {
        let (id, ttl) = entry?;
        w.put_lease(&Lease {
            id: id.value(),
            ttl: ttl.value(),
            remaining_ttl: 0,
        });
    }
    for entry in rtx.open_table(ALARMS)?.iter()? {
        let (k, _) = entry?;
        let (member_id, alarm) = k.value();
        let am = AlarmMember { member_id, alarm };
        w.put_raw(b"alarm", am.encode_to_vec(), Vec::new());
    }

    let meta = rtx.open_table(META)?;
    let get = |key: &str| -> Result<Option<Vec<u8>>, MvccError> {
        Ok(meta.get(key)?.map(|g| g.value().to_vec()))
    };
    let json = |key: &str| -> Result<Option<serde_json::Value>, MvccError> {
        get(key)?
            .map(|b| serde_json::from_slice(&b).map_err(|e| bad_meta(key, e)))
            .transpose()
    };
    let applied: Option<LogId> = match json(META_APPLIED)? {
        Some(v) => serde_json::from_value(v).map_err(|e| bad_meta(META_APPLIED, e))?,
        None => None,
    };
    let membership: StoredMembership = match json(META_MEMBERSHIP)? {
        Some(v) => serde_json::from_value(v).map_err(|e| bad_meta(META_MEMBERSHIP, e))?,
        None => StoredMembership::default(),
    };
    let compact = match get(META_COMPACT)? {
        Some(b) => {
            let a: [u8; 8] = b
                .as_slice()
                .try_into()
                .map_err(|_| bad_meta(META_COMPACT, "not 8 bytes"))?;
            i64::from_le_bytes(a)
        }
        None => 0,
    };
    members(&mut w, rtx, &membership)?;
    if let Some(v) = json(META_REMOVED)? {
        let ids: Vec<u64> = serde_json::from_value(v).map_err(|e| bad_meta(META_REMOVED, e))?;
        for id in ids {
            w.put_removed_member(id);
        }
    }
    auth(&mut w, &meta)?;

    let m = membership.membership();
    let learners: Vec<u64> = m.learner_ids().collect();
    let voters: Vec<u64> = m.voter_ids().collect();
    w.set_meta(&MetaInfo {
        consistent_index: applied.map_or(0, |l| l.index),
        term: applied.map(|l| l.leader_id.term),
        scheduled_compact_rev: (compact > 0).then_some(compact),
        // As etcd records a compaction whose rows are not all deleted yet:
        // finished below scheduled, so whoever opens the file (etcd at
        // start, or a restore) runs the compaction again; rows below the
        // compaction revision may still be in the file.
        finished_compact_rev: Some(compaction_done.min(compact)).filter(|r| *r > 0),
        conf_state: Some(ConfState {
            voters,
            learners,
            ..Default::default()
        }),
    })
    .map_err(snap_err)?;
    w.finish().map_err(snap_err)
}

/// Members as etcd stores them: the raft configuration's IDs and peer URLs
/// with the names and client URLs they published.
fn members<W: Write>(
    w: &mut SnapshotWriter<W>,
    rtx: &ReadTransaction,
    membership: &StoredMembership,
) -> Result<(), MvccError> {
    let attrs = rtx.open_table(MEMBERS)?;
    let m = membership.membership();
    let learners: Vec<u64> = m.learner_ids().collect();
    for (id, node) in m.nodes() {
        let a = match attrs.get(*id)? {
            Some(b) => MemberAttributes::decode(b.value())
                .map_err(|e| MvccError::Corrupt(format!("members table, member {id:x}: {e}")))?,
            None => MemberAttributes::default(),
        };
        w.put_member(&Member {
            id: *id,
            peer_urls: node.addr.split(',').map(str::to_string).collect(),
            is_learner: learners.contains(id),
            name: a.name,
            client_urls: a.client_urls,
        })
        .map_err(snap_err)?;
    }
    Ok(())
}

/// Auth: enabled flag and revision, users (bcrypt hashes, as etcd keeps
/// them) and roles.
fn auth<W: Write>(
    w: &mut SnapshotWriter<W>,
    meta: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
) -> Result<(), MvccError> {
    let enabled = meta
        .get(META_AUTH_ENABLED)?
        .is_some_and(|g| g.value().first() == Some(&1));
    let revision = match meta.get(META_AUTH_REVISION)? {
        Some(g) => {
            let a: [u8; 8] = g
                .value()
                .try_into()
                .map_err(|_| bad_meta(META_AUTH_REVISION, "not 8 bytes"))?;
            u64::from_le_bytes(a)
        }
        None => 0,
    };
    w.set_auth(&AuthInfo { enabled, revision });
    for entry in meta.range(META_AUTH_USER..)? {
        let (k, v) = entry?;
        let Some(_) = k.value().strip_prefix(META_AUTH_USER) else {
            break;
        };
        let u = User::decode(v.value()).map_err(|e| bad_meta(k.value(), e))?;
        w.put_user(&u);
    }
    for entry in meta.range(META_AUTH_ROLE..)? {
        let (k, v) = entry?;
        let Some(_) = k.value().strip_prefix(META_AUTH_ROLE) else {
            break;
        };
        let r = Role::decode(v.value()).map_err(|e| bad_meta(k.value(), e))?;
        w.put_role(&r);
    }
    Ok(())
}
