//! The leader lease and the rules it rests on.
//!
//! - Vote refusal: a node that heard from a current leader within
//!   `election + drift` ticks ignores (pre-)vote requests (except the votes a
//!   leadership transfer triggers), and so does a leader.
//! - Check-quorum: a leader steps down when it has not heard from a quorum
//!   within an election timeout.
//! - The lease: a leader whose heartbeats a quorum answered may serve reads
//!   without a heartbeat round until `election − drift` ticks after the
//!   answered heartbeat was sent, since no follower that received it can
//!   vote for anyone else before then.

use bytes::Bytes;

use super::api::*;
use super::membership::same_id;
use super::progress::Progress;
use super::quorum;
use super::raft::{QuorumShape, Raft};
use super::storage::LogStorage;
use super::transfer::TRANSFER_CONTEXT;

impl<S: LogStorage> Raft<S> {
    /// A (pre-)vote request of a higher term that this node ignores because
    /// a leader is alive (see [`Raft::in_lease`]). The Vote of a transfer
    /// target (after TimeoutNow) bypasses the lease.
    pub(crate) fn ignores_vote_request_in_lease(&self, m: &Message, kind: MessageType) -> bool {
        if !matches!(kind, MessageType::PreVote | MessageType::Vote) {
            return false;
        }
        let transfer = kind == MessageType::Vote && m.context.as_ref() == TRANSFER_CONTEXT;
        if !transfer && self.in_lease() {
            log::debug!(
                "{} ignores {:?} from {}: leader lease",
                self.cfg.id,
                kind,
                m.from
            );
            return true;
        }
        false
    }

    /// True while a current leader was heard from recently: (Pre)Vote
    /// requests are then ignored.
    pub(crate) fn in_lease(&self) -> bool {
        if self.role == Role::Leader {
            return true;
        }
        let window = self.cfg.election_ticks as u64 + self.cfg.max_clock_drift_ticks as u64;
        match self.leader_contact {
            Some(t) => self.now.saturating_sub(t) < window,
            None => false,
        }
    }

    /// Leader tick, check-quorum: a leader that has not heard from a quorum
    /// within the election timeout steps down (true), so a partitioned
    /// leader stops serving before a new one can be elected.
    pub(crate) fn step_down_without_quorum(&mut self) -> bool {
        if self.check_quorum_active() {
            return false;
        }
        log::info!(
            "{} steps down: no quorum heard within the election timeout",
            self.cfg.id
        );
        let term = self.term;
        self.become_follower(term, None);
        true
    }

    /// Check-quorum: has a quorum (of each half when joint) been heard from
    /// within the election timeout? Self counts.
    fn check_quorum_active(&self) -> bool {
        match self.quorum_shape() {
            Some(shape) => self.check_quorum_flagged(shape),
            None => self.check_quorum_by_names(),
        }
    }

    /// [`Raft::check_quorum_active`] counting the progress set's voter
    /// flags (see [`Raft::flag_voters`]).
    pub(crate) fn check_quorum_flagged(&self, shape: QuorumShape) -> bool {
        let window = self.cfg.election_ticks as u64;
        let (mut yes, mut yes_old) = (
            usize::from(shape.self_voter),
            usize::from(shape.self_old_voter),
        );
        for p in self.prs.values() {
            if self
                .now
                .saturating_sub(p.last_heard.unwrap_or(p.match_tick))
                <= window
            {
                yes += usize::from(p.voter);
                yes_old += usize::from(p.old_voter);
            }
        }
        quorum::joint_majority_counted((yes, shape.voters), (yes_old, shape.old_voters))
    }

    /// [`Raft::check_quorum_active`] looking each voter up by name.
    pub(crate) fn check_quorum_by_names(&self) -> bool {
        let window = self.cfg.election_ticks as u64;
        let ok = |id: &str| {
            if same_id(id, &self.cfg.id) {
                return true;
            }
            self.prs.get(id).is_some_and(|p| {
                self.now
                    .saturating_sub(p.last_heard.unwrap_or(p.match_tick))
                    <= window
            })
        };
        quorum::joint_has_majority(self.confs.current(), &ok)
    }

