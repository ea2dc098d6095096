//! The key-value option of the simulator (the linearizability test runs it):
//! a few registers in the replicated state machine, and clients that issue
//! read / write / compare-and-set on them and record what they see.
//!
//! - Writes and CAS are proposed as log entries (mostly to the leader,
//!   sometimes to a follower, which refuses); the proposer answers when its
//!   state machine applies the entry's index: same term → ok (CAS with its
//!   comparison result), another term → failed; a crash or a timeout leaves
//!   the outcome unknown.
//! - Reads go through ReadIndex on any node and are served once that node
//!   applied the read index; or, on a node that believes it leads, as lease
//!   reads while `is_lease_valid()` (and an entry of its term committed).
//!
//! Every client event gets a logical time (tick, sequence); the history goes
//! to `linearizability::check` at the end of the run.

use std::collections::BTreeMap;

use bytes::Bytes;
use rraft::core::rng::Rng;

use crate::linearizability::{Input, Op, Outcome, Output, Value};

/// Keys the clients use.
pub const KEYS: u64 = 3;
/// Concurrent clients.
pub const CLIENTS: usize = 5;

/// The registers, as the state machine holds them (and snapshots carry).
pub type Registers = BTreeMap<u64, Value>;

/// A command a log entry carries: (op id, key, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Write { key: u64, value: Value },
    Cas { key: u64, expect: Value, new: Value },
}

const WRITE: u8 = 0xC1;
const CAS: u8 = 0xC2;
const LEN: usize = 33;

/// The log entry payload of operation `op` carrying `cmd`.
pub fn encode(op: u64, cmd: Cmd) -> Bytes {
    let (kind, key, a, b) = match cmd {
        Cmd::Write { key, value } => (WRITE, key, value, 0),
        Cmd::Cas { key, expect, new } => (CAS, key, expect, new),
    };
    let mut v = Vec::with_capacity(LEN);
    v.push(kind);
    for x in [op, key, a, b] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}

/// The command in an entry's data, if it carries one (the simulator's other
/// payloads are text and never start with these bytes).
pub fn decode(data: &[u8]) -> Option<(u64, Cmd)> {
    if data.len() != LEN {
        return None;
    }
    let u = |i: usize| u64::from_le_bytes(data[1 + 8 * i..9 + 8 * i].try_into().expect("8 bytes"));
    let (op, key, a, b) = (u(0), u(1), u(2), u(3));
    match data[0] {
        WRITE => Some((op, Cmd::Write { key, value: a })),
        CAS => Some((
            op,
            Cmd::Cas {
                key,
                expect: a,
                new: b,
            },
        )),
        _ => None,
    }
}

/// Applies a command: (op id, CAS result; true for a write).
pub fn apply(regs: &mut Registers, data: &[u8]) -> Option<(u64, bool)> {
    let (op, cmd) = decode(data)?;
    match cmd {
        Cmd::Write { key, value } => {
            regs.insert(key, value);
            Some((op, true))
        }
        Cmd::Cas { key, expect, new } => {
            let ok = regs.get(&key).copied().unwrap_or(0) == expect;
            if ok {
                regs.insert(key, new);
            }
            Some((op, ok))
        }
    }
}

/// What a client waits for.
#[derive(Clone, Copy, Debug)]
enum Pending {
    Update,
    Read { key: u64 },
}

#[derive(Clone, Debug, Default)]
struct Client {
    /// (op id, what, deadline tick)
    busy: Option<(u64, Pending, u64)>,
    last_seen: [Value; KEYS as usize],
}

/// What a client wants to do now; the cluster carries it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Propose `cmd` (op `op`) to the leader, or to a random node if `any`.
    Update { op: u64, cmd: Cmd, any: bool },
    /// A ReadIndex read of `key` on the leader, or on a random node if `any`.
    IndexRead { op: u64, key: u64, any: bool },
    /// A lease read of `key` on a node that believes it leads.
    LeaseRead { op: u64, key: u64 },
}

