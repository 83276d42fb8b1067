//! Whether a user's roles grant an access to a key range: etcd's
//! range_perm_cache. A range is permitted when the union of the granted
//! intervals covers it entirely, as etcd's interval tree `Contains` does.

use std::cmp::Ordering;

use kv_proto::authpb::{permission::Type, Permission};

/// What an operation needs on a key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    fn granted_by(self, p: &Permission) -> bool {
        match Type::try_from(p.perm_type) {
            Ok(Type::Readwrite) => true,
            Ok(Type::Read) => self == Access::Read,
            Ok(Type::Write) => self == Access::Write,
            Err(_) => false,
        }
    }
}

/// The end of a half-open key interval; `None` is "to the end of the keyspace".
type End = Option<Vec<u8>>;

/// `a < b` for interval ends, with `None` as +infinity.
fn end_cmp(a: &End, b: &End) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => a.cmp(b),
    }
}

/// `[key, range_end)` as etcd reads it: an empty end is the single key
/// (`[key, key\0)`), `"\0"` is everything from `key` on.
pub fn interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    match range_end {
        [] => {
            let mut end = key.to_vec();
            end.push(0);
            (key.to_vec(), Some(end))
        }
        [0] => (key.to_vec(), None),
        end => (key.to_vec(), Some(end.to_vec())),
    }
}

/// Whether `perms` (every permission of every role of a user) grant
/// `access` on `[key, range_end)`.
pub fn permitted<'a>(
    perms: impl Iterator<Item = &'a Permission>,
    access: Access,
    key: &[u8],
    range_end: &[u8],
) -> bool {
    let (start, end) = interval(key, range_end);
    // An empty or inverted range selects nothing; still ask for its first
    // key, so a request naming keys outside the grants never passes.
    let end = match &end {
        Some(e) if e.as_slice() <= start.as_slice() => interval(key, &[]).1,
        _ => end,
    };
    let mut granted: Vec<(Vec<u8>, End)> = perms
        .filter(|p| access.granted_by(p))
        .map(|p| interval(&p.key, &p.range_end))
        .collect();
    granted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut covered: End = Some(start);
    for (s, e) in granted {
        let Some(cur) = &covered else { break };
        if s.as_slice() > cur.as_slice() {
            // Sorted by start: no later interval can close this gap.
            break;
        }
        if end_cmp(&e, &covered) == Ordering::Greater {
            covered = e;
        }
        if end_cmp(&covered, &end) != Ordering::Less {
            return true;
        }
    }
    end_cmp(&covered, &end) != Ordering::Less
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: Type, key: &str, end: &[u8]) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.as_bytes().to_vec(),
            range_end: end.to_vec(),
        }
    }

    #[test]
    fn keys_ranges_prefixes_and_open_ends() {
        let ps = [
            perm(Type::Read, "a", b""),
            perm(Type::Readwrite, "p/", b"p0"),
            perm(Type::Write, "w", b"\0"),
        ];
        let ok = |a, k: &str, e: &[u8]| permitted(ps.iter(), a, k.as_bytes(), e);
        assert!(ok(Access::Read, "a", b""));
        assert!(!ok(Access::Write, "a", b""));
        assert!(!ok(Access::Read, "ab", b""));
        assert!(!ok(Access::Read, "a", b"b"));
        assert!(ok(Access::Read, "p/x", b""));
        assert!(ok(Access::Write, "p/", b"p0"));
        assert!(ok(Access::Read, "p/a", b"p/z"));
        assert!(!ok(Access::Read, "p", b"p0"));
        assert!(!ok(Access::Read, "p/", b"\0"));
        assert!(ok(Access::Write, "x", b"\0"));
        assert!(ok(Access::Write, "wa", b"zz"));
        assert!(!ok(Access::Read, "x", b""));
        assert!(!ok(Access::Write, "v", b"\0"));
    }

    #[test]
    fn adjacent_grants_cover_together() {
        let ps = [
            perm(Type::Read, "a", b"c"),
            perm(Type::Read, "c", b"e"),
            perm(Type::Read, "b", b"d"),
        ];
        assert!(permitted(ps.iter(), Access::Read, b"a", b"e"));
        assert!(!permitted(ps.iter(), Access::Read, b"a", b"f"));
    }
}
