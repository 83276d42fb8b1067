//! The Maintenance service (thin): member status, alarms, defragmentation,
//! hashes, snapshots and leadership transfer.

use kv_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, HashKvRequest,
    HashKvResponse as PbHashKv, MoveLeaderRequest, SnapshotRequest, SnapshotResponse,
    StatusRequest, StatusResponse as PbStatus, alarm_request::AlarmAction,
};

use crate::kv::header_accessor;
use crate::retry::{Repeatable, request};
use crate::{Client, Error, Result};

pub use kv_proto::etcdserverpb::AlarmType as Alarm;

/// Answer to [`Client::status`]: the status of the member that served it.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// let st = client.status().await?;
/// println!("version {} leader {:x} db {} bytes", st.version(), st.leader(), st.db_size());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct StatusResponse(pub PbStatus);
header_accessor!(StatusResponse);

impl StatusResponse {
    /// The server's version string (etcd's, or the one kvd reports).
    pub fn version(&self) -> &str {
        &self.0.version
    }
    /// The leader's member ID (0 when there is none).
    pub fn leader(&self) -> u64 {
        self.0.leader
    }
    /// The backend size in bytes.
    pub fn db_size(&self) -> i64 {
        self.0.db_size
    }
    /// The raft index.
    pub fn raft_index(&self) -> u64 {
        self.0.raft_index
    }
    /// The raft term.
    pub fn raft_term(&self) -> u64 {
        self.0.raft_term
    }
    /// Errors the member reports (e.g. active alarms).
    pub fn errors(&self) -> &[String] {
        &self.0.errors
    }
}

/// One active alarm.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// for a in client.alarm_list().await? {
///     println!("member {:x}: {:?}", a.member_id, a.alarm);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveAlarm {
    /// The member that raised it.
    pub member_id: u64,
    /// What it is.
    pub alarm: Alarm,
}

impl From<AlarmMember> for ActiveAlarm {
    fn from(a: AlarmMember) -> Self {
        ActiveAlarm {
            member_id: a.member_id,
            alarm: AlarmType::try_from(a.alarm).unwrap_or(AlarmType::None),
        }
    }
}

impl Client {
    /// The status of one member (whichever the balancer picked).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// assert_ne!(client.status().await?.leader(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn status(&self) -> Result<StatusResponse> {
        let resp = self
            .unary(Repeatable::Yes, |left| {
                let mut c = self.maintenance_client();
                async move { c.status(request(StatusRequest {}, left)).await }
            })
            .await?;
        Ok(StatusResponse(resp))
    }

    /// The active alarms of the cluster.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// assert!(client.alarm_list().await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn alarm_list(&self) -> Result<Vec<ActiveAlarm>> {
        let req = AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        };
        let resp: AlarmResponse = self
            .unary(Repeatable::Yes, |left| {
                let mut c = self.maintenance_client();
                async move { c.alarm(request(req, left)).await }
            })
            .await?;
        Ok(resp.alarms.into_iter().map(ActiveAlarm::from).collect())
    }
}

/// Answer to [`Client::hash_kv`]: the hash of the member's MVCC keyspace
/// up to a revision, used to compare members' consistency.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// let h = client.hash_kv(0).await?;
/// println!("hash {} (compacted at {})", h.hash(), h.compact_revision());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct HashKvResponse(pub PbHashKv);
header_accessor!(HashKvResponse);

impl HashKvResponse {
    /// The hash.
    pub fn hash(&self) -> u32 {
        self.0.hash
    }
    /// The member's compaction revision when hashed.
    pub fn compact_revision(&self) -> i64 {
        self.0.compact_revision
    }
}

/// The chunks of a member's backend snapshot, from [`Client::snapshot`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// let mut snap = client.snapshot().await?;
/// let mut size = 0;
/// while let Some(chunk) = snap.next_chunk().await? {
///     size += chunk.len();
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SnapshotStream {
    inner: tonic::Streaming<SnapshotResponse>,
}

impl SnapshotStream {
    /// The next chunk, or `None` once the snapshot is complete.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        match self.inner.message().await {
            Ok(Some(r)) => Ok(Some(r.blob)),
            Ok(None) => Ok(None),
            Err(status) => Err(Error::from_status(&status)),
        }
    }
}

impl Client {
    /// Defragments the backend of the member that serves the call (use a
    /// client with one endpoint to pick the member). Not repeatable, as etcd's
    /// client classifies it: a defragmentation is a heavy mutation.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.defragment().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn defragment(&self) -> Result<()> {
        self.unary(Repeatable::No, |left| {
            let mut c = self.maintenance_client();
            async move { c.defragment(request(DefragmentRequest {}, left)).await }
        })
        .await?;
        Ok(())
    }

    /// Disarms alarms: `alarm` of member `member_id` (0 = every member; with
    /// [`Alarm::None`], every alarm). Returns the alarms that were disarmed.
    /// A mutation: not retried once it may have been sent.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// use kv_client::maintenance::Alarm;
    /// for a in client.alarm_disarm(0, Alarm::Nospace).await? {
    ///     println!("disarmed {:?} on {:x}", a.alarm, a.member_id);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn alarm_disarm(&self, member_id: u64, alarm: Alarm) -> Result<Vec<ActiveAlarm>> {
        let req = AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id,
            alarm: alarm as i32,
        };
        let resp: AlarmResponse = self
            .unary(Repeatable::No, |left| {
                let mut c = self.maintenance_client();
                async move { c.alarm(request(req, left)).await }
            })
            .await?;
        Ok(resp.alarms.into_iter().map(ActiveAlarm::from).collect())
    }

    /// The hash of the keyspace of the member that serves the call, up to
    /// `revision` (0 = the current one). Read-only: retried on `Unavailable`.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// let hash = client.hash_kv(0).await?.hash();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        let req = HashKvRequest { revision };
        let resp = self
            .unary(Repeatable::Yes, |left| {
                let mut c = self.maintenance_client();
                async move { c.hash_kv(request(req, left)).await }
            })
            .await?;
        Ok(HashKvResponse(resp))
    }

    /// Streams a snapshot of the backend of the member that serves the call.
    /// Opening the stream is read-only and retried like a read; the transfer
    /// itself has no deadline (snapshots can be large).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// let mut file = Vec::new();
    /// let mut snap = client.snapshot().await?;
    /// while let Some(chunk) = snap.next_chunk().await? {
    ///     file.extend_from_slice(&chunk);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn snapshot(&self) -> Result<SnapshotStream> {
        let inner = self
            .unary(Repeatable::Yes, |_left| {
                let mut c = self.maintenance_client();
                async move { c.snapshot(tonic::Request::new(SnapshotRequest {})).await }
            })
            .await?;
        Ok(SnapshotStream { inner })
    }

    /// Asks the leader to hand leadership to member `target`. Not retried
    /// once it may have been sent.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.move_leader(0x8e9e05c52164694d).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn move_leader(&self, target: u64) -> Result<()> {
        let req = MoveLeaderRequest { target_id: target };
        self.unary(Repeatable::No, |left| {
            let mut c = self.maintenance_client();
            async move { c.move_leader(request(req, left)).await }
        })
        .await?;
        Ok(())
    }
}
