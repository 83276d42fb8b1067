//! The Cluster service (thin): membership listing and changes.

use kv_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse as PbMemberAdd, MemberListRequest,
    MemberListResponse as PbMemberList, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest,
};

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

/// Answer to [`Client::member_add`]: the new member and the resulting
/// member list.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
/// let resp = client.member_add(["http://10.0.0.4:2380"], true).await?;
/// let new = resp.member().map(|m| m.id);
/// println!("added {new:x?}; now {} members", resp.members().len());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MemberAddResponse(pub PbMemberAdd);
header_accessor!(MemberAddResponse);

impl MemberAddResponse {
    /// The member that was added.
    pub fn member(&self) -> Option<&Member> {
        self.0.member.as_ref()
    }
    /// Every member after the change.
    pub fn members(&self) -> &[Member] {
        &self.0.members
    }
}

/// Answer to [`Client::member_remove`], [`Client::member_update`] and
/// [`Client::member_promote`]: the member list after the change.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client, id: u64) -> kv_client::Result<()> {
/// let left = client.member_remove(id).await?.members().len();
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MemberChangeResponse {
    /// The header of the answer.
    pub header: Option<crate::ResponseHeader>,
    /// Every member after the change.
    pub members: Vec<Member>,
}

impl MemberChangeResponse {
    /// The header of the answer.
    pub fn header(&self) -> Option<&crate::ResponseHeader> {
        self.header.as_ref()
    }
    /// Every member after the change.
    pub fn members(&self) -> &[Member] {
        &self.members
    }
}

impl Client {
    /// Adds a member (as a non-voting learner with `is_learner`) that will
    /// join at `peer_urls`. A membership change: not retried once it may
    /// have been sent.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// let id = client.member_add(["http://10.0.0.4:2380"], false).await?.member().map(|m| m.id);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn member_add<I, S>(
        &self,
        peer_urls: I,
        is_learner: bool,
    ) -> Result<MemberAddResponse>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let req = MemberAddRequest {
            peer_ur_ls: peer_urls.into_iter().map(Into::into).collect(),
            is_learner,
        };
        let resp = self
            .unary(Repeatable::No, |left| {
                let mut c = self.cluster_client();
                let req = req.clone();
                async move { c.member_add(request(req, left)).await }
            })
            .await?;
        Ok(MemberAddResponse(resp))
    }

    /// Removes member `id`. Not retried once it may have been sent.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_client::Result<()> {
    /// client.member_remove(0x8e9e05c52164694d).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn member_remove(&self, id: u64) -> Result<MemberChangeResponse> {
        let req = MemberRemoveRequest { id };
        let resp = self
            .unary(Repeatable::No, |left| {
                let mut c = self.cluster_client();
                async move { c.member_remove(request(req, left)).await }
            })
            .await?;
        Ok(MemberChangeResponse {
            header: resp.header,
            members: resp.members,
        })
    }

    /// Replaces member `id`'s peer URLs. Not retried once it may have been
    /// sent.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client, id: u64) -> kv_client::Result<()> {
    /// client.member_update(id, ["http://10.0.0.5:2380"]).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn member_update<I, S>(&self, id: u64, peer_urls: I) -> Result<MemberChangeResponse>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let req = MemberUpdateRequest {
            id,
            peer_ur_ls: peer_urls.into_iter().map(Into::into).collect(),
        };
        let resp = self
            .unary(Repeatable::No, |left| {
                let mut c = self.cluster_client();
                let req = req.clone();
                async move { c.member_update(request(req, left)).await }
            })
            .await?;
        Ok(MemberChangeResponse {
            header: resp.header,
            members: resp.members,
        })
    }

    /// Promotes learner `id` to a voting member (the server refuses until
    /// the learner has caught up). Not retried once it may have been sent.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client, id: u64) -> kv_client::Result<()> {
    /// client.member_promote(id).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn member_promote(&self, id: u64) -> Result<MemberChangeResponse> {
        let req = MemberPromoteRequest { id };
        let resp = self
            .unary(Repeatable::No, |left| {
                let mut c = self.cluster_client();
                async move { c.member_promote(request(req, left)).await }
            })
            .await?;
        Ok(MemberChangeResponse {
            header: resp.header,
            members: resp.members,
        })
    }
}
