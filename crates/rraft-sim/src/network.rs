//! The simulated network: every message gets a delivery tick drawn at send
//! time (delay, reordering), may be lost or duplicated, and is dropped at
//! delivery if its link is cut (partitions, one-way drops) or its receiver
//! crashed since it was sent.

use std::collections::{BTreeMap, BTreeSet};

use rraft::core::rng::Rng;
use rraft::core::Message;

use crate::disk::SmState;

/// A message on the wire, with the sender's snapshot attached out of band
/// when it is an `InstallSnapshot`.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub from: usize,
    pub to: usize,
    /// Incarnations at send time: a message to a node that restarted since
    /// is lost; reports go only to the sender's same incarnation.
    pub from_incarnation: u64,
    pub to_incarnation: u64,
    pub msg: Message,
    pub snapshot: Option<SmState>,
    /// Decided lost at send time (reported at delivery time).
    pub lost: bool,
}

/// Fault rates of the wire, per mille.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub loss: u64,
    pub dup: u64,
    /// Delivery delay in ticks, uniform in [1, delay_max].
    pub delay_max: u64,
    /// Chance of a long delay (up to `long_delay_max` ticks): reorders
    /// messages across many heartbeats.
    pub long_delay: u64,
    pub long_delay_max: u64,
    /// Messages due in the same tick arrive in the order sent, as over the
    /// TCP transport (one connection per peer) once the faults healed.
    /// Otherwise they arrive in random order: a pipelined window of Appends
    /// lands shuffled and the follower keeps only its in-order prefix.
    pub fifo: bool,
}

impl NetConfig {
    /// No loss, duplication, delay or partition.
    pub fn reliable() -> NetConfig {
        NetConfig {
            loss: 0,
            dup: 0,
            delay_max: 1,
            long_delay: 0,
            long_delay_max: 1,
            fifo: true,
        }
    }
}

/// Why a message did not arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Lost,
    Cut,
    ReceiverDown,
}

/// The simulated network: messages in flight, links cut, and its counters.
pub struct Network {
    /// (delivery tick, random key, sequence) → message.
    queue: BTreeMap<(u64, u64, u64), Envelope>,
    seq: u64,
    /// Directed links that drop everything.
    cut: BTreeSet<(usize, usize)>,
    pub cfg: NetConfig,
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
}

impl Network {
    /// An empty network with `cfg`.
    pub fn new(cfg: NetConfig) -> Network {
        Network {
            queue: BTreeMap::new(),
            seq: 0,
            cut: BTreeSet::new(),
            cfg,
            sent: 0,
            delivered: 0,
            dropped: 0,
            duplicated: 0,
        }
    }

    fn delay(&self, rng: &mut Rng) -> u64 {
        if self.cfg.long_delay > 0 && rng.chance(self.cfg.long_delay, 1000) {
            rng.range(1, self.cfg.long_delay_max.max(1) + 1)
        } else {
            rng.range(1, self.cfg.delay_max.max(1) + 1)
        }
    }

    fn push(&mut self, now: u64, env: Envelope, rng: &mut Rng) {
        let at = now + self.delay(rng);
        // Drawn either way: the rest of the schedule does not depend on it.
        let shuffle = rng.next_u64();
        let key = if self.cfg.fifo { 0 } else { shuffle };
        self.seq += 1;
        self.queue.insert((at, key, self.seq), env);
    }

    /// Puts a message on the wire at `now`.
    pub fn send(&mut self, now: u64, mut env: Envelope, rng: &mut Rng) {
        self.sent += 1;
        env.lost = self.cfg.loss > 0 && rng.chance(self.cfg.loss, 1000);
        if !env.lost && self.cfg.dup > 0 && rng.chance(self.cfg.dup, 1000) {
            self.duplicated += 1;
            self.push(now, env.clone(), rng);
        }
        self.push(now, env, rng);
    }

    /// The next message due at `now`, in delivery order.
    pub fn pop_due(&mut self, now: u64) -> Option<Envelope> {
        let (&k, _) = self.queue.iter().next()?;
        if k.0 > now {
            return None;
        }
        self.queue.remove(&k)
    }

