//! The invariants, checked incrementally as the cluster runs.
//!
//! The cluster reports facts (a node became leader, an entry became durable,
//! an entry was applied, a proposal was accepted, a read was served, a commit
//! index moved) and the checker answers with the first [`Violation`] it sees.
//! Every check costs O(new facts) except leader completeness, which walks the
//! committed prefix once per election.

use std::collections::BTreeMap;

use bytes::Bytes;
use rraft::core::{Entry, EntryType, MemStorage};

use crate::disk::{entry_digest, SmState};

/// A broken invariant: which one, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// The answer to one reported fact.
pub type Check = Result<(), Violation>;

/// A [`Violation`] of `invariant` with `detail`.
pub fn violation(invariant: &'static str, detail: impl Into<String>) -> Violation {
    Violation {
        invariant,
        detail: detail.into(),
    }
}

/// At most one leader per term.
pub const ELECTION_SAFETY: &str = "election safety";
/// Two logs with an entry of the same index and term agree up to it.
pub const LOG_MATCHING: &str = "log matching";
/// A leader holds every entry committed in earlier terms.
pub const LEADER_COMPLETENESS: &str = "leader completeness";
/// A leader never overwrites or deletes its own entries.
pub const LEADER_APPEND_ONLY: &str = "leader append-only";
/// Every state machine applies a prefix of one history.
pub const SM_SAFETY: &str = "state machine safety";
/// An acknowledged proposal is in the history.
pub const LOST_WRITE: &str = "acknowledged proposal lost";
/// A read observes every write acknowledged before it started.
pub const STALE_READ: &str = "stale read";
/// After the faults stop, the cluster decides what was proposed.
pub const LIVENESS: &str = "liveness";
/// At most one node holds a valid lease at a time.
pub const LEASE: &str = "lease safety";
/// The runtime keeps the Ready contract (what is persisted before it is acted on).
pub const CONTRACT: &str = "ready contract";

/// A node's log as the checker needs to see it: the entries the node holds
/// (durable or queued for the disk) above its snapshot.
pub struct LogView<'a> {
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    pub log: &'a MemStorage,
}

impl LogView<'_> {
    /// Term at `index`: `Some` when held, the snapshot's term at its index,
    /// `None` when absent or compacted.
    pub fn term(&self, index: u64) -> Option<u64> {
        use rraft::core::LogStorage;
        if index == 0 {
            return Some(0);
        }
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.log.term(index).ok()
    }
}

/// One entry of the global applied history.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HistEntry {
    term: u64,
    digest: u64,
}

/// A proposal accepted by a leader, waiting for its proposer to apply it.
#[derive(Clone, Debug)]
struct Pending {
    term: u64,
    incarnation: u64,
    payload: Bytes,
}

/// A committed index as first learned: its term, and the term of the node
/// that reported the commit (an upper bound of the term it was committed in).
#[derive(Clone, Copy, Debug)]
struct Committed {
    term: u64,
    commit_term: u64,
}

/// The invariant checker of one run: fed facts, answers with the first violation.
#[derive(Default)]
pub struct Checker {
    /// term → the leader of that term.
    leaders: BTreeMap<u64, usize>,
    /// (index, term) → (entry digest, term of the previous entry if known),
    /// over every durable log ever written.
    durable: BTreeMap<(u64, u64), (u64, Option<u64>)>,
    /// The one history every state machine must be a prefix of (index i at i-1).
    history: Vec<HistEntry>,
    /// Rolling state digest after each history index (`digests[0]` = genesis).
    digests: Vec<u64>,
    /// Per node: the index its state machine has applied.
    applied: Vec<u64>,
    /// Per node: the last commit index it reported.
    commit_seen: Vec<u64>,
    /// Committed indices (index i at i-1).
    committed: Vec<Committed>,
    /// Highest term whose leader committed an entry of its own term.
    pub max_committed_term: u64,
    /// (proposer, index) → proposal waiting for its acknowledgement.
    pending: BTreeMap<(usize, u64), Pending>,
    /// index → (term, payload) of every acknowledged proposal.
    acked: BTreeMap<u64, (u64, Bytes)>,
    /// Highest index of an acknowledged proposal.
    pub max_acked_index: u64,
    /// Highest index a proposal was accepted at.
    pub max_proposed_index: u64,
    /// read id → the write watermark it must observe.
    reads: BTreeMap<u64, u64>,
    /// Acknowledged proposals.
    pub acks: u64,
    /// Reads served and checked.
    pub reads_served: u64,
}

