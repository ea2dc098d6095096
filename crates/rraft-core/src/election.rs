//! Elections: pre-vote and vote (a transfer's TimeoutNow is in `transfer.rs`,
//! the vote refusal while a leader is alive in `lease.rs`).
//!
//! A follower campaigns when its randomized election timer (uniform in
//! [T, 2T) since it last heard from the leader) expires, or as planned once
//! its leader is suspected to have failed (`peer_suspected`, from the
//! runtime, which saw the leader's server go away):
//! - The plan replaces the timer. The follower pre-votes when the vote
//!   refusal window (`election + drift` ticks after its last contact with
//!   the leader, see `lease.rs`) has passed, since the other followers
//!   refuse (pre-)votes until theirs has; never before.
//! - The followers go in an order that every replica computes alike (the
//!   voters other than the suspected leader, shuffled by
//!   `Config::group_seed` and the term): the k-th waits k × T/4 more. The
//!   first one's pre-vote succeeds unless its log is behind; a timer
//!   firing at the same moment would split the vote.
//! - A planned pre-vote that gets no answer (the others' windows may end a
//!   moment later than the planner's) is repeated every heartbeat interval
//!   for up to T; then the randomized timer takes over again.
//! - Any message from the leader, or any role change, cancels the plan.

use super::api::*;
use super::membership::ConfigurationExt;
use super::quorum::{self, VoteResult};
use super::raft::Raft;
use super::storage::LogStorage;
use super::transfer::TRANSFER_CONTEXT;

