//! A linearizability checker for key-value histories (Wing & Gong's
//! search with Lowe's memoization, as in Porcupine and Knossos).
//!
//! A history is a list of client operations, each with an invocation time,
//! a completion time and an outcome:
//! - `Ok(output)`: the operation took effect once, between invocation and
//!   completion, and returned `output`;
//! - `Fail`: it definitely did not take effect (dropped before the search);
//! - `Unknown`: it may or may not have taken effect. Its completion time is
//!   the end of history and any output is accepted; "never took effect" is
//!   the same as "took effect after everything else", which the search
//!   always may choose, so no special case is needed.
//!
//! Keys are independent registers (a KV map is linearizable iff every key
//! is), so the history is partitioned by key and each key is searched on
//! its own. The search is a depth-first walk over the linked list of call
//! and return events: linearize a call whose operation the model accepts,
//! or backtrack when the first pending return is reached; every visited
//! (linearized set, model state) pair is cached so each is expanded once.
//! A step budget per key turns a pathological search into "inconclusive".

use std::collections::{BTreeMap, HashSet};

/// A register's value; 0 is "never written" (reads of a missing key).
pub type Value = u64;

/// What an operation asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Read,
    Write(Value),
    /// Compare-and-set: (expected, new).
    Cas(Value, Value),
}

/// What an operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Read(Value),
    Write,
    /// Whether the comparison succeeded (and the new value was stored).
    Cas(bool),
}

/// How an operation ended (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(Output),
    Fail,
    Unknown,
}

/// One client operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The client that issued it.
    pub client: u64,
    /// The register it names.
    pub key: u64,
    /// What it asked for.
    pub input: Input,
    /// How it ended.
    pub outcome: Outcome,
    /// Logical invocation time.
    pub call: u64,
    /// Logical completion time (ignored for `Unknown`: end of history).
    pub ret: u64,
}

/// The checker's answer for a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the key's history; `detail` lists its operations.
    Violation {
        key: u64,
        detail: String,
    },
    /// The step budget ran out on this key.
    Inconclusive {
        key: u64,
    },
}

/// The model: one register. `None` = the operation cannot happen now.
fn step(state: Value, input: Input, outcome: Outcome) -> Option<Value> {
    match (input, outcome) {
        (_, Outcome::Fail) => None,
        (Input::Read, Outcome::Ok(Output::Read(v))) => (v == state).then_some(state),
        (Input::Read, Outcome::Unknown) => Some(state),
        (Input::Write(v), Outcome::Ok(Output::Write) | Outcome::Unknown) => Some(v),
        (Input::Cas(e, n), Outcome::Ok(Output::Cas(true))) => (state == e).then_some(n),
        (Input::Cas(e, _), Outcome::Ok(Output::Cas(false))) => (state != e).then_some(state),
        (Input::Cas(e, n), Outcome::Unknown) => Some(if state == e { n } else { state }),
        _ => None, // an output of the wrong kind
    }
}

/// Checks every key; the first violation (or else the first inconclusive
/// key) is the verdict. `step_limit` bounds the search of each key.
pub fn check(history: &[Op], step_limit: u64) -> Verdict {
    let mut by_key: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    for op in history {
        let keep = match op.outcome {
            Outcome::Fail => false,
            // A read whose answer nobody saw constrains nothing.
            Outcome::Unknown => op.input != Input::Read,
            Outcome::Ok(_) => true,
        };
        if keep {
            by_key.entry(op.key).or_default().push(op);
        }
    }
    let mut inconclusive = None;
    for (key, ops) in by_key {
        match check_key(&ops, step_limit) {
            Some(true) => {}
            Some(false) => {
                return Verdict::Violation {
                    key,
                    detail: describe(&ops),
                }
            }
            None => {
                inconclusive.get_or_insert(key);
            }
        }
    }
    match inconclusive {
        Some(key) => Verdict::Inconclusive { key },
        None => Verdict::Linearizable,
    }
}

fn describe(ops: &[&Op]) -> String {
    let mut v: Vec<&&Op> = ops.iter().collect();
    v.sort_by_key(|o| o.call);
    let mut s = String::new();
    for o in v.iter().take(60) {
        let ret = match o.outcome {
            Outcome::Unknown => "?".to_string(),
            _ => o.ret.to_string(),
        };
        s.push_str(&format!(
            "\n  c{} [{}, {}] {:?} -> {:?}",
            o.client, o.call, ret, o.input, o.outcome
        ));
    }
    if v.len() > 60 {
        s.push_str(&format!("\n  ... {} more", v.len() - 60));
    }
    s
}

const NIL: usize = usize::MAX;

