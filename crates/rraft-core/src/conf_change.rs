//! Membership changes driven by the leader: catch-up, then a single step
//! or joint consensus, then the final configuration.

use super::api::*;
use super::membership::{self, ConfigurationExt, Plan};
use super::raft::{ChangeStage, ConfChange, Raft};
use super::storage::LogStorage;

impl<S: LogStorage> Raft<S> {
    /// Leader only: moves the group to `target` (voters + learners; old_voters
    /// must be empty). New voters catch up first; one voter changed → one
    /// step, more → joint consensus. Completion comes as `Event::ConfChangeDone`.
    pub fn propose_conf_change(&mut self, target: Configuration) -> Result<(), Error> {
        self.check_accepts_proposals()?;
        self.wake();
        membership::validate_target(&target).map_err(Error::Invalid)?;
        if self.change.is_some()
            || self.confs.current_index() > self.log.committed
            || self.confs.current().is_joint()
        {
            return Err(Error::Busy("a membership change is in progress"));
        }
        if !self.log.match_term(self.log.committed, self.term) {
            return Err(Error::Busy(
                "the leader has not committed an entry of its term yet",
            ));
        }
        let peers: Vec<PeerId> = membership::new_voters(self.confs.current(), &target)
            .into_iter()
            .map(PeerId::from)
            .collect();
        self.change = Some(ConfChange {
            target,
            stage: ChangeStage::CatchUp {
                started: self.now,
                peers: peers.clone(),
            },
        });
        self.sync_progress();
        for p in &peers {
            self.send_append(p, true);
        }
        self.check_catchup();
        Ok(())
    }

    /// Phase 1: once every new voter is within `catchup_margin` of the last
    /// index (and has answered), append the next configuration; give up
    /// after `catchup_ticks`.
    pub(crate) fn check_catchup(&mut self) {
        let Some(ConfChange {
            stage: ChangeStage::CatchUp { started, peers },
            ..
        }) = &self.change
        else {
            return;
        };
        let last = self.log.last_index();
        let margin = self.cfg.catchup_margin;
        let lagging = peers
            .iter()
            .find(|p| match self.prs.get(*p) {
                Some(pr) => !(pr.last_heard.is_some() && pr.matched >= last.saturating_sub(margin)),
                None => true,
            })
            .cloned();
        match lagging {
            None => self.enter_phase2(),
            Some(p) => {
                let limit = if self.cfg.catchup_ticks == 0 {
                    self.cfg.election_ticks
                } else {
                    self.cfg.catchup_ticks
                } as u64;
                if self.now.saturating_sub(*started) >= limit {
                    log::info!(
                        "{}: membership change abandoned, {p} did not catch up",
                        self.cfg.id
                    );
                    self.change = None;
                    self.events
                        .push(Event::ConfChangeDone(Err(Error::CatchupTimeout(p))));
                    self.sync_progress();
                }
            }
        }
    }

    fn enter_phase2(&mut self) {
        let Some(change) = self.change.take() else {
            return;
        };
        let current = self.confs.current().clone();
        let (conf, joint) = match membership::plan(&current, &change.target) {
            Plan::Direct(c) => (c, false),
            Plan::Joint(c) => (c, true),
        };
        let index = self.log.last_index() + 1;
        self.change = Some(ConfChange {
            target: change.target,
            stage: if joint {
                ChangeStage::Joint { index }
            } else {
                ChangeStage::Final { index }
            },
        });
        self.append_conf_entry(conf);
    }

    /// Appends a configuration entry; it takes effect at once.
    fn append_conf_entry(&mut self, conf: Configuration) -> u64 {
        let index = self.log.last_index() + 1;
        let entry = Entry {
            term: self.term,
            index,
            entry_type: EntryType::Configuration as i32,
            data: membership::encode_conf(&conf),
        };
        self.log.append(vec![entry]);
        self.confs.push(index, conf);
        self.sync_progress();
        self.bcast_append();
        // A lone voter commits as soon as the entry is durable.
        index
    }

    /// Members removed by the configuration that just committed: tell them
    /// it is committed (an empty Append at its index carrying the commit
    /// index), so they know they are out and stop campaigning.
    fn say_farewell_to_removed(&mut self) {
        let index = self.confs.current_index();
        let Ok(log_term) = self.log.term(index) else {
            return;
        };
        let conf = self.confs.current().clone();
        let removed: Vec<PeerId> = self
            .prs
            .keys()
            .filter(|id| !conf.is_member(id))
            .cloned()
            .collect();
        for id in removed {
            let mut m = self.new_message(&id, MessageType::Append);
            m.index = index;
            m.log_term = log_term;
            m.commit = self.log.committed;
            self.send(m);
        }
    }

    /// The leader's commit index moved.
    pub(crate) fn on_commit_advanced(&mut self) {
        self.release_waiting_reads();
        if self.keeping_removed && self.confs.current_index() <= self.log.committed {
            self.say_farewell_to_removed();
            self.sync_progress();
        }
        let committed = self.log.committed;
        match &self.change {
            Some(ConfChange {
                stage: ChangeStage::Joint { index },
                target,
            }) if committed >= *index => {
                let target = target.clone();
                let index = self.log.last_index() + 1;
                self.change = Some(ConfChange {
                    target: target.clone(),
                    stage: ChangeStage::Final { index },
                });
                self.append_conf_entry(target);
            }
            Some(ConfChange {
                stage: ChangeStage::Final { index },
                target,
            }) if committed >= *index => {
                let done = target.clone();
                self.change = None;
                self.events.push(Event::ConfChangeDone(Ok(done)));
            }
            None => {
                // A joint configuration inherited from a previous leader:
                // leave it once it is committed.
                let cur = self.confs.current().clone();
                if cur.is_joint() && self.confs.current_index() <= committed {
                    self.append_conf_entry(Configuration {
                        voters: cur.voters,
                        learners: cur.learners,
                        old_voters: Vec::new(),
                    });
                }
            }
            _ => {}
        }
        // A leader removed from the group leads until the configuration
        // without it is committed, then steps down.
        if self.role == Role::Leader
            && !self.confs.current().is_joint()
            && self.confs.current_index() <= self.log.committed
            && !self.promotable()
        {
            log::info!("{} steps down: removed from the configuration", self.cfg.id);
            let term = self.term;
            self.become_follower(term, None);
        }
    }
}
