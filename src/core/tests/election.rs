//! §5.2 leader election, pre-vote, leases, check-quorum.

use crate::core::testing::*;
use crate::core::*;

/// Ticks `r` until its role leaves Follower; returns the ticks it took.
fn ticks_until_campaign(r: &mut Raft<MemStorage>) -> u32 {
    for n in 1..=1000 {
        r.tick();
        if r.role() != Role::Follower {
            return n;
        }
    }
    panic!("never campaigned");
}

/// Makes `a` the leader of {a,b,c} by hand (votes from b), draining output.
fn leader_of_three() -> Raft<MemStorage> {
    let mut a = new_raft("a", &["a", "b", "c"]);
    a.campaign().unwrap();
    drain_msgs(&mut a);
    let mut pv = msg(MessageType::PreVoteResponse, "b", "a", 1);
    pv.reject = false;
    a.step(pv).unwrap();
    drain_msgs(&mut a);
    a.step(msg(MessageType::VoteResponse, "b", "a", 1)).unwrap();
    drain_msgs(&mut a);
    assert_eq!(a.role(), Role::Leader);
    a
}

#[test]
fn single_voter_elects_itself_on_timeout() {
    let mut net = Network::new(&["a"]);
    net.ticks(20);
    assert_eq!(net.raft("a").role(), Role::Leader);
    assert_eq!(net.raft("a").term(), 1);
}

#[test]
fn three_nodes_elect_one_leader() {
    let mut net = Network::new(&["a", "b", "c"]);
    net.ticks(25);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    let l = &leaders[0];
    for id in ["a", "b", "c"] {
        assert_eq!(net.raft(id).leader(), Some(l.as_str()));
    }
}

#[test]
fn election_timeout_is_randomized_in_t_to_2t() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..60 {
        let mut cfg = test_config("a");
        cfg.seed = seed;
        let mut r = new_raft_with(cfg, conf(&["a", "b", "c"]));
        let n = ticks_until_campaign(&mut r);
        assert!((10..20).contains(&n), "timeout {n} outside [T, 2T)");
        seen.insert(n);
    }
    assert!(seen.len() > 3, "timeouts should vary: {seen:?}");
}

#[test]
fn follower_times_out_into_pre_candidate_without_bumping_its_term() {
    let mut a = new_raft("a", &["a", "b", "c"]);
    ticks_until_campaign(&mut a);
    assert_eq!(a.role(), Role::PreCandidate);
    assert_eq!(a.term(), 0, "pre-vote must not change the term");
    let rd = a.ready();
    assert!(rd.hard_state.is_none(), "nothing to persist for a pre-vote");
    let mut to: Vec<_> = rd
        .messages
        .iter()
        .map(|m| {
            assert_eq!(m.kind(), Some(MessageType::PreVote));
            assert_eq!(m.term, 1, "pre-vote asks for term + 1");
            m.to.clone()
        })
        .collect();
    to.sort();
    assert_eq!(to, vec!["b", "c"]);
}

#[test]
fn pre_vote_quorum_makes_a_candidate_that_votes_for_itself_and_persists_first() {
    let mut a = new_raft("a", &["a", "b", "c"]);
    a.campaign().unwrap();
    drain_msgs(&mut a);
    a.step(msg(MessageType::PreVoteResponse, "b", "a", 1))
        .unwrap();
    assert_eq!(a.role(), Role::Candidate);
    assert_eq!(a.term(), 1);
    let rd = a.ready();
    let hs = rd.hard_state.expect("term and vote must be persisted");
    assert_eq!((hs.term, hs.vote.as_str()), (1, "a"));
    assert!(
        rd.messages.is_empty(),
        "Vote requests wait for the vote to be durable"
    );
    assert_eq!(rd.persisted_messages.len(), 2);
    assert!(rd
        .persisted_messages
        .iter()
        .all(|m| m.kind() == Some(MessageType::Vote) && m.term == 1));
}

#[test]
fn candidate_with_majority_becomes_leader_and_appends_its_first_entry() {
    let a = leader_of_three();
    assert_eq!(a.term(), 1);
    assert_eq!(a.leader(), Some("a"));
    assert_eq!(
        a.last_index(),
        1,
        "a new leader appends an entry of its term"
    );
    assert_eq!(a.term_at(1), Some(1));
}