impl<S: LogStorage> Raft<S> {
    /// Election timeout or `campaign()`: ask for pre-votes at term+1 without
    /// touching our own term.
    pub(crate) fn campaign_pre_vote(&mut self) {
        if !self.promotable() {
            return;
        }
        log::debug!(
            "{} starts a pre-vote for term {}",
            self.cfg.id,
            self.term + 1
        );
        if self.start_counting_votes(Role::PreCandidate) {
            self.become_candidate(false);
            return;
        }
        let (index, log_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.voters_except_self() {
            let mut m = self.new_message(&peer, MessageType::PreVote);
            m.term = self.term + 1;
            m.index = index;
            m.log_term = log_term;
            self.send(m);
        }
    }

    /// Follower whose leader `leader` is suspected to have failed: plans a
    /// pre-vote for when the vote refusal window has passed, in the group's
    /// campaign order, and campaigns now if that is due already.
    pub(crate) fn plan_campaign(&mut self, leader: &str) {
        if self.role != Role::Follower
            || self.leader.as_deref() != Some(leader)
            || self.campaign_due.is_some()
            || self.lost_acknowledged
            || !self.promotable()
        {
            return;
        }
        let window = self.cfg.election_ticks as u64 + self.cfg.max_clock_drift_ticks as u64;
        let refusal_ends = self
            .leader_contact
            .map_or(self.now, |t| t.saturating_add(window))
            .max(self.now);
        let stagger = (self.cfg.election_ticks as u64 / 4).max(1);
        let due = refusal_ends + self.campaign_rank(leader) * stagger;
        log::debug!(
            "{} plans a campaign at tick {due} (now {}): {leader} is suspected",
            self.cfg.id,
            self.now
        );
        self.campaign_due = Some(due);
        self.campaign_retry_until = due + self.cfg.election_ticks as u64;
        self.campaign_if_due();
    }

    /// This node's place among the voters other than `leader`, in an order
    /// that every replica of the group computes alike (same seed, term and
    /// configuration) and that differs between groups and terms.
    pub(crate) fn campaign_rank(&self, leader: &str) -> u64 {
        let key = |p: &PeerId| {
            let mut x = self.cfg.group_seed ^ super::raft::hash_id(p) ^ self.term.rotate_left(32);
            // splitmix64's finalizer: every input bit moves the order.
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        let mut order: Vec<(u64, PeerId)> = self
            .voters_except_self()
            .into_iter()
            .chain(std::iter::once(self.cfg.id.clone()))
            .filter(|p| p != leader)
            .map(|p| (key(&p), p))
            .collect();
        order.sort();
        order
            .iter()
            .position(|(_, p)| *p == self.cfg.id)
            .unwrap_or(0) as u64
    }

    /// Runs the planned pre-vote if it is due, and plans its repetition
    /// while it waits for answers.
    pub(crate) fn campaign_if_due(&mut self) {
        let Some(due) = self.campaign_due else {
            return;
        };
        if self.now < due || !self.promotable() || self.lost_acknowledged {
            return;
        }
        let retry = self.now + self.cfg.heartbeat_ticks.max(1) as u64;
        let until = self.campaign_retry_until;
        self.campaign_due = None;
        self.campaign_pre_vote();
        if self.role == Role::PreCandidate && retry <= until {
            self.campaign_due = Some(retry);
        }
    }

    /// Enters `role` (pre-candidate or candidate) with only our own vote
    /// counted and a fresh election timer; true if that vote alone wins.
    fn start_counting_votes(&mut self, role: Role) -> bool {
        self.end_quiescence();
        self.role = role;
        self.set_leader(None);
        // We gave up on the leader: do not refuse others' (pre-)votes.
        self.leader_contact = None;
        self.votes.clear();
        self.votes.insert(self.cfg.id.clone(), true);
        self.reset_election_timer();
        quorum::joint_vote_result(self.confs.current(), &self.votes) == VoteResult::Won
    }

    fn voters_except_self(&self) -> Vec<PeerId> {
        let c = self.confs.current();
        let mut v: Vec<PeerId> = c
            .voters
            .iter()
            .chain(c.old_voters.iter())
            .filter(|p| **p != self.cfg.id)
            .map(PeerId::from)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// A real election: term+1, vote for self. The Vote requests leave only
    /// once the new term and vote are durable.
    pub(crate) fn become_candidate(&mut self, transfer: bool) {
        if !self.promotable() {
            return;
        }
        self.campaign_due = None;
        self.term += 1;
        self.set_vote(self.cfg.id.clone());
        log::debug!("{} campaigns for term {}", self.cfg.id, self.term);
        if self.start_counting_votes(Role::Candidate) {
            self.become_leader();
            return;
        }
        let (index, log_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.voters_except_self() {
            let mut m = self.new_message(&peer, MessageType::Vote);
            m.index = index;
            m.log_term = log_term;
            if transfer {
                m.context = bytes::Bytes::from_static(TRANSFER_CONTEXT);
            }
            self.send_after_persist(m);
        }
    }

    /// (Pre)Vote request at our term (or a PreVote for a later term).
    pub(crate) fn handle_vote_request(
        &mut self,
        m: Message,
        kind: MessageType,
    ) -> Result<(), Error> {
        let pre = kind == MessageType::PreVote;
        let can_vote = !self.lost_acknowledged
            && (self.vote == m.from
                || (self.vote.is_empty() && self.leader.is_none())
                || (pre && m.term > self.term));
        let resp_kind = if pre {
            MessageType::PreVoteResponse
        } else {
            MessageType::VoteResponse
        };
        if can_vote && self.log.is_up_to_date(m.index, m.log_term) {
            let mut resp = self.new_message(&m.from, resp_kind);
            if pre {
                resp.term = m.term;
                self.send(resp);
            } else {
                self.set_vote(m.from.clone());
                self.reset_election_timer();
                // The vote is in the hard state: answer once it is durable.
                self.send_after_persist(resp);
            }
        } else {
            let mut resp = self.new_message(&m.from, resp_kind);
            resp.reject = true;
            self.send(resp);
        }
        Ok(())
    }

    pub(crate) fn handle_vote_response(
        &mut self,
        m: Message,
        kind: MessageType,
    ) -> Result<(), Error> {
        let expected = match kind {
            MessageType::PreVoteResponse => Role::PreCandidate,
            _ => Role::Candidate,
        };
        if self.role != expected {
            return Ok(());
        }
        if kind == MessageType::PreVoteResponse && !m.reject && m.term != self.term + 1 {
            return Ok(());
        }
        if !self.confs.current().is_voter(&m.from) {
            return Ok(());
        }
        self.votes.entry(m.from.clone()).or_insert(!m.reject);
        match quorum::joint_vote_result(self.confs.current(), &self.votes) {
            VoteResult::Won => {
                if expected == Role::PreCandidate {
                    self.become_candidate(false);
                } else {
                    self.become_leader();
                }
            }
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, None);
            }
            VoteResult::Pending => {}
        }
        Ok(())
    }
}
