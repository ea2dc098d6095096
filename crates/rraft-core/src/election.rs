//! Elections: pre-vote and vote (a transfer's TimeoutNow is in `transfer.rs`,
//! the vote refusal while a leader is alive in `lease.rs`).

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

    /// Enters `role` (pre-candidate or candidate) with only our own vote
    /// counted and a fresh election timer; true if that vote alone wins.
    fn start_counting_votes(&mut self, role: Role) -> bool {
        self.end_quiescence();
        self.role = role;
        self.leader = None;
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
            .cloned()
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
        self.term += 1;
        self.vote = self.cfg.id.clone();
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
                self.vote = m.from.clone();
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
