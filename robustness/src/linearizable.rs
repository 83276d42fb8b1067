//! A linearizability checker for a history of register operations on
//! independent keys (Wing & Gong's search with memoization, per key).
//!
//! Each operation has the time it was invoked and the time its answer came
//! back. An operation whose answer never came (an error: it may or may not
//! have taken effect) has no return time and may be placed anywhere after its
//! invocation, or nowhere.
//!
//! kvd's integration tests (server/tests/linearizability.rs) and the fault
//! campaign (this crate) share this one copy.

use std::collections::{BTreeMap, HashSet};

/// Upper bound on search states per key: a history whose search would need
/// more is reported as undecided rather than exhausting memory.
pub const MAX_STATES_PER_KEY: usize = 1_000_000;

/// Why a history was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// No legal sequential order exists: a linearizability violation.
    #[error("key {key}: no linearization of {ops} ops (first: {first})")]
    NotLinearizable {
        key: String,
        ops: usize,
        first: String,
    },
    /// The search hit [`MAX_STATES_PER_KEY`] before deciding.
    #[error("key {key}: undecided after {states} search states ({ops} ops)")]
    Undecided {
        key: String,
        ops: usize,
        states: usize,
    },
}

/// What an operation did to one key (a register).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Put of a value.
    Write(String),
    /// Linearizable get that saw this value (None: absent).
    Read(Option<String>),
    /// Compare-and-set: if value == old then value = new. `ok` is the
    /// answer: Some(true) it swapped, Some(false) it saw another value.
    Cas {
        old: String,
        new: String,
        ok: Option<bool>,
    },
    /// Delete of the key (whether or not it existed).
    Delete,
}

/// One operation of a history on one key.
#[derive(Debug, Clone)]
pub struct Op {
    /// The key (each key is an independent register).
    pub key: String,
    /// What the operation did and, when answered, what it saw.
    pub kind: Kind,
    /// When the client invoked it (any monotonic unit, e.g. ns since start).
    pub call: u128,
    /// None: the outcome is unknown.
    pub ret: Option<u128>,
}

/// The register's value: absent, a value, or some value no one read (the
/// effect of an unanswered write nobody observed; all such writes are alike).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Value {
    Absent,
    Is(String),
    Unobserved,
}

/// The register's next value if `kind` can happen now, with `v` the current value.
fn step(v: &Value, kind: &Kind) -> Option<Value> {
    let is = |x: &str| *v == Value::Is(x.to_string());
    match kind {
        Kind::Write(x) => Some(Value::Is(x.clone())),
        Kind::Read(None) => (*v == Value::Absent).then(|| v.clone()),
        Kind::Read(Some(x)) => is(x).then(|| v.clone()),
        Kind::Cas { old, new, ok } => match ok {
            Some(false) => (!is(old)).then(|| v.clone()),
            // Answered true, or unknown (if it happened at all, it swapped).
            _ => is(old).then(|| Value::Is(new.clone())),
        },
        Kind::Delete => Some(Value::Absent),
    }
}

/// The value an operation would leave behind, if it writes one.
fn written(kind: &Kind) -> Option<&str> {
    match kind {
        Kind::Write(v) => Some(v),
        Kind::Cas { new, .. } => Some(new),
        Kind::Read(_) | Kind::Delete => None,
    }
}

