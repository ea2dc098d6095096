//! Membership changes: catch-up, single step, joint consensus, learners.

use bytes::Bytes;

use crate::testing::*;
use crate::*;

fn done_events(net: &Network, id: &str) -> Vec<Result<Configuration, Error>> {
    net.node(id)
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ConfChangeDone(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn adding_one_voter_is_a_single_step() {
    let mut net = Network::led_by_a_with_empty(&["d"]);
    net.propose("a", "x").unwrap();
    let target = conf(&["a", "b", "c", "d"]);
    net.change_conf("a", target.clone());
    net.ticks(3);
    assert_eq!(done_events(&net, "a"), vec![Ok(target.clone())]);
    for id in ["a", "b", "c", "d"] {
        assert_eq!(net.raft(id).configuration(), &target, "{id}");
    }
    assert_eq!(net.raft("d").role(), Role::Follower);
    assert_eq!(net.applied_data("d"), vec!["x"]);
    // No joint entry was written.
    let joint = logged_configurations(net.raft("a").storage())
        .iter()
        .any(|c| c.is_joint());
    assert!(!joint);
}

#[test]
fn removing_one_voter_is_a_single_step() {
    let mut net = Network::three_led_by_a();
    let target = conf(&["a", "b"]);
    net.change_conf("a", target.clone());
    assert_eq!(done_events(&net, "a"), vec![Ok(target.clone())]);
    assert_eq!(net.raft("a").configuration(), &target);
    assert!(net.raft("a").status().peers.iter().all(|p| p.id != "c"));
    net.down.insert("c".into());
    net.propose("a", "y").unwrap();
    assert_eq!(
        net.raft("a").commit_index(),
        net.raft("a").last_index(),
        "2 of 2 commit"
    );
}

#[test]
fn replacing_voters_goes_through_joint_consensus() {
    let mut net = Network::led_by_a_with_empty(&["d", "e"]);
    let target = conf(&["a", "d", "e"]);
    net.change_conf("a", target.clone());
    net.ticks(3);
    assert_eq!(done_events(&net, "a"), vec![Ok(target.clone())]);
    let confs = logged_configurations(net.raft("a").storage());
    let n = confs.len();
    assert!(n >= 2);
    assert_eq!(confs[n - 2].old_voters, vec!["a", "b", "c"]);
    assert_eq!(confs[n - 2].voters, vec!["a", "d", "e"]);
    assert_eq!(confs[n - 1], target);
    assert_eq!(net.raft("d").configuration(), &target);
}

#[test]
fn joint_configuration_needs_a_majority_of_both_sets() {
    // d and e join as learners first (they answer, so they are caught up).
    let mut net = Network::led_by_a_with_learners(&["d", "e"]);
    // Now cut d and e off and ask for {a, d, e}.
    net.isolate("d");
    net.isolate("e");
    net.change_conf("a", conf(&["a", "d", "e"]));
    let a = net.raft("a");
    assert!(a.configuration().is_joint(), "joint entry appended");
    assert!(
        a.commit_index() < a.last_index(),
        "b and c alone (old majority) cannot commit the joint entry"
    );
    net.heal();
    net.ticks(10);
    assert_eq!(net.raft("a").configuration(), &conf(&["a", "d", "e"]));
    assert!(matches!(done_events(&net, "a").last(), Some(Ok(_))));
}

#[test]
fn joint_election_needs_both_majorities() {
    let joint = joint_conf(&["a", "b", "c"], &["a", "d", "e"]);
    let mut a = new_raft_with(test_config("a"), joint);
    assert_candidate_after_pre_votes(&mut a, "b", "d", "old half won, new half pending");
    let out = drain_msgs(&mut a);
    let mut to: Vec<_> = out
        .iter()
        .filter(|m| m.kind() == Some(MessageType::Vote))
        .map(|m| m.to.clone())
        .collect();
    to.sort();
    assert_eq!(to, vec!["b", "c", "d", "e"], "votes asked from both sets");
}

#[test]
fn catch_up_timeout_abandons_the_change() {
    let mut net = Network::three_led_by_a();
    let before = net.raft("a").configuration().clone();
    net.change_conf("a", conf(&["a", "b", "c", "z"]));
    assert!(net.raft("a").pending_conf_change());
    assert_eq!(
        net.raft_mut("a").propose_conf_change(conf(&["a", "b"])),
        Err(Error::Busy("a membership change is in progress"))
    );
    net.ticks(25);
    assert_eq!(
        done_events(&net, "a"),
        vec![Err(Error::CatchupTimeout("z".into()))]
    );
    assert_eq!(net.raft("a").configuration(), &before);
    assert!(!net.raft("a").pending_conf_change());
    assert!(net.raft("a").status().peers.iter().all(|p| p.id != "z"));
}

#[test]
fn catch_up_waits_for_the_new_voter_to_be_near_the_end() {
    let mut net = Network::with_config(&["a", "b", "c"], |c| c.catchup_margin = 0);
    net.add_empty("d");
    net.elect("a");
    net.propose_all("a", (0..20).map(|i| format!("{i}")));
    // d is unreachable for a while: the configuration must not change.
    net.isolate("d");
    net.raft_mut("a")
        .propose_conf_change(conf(&["a", "b", "c", "d"]))
        .unwrap();
    net.ticks(5);
    assert_eq!(net.raft("a").configuration(), &conf(&["a", "b", "c"]));
    net.heal();
    net.ticks(3);
    assert_eq!(net.raft("a").configuration(), &conf(&["a", "b", "c", "d"]));
    assert_eq!(net.applied_data("d").len(), 20);
}

#[test]
fn leader_removing_itself_steps_down_once_committed() {
    let mut net = Network::three_led_by_a();
    net.change_conf("a", conf(&["b", "c"]));
    assert_eq!(done_events(&net, "a"), vec![Ok(conf(&["b", "c"]))]);
    assert_ne!(net.raft("a").role(), Role::Leader);
    net.ticks(40);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], "a");
    assert_eq!(net.raft("a").term(), 1, "a removed node never campaigns");
    let l = leaders[0].clone();
    net.propose(&l, "after").unwrap();
    assert_eq!(net.applied_data(&l), vec!["after"]);
}

