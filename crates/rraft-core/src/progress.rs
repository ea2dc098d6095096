//! What the leader knows about one peer's log: match/next indices and the
//! replication state machine Probe → Replicate (pipelined) ↔ Snapshot.

use super::api::ProgressState;
use super::inflights::Inflights;

#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be replicated on the peer.
    pub matched: u64,
    /// Next index to send.
    pub next: u64,
    pub state: ProgressState,
    /// Numbers the Appends sent since the last state change (the flight).
    /// Answers echo it: a rejection of an earlier flight is stale.
    pub flight: u64,
    /// Probe: an Append is outstanding, wait for its answer.
    pub probe_sent: bool,
    /// Snapshot: the index of the snapshot being sent.
    pub pending_snapshot: u64,
    /// Snapshot: the tick at which the InstallSnapshot was sent.
    pub snapshot_sent_tick: u64,
    pub inflights: Inflights,
    /// Tick of the last message received from the peer (check-quorum).
    pub last_heard: Option<u64>,
    /// Leader tick stamped on the newest heartbeat the peer answered (lease).
    pub lease_heard: Option<u64>,
    /// Tick at which `matched` last advanced, or the progress was created
    /// (stall detection; check-quorum grace for a peer never heard from).
    pub match_tick: u64,
    /// Tick at which an acknowledgement last raised `matched` (or the
    /// progress was created or reset). A heartbeat sent after it is
    /// answered after that acknowledgement was sent.
    pub ack_tick: u64,
    pub is_learner: bool,
    /// A voter of the configuration in force, and of the old half of a
    /// joint one: check-quorum and the lease count these flags (see
    /// `Raft::flag_voters`), not the voters' names.
    pub voter: bool,
    pub old_voter: bool,
}

impl Progress {
    pub fn new(next: u64, max_inflight: usize, now: u64) -> Progress {
        Progress {
            matched: 0,
            next: next.max(1),
            state: ProgressState::Probe,
            flight: 1,
            probe_sent: false,
            pending_snapshot: 0,
            snapshot_sent_tick: 0,
            inflights: Inflights::new(max_inflight),
            last_heard: None,
            lease_heard: None,
            match_tick: now,
            ack_tick: now,
            is_learner: false,
            voter: false,
            old_voter: false,
        }
    }

