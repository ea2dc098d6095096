//! Quiescence: an idle group stops ticking until something wakes it.
//!
//! - A leader quiesces when, for `Config::quiesce_ticks` ticks in a row, its
//!   group was quiet: no transfer, membership change or read outstanding,
//!   its log all durable, committed and applied, and every peer replicating,
//!   caught up (match = last index) and answering heartbeats (one sent
//!   within the last two heartbeat intervals was answered). It then sends a last heartbeat round marked `quiesce` and
//!   stops: no heartbeats, no check-quorum, while its time keeps counting.
//! - A follower or learner that receives that heartbeat from its leader at
//!   its term, holding exactly the leader's log (last index = commit = the
//!   heartbeat's commit) and not recovering lost entries, stops its
//!   election timer. One that does not stays awake: at worst it campaigns
//!   after its timeout, which wakes the leader.
//! - A quiescent leader holds no lease (`lease_expiry` is None): a read
//!   wakes it, and a woken leader counts only heartbeats answered after it
//!   woke toward its lease. Vote refusal is unchanged (time since the
//!   leader was heard keeps counting), so a lease taken after waking rests
//!   on the usual argument.
//! - The group wakes: the leader on a proposal, a read, a membership change,
//!   a transfer or any message other than an answer to its heartbeats or
//!   Appends (and on such an answer that shows work to do); a follower on
//!   any message from its leader other than the quiesce heartbeat, on a
//!   role or term change, and on `peer_suspected(leader)`; anyone on
//!   `wake()`. A woken leader heartbeats at once (which wakes its
//!   followers) and gives every peer a fresh election timeout before
//!   check-quorum counts it; a woken follower starts a fresh election timer.
//! - Failure detection moves to the runtime: a quiescent node sends no
//!   heartbeats, so the runtime watches the servers hosting its peers and
//!   calls `peer_suspected`. A follower whose leader is suspected campaigns
//!   once the vote refusal window has passed, in the group's campaign order
//!   (see `election.rs`); a leader wakes and steps down by check-quorum if
//!   its quorum is gone.

use super::api::*;
use super::raft::Raft;
use super::storage::LogStorage;

impl<S: LogStorage> Raft<S> {
    /// True while the group sleeps on this node: the runtime need not tick it
    /// (ticks change nothing but the clock until it wakes).
    pub fn is_quiescent(&self) -> bool {
        self.quiescent
    }

    /// Ticks until this node's next timer that runs on ticks fires: its
    /// election timer, or a planned campaign. None for a leader (its
    /// heartbeats and checks run every tick) and for a quiescent group (no
    /// timer runs). A runtime may sleep through the ticks before (the
    /// core's clock catches up with every message anyway).
    pub fn ticks_until_timeout(&self) -> Option<u64> {
        if self.quiescent || self.role == Role::Leader {
            return None;
        }
        if let Some(due) = self.campaign_due {
            return Some(due.saturating_sub(self.now));
        }
        Some(u64::from(
            self.randomized_timeout
                .saturating_sub(self.election_elapsed),
        ))
    }

    /// Wakes the group on this node (no-op unless quiescent).
    pub fn wake(&mut self) {
        self.wake_with_round(true);
    }

    /// Wakes the group; a leader heartbeats at once when `round` (a read
    /// sends its own round, which wakes the followers as well).
    pub(crate) fn wake_with_round(&mut self, round: bool) {
        if !self.quiescent {
            return;
        }
        self.end_quiescence();
        log::debug!("{} wakes", self.cfg.id);
        if self.role == Role::Leader {
            let now = self.now;
            for pr in self.prs.values_mut() {
                // A fresh election timeout before check-quorum counts the
                // peer, as for a new leader; the lease starts from scratch.
                pr.last_heard = Some(now);
                pr.match_tick = now;
                pr.lease_heard = None;
            }
            self.heartbeat_elapsed = self.heartbeat_phase();
            self.election_elapsed = 0;
            if round {
                self.bcast_heartbeat();
            }
        } else {
            self.reset_election_timer();
        }
    }

