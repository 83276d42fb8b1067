//! One file per command. A command validates its arguments, makes its RPCs
//! and returns an [`Output`]; it never prints (printers do, see
//! [`crate::printer`]).

pub mod alarm;
pub mod auth;
pub mod check;
pub mod compaction;
pub mod datascale;
pub mod defrag;
pub mod del;
pub mod elect;
pub mod endpoint;
pub mod get;
pub mod lease;
pub mod lock;
pub mod make_mirror;
pub mod member;
pub mod move_leader;
pub mod password;
pub mod put;
pub mod role;
pub mod service;
pub mod snapshot;
pub mod snapshot_status;
pub mod txn;
pub mod user;
pub mod version;
pub mod watch;

use kv_client::lease::{LeaseGrantResponse, LeaseRevokeResponse, LeaseTtlResponse};
use kv_client::{DeleteResponse, GetResponse, PutResponse};

/// Where a long-running command hands each output as it happens (the
/// caller prints it).
pub type Sink<'a> = &'a mut dyn FnMut(Output) -> Result<(), crate::exit::ExitError>;

/// What a command produced, handed to the printer.
#[derive(Debug)]
pub enum Output {
    /// Answer of `put`.
    Put(PutResponse),
    /// Answer of `get`.
    Get(GetResponse),
    /// Answer of `del`.
    Del(DeleteResponse),
    /// Answer of `lease grant`.
    LeaseGrant(LeaseGrantResponse),
    /// Answer of `lease revoke` for this lease ID.
    LeaseRevoke(i64, LeaseRevokeResponse),
    /// Answer of `lease timetolive`, and whether keys were asked for.
    LeaseTimeToLive(LeaseTtlResponse, bool),
    /// `compaction` succeeded at this revision.
    Compaction(i64),
    /// Answer of `alarm list`.
    AlarmList(Vec<kv_client::maintenance::ActiveAlarm>),
    /// Answer of `member list`.
    MemberList(kv_client::cluster::MemberListResponse),
    /// Answer of `endpoint health`, one entry per endpoint.
    EndpointHealth(Vec<endpoint::EpHealth>),
    /// Answer of `endpoint status`, one entry per endpoint.
    EndpointStatus(Vec<endpoint::EpStatus>),
    /// Answer of `lease list`: the header and the lease IDs.
    LeaseList(kv_client::LeaseListResponse),
    /// Answer of `txn`.
    Txn(kv_client::TxnResponse),
    /// A note on stderr (e.g. a rejected `watch -i` line), printed as is.
    Notice(String),
    /// A prompt of an interactive command (`txn -i`), printed as is.
    Prompt(&'static str),
    /// One batch of events of `watch`.
    Watch(kv_client::WatchBatch),
    /// One renewal of `lease keep-alive`.
    KeepAlive(lease::KeepAlive),
    /// `lease keep-alive` found the lease gone.
    LeaseExpired(i64),
    /// Answer of `member add`, with the new member's name.
    MemberAdd(kv_client::MemberAddResponse, String),
    /// Answer of `member remove|update|promote` for this member ID.
    MemberChange(member::Change, u64, kv_client::MemberChangeResponse),
    /// Answer of `alarm disarm`: the alarms disarmed.
    AlarmDisarm(Vec<kv_client::maintenance::ActiveAlarm>),
    /// Answer of `defrag`: per endpoint, the error if it failed.
    Defrag(Vec<(String, Option<String>)>),
    /// Answer of `endpoint hashkv`, one entry per endpoint.
    HashKv(Vec<endpoint::EpHash>),
    /// `move-leader` moved leadership from the first member ID to the second.
    MoveLeader(u64, u64),
    /// `snapshot save` wrote this file.
    SnapshotSaved(String),
    /// `snapshot status` of an etcd v3 snapshot file.
    SnapshotStatus(kv_etcdsnap::Status),
    /// Answer of an `auth`, `user` or `role` command.
    Auth(auth::AuthOutput),
    /// `make-mirror`'s periodic count of the keys mirrored so far.
    MirrorTotal(i64),
    /// Answer of `version`.
    Version {
        /// kvctl's version.
        version: String,
        /// The API version.
        api_version: String,
    },
}

/// The range-shaping arguments shared by `get` and `del`.
pub(crate) fn check_range_args(
    command: &str,
    args: &[String],
    prefix: bool,
    from_key: bool,
) -> Result<(), crate::exit::ExitError> {
    use crate::exit::ExitError;
    if args.is_empty() || args.len() > 2 {
        return Err(ExitError::bad_args(format!(
            "{command} command needs one argument as key and an optional argument as range_end"
        )));
    }
    if prefix && from_key {
        return Err(ExitError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    if (prefix || from_key) && args.len() > 1 {
        return Err(ExitError::bad_args(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ));
    }
    Ok(())
}