    /// Back to probing from the first unknown index.
    pub fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            self.next = (self.matched + 1).max(self.pending_snapshot + 1);
        } else {
            self.next = self.matched + 1;
        }
        self.state = ProgressState::Probe;
        self.flight += 1;
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.inflights.reset();
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.flight += 1;
        self.next = self.matched + 1;
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.inflights.reset();
    }

    pub fn become_snapshot(&mut self, index: u64) {
        self.state = ProgressState::Snapshot;
        self.flight += 1;
        self.pending_snapshot = index;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// The peer acknowledged up to `n`. True if that is news.
    pub fn maybe_update(&mut self, n: u64, now: u64) -> bool {
        let updated = n > self.matched;
        if updated {
            self.matched = n;
            self.match_tick = now;
            self.ack_tick = now;
        }
        if self.next < n + 1 {
            self.next = n + 1;
        }
        updated
    }

    /// The peer rejected an Append of `flight` whose previous index was
    /// `rejected`; the next probe should go after `probe_prev` (the leader's
    /// fast back-off from the peer's hint). False if the rejection is stale.
    ///
    /// An Append of an earlier flight was sent before the progress last
    /// changed state. When reordered Appends overtake each other, the
    /// follower rejects all but the in-order prefix; those rejections of a
    /// window already given up on would otherwise turn a pipelining progress
    /// back to probing once per rejection, and every acknowledgement in
    /// between would send another full window.
    pub fn maybe_decr_to(&mut self, rejected: u64, probe_prev: u64, flight: u64) -> bool {
        if flight != 0 && flight != self.flight {
            return false;
        }
        match self.state {
            ProgressState::Replicate => {
                if rejected <= self.matched {
                    return false;
                }
                self.become_probe();
                self.next = rejected
                    .min(probe_prev.saturating_add(1))
                    .max(self.matched + 1);
                true
            }
            ProgressState::Probe => {
                if self.next.saturating_sub(1) != rejected {
                    return false;
                }
                self.next = rejected
                    .min(probe_prev.saturating_add(1))
                    .max(self.matched + 1);
                self.probe_sent = false;
                true
            }
            ProgressState::Snapshot => false,
        }
    }

    /// The peer's log ends at `peer_last`, below what it acknowledged (it
    /// lost its disk, or recovery cut acknowledged entries): nothing it
    /// matched can be relied on any more. `matched` drops to 0 (an entry
    /// at or below `peer_last` may differ from ours) and the progress
    /// probes from the end of the peer's log; its next acknowledgement sets
    /// `matched` again, and a probe it rejects backs off as usual, down to
    /// a snapshot if the log was compacted.
    pub fn reset_after_loss(&mut self, peer_last: u64, now: u64) {
        self.matched = 0;
        self.pending_snapshot = 0;
        self.become_probe();
        self.next = peer_last + 1;
        self.match_tick = now;
        self.ack_tick = now;
    }

    /// Whether sending more Appends must wait.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_decrements_only_on_matching_rejection() {
        let mut p = Progress::new(10, 4, 0);
        p.probe_sent = true;
        let f = p.flight;
        assert!(!p.maybe_decr_to(5, 3, f)); // stale: not next-1
        assert!(p.maybe_decr_to(9, 3, f));
        assert_eq!(p.next, 4);
        assert!(!p.probe_sent);
    }

    #[test]
    fn replicate_rejection_falls_back_to_probe() {
        let mut p = Progress::new(10, 4, 0);
        p.maybe_update(5, 1);
        p.become_replicate();
        p.next = 12;
        let f = p.flight;
        assert!(!p.maybe_decr_to(4, 0, f)); // at or below match: stale
        assert!(p.maybe_decr_to(8, 6, f));
        assert_eq!(p.state, ProgressState::Probe);
        assert_eq!(p.next, 7);
    }

    #[test]
    fn rejections_of_an_earlier_flight_are_stale() {
        let mut p = Progress::new(10, 4, 0);
        p.maybe_update(5, 1);
        p.become_replicate();
        let abandoned = p.flight;
        p.next = 12;
        assert!(p.maybe_decr_to(8, 6, abandoned));
        p.maybe_update(7, 2);
        p.become_replicate();
        p.next = 16;
        // Another Append of the abandoned window: nothing new.
        assert!(!p.maybe_decr_to(10, 7, abandoned));
        assert_eq!(p.state, ProgressState::Replicate);
        // A peer that does not echo flights (0) is taken at its word.
        assert!(p.maybe_decr_to(10, 7, 0));
        assert_eq!(p.state, ProgressState::Probe);
    }

    #[test]
    fn a_peer_that_lost_its_log_is_probed_again_from_its_end() {
        for state in ["replicate", "snapshot"] {
            let mut p = Progress::new(1, 4, 0);
            p.maybe_update(40, 3);
            match state {
                "replicate" => {
                    p.become_replicate();
                    p.next = 45;
                    p.inflights.add(44, 0);
                }
                _ => p.become_snapshot(50),
            }
            let flight = p.flight;
            p.reset_after_loss(0, 9);
            assert_eq!(p.matched, 0, "{state}: nothing matched is relied on");
            assert_eq!(p.state, ProgressState::Probe, "{state}");
            assert_eq!(p.next, 1, "{state}: probes from the end of its log");
            assert_eq!(p.pending_snapshot, 0, "{state}");
            assert_eq!(p.ack_tick, 9, "{state}");
            assert!(
                p.flight > flight,
                "{state}: answers to earlier sends are stale"
            );
            assert!(!p.is_paused(), "{state}: the probe goes out at once");
            // The probe at the end of its log is rejected only if it holds
            // a different entry there; an acknowledgement matches again.
            assert!(p.maybe_update(0, 10) || p.matched == 0);
            p.probe_sent = true;
            assert!(p.maybe_update(40, 11));
            assert_eq!(p.matched, 40);
        }
        // Entries at the end of a shorter log: the probe starts after them,
        // and a rejection backs off below them (nothing is matched).
        let mut p = Progress::new(1, 4, 0);
        p.maybe_update(40, 3);
        p.become_replicate();
        p.reset_after_loss(12, 5);
        assert_eq!((p.matched, p.next), (0, 13));
        p.probe_sent = true;
        assert!(p.maybe_decr_to(12, 7, p.flight));
        assert_eq!(p.next, 8);
    }

    #[test]
    fn snapshot_state_is_paused() {
        let mut p = Progress::new(10, 4, 0);
        p.become_snapshot(20);
        assert!(p.is_paused());
        p.become_probe();
        assert_eq!(p.next, 21);
    }
}
