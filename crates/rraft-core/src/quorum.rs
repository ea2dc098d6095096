//! Majority and joint-majority math.
//!
//! A configuration has one voter set, or two during joint consensus
//! (`voters` = C(new), `old_voters` = C(old)); every decision in a joint
//! configuration needs a majority of *each* set. An empty set places no
//! constraint (that is how a non-joint configuration reads).

use std::collections::BTreeMap;

use super::api::{Configuration, PeerId};

/// The outcome of an election as far as it has been counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

/// The highest index that a majority of `voters` has, given each voter's
/// match index. `u64::MAX` for an empty set (no constraint).
pub fn committed_index(voters: &[String], match_of: &impl Fn(&str) -> u64) -> u64 {
    majority_value(voters.len(), voters.iter().map(|v| match_of(v)))
}

/// The highest value that a majority of a set of `n` members has, given
/// the values of some of them (the others count as 0; values beyond `n`
/// are ignored). `u64::MAX` for an empty set (no constraint).
pub fn majority_value(n: usize, values: impl Iterator<Item = u64>) -> u64 {
    if n == 0 {
        return u64::MAX;
    }
    // Counted on the stack for the usual sizes: this runs on every
    // acknowledgement a leader gets.
    let mut on_stack = [0u64; 16];
    let mut on_heap = Vec::new();
    let slots: &mut [u64] = if n <= on_stack.len() {
        &mut on_stack[..n]
    } else {
        on_heap.resize(n, 0);
        &mut on_heap
    };
    for (slot, v) in slots.iter_mut().zip(values) {
        *slot = v;
    }
    // Descending: the (n/2)-th value is held by a majority.
    slots.sort_unstable_by(|a, b| b.cmp(a));
    slots[n / 2]
}

/// Joint version of [`committed_index`]: the minimum over both voter sets.
/// 0 when the configuration has no voters at all.
pub fn joint_committed_index(conf: &Configuration, match_of: &impl Fn(&str) -> u64) -> u64 {
    let idx =
        committed_index(&conf.voters, match_of).min(committed_index(&conf.old_voters, match_of));
    if idx == u64::MAX {
        0
    } else {
        idx
    }
}

/// Whether the members for which `ok` holds form a majority of `voters`
/// (true for an empty set).
pub fn has_majority(voters: &[String], ok: &impl Fn(&str) -> bool) -> bool {
    if voters.is_empty() {
        return true;
    }
    let yes = voters.iter().filter(|v| ok(v)).count();
    yes > voters.len() / 2
}

/// [`joint_has_majority`] from counts: `(yes, of)` for the voters and for
/// the old voters (`of` = 0: no such set).
pub fn joint_majority_counted(voters: (usize, usize), old_voters: (usize, usize)) -> bool {
    if voters.1 == 0 && old_voters.1 == 0 {
        return false;
    }
    let majority = |(yes, of): (usize, usize)| of == 0 || yes > of / 2;
    majority(voters) && majority(old_voters)
}

/// Majority of each set of a joint configuration; false when there are no
/// voters at all.
pub fn joint_has_majority(conf: &Configuration, ok: &impl Fn(&str) -> bool) -> bool {
    if conf.voters.is_empty() && conf.old_voters.is_empty() {
        return false;
    }
    has_majority(&conf.voters, ok) && has_majority(&conf.old_voters, ok)
}

/// Counts `votes` (granted or rejected, by voter id) over one voter set.
pub fn vote_result(voters: &[String], votes: &BTreeMap<PeerId, bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut yes, mut missing) = (0, 0);
    for v in voters {
        match votes.get(v.as_str()) {
            Some(true) => yes += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let q = voters.len() / 2 + 1;
    if yes >= q {
        VoteResult::Won
    } else if yes + missing >= q {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// Joint election: won only if won in both sets, lost if lost in either.
pub fn joint_vote_result(conf: &Configuration, votes: &BTreeMap<PeerId, bool>) -> VoteResult {
    if conf.voters.is_empty() && conf.old_voters.is_empty() {
        return VoteResult::Lost;
    }
    let a = vote_result(&conf.voters, votes);
    let b = vote_result(&conf.old_voters, votes);
    match (a, b) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn committed_index_is_the_majority_median() {
        let voters = ids(&["a", "b", "c"]);
        let m = |id: &str| match id {
            "a" => 5,
            "b" => 3,
            _ => 1,
        };
        assert_eq!(committed_index(&voters, &m), 3);
        let voters = ids(&["a", "b", "c", "d"]);
        let m = |id: &str| match id {
            "a" => 5,
            "b" => 4,
            "c" => 2,
            _ => 1,
        };
        assert_eq!(committed_index(&voters, &m), 2);
    }

    #[test]
    fn majority_value_counts_missing_members_as_zero() {
        assert_eq!(majority_value(0, [5].into_iter()), u64::MAX);
        assert_eq!(majority_value(3, [9, 4].into_iter()), 4);
        assert_eq!(majority_value(3, [9].into_iter()), 0);
        assert_eq!(
            majority_value(2, [7, 3, 8].into_iter()),
            3,
            "extra values ignored"
        );
        assert_eq!(majority_value(5, [1, 2, 3, 4, 5].into_iter()), 3);
    }

    #[test]
    fn joint_majority_counted_needs_each_set() {
        assert!(!joint_majority_counted((0, 0), (0, 0)), "no voters at all");
        assert!(joint_majority_counted((2, 3), (0, 0)));
        assert!(!joint_majority_counted((1, 3), (0, 0)));
        assert!(
            !joint_majority_counted((2, 4), (0, 0)),
            "half is no majority"
        );
        assert!(!joint_majority_counted((3, 3), (1, 3)));
        assert!(joint_majority_counted((2, 3), (2, 3)));
    }

    #[test]
    fn joint_committed_index_needs_both_majorities() {
        let conf = Configuration {
            voters: ids(&["a", "b", "c"]),
            learners: vec![],
            old_voters: ids(&["a", "d", "e"]),
        };
        let m = |id: &str| match id {
            "a" | "b" | "c" => 9,
            "d" => 4,
            _ => 2,
        };
        assert_eq!(joint_committed_index(&conf, &m), 4);
    }

    #[test]
    fn vote_results() {
        let voters = ids(&["a", "b", "c"]);
        let mut votes = BTreeMap::new();
        votes.insert("a".into(), true);
        assert_eq!(vote_result(&voters, &votes), VoteResult::Pending);
        votes.insert("b".into(), false);
        assert_eq!(vote_result(&voters, &votes), VoteResult::Pending);
        votes.insert("c".into(), false);
        assert_eq!(vote_result(&voters, &votes), VoteResult::Lost);
        votes.insert("c".into(), true);
        assert_eq!(vote_result(&voters, &votes), VoteResult::Won);
        let joint = Configuration {
            voters: ids(&["a", "b", "c"]),
            learners: vec![],
            old_voters: ids(&["a", "x", "y"]),
        };
        assert_eq!(joint_vote_result(&joint, &votes), VoteResult::Pending);
        votes.insert("x".into(), false);
        votes.insert("y".into(), false);
        assert_eq!(joint_vote_result(&joint, &votes), VoteResult::Lost);
    }
}
