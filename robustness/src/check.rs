//! The checks run on one round's recorded history: linearizability of the
//! registers, every acknowledged write present in the final history, the
//! watch guarantees, and equal HashKV on every member.

use std::collections::{BTreeMap, HashSet};

use crate::linearizable::{self, CheckError};
use crate::resolve;
use crate::traffic::History;
use crate::watcher::{Event, Recording};

/// A key as the final linearizable Get returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalKv {
    /// The value.
    pub value: String,
    /// Its mod revision.
    pub mod_rev: i64,
    /// Its lease (0: none).
    pub lease: i64,
}

/// What the end of a round observed, beside the clients' history.
#[derive(Debug, Default)]
pub struct Observed {
    /// The final revision R every check is taken at.
    pub final_rev: i64,
    /// Every event of revisions 1..=R, read from one member with one watch.
    pub reference: Vec<Event>,
    /// Every key at R (linearizable Get of the whole keyspace).
    pub state: BTreeMap<String, FinalKv>,
    /// What each concurrent watcher recorded.
    pub watchers: Vec<Recording>,
    /// A watch opened at the end from a middle revision on another member.
    pub resumed: Option<(i64, Result<Vec<Event>, String>)>,
    /// HashKV at R per member: (hash, compact revision) or the error.
    pub hashes: Vec<Result<(u32, i64), String>>,
    /// Every event of revisions 1..=R read from each member replaced during
    /// the round (by member index).
    pub replaced: Vec<(usize, Result<Vec<Event>, String>)>,
}

/// The verdict on one round.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Every broken promise found, described.
    pub violations: Vec<String>,
    /// Keys the linearizability search could not decide within its bound.
    pub undecided: Vec<String>,
}

/// Runs every check.
pub fn check(history: &History, obs: &Observed) -> Verdict {
    let mut v = Verdict::default();
    let (ops, phantoms) = resolve::settle(history, &obs.reference);
    v.violations
        .extend(phantoms.into_iter().map(|p| format!("phantom write: {p}")));
    match linearizable::check(&ops) {
        Ok(()) => {}
        Err(e @ CheckError::NotLinearizable { .. }) => {
            v.violations.push(format!("linearizability: {e}"))
        }
        Err(e @ CheckError::Undecided { .. }) => v.undecided.push(e.to_string()),
    }
    check_reference(obs, &mut v.violations);
    check_acks(history, obs, &mut v.violations);
    for (i, w) in obs.watchers.iter().enumerate() {
        check_watcher(&format!("watcher {i}"), w, obs, &mut v.violations);
    }
    if let Some((from, got)) = &obs.resumed {
        match got {
            Ok(events) => {
                let want = slice(&obs.reference, *from, obs.final_rev);
                if *events != want {
                    v.violations.push(format!(
                        "watch resumed from revision {from}: {}",
                        first_difference(events, &want)
                    ));
                }
            }
            Err(e) => v.violations.push(format!("watch resumed from {from}: {e}")),
        }
    }
    check_hashes(obs, &mut v.violations);
    check_replaced(history, obs, &mut v.violations);
    v
}

/// A replaced member's history holds every acknowledged write (those made
/// while it was away included) and equals the final history.
fn check_replaced(history: &History, obs: &Observed, out: &mut Vec<String>) {
    for (slot, got) in &obs.replaced {
        let events = match got {
            Ok(events) => events,
            Err(e) => {
                out.push(format!("member {slot} (replaced): history unreadable: {e}"));
                continue;
            }
        };
        let lost = lost_acks(history, events);
        for l in lost.iter().take(5) {
            out.push(format!("member {slot} (replaced): {l}"));
        }
        if lost.is_empty() && *events != obs.reference {
            out.push(format!(
                "member {slot} (replaced): {}",
                first_difference(events, &obs.reference)
            ));
        }
    }
}

/// The acknowledged writes missing from `events`, described.
fn lost_acks(history: &History, events: &[Event]) -> Vec<String> {
    let present: HashSet<(i64, &str, Option<&str>)> = events
        .iter()
        .map(|e| (e.rev, e.key.as_str(), e.value.as_deref()))
        .collect();
    history
        .acks
        .iter()
        .filter(|a| !present.contains(&(a.rev, a.key.as_str(), a.value.as_deref())))
        .map(|a| {
            format!(
                "acknowledged write lost: {} = {:?} at revision {}",
                a.key, a.value, a.rev
            )
        })
        .collect()
}

fn slice(events: &[Event], from: i64, to: i64) -> Vec<Event> {
    events
        .iter()
        .filter(|e| e.rev >= from && e.rev <= to)
        .cloned()
        .collect()
}

fn first_difference(got: &[Event], want: &[Event]) -> String {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            return format!("event {i} is {g:?}, the final history has {w:?}");
        }
    }
    format!(
        "{} events delivered, the final history has {} (first extra/missing: {:?})",
        got.len(),
        want.len(),
        if got.len() > want.len() {
            got.get(want.len())
        } else {
            want.get(got.len())
        }
    )
}