/// The clients, their history and counters.
pub struct Clients {
    rng: Rng,
    clients: Vec<Client>,
    next_op: u64,
    clock: u64,
    /// op id → (client, history index).
    ops: BTreeMap<u64, (usize, usize)>,
    /// Every operation, in invocation order.
    pub history: Vec<Op>,
    /// Reads served under the lease.
    pub lease_reads: u64,
    /// Reads served through ReadIndex.
    pub index_reads: u64,
    /// During the chaos, an idle client issues a request on a tick with
    /// this chance (numerator, denominator); sparse clients leave the group
    /// idle, so it quiesces between requests.
    pub chaos_rate: (u64, u64),
}

impl Clients {
    /// The clients of `seed`.
    pub fn new(seed: u64) -> Clients {
        Clients {
            rng: Rng::new(seed),
            clients: vec![Client::default(); CLIENTS],
            next_op: 1,
            clock: 0,
            ops: BTreeMap::new(),
            history: Vec::new(),
            lease_reads: 0,
            index_reads: 0,
            chaos_rate: (1, 3),
        }
    }

    /// The clients' random source.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Logical time of a client event: the tick in the high bits, a
    /// sequence number that orders events within (and across) ticks below.
    fn time(&mut self, now: u64) -> u64 {
        self.clock += 1;
        now << 32 | self.clock
    }

    /// This tick's new requests; clients past their deadline give up first.
    pub fn requests(&mut self, now: u64, timeout: u64, chaos: bool) -> Vec<Request> {
        let mut out = Vec::new();
        for c in 0..self.clients.len() {
            if let Some((_, _, deadline)) = self.clients[c].busy {
                if now >= deadline {
                    self.give_up(c);
                }
                continue;
            }
            let issues = if chaos {
                self.rng.chance(self.chaos_rate.0, self.chaos_rate.1)
            } else {
                self.rng.chance(2, 3)
            };
            if !issues {
                continue;
            }
            out.push(self.issue(c, now, now + timeout));
        }
        out
    }

    fn issue(&mut self, c: usize, now: u64, deadline: u64) -> Request {
        let key = self.rng.range(0, KEYS);
        let op = self.next_op;
        self.next_op += 1;
        let input = match self.rng.range(0, 10) {
            0..=3 => Input::Read,
            4..=6 => Input::Write(op),
            _ => {
                let expect = if self.rng.chance(1, 4) {
                    0
                } else {
                    self.clients[c].last_seen[key as usize]
                };
                Input::Cas(expect, op)
            }
        };
        let call = self.time(now);
        self.ops.insert(op, (c, self.history.len()));
        self.history.push(Op {
            client: c as u64,
            key,
            input,
            outcome: Outcome::Fail,
            call,
            ret: call,
        });
        match input {
            Input::Read => {
                self.clients[c].busy = Some((op, Pending::Read { key }, deadline));
                if self.rng.chance(1, 3) {
                    Request::LeaseRead { op, key }
                } else {
                    let any = self.rng.chance(1, 2);
                    Request::IndexRead { op, key, any }
                }
            }
            Input::Write(value) => {
                self.clients[c].busy = Some((op, Pending::Update, deadline));
                let any = self.rng.chance(1, 8);
                Request::Update {
                    op,
                    cmd: Cmd::Write { key, value },
                    any,
                }
            }
            Input::Cas(expect, new) => {
                self.clients[c].busy = Some((op, Pending::Update, deadline));
                let any = self.rng.chance(1, 8);
                Request::Update {
                    op,
                    cmd: Cmd::Cas { key, expect, new },
                    any,
                }
            }
        }
    }

    /// The key a pending read of `op` asks for.
    pub fn read_key(&self, op: u64) -> Option<u64> {
        let &(c, _) = self.ops.get(&op)?;
        match self.clients[c].busy {
            Some((id, Pending::Read { key }, _)) if id == op => Some(key),
            _ => None,
        }
    }

    /// A read answered with `value`.
    pub fn read_done(&mut self, now: u64, op: u64, value: Value, lease: bool) {
        if self.read_key(op).is_none() {
            return;
        }
        if lease {
            self.lease_reads += 1;
        } else {
            self.index_reads += 1;
        }
        self.complete(now, op, Outcome::Ok(Output::Read(value)));
    }

