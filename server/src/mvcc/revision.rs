//! The (main, sub) revision pair and its on-disk key form.

/// A point in the store's history: `main` is the store revision of a
/// mutation, `sub` orders the changes inside it (a txn touching several keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The redb key: big-endian order of (main, sub) is numeric order of the u128.
    pub fn to_key(self) -> u128 {
        ((self.main as u64 as u128) << 64) | (self.sub as u64 as u128)
    }

    pub fn from_key(k: u128) -> Self {
        Revision {
            main: (k >> 64) as u64 as i64,
            sub: k as u64 as i64,
        }
    }

    /// The smallest key of a main revision, for range scans.
    pub fn first_key(main: i64) -> u128 {
        Revision::new(main, 0).to_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_matches_revision_order() {
        let a = Revision::new(5, 9);
        let b = Revision::new(6, 0);
        assert!(a.to_key() < b.to_key());
        assert_eq!(Revision::from_key(a.to_key()), a);
    }
}
