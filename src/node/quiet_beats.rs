//! A follower's answers to the heartbeats that change nothing, without a
//! turn of its driver.
//!
//! A heartbeat of the follower's leader in the current term, whose commit
//! index the follower already has, changes nothing in the core but the time
//! of the leader's last contact (which resets the election timer and starts
//! the refusal of votes), and its answer is made of the term, the log's last
//! index and what the heartbeat carries. After each turn the driver writes
//! those values into a [`QuietBeats`] record; a deliverer holding the
//! driver's claim answers such a heartbeat from the record alone, and the
//! driver's next turn, whoever runs it, first hands the core the time of the
//! last one ([`QuietBeats::take_heard`]): the core's clock is advanced to the
//! tick the heartbeat was answered in, then the contact is noted
//! (`Raft::heard_from_leader`), then the clock catches up as usual. So the
//! core ends up exactly where stepping the heartbeat in that tick would have
//! left it: the contact is not noted earlier (vote refusal lasts no longer than
//! a stepped heartbeat's) nor later (no election timer runs late).
//!
//! Why: with 1,000 groups a follower gets a heartbeat of every group it
//! follows each heartbeat period, and a whole turn reads dozens of cold
//! cache lines of the driver, its core, its queue and its clock; the record
//! is a few lines, next to nothing else.
//!
//! Rules:
//! - Only while the claim is held (no turn runs meanwhile, so the record
//!   is what the core holds) and no other work is pending on the claim (a
//!   message queued before the heartbeat, e.g. an Append of the same leader,
//!   must be stepped first).
//! - Only a follower that knows its leader, is not quiescent, has not
//!   failed, runs no mutation, and whose election timer (or planned
//!   campaign) does not fire by the tick of the heartbeat: the ticks that
//!   pass before the contact would change nothing either.
//! - Only a heartbeat of that leader, in that term, addressed to this node,
//!   with a commit index at most the follower's, not marked `quiesce`.
//!
//! Anything else takes a whole turn.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::network::Network;
use crate::clock::Clock;
use crate::core::{Message, MessageType};

static QUIET_BEAT_ANSWERS: AtomicU64 = AtomicU64::new(0);

/// Heartbeats this process's followers answered without a turn of their
/// driver (see [`QuietBeats`]).
pub fn quiet_beat_answers() -> u64 {
    QUIET_BEAT_ANSWERS.load(Ordering::Relaxed)
}

/// What a follower's answer to a heartbeat that changes nothing needs,
/// written by its driver after each turn (see the module's doc).
pub(crate) struct QuietBeats {
    /// The follower may answer from this record.
    armed: bool,
    term: u64,
    committed: u64,
    last: u64,
    /// The first tick at which the election timer (or a planned campaign)
    /// fires.
    fires_at: u64,
    /// The last tick a heartbeat was answered in, not yet handed to the
    /// core.
    heard: Option<u64>,
    leader: String,
    id: crate::core::PeerId,
    group: Arc<str>,
    net: Arc<dyn Network>,
    clock: Arc<dyn Clock>,
    started: Duration,
    tick_nanos: u128,
}

/// The follower's state a [`QuietBeats`] record is armed with.
pub(crate) struct Armed<'a> {
    pub(crate) term: u64,
    pub(crate) leader: &'a str,
    pub(crate) committed: u64,
    pub(crate) last: u64,
    pub(crate) fires_at: u64,
}

impl QuietBeats {
    pub(crate) fn new(
        id: &str,
        group: Arc<str>,
        net: Arc<dyn Network>,
        clock: Arc<dyn Clock>,
        started: Duration,
        tick: Duration,
    ) -> QuietBeats {
        QuietBeats {
            armed: false,
            term: 0,
            committed: 0,
            last: 0,
            fires_at: 0,
            heard: None,
            leader: String::new(),
            id: id.into(),
            group,
            net,
            clock,
            started,
            tick_nanos: tick.as_nanos().max(1),
        }
    }

    /// Sets the record after a turn: `Some` while the node may answer
    /// heartbeats from it.
    pub(crate) fn arm(&mut self, state: Option<Armed<'_>>) {
        let Some(s) = state else {
            self.armed = false;
            return;
        };
        self.armed = true;
        self.term = s.term;
        self.committed = s.committed;
        self.last = s.last;
        self.fires_at = s.fires_at;
        if self.leader != s.leader {
            self.leader.clear();
            self.leader.push_str(s.leader);
        }
    }

    /// The tick of the last heartbeat answered from the record since the
    /// last turn, which the turn hands the core before anything else.
    pub(crate) fn take_heard(&mut self) -> Option<u64> {
        self.heard.take()
    }

    /// Answers every heartbeat of `msgs` and takes them, if each is one
    /// that changes nothing (see the module's doc); leaves `msgs` alone
    /// otherwise. The caller holds the driver's claim with nothing else
    /// pending.
    pub(crate) fn answer(&mut self, msgs: &mut Option<Vec<Message>>) -> bool {
        if !self.armed {
            return false;
        }
        let Some(beats) = msgs.as_ref() else {
            return false;
        };
        if !beats.iter().all(|m| self.changes_nothing(m)) {
            return false;
        }
        let elapsed = self.clock.now().saturating_sub(self.started);
        let tick = (elapsed.as_nanos() / self.tick_nanos) as u64;
        if tick >= self.fires_at {
            return false;
        }
        let Some(beats) = msgs.take() else {
            return false;
        };
        self.heard = Some(self.heard.map_or(tick, |t| t.max(tick)));
        QUIET_BEAT_ANSWERS.fetch_add(beats.len() as u64, Ordering::Relaxed);
        for m in beats {
            let answer = crate::core::heartbeat_answer(self.id.clone(), self.term, self.last, m);
            self.net.send(&self.group, answer);
        }
        true
    }

    fn changes_nothing(&self, m: &Message) -> bool {
        m.msg_type == MessageType::Heartbeat as i32
            && m.term == self.term
            && m.from == self.leader
            && (m.to.is_empty() || m.to == self.id)
            && m.commit <= self.committed
            && !m.quiesce
            && m.entries.is_empty()
    }
}