    /// An update applied by its proposer: `Some(cas_ok)` in its term,
    /// `None` if another term's entry took its index.
    pub fn update_done(&mut self, now: u64, op: u64, applied: Option<bool>) {
        let outcome = match applied {
            Some(ok) => Outcome::Ok(Output::Cas(ok)),
            None => Outcome::Fail,
        };
        self.complete(now, op, outcome);
    }

    /// Refused before it was sent anywhere: definitely not applied.
    pub fn refused(&mut self, now: u64, op: u64) {
        self.complete(now, op, Outcome::Fail);
    }

    fn complete(&mut self, now: u64, op: u64, outcome: Outcome) {
        let Some(&(c, hix)) = self.ops.get(&op) else {
            return;
        };
        match self.clients[c].busy {
            Some((id, _, _)) if id == op => {}
            _ => return, // the client gave up on it already
        }
        let t = self.time(now);
        let h = &mut self.history[hix];
        // Outputs of updates are typed by their input.
        h.outcome = match (h.input, outcome) {
            (Input::Write(_), Outcome::Ok(_)) => Outcome::Ok(Output::Write),
            (_, o) => o,
        };
        h.ret = t;
        let seen = match (h.input, h.outcome) {
            (Input::Read, Outcome::Ok(Output::Read(v))) => Some(v),
            (Input::Write(v), Outcome::Ok(_)) => Some(v),
            (Input::Cas(_, n), Outcome::Ok(Output::Cas(true))) => Some(n),
            _ => None,
        };
        if let Some(v) = seen {
            self.clients[c].last_seen[h.key as usize] = v;
        }
        self.clients[c].busy = None;
    }

    /// The client stops waiting: an update's outcome becomes unknown, a read
    /// is dropped.
    pub fn give_up(&mut self, c: usize) {
        if let Some((op, p, _)) = self.clients[c].busy.take() {
            let Some(&(_, hix)) = self.ops.get(&op) else {
                return;
            };
            self.history[hix].outcome = match p {
                Pending::Update => Outcome::Unknown,
                Pending::Read { .. } => Outcome::Fail,
            };
        }
    }

    /// The op `op`'s client gives up on it (a read that could not be sent).
    pub fn abandon(&mut self, op: u64) {
        if let Some(&(c, _)) = self.ops.get(&op) {
            if matches!(self.clients[c].busy, Some((id, _, _)) if id == op) {
                self.give_up(c);
            }
        }
    }

    /// End of the run: whatever is still pending is unknown (reads: dropped).
    pub fn finish(&mut self) {
        for c in 0..self.clients.len() {
            self.give_up(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_apply() {
        let mut regs = Registers::new();
        let w = encode(7, Cmd::Write { key: 1, value: 7 });
        assert_eq!(decode(&w), Some((7, Cmd::Write { key: 1, value: 7 })));
        assert_eq!(apply(&mut regs, &w), Some((7, true)));
        let cas = |op, expect, new| {
            encode(
                op,
                Cmd::Cas {
                    key: 1,
                    expect,
                    new,
                },
            )
        };
        assert_eq!(apply(&mut regs, &cas(8, 3, 8)), Some((8, false)));
        assert_eq!(apply(&mut regs, &cas(9, 7, 9)), Some((9, true)));
        assert_eq!(regs.get(&1), Some(&9));
        assert_eq!(apply(&mut regs, b"s1-p1"), None);
    }

    #[test]
    fn a_client_that_gives_up_leaves_an_unknown_update() {
        let mut c = Clients::new(3);
        let mut updates = Vec::new();
        for t in 0..50 {
            for r in c.requests(t, 1000, true) {
                if let Request::Update { op, .. } = r {
                    updates.push(op);
                }
            }
        }
        let op = updates[0];
        c.finish();
        let (_, hix) = c.ops[&op];
        assert_eq!(c.history[hix].outcome, Outcome::Unknown);
        // A late answer changes nothing.
        c.update_done(60, op, Some(true));
        assert_eq!(c.history[hix].outcome, Outcome::Unknown);
    }
}