#[test]
fn candidate_rejected_by_majority_becomes_follower() {
    let mut a = new_raft("a", &["a", "b", "c"]);
    a.campaign().unwrap();
    a.step(msg(MessageType::PreVoteResponse, "b", "a", 1))
        .unwrap();
    drain_msgs(&mut a);
    let mut rej = msg(MessageType::VoteResponse, "b", "a", 1);
    rej.reject = true;
    a.step(rej.clone()).unwrap();
    assert_eq!(a.role(), Role::Candidate);
    rej.from = "c".into();
    a.step(rej).unwrap();
    assert_eq!(a.role(), Role::Follower);
    assert_eq!(a.term(), 1);
}

#[test]
fn each_server_votes_for_at_most_one_candidate_per_term() {
    let mut b = new_raft("b", &["a", "b", "c"]);
    let mut v = msg(MessageType::Vote, "a", "b", 1);
    b.step(v.clone()).unwrap();
    let rd = b.ready();
    assert_eq!(rd.hard_state.unwrap().vote, "a");
    assert!(
        !rd.persisted_messages[0].reject,
        "first request of the term is granted"
    );
    assert!(
        rd.messages.is_empty(),
        "the grant is sent only after the vote is durable"
    );
    v.from = "c".into();
    b.step(v.clone()).unwrap();
    let rd = b.ready();
    assert!(
        rd.messages[0].reject,
        "a second candidate in the same term is refused"
    );
    // The same candidate asking again gets the same answer.
    v.from = "a".into();
    b.step(v).unwrap();
    let rd = b.ready();
    assert!(!rd.persisted_messages[0].reject);
}

#[test]
fn vote_granted_only_to_a_log_at_least_as_up_to_date() {
    // b's log: terms [1, 1, 2].
    let cases = [
        // (candidate last index, last term, granted)
        (3, 2, true),
        (4, 2, true),
        (2, 2, false),
        (1, 3, true),
        (5, 1, false),
        (2, 1, false),
    ];
    for (idx, lt, granted) in cases {
        let mut b = new_raft("b", &["a", "b", "c"]);
        b.step(msg(MessageType::Append, "a", "b", 2)).ok();
        let mut app = msg(MessageType::Append, "a", "b", 2);
        app.entries = vec![entry(1, 1), entry(2, 1), entry(3, 2)];
        b.step(app).unwrap();
        drain_msgs(&mut b);
        // A new term, no leader heard recently (let the lease expire).
        for _ in 0..25 {
            b.tick();
        }
        drain_msgs(&mut b);
        let t = b.term() + 1;
        let mut v = msg(MessageType::Vote, "c", "b", t);
        v.index = idx;
        v.log_term = lt;
        b.step(v).unwrap();
        let out = drain_msgs(&mut b);
        let resp = out
            .iter()
            .find(|m| m.kind() == Some(MessageType::VoteResponse))
            .expect("an answer");
        assert_eq!(!resp.reject, granted, "candidate ({idx}, {lt})");
    }
}

#[test]
fn candidate_without_quorum_retries_with_a_new_election() {
    let mut a = new_raft("a", &["a", "b", "c"]);
    a.campaign().unwrap();
    a.step(msg(MessageType::PreVoteResponse, "b", "a", 1))
        .unwrap();
    drain_msgs(&mut a);
    assert_eq!(a.role(), Role::Candidate);
    // Split vote / lost requests: nothing comes back.
    let mut retried = false;
    for _ in 0..20 {
        a.tick();
        let out = drain_msgs(&mut a);
        if out
            .iter()
            .any(|m| m.kind() == Some(MessageType::PreVote) && m.term == 2)
        {
            retried = true;
            break;
        }
    }
    assert!(
        retried,
        "a candidate times out and starts a new (pre-)election"
    );
    a.step(msg(MessageType::PreVoteResponse, "c", "a", 2))
        .unwrap();
    assert_eq!((a.role(), a.term()), (Role::Candidate, 2));
}

