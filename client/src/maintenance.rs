//! The Maintenance service (thin): member status and alarms.

use kv_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, StatusRequest, StatusResponse as PbStatus,
    alarm_request::AlarmAction,
};

use crate::kv::header_accessor;
use crate::retry::{Repeatable, request};
use crate::{Client, Result};

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