    /// Whether `env` arrives; counts it either way.
    pub fn verdict(&mut self, env: &Envelope) -> Result<(), DropReason> {
        let r = if env.lost {
            Err(DropReason::Lost)
        } else if self.cut.contains(&(env.from, env.to)) {
            Err(DropReason::Cut)
        } else {
            Ok(())
        };
        match r {
            Ok(()) => self.delivered += 1,
            Err(_) => self.dropped += 1,
        }
        r
    }

    /// Cuts every link between `a` and `b`, both ways.
    pub fn split(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    /// Cuts the link `from → to` only.
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        self.cut.insert((from, to));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether the link `from → to` drops everything.
    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Whether any link is cut.
    pub fn partitioned(&self) -> bool {
        !self.cut.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(from: usize, to: usize, term: u64) -> Envelope {
        Envelope {
            from,
            to,
            from_incarnation: 0,
            to_incarnation: 0,
            msg: Message {
                term,
                ..Message::default()
            },
            snapshot: None,
            lost: false,
        }
    }

    fn drain(net: &mut Network, upto: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for t in 0..=upto {
            while let Some(e) = net.pop_due(t) {
                if net.verdict(&e).is_ok() {
                    out.push((t, e.msg.term));
                }
            }
        }
        out
    }

    #[test]
    fn delivers_after_a_delay_and_reorders() {
        let mut net = Network::new(NetConfig {
            delay_max: 5,
            fifo: false,
            ..NetConfig::reliable()
        });
        let mut rng = Rng::new(7);
        for i in 0..50 {
            net.send(0, env(0, 1, i), &mut rng);
        }
        let got = drain(&mut net, 10);
        assert_eq!(got.len(), 50);
        assert!(got.iter().all(|&(t, _)| (1..=5).contains(&t)));
        let terms: Vec<u64> = got.iter().map(|g| g.1).collect();
        let mut sorted = terms.clone();
        sorted.sort();
        assert_ne!(terms, sorted, "some reordering expected");
    }

    #[test]
    fn loses_duplicates_and_cuts() {
        let mut net = Network::new(NetConfig {
            loss: 200,
            dup: 200,
            fifo: false,
            ..NetConfig::reliable()
        });
        let mut rng = Rng::new(1);
        for i in 0..1000 {
            net.send(0, env(0, 1, i), &mut rng);
        }
        let got = drain(&mut net, 2);
        assert!(got.len() > 850 && got.len() < 1150, "{}", got.len());
        assert!(net.duplicated > 100 && net.dropped > 100);

        let mut net = Network::new(NetConfig::reliable());
        net.split(&[0], &[1, 2]);
        net.cut_one_way(2, 1);
        for (f, t) in [(0, 1), (1, 0), (1, 2), (2, 1), (2, 0)] {
            net.send(0, env(f, t, 0), &mut rng);
        }
        let mut ok = Vec::new();
        while let Some(e) = net.pop_due(1) {
            if net.verdict(&e).is_ok() {
                ok.push((e.from, e.to));
            }
        }
        assert_eq!(ok, vec![(1, 2)]);
        net.heal();
        assert!(!net.partitioned());
    }

    #[test]
    fn a_fifo_network_keeps_the_send_order() {
        let mut net = Network::new(NetConfig::reliable());
        let mut rng = Rng::new(5);
        for i in 0..50 {
            net.send(0, env(0, 1, i), &mut rng);
        }
        let terms: Vec<u64> = drain(&mut net, 2).into_iter().map(|g| g.1).collect();
        assert_eq!(terms, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn same_seed_same_schedule() {
        let run = |seed| {
            let mut net = Network::new(NetConfig {
                loss: 100,
                dup: 100,
                delay_max: 4,
                long_delay: 50,
                long_delay_max: 30,
                fifo: false,
            });
            let mut rng = Rng::new(seed);
            for i in 0..200 {
                net.send(i / 10, env(0, 1, i), &mut rng);
            }
            drain(&mut net, 100)
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
