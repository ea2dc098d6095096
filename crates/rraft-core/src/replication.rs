//! Log replication: the leader's Append/Heartbeat/InstallSnapshot traffic
//! and the follower's handling of it.

use super::api::*;
use super::quorum;
use super::raft::Raft;
use super::read_only::decode_seq;
use super::storage::LogStorage;

impl<S: LogStorage> Raft<S> {
    // ----- leader side ---------------------------------------------------------

    fn peer_ids(&self) -> Vec<PeerId> {
        self.prs.keys().cloned().collect()
    }

    /// Sends new entries to every peer that can take them.
    pub(crate) fn bcast_append(&mut self) {
        for p in self.peer_ids() {
            // A peer in Probe with no Append outstanding gets a probe even
            // when it has nothing new to receive (e.g. a just-added peer).
            let probe = self
                .prs
                .get(&p)
                .is_some_and(|pr| pr.state == ProgressState::Probe);
            if self.send_append(&p, probe) {
                while self.send_append(&p, false) {}
            }
        }
    }

    /// After the commit index moved: peers with entries waiting get them
    /// (each Append carries the commit index). Idle peers get an empty
    /// Append only when `eager`; otherwise they learn the commit index from
    /// the next Append or heartbeat (one tick), as in braft: an empty
    /// Append per commit would double what a follower handles at low load.
    pub(crate) fn bcast_append_commit(&mut self, eager: bool) {
        for p in self.peer_ids() {
            let idle = eager && self.prs.get(&p).is_some_and(|pr| pr.next == pr.matched + 1);
            if !self.send_append(&p, idle) {
                continue;
            }
            while self.send_append(&p, false) {}
        }
    }

    pub(crate) fn bcast_heartbeat(&mut self) {
        let ctx = self.reads.last_context();
        self.bcast_heartbeat_with(ctx);
    }

    pub(crate) fn bcast_heartbeat_with(&mut self, ctx: bytes::Bytes) {
        let commit = self.log.committed;
        // Built field by field (no `new_message`): the loop reads the
        // progress map while it queues.
        for (id, pr) in &self.prs {
            let at = pr.matched.min(commit);
            // The term of the entry at the commit point, so that a runtime
            // can send the heartbeat as an empty Append at that point (the
            // form braft's followers take; 0 when compacted away). Kept
            // from the last heartbeat while the point stays: a committed
            // entry's term never changes, and the storage is not asked
            // per heartbeat.
            let log_term = match self.heartbeat_term {
                Some((index, term)) if index == at => term,
                _ => {
                    let term = self.log.term(at).unwrap_or(0);
                    if term != 0 {
                        self.heartbeat_term = Some((at, term));
                    }
                    term
                }
            };
            self.msgs.push(Message {
                msg_type: MessageType::Heartbeat as i32,
                from: self.cfg.id.clone(),
                to: id.clone(),
                term: self.term,
                commit: at,
                log_term,
                context: ctx.clone(),
                // The leader's tick, echoed back: the lease counts from the
                // send.
                index: self.now,
                ..Default::default()
            });
        }
    }