/// The final history itself: ordered, unique, no revision missing, and its
/// replay equal to the final state.
fn check_reference(obs: &Observed, out: &mut Vec<String>) {
    let mut seen = HashSet::new();
    let mut prev = 0;
    let mut revs = Vec::new();
    for e in &obs.reference {
        if e.rev < prev {
            out.push(format!("final history out of order at {e:?}"));
        }
        if !seen.insert((e.rev, e.key.clone())) {
            out.push(format!("final history has a duplicate event {e:?}"));
        }
        if e.rev != prev {
            revs.push(e.rev);
        }
        prev = e.rev;
    }
    // Every write bumps the revision by one and every key is watched, so
    // revisions 2..=R must all appear (revision 1 is the empty store).
    let present: HashSet<i64> = revs.iter().copied().collect();
    let missing: Vec<i64> = (2..=obs.final_rev)
        .filter(|r| !present.contains(r))
        .collect();
    if !missing.is_empty() {
        out.push(format!(
            "final history: {} of revisions 2..={} missing (first: {:?})",
            missing.len(),
            obs.final_rev,
            &missing[..missing.len().min(5)]
        ));
    }
    if let Some(beyond) = revs.iter().find(|r| **r > obs.final_rev || **r < 2) {
        out.push(format!(
            "final history has revision {beyond} outside 2..={}",
            obs.final_rev
        ));
    }
    let mut replay: BTreeMap<&str, (&str, i64)> = BTreeMap::new();
    for e in &obs.reference {
        match &e.value {
            Some(v) => replay.insert(&e.key, (v, e.rev)),
            None => replay.remove(e.key.as_str()),
        };
    }
    let state: BTreeMap<&str, (&str, i64)> = obs
        .state
        .iter()
        .map(|(k, kv)| (k.as_str(), (kv.value.as_str(), kv.mod_rev)))
        .collect();
    if replay != state {
        let diff: Vec<String> = replay
            .iter()
            .filter(|(k, v)| state.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: history {v:?}, store {:?}", state.get(k)))
            .chain(
                state
                    .iter()
                    .filter(|(k, _)| !replay.contains_key(*k))
                    .map(|(k, v)| format!("{k}: not in history, store {v:?}")),
            )
            .take(5)
            .collect();
        out.push(format!(
            "final state differs from the final history: {}",
            diff.join("; ")
        ));
    }
}

/// Every acknowledged write is in the final history at its revision;
/// leased keys are present unless revoked, and gone when revoked.
fn check_acks(history: &History, obs: &Observed, out: &mut Vec<String>) {
    let events: HashSet<(i64, &str, Option<&str>)> = obs
        .reference
        .iter()
        .map(|e| (e.rev, e.key.as_str(), e.value.as_deref()))
        .collect();
    let mut lost = 0;
    for a in &history.acks {
        if !events.contains(&(a.rev, a.key.as_str(), a.value.as_deref())) {
            lost += 1;
            if lost <= 5 {
                out.push(format!(
                    "acknowledged write lost: {} = {:?} at revision {}",
                    a.key, a.value, a.rev
                ));
            }
        }
    }
    if lost > 5 {
        out.push(format!("... {} more acknowledged writes lost", lost - 5));
    }
    let revoked: HashSet<&str> = history.revoked.iter().map(|(k, _)| k.as_str()).collect();
    let uncertain: HashSet<&str> = history.uncertain.iter().map(String::as_str).collect();
    for a in history.acks.iter().filter(|a| a.lease != 0) {
        if revoked.contains(a.key.as_str()) || uncertain.contains(a.key.as_str()) {
            continue;
        }
        match obs.state.get(&a.key) {
            Some(kv) if kv.lease == a.lease => {}
            other => out.push(format!(
                "leased key {} (lease {:x}, never revoked) is {other:?} at the end",
                a.key, a.lease
            )),
        }
    }
    for (key, rev) in &history.revoked {
        if obs.state.contains_key(key) {
            out.push(format!("key {key} of a revoked lease still exists"));
        }
        let put = history.acks.iter().any(|a| &a.key == key);
        let deleted = obs
            .reference
            .iter()
            .any(|e| &e.key == key && e.value.is_none() && e.rev <= *rev);
        if put && !deleted {
            out.push(format!(
                "revoke of the lease of {key} acknowledged at {rev} without its delete event"
            ));
        }
    }
}

/// Ordered, unique, atomic per revision, reliable up to R, and equal to the
/// final history from its start revision.
fn check_watcher(name: &str, w: &Recording, obs: &Observed, out: &mut Vec<String>) {
    let events = w.events();
    let mut seen = HashSet::new();
    for pair in events.windows(2) {
        if pair[1].rev < pair[0].rev {
            out.push(format!(
                "{name}: {:?} delivered after {:?}",
                pair[1], pair[0]
            ));
            return;
        }
    }
    for e in &events {
        if !seen.insert((e.rev, e.key.as_str())) {
            out.push(format!("{name}: duplicate event {e:?}"));
            return;
        }
    }
    for (i, pair) in w.responses.windows(2).enumerate() {
        if let (Some(a), Some(b)) = (pair[0].last(), pair[1].first()) {
            if a.rev == b.rev {
                out.push(format!(
                    "{name}: revision {} split over responses {i} and {}",
                    a.rev,
                    i + 1
                ));
                return;
            }
        }
    }
    if w.reached < obs.final_rev {
        out.push(format!(
            "{name}: delivered up to revision {} only, the store is at {}",
            w.reached, obs.final_rev
        ));
    }
    let want = slice(&obs.reference, w.start, w.reached.min(obs.final_rev));
    let got: Vec<Event> = events
        .into_iter()
        .filter(|e| e.rev <= obs.final_rev)
        .collect();
    if got != want {
        out.push(format!(
            "{name} (from revision {}, {} resumes): {}",
            w.start,
            w.resumes.len(),
            first_difference(&got, &want)
        ));
    }
}

fn check_hashes(obs: &Observed, out: &mut Vec<String>) {
    let mut first: Option<(usize, (u32, i64))> = None;
    for (i, h) in obs.hashes.iter().enumerate() {
        match (h, first) {
            (Err(e), _) => out.push(format!("HashKV at {} on member {i}: {e}", obs.final_rev)),
            (Ok(h), None) => first = Some((i, *h)),
            (Ok(h), Some((j, f))) if *h != f => out.push(format!(
                "HashKV at revision {} differs: member {j} {f:?}, member {i} {h:?}",
                obs.final_rev
            )),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::Ack;

    fn ev(rev: i64, key: &str, value: &str) -> Event {
        Event {
            rev,
            key: key.into(),
            value: Some(value.into()),
        }
    }

    /// Revisions 2 and 3: a put, then a two-key txn.
    fn observed() -> (History, Observed) {
        let reference = vec![ev(2, "a", "1"), ev(3, "a", "2"), ev(3, "b", "2")];
        let mut history = History::default();
        for e in &reference {
            history.acks.push(Ack {
                key: e.key.clone(),
                value: e.value.clone(),
                rev: e.rev,
                lease: 0,
            });
        }
        let state = [("a", 3), ("b", 3)]
            .into_iter()
            .map(|(k, r)| {
                let kv = FinalKv {
                    value: "2".into(),
                    mod_rev: r,
                    lease: 0,
                };
                (k.to_string(), kv)
            })
            .collect();
        let watcher = Recording {
            start: 1,
            responses: vec![reference[..1].to_vec(), reference[1..].to_vec()],
            resumes: vec![],
            reached: 3,
        };
        let obs = Observed {
            final_rev: 3,
            reference,
            state,
            watchers: vec![watcher],
            resumed: None,
            hashes: vec![Ok((7, -1)), Ok((7, -1))],
            replaced: Vec::new(),
        };
        (history, obs)
    }

    #[test]
    fn a_consistent_round_passes() {
        let (h, obs) = observed();
        let v = check(&h, &obs);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
    }

    #[test]
    fn each_broken_guarantee_is_reported() {
        let expect = |h: &History, obs: &Observed, what: &str| {
            let v = check(h, obs);
            assert!(
                v.violations.iter().any(|x| x.contains(what)),
                "{what}: {:?}",
                v.violations
            );
        };
        // A revision split over two responses (not atomic).
        let (h, mut obs) = observed();
        obs.watchers[0].responses = vec![obs.reference[..2].to_vec(), obs.reference[2..].to_vec()];
        expect(&h, &obs, "split over responses");
        // A watcher that stopped early (not reliable).
        let (h, mut obs) = observed();
        obs.watchers[0].responses.pop();
        obs.watchers[0].reached = 2;
        expect(&h, &obs, "delivered up to revision 2 only");
        // Members that disagree.
        let (h, mut obs) = observed();
        obs.hashes[1] = Ok((8, -1));
        expect(&h, &obs, "HashKV at revision 3 differs");
        // A write acknowledged at a revision that holds something else.
        let (mut h, obs) = observed();
        h.acks[0].value = Some("other".into());
        expect(&h, &obs, "acknowledged write lost");
        // A final state the history does not explain.
        let (h, mut obs) = observed();
        obs.state.remove("b");
        expect(&h, &obs, "final state differs");
        // A replaced member whose history misses an acknowledged write.
        let (h, mut obs) = observed();
        let mut events = obs.reference.clone();
        events.retain(|e| e.rev != h.acks[0].rev);
        obs.replaced = vec![(1, Ok(events))];
        expect(&h, &obs, "member 1 (replaced): acknowledged write lost");
        // A replaced member whose history differs otherwise.
        let (h, mut obs) = observed();
        let mut events = obs.reference.clone();
        events.push(ev(4, "z", "never"));
        obs.replaced = vec![(2, Ok(events))];
        expect(&h, &obs, "member 2 (replaced):");
    }

    #[test]
    fn a_replaced_member_with_the_final_history_passes() {
        let (h, mut obs) = observed();
        obs.replaced = vec![(1, Ok(obs.reference.clone()))];
        let v = check(&h, &obs);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
    }
}