impl Checker {
    /// A checker for a cluster of `nodes` nodes (voters and spare).
    pub fn new(nodes: usize) -> Checker {
        Checker {
            digests: vec![0],
            applied: vec![0; nodes],
            commit_seen: vec![0; nodes],
            ..Checker::default()
        }
    }

    /// Digest of the whole history.
    pub fn final_digest(&self) -> u64 {
        *self.digests.last().expect("genesis digest")
    }

    /// How many terms had a leader.
    pub fn leader_terms(&self) -> u64 {
        self.leaders.len() as u64
    }

    /// Entries in the one history.
    pub fn history_len(&self) -> u64 {
        self.history.len() as u64
    }

    /// Entries known committed.
    pub fn committed_len(&self) -> u64 {
        self.committed.len() as u64
    }

    /// (1) Election safety: `node` is leader of `term`.
    pub fn on_leader(&mut self, node: usize, term: u64) -> Check {
        match self.leaders.get(&term) {
            Some(&other) if other != node => Err(violation(
                ELECTION_SAFETY,
                format!("node {node} and node {other} are both leader of term {term}"),
            )),
            _ => {
                self.leaders.insert(term, node);
                Ok(())
            }
        }
    }

    /// (3) Leader completeness at election: every entry committed in an
    /// earlier term is in the new leader's log.
    pub fn check_new_leader_log(&self, node: usize, term: u64, view: &LogView) -> Check {
        for (i, c) in self.committed.iter().enumerate() {
            let index = i as u64 + 1;
            if c.commit_term >= term || index < view.snapshot_index {
                continue;
            }
            match view.term(index) {
                Some(t) if t == c.term => {}
                got => {
                    return Err(violation(
                        LEADER_COMPLETENESS,
                        format!(
                            "node {node} leads term {term} but holds {got:?} at index {index}, \
                             committed with term {} (reported in term {})",
                            c.term, c.commit_term
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// A node's commit index moved to `commit` (from its HardState). Every
    /// index up to it is committed: record them, and check that nodes agree
    /// on what is committed.
    pub fn on_commit(&mut self, node: usize, node_term: u64, commit: u64, view: &LogView) -> Check {
        let from = self.commit_seen[node] + 1;
        if commit < from {
            return Ok(());
        }
        self.commit_seen[node] = commit;
        for index in from.max(view.snapshot_index)..=commit {
            let Some(term) = view.term(index) else {
                if index <= view.snapshot_index {
                    continue;
                }
                return Err(violation(
                    CONTRACT,
                    format!("node {node} reports commit {commit} but does not hold index {index}"),
                ));
            };
            if index == 0 {
                continue;
            }
            match self.committed.get(index as usize - 1) {
                Some(c) if c.term != term => {
                    return Err(violation(
                        LEADER_COMPLETENESS,
                        format!(
                            "node {node} commits index {index} with term {term}, \
                             but it was committed with term {}",
                            c.term
                        ),
                    ))
                }
                Some(_) => {}
                None if index as usize == self.committed.len() + 1 => {
                    self.committed.push(Committed {
                        term,
                        commit_term: node_term,
                    });
                    if term == node_term && term > self.max_committed_term {
                        self.max_committed_term = term;
                    }
                }
                None => {
                    // A node learned a commit beyond what anyone reported
                    // (e.g. from a snapshot): only the contiguous prefix is tracked.
                    break;
                }
            }
        }
        if let Some(t) = view.term(commit) {
            if t == node_term && t > self.max_committed_term {
                self.max_committed_term = t;
            }
        }
        Ok(())
    }

    /// (3) A durable write never replaces a committed entry the node held
    /// with another one. (Appending a stale entry past the durable end is
    /// fine: it was never acknowledged and will be truncated.)
    pub fn check_not_overwriting_committed(
        &self,
        node: usize,
        index: u64,
        old_term: u64,
        new_term: u64,
    ) -> Check {
        match self.committed.get((index as usize).wrapping_sub(1)) {
            Some(c) if c.term == old_term && new_term != old_term => Err(violation(
                LEADER_COMPLETENESS,
                format!(
                    "node {node} overwrites committed index {index} (term {old_term}) with term {new_term}"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// (3) A leader of a later term than the commit must hold the entries.
    pub fn check_leader_holds_committed(
        &self,
        node: usize,
        term: u64,
        view: &LogView,
        from: u64,
    ) -> Check {
        for index in from.max(1)..=self.committed.len() as u64 {
            let c = self.committed[index as usize - 1];
            if c.commit_term >= term || index < view.snapshot_index {
                continue;
            }
            if view.term(index) != Some(c.term) {
                return Err(violation(
                    LEADER_COMPLETENESS,
                    format!(
                        "leader node {node} of term {term} holds {:?} at committed index {index} (term {})",
                        view.term(index),
                        c.term
                    ),
                ));
            }
        }
        Ok(())
    }

    /// (2) Log matching: an entry with the same index and term is the same
    /// entry, preceded by an entry of the same term.
    pub fn on_durable(&mut self, node: usize, entry: &Entry, prev_term: Option<u64>) -> Check {
        let digest = entry_digest(entry);
        let key = (entry.index, entry.term);
        match self.durable.get_mut(&key) {
            None => {
                self.durable.insert(key, (digest, prev_term));
                Ok(())
            }
            Some((d, p)) => {
                if *d != digest {
                    return Err(violation(
                        LOG_MATCHING,
                        format!(
                            "node {node} stores a different entry at index {} term {}",
                            entry.index, entry.term
                        ),
                    ));
                }
                match (*p, prev_term) {
                    (Some(a), Some(b)) if a != b => Err(violation(
                        LOG_MATCHING,
                        format!(
                            "node {node}: entry {}/{} follows term {b}, elsewhere term {a}",
                            entry.index, entry.term
                        ),
                    )),
                    (None, Some(b)) => {
                        *p = Some(b);
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// (4) State machine safety: `node` applied `entry`, its state digest
    /// is now `node_digest`.
    pub fn on_apply(
        &mut self,
        node: usize,
        incarnation: u64,
        entry: &Entry,
        node_digest: u64,
    ) -> Check {
        let index = entry.index;
        if index != self.applied[node] + 1 {
            return Err(violation(
                SM_SAFETY,
                format!(
                    "node {node} applies index {index} after {}",
                    self.applied[node]
                ),
            ));
        }
        let digest = entry_digest(entry);
        let len = self.history.len() as u64;
        if index <= len {
            let h = &self.history[index as usize - 1];
            if h.term != entry.term || h.digest != digest {
                return Err(violation(
                    SM_SAFETY,
                    format!(
                        "node {node} applies index {index} term {}, the history has term {} there{}",
                        entry.term,
                        h.term,
                        if h.term == entry.term { " (different data)" } else { "" }
                    ),
                ));
            }
        } else if index == len + 1 {
            let prev = self.digests[len as usize];
            self.history.push(HistEntry {
                term: entry.term,
                digest,
            });
            self.digests
                .push(crate::disk::chain(prev, index, entry.term, digest));
        } else {
            return Err(violation(
                SM_SAFETY,
                format!("node {node} applies index {index} beyond the history ({len})"),
            ));
        }
        if self.digests[index as usize] != node_digest {
            return Err(violation(
                SM_SAFETY,
                format!("node {node}'s state after index {index} differs from the history's"),
            ));
        }
        self.applied[node] = index;
        // (5) acknowledgement of the node's own proposal at this index.
        if let Some(p) = self.pending.remove(&(node, index)) {
            if p.incarnation == incarnation && p.term == entry.term {
                if entry.kind() != EntryType::Data || entry.data != p.payload {
                    return Err(violation(
                        LOST_WRITE,
                        format!(
                            "node {node} proposed {:?} at {index} term {}, applied {:?} there",
                            p.payload, p.term, entry.data
                        ),
                    ));
                }
                self.acks += 1;
                self.acked.insert(index, (p.term, p.payload));
                self.max_acked_index = self.max_acked_index.max(index);
            }
        }
        Ok(())
    }

    /// A node's state machine was replaced by `state` (snapshot install or restart).
    pub fn on_restore(&mut self, node: usize, state: &SmState) -> Check {
        match self.digests.get(state.index as usize) {
            Some(&d) if d == state.digest => {
                self.applied[node] = state.index;
                Ok(())
            }
            Some(_) => Err(violation(
                SM_SAFETY,
                format!(
                    "node {node} restores a snapshot at {} that differs from the history",
                    state.index
                ),
            )),
            None => Err(violation(
                SM_SAFETY,
                format!(
                    "node {node} restores a snapshot at {} beyond the history ({})",
                    state.index,
                    self.history.len()
                ),
            )),
        }
    }

    /// A node crashed: its clients' callbacks are gone.
    pub fn on_crash(&mut self, node: usize) {
        self.pending.retain(|(n, _), _| *n != node);
    }

    /// (5) A leader accepted `payload` at `index` in `term`.
    pub fn on_propose(
        &mut self,
        node: usize,
        incarnation: u64,
        index: u64,
        term: u64,
        payload: Bytes,
    ) {
        self.max_proposed_index = self.max_proposed_index.max(index);
        self.pending.insert(
            (node, index),
            Pending {
                term,
                incarnation,
                payload,
            },
        );
    }

    /// (5) At the end: every acknowledged write is in the history at its index.
    pub fn check_acked(&self) -> Check {
        for (&index, (term, payload)) in &self.acked {
            let e = Entry {
                term: *term,
                index,
                entry_type: EntryType::Data as i32,
                data: payload.clone(),
            };
            if !self.history_has(index, &e) {
                return Err(violation(
                    LOST_WRITE,
                    format!(
                        "acknowledged write {payload:?} at index {index} is not in the history"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether the history holds `entry` at `index`.
    pub fn history_has(&self, index: u64, entry: &Entry) -> bool {
        index > 0
            && self
                .history
                .get(index as usize - 1)
                .is_some_and(|h| h.term == entry.term && h.digest == entry_digest(entry))
    }

    /// Whether the proposal at `index` was acknowledged with `payload`.
    pub fn is_acked(&self, index: u64, payload: &Bytes) -> bool {
        self.acked.get(&index).is_some_and(|(_, p)| p == payload)
    }

    #[cfg(test)]
    fn truncate_history(&mut self, len: usize) {
        self.history.truncate(len);
        self.digests.truncate(len + 1);
    }

    /// (6) A read was requested now: it must see every write acknowledged so far.
    pub fn on_read_request(&mut self, read_id: u64) {
        self.reads.insert(read_id, self.max_acked_index);
    }

    /// (6) `node` served read `read_id` at read index `index`, from a state
    /// machine that has applied `observed`.
    pub fn on_read_served(
        &mut self,
        node: usize,
        read_id: u64,
        index: u64,
        observed: u64,
    ) -> Check {
        let Some(&required) = self.reads.get(&read_id) else {
            return Err(violation(
                CONTRACT,
                format!("node {node} returned a read state for unknown read {read_id}"),
            ));
        };
        self.reads_served += 1;
        if index.min(observed) < required {
            return Err(violation(
                STALE_READ,
                format!(
                    "node {node} served read {read_id} at read index {index} from state {observed}, \
                     but index {required} was acknowledged before it was requested"
                ),
            ));
        }
        Ok(())
    }

    /// (8) `node` holds a valid lease as leader of `term`.
    pub fn check_lease(&self, node: usize, term: u64) -> Check {
        if self.max_committed_term > term {
            return Err(violation(
                LEASE,
                format!(
                    "node {node} holds a valid lease in term {term} while the leader of term {} \
                     has committed",
                    self.max_committed_term
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::SmState;
    use rraft::core::Configuration;

    fn entry(index: u64, term: u64, data: &'static [u8]) -> Entry {
        Entry {
            term,
            index,
            entry_type: EntryType::Data as i32,
            data: Bytes::from_static(data),
        }
    }

    /// Applies `entries` on `node` through a private state machine.
    fn apply_all(c: &mut Checker, sm: &mut SmState, node: usize, entries: &[Entry]) -> Check {
        for e in entries {
            sm.apply(e);
            c.on_apply(node, 0, e, sm.digest)?;
        }
        Ok(())
    }

    fn genesis() -> SmState {
        SmState::genesis(Configuration::default())
    }

    #[test]
    fn catches_two_leaders_in_one_term() {
        let mut c = Checker::new(3);
        c.on_leader(0, 1).unwrap();
        c.on_leader(0, 1).unwrap();
        c.on_leader(1, 2).unwrap();
        let v = c.on_leader(2, 2).unwrap_err();
        assert_eq!(v.invariant, ELECTION_SAFETY);
    }

    #[test]
    fn catches_diverging_applied_sequence() {
        let mut c = Checker::new(2);
        let (mut a, mut b) = (genesis(), genesis());
        apply_all(&mut c, &mut a, 0, &[entry(1, 1, b"x"), entry(2, 1, b"y")]).unwrap();
        apply_all(&mut c, &mut b, 1, &[entry(1, 1, b"x")]).unwrap();
        let v = apply_all(&mut c, &mut b, 1, &[entry(2, 2, b"z")]).unwrap_err();
        assert_eq!(v.invariant, SM_SAFETY);
        // Same term, different data.
        let mut c = Checker::new(2);
        let (mut a, mut b) = (genesis(), genesis());
        apply_all(&mut c, &mut a, 0, &[entry(1, 1, b"x")]).unwrap();
        let v = apply_all(&mut c, &mut b, 1, &[entry(1, 1, b"q")]).unwrap_err();
        assert_eq!(v.invariant, SM_SAFETY);
        // A gap.
        let mut c = Checker::new(1);
        let mut a = genesis();
        let v = apply_all(&mut c, &mut a, 0, &[entry(2, 1, b"x")]).unwrap_err();
        assert_eq!(v.invariant, SM_SAFETY);
    }

    #[test]
    fn catches_a_snapshot_that_differs_from_the_history() {
        let mut c = Checker::new(2);
        let mut a = genesis();
        apply_all(&mut c, &mut a, 0, &[entry(1, 1, b"x"), entry(2, 1, b"y")]).unwrap();
        c.on_restore(1, &a).unwrap();
        let mut forged = genesis();
        forged.apply(&entry(1, 1, b"x"));
        forged.apply(&entry(2, 1, b"Y"));
        assert_eq!(c.on_restore(1, &forged).unwrap_err().invariant, SM_SAFETY);
    }

    #[test]
    fn catches_a_lost_acknowledged_write() {
        // The proposer applies another payload at its proposal's index and term.
        let mut c = Checker::new(2);
        let mut a = genesis();
        c.on_propose(0, 0, 1, 1, Bytes::from_static(b"mine"));
        let v = apply_all(&mut c, &mut a, 0, &[entry(1, 1, b"other")]).unwrap_err();
        assert_eq!(v.invariant, LOST_WRITE);
        // An acknowledged write missing from the final history.
        let mut c = Checker::new(1);
        let mut a = genesis();
        c.on_propose(0, 0, 1, 1, Bytes::from_static(b"w"));
        apply_all(&mut c, &mut a, 0, &[entry(1, 1, b"w")]).unwrap();
        assert_eq!(c.max_acked_index, 1);
        c.check_acked().unwrap();
        c.truncate_history(0);
        let v = c.check_acked().unwrap_err();
        assert_eq!(v.invariant, LOST_WRITE);
        // A proposal overwritten by a later term is not acknowledged.
        let mut c = Checker::new(1);
        let mut a = genesis();
        c.on_propose(0, 0, 1, 1, Bytes::from_static(b"w"));
        apply_all(&mut c, &mut a, 0, &[entry(1, 2, b"v")]).unwrap();
        assert_eq!(c.acks, 0);
    }

    #[test]
    fn catches_a_stale_read() {
        let mut c = Checker::new(2);
        let mut a = genesis();
        c.on_propose(0, 0, 1, 1, Bytes::from_static(b"w1"));
        c.on_propose(0, 0, 2, 1, Bytes::from_static(b"w2"));
        apply_all(&mut c, &mut a, 0, &[entry(1, 1, b"w1"), entry(2, 1, b"w2")]).unwrap();
        c.on_read_request(7);
        c.on_read_served(1, 7, 2, 2).unwrap();
        c.on_read_request(8);
        let v = c.on_read_served(1, 8, 1, 2).unwrap_err();
        assert_eq!(v.invariant, STALE_READ);
        // A correct read index served from a state machine lagging behind it.
        c.on_read_request(9);
        let v = c.on_read_served(1, 9, 2, 1).unwrap_err();
        assert_eq!(v.invariant, STALE_READ);
    }

    #[test]
    fn catches_log_mismatch() {
        let mut c = Checker::new(2);
        c.on_durable(0, &entry(1, 1, b"a"), Some(0)).unwrap();
        c.on_durable(0, &entry(2, 1, b"b"), Some(1)).unwrap();
        c.on_durable(1, &entry(2, 1, b"b"), Some(1)).unwrap();
        let v = c.on_durable(1, &entry(2, 1, b"c"), Some(1)).unwrap_err();
        assert_eq!(v.invariant, LOG_MATCHING);
        let v = c.on_durable(1, &entry(2, 1, b"b"), Some(3)).unwrap_err();
        assert_eq!(v.invariant, LOG_MATCHING);
    }

    #[test]
    fn catches_leader_without_committed_entry_and_lease_overlap() {
        let mut c = Checker::new(3);
        let mut log = MemStorage::new();
        log.append(&[entry(1, 1, b"a"), entry(2, 1, b"b")]).unwrap();
        let full = LogView {
            snapshot_index: 0,
            snapshot_term: 0,
            log: &log,
        };
        c.on_commit(0, 1, 2, &full).unwrap();
        assert_eq!(c.max_committed_term, 1);
        let mut short = MemStorage::new();
        short.append(&[entry(1, 1, b"a")]).unwrap();
        let view = LogView {
            snapshot_index: 0,
            snapshot_term: 0,
            log: &short,
        };
        c.check_new_leader_log(1, 2, &full).unwrap();
        let v = c.check_new_leader_log(1, 2, &view).unwrap_err();
        assert_eq!(v.invariant, LEADER_COMPLETENESS);
        // A node of term 1 with a lease is fine; one of term 0 is not.
        c.check_lease(0, 1).unwrap();
        assert_eq!(c.check_lease(2, 0).unwrap_err().invariant, LEASE);
        // Another node committing a different term at index 2.
        let mut other = MemStorage::new();
        other
            .append(&[entry(1, 1, b"a"), entry(2, 3, b"z")])
            .unwrap();
        let view = LogView {
            snapshot_index: 0,
            snapshot_term: 0,
            log: &other,
        };
        let v = c.on_commit(2, 3, 2, &view).unwrap_err();
        assert_eq!(v.invariant, LEADER_COMPLETENESS);
        // A follower's durable write replacing committed index 2.
        c.check_not_overwriting_committed(2, 2, 1, 1).unwrap();
        c.check_not_overwriting_committed(2, 2, 0, 3).unwrap();
        let v = c.check_not_overwriting_committed(2, 2, 1, 3).unwrap_err();
        assert_eq!(v.invariant, LEADER_COMPLETENESS);
    }
}
