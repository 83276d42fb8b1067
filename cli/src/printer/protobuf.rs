//! The `protobuf` format: the RPC's response marshalled as protobuf, raw
//! bytes on stdout with no separator, as etcdctl 3.4's `printPB`.
//!
//! etcdctl 3.4 hands some of clientv3's own structs to the marshaller
//! rather than the wire message, and we follow what that prints:
//! - `lease grant|timetolive|list|keep-alive`: clientv3's structs embed
//!   `*pb.ResponseHeader`, whose `Marshal` is promoted, so only the header
//!   is printed;
//! - `lease revoke`: clientv3's `LeaseRevokeResponse` has no `Marshal`, so
//!   etcdctl fails with "marshal unsupported for type ..." (exit 4) after
//!   the lease was revoked;
//! - `endpoint health|status|hashkv`, `move-leader`: "protobuf not
//!   supported as output format" (the trait's default).

use std::io::Write;

use kv_client::cluster::MemberListResponse;
use kv_client::lease::{
    LeaseGrantResponse, LeaseListResponse, LeaseRevokeResponse, LeaseTtlResponse,
};
use kv_client::maintenance::ActiveAlarm;
use kv_client::{DeleteResponse, GetResponse, PutResponse, ResponseHeader};
use kv_client::{MemberAddResponse, MemberChangeResponse, TxnResponse, WatchBatch};
use kv_proto::etcdserverpb::{AlarmMember, AlarmResponse, MemberRemoveResponse, WatchResponse};
use prost::Message;

use super::{io_err, Printer};
use crate::commands::auth::AuthOutput;
use crate::commands::lease::KeepAlive;
use crate::commands::member::Change;
use crate::exit::ExitError;

/// Prints each response as its marshalled protobuf bytes.
pub struct ProtobufPrinter;

/// Writes one message's bytes.
fn emit(w: &mut dyn Write, m: &impl Message) -> Result<(), ExitError> {
    w.write_all(&m.encode_to_vec()).map_err(io_err)
}

/// What etcdctl prints for clientv3's structs that embed the header: the
/// header alone (an absent header marshals to nothing).
fn header_only(w: &mut dyn Write, h: Option<&ResponseHeader>) -> Result<(), ExitError> {
    match h {
        Some(h) => emit(w, h),
        None => Ok(()),
    }
}

/// Go's `%v` of a `ResponseHeader` pointer inside a struct: gogo's compact
/// text (zero fields left out, each field followed by a space).
fn header_text(h: Option<&ResponseHeader>) -> String {
    let Some(h) = h else {
        return "<nil>".to_string();
    };
    let mut s = String::new();
    if h.cluster_id != 0 {
        s.push_str(&format!("cluster_id:{} ", h.cluster_id));
    }
    if h.member_id != 0 {
        s.push_str(&format!("member_id:{} ", h.member_id));
    }
    if h.revision != 0 {
        s.push_str(&format!("revision:{} ", h.revision));
    }
    if h.raft_term != 0 {
        s.push_str(&format!("raft_term:{} ", h.raft_term));
    }
    s
}

