//! §5.2 leader election and pre-vote.

use bytes::Bytes;

use crate::testing::*;
use crate::*;

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
    campaign_with_pre_vote(&mut a, "b", 1);
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
    campaign_with_pre_vote(&mut a, "b", 1);
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
    a.step(append_msg("b", "a", 5, (1, 1), vec![])).unwrap();
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
    let mut net = Network::three_led_by_a();
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
    assert_candidate_after_pre_votes(&mut a, "d", "b", "a learner's pre-vote does not count");
    a.step(msg(MessageType::VoteResponse, "d", "a", 1)).unwrap();
    assert_eq!(a.role(), Role::Candidate, "a learner's vote does not count");
}

#[test]
fn elected_leader_holds_every_committed_entry() {
    // Leader completeness (§5.4): entries committed by a's quorum survive a's
    // crash because only an up-to-date node can win.
    let mut net = Network::three_led_by_a_holding("x");
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
fn candidate_recognizes_a_leader_of_its_own_term() {
    let mut a = new_raft("a", &["a", "b", "c"]);
    campaign_with_pre_vote(&mut a, "b", 1);
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
    let mut net = Network::three_led_by_a_holding("x");
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
    let mut net = Network::three_led_by_a();
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
fn leader_heartbeats_at_the_multiples_of_the_heartbeat_period_on_its_clock() {
    let mut net = Network::with_config(&["a", "b", "c"], |c| c.heartbeat_ticks = 3);
    net.tick_alone("a", 4);
    net.elect("a");
    let mut beat_at = Vec::new();
    for _ in 0..9 {
        net.raft_mut("a").tick();
        let out = drain_msgs(net.raft_mut("a"));
        if out.iter().any(|m| m.kind() == Some(MessageType::Heartbeat)) {
            beat_at.push(net.raft("a").now());
        }
    }
    // Elected at tick 4: the first heartbeat comes at 6, not at 7, so the
    // leaders of a runtime heartbeat in the same ticks.
    assert_eq!(beat_at, vec![6, 9, 12]);
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

/// A node removed by a configuration entry that is not committed yet still
/// campaigns (Raft thesis §4.2.2). Here the remaining voters are still joint
/// (C_old,new committed) while the removed ones already appended C_new: the
/// joint quorum needs a removed node's vote, and only the removed nodes'
/// logs hold C_new, so one of them must lead to commit it.
#[test]
fn nodes_removed_by_an_uncommitted_entry_still_campaign() {
    let initial = conf(&["a", "b", "c", "d"]);
    let joint = Configuration {
        voters: vec!["a".into(), "b".into()],
        learners: vec![],
        old_voters: vec!["a".into(), "b".into(), "c".into(), "d".into()],
    };
    let target = conf(&["a", "b"]);
    let conf_entry = |index: u64, c: &Configuration| Entry {
        term: 1,
        index,
        entry_type: EntryType::Configuration as i32,
        data: Bytes::from(prost::Message::encode_to_vec(c)),
    };
    let mut net = Network::new(&[]);
    for id in ["a", "b", "c", "d"] {
        let mut log = vec![conf_entry(1, &initial), conf_entry(2, &joint)];
        if id == "c" || id == "d" {
            log.push(conf_entry(3, &target));
        }
        let mut storage = MemStorage::new();
        storage.append(&log).unwrap();
        let init = InitialState {
            hard_state: hard_state(1, 2),
            configurations: log.clone(),
            ..Default::default()
        };
        let mut r = Raft::new(test_config(id), storage, init).unwrap();
        r.clear_startup_lease();
        net.add(r);
    }
    assert!(net.raft("a").configuration().is_joint());
    assert_eq!(net.raft("c").configuration(), &target);
    net.ticks(80);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1, "the group must elect a leader");
    net.ticks(3);
    let l = net.leaders()[0].clone();
    assert!(
        l == "a" || l == "b",
        "in the end a remaining voter leads: {l}"
    );
    assert_eq!(net.raft(&l).configuration(), &target);
    assert_eq!(net.raft(&l).commit_index(), net.raft(&l).last_index());
}

/// The transcripts of `testdata/election.txt` (see `datadriven::InteractionEnv`).
#[test]
fn election_transcripts() {
    let mut env = crate::datadriven::InteractionEnv::default();
    crate::datadriven::run_file("election.txt", |c| env.run(c));
}

/// {a,b,c} led by "a" with a drift allowance (vote refusal for
/// election + drift ticks after the leader was heard) and `group_seed`.
fn three_with_drift(group_seed: u64) -> Network {
    let mut net = Network::with_config(&["a", "b", "c"], |c| {
        c.max_clock_drift_ticks = 5;
        c.group_seed = group_seed;
    });
    net.elect("a");
    net.propose("a", "x").expect("leader accepts");
    net.ticks(3);
    net
}

/// Kills "a" and tells both followers; returns the tick (b's clock) at
/// which they last heard from it.
fn kill_and_suspect_a(net: &mut Network) -> u64 {
    let contact = net.raft("b").now();
    net.down.insert("a".into());
    net.raft_mut("b").peer_suspected("a");
    net.raft_mut("c").peer_suspected("a");
    contact
}

#[test]
fn followers_of_a_suspected_leader_campaign_once_vote_refusal_ends_without_splitting() {
    let mut net = three_with_drift(1);
    let term = net.raft("b").term();
    let contact = kill_and_suspect_a(&mut net);
    let cfg = test_config("b");
    let window = (cfg.election_ticks + 5) as u64;
    while net.raft("b").now() < contact + window - 1 {
        net.tick();
        for id in ["b", "c"] {
            assert_eq!(
                net.raft(id).role(),
                Role::Follower,
                "{id} campaigns only once the others' vote refusal has ended"
            );
        }
    }
    // The first in the group's order goes at once; the second would wait
    // another T/4.
    net.ticks(cfg.election_ticks as usize / 4);
    let leaders: Vec<String> = net.leaders().into_iter().filter(|l| l != "a").collect();
    assert_eq!(leaders.len(), 1, "a new leader right after the window");
    assert_eq!(
        net.raft(&leaders[0]).term(),
        term + 1,
        "one campaign: no split vote"
    );
}

#[test]
fn suspicion_of_a_leader_that_is_still_heard_changes_nothing() {
    let mut net = three_with_drift(1);
    let term = net.raft("b").term();
    net.raft_mut("b").peer_suspected("a");
    net.raft_mut("c").peer_suspected("a");
    net.ticks(60);
    assert_eq!(net.leaders(), vec!["a".to_string()]);
    assert_eq!(net.raft("b").term(), term);
}

#[test]
fn planned_pre_vote_is_repeated_until_the_other_follower_may_answer() {
    // A group in which b campaigns first.
    let mut net = (0..64)
        .map(three_with_drift)
        .find(|net| net.raft("b").campaign_rank("a") == 0)
        .expect("some seed orders b first");
    // c hears from the leader two ticks longer than b, so it refuses
    // votes two ticks after b's own window has ended.
    net.cut.insert(("a".into(), "b".into()));
    net.ticks(2);
    net.down.insert("a".into());
    let c_contact = net.raft("c").now();
    net.raft_mut("b").peer_suspected("a");
    net.raft_mut("c").peer_suspected("a");
    let window = (test_config("b").election_ticks + 5) as u64;
    while net.raft("c").now() < c_contact + window {
        net.tick();
    }
    assert_eq!(
        net.leaders()
            .into_iter()
            .filter(|l| l != "a")
            .collect::<Vec<_>>(),
        vec!["b".to_string()],
        "b asked again as c's window ended (c's own turn comes T/4 later)"
    );
}

#[test]
fn groups_spread_their_first_campaigner_over_the_followers() {
    let mut first = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let mut net = three_with_drift(seed);
        kill_and_suspect_a(&mut net);
        net.ticks(40);
        let leaders: Vec<String> = net.leaders().into_iter().filter(|l| l != "a").collect();
        assert_eq!(leaders.len(), 1, "seed {seed}: one new leader");
        first.insert(leaders[0].clone());
    }
    assert_eq!(first.len(), 2, "both followers lead some groups: {first:?}");
}
