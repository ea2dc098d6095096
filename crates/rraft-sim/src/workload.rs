//! What the clients do: proposals (unique payloads) to the leader and to
//! followers, membership changes, leader transfers, ReadIndex reads,
//! campaigns. The workload decides; the cluster executes and checks.

use bytes::Bytes;
use rraft::core::rng::Rng;
use rraft::core::Configuration;

use crate::faults::Profile;

/// A client action for this tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Propose `payloads` to `node` (`None`: whoever the cluster thinks leads).
    Propose {
        node: Option<usize>,
        payloads: Vec<Bytes>,
    },
    /// Ask the leader to change membership (planned against its configuration).
    ConfChange,
    /// Ask the leader to hand over to `target` (`None`: let it choose; the
    /// index is into the current voters).
    Transfer { target: Option<usize> },
    /// A ReadIndex read on `node` (any node; followers forward).
    Read { node: usize, id: u64 },
    /// `campaign()` on `node`.
    Campaign { node: usize },
}

/// The plain workload of a run: proposals, reads, membership changes, transfers, campaigns.
pub struct Workload {
    rng: Rng,
    next_payload: u64,
    next_read: u64,
    seed: u64,
    pub proposed: u64,
    pub reads: u64,
    pub conf_changes: u64,
    pub transfers: u64,
    pub campaigns: u64,
}

impl Workload {
    /// The workload of `seed`.
    pub fn new(seed: u64) -> Workload {
        Workload {
            rng: Rng::new(seed),
            next_payload: 0,
            next_read: 0,
            seed,
            proposed: 0,
            reads: 0,
            conf_changes: 0,
            transfers: 0,
            campaigns: 0,
        }
    }

    /// A payload no other proposal of this run carries.
    pub fn payload(&mut self, big: usize) -> Bytes {
        self.next_payload += 1;
        let mut v = format!("s{}-p{}", self.seed, self.next_payload).into_bytes();
        if big > 0 && self.rng.chance(1, 8) {
            v.resize(v.len() + big, b'.');
        }
        Bytes::from(v)
    }

    /// A fresh read id.
    pub fn read_id(&mut self) -> u64 {
        self.next_read += 1;
        self.next_read
    }

    /// The actions of one tick of the chaotic phase.
    pub fn ops(&mut self, p: &Profile, nodes: usize) -> Vec<Op> {
        let mut out = Vec::new();
        if self.rng.chance(p.propose, 10_000) {
            let n = self.rng.range(1, 4) as usize;
            let payloads = (0..n).map(|_| self.payload(p.big_payload)).collect();
            self.proposed += n as u64;
            let node = if self.rng.chance(p.propose_to_follower, 10_000) {
                Some(self.rng.range(0, nodes as u64) as usize)
            } else {
                None
            };
            out.push(Op::Propose { node, payloads });
        }
        if self.rng.chance(p.read, 10_000) {
            let id = self.read_id();
            self.reads += 1;
            out.push(Op::Read {
                node: self.rng.range(0, nodes as u64) as usize,
                id,
            });
        }
        if p.conf_change > 0 && self.rng.chance(p.conf_change, 10_000) {
            self.conf_changes += 1;
            out.push(Op::ConfChange);
        }
        if p.transfer > 0 && self.rng.chance(p.transfer, 10_000) {
            self.transfers += 1;
            let target = if self.rng.chance(1, 3) {
                None
            } else {
                Some(self.rng.range(0, nodes as u64) as usize)
            };
            out.push(Op::Transfer { target });
        }
        if p.campaign > 0 && self.rng.chance(p.campaign, 10_000) {
            self.campaigns += 1;
            out.push(Op::Campaign {
                node: self.rng.range(0, nodes as u64) as usize,
            });
        }
        out
    }

    /// The next membership to move `conf` to, among the peers `universe`:
    /// remove a voter, add a member back (as voter or learner), promote a
    /// learner, or (with 4+ voters) change two voters at once.
    pub fn plan_conf_change(
        &mut self,
        conf: &Configuration,
        universe: &[String],
    ) -> Option<Configuration> {
        if !conf.old_voters.is_empty() {
            return None;
        }
        let outside: Vec<&String> = universe
            .iter()
            .filter(|p| !conf.voters.contains(p) && !conf.learners.contains(p))
            .collect();
        let mut target = conf.clone();
        let pick = |rng: &mut Rng, n: usize| rng.range(0, n as u64) as usize;
        match self.rng.range(0, 6) {
            // Remove one voter (keep at least two).
            0 if conf.voters.len() > 2 => {
                target.voters.remove(pick(&mut self.rng, conf.voters.len()));
            }
            // Add an outsider as a voter.
            1 if !outside.is_empty() => {
                let p = outside[pick(&mut self.rng, outside.len())].clone();
                target.voters.push(p);
            }
            // Add an outsider as a learner.
            2 if !outside.is_empty() => {
                let p = outside[pick(&mut self.rng, outside.len())].clone();
                target.learners.push(p);
            }
            // Promote a learner.
            3 if !conf.learners.is_empty() => {
                let p = target
                    .learners
                    .remove(pick(&mut self.rng, conf.learners.len()));
                target.voters.push(p);
            }
            // Two voters at once: joint consensus.
            4 if conf.voters.len() >= 4 => {
                target
                    .voters
                    .remove(pick(&mut self.rng, target.voters.len()));
                if outside.is_empty() || self.rng.chance(1, 2) {
                    target
                        .voters
                        .remove(pick(&mut self.rng, target.voters.len()));
                } else {
                    target
                        .voters
                        .push(outside[pick(&mut self.rng, outside.len())].clone());
                }
            }
            // Swap: one voter out, one outsider in (joint).
            5 if !outside.is_empty() && conf.voters.len() >= 3 => {
                target
                    .voters
                    .remove(pick(&mut self.rng, target.voters.len()));
                target
                    .voters
                    .push(outside[pick(&mut self.rng, outside.len())].clone());
            }
            // Demote a voter to learner (keep at least two voters).
            _ if conf.voters.len() > 2 && self.rng.chance(1, 3) => {
                let p = target.voters.remove(pick(&mut self.rng, conf.voters.len()));
                target.learners.push(p);
            }
            _ => return None,
        }
        target.voters.sort();
        target.learners.sort();
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_unique() {
        let mut w = Workload::new(1);
        let a: std::collections::BTreeSet<Bytes> = (0..1000).map(|_| w.payload(10)).collect();
        assert_eq!(a.len(), 1000);
    }

    #[test]
    fn conf_changes_stay_sane() {
        let universe: Vec<String> = (1..=6).map(|i| format!("n{i}")).collect();
        let mut w = Workload::new(3);
        let mut conf = Configuration {
            voters: universe[..5].to_vec(),
            learners: vec![],
            old_voters: vec![],
        };
        let mut joint = 0;
        for _ in 0..2000 {
            if let Some(t) = w.plan_conf_change(&conf, &universe) {
                assert!(t.voters.len() >= 2, "{t:?}");
                assert!(t.old_voters.is_empty());
                for v in &t.voters {
                    assert!(!t.learners.contains(v));
                }
                let changed = t.voters.iter().filter(|v| !conf.voters.contains(v)).count()
                    + conf.voters.iter().filter(|v| !t.voters.contains(v)).count();
                if changed >= 2 {
                    joint += 1;
                }
                conf = t;
            }
        }
        assert!(joint > 10);
    }
}
