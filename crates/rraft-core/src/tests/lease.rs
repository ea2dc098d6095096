//! The leader lease, check-quorum, and the vote refusal while a leader is
//! alive.

use crate::testing::*;
use crate::*;

#[test]
fn follower_in_lease_ignores_vote_requests() {
    let mut net = Network::three_led_by_a();
    let term = net.raft("b").term();
    let mut v = msg(MessageType::Vote, "c", "b", term + 1);
    v.index = 100;
    v.log_term = 100;
    net.raft_mut("b").step(v.clone()).unwrap();
    assert_eq!(
        net.raft("b").term(),
        term,
        "a vote request inside the lease is ignored"
    );
    assert!(!net.raft("b").has_ready());
    let mut pv = v.clone();
    pv.msg_type = MessageType::PreVote as i32;
    net.raft_mut("b").step(pv).unwrap();
    assert!(!net.raft("b").has_ready(), "pre-votes too");
    // A vote after TimeoutNow bypasses the lease.
    v.context = bytes::Bytes::from_static(TRANSFER_CONTEXT);
    net.raft_mut("b").step(v).unwrap();
    assert_eq!(net.raft("b").term(), term + 1);
    let out = drain_msgs(net.raft_mut("b"));
    assert!(has_grant(&out, MessageType::VoteResponse));
}

#[test]
fn lease_covers_clock_drift_allowance() {
    // A learner never campaigns itself, so its lease window is easy to see.
    let mut net = Network::from_conf(conf_with_learners(&["a", "b", "c"], &["d"]), |c| {
        c.max_clock_drift_ticks = 5
    });
    net.elect("a");
    net.isolate("a");
    // 12 ticks without the leader: within election_ticks + drift = 15.
    net.tick_alone("d", 12);
    drain_msgs(net.raft_mut("d"));
    let term = net.raft("d").term();
    let mut pv = msg(MessageType::PreVote, "c", "d", term + 1);
    pv.index = 100;
    pv.log_term = 100;
    net.raft_mut("d").step(pv.clone()).unwrap();
    assert!(!net.raft("d").has_ready(), "still inside the lease");
    net.tick_alone("d", 4);
    drain_msgs(net.raft_mut("d"));
    net.raft_mut("d").step(pv).unwrap();
    let out = drain_msgs(net.raft_mut("d"));
    assert!(has_grant(&out, MessageType::PreVoteResponse));
}

#[test]
fn restarted_node_refuses_votes_for_one_lease_window() {
    // It may have been a follower in lease just before the crash: a leader's
    // lease must not be broken by a quick restart.
    let init = InitialState {
        hard_state: hard_state(3, 0),
        initial_conf: conf(&["a", "b", "c"]),
        ..Default::default()
    };
    let mut b = Raft::new(test_config("b"), MemStorage::new(), init).unwrap();
    let mut v = msg(MessageType::Vote, "c", "b", 4);
    v.index = 10;
    v.log_term = 3;
    b.step(v.clone()).unwrap();
    assert_eq!(b.term(), 3, "ignored inside the startup window");
    for _ in 0..10 {
        b.tick();
        drain_msgs(&mut b);
    }
    let t = b.term();
    v.term = t + 1;
    b.step(v).unwrap();
    assert_eq!(b.term(), t + 1);
}

#[test]
fn leader_without_quorum_steps_down_after_election_timeout() {
    let mut net = Network::three_led_by_a();
    net.isolate("a");
    net.tick_alone("a", 10);
    assert_eq!(
        net.raft("a").role(),
        Role::Leader,
        "within the timeout it keeps leading"
    );
    net.tick_alone("a", 2);
    assert_eq!(
        net.raft("a").role(),
        Role::Follower,
        "check-quorum: steps down"
    );
}

#[test]
fn leader_lease_is_valid_only_while_a_quorum_answers() {
    let mut net = Network::with_config(&["a", "b", "c"], |c| c.max_clock_drift_ticks = 2);
    net.elect("a");
    assert!(!net.raft("a").is_lease_valid(), "no heartbeat answered yet");
    net.tick();
    assert!(net.raft("a").is_lease_valid());
    assert!(!net.raft("b").is_lease_valid(), "followers hold no lease");
    net.isolate("a");
    net.tick_alone("a", 7);
    assert!(
        net.raft("a").is_lease_valid(),
        "lease = election - drift = 8 ticks"
    );
    net.raft_mut("a").tick();
    assert!(!net.raft("a").is_lease_valid());
}