#[test]
fn learners_get_the_log_but_never_vote_or_count() {
    let mut net = Network::led_by_a_with_learners(&["l"]);
    assert_eq!(net.raft("l").role(), Role::Learner);
    net.propose("a", "x").unwrap();
    net.tick();
    assert_eq!(net.applied_data("l"), vec!["x"]);
    // b and c down: a + learner is not a quorum.
    net.down.insert("b".into());
    net.down.insert("c".into());
    let p = net.propose("a", "y").unwrap();
    assert!(net.raft("a").commit_index() < p.first_index);
    assert!(net
        .raft("a")
        .status()
        .peers
        .iter()
        .any(|p| p.id == "l" && p.is_learner));
}

#[test]
fn promoting_a_learner_is_a_normal_change() {
    let mut net = Network::led_by_a_with_learners(&["l"]);
    net.change_conf("a", conf(&["a", "b", "c", "l"]));
    assert_eq!(net.raft("l").role(), Role::Follower);
    assert_eq!(net.raft("a").configuration(), &conf(&["a", "b", "c", "l"]));
}

#[test]
fn invalid_and_busy_changes_are_refused() {
    let mut net = Network::three_led_by_a();
    assert!(matches!(
        net.raft_mut("b").propose_conf_change(conf(&["a"])),
        Err(Error::NotLeader { .. })
    ));
    assert!(matches!(
        net.raft_mut("a").propose_conf_change(conf(&[])),
        Err(Error::Invalid(_))
    ));
    let mut joint = conf(&["a"]);
    joint.old_voters = vec!["b".into()];
    assert!(matches!(
        net.raft_mut("a").propose_conf_change(joint),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        net.raft_mut("a").propose_conf_change(conf(&["a", "a"])),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn configuration_takes_effect_when_appended_and_reverts_on_truncation() {
    let mut b = new_raft("b", &["a", "b", "c"]);
    let mut app = msg(MessageType::Append, "a", "b", 1);
    let mut ce = entry(2, 1);
    ce.entry_type = EntryType::Configuration as i32;
    ce.data = Bytes::from(prost::Message::encode_to_vec(&conf(&["a", "b", "c", "d"])));
    app.entries = vec![entry(1, 1), ce];
    b.step(app).unwrap();
    assert_eq!(
        b.configuration(),
        &conf(&["a", "b", "c", "d"]),
        "in force once appended"
    );
    // A new leader overwrites index 2.
    b.step(append_msg("c", "b", 2, (1, 1), vec![entry(2, 2)]))
        .unwrap();
    assert_eq!(
        b.configuration(),
        &conf(&["a", "b", "c"]),
        "reverted with the truncation"
    );
}

#[test]
fn restart_rebuilds_the_configuration_from_the_log() {
    let mut net = Network::led_by_a_with_empty(&["d"]);
    net.change_conf("a", conf(&["a", "b", "c", "d"]));
    let r = restarted("a", net.node("a"), conf(&["a", "b", "c"]));
    assert_eq!(r.configuration(), &conf(&["a", "b", "c", "d"]));
    assert_eq!(r.term(), 1);
}

#[test]
fn first_leader_writes_the_initial_configuration_into_the_log() {
    let mut net = Network::three_led_by_a();
    let first = &net.raft("a").storage().all()[0];
    assert_eq!(first.kind(), EntryType::Configuration);
    net.raft_mut("b").campaign().ok();
    // A later leader writes a Noop.
    let mut net2 = Network::three_led_by_a();
    net2.isolate("a");
    net2.ticks(30);
    let l = net2.leader_other_than("a");
    let last = net2.raft(&l).storage().all().last().unwrap().clone();
    assert_eq!(last.kind(), EntryType::Noop);
}

#[test]
fn losing_leadership_mid_change_reports_it() {
    let mut net = Network::three_led_by_a();
    net.change_conf("a", conf(&["a", "b", "c", "z"]));
    let mut app = msg(MessageType::Append, "b", "a", 9);
    app.index = 0;
    net.raft_mut("a").step(app).unwrap();
    net.settle();
    assert_eq!(done_events(&net, "a"), vec![Err(Error::LeadershipLost)]);
}

#[test]
fn new_leader_finishes_an_inherited_joint_configuration() {
    let mut net = Network::led_by_a_with_learners(&["d", "e"]);
    // a appends the joint entry and then dies before appending the final.
    net.drop_kinds.insert(MessageType::AppendResponse as i32);
    net.change_conf("a", conf(&["b", "d", "e"]));
    assert!(net.raft("b").configuration().is_joint());
    net.heal();
    net.down.insert("a".into());
    net.ticks(50);
    let l = net.leader_other_than("a");
    net.ticks(3);
    assert_eq!(net.raft(&l).configuration(), &conf(&["b", "d", "e"]));
    assert!(!net.raft(&l).pending_conf_change());
}

#[test]
fn configuration_at_an_index_follows_the_history() {
    let mut net = Network::led_by_a_with_empty(&["d"]);
    net.propose("a", "x").unwrap();
    let before = net.raft("a").last_index();
    net.change_conf("a", conf(&["a", "b", "c", "d"]));
    let a = net.raft("a");
    assert_eq!(a.configuration_at(before), &conf(&["a", "b", "c"]));
    assert_eq!(
        a.configuration_at(a.last_index()),
        &conf(&["a", "b", "c", "d"])
    );
}

#[test]
fn a_removed_voter_can_be_added_back() {
    let mut net = Network::three_led_by_a();
    net.change_conf("a", conf(&["a", "b"]));
    net.propose("a", "while-away").unwrap();
    net.ticks(30);
    assert_eq!(net.raft("c").role(), Role::Follower);
    assert!(!net.raft("c").configuration().is_voter("c"));
    net.change_conf("a", conf(&["a", "b", "c"]));
    net.ticks(3);
    assert_eq!(net.raft("c").configuration(), &conf(&["a", "b", "c"]));
    assert!(net.applied_data("c").contains(&"while-away".to_string()));
    // c votes and can lead again.
    net.raft_mut("a").transfer_leader(Some("c")).unwrap();
    net.settle();
    assert_eq!(net.raft("c").role(), Role::Leader);
}

#[test]
fn restart_in_the_joint_stage_finishes_the_change() {
    let mut net = Network::led_by_a_with_learners(&["d", "e"]);
    net.drop_kinds.insert(MessageType::AppendResponse as i32);
    net.change_conf("a", conf(&["a", "d", "e"]));
    net.heal();
    // Everyone restarts from its durable state while joint.
    let ids: Vec<String> = net.nodes.keys().cloned().collect();
    for id in &ids {
        let r = restarted(id, net.node(id), Configuration::default());
        assert!(r.configuration().is_joint(), "{id} restarts joint");
        net.node_mut(id).raft = r;
        net.node_mut(id).applied.clear();
    }
    net.ticks(60);
    let l = net.leaders();
    assert_eq!(l.len(), 1);
    net.ticks(3);
    assert_eq!(net.raft(&l[0]).configuration(), &conf(&["a", "d", "e"]));
}

/// A commit advanced by the leader's own `on_persisted` drives what waits
/// for commits, like one advanced by an acknowledgement: here the joint
/// configuration commits and the final one follows.
#[test]
fn commit_by_the_leaders_own_durable_write_finishes_the_joint_change() {
    let mut net = Network::led_by_a_with_learners(&["d", "e"]);
    // Without d the new half {a, d, e} needs a's own durable write.
    net.isolate("d");
    net.node_mut("a").auto_persist = false;
    net.change_conf("a", conf(&["a", "d", "e"]));
    assert!(net.raft("a").configuration().is_joint());
    let joint_index = net.raft("a").last_index();
    assert!(net.raft("a").commit_index() < joint_index);
    net.node_mut("a").auto_persist = true;
    net.persist("a", 100);
    net.settle();
    assert!(net.raft("a").commit_index() >= joint_index);
    assert_eq!(
        net.raft("a").configuration(),
        &conf(&["a", "d", "e"]),
        "the final configuration follows the joint one"
    );
}
