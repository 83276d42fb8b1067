//! A linearizability checker for a history of register operations on
//! independent keys (Wing & Gong's search with memoization, per key).
//!
//! Each operation has the time it was invoked and the time its answer came
//! back. An operation whose answer never came (an error: it may or may not
//! have taken effect) has no return time and may be placed anywhere after its
//! invocation, or nowhere.

use std::collections::{BTreeMap, HashSet};

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
}

#[derive(Debug, Clone)]
pub struct Op {
    pub key: String,
    pub kind: Kind,
    pub call: u128,
    /// None: the outcome is unknown.
    pub ret: Option<u128>,
}

/// The register's next value if `kind` can happen now, with `v` the current value.
fn step(v: &Option<String>, kind: &Kind) -> Option<Option<String>> {
    match kind {
        Kind::Write(x) => Some(Some(x.clone())),
        Kind::Read(seen) => (seen == v).then(|| v.clone()),
        Kind::Cas { old, new, ok } => {
            let matches = v.as_deref() == Some(old.as_str());
            match ok {
                Some(true) => matches.then(|| Some(new.clone())),
                Some(false) => (!matches).then(|| v.clone()),
                // Unknown: if it happened it swapped (only possible on a match).
                None => matches.then(|| Some(new.clone())),
            }
        }
    }
}

/// Checks one key's history; returns Err with a description when no legal
/// order exists.
fn check_key(ops: &[Op]) -> Result<(), String> {
    let n = ops.len();
    let required: Vec<usize> = (0..n).filter(|i| ops[*i].ret.is_some()).collect();
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let words = n.div_ceil(64);
    // Iterative DFS over (done set, value).
    let mut stack: Vec<(Vec<u64>, Option<String>)> = vec![(vec![0; words], None)];
    let is_done = |set: &[u64], i: usize| set[i / 64] >> (i % 64) & 1 == 1;
    while let Some((done, value)) = stack.pop() {
        if required.iter().all(|i| is_done(&done, *i)) {
            return Ok(());
        }
        if !seen.insert((done.clone(), value.clone())) {
            continue;
        }
        // An op may go next only if it was invoked before every pending
        // required op returned.
        let horizon = required
            .iter()
            .filter(|i| !is_done(&done, **i))
            .filter_map(|i| ops[*i].ret)
            .min()
            .unwrap_or(u128::MAX);
        for (i, op) in ops.iter().enumerate() {
            if is_done(&done, i) || op.call > horizon {
                continue;
            }
            if let Some(next) = step(&value, &op.kind) {
                let mut d = done.clone();
                d[i / 64] |= 1 << (i % 64);
                stack.push((d, next));
            }
        }
    }
    let first = required
        .first()
        .map(|i| format!("{:?}", ops[*i]))
        .unwrap_or_default();
    Err(format!("no linearization of {n} ops (first: {first})"))
}

/// The value an operation would leave behind, if it writes one.
fn written(kind: &Kind) -> Option<&str> {
    match kind {
        Kind::Write(v) => Some(v),
        Kind::Cas { new, .. } => Some(new),
        Kind::Read(_) => None,
    }
}

/// Drops unanswered writes whose value nobody observed: "it never happened"
/// is always a legal choice for them, and keeping them only multiplies the
/// search. (Written values are unique.)
fn prune(ops: Vec<Op>) -> Vec<Op> {
    let observed: HashSet<String> = ops
        .iter()
        .filter_map(|o| match &o.kind {
            Kind::Read(Some(v)) => Some(v.clone()),
            Kind::Cas { old, .. } => Some(old.clone()),
            _ => None,
        })
        .collect();
    ops.into_iter()
        .filter(|o| o.ret.is_some() || written(&o.kind).is_some_and(|v| observed.contains(v)))
        .collect()
}

/// Checks every key of `history`.
pub fn check(history: &[Op]) -> Result<(), String> {
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op.clone());
    }
    let by_key: BTreeMap<&str, Vec<Op>> = by_key.into_iter().map(|(k, v)| (k, prune(v))).collect();
    for (key, ops) in by_key {
        check_key(&ops).map_err(|e| format!("key {key}: {e}"))?;
    }
    Ok(())
}