impl Printer for ProtobufPrinter {
    fn name(&self) -> &'static str {
        "protobuf"
    }

    fn put(&self, w: &mut dyn Write, r: &PutResponse) -> Result<(), ExitError> {
        emit(w, &r.0)
    }

    fn get(&self, w: &mut dyn Write, r: &GetResponse) -> Result<(), ExitError> {
        emit(w, &r.0)
    }

    fn del(&self, w: &mut dyn Write, r: &DeleteResponse) -> Result<(), ExitError> {
        emit(w, &r.0)
    }

    fn lease_grant(&self, w: &mut dyn Write, r: &LeaseGrantResponse) -> Result<(), ExitError> {
        header_only(w, r.0.header.as_ref())
    }

    fn lease_revoke(
        &self,
        _w: &mut dyn Write,
        _id: i64,
        r: &LeaseRevokeResponse,
    ) -> Result<(), ExitError> {
        Err(ExitError::bad_feature(format!(
            "marshal unsupported for type clientv3.LeaseRevokeResponse ({{{}}})",
            header_text(r.0.header.as_ref())
        )))
    }

    fn lease_ttl(
        &self,
        w: &mut dyn Write,
        r: &LeaseTtlResponse,
        _keys: bool,
    ) -> Result<(), ExitError> {
        header_only(w, r.0.header.as_ref())
    }

    fn lease_list(&self, w: &mut dyn Write, r: &LeaseListResponse) -> Result<(), ExitError> {
        header_only(w, r.0.header.as_ref())
    }

    fn keep_alive(&self, w: &mut dyn Write, k: &KeepAlive) -> Result<(), ExitError> {
        header_only(w, k.header.as_ref())
    }

    fn alarm_list(&self, w: &mut dyn Write, alarms: &[ActiveAlarm]) -> Result<(), ExitError> {
        // etcd 3.4 sends alarm answers without a header; kv-client does
        // not hand one out either.
        let r = AlarmResponse {
            header: None,
            alarms: alarms
                .iter()
                .map(|a| AlarmMember {
                    member_id: a.member_id,
                    alarm: a.alarm as i32,
                })
                .collect(),
        };
        emit(w, &r)
    }

    fn member_list(&self, w: &mut dyn Write, r: &MemberListResponse) -> Result<(), ExitError> {
        emit(w, &r.0)
    }

    fn member_add(
        &self,
        w: &mut dyn Write,
        r: &MemberAddResponse,
        _name: &str,
    ) -> Result<(), ExitError> {
        emit(w, &r.0)
    }

    fn member_change(
        &self,
        w: &mut dyn Write,
        _change: Change,
        _id: u64,
        r: &MemberChangeResponse,
    ) -> Result<(), ExitError> {
        // Remove, update and promote answers share one layout: header = 1,
        // members = 2.
        emit(
            w,
            &MemberRemoveResponse {
                header: r.header,
                members: r.members.clone(),
            },
        )
    }

    fn txn(&self, w: &mut dyn Write, r: &TxnResponse) -> Result<(), ExitError> {
        emit(w, &r.0)
    }

    fn watch(&self, w: &mut dyn Write, b: &WatchBatch) -> Result<(), ExitError> {
        // etcdctl rebuilds the wire message from clientv3's WatchResponse:
        // no watch ID, and only batches with events reach it.
        emit(
            w,
            &WatchResponse {
                header: Some(*b.header()),
                events: b.events().to_vec(),
                ..WatchResponse::default()
            },
        )
    }

    fn auth(&self, w: &mut dyn Write, out: &AuthOutput) -> Result<(), ExitError> {
        match out {
            AuthOutput::Status(r) => emit(w, r),
            AuthOutput::UserAdd(_, r) => emit(w, r),
            AuthOutput::UserGet(_, r) => emit(w, r),
            AuthOutput::UserList(r) => emit(w, r),
            AuthOutput::UserDelete(_, r) => emit(w, r),
            AuthOutput::UserPasswd(r) => emit(w, r),
            AuthOutput::UserGrantRole(_, _, r) => emit(w, r),
            AuthOutput::UserRevokeRole(_, _, r) => emit(w, r),
            AuthOutput::RoleAdd(_, r) => emit(w, r),
            AuthOutput::RoleGet(_, r) => emit(w, r),
            AuthOutput::RoleList(r) => emit(w, r),
            AuthOutput::RoleDelete(_, r) => emit(w, r),
            AuthOutput::RoleGrant(_, r) => emit(w, r),
            AuthOutput::RoleRevoke(_, _, _, r) => emit(w, r),
            // Printed the same in every format by `auth::print`.
            AuthOutput::Enabled | AuthOutput::Disabled | AuthOutput::UserDetail { .. } => {
                super::auth::print(self, w, out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::header_text;
    use kv_client::ResponseHeader;

    #[test]
    fn header_text_like_gogo() {
        let h = ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 3,
            raft_term: 0,
        };
        assert_eq!(
            header_text(Some(&h)),
            "cluster_id:1 member_id:2 revision:3 "
        );
        assert_eq!(header_text(None), "<nil>");
    }
}
