//! Quiescence: idle groups stop ticking, wake on activity, and still elect
//! a new leader when the runtime suspects the old one.

use bytes::Bytes;

use crate::testing::*;
use crate::*;

const QUIESCE: u32 = 5;

/// {a,b,c} led by "a" with quiescence on, holding one committed entry.
fn quiescing_three() -> Network {
    let mut net = Network::with_config(&["a", "b", "c"], |c| c.quiesce_ticks = QUIESCE);
    net.elect("a");
    net.propose("a", "x").expect("leader accepts");
    net
}

fn all_quiescent(net: &Network) -> bool {
    ["a", "b", "c"].iter().all(|id| net.raft(id).is_quiescent())
}

#[test]
fn idle_group_quiesces_and_stops_sending() {
    let mut net = quiescing_three();
    assert!(!net.raft("a").is_quiescent(), "busy right after a proposal");
    net.ticks(QUIESCE as usize + 2);
    assert!(all_quiescent(&net));
    assert!(net.raft("b").status().quiescent);
    let quiesce_round: Vec<&Message> = net.delivered.iter().filter(|m| m.quiesce).collect();
    assert_eq!(quiesce_round.len(), 2, "one marked heartbeat per follower");
    let before = net.delivered.len();
    net.ticks(100);
    assert_eq!(
        net.delivered.len(),
        before,
        "a quiescent group sends nothing"
    );
    assert_eq!(net.leaders(), vec!["a".to_string()]);
    assert_eq!(net.raft("b").term(), net.raft("a").term());
}

#[test]
fn quiescence_is_off_by_default() {
    let mut net = Network::three_led_by_a_holding("x");
    net.ticks(100);
    assert!(!net.raft("a").is_quiescent());
    assert!(!net.raft("b").is_quiescent());
}

#[test]
fn group_with_an_unreachable_peer_does_not_quiesce() {
    let mut net = quiescing_three();
    net.down.insert("c".into());
    net.ticks(40);
    assert!(!net.raft("a").is_quiescent(), "c is not heard from");
    assert!(!net.raft("b").is_quiescent());
}

#[test]
fn proposal_wakes_the_group_and_it_quiesces_again() {
    let mut net = quiescing_three();
    net.ticks(QUIESCE as usize + 2);
    assert!(all_quiescent(&net));
    net.propose("a", "y").expect("a quiescent leader accepts");
    assert!(!net.raft("a").is_quiescent());
    assert!(!net.raft("b").is_quiescent(), "the Append wakes followers");
    net.tick();
    assert_eq!(net.applied_data("c"), vec!["x", "y"]);
    net.ticks(QUIESCE as usize + 2);
    assert!(all_quiescent(&net));
}

#[test]
fn quiescent_leader_holds_no_lease_and_reads_take_a_round() {
    let mut net = quiescing_three();
    net.ticks(2);
    assert!(net.raft("a").is_lease_valid());
    net.ticks(QUIESCE as usize);
    assert!(net.raft("a").is_quiescent());
    assert!(!net.raft("a").is_lease_valid(), "quiescent: no lease");
    // The read must be confirmed by heartbeats answered after waking.
    net.drop_kinds.insert(MessageType::HeartbeatResponse as i32);
    net.raft_mut("a")
        .lease_read(Bytes::from_static(b"r"))
        .expect("leader");
    net.settle();
    assert!(!net.raft("a").is_quiescent());
    assert!(!net.raft("a").is_lease_valid());
    assert!(
        net.node("a").read_states.is_empty(),
        "no round answered yet"
    );
    net.heal();
    net.tick();
    assert_eq!(net.node("a").read_states.len(), 1);
    assert!(net.raft("a").is_lease_valid(), "renewed by the fresh round");
}

#[test]
fn quiescent_follower_without_suspicion_keeps_waiting() {
    let mut net = quiescing_three();
    net.ticks(QUIESCE as usize + 2);
    net.down.insert("a".into());
    net.ticks(200);
    assert_eq!(net.raft("b").role(), Role::Follower);
    assert_eq!(net.raft("b").leader(), Some("a"), "no timer runs");
}

#[test]
fn follower_whose_leader_is_suspected_campaigns_within_an_election_timeout() {
    let mut net = quiescing_three();
    net.ticks(QUIESCE as usize + 2);
    // Long asleep: nobody refuses votes for the old leader any more.
    net.ticks(50);
    net.down.insert("a".into());
    net.raft_mut("b").peer_suspected("a");
    net.raft_mut("c").peer_suspected("c");
    assert!(!net.raft("b").is_quiescent());
    assert!(
        net.raft("c").is_quiescent(),
        "c's leader is not suspected by c"
    );
    let election = test_config("b").election_ticks as usize;
    net.ticks(2 * election);
    let leaders: Vec<String> = net.leaders().into_iter().filter(|l| l != "a").collect();
    assert_eq!(leaders, vec!["b".to_string()]);
    assert!(!net.raft("c").is_quiescent(), "the new term woke c");
}

#[test]
fn suspicion_right_after_quiescing_still_elects_after_vote_refusal_ends() {
    let mut net = quiescing_three();
    net.ticks(QUIESCE as usize + 2);
    net.down.insert("a".into());
    net.raft_mut("b").peer_suspected("a");
    net.raft_mut("c").peer_suspected("a");
    let election = test_config("b").election_ticks as usize;
    net.ticks(4 * election);
    assert!(
        net.leaders().iter().any(|l| l != "a"),
        "a new leader within a few election timeouts"
    );
}

