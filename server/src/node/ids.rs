//! Member and cluster IDs. The initial members' IDs are derived from the
//! bootstrap flags (same flags, same IDs), as etcd derives them; a member
//! added later gets a fresh ID that mixes in the time (etcd's NewMember with
//! `now`), so a member removed and re-added at the same peer URLs never gets
//! its old ID back, and learns the new one from the cluster when it joins.

use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0u8]);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // Never zero: etcd treats 0 as "no member".
    u64::from_be_bytes(b).max(1)
}

/// A member's ID from its sorted peer URLs and the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    hash64(&[urls.join(",").as_bytes(), token.as_bytes()])
}

/// A fresh ID for a member added to a running cluster: its peer URLs, the
/// token and `now_nanos`, never 0 and never one `taken` (a current or a
/// removed member's ID; etcd refuses a removed ID forever).
pub fn fresh_member_id(
    peer_urls: &[String],
    token: &str,
    now_nanos: u128,
    taken: impl Fn(u64) -> bool,
) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.join(",");
    // A collision needs another 64-bit hash to match: the loop ends at once
    // in practice; the counter makes each try differ.
    let mut attempt: u64 = 0;
    loop {
        let id = hash64(&[
            joined.as_bytes(),
            token.as_bytes(),
            &now_nanos.to_be_bytes(),
            &attempt.to_be_bytes(),
        ]);
        if !taken(id) {
            return id;
        }
        attempt = attempt.wrapping_add(1);
    }
}

/// The cluster ID from the sorted member IDs and the token.
pub fn cluster_id(members: &[MemberInfo], token: &str) -> u64 {
    let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    let joined: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    hash64(&[&joined, token.as_bytes()])
}

/// The initial members described by the flags.
pub fn members(cfg: &Config) -> Result<Vec<MemberInfo>, ConfigError> {
    let token = &cfg.initial_cluster_token;
    Ok(cfg
        .initial_members()?
        .into_iter()
        .map(|(name, peer_urls)| MemberInfo {
            id: member_id(&peer_urls, token),
            client_urls: if name == cfg.name {
                cfg.client_urls()
            } else {
                Vec::new()
            },
            name,
            peer_urls,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_token_sensitive() {
        let urls = vec!["http://127.0.0.1:2380".to_string()];
        assert_eq!(member_id(&urls, "t"), member_id(&urls, "t"));
        assert_ne!(member_id(&urls, "t"), member_id(&urls, "u"));
    }

    #[test]
    fn fresh_ids_differ_from_the_derived_one_and_skip_taken_ones() {
        let urls = vec!["http://127.0.0.1:2380".to_string()];
        let derived = member_id(&urls, "t");
        let a = fresh_member_id(&urls, "t", 1, |_| false);
        let b = fresh_member_id(&urls, "t", 2, |_| false);
        assert_ne!(a, derived);
        assert_ne!(a, b);
        assert_ne!(a, 0);
        // The first candidate taken: the next one is given instead.
        let c = fresh_member_id(&urls, "t", 1, |id| id == a);
        assert_ne!(c, a);
    }

    #[test]
    fn same_peer_urls_in_any_order_match() {
        let a = vec!["http://b:1".to_string(), "http://a:1".to_string()];
        let b = vec!["http://a:1".to_string(), "http://b:1".to_string()];
        assert!(same_urls(&a, &b));
        assert!(!same_urls(&a, &b[..1]));
    }
}

/// Whether two peer URL lists name the same URLs (order aside).
pub fn same_urls(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

/// What a member joining an existing cluster learns from a running member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub cluster_id: u64,
    /// This member's ID in the cluster's configuration (given by MemberAdd).
    pub member_id: u64,
}

/// Asks the other initial members for the cluster ID and this member's ID
/// (joining with --initial-cluster-state existing), retrying until one
/// answers. `me` is this member as the flags describe it (its ID derived
/// from its URLs: the proof of the shared token the peer checks).
pub async fn fetch_cluster_id(members: &[MemberInfo], me: &MemberInfo) -> Result<Joined, String> {
    use kv_proto::kvpb::peer_client::PeerClient;
    use kv_proto::kvpb::ClusterIdRequest;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        for m in members.iter().filter(|m| m.name != me.name) {
            let Some(url) = m.peer_urls.first() else {
                continue;
            };
            // https peer URLs get the peer TLS settings (crate::tls).
            let ep = match crate::tls::peer_endpoint(url) {
                Ok(ep) => ep,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot dial a member for the cluster ID");
                    continue;
                }
            };
            let ep = ep.connect_timeout(std::time::Duration::from_secs(1));
            if let Ok(ch) = ep.connect().await {
                // Our ID and peer URLs: the peer answers only a member it
                // has been told about (MemberAdd) under the same token.
                let req = ClusterIdRequest {
                    member_id: me.id,
                    peer_urls: me.peer_urls.clone(),
                };
                // Bounded, so a member that accepts the connection but never
                // answers (or drops it mid-handshake) cannot stall the join.
                let mut client = PeerClient::new(ch);
                let call = client.cluster_id(req);
                if let Ok(Ok(r)) =
                    tokio::time::timeout(std::time::Duration::from_secs(3), call).await
                {
                    let r = r.into_inner();
                    // A member that predates member IDs in the answer says
                    // 0: the derived ID is the one it knows us by.
                    let member_id = if r.member_id == 0 { me.id } else { r.member_id };
                    return Ok(Joined {
                        cluster_id: r.cluster_id,
                        member_id,
                    });
                }
            }
        }
        if std::time::Instant::now() > deadline {
            return Err("no member of --initial-cluster answered".to_string());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Who this member is, fixed at its first start and kept in the data dir:
/// a restarted member ignores the --initial-* flags, as etcd's does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
    pub token: String,
}

const IDENTITY_FILE: &str = "identity.json";

pub fn load_identity(member_dir: &std::path::Path) -> std::io::Result<Option<Identity>> {
    let path = member_dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn save_identity(member_dir: &std::path::Path, id: &Identity) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = member_dir.join(format!("{IDENTITY_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(id).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, member_dir.join(IDENTITY_FILE))?;
    std::fs::File::open(member_dir)?.sync_all()
}