struct Ev {
    /// Index into the key's ops.
    op: usize,
    /// For a call: the index of its return event.
    ret: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// Some(true): linearizable; Some(false): not; None: out of steps.
fn check_key(ops: &[&Op], step_limit: u64) -> Option<bool> {
    if ops.is_empty() {
        return Some(true);
    }
    // Events sorted by time; at equal times calls first (concurrent, the
    // permissive reading). Unknown outcomes return after everything.
    let mut evs: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, o) in ops.iter().enumerate() {
        let ret = match o.outcome {
            Outcome::Unknown => u64::MAX,
            _ => o.ret.max(o.call),
        };
        evs.push((o.call, 0, i));
        evs.push((ret, 1, i));
    }
    evs.sort();
    // Node 0 is the head sentinel; events are 1..=2n.
    let mut list: Vec<Ev> = Vec::with_capacity(evs.len() + 1);
    list.push(Ev {
        op: NIL,
        ret: NIL,
        is_call: false,
        prev: NIL,
        next: 1,
    });
    let mut ret_of = vec![NIL; ops.len()];
    for (k, &(_, kind, op)) in evs.iter().enumerate() {
        let idx = k + 1;
        list.push(Ev {
            op,
            ret: NIL,
            is_call: kind == 0,
            prev: idx - 1,
            next: if k + 1 < evs.len() { idx + 1 } else { NIL },
        });
        if kind == 1 {
            ret_of[op] = idx;
        }
    }
    for e in list.iter_mut().skip(1) {
        if e.is_call {
            e.ret = ret_of[e.op];
        }
    }

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, Value)> = HashSet::new();
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut state: Value = 0;
    let mut entry = list[0].next;
    let mut steps = 0u64;
    while list[0].next != NIL {
        steps += 1;
        if steps > step_limit {
            return None;
        }
        let e = &list[entry];
        if e.is_call {
            let op = ops[e.op];
            let mut advanced = false;
            if let Some(next_state) = step(state, op.input, op.outcome) {
                linearized[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((linearized.clone(), next_state)) {
                    stack.push((entry, state));
                    state = next_state;
                    lift(&mut list, entry);
                    entry = list[0].next;
                    advanced = true;
                } else {
                    linearized[e.op / 64] &= !(1 << (e.op % 64));
                }
            }
            if !advanced {
                entry = list[entry].next;
            }
        } else {
            // A return whose call is not linearized yet: backtrack.
            let Some((call, old)) = stack.pop() else {
                return Some(false);
            };
            let op = list[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = old;
            unlift(&mut list, call);
            entry = list[call].next;
        }
    }
    Some(true)
}

fn lift(list: &mut [Ev], call: usize) {
    let (p, n) = (list[call].prev, list[call].next);
    list[p].next = n;
    list[n].prev = p; // a call is always followed by its return
    let r = list[call].ret;
    let (p, n) = (list[r].prev, list[r].next);
    list[p].next = n;
    if n != NIL {
        list[n].prev = p;
    }
}

fn unlift(list: &mut [Ev], call: usize) {
    let r = list[call].ret;
    let (p, n) = (list[r].prev, list[r].next);
    list[p].next = r;
    if n != NIL {
        list[n].prev = r;
    }
    let (p, n) = (list[call].prev, list[call].next);
    list[p].next = call;
    list[n].prev = call;
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1_000_000;

    fn op(client: u64, call: u64, ret: u64, input: Input, outcome: Outcome) -> Op {
        Op {
            client,
            key: 1,
            input,
            outcome,
            call,
            ret,
        }
    }
    fn w(c: u64, call: u64, ret: u64, v: Value) -> Op {
        op(c, call, ret, Input::Write(v), Outcome::Ok(Output::Write))
    }
    fn r(c: u64, call: u64, ret: u64, v: Value) -> Op {
        op(c, call, ret, Input::Read, Outcome::Ok(Output::Read(v)))
    }
    fn cas(c: u64, call: u64, ret: u64, e: Value, n: Value, ok: bool) -> Op {
        op(c, call, ret, Input::Cas(e, n), Outcome::Ok(Output::Cas(ok)))
    }
    fn unknown(mut o: Op) -> Op {
        o.outcome = Outcome::Unknown;
        o.ret = 0;
        o
    }
    fn failed(mut o: Op) -> Op {
        o.outcome = Outcome::Fail;
        o
    }
    fn bad(h: &[Op]) {
        match check(h, LIMIT) {
            Verdict::Violation { .. } => {}
            v => panic!("expected a violation, got {v:?} for {h:?}"),
        }
    }
    fn good(h: &[Op]) {
        assert_eq!(check(h, LIMIT), Verdict::Linearizable, "{h:?}");
    }

    // ----- known-bad histories: each must be rejected ---------------------

    #[test]
    fn stale_read_after_acknowledged_write() {
        bad(&[w(1, 0, 1, 5), w(1, 2, 3, 6), r(2, 4, 5, 5)]);
    }

    #[test]
    fn read_of_initial_value_after_acknowledged_write() {
        bad(&[w(1, 0, 1, 5), r(2, 2, 3, 0)]);
    }

    #[test]
    fn lost_acknowledged_write() {
        // Written, acknowledged, then never seen: two later reads agree on
        // the old value.
        bad(&[w(1, 0, 1, 1), w(2, 2, 3, 2), r(3, 4, 5, 1), r(3, 6, 7, 1)]);
    }

    #[test]
    fn cas_succeeds_twice_from_the_same_value() {
        bad(&[
            w(1, 0, 1, 1),
            cas(2, 2, 5, 1, 2, true),
            cas(3, 3, 6, 1, 3, true),
        ]);
    }

    #[test]
    fn cas_fails_although_the_value_matched() {
        bad(&[w(1, 0, 1, 1), cas(2, 2, 3, 1, 2, false)]);
    }

    #[test]
    fn read_of_a_value_never_written() {
        bad(&[w(1, 0, 3, 1), r(2, 1, 4, 9)]);
    }

    #[test]
    fn read_of_a_failed_write() {
        bad(&[failed(w(1, 0, 1, 7)), r(2, 2, 3, 7)]);
    }

    #[test]
    fn reads_go_back_in_time() {
        // Concurrent writes may be ordered either way, but two sequential
        // reads cannot see the order both ways.
        bad(&[
            w(1, 0, 10, 1),
            w(2, 0, 10, 2),
            r(3, 1, 2, 1),
            r(3, 3, 4, 2),
            r(3, 5, 6, 1),
        ]);
    }

    #[test]
    fn unknown_write_cannot_explain_a_read_before_it_was_invoked() {
        bad(&[r(1, 0, 1, 4), unknown(w(2, 2, 0, 4))]);
    }

    #[test]
    fn one_bad_key_among_good_ones() {
        let mut h = vec![w(1, 0, 1, 1), r(2, 2, 3, 1)];
        let mut other = vec![w(1, 4, 5, 2), r(2, 6, 7, 0)];
        for o in &mut other {
            o.key = 2;
        }
        h.extend(other);
        match check(&h, LIMIT) {
            Verdict::Violation { key: 2, .. } => {}
            v => panic!("{v:?}"),
        }
    }

    // ----- known-good histories: each must be accepted --------------------

    #[test]
    fn sequential_history() {
        good(&[
            r(1, 0, 1, 0),
            w(1, 2, 3, 1),
            r(2, 4, 5, 1),
            cas(2, 6, 7, 1, 2, true),
            cas(1, 8, 9, 1, 3, false),
            r(1, 10, 11, 2),
        ]);
    }

    #[test]
    fn overlapping_writes_read_in_either_order() {
        for (a, b) in [(1, 2), (2, 1)] {
            good(&[
                w(1, 0, 10, 1),
                w(2, 1, 9, 2),
                r(3, 11, 12, a),
                w(4, 13, 14, a),
                r(3, 15, 16, a),
            ]);
            // A read overlapping both writes may see either or the initial.
            for v in [0, a, b] {
                good(&[w(1, 0, 10, a), w(2, 1, 9, b), r(3, 2, 8, v)]);
            }
        }
    }

    #[test]
    fn unknown_write_that_happened() {
        good(&[w(1, 0, 1, 1), unknown(w(2, 2, 0, 2)), r(3, 10, 11, 2)]);
    }

    #[test]
    fn unknown_write_that_did_not_happen() {
        good(&[w(1, 0, 1, 1), unknown(w(2, 2, 0, 2)), r(3, 10, 11, 1)]);
    }

    #[test]
    fn unknown_write_that_happened_late() {
        // Not visible at first, then visible: it took effect between.
        good(&[
            w(1, 0, 1, 1),
            unknown(w(2, 2, 0, 2)),
            r(3, 10, 11, 1),
            r(3, 20, 21, 2),
        ]);
    }

    #[test]
    fn unknown_cas_either_way() {
        for seen in [1, 2] {
            good(&[
                w(1, 0, 1, 1),
                unknown(cas(2, 2, 0, 1, 2, true)),
                r(3, 5, 6, seen),
            ]);
        }
    }

    #[test]
    fn failed_operations_are_ignored() {
        good(&[
            w(1, 0, 1, 1),
            failed(w(2, 2, 3, 2)),
            failed(cas(2, 4, 5, 1, 3, true)),
            r(3, 6, 7, 1),
            unknown(r(3, 8, 0, 99)),
        ]);
    }

    #[test]
    fn concurrent_cas_one_wins() {
        good(&[
            w(1, 0, 1, 1),
            cas(2, 2, 5, 1, 2, true),
            cas(3, 3, 6, 1, 3, false),
            r(1, 7, 8, 2),
        ]);
    }

    #[test]
    fn many_concurrent_writes_are_fast() {
        // 12 mutually concurrent writes then a read: memoization keeps
        // this small (the unmemoized search is 12!).
        let mut h: Vec<Op> = (1..=12).map(|i| w(i, 0, 100, i)).collect();
        h.push(r(99, 101, 102, 7));
        good(&h);
        h.push(r(99, 103, 104, 8));
        bad(&h);
    }

    #[test]
    fn step_limit_reports_inconclusive() {
        let mut h: Vec<Op> = (1..=14).map(|i| w(i, 0, 100, i)).collect();
        h.push(r(99, 101, 102, 77));
        assert_eq!(check(&h, 50), Verdict::Inconclusive { key: 1 });
    }
}