    /// Sends one Append (or the snapshot) to `to` if its progress allows.
    /// True if an Append carrying entries was sent (the caller may loop).
    pub(crate) fn send_append(&mut self, to: &PeerId, send_if_empty: bool) -> bool {
        let Some(pr) = self.prs.get(to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        // At the runtime's limit of data in flight: one Append with entries
        // in flight per peer, so unacknowledged data stops growing.
        let held_back = pr.state == ProgressState::Replicate
            && pr.inflights.count() > 0
            && self.inflight_bytes() >= self.in_flight_limit;
        let next = pr.next;
        let prev = next - 1;
        let last = self.log.last_index();
        let prev_term = match self.log.term(prev) {
            Ok(t) => t,
            Err(StorageError::Compacted) => {
                self.send_snapshot(to);
                return false;
            }
            Err(e) => {
                log::warn!("{}: cannot read term {prev} for {to}: {e}", self.cfg.id);
                return false;
            }
        };
        let entries = if next <= last && !held_back {
            let hi =
                (last + 1).min(next.saturating_add(self.cfg.max_entries_per_msg.max(1) as u64));
            match self.log.entries(next, hi, self.cfg.max_bytes_per_msg) {
                Ok(e) => e,
                Err(StorageError::Compacted) => {
                    self.send_snapshot(to);
                    return false;
                }
                Err(e) => {
                    log::warn!(
                        "{}: cannot read entries from {next} for {to}: {e}",
                        self.cfg.id
                    );
                    return false;
                }
            }
        } else {
            Vec::new()
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let sent_entries = !entries.is_empty();
        let last_sent = entries.last().map(|e| e.index);
        let sent_bytes: u64 = entries.iter().map(|e| e.data.len() as u64).sum();
        let mut m = self.new_message(to, MessageType::Append);
        m.index = prev;
        m.log_term = prev_term;
        m.entries = entries;
        m.commit = self.log.committed;
        if let Some(pr) = self.prs.get_mut(to) {
            m.flight = pr.flight;
            match pr.state {
                ProgressState::Replicate => {
                    if let Some(l) = last_sent {
                        pr.next = l + 1;
                        pr.inflights.add(l, sent_bytes);
                    }
                }
                ProgressState::Probe => pr.probe_sent = true,
                ProgressState::Snapshot => {}
            }
        }
        self.send(m);
        sent_entries
            && self
                .prs
                .get(to)
                .is_some_and(|p| p.state == ProgressState::Replicate)
    }

    /// An empty Append at `next - 1` that changes no progress state: the
    /// answer tells whether the peer holds everything sent so far.
    fn send_tail_probe(&mut self, to: &PeerId) {
        let Some(pr) = self.prs.get(to) else {
            return;
        };
        let prev = pr.next - 1;
        let flight = pr.flight;
        let Ok(prev_term) = self.log.term(prev) else {
            return;
        };
        let mut m = self.new_message(to, MessageType::Append);
        m.flight = flight;
        m.index = prev;
        m.log_term = prev_term;
        m.commit = self.log.committed.min(pr.matched);
        self.send(m);
    }

    /// Advances the commit index from the quorum's match indices; only an
    /// entry of the current term commits by counting (§5.4.2).
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let mci =
            quorum::joint_committed_index(self.confs.current(), &|id: &str| self.match_of(id));
        if mci > self.log.committed && self.log.match_term(mci, self.term) {
            self.log.committed = mci;
            true
        } else {
            false
        }
    }

    /// Commit moved on the leader (it was `prev_commit`): propagate, then
    /// drive what waited for it. The commit of a configuration entry reaches
    /// every peer at once: a removed leader steps down right after it, and
    /// the peers must not wait for a heartbeat that will not come.
    pub(crate) fn after_commit(&mut self, prev_commit: u64) {
        let conf_committed = self.confs.current_index() > prev_commit;
        self.bcast_append_commit(conf_committed);
        self.on_commit_advanced();
    }

    pub(crate) fn handle_append_response(&mut self, m: Message) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let last = self.log.last_index();
        let now = self.now;
        let Some(pr) = self.prs.get_mut(&m.from) else {
            return Ok(());
        };
        pr.last_heard = Some(now);
        if m.reject && pr.state == ProgressState::Snapshot {
            // The follower could not fetch the snapshot this flight named
            // (the leader published a newer one meanwhile, a file read
            // failed): probe again at once, which sends a current snapshot.
            if (m.flight == 0 || m.flight == pr.flight) && m.index == pr.pending_snapshot {
                pr.pending_snapshot = 0;
                pr.become_probe();
                self.send_append(&m.from, true);
            }
            return Ok(());
        }
        if m.reject {
            if m.index > last {
                return Ok(());
            }
            let probe_prev = if m.hint_term > 0 {
                self.log.find_conflict_by_term(m.reject_hint, m.hint_term).0
            } else {
                m.reject_hint.min(last)
            };
            let Some(pr) = self.prs.get_mut(&m.from) else {
                return Ok(());
            };
            if pr.maybe_decr_to(m.index, probe_prev, m.flight) {
                self.send_append(&m.from, true);
            }
            return Ok(());
        }
        if m.index > last {
            return Ok(());
        }
        let updated = pr.maybe_update(m.index, now);
        match pr.state {
            ProgressState::Probe if pr.matched + 1 >= pr.next => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched >= pr.pending_snapshot => pr.become_replicate(),
            ProgressState::Replicate => pr.inflights.free_le(m.index),
            _ => {}
        }
        let prev_commit = self.log.committed;
        if updated && self.maybe_commit() {
            self.after_commit(prev_commit);
        }
        if self.role != Role::Leader {
            return Ok(());
        }
        while self.send_append(&m.from, false) {}
        self.maybe_send_timeout_now(&m.from);
        if updated {
            self.check_catchup();
        }
        Ok(())
    }

