//! ReadIndex (Raft thesis §6.4).

use bytes::Bytes;

use crate::testing::*;
use crate::*;

fn ctx(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

/// The one read state answering `context` at `index`.
fn read_states(index: u64, context: &str) -> Vec<ReadState> {
    vec![ReadState {
        index,
        context: ctx(context),
    }]
}

#[test]
fn single_voter_leader_answers_at_once() {
    let mut net = Network::new(&["a"]);
    net.elect("a");
    net.settle();
    net.raft_mut("a").read_index(ctx("r1")).unwrap();
    net.settle();
    assert_eq!(net.node("a").read_states, read_states(1, "r1"));
}

#[test]
fn leader_answers_after_a_quorum_confirms_its_leadership() {
    let mut net = Network::three_led_by_a_holding("x");
    let commit = net.raft("a").commit_index();
    net.raft_mut("a").read_index(ctx("r")).unwrap();
    let hb: Vec<_> = net
        .raft_mut("a")
        .ready()
        .messages
        .into_iter()
        .filter(|m| m.kind() == Some(MessageType::Heartbeat))
        .collect();
    assert_eq!(hb.len(), 2, "a heartbeat round confirms leadership");
    assert!(net.node("a").read_states.is_empty());
    for m in hb {
        net.send(m);
    }
    net.settle();
    assert_eq!(net.node("a").read_states, read_states(commit, "r"));
}

#[test]
fn partitioned_leader_cannot_answer_reads() {
    let mut net = Network::three_led_by_a();
    net.isolate("a");
    net.raft_mut("a").read_index(ctx("r")).unwrap();
    net.settle();
    net.raft_mut("a").tick();
    net.settle();
    assert!(net.node("a").read_states.is_empty());
}

#[test]
fn new_leader_holds_reads_until_an_entry_of_its_term_commits() {
    let mut net = Network::three_led_by_a_holding("x");
    // b takes over, but no acknowledgement of its first entry gets back.
    net.timeout_now("a", "b");
    net.drop_kinds.insert(MessageType::AppendResponse as i32);
    net.settle();
    assert_eq!(net.raft("b").role(), Role::Leader);
    let term = net.raft("b").term();
    assert_ne!(
        net.raft("b").term_at(net.raft("b").commit_index()),
        Some(term)
    );
    net.raft_mut("b").read_index(ctx("r")).unwrap();
    net.settle();
    net.tick();
    assert!(
        net.node("b").read_states.is_empty(),
        "held until the term's first commit"
    );
    net.heal();
    net.ticks(4);
    let rs = &net.node("b").read_states;
    assert_eq!(rs.len(), 1);
    assert_eq!(net.raft("b").term_at(rs[0].index), Some(term));
}

#[test]
fn follower_forwards_to_the_leader_and_gets_the_read_index() {
    let mut net = Network::three_led_by_a_holding("x");
    let commit = net.raft("a").commit_index();
    net.raft_mut("b").read_index(ctx("fr")).unwrap();
    net.settle();
    assert_eq!(net.node("b").read_states, read_states(commit, "fr"));
    assert!(net.node("a").read_states.is_empty());
}

#[test]
fn follower_without_a_leader_refuses() {
    let mut b = new_raft("b", &["a", "b", "c"]);
    assert_eq!(
        b.read_index(ctx("r")),
        Err(Error::NotLeader { leader: None })
    );
}

#[test]
fn reads_in_a_joint_configuration_need_both_quorums() {
    let joint = joint_conf(&["a", "b", "c"], &["a", "d", "e"]);
    let mut net = Network::from_conf(joint.clone(), |_| {});
    net.elect("a");
    net.settle();
    net.down.insert("d".into());
    net.down.insert("e".into());
    net.raft_mut("a").read_index(ctx("r")).unwrap();
    net.settle();
    assert!(
        net.node("a").read_states.is_empty(),
        "b and c alone are not enough"
    );
    net.down.clear();
    net.raft_mut("a").tick();
    net.settle();
    assert_eq!(net.node("a").read_states.len(), 1);
}

/// A lone voter's first commit happens in `on_persisted`: the reads held
/// until an entry of the leader's term commits are answered then.
#[test]
fn reads_held_for_the_first_commit_are_answered_when_it_is_durable() {
    let mut a = new_raft("a", &["a"]);
    a.campaign().unwrap();
    a.read_index(Bytes::from_static(b"r")).unwrap();
    let rd = a.ready();
    assert!(rd.read_states.is_empty());
    persist_ready(&mut a, &rd);
    let rd = a.ready();
    assert_eq!(
        rd.read_states,
        vec![ReadState {
            index: 1,
            context: Bytes::from_static(b"r")
        }]
    );
}
