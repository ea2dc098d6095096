//! The event trace: a ring buffer of the last events, printed with a
//! violation; in verbose mode (`SIM_SEED`) every event is printed as it happens.

use std::collections::VecDeque;
use std::fmt;

use rraft::core::{Message, MessageType};

/// Events kept for a failure report.
pub const RING: usize = 200;

/// A compact summary of a message (cheap to record).
#[derive(Clone, Debug)]
pub struct MsgSummary {
    pub kind: i32,
    pub from: usize,
    pub to: usize,
    pub term: u64,
    pub log_term: u64,
    pub index: u64,
    pub commit: u64,
    pub entries: usize,
    pub reject: bool,
    /// A rejection's hint: (index, term) of the sender's log to back off to.
    pub hint: (u64, u64),
}

impl MsgSummary {
    /// The summary of `m` sent from `from` to `to`.
    pub fn of(from: usize, to: usize, m: &Message) -> MsgSummary {
        MsgSummary {
            kind: m.msg_type,
            from,
            to,
            term: m.term,
            log_term: m.log_term,
            index: m.index,
            commit: m.commit,
            entries: m.entries.len(),
            reject: m.reject,
            hint: (m.reject_hint, m.hint_term),
        }
    }
}

impl fmt::Display for MsgSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = MessageType::try_from(self.kind)
            .map(|k| format!("{k:?}"))
            .unwrap_or_else(|_| format!("?{}", self.kind));
        write!(
            f,
            "{kind} n{}->n{} t{} lt{} i{} c{} e{}{}",
            self.from + 1,
            self.to + 1,
            self.term,
            self.log_term,
            self.index,
            self.commit,
            self.entries,
            if self.reject {
                format!(" REJECT hint {}/{}", self.hint.0, self.hint.1)
            } else {
                String::new()
            }
        )
    }
}

/// One recorded event.
#[derive(Clone, Debug)]
pub enum Ev {
    Deliver(MsgSummary),
    Drop(MsgSummary, &'static str),
    Persisted { node: usize, index: u64, term: u64 },
    Applied { node: usize, from: u64, to: u64 },
    Note { node: Option<usize>, text: String },
}

impl fmt::Display for Ev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ev::Deliver(m) => write!(f, "deliver {m}"),
            Ev::Drop(m, why) => write!(f, "drop({why}) {m}"),
            Ev::Persisted { node, index, term } => {
                write!(f, "n{} persisted up to {index}/{term}", node + 1)
            }
            Ev::Applied { node, from, to } => write!(f, "n{} applied {from}..={to}", node + 1),
            Ev::Note {
                node: Some(n),
                text,
            } => write!(f, "n{} {text}", n + 1),
            Ev::Note { node: None, text } => write!(f, "{text}"),
        }
    }
}

/// The last [`RING`] events of a run (every event when verbose).
pub struct Trace {
    ring: VecDeque<(u64, Ev)>,
    pub verbose: bool,
}

impl Trace {
    /// An empty trace; `verbose` prints each event as it happens.
    pub fn new(verbose: bool) -> Trace {
        Trace {
            ring: VecDeque::with_capacity(RING),
            verbose,
        }
    }

    /// Records `ev` at `tick`.
    pub fn push(&mut self, tick: u64, ev: Ev) {
        if self.verbose {
            println!("[t{tick:>5}] {ev}");
        }
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back((tick, ev));
    }

    /// The last events, oldest first, one per line.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for (t, ev) in &self.ring {
            s.push_str(&format!("  [t{t:>5}] {ev}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_events() {
        let mut t = Trace::new(false);
        for i in 0..(RING as u64 + 50) {
            t.push(
                i,
                Ev::Note {
                    node: None,
                    text: format!("e{i}"),
                },
            );
        }
        let d = t.dump();
        assert_eq!(d.lines().count(), RING);
        assert!(d.contains(&format!("e{}", RING + 49)));
        assert!(!d.contains("] e49\n"));
    }
}
