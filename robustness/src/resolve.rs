//! Settles operations whose answer never came, using the final history
//! (read back by watch, and itself checked): a put or CAS whose unique value
//! is in the final history took effect, at a known revision; one whose value
//! is not there never did. Without this, every unanswered operation doubles
//! the linearizability search (it may or may not have happened, at any time
//! after its call), which a campaign with many faults cannot afford.
//!
//! A write applied at revision r took effect before any answer carrying a
//! header revision >= r was sent, so its return time is bounded by the first
//! such answer.

use std::collections::{HashMap, HashSet};

use crate::linearizable::{Kind, Op};
use crate::traffic::History;
use crate::watcher::Event;

/// Earliest answer time among answers with header revision >= r.
struct Bound {
    /// (revision, min answer time over this and every higher revision).
    by_rev: Vec<(i64, u128)>,
}

impl Bound {
    fn new(answered_at: &[(i64, u128)]) -> Bound {
        let mut v = answered_at.to_vec();
        v.sort_unstable();
        let mut min = u128::MAX;
        for e in v.iter_mut().rev() {
            min = min.min(e.1);
            e.1 = min;
        }
        Bound { by_rev: v }
    }

    fn at(&self, rev: i64) -> Option<u128> {
        let i = self.by_rev.partition_point(|(r, _)| *r < rev);
        self.by_rev.get(i).map(|(_, t)| *t)
    }
}

/// The register operations with unanswered ones settled; plus violations
/// found on the way (a write applied before it was sent).
pub fn settle(history: &History, reference: &[Event]) -> (Vec<Op>, Vec<String>) {
    let puts: HashMap<(&str, &str), i64> = reference
        .iter()
        .filter_map(|e| Some(((e.key.as_str(), e.value.as_deref()?), e.rev)))
        .collect();
    // Delete events no acknowledged delete explains: some unanswered delete
    // of that key took effect.
    let acked_deletes: HashSet<(&str, i64)> = history
        .acks
        .iter()
        .filter(|a| a.value.is_none())
        .map(|a| (a.key.as_str(), a.rev))
        .collect();
    let unexplained: HashSet<&str> = reference
        .iter()
        .filter(|e| e.value.is_none() && !acked_deletes.contains(&(e.key.as_str(), e.rev)))
        .map(|e| e.key.as_str())
        .collect();
    let bound = Bound::new(&history.answered_at);
    let mut out = Vec::with_capacity(history.ops.len());
    let mut violations = Vec::new();
    for op in &history.ops {
        if op.ret.is_some() {
            out.push(op.clone());
            continue;
        }
        let written = match &op.kind {
            Kind::Write(v) => Some(v),
            Kind::Cas { new, .. } => Some(new),
            // A delete that left no event either never ran or deleted
            // nothing: both are the same to the register.
            Kind::Delete if !unexplained.contains(op.key.as_str()) => continue,
            // An unanswered read constrains nothing.
            Kind::Read(_) => continue,
            Kind::Delete => {
                out.push(op.clone());
                continue;
            }
        };
        let Some(v) = written else { continue };
        let Some(rev) = puts.get(&(op.key.as_str(), v.as_str())) else {
            // Never applied (an unanswered CAS that did not swap is a read).
            continue;
        };
        let mut settled = op.clone();
        if let Kind::Cas { ok, .. } = &mut settled.kind {
            *ok = Some(true);
        }
        match bound.at(*rev) {
            Some(t) if t < op.call => violations.push(format!(
                "{} = {v:?} applied at revision {rev}, which an answer reported before the write was sent",
                op.key
            )),
            Some(t) => settled.ret = Some(t),
            // Nothing answered after it: it happened, but when is open.
            None => {}
        }
        out.push(settled);
    }
    (out, violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizable::check;

    fn op(kind: Kind, call: u128, ret: Option<u128>) -> Op {
        Op {
            key: "k".into(),
            kind,
            call,
            ret,
        }
    }

    fn put(rev: i64, v: &str) -> Event {
        Event {
            rev,
            key: "k".into(),
            value: Some(v.into()),
        }
    }

    #[test]
    fn unanswered_writes_take_their_place_from_the_final_history() {
        // "a" at revision 2 was never answered; "b" was never applied.
        let mut h = History {
            ops: vec![
                op(Kind::Write("a".into()), 0, None),
                op(Kind::Write("b".into()), 1, None),
                op(Kind::Read(Some("a".into())), 10, Some(20)),
            ],
            answered_at: vec![(2, 20)],
            ..History::default()
        };
        let (ops, v) = settle(&h, &[put(2, "a")]);
        assert!(v.is_empty());
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].ret, Some(20));
        assert!(check(&ops).is_ok());
        // A read of "b", which the final history says never happened.
        h.ops.push(op(Kind::Read(Some("b".into())), 30, Some(40)));
        let (ops, _) = settle(&h, &[put(2, "a")]);
        assert!(check(&ops).is_err());
    }
}