    /// The commit index while an acknowledgement of entries up to it (an
    /// AppendResponse of this term, not a rejection, with an index at most
    /// the commit index) changes nothing that cannot wait for this leader's
    /// next turn: it moves no commit index (the peer's new match is at most
    /// the commit index, so no quorum's is higher), and this node is an
    /// awake leader driving no leadership transfer or membership change
    /// (whose steps wait for a peer's match), with every peer replicating
    /// (no probe or snapshot to answer) with at most half its window of
    /// Appends in flight, and at most half the runtime's limit of data in
    /// flight (the ack frees neither a window nor the budget a new Append
    /// needs). None otherwise. Reads and the lease count heartbeat answers
    /// only. For a runtime that queues such acks for its next turn instead
    /// of running one for each (with three replicas the second ack of every
    /// write).
    pub fn acks_may_wait_through(&self) -> Option<u64> {
        if self.role != Role::Leader
            || self.quiescent
            || self.transferring_to().is_some()
            || self.pending_conf_change()
            || self.inflight_bytes() > self.in_flight_limit / 2
        {
            return None;
        }
        let roomy = self.prs.values().all(|pr| {
            pr.state == ProgressState::Replicate && pr.inflights.count() * 2 <= pr.inflights.cap()
        });
        roomy.then_some(self.log.committed)
    }

