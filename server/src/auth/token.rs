//! Simple tokens (etcd's simple_token.go): random strings that every member
//! maps to a user once the Authenticate that carries them is applied. Each
//! expires after the TTL unless used; every use renews it on the member
//! that serves it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;

/// etcd's --auth-token-ttl default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Length of the random part (etcd's defaultSimpleTokenLength).
const TOKEN_LEN: usize = 16;

struct Entry {
    user: String,
    deadline: Instant,
}

/// Tokens known to this member.
pub struct SimpleTokens {
    ttl: Duration,
    tokens: HashMap<String, Entry>,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> Self {
        SimpleTokens {
            ttl,
            tokens: HashMap::new(),
        }
    }

    pub fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
    }

    /// A fresh token for `index` (a per-member counter): 16 random letters,
    /// a dot and the index, etcd's shape.
    pub fn generate(index: u64) -> String {
        let mut rng = rand::rng();
        let letters: String = (0..TOKEN_LEN)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect();
        format!("{letters}.{index}")
    }

    /// Registers `token` for `user` (applied Authenticate). Expired tokens
    /// are dropped here, so the map holds only live ones.
    pub fn assign(&mut self, token: String, user: String) {
        let now = Instant::now();
        self.tokens.retain(|_, e| e.deadline > now);
        self.tokens.insert(
            token,
            Entry {
                user,
                deadline: now + self.ttl,
            },
        );
    }

    /// The user of a live token, renewing it.
    pub fn resolve(&mut self, token: &str) -> Option<String> {
        let now = Instant::now();
        let ttl = self.ttl;
        let e = self.tokens.get_mut(token)?;
        if e.deadline <= now {
            self.tokens.remove(token);
            return None;
        }
        e.deadline = now + ttl;
        Some(e.user.clone())
    }

    /// Forgets every token of `user` (deleted, or its password changed).
    pub fn invalidate_user(&mut self, user: &str) {
        self.tokens.retain(|_, e| e.user != user);
    }

    /// Forgets every token (auth disabled).
    pub fn clear(&mut self) {
        self.tokens.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_unless_used_and_are_revoked_per_user() {
        let mut t = SimpleTokens::new(Duration::from_millis(0));
        t.assign("a.1".into(), "u".into());
        assert_eq!(t.resolve("a.1"), None);
        t.set_ttl(Duration::from_secs(60));
        t.assign("b.2".into(), "u".into());
        t.assign("c.3".into(), "v".into());
        assert_eq!(t.resolve("b.2").as_deref(), Some("u"));
        t.invalidate_user("u");
        assert_eq!(t.resolve("b.2"), None);
        assert_eq!(t.resolve("c.3").as_deref(), Some("v"));
        let g = SimpleTokens::generate(7);
        assert!(g.ends_with(".7") && g.len() == TOKEN_LEN + 2);
    }
}
