//! A follower's answers to the heartbeats that change nothing but the
//! leader's contact and, perhaps, the commit index, without a turn of its
//! driver.
//!
//! A heartbeat of the follower's leader in the current term changes
//! nothing in the core but the time of the leader's last contact (which
//! resets the election timer and starts the refusal of votes) and the
//! commit index, and its answer is made of the term, the log's last index
//! and what the heartbeat carries. After each turn the driver writes those
//! values into a [`QuietBeats`] record; a deliverer holding the driver's
//! claim answers such a heartbeat from the record alone, and the driver's
//! next turn, whoever runs it, first hands the core what the heartbeats
//! told ([`QuietBeats::take_heard`]): the core's clock is advanced to the
//! tick the last heartbeat was answered in, then the contact is noted
//! (`Raft::heard_from_leader`) and the newest commit index they carried is
//! stepped (`Raft::commit_from_leader`), then the clock catches up as
//! usual. So the core ends up where stepping the heartbeats in that tick
//! would have left it: the contact is not noted earlier (vote refusal lasts
//! no longer than a stepped heartbeat's) nor later (no election timer runs
//! late), and the commit index is the same, only stepped later.
//!
//! How late: a commit index waits for the follower's next turn, which its
//! leader's next Append (carrying the commit index anyway), a command or a
//! tick brings; while one waits, the next heartbeat with a newer commit
//! index takes a whole turn. So a follower whose leader sends only
//! heartbeats steps a commit index at most one heartbeat period after a
//! stepped heartbeat would have, and applies it then. Nothing waits for a
//! follower's commit index but its own reads: while one waits, a newer
//! commit index takes a whole turn.
//!
//! The heartbeat's commit index is at most what the follower acknowledged
//! to the leader in the term (`min(matched, commit)`, see
//! `Raft::bcast_heartbeat_with`), so the entries up to it in the follower's
//! log are the leader's; beyond the follower's last index the follower
//! lost acknowledged entries, which only the core handles (no votes until
//! it caught up): such a heartbeat takes a whole turn.
//!
//! Why: with 1,000 groups a follower gets a heartbeat of every group it
//! follows each heartbeat period, and a whole turn reads dozens of cold
//! cache lines of the driver, its core, its queue and its clock; the record
//! is a few lines, next to nothing else. Under load most heartbeats carry a
//! commit index newer than the follower's.
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
//!   with a commit index at most the follower's last index (and, when newer
//!   than the follower's, none waiting already and no read of the follower
//!   waiting for one), not marked `quiesce`.
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
    /// A newer commit index may wait for the next turn (no read of this
    /// follower waits for one).
    commit_may_wait: bool,
    /// The first tick at which the election timer (or a planned campaign)
    /// fires.
    fires_at: u64,
    /// The last tick a heartbeat was answered in, not yet handed to the
    /// core.
    heard: Option<u64>,
    /// The highest commit index those heartbeats carried beyond
    /// `committed`, not yet handed to the core (0: none).
    learned: u64,
    leader: String,
    id: crate::core::PeerId,
    group: Arc<str>,
    net: Arc<dyn Network>,
    clock: Arc<dyn Clock>,
    started: Duration,
    tick_nanos: u128,
}

/// What the heartbeats answered from a [`QuietBeats`] record since the
/// last turn tell the core.
pub(crate) struct Heard {
    /// The tick the last one was answered in.
    pub(crate) tick: u64,
    /// A commit index newer than the core's that one carried.
    pub(crate) commit: Option<u64>,
}

/// The follower's state a [`QuietBeats`] record is armed with.
pub(crate) struct Armed<'a> {
    pub(crate) term: u64,
    pub(crate) leader: &'a str,
    pub(crate) committed: u64,
    pub(crate) last: u64,
    pub(crate) commit_may_wait: bool,
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
            commit_may_wait: false,
            fires_at: 0,
            heard: None,
            learned: 0,
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
        self.commit_may_wait = s.commit_may_wait;
        self.fires_at = s.fires_at;
        if self.leader != s.leader {
            self.leader.clear();
            self.leader.push_str(s.leader);
        }
    }

    /// The tick of the last heartbeat answered from the record since the
    /// last turn, and the newer commit index one of them carried, which
    /// the turn hands the core before anything else.
    pub(crate) fn take_heard(&mut self) -> Option<Heard> {
        let tick = self.heard.take()?;
        let learned = std::mem::take(&mut self.learned);
        Some(Heard {
            tick,
            commit: (learned > self.committed).then_some(learned),
        })
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
        if !beats.iter().all(|m| self.answerable(m)) {
            return false;
        }
        // A newer commit index waits for the next turn, unless one already
        // does: then this heartbeat takes the turn, so a follower whose
        // leader sends nothing but heartbeats steps a commit index at most
        // one heartbeat period after it could have.
        let commit = beats.iter().map(|m| m.commit).max().unwrap_or(0);
        if commit > self.committed && (!self.commit_may_wait || self.learned > self.committed) {
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
        if commit > self.committed {
            self.learned = commit;
        }
        QUIET_BEAT_ANSWERS.fetch_add(beats.len() as u64, Ordering::Relaxed);
        for m in beats {
            let answer = crate::core::heartbeat_answer(self.id.clone(), self.term, self.last, m);
            self.net.send(&self.group, answer);
        }
        true
    }

    /// A heartbeat of the record's leader and term whose only news, if
    /// any, is a commit index within the follower's log.
    fn answerable(&self, m: &Message) -> bool {
        m.msg_type == MessageType::Heartbeat as i32
            && m.term == self.term
            && m.from == self.leader
            && (m.to.is_empty() || m.to == self.id)
            && m.commit <= self.last
            && !m.quiesce
            && m.entries.is_empty()
    }
}