#[test]
fn quiescent_leader_without_quorum_steps_down_after_suspicion() {
    let mut net = quiescing_three();
    net.ticks(QUIESCE as usize + 2);
    net.ticks(50);
    net.isolate("a");
    net.raft_mut("a").peer_suspected("b");
    assert!(!net.raft("a").is_quiescent());
    let election = test_config("a").election_ticks as usize;
    net.ticks(election);
    assert_eq!(net.raft("a").role(), Role::Leader, "a fresh timeout first");
    net.ticks(2);
    assert_eq!(net.raft("a").role(), Role::Follower, "check-quorum");
}

#[test]
fn suspecting_a_non_member_or_a_follower_changes_nothing_on_a_follower() {
    let mut net = quiescing_three();
    net.ticks(QUIESCE as usize + 2);
    net.raft_mut("b").peer_suspected("c");
    net.raft_mut("b").peer_suspected("zz");
    net.raft_mut("a").peer_suspected("zz");
    assert!(all_quiescent(&net));
}

#[test]
fn follower_awake_under_a_quiescent_leader_wakes_it_by_campaigning() {
    let mut net = quiescing_three();
    net.ticks(QUIESCE as usize + 2);
    // As if c had missed the marked round.
    net.raft_mut("c").wake();
    assert!(net.raft("a").is_quiescent());
    assert!(net.raft("b").is_quiescent());
    assert!(!net.raft("c").is_quiescent());
    net.heal();
    let election = test_config("c").election_ticks as usize;
    net.ticks(3 * election);
    assert_eq!(net.leaders().len(), 1, "one leader, whoever it is");
    let leader = net.leaders()[0].clone();
    let term = net.raft(&leader).term();
    for id in ["a", "b", "c"] {
        assert_eq!(net.raft(id).term(), term);
    }
    net.ticks(QUIESCE as usize + 4);
    assert!(all_quiescent(&net), "the group settles and sleeps again");
}

#[test]
fn late_heartbeat_answer_does_not_wake_the_leader() {
    let mut net = quiescing_three();
    net.ticks(QUIESCE as usize + 2);
    net.ticks(30);
    let term = net.raft("a").term();
    let mut resp = msg(MessageType::HeartbeatResponse, "b", "a", term);
    resp.index = net.raft("a").now() - 31;
    resp.follower_last = Some(net.raft("a").last_index());
    net.raft_mut("a").step(resp).unwrap();
    assert!(net.raft("a").is_quiescent());
    assert!(!net.raft("a").is_lease_valid());
}

#[test]
fn heartbeat_answer_showing_lost_entries_wakes_the_leader() {
    let mut net = quiescing_three();
    net.ticks(QUIESCE as usize + 2);
    let term = net.raft("a").term();
    let mut resp = msg(MessageType::HeartbeatResponse, "b", "a", term);
    resp.index = net.raft("a").now();
    resp.follower_last = Some(0);
    net.raft_mut("a").step(resp).unwrap();
    assert!(
        !net.raft("a").is_quiescent(),
        "b must be replicated to again"
    );
}

#[test]
fn vote_request_of_a_new_term_wakes_a_quiescent_follower() {
    let mut net = quiescing_three();
    net.ticks(QUIESCE as usize + 2);
    net.ticks(50);
    let term = net.raft("b").term();
    let mut v = msg(MessageType::Vote, "c", "b", term + 1);
    v.index = 100;
    v.log_term = 100;
    net.raft_mut("b").step(v).unwrap();
    assert_eq!(net.raft("b").term(), term + 1);
    assert!(!net.raft("b").is_quiescent());
}

#[test]
fn transfer_and_membership_change_wake_the_leader() {
    let mut net = quiescing_three();
    net.ticks(QUIESCE as usize + 2);
    net.raft_mut("a")
        .transfer_leader(Some("b"))
        .expect("leader");
    net.settle();
    net.ticks(2);
    assert_eq!(net.leaders(), vec!["b".to_string()]);
    net.ticks(QUIESCE as usize + 2);
    assert!(all_quiescent(&net));
    net.change_conf("b", conf(&["a", "b"]));
    net.ticks(3);
    assert_eq!(net.raft("b").configuration(), &conf(&["a", "b"]));
}

#[test]
fn transcript() {
    let mut env = crate::datadriven::InteractionEnv::default();
    crate::datadriven::run_file("quiesce.txt", |c| env.run(c));
}

#[test]
fn read_forwarded_to_a_quiescent_leader_takes_one_round() {
    let mut net = quiescing_three();
    net.ticks(QUIESCE as usize + 2);
    assert!(all_quiescent(&net));
    let before = net.delivered.len();
    net.raft_mut("b")
        .read_index(Bytes::from_static(b"r"))
        .expect("b knows its leader");
    net.settle();
    let heartbeats = net.delivered[before..]
        .iter()
        .filter(|m| m.kind() == Some(MessageType::Heartbeat))
        .count();
    assert_eq!(heartbeats, 2, "one round, to both followers");
    assert_eq!(net.node("b").read_states.len(), 1);
    assert!(!net.raft("a").is_quiescent());
    assert!(!net.raft("c").is_quiescent(), "the read's round wakes c");
}