    /// Leader lease: true while a quorum was heard from within the lease.
    pub fn is_lease_valid(&self) -> bool {
        self.lease_expiry().is_some()
    }

    /// The tick at which the leader lease ends, if it holds now. The lease
    /// counts from the tick at which the heartbeat that a quorum answered
    /// was sent (its stamp), so it ends `election − drift` ticks after that
    /// send, before any follower that received it can vote again. A runtime
    /// turns this tick into a monotonic deadline.
    pub fn lease_expiry(&self) -> Option<u64> {
        if self.role != Role::Leader
            || !self.cfg.leader_lease
            || self.quiescent
            || self.transfer.is_some()
            || self.timeout_now_term == self.term
        {
            // After TimeoutNow the target may win with lease-bypassing votes
            // at any time (even after the transfer timed out).
            return None;
        }
        if !self.log.match_term(self.log.committed, self.term) {
            // Until an entry of its term commits, the leader may not know
            // every entry its predecessor committed: no lease reads yet.
            return None;
        }
        let lease = self
            .cfg
            .election_ticks
            .saturating_sub(self.cfg.max_clock_drift_ticks) as u64;
        if lease == 0 {
            return None;
        }
        let until = match self.quorum_shape() {
            Some(shape) => self.lease_until_flagged(shape, lease),
            None => self.lease_until_by_names(lease),
        };
        (until > self.now).then_some(until)
    }

    /// The tick until which a quorum's answers hold a lease of `lease`
    /// ticks (0: none), counting the progress set's voter flags.
    pub(crate) fn lease_until_flagged(&self, shape: QuorumShape, lease: u64) -> u64 {
        let expiry = |p: &Progress| p.lease_heard.map_or(0, |t| t.saturating_add(lease));
        let of_set = |n: usize, own: bool, member: fn(&Progress) -> bool| {
            let own = own.then_some(u64::MAX);
            let peers = self.prs.values().filter(|p| member(p)).map(expiry);
            quorum::majority_value(n, own.into_iter().chain(peers))
        };
        let until = of_set(shape.voters, shape.self_voter, |p| p.voter).min(of_set(
            shape.old_voters,
            shape.self_old_voter,
            |p| p.old_voter,
        ));
        if until == u64::MAX {
            0
        } else {
            until
        }
    }

    /// [`Raft::lease_until_flagged`] looking each voter up by name.
    pub(crate) fn lease_until_by_names(&self, lease: u64) -> u64 {
        let expiry_of = |id: &str| {
            if same_id(id, &self.cfg.id) {
                return u64::MAX;
            }
            self.prs
                .get(id)
                .and_then(|p| p.lease_heard)
                .map_or(0, |t| t.saturating_add(lease))
        };
        quorum::joint_committed_index(self.confs.current(), &expiry_of)
    }

    /// As [`Raft::read_index`], but a leader whose lease holds answers at
    /// once with its commit index (no heartbeat round): the lease guarantees
    /// that no other leader committed anything meanwhile. Without a valid
    /// lease this is `read_index`.
    pub fn lease_read(&mut self, context: Bytes) -> Result<(), Error> {
        // A quiescent leader holds no lease: it wakes, and the read takes
        // a heartbeat round (which wakes the followers).
        if self.role == Role::Leader {
            self.wake_with_round(false);
        }
        if self.role == Role::Leader && self.is_lease_valid() {
            let index = self.log.committed;
            self.answer_read(index, context, None);
            return Ok(());
        }
        self.read_index(context)
    }

    /// Test fixtures: forget the startup vote-refusal window.
    #[cfg(test)]
    pub(crate) fn clear_startup_lease(&mut self) {
        self.leader_contact = None;
    }
}
