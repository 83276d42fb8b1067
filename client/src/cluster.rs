//! The Cluster service (thin): membership listing.

use kv_proto::etcdserverpb::{MemberListRequest, MemberListResponse as PbMemberList};

use crate::kv::header_accessor;
use crate::retry::{Repeatable, request};
use crate::{Client, Result};

pub use kv_proto::etcdserverpb::Member;

/// Answer to [`Client::member_list`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// for m in client.member_list().await?.members() {
///     println!("{:x} {} {:?}", m.id, m.name, m.client_ur_ls);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MemberListResponse(pub PbMemberList);
header_accessor!(MemberListResponse);

impl MemberListResponse {
    /// The members.
    pub fn members(&self) -> &[Member] {
        &self.0.members
    }
}

impl Client {
    /// Lists the cluster's members (linearizable).
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// let n = client.member_list().await?.members().len();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn member_list(&self) -> Result<MemberListResponse> {
        let req = MemberListRequest { linearizable: true };
        let resp = self
            .unary(Repeatable::Yes, |left| {
                let mut c = self.cluster_client();
                async move { c.member_list(request(req, left)).await }
            })
            .await?;
        Ok(MemberListResponse(resp))
    }
}