#[test]
fn any_role_steps_down_on_a_higher_term() {
    let mut a = leader_of_three();
    let mut app = msg(MessageType::Append, "b", "a", 5);
    app.index = 1;
    app.log_term = 1;
    a.step(app).unwrap();
    assert_eq!(
        (a.role(), a.term(), a.leader()),
        (Role::Follower, 5, Some("b"))
    );
    let rd = a.ready();
    let hs = rd.hard_state.unwrap();
    assert_eq!((hs.term, hs.vote.as_str()), (5, ""));
}

#[test]
fn pre_vote_leaves_the_receivers_term_alone() {
    let mut b = new_raft("b", &["a", "b", "c"]);
    let pv = msg(MessageType::PreVote, "a", "b", 7);
    b.step(pv).unwrap();
    assert_eq!(b.term(), 0);
    let rd = b.ready();
    assert!(rd.hard_state.is_none());
    let r = &rd.messages[0];
    assert_eq!(
        (r.kind(), r.reject, r.term),
        (Some(MessageType::PreVoteResponse), false, 7)
    );
}

#[test]
fn partitioned_node_does_not_inflate_its_term() {
    let mut net = Network::new(&["a", "b", "c"]);
    net.elect("a");
    let term = net.raft("a").term();
    net.isolate("c");
    net.ticks(200);
    assert_eq!(
        net.raft("c").term(),
        term,
        "pre-vote keeps the term of a partitioned node"
    );
    net.heal();
    net.ticks(30);
    assert_eq!(
        net.raft("a").role(),
        Role::Leader,
        "the rejoining node does not disrupt"
    );
    assert_eq!(net.raft("a").term(), term);
}

#[test]
fn follower_in_lease_ignores_vote_requests() {
    let mut net = Network::new(&["a", "b", "c"]);
    net.elect("a");
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
    assert!(out
        .iter()
        .any(|m| m.kind() == Some(MessageType::VoteResponse) && !m.reject));
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
    for _ in 0..12 {
        net.raft_mut("d").tick();
    }
    drain_msgs(net.raft_mut("d"));
    let term = net.raft("d").term();
    let mut pv = msg(MessageType::PreVote, "c", "d", term + 1);
    pv.index = 100;
    pv.log_term = 100;
    net.raft_mut("d").step(pv.clone()).unwrap();
    assert!(!net.raft("d").has_ready(), "still inside the lease");
    for _ in 0..4 {
        net.raft_mut("d").tick();
    }
    drain_msgs(net.raft_mut("d"));
    net.raft_mut("d").step(pv).unwrap();
    let out = drain_msgs(net.raft_mut("d"));
    assert!(out
        .iter()
        .any(|m| m.kind() == Some(MessageType::PreVoteResponse) && !m.reject));
}

#[test]
fn leader_without_quorum_steps_down_after_election_timeout() {
    let mut net = Network::new(&["a", "b", "c"]);
    net.elect("a");
    net.isolate("a");
    for _ in 0..10 {
        net.raft_mut("a").tick();
    }
    assert_eq!(
        net.raft("a").role(),
        Role::Leader,
        "within the timeout it keeps leading"
    );
    for _ in 0..2 {
        net.raft_mut("a").tick();
    }
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
    for _ in 0..7 {
        net.raft_mut("a").tick();
    }
    assert!(
        net.raft("a").is_lease_valid(),
        "lease = election - drift = 8 ticks"
    );
    net.raft_mut("a").tick();
    assert!(!net.raft("a").is_lease_valid());
}

#[test]
fn learners_and_non_members_never_campaign() {
    let mut l = new_raft_with(
        test_config("d"),
        conf_with_learners(&["a", "b", "c"], &["d"]),
    );
    assert_eq!(l.role(), Role::Learner);
    let mut x = new_raft_with(test_config("x"), Configuration::default());
    for _ in 0..100 {
        l.tick();
        x.tick();
    }
    assert_eq!(l.role(), Role::Learner);
    assert_eq!(x.role(), Role::Follower);
    assert!(drain_msgs(&mut l).is_empty());
    assert!(drain_msgs(&mut x).is_empty());
    assert!(l.campaign().is_err());
    assert!(x.campaign().is_err());
}

