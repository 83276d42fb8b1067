//! Member and cluster IDs, derived deterministically from the bootstrap flags
//! (same flags, same IDs), in the spirit of etcd's derivation.

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
}
