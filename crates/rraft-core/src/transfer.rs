//! Leadership transfer: the leader stops taking proposals, catches the
//! target up, then sends it TimeoutNow; the target campaigns at once with
//! votes that bypass the other voters' lease. The transfer fails when the
//! target has not taken over within an election timeout.

use super::api::*;
use super::membership::ConfigurationExt;
use super::raft::Raft;
use super::storage::LogStorage;

/// Context of a Vote sent after TimeoutNow: it bypasses the receivers' lease.
pub const TRANSFER_CONTEXT: &[u8] = b"transfer";

/// A leadership transfer in progress.
#[derive(Clone, Debug)]
pub(crate) struct Transfer {
    pub target: PeerId,
    pub started: u64,
    pub timeout_now_sent: bool,
}

impl<S: LogStorage> Raft<S> {
    pub fn transferring_to(&self) -> Option<&str> {
        self.transfer.as_ref().map(|t| t.target.as_str())
    }

    /// Leader only: hands leadership to `target` (None: the most up-to-date voter).
    pub fn transfer_leader(&mut self, target: Option<&str>) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader.clone(),
            });
        }
        self.wake();
        let conf = self.confs.current().clone();
        let target = match target {
            Some(t) => PeerId::from(t),
            None => {
                let mut best: Option<(&PeerId, u64)> = None;
                for (id, p) in &self.prs {
                    if conf.is_voter(id) && best.map(|(_, m)| p.matched > m).unwrap_or(true) {
                        best = Some((id, p.matched));
                    }
                }
                match best {
                    Some((id, _)) => id.clone(),
                    None => return Err(Error::Invalid("no other voter to transfer to".into())),
                }
            }
        };
        if target == self.cfg.id || !conf.is_voter(&target) {
            return Err(Error::Invalid(format!("{target} is not another voter")));
        }
        if let Some(t) = &self.transfer {
            if t.target == target {
                return Ok(());
            }
            return Err(Error::Busy("another leadership transfer in progress"));
        }
        self.transfer = Some(Transfer {
            target: target.clone(),
            started: self.now,
            timeout_now_sent: false,
        });
        self.maybe_send_timeout_now(&target);
        if self.transfer.as_ref().is_some_and(|t| !t.timeout_now_sent) {
            self.send_append(&target, false);
        }
        Ok(())
    }

    /// Sends TimeoutNow to the transfer target once it has the whole log.
    pub(crate) fn maybe_send_timeout_now(&mut self, peer: &PeerId) {
        let last = self.log.last_index();
        let ready = match (&self.transfer, self.prs.get(peer)) {
            (Some(t), Some(p)) => t.target == *peer && !t.timeout_now_sent && p.matched == last,
            _ => false,
        };
        if ready {
            if let Some(t) = self.transfer.as_mut() {
                t.timeout_now_sent = true;
            }
            self.timeout_now_term = self.term;
            let m = self.new_message(peer, MessageType::TimeoutNow);
            self.send(m);
        }
    }

    /// The leader hands over to us: campaign at once, bypassing pre-vote and
    /// the other voters' lease.
    pub(crate) fn handle_timeout_now(&mut self, m: Message) -> Result<(), Error> {
        if self.role == Role::Leader || !self.promotable() {
            return Ok(());
        }
        log::info!(
            "{} received TimeoutNow from {}: campaigning",
            self.cfg.id,
            m.from
        );
        self.become_candidate(true);
        Ok(())
    }

    /// Leader tick: a transfer whose target has not taken over within an
    /// election timeout fails, and proposals are taken again.
    pub(crate) fn check_transfer_timeout(&mut self) {
        if let Some(t) = &self.transfer {
            if self.now.saturating_sub(t.started) >= self.cfg.election_ticks as u64 {
                let target = t.target.clone();
                self.transfer = None;
                self.events
                    .push(Event::TransferFailed(Error::TransferTimeout(target)));
            }
        }
    }
}