/// Checks one key's history; returns Err when no legal order exists or the
/// search exceeds its bound.
///
/// Unanswered writes whose value nobody observed are interchangeable: each
/// can only turn the value into "unobserved", at any time after its call, or
/// never. They are kept as a pool (sorted call times) and the search tracks
/// how many were used instead of which, which keeps it small. (An unanswered
/// CAS in the pool is treated as a write: slightly permissive.)
fn check_key(key: &str, all: &[Op]) -> Result<(), CheckError> {
    let observed: HashSet<&str> = all
        .iter()
        .filter_map(|o| match &o.kind {
            Kind::Read(Some(v)) => Some(v.as_str()),
            Kind::Cas { old, .. } => Some(old.as_str()),
            _ => None,
        })
        .collect();
    let pooled =
        |o: &Op| o.ret.is_none() && written(&o.kind).is_some_and(|v| !observed.contains(v));
    let mut pool: Vec<u128> = all.iter().filter(|o| pooled(o)).map(|o| o.call).collect();
    pool.sort_unstable();
    let ops: Vec<&Op> = all.iter().filter(|o| !pooled(o)).collect();
    let n = ops.len();
    let required: Vec<usize> = (0..n).filter(|i| ops[*i].ret.is_some()).collect();
    let words = n.div_ceil(64).max(1);
    let is_done = |set: &[u64], i: usize| set[i / 64] >> (i % 64) & 1 == 1;
    let mut seen: HashSet<(Vec<u64>, usize, Value)> = HashSet::new();
    let mut stack: Vec<(Vec<u64>, usize, Value)> = vec![(vec![0; words], 0, Value::Absent)];
    while let Some((done, used, value)) = stack.pop() {
        if required.iter().all(|i| is_done(&done, *i)) {
            return Ok(());
        }
        if !seen.insert((done.clone(), used, value.clone())) {
            continue;
        }
        if seen.len() > MAX_STATES_PER_KEY {
            return Err(CheckError::Undecided {
                key: key.to_string(),
                ops: n,
                states: seen.len(),
            });
        }
        // An op may go next only if it was invoked before every pending
        // required op returned.
        let horizon = required
            .iter()
            .filter(|i| !is_done(&done, **i))
            .filter_map(|i| ops[*i].ret)
            .min()
            .unwrap_or(u128::MAX);
        if value != Value::Unobserved && pool.partition_point(|c| *c <= horizon) > used {
            stack.push((done.clone(), used + 1, Value::Unobserved));
        }
        for (i, op) in ops.iter().enumerate() {
            if is_done(&done, i) || op.call > horizon {
                continue;
            }
            if let Some(next) = step(&value, &op.kind) {
                let mut d = done.clone();
                d[i / 64] |= 1 << (i % 64);
                stack.push((d, used, next));
            }
        }
    }
    let first = required
        .first()
        .map(|i| format!("{:?}", ops[*i]))
        .unwrap_or_default();
    Err(CheckError::NotLinearizable {
        key: key.to_string(),
        ops: n,
        first,
    })
}

/// Checks every key of `history`; stops at the first key that fails.
pub fn check(history: &[Op]) -> Result<(), CheckError> {
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op.clone());
    }
    for (key, ops) in by_key {
        check_key(key, &ops)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: Kind, call: u128, ret: Option<u128>) -> Op {
        Op {
            key: "k".into(),
            kind,
            call,
            ret,
        }
    }

    #[test]
    fn deletes_make_the_key_absent() {
        let w = Kind::Write("a".into());
        let absent = Kind::Read(None);
        let a = Kind::Read(Some("a".into()));
        assert!(check(&[
            op(w.clone(), 0, Some(1)),
            op(Kind::Delete, 2, Some(3)),
            op(absent.clone(), 4, Some(5))
        ])
        .is_ok());
        // A read of the deleted value after the delete returned.
        let stale = [
            op(w.clone(), 0, Some(1)),
            op(Kind::Delete, 2, Some(3)),
            op(a.clone(), 4, Some(5)),
        ];
        assert!(matches!(
            check(&stale),
            Err(CheckError::NotLinearizable { .. })
        ));
        // An unanswered delete may or may not have happened.
        assert!(check(&[
            op(w.clone(), 0, Some(1)),
            op(Kind::Delete, 2, None),
            op(a, 4, Some(5))
        ])
        .is_ok());
        assert!(check(&[
            op(w, 0, Some(1)),
            op(Kind::Delete, 2, None),
            op(absent, 4, Some(5))
        ])
        .is_ok());
    }
}