#[test]
fn leader_holds_no_lease_when_leases_are_off() {
    let mut net = Network::with_config(&["a", "b", "c"], |c| {
        c.max_clock_drift_ticks = 2;
        c.leader_lease = false;
    });
    net.elect("a");
    net.tick();
    assert_eq!(net.raft("a").role(), Role::Leader);
    assert!(
        !net.raft("a").is_lease_valid(),
        "answered heartbeats, no lease"
    );
}

#[test]
fn lease_starts_only_once_an_entry_of_the_term_is_committed() {
    let mut net = Network::three_led_by_a();
    net.tick();
    // b takes over; its first entry's acknowledgements are lost.
    net.timeout_now("a", "b");
    net.drop_kinds.insert(MessageType::AppendResponse as i32);
    net.settle();
    net.ticks(2);
    assert_eq!(net.raft("b").role(), Role::Leader);
    assert!(
        !net.raft("b").is_lease_valid(),
        "first entry of the term not committed"
    );
    net.heal();
    net.ticks(2);
    assert!(net.raft("b").is_lease_valid());
}

/// Once TimeoutNow was sent in a term, the lease is void for the rest of
/// that term, even after the transfer timed out (TimeoutNow may arrive late).
#[test]
fn lease_is_void_after_timeout_now_even_if_the_transfer_timed_out() {
    let mut net = Network::three_led_by_a();
    net.tick();
    assert!(net.raft("a").is_lease_valid());
    net.drop_kinds.insert(MessageType::TimeoutNow as i32);
    net.raft_mut("a").transfer_leader(Some("b")).unwrap();
    net.settle();
    net.ticks(12);
    assert_eq!(
        net.node("a").events,
        vec![Event::TransferFailed(Error::TransferTimeout("b".into()))]
    );
    assert_eq!(net.raft("a").role(), Role::Leader);
    assert!(
        !net.raft("a").is_lease_valid(),
        "b may still get TimeoutNow and win with lease-bypassing votes"
    );
}

/// The transcripts of `testdata/lease.txt` (see `datadriven::InteractionEnv`).
#[test]
fn lease_transcripts() {
    let mut env = crate::datadriven::InteractionEnv::default();
    crate::datadriven::run_file("lease.txt", |c| env.run(c));
}

/// Check-quorum and the lease count the progress set's voter flags: they
/// agree with the voters looked up by name, through joint consensus and
/// while peers fall silent and answer again.
#[test]
fn voter_flags_count_as_the_voters_names() {
    let mut net = Network::led_by_a_with_learners(&["d", "e"]);
    let mut compared = 0;
    let mut agree = |net: &Network, at: &str| {
        let a = net.raft("a");
        if a.role() != Role::Leader {
            return;
        }
        let Some(shape) = a.quorum_shape() else {
            return;
        };
        for lease in [1, 4, 9, 30] {
            assert_eq!(
                a.lease_until_flagged(shape, lease),
                a.lease_until_by_names(lease),
                "lease of {lease} ticks, {at}"
            );
        }
        assert_eq!(
            a.check_quorum_flagged(shape),
            a.check_quorum_by_names(),
            "check-quorum, {at}"
        );
        compared += 1;
    };
    net.ticks(3);
    agree(&net, "with learners");
    net.isolate("d");
    net.isolate("e");
    net.raft_mut("a")
        .propose_conf_change(conf(&["a", "d", "e"]))
        .expect("a valid change");
    net.settle();
    assert!(net.raft("a").configuration().is_joint());
    for t in 0..6 {
        net.ticks(1);
        agree(&net, &format!("joint, d and e cut off, tick {t}"));
    }
    net.heal();
    for t in 0..6 {
        net.ticks(1);
        agree(&net, &format!("healed, tick {t}"));
    }
    net.isolate("b");
    net.isolate("c");
    for t in 0..30 {
        net.ticks(1);
        agree(&net, &format!("b and c cut off, tick {t}"));
    }
    assert!(compared >= 10, "the flags were compared {compared} times");
}
