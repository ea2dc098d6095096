//! A runner for data-driven tests: text transcripts of commands and the
//! output the core must produce, in the style of etcd-io/raft's
//! `testdata/*.txt` (cockroachdb/datadriven).
//!
//! A file is a sequence of cases separated by blank lines:
//!
//! ```text
//! # a comment (outside a case)
//! command key=value word
//! ----
//! expected output, one or more non-blank lines
//! ```
//!
//! `REWRITE=1 cargo test -p rraft-core` writes the actual outputs into the
//! files instead of comparing; read the diff before committing it.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::testing::{Network, Node};
use crate::{Error, Event, Message, MessageType, TRANSFER_CONTEXT};

/// One case: the command line, split into the command and its arguments.
pub struct Case {
    /// 1-based line of the command in its file.
    pub line: usize,
    pub command: String,
    /// `key=value` arguments.
    pub keyed: BTreeMap<String, String>,
    /// Arguments without `=`, in order.
    pub words: Vec<String>,
}

impl Case {
    /// The argument `key`, or a panic naming the case.
    pub fn arg(&self, key: &str) -> &str {
        self.keyed
            .get(key)
            .unwrap_or_else(|| panic!("line {}: `{}` needs {key}=", self.line, self.command))
    }

    /// A comma-separated list argument; empty when absent.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.keyed
            .get(key)
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs every case of `testdata/<name>` through `run`, which returns the
/// output text (no blank lines; "ok" rather than nothing), and compares.
pub fn run_file(name: &str, mut run: impl FnMut(&Case) -> String) {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let lines: Vec<&str> = text.lines().collect();
    let rewrite = std::env::var_os("REWRITE").is_some();
    let mut out: Vec<String> = Vec::new();
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || line.starts_with('#') {
            out.push(line.to_string());
            i += 1;
            continue;
        }
        let case = parse(i + 1, line);
        out.push(line.to_string());
        assert_eq!(
            lines.get(i + 1).copied(),
            Some("----"),
            "{path}:{}: a command is followed by ----",
            i + 1
        );
        out.push("----".into());
        i += 2;
        let start = i;
        while i < lines.len() && !lines[i].trim().is_empty() {
            i += 1;
        }
        let expected = lines[start..i].join("\n");
        let actual = run(&case).trim_end().to_string();
        assert!(
            !actual.is_empty() && !actual.lines().any(|l| l.trim().is_empty()),
            "{path}:{}: output must be non-empty and have no blank line",
            case.line
        );
        if actual != expected {
            failures.push(format!(
                "{path}:{}: {line}\n--- expected\n{expected}\n--- actual\n{actual}",
                case.line
            ));
        }
        out.push(actual);
        cases += 1;
    }
    assert!(cases > 0, "{path} has no case");
    if rewrite {
        std::fs::write(&path, out.join("\n") + "\n").expect("rewrite testdata");
    } else if !failures.is_empty() {
        panic!(
            "{} case(s) failed:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
}

fn parse(line: usize, text: &str) -> Case {
    let mut parts = text.split_whitespace();
    let command = parts.next().unwrap_or_default().to_string();
    let mut keyed = BTreeMap::new();
    let mut words = Vec::new();
    for p in parts {
        match p.split_once('=') {
            Some((k, v)) => {
                keyed.insert(k.to_string(), v.to_string());
            }
            None => words.push(p.to_string()),
        }
    }
    Case {
        line,
        command,
        keyed,
        words,
    }
}

/// An interaction environment over a [`Network`]: the commands of the
/// election, lease and transfer transcripts. Messages wait in the network
/// until `deliver`; `tick` without node names ticks everyone and delivers
/// after each tick.
///
/// - `nodes a b c [quiesce=N]`: a new group of these voters (quiescing
///   after N quiet ticks); prints `status`.
/// - `campaign a`, `transfer a c` (`transfer a` picks the target),
///   `propose a data`: the call's result.
/// - `tick N [a b]`: N ticks of the named nodes (no delivery), or of every
///   node with delivery after each; prints `status`.
/// - `deliver`: delivers until nothing moves; prints each message delivered.
/// - `isolate a`, `heal`, `drop kind=TimeoutNow`: the network's faults.
/// - `status`: one line per node (`quiescent` when asleep). `lease a`: the
///   leader lease's end. `events a`: the events of `a` since last asked.
/// - `suspect a b`: `a`'s runtime suspects `b` failed. `lease-read a`: a
///   read under the lease; `reads a`: the read states since last asked.
#[derive(Default)]
pub struct InteractionEnv {
    net: Option<Network>,
}

impl InteractionEnv {
    pub fn run(&mut self, c: &Case) -> String {
        if c.command == "nodes" {
            let ids: Vec<&str> = c.words.iter().map(String::as_str).collect();
            let quiesce: u32 = c
                .keyed
                .get("quiesce")
                .map_or(0, |v| v.parse().expect("ticks"));
            self.net = Some(Network::with_config(&ids, |cfg| {
                cfg.quiesce_ticks = quiesce
            }));
            return self.status();
        }
        let net = self.net.as_mut().expect("`nodes` comes first");
        let node = |i: usize| c.words.get(i).map(String::as_str);
        let done = |r: Result<(), Error>| match r {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        };
        match c.command.as_str() {
            "campaign" => done(net.raft_mut(node(0).expect("node")).campaign()),
            "transfer" => done(
                net.raft_mut(node(0).expect("node"))
                    .transfer_leader(node(1)),
            ),
            "propose" => {
                let data = Bytes::from(node(1).unwrap_or("x").to_string());
                match net
                    .raft_mut(node(0).expect("node"))
                    .propose_batch(vec![data])
                {
                    Ok(p) => format!("index={} term={}", p.first_index, p.term),
                    Err(e) => format!("error: {e}"),
                }
            }
            "tick" => {
                let n: usize = node(0).expect("count").parse().expect("count");
                if c.words.len() == 1 {
                    net.ticks(n);
                } else {
                    for id in &c.words[1..] {
                        for _ in 0..n {
                            net.raft_mut(id).tick();
                        }
                    }
                }
                self.status()
            }
            "deliver" => {
                let before = net.delivered.len();
                net.settle();
                let lines: Vec<String> = net.delivered[before..].iter().map(describe).collect();
                if lines.is_empty() {
                    "no messages".into()
                } else {
                    lines.join("\n")
                }
            }
            "isolate" => {
                net.isolate(node(0).expect("node"));
                "ok".into()
            }
            "heal" => {
                net.heal();
                "ok".into()
            }
            "drop" => {
                let kind = message_type(c.arg("kind"));
                net.drop_kinds.insert(kind as i32);
                "ok".into()
            }
            "status" => self.status(),
            "suspect" => {
                let (who, peer) = (node(0).expect("node"), node(1).expect("peer"));
                net.raft_mut(who).peer_suspected(peer);
                "ok".into()
            }
            "lease-read" => {
                let id = node(0).expect("node");
                let r = net.raft_mut(id).lease_read(Bytes::from_static(b"r"));
                done(r)
            }
            "reads" => {
                let reads = std::mem::take(&mut net.node_mut(node(0).expect("node")).read_states);
                if reads.is_empty() {
                    return "no reads".into();
                }
                let show = |r: &crate::ReadState| format!("read at index {}", r.index);
                reads.iter().map(show).collect::<Vec<_>>().join("\n")
            }
            "lease" => match net.raft(node(0).expect("node")).lease_expiry() {
                Some(t) => format!("valid until tick {t}"),
                None => "none".into(),
            },
            "events" => {
                let events = std::mem::take(&mut net.node_mut(node(0).expect("node")).events);
                if events.is_empty() {
                    return "no events".into();
                }
                let show = |e: &Event| match e {
                    Event::TransferFailed(err) => format!("transfer failed: {err}"),
                    Event::ConfChangeDone(Ok(conf)) => format!("change done: {:?}", conf.voters),
                    Event::ConfChangeDone(Err(err)) => format!("change failed: {err}"),
                };
                events.iter().map(show).collect::<Vec<_>>().join("\n")
            }
            other => panic!("line {}: unknown command {other}", c.line),
        }
    }

    fn status(&self) -> String {
        let net = self.net.as_ref().expect("`nodes` comes first");
        let line = |(id, n): (&String, &Node)| {
            let s = n.raft.status();
            format!(
                "{id}: {:?} term={} vote={} leader={} commit={} last={}{}",
                s.role,
                s.term,
                s.vote.as_deref().unwrap_or("-"),
                s.leader.as_deref().unwrap_or("-"),
                s.commit,
                s.last_index,
                if s.quiescent { " quiescent" } else { "" }
            )
        };
        net.nodes.iter().map(line).collect::<Vec<_>>().join("\n")
    }
}

fn message_type(name: &str) -> MessageType {
    (0..32)
        .filter_map(|i| MessageType::try_from(i).ok())
        .find(|k| format!("{k:?}") == name)
        .unwrap_or_else(|| panic!("unknown message type {name}"))
}

/// One message as a transcript line: sender, receiver, type and the fields
/// that type uses.
fn describe(m: &Message) -> String {
    let kind = m.kind().expect("known type");
    let mut s = format!("{}->{} {kind:?} term={}", m.from, m.to, m.term);
    match kind {
        MessageType::PreVote | MessageType::Vote => {
            s += &format!(" last={} last_term={}", m.index, m.log_term);
            if m.context.as_ref() == TRANSFER_CONTEXT {
                s += " transfer";
            }
        }
        MessageType::Append => {
            s += &format!(
                " prev={} prev_term={} entries={} commit={}",
                m.index,
                m.log_term,
                m.entries.len(),
                m.commit
            );
        }
        MessageType::AppendResponse => s += &format!(" index={}", m.index),
        MessageType::Heartbeat => {
            s += &format!(" commit={}", m.commit);
            if m.quiesce {
                s += " quiesce";
            }
        }
        _ => {}
    }
    if m.reject {
        s += " reject";
    }
    s
}
