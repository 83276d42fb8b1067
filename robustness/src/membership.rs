//! Membership change under load: a follower is removed (MemberRemove), then
//! added back as a new member with an empty data dir (MemberAdd, started
//! with `--initial-cluster-state existing`), as a learner half of the time,
//! which is promoted once it has caught up. Clients keep writing through
//! every member, the removed one included (its requests fail meanwhile).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

use crate::faults::{Fault, FaultError, Injector, Outcome, Replaced};
use crate::launcher::Cluster;

/// How long a new learner may take to catch up and be promoted.
pub const PROMOTE_DEADLINE: Duration = Duration::from_secs(90);

impl Injector {
    /// Removes follower `f` and adds it back as a new member.
    pub(crate) async fn replace_member(
        &mut self,
        c: &mut Cluster,
        l: usize,
        f: usize,
        rng: &mut StdRng,
    ) -> Result<Outcome, FaultError> {
        let fault = Fault::MemberReplace;
        let fail = |source| FaultError::NotRecovered { fault, source };
        let Some((old_id, _, _)) = c.status(f).await else {
            return Ok(Outcome::Skipped(format!("member {f} gave no status")));
        };
        let from_rev = leader_rev(c, l).await;
        // etcd refuses to remove a member while the others have not been
        // connected for a few seconds ("unhealthy cluster"): retry a while.
        if let Err(e) = remove_with_retry(c, l, old_id).await {
            return Ok(Outcome::Skipped(format!(
                "MemberRemove {old_id:x} refused: {e}"
            )));
        }
        // From here on a failure is the cluster's: it must accept the member
        // back, or the round ends with a violation.
        self.generation += 1;
        let base = c.members[f]
            .name
            .split('-')
            .next()
            .unwrap_or("n")
            .to_string();
        c.rename_for_join(f, format!("{base}-r{}", self.generation));
        tokio::time::sleep(self.hold(rng)).await;
        let learner = rng.random_bool(0.5);
        let opts = learner.then(|| etcd_client::MemberAddOptions::new().with_is_learner());
        let url = c.peer_url(f);
        let added = add_with_retry(c, l, &url, opts).await.map_err(|e| {
            FaultError::Membership(format!("MemberAdd {url} after removing {old_id:x}: {e}"))
        })?;
        c.spawn(f).map_err(fail)?;
        if learner {
            promote(c, l, added).await?;
        }
        self.replaced.push(Replaced {
            slot: f,
            from_rev,
            to_rev: leader_rev(c, l).await,
        });
        Ok(Outcome::Survived(format!(
            "member {f} ({old_id:x}) removed, re-added as {} ({added:x}){}",
            c.members[f].name,
            if learner {
                " as a learner, promoted"
            } else {
                ""
            }
        )))
    }
}

/// The revision of the current leader (or of member `l`), 0 if none answers.
async fn leader_rev(c: &Cluster, l: usize) -> i64 {
    let at = c.leader().await.unwrap_or(l);
    c.status(at).await.map(|s| s.2).unwrap_or(0)
}

/// MemberRemove through member `l` (or the current leader), retried for a
/// while.
async fn remove_with_retry(c: &Cluster, l: usize, id: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < deadline {
        let at = c.leader().await.unwrap_or(l);
        match c.client(at).await {
            Ok(mut admin) => match admin.member_remove(id).await {
                Ok(_) => return Ok(()),
                // An earlier attempt that timed out took effect.
                Err(e) if !last.is_empty() && e.to_string().contains("member not found") => {
                    return Ok(())
                }
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last)
}

/// MemberAdd through member `l` (or, if it lost leadership, any other).
async fn add_with_retry(
    c: &Cluster,
    l: usize,
    url: &str,
    opts: Option<etcd_client::MemberAddOptions>,
) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        let at = c.leader().await.unwrap_or(l);
        match c.client(at).await {
            Ok(mut admin) => match admin.member_add([url], opts.clone()).await {
                Ok(r) => match r.member() {
                    Some(m) => return Ok(m.id()),
                    None => last = "MemberAdd answered without the member".into(),
                },
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(last)
}

/// Promotes learner `id` once the leader accepts (it refuses until the
/// learner has caught up).
async fn promote(c: &Cluster, l: usize, id: u64) -> Result<(), FaultError> {
    let deadline = Instant::now() + PROMOTE_DEADLINE;
    let mut last = String::new();
    while Instant::now() < deadline {
        let at = c.leader().await.unwrap_or(l);
        match c.client(at).await {
            Ok(mut admin) => match admin.member_promote(id).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(FaultError::Membership(format!(
        "learner {id:x} not promoted within {PROMOTE_DEADLINE:?}: {last}"
    )))
}