    /// The runtime suspects that `peer` failed (its server stopped
    /// answering). A follower whose leader it is (woken if quiescent) plans
    /// a campaign for when the vote refusal window has passed, in the
    /// group's campaign order (`election.rs`), unless the leader is heard
    /// from meanwhile; a quiescent leader of whose group it is a member
    /// wakes (check-quorum then steps it down if its quorum is gone).
    pub fn peer_suspected(&mut self, peer: &str) {
        if self.quiescent {
            let concerned = match self.role {
                Role::Leader => self.prs.contains_key(peer),
                _ => self.leader.as_deref() == Some(peer),
            };
            if concerned {
                log::info!("{} wakes: {peer} is suspected to have failed", self.cfg.id);
                self.wake();
            }
        }
        // Awake or woken: a follower of the suspected leader campaigns as
        // soon as the others may vote (see `election.rs`).
        self.plan_campaign(peer);
    }

    /// Clears the flag without the leader's wake-up round (role changes).
    pub(crate) fn end_quiescence(&mut self) {
        self.quiescent = false;
        self.quiet_ticks = 0;
    }

    /// Leader: is the group idle and fully replicated, and (with
    /// `peers_alive`) did every peer answer a heartbeat sent within the last
    /// two heartbeat intervals (since the leader last woke)?
    pub(crate) fn is_quiet(&self, peers_alive: bool) -> bool {
        let last = self.log.last_index();
        let recent = 2 * self.cfg.heartbeat_ticks as u64;
        let now = self.now;
        self.role == Role::Leader
            && self.transfer.is_none()
            && self.change.is_none()
            && self.reads.is_empty()
            && !self.lost_acknowledged
            && self.confs.current_index() <= self.log.committed
            && self.log.persisted() == last
            && self.log.committed == last
            && self.log.applied == last
            && self.log.match_term(last, self.term)
            && self.prs.values().all(|p| {
                p.matched == last
                    && p.state == ProgressState::Replicate
                    && (!peers_alive
                        || p.lease_heard
                            .is_some_and(|t| now.saturating_sub(t) <= recent))
            })
    }

    /// Leader tick: counts quiet ticks; true once the group has been quiet
    /// for `quiesce_ticks` (never when quiescence is off).
    pub(crate) fn count_quiet_ticks(&mut self, ticks: u32) -> bool {
        if self.cfg.quiesce_ticks == 0 {
            return false;
        }
        if self.is_quiet(true) {
            self.quiet_ticks = self.quiet_ticks.saturating_add(ticks as u64);
        } else {
            self.quiet_ticks = 0;
        }
        self.quiet_ticks >= self.cfg.quiesce_ticks as u64
    }

    /// Leader: the last heartbeat round, marked, then sleep.
    pub(crate) fn quiesce(&mut self) {
        let first = self.msgs.len();
        self.bcast_heartbeat();
        for m in &mut self.msgs[first..] {
            m.quiesce = true;
        }
        self.quiescent = true;
        log::debug!(
            "{} quiesces at index {} in term {}",
            self.cfg.id,
            self.log.last_index(),
            self.term
        );
    }

    /// Follower: the leader's quiesce heartbeat (already handled as a
    /// heartbeat). Sleep if this node holds exactly the leader's log.
    pub(crate) fn quiesce_follower(&mut self, leader: &PeerId, commit: u64) {
        let agrees = matches!(self.role, Role::Follower | Role::Learner)
            && self.leader.as_ref() == Some(leader)
            && !self.lost_acknowledged
            && self.log.last_index() == commit
            && self.log.committed == commit;
        if agrees {
            self.quiescent = true;
            self.quiet_ticks = 0;
        }
    }

    /// A message reached a quiescent node (before it is handled): wake if
    /// it means the group is active.
    pub(crate) fn wake_for_message(&mut self, m: &Message, kind: MessageType) {
        let wakes = match self.role {
            // Answers to the last round change nothing by themselves; `step`
            // wakes the leader afterwards if one showed work to do.
            Role::Leader => !matches!(
                kind,
                MessageType::HeartbeatResponse | MessageType::AppendResponse
            ),
            _ => {
                self.leader.as_ref() == Some(&m.from)
                    && !(kind == MessageType::Heartbeat && m.quiesce)
            }
        };
        if wakes {
            // A forwarded read sends its own heartbeat round.
            self.wake_with_round(kind != MessageType::ReadIndex);
        }
    }
}