#[test]
fn candidate_ignores_votes_from_learners() {
    let mut a = new_raft_with(
        test_config("a"),
        conf_with_learners(&["a", "b", "c"], &["d"]),
    );
    a.campaign().unwrap();
    a.step(msg(MessageType::PreVoteResponse, "d", "a", 1))
        .unwrap();
    assert_eq!(
        a.role(),
        Role::PreCandidate,
        "a learner's pre-vote does not count"
    );
    a.step(msg(MessageType::PreVoteResponse, "b", "a", 1))
        .unwrap();
    assert_eq!(a.role(), Role::Candidate);
    a.step(msg(MessageType::VoteResponse, "d", "a", 1)).unwrap();
    assert_eq!(a.role(), Role::Candidate, "a learner's vote does not count");
}

#[test]
fn elected_leader_holds_every_committed_entry() {
    // Leader completeness (§5.4): entries committed by a's quorum survive a's
    // crash because only an up-to-date node can win.
    let mut net = Network::new(&["a", "b", "c"]);
    net.elect("a");
    net.propose("a", "x").unwrap();
    // c misses the next entries.
    net.isolate("c");
    net.propose("a", "y").unwrap();
    net.propose("a", "z").unwrap();
    assert_eq!(net.raft("a").commit_index(), 4);
    net.heal();
    net.down.insert("a".into());
    // c's log is behind: it cannot win; b can.
    net.raft_mut("c").campaign().unwrap();
    net.settle();
    assert_ne!(net.raft("c").role(), Role::Leader);
    net.ticks(40);
    assert_eq!(net.raft("b").role(), Role::Leader);
    net.ticks(2);
    assert_eq!(net.applied_data("c"), vec!["x", "y", "z"]);
}

#[test]
fn stale_leader_is_told_about_the_newer_term() {
    let mut b = new_raft("b", &["a", "b", "c"]);
    b.step(msg(MessageType::Heartbeat, "c", "b", 3)).unwrap();
    drain_msgs(&mut b);
    b.step(msg(MessageType::Append, "a", "b", 1)).unwrap();
    let out = drain_msgs(&mut b);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].to.as_str(), out[0].term), ("a", 3));
    assert_eq!(b.term(), 3);
}