    pub(crate) fn handle_heartbeat_response(&mut self, m: Message) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let last = self.log.last_index();
        let now = self.now;
        let stall = (2 * self.cfg.heartbeat_ticks as u64).max(2);
        let Some(pr) = self.prs.get_mut(&m.from) else {
            return Ok(());
        };
        pr.last_heard = Some(now);
        let stamp = m.index.min(now);
        pr.lease_heard = Some(pr.lease_heard.map_or(stamp, |t| t.max(stamp)));
        // The peer answered a heartbeat sent after the acknowledgement that
        // set `matched` arrived, so it answered after sending that
        // acknowledgement: a log ending below `matched` lost acknowledged
        // entries (a wiped or lost disk). Replicate to it again from there.
        if let Some(peer_last) = m.follower_last {
            if peer_last < pr.matched && stamp > pr.ack_tick {
                log::warn!(
                    "{}: {} holds the log up to {peer_last} only, below the {} it \
                     acknowledged (its storage was lost or wiped): replicating to it again",
                    self.cfg.id,
                    m.from,
                    pr.matched
                );
                pr.reset_after_loss(peer_last, now);
            }
        }
        let mut probe_tail = false;
        match pr.state {
            ProgressState::Probe => pr.probe_sent = false,
            ProgressState::Replicate => {
                if pr.inflights.full() {
                    pr.inflights.free_first();
                }
                // Nothing acknowledged for a while: Appends may have been
                // lost. Ask whether the peer has everything sent so far; a
                // rejection turns the progress back to probing.
                if pr.matched < last && now.saturating_sub(pr.match_tick) >= stall {
                    probe_tail = true;
                    pr.match_tick = now;
                }
            }
            ProgressState::Snapshot => {}
        }
        let behind = pr.matched < last;
        let probing = pr.state == ProgressState::Probe;
        if probe_tail {
            self.send_tail_probe(&m.from);
        }
        if behind {
            self.send_append(&m.from, probing);
        }
        if let Some(seq) = decode_seq(&m.context) {
            self.ack_read(seq, &m.from);
        }
        Ok(())
    }

    // ----- follower side -------------------------------------------------------

    /// Accepts a message from the current leader (an Append or heartbeat
    /// of this node's term): follow it, reset timers. A term has at most
    /// one leader, so a follower that knows its term's leader needs no
    /// comparison of the sender's name (cold memory with many groups).
    pub(crate) fn follow(&mut self, m: &Message) {
        debug_assert_eq!(m.term, self.term);
        debug_assert!(
            !matches!(self.role, Role::Follower | Role::Learner)
                || self.leader.as_deref().is_none()
                || self.leader.as_ref() == Some(&m.from)
        );
        if !matches!(self.role, Role::Follower | Role::Learner) || self.leader.is_none() {
            let term = self.term;
            self.become_follower(term, Some(m.from.clone()));
        }
        self.leader_contact = Some(self.now);
        self.election_elapsed = 0;
        // The leader is alive after all.
        self.campaign_due = None;
    }

    /// What a heartbeat of the current leader that changes nothing else does
    /// to a follower: notes the leader's contact now (the election timer
    /// restarts, votes are refused for the lease period, a planned campaign
    /// is called off). For a runtime that answered such a heartbeat itself
    /// (same term, from the known leader, a commit index this node already
    /// has, no quiescence mark): it calls this with the core's clock at the
    /// tick of the heartbeat. False, and nothing changes, unless this node
    /// is a follower that knows its leader and is not quiescent.
    pub fn heard_from_leader(&mut self) -> bool {
        if self.role != Role::Follower || self.leader.is_none() || self.quiescent {
            return false;
        }
        self.leader_contact = Some(self.now);
        self.election_elapsed = 0;
        self.campaign_due = None;
        true
    }

    /// What a heartbeat of the current leader carrying the commit index
    /// `commit` does to a follower besides the contact
    /// ([`Raft::heard_from_leader`]): the commit index moves up to it,
    /// bounded by this node's log as in a stepped heartbeat. For a runtime
    /// that answered such a heartbeat itself and hands the core its commit
    /// index later, before anything else reaches the core (the heartbeat's
    /// commit index is at most what this node acknowledged in the term, so
    /// the entries up to it are the leader's). False, and nothing changes,
    /// unless this node is a follower that knows its leader, is not
    /// quiescent and the commit index moves.
    pub fn commit_from_leader(&mut self, commit: u64) -> bool {
        if self.role != Role::Follower || self.leader.is_none() || self.quiescent {
            return false;
        }
        let last = self.log.last_index();
        self.log.commit_to(commit.min(last))
    }

    pub(crate) fn handle_append(&mut self, m: Message) -> Result<(), Error> {
        if self.role == Role::Leader {
            log::error!(
                "{}: Append from {} in my own term {}",
                self.cfg.id,
                m.from,
                self.term
            );
            return Ok(());
        }
        // Entries were validated in `step` (contiguous, terms in order).
        self.follow(&m);
        let from = m.from.clone();
        let commit = m.commit;
        let mut prev = m.index;
        let mut prev_term = m.log_term;
        let mut entries = m.entries;
        let committed = self.log.committed;
        if prev < committed {
            // Everything up to our commit index matches the leader already.
            let skip = (committed - prev) as usize;
            if skip >= entries.len() {
                let mut resp = self.new_message(&from, MessageType::AppendResponse);
                resp.flight = m.flight;
                resp.index = committed;
                resp.follower_last = Some(self.log.last_index());
                self.send_after_persist(resp);
                return Ok(());
            }
            prev_term = entries[skip - 1].term;
            entries.drain(..skip);
            prev = committed;
        }
        match self.log.term(prev) {
            Ok(t) if t == prev_term => {}
            Ok(_) | Err(StorageError::Unavailable) => {
                let (hint, hint_term) = self
                    .log
                    .find_conflict_by_term(m.index.min(self.log.last_index()), m.log_term);
                let mut resp = self.new_message(&from, MessageType::AppendResponse);
                resp.flight = m.flight;
                resp.index = m.index;
                resp.reject = true;
                resp.reject_hint = hint;
                resp.hint_term = hint_term;
                self.send(resp);
                return Ok(());
            }
            Err(e) => {
                log::warn!("{}: cannot read term {prev}: {e}", self.cfg.id);
                return Ok(());
            }
        }
        let last_new = prev + entries.len() as u64;
        // Find the first entry we do not already hold.
        let mut conflict = None;
        for (i, e) in entries.iter().enumerate() {
            match self.log.term(e.index) {
                Ok(t) if t == e.term => {}
                Ok(_) | Err(StorageError::Unavailable) => {
                    conflict = Some(i);
                    break;
                }
                Err(err) => {
                    log::warn!("{}: cannot read term {}: {err}", self.cfg.id, e.index);
                    return Ok(());
                }
            }
        }
        if let Some(i) = conflict {
            let new = entries.split_off(i);
            let first = new[0].index;
            if first <= self.log.committed {
                log::error!(
                    "{}: refusing to overwrite committed entry {first}",
                    self.cfg.id
                );
                return Ok(());
            }
            let mut changed = false;
            if first <= self.log.last_index() {
                changed |= self.confs.truncate(first);
            }
            changed |= self.confs.scan(&new);
            self.log.truncate_and_append(new);
            if changed {
                self.on_conf_changed();
            }
        }
        self.log.commit_to(commit.min(last_new));
        if self.lost_acknowledged && last_new >= commit {
            log::info!(
                "{} holds the log up to the leader's commit index {commit} again: it votes again",
                self.cfg.id
            );
            self.lost_acknowledged = false;
        }
        let mut resp = self.new_message(&from, MessageType::AppendResponse);
        resp.flight = m.flight;
        resp.index = last_new;
        resp.follower_last = Some(self.log.last_index());
        self.send_after_persist(resp);
        Ok(())
    }

    pub(crate) fn handle_heartbeat(&mut self, m: Message) -> Result<(), Error> {
        if self.role == Role::Leader {
            return Ok(());
        }
        self.follow(&m);
        let last = self.log.last_index();
        // A heartbeat's commit index is at most what this node acknowledged
        // to the leader: beyond this node's log, it lost acknowledged
        // entries (its storage was wiped or lost). Its vote could elect a
        // leader lacking them: no votes or campaigns until it holds the log
        // up to a leader's commit index again.
        if m.commit > last && !self.lost_acknowledged {
            log::warn!(
                "{}: the leader {} counts entries up to {} as acknowledged by this node, \
                 whose log ends at {last} (its storage was lost or wiped): no votes or \
                 campaigns until it has caught up",
                self.cfg.id,
                m.from,
                m.commit
            );
            self.lost_acknowledged = true;
        }
        self.log.commit_to(m.commit.min(last));
        if m.quiesce {
            self.quiesce_follower(&m.from, m.commit);
        }
        let answer = heartbeat_answer(self.cfg.id.clone(), self.term, last, m);
        self.send(answer);
        Ok(())
    }
}

/// A follower's answer to the heartbeat `beat`: from `id`, in `term`, its
/// log ending at `last`. The heartbeat's sender becomes the receiver and
/// its read context and tick stamp are echoed (moved, no copy). The
/// runtime answers heartbeats that change nothing with it too, without a
/// turn of the core.
pub fn heartbeat_answer(id: PeerId, term: u64, last: u64, beat: Message) -> Message {
    Message {
        msg_type: MessageType::HeartbeatResponse as i32,
        from: id,
        to: beat.from,
        term,
        context: beat.context,
        index: beat.index,
        follower_last: Some(last),
        ..Default::default()
    }
}
