//! Snapshots in the protocol: a leader sends InstallSnapshot to a peer
//! that needs entries compacted away, and sends the newest one again when
//! the peer has not installed it within an election timeout; a follower
//! installs a snapshot ahead of its log, or answers one its log already
//! covers; the local state machine's snapshots let the log be compacted.
//! (The log's own part, replacing its entries by a snapshot, is
//! `RaftLog::restore` in `raft_log.rs`.)

use super::api::*;
use super::raft::Raft;
use super::storage::LogStorage;

impl<S: LogStorage> Raft<S> {
    pub(crate) fn send_snapshot(&mut self, to: &PeerId) {
        let meta = self.log.snapshot().clone();
        if meta.last_index == 0 {
            log::warn!(
                "{}: {to} needs a snapshot but none is recorded",
                self.cfg.id
            );
            return;
        }
        let mut flight = 0;
        let now = self.now;
        if let Some(pr) = self.prs.get_mut(to) {
            pr.become_snapshot(meta.last_index);
            pr.snapshot_sent_tick = now;
            flight = pr.flight;
        }
        let mut m = self.new_message(to, MessageType::InstallSnapshot);
        m.flight = flight;
        m.commit = self.log.committed;
        m.snapshot = Some(meta);
        self.send(m);
    }

    /// A peer that has not installed the snapshot sent to it within an
    /// election timeout gets the newest one again (the InstallSnapshot may
    /// have been lost; a follower still fetching the first one ignores the
    /// repeat).
    pub(crate) fn retry_stalled_snapshots(&mut self) {
        let now = self.now;
        let window = self.cfg.election_ticks as u64;
        let stalled: Vec<PeerId> = self
            .prs
            .iter()
            .filter(|(_, pr)| {
                pr.state == ProgressState::Snapshot
                    && now.saturating_sub(pr.snapshot_sent_tick) >= window
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stalled {
            if let Some(pr) = self.prs.get_mut(&id) {
                pr.pending_snapshot = 0;
                pr.become_probe();
            }
            self.send_append(&id, true);
        }
    }

    /// The state machine saved a snapshot covering `meta`; the runtime may
    /// now compact the stored log up to `meta.last_index`.
    pub fn on_snapshot(&mut self, meta: SnapshotMeta) {
        if meta.last_index > self.log.committed {
            log::warn!(
                "snapshot at {} beyond commit {}: ignored",
                meta.last_index,
                self.log.committed
            );
            return;
        }
        let idx = meta.last_index;
        self.log.on_snapshot(meta);
        if self.log.snapshot().last_index == idx {
            self.confs.compact(idx);
        }
    }

    /// The runtime finished (or failed) streaming a snapshot to `peer`.
    pub fn report_snapshot(&mut self, peer: &str, ok: bool) {
        if self.role != Role::Leader {
            return;
        }
        let Some(pr) = self.prs.get_mut(peer) else {
            return;
        };
        if pr.state != ProgressState::Snapshot {
            return;
        }
        if !ok {
            pr.pending_snapshot = 0;
        }
        pr.become_probe();
        // Wait for the follower's answer to the snapshot before probing.
        pr.probe_sent = ok;
    }

    /// The runtime could not fetch the snapshot that InstallSnapshot `m`
    /// names: tell the leader, so it sends a current one at once instead of
    /// waiting for its transfer timeout.
    pub fn reject_snapshot(&mut self, m: &Message) {
        let Some(meta) = &m.snapshot else {
            return;
        };
        if self.role == Role::Leader || m.term != self.term {
            return;
        }
        let mut resp = self.new_message(&m.from, MessageType::AppendResponse);
        resp.flight = m.flight;
        resp.reject = true;
        resp.index = meta.last_index;
        resp.reject_hint = self.log.last_index();
        self.send(resp);
    }

    pub(crate) fn handle_install_snapshot(&mut self, m: Message) -> Result<(), Error> {
        if self.role == Role::Leader {
            return Ok(());
        }
        let Some(meta) = m.snapshot.clone() else {
            return Err(Error::Invalid("InstallSnapshot without snapshot".into()));
        };
        self.follow(&m);
        let mut resp = self.new_message(&m.from, MessageType::AppendResponse);
        resp.flight = m.flight;
        if meta.last_index <= self.log.committed {
            // The commit index may cover entries still on their way to this
            // node's disk: the acknowledgement waits for them (an
            // acknowledgement never runs ahead of the disk).
            resp.index = self.log.committed;
            self.send_after_persist(resp);
            return Ok(());
        }
        if self.log.match_term(meta.last_index, meta.last_term) {
            self.log.commit_to(meta.last_index);
            resp.index = meta.last_index;
            self.send_after_persist(resp);
            return Ok(());
        }
        log::info!(
            "{} restores snapshot at {} (term {})",
            self.cfg.id,
            meta.last_index,
            meta.last_term
        );
        if let Some(c) = meta.configuration.clone() {
            self.confs.reset(c, true);
        }
        resp.index = meta.last_index;
        if meta.last_index >= m.commit {
            self.lost_acknowledged = false;
        }
        self.log.restore(meta);
        self.on_conf_changed();
        self.send_after_persist(resp);
        Ok(())
    }
}