#[test]
fn restarted_node_refuses_votes_for_one_lease_window() {
    // It may have been a follower in lease just before the crash: a leader's
    // lease must not be broken by a quick restart.
    let init = InitialState {
        hard_state: HardState {
            term: 3,
            vote: String::new(),
            commit: 0,
        },
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
fn candidate_recognizes_a_leader_of_its_own_term() {
    let mut a = new_raft("a", &["a", "b", "c"]);
    a.campaign().unwrap();
    a.step(msg(MessageType::PreVoteResponse, "b", "a", 1))
        .unwrap();
    assert_eq!(a.role(), Role::Candidate);
    a.step(msg(MessageType::Heartbeat, "c", "a", 1)).unwrap();
    assert_eq!(
        (a.role(), a.leader(), a.term()),
        (Role::Follower, Some("c"), 1)
    );
}

#[test]
fn pre_candidate_rejected_by_a_higher_term_adopts_it() {
    let mut a = new_raft("a", &["a", "b", "c"]);
    a.campaign().unwrap();
    let mut rej = msg(MessageType::PreVoteResponse, "b", "a", 4);
    rej.reject = true;
    a.step(rej).unwrap();
    assert_eq!((a.role(), a.term()), (Role::Follower, 4));
}

#[test]
fn reset_configuration_lets_a_lone_survivor_elect_itself() {
    let mut net = Network::new(&["a", "b", "c"]);
    net.elect("a");
    net.propose("a", "x").unwrap();
    net.down.insert("a".into());
    net.down.insert("c".into());
    net.ticks(30);
    assert_ne!(net.raft("b").role(), Role::Leader, "no quorum");
    net.raft_mut("b").reset_configuration(conf(&["b"])).unwrap();
    assert_eq!(net.raft("b").role(), Role::Follower);
    net.ticks(25);
    assert_eq!(net.raft("b").role(), Role::Leader);
    net.propose("b", "y").unwrap();
    assert_eq!(net.applied_data("b"), vec!["x", "y"]);
    assert!(net.raft_mut("b").reset_configuration(conf(&[])).is_err());
}

#[test]
fn campaign_is_refused_to_non_voters_and_a_no_op_on_a_leader() {
    let mut net = Network::new(&["a", "b", "c"]);
    net.elect("a");
    let t = net.raft("a").term();
    assert!(net.raft_mut("a").campaign().is_ok());
    assert_eq!(net.raft("a").term(), t);
    net.add_empty("z");
    assert!(net.raft_mut("z").campaign().is_err());
}

#[test]
fn status_reports_the_leaders_view_of_each_peer() {
    let mut net = Network::from_conf(conf_with_learners(&["a", "b", "c"], &["l"]), |_| {});
    net.elect("a");
    net.propose("a", "x").unwrap();
    let st = net.raft("a").status();
    assert_eq!(st.role, Role::Leader);
    assert_eq!(st.commit, st.last_index);
    assert_eq!(st.peers.len(), 3);
    for p in &st.peers {
        assert_eq!(p.match_index, st.last_index, "{}", p.id);
        assert_eq!(p.is_learner, p.id == "l");
    }
    assert!(net.raft("b").status().peers.is_empty());
}

#[test]
fn lease_starts_only_once_an_entry_of_the_term_is_committed() {
    let mut net = Network::new(&["a", "b", "c"]);
    net.elect("a");
    net.tick();
    // b takes over; its first entry's acknowledgements are lost.
    let t = net.raft("b").term();
    net.raft_mut("b")
        .step(msg(MessageType::TimeoutNow, "a", "b", t))
        .unwrap();
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

#[test]
fn leader_broadcasts_a_heartbeat_every_heartbeat_period() {
    let mut net = Network::with_config(&["a", "b", "c"], |c| c.heartbeat_ticks = 3);
    net.elect("a");
    let mut counts = Vec::new();
    for _ in 0..9 {
        net.raft_mut("a").tick();
        let out = drain_msgs(net.raft_mut("a"));
        counts.push(
            out.iter()
                .filter(|m| m.kind() == Some(MessageType::Heartbeat))
                .count(),
        );
    }
    assert_eq!(counts, vec![0, 0, 2, 0, 0, 2, 0, 0, 2]);
}

#[test]
fn nodes_draw_different_election_timeouts() {
    // Same seed, different ids: the jitter differs, so elections rarely split.
    let mut firsts = std::collections::BTreeSet::new();
    for id in ["a", "b", "c", "d", "e"] {
        let mut r = new_raft(id, &["a", "b", "c", "d", "e"]);
        firsts.insert(ticks_until_campaign(&mut r));
    }
    assert!(firsts.len() >= 3, "{firsts:?}");
}

/// Protocol-aware recovery: a node whose recovery may have cut entries it
/// acknowledged neither votes nor campaigns until its log reaches a
/// leader's commit index again; then it votes as before.
#[test]
fn a_node_that_may_have_lost_acknowledged_entries_votes_only_after_catching_up() {
    let init = InitialState {
        initial_conf: conf(&["a", "b", "c"]),
        lost_acknowledged: true,
        ..Default::default()
    };
    let mut r = Raft::new(test_config("a"), MemStorage::new(), init).unwrap();
    r.clear_startup_lease();
    let vote_from = |r: &mut Raft<MemStorage>, from: &str, term: u64| {
        let mut m = msg(MessageType::Vote, from, "a", term);
        m.index = 10;
        m.log_term = term;
        r.step(m).unwrap();
        drain_msgs(r)
            .into_iter()
            .find(|m| m.kind() == Some(MessageType::VoteResponse))
            .expect("a vote answer")
    };
    assert!(vote_from(&mut r, "b", 2).reject, "no vote while behind");
    r.advance(100);
    assert!(
        !drain_msgs(&mut r)
            .iter()
            .any(|m| m.kind() == Some(MessageType::PreVote)),
        "no campaign while behind"
    );
    assert!(r.campaign().is_err());
    // The leader of term 3 brings the log up to its commit index.
    let mut append = msg(MessageType::Append, "c", "a", 3);
    append.entries = vec![entry(1, 3), entry(2, 3)];
    append.commit = 2;
    r.step(append).unwrap();
    drain_msgs(&mut r);
    // Past the leader's lease (followers ignore votes while it holds).
    r.advance(100);
    drain_msgs(&mut r);
    assert!(
        !vote_from(&mut r, "b", 9).reject,
        "votes again once caught up"
    );
}
