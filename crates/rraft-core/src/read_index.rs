//! ReadIndex: linearizable reads without a log entry (Raft thesis §6.4).

use bytes::Bytes;

use super::api::*;
use super::quorum;
use super::raft::Raft;
use super::storage::LogStorage;

impl<S: LogStorage> Raft<S> {
    /// Asks for a linearizable read point; the answer is a `ReadState` with
    /// the same `context` in a later Ready. A follower forwards to its leader.
    pub fn read_index(&mut self, context: Bytes) -> Result<(), Error> {
        if self.role == Role::Leader {
            // The read's heartbeat round wakes the followers.
            self.wake_with_round(false);
            self.leader_read(context, None);
            return Ok(());
        }
        match (self.role, self.leader.clone()) {
            (Role::Follower | Role::Learner, Some(l)) => {
                let mut m = self.new_message(&l, MessageType::ReadIndex);
                m.context = context;
                self.send(m);
                Ok(())
            }
            _ => Err(Error::NotLeader { leader: None }),
        }
    }

    /// Leader: confirm leadership with a quorum, then answer `from` (None =
    /// this node) with the commit index as of the request.
    pub(crate) fn leader_read(&mut self, context: Bytes, from: Option<PeerId>) {
        if !self.log.match_term(self.log.committed, self.term) {
            // Our commit index may lag the previous leader's until an entry
            // of this term commits.
            self.reads.waiting.push((context, from));
            return;
        }
        let index = self.log.committed;
        let me = self.cfg.id.clone();
        if quorum::joint_has_majority(self.confs.current(), &|id: &str| id == me) {
            self.answer_read(index, context, from);
            return;
        }
        let hctx = self.reads.add(index, context, from);
        self.bcast_heartbeat_with(hctx);
    }

    pub(crate) fn answer_read(&mut self, index: u64, context: Bytes, from: Option<PeerId>) {
        match from {
            None => self.read_states.push(ReadState { index, context }),
            Some(peer) => {
                let mut m = self.new_message(&peer, MessageType::ReadIndexResponse);
                m.index = index;
                m.context = context;
                self.send(m);
            }
        }
    }

    /// A heartbeat answer acknowledged read request `seq` (and older ones).
    pub(crate) fn ack_read(&mut self, seq: u64, peer: &PeerId) {
        let me = self.cfg.id.clone();
        let confirmed = match self.reads.ack(seq, peer) {
            Some(req) => {
                let acks = &req.acks;
                quorum::joint_has_majority(self.confs.current(), &|id: &str| {
                    id == me || acks.contains(id)
                })
            }
            None => false,
        };
        if confirmed {
            for r in self.reads.advance(seq) {
                self.answer_read(r.index, r.context, r.from);
            }
        }
    }

    /// Requests held for the first commit of the term.
    pub(crate) fn release_waiting_reads(&mut self) {
        if self.reads.waiting.is_empty() || !self.log.match_term(self.log.committed, self.term) {
            return;
        }
        for (ctx, from) in std::mem::take(&mut self.reads.waiting) {
            self.leader_read(ctx, from);
        }
    }

    pub(crate) fn handle_read_index(&mut self, m: Message) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Ok(());
        }
        self.leader_read(m.context, Some(m.from));
        Ok(())
    }

    pub(crate) fn handle_read_index_response(&mut self, m: Message) -> Result<(), Error> {
        if self.role == Role::Leader || self.leader.as_ref() != Some(&m.from) {
            return Ok(());
        }
        self.read_states.push(ReadState {
            index: m.index,
            context: m.context,
        });
        Ok(())
    }
}
