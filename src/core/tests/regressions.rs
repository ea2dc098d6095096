//! Regression tests for bugs the simulator reported (tests/FINDINGS.md).

use bytes::Bytes;

use crate::core::testing::*;
use crate::core::*;

/// F1: `entries()` over a range held entirely in storage read past the
/// unstable slice.
#[test]
fn f1_committed_entries_read_entirely_from_storage() {
    let mut a = new_raft("a", &["a"]);
    a.campaign().unwrap();
    let rd = a.ready();
    persist_ready(&mut a, &rd);
    // Entry 1 is durable (in storage only) and committed: reading it must
    // not touch the (empty) unstable part.
    let rd = a.ready();
    assert_eq!(rd.committed_entries.len(), 1);
}

/// F2: once TimeoutNow was sent in a term, the lease is void for the rest of
/// that term, even after the transfer timed out (TimeoutNow may arrive late).
#[test]
fn f2_lease_is_void_after_timeout_now_even_if_the_transfer_timed_out() {
    let mut net = Network::new(&["a", "b", "c"]);
    net.elect("a");
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

/// F3: a commit advanced by the leader's own `on_persisted` must drive what
/// waits for commits (joint → final configuration, reads, events).
#[test]
fn f3_commit_through_on_persisted_finishes_the_joint_change() {
    let mut net = Network::new(&["a", "b", "c"]);
    net.add_empty("d");
    net.add_empty("e");
    net.elect("a");
    net.raft_mut("a")
        .propose_conf_change(conf_with_learners(&["a", "b", "c"], &["d", "e"]))
        .unwrap();
    net.settle();
    // Without d the new half {a, d, e} needs a's own durable write.
    net.isolate("d");
    net.node_mut("a").auto_persist = false;
    net.raft_mut("a")
        .propose_conf_change(conf(&["a", "d", "e"]))
        .unwrap();
    net.settle();
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

/// F3 (reads): a lone voter's first commit happens in `on_persisted`; reads
/// held for it must be released.
#[test]
fn f3_reads_held_for_the_first_commit_are_released_by_on_persisted() {
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

/// F4 (sim seed 9018261, liveness): the remaining voters are still joint
/// (C_old,new committed) while the removed ones already appended C_new. The
/// joint quorum needs a removed node's vote, whose log is longer, and the
/// removed nodes did not campaign (not in their latest configuration). They
/// must: a node removed by an uncommitted entry is still needed.
#[test]
fn f4_nodes_removed_by_an_uncommitted_entry_still_campaign() {
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
            hard_state: HardState {
                term: 1,
                vote: String::new(),
                commit: 2,
            },
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

/// "a" leads {a,b,c} at term 2 with 1..=40 of term 1 (plus its noop at 41);
/// two entries per Append, a pipelining window of 8.
fn f6_leader() -> Raft<MemStorage> {
    let mut storage = MemStorage::new();
    let ents: Vec<Entry> = (1..=40).map(|i| entry(i, 1)).collect();
    storage.append(&ents).unwrap();
    let init = InitialState {
        hard_state: HardState {
            term: 1,
            vote: String::new(),
            commit: 0,
        },
        initial_conf: conf(&["a", "b", "c"]),
        ..Default::default()
    };
    let mut cfg = test_config("a");
    cfg.max_entries_per_msg = 2;
    cfg.max_inflight_msgs = 8;
    let mut a = Raft::new(cfg, storage, init).unwrap();
    a.campaign().unwrap();
    a.step(msg(MessageType::PreVoteResponse, "b", "a", 2))
        .unwrap();
    a.step(msg(MessageType::VoteResponse, "b", "a", 2)).unwrap();
    assert_eq!((a.role(), a.term()), (Role::Leader, 2));
    a
}

fn appends_to_b(msgs: Vec<Message>) -> Vec<Message> {
    msgs.into_iter()
        .filter(|m| m.to == "b" && m.kind() == Some(MessageType::Append))
        .collect()
}

/// Steps one Append into `b`; returns its answer (a rejection at once, an
/// acknowledgement once persisted).
fn answer(b: &mut Raft<MemStorage>, m: Message) -> Message {
    b.step(m).unwrap();
    let mut out: Vec<Message> = drain_msgs(b)
        .into_iter()
        .filter(|m| m.kind() == Some(MessageType::AppendResponse))
        .collect();
    assert_eq!(out.len(), 1, "one answer per Append");
    out.pop().unwrap()
}

/// F6: the Appends of a pipelined flight overtake each other on the wire;
/// the follower keeps the in-order prefix and rejects the rest. The first
/// rejection sends the progress back to probing, and a later acknowledgement
/// re-opens the window with a new flight. The other rejections of the
/// abandoned flight carry nothing new: they must not knock the progress back
/// to probing again, or each (rejection, acknowledgement) pair sends another
/// full window while the previous ones are still on the wire — the storm of
/// seed 300248 (`logs` profile: up to 7 windows a tick to one learner, 92%
/// of them rejected).
#[test]
fn f6_rejections_of_an_abandoned_flight_do_not_reopen_the_window() {
    let mut a = f6_leader();
    let mut b_cfg = test_config("b");
    b_cfg.max_entries_per_msg = 2;
    let mut b = new_raft_with(b_cfg, conf(&["a", "b", "c"]));
    // Probe until b holds 1..=2 and the progress pipelines.
    let mut wire = appends_to_b(drain_msgs(&mut a));
    let flight = loop {
        assert_eq!(wire.len(), 1, "one probe at a time");
        let resp = answer(&mut b, wire.remove(0));
        a.step(resp).unwrap();
        wire = appends_to_b(drain_msgs(&mut a));
        if a.prs["b"].state == ProgressState::Replicate {
            break wire;
        }
    };
    assert_eq!(flight.len(), 8, "a full window");
    // The flight arrives in reverse order: b accepts only the first two
    // (delivered last) and rejects the six that overtook them.
    let mut rejections: Vec<Message> = flight[2..]
        .iter()
        .rev()
        .map(|m| answer(&mut b, m.clone()))
        .collect();
    assert!(rejections.iter().all(|r| r.reject));
    let acks: Vec<Message> = flight[..2]
        .iter()
        .map(|m| answer(&mut b, m.clone()))
        .collect();
    assert!(acks.iter().all(|r| !r.reject));

    // The first rejection: back to probing, one probe.
    a.step(rejections.remove(0)).unwrap();
    assert_eq!(a.prs["b"].state, ProgressState::Probe);
    assert_eq!(appends_to_b(drain_msgs(&mut a)).len(), 1);
    // An acknowledgement: pipelining again, a new window.
    a.step(acks[0].clone()).unwrap();
    assert_eq!(a.prs["b"].state, ProgressState::Replicate);
    let window = appends_to_b(drain_msgs(&mut a)).len();
    assert!(window > 1, "a new window goes out");
    // The rest of the abandoned flight's rejections change nothing.
    for r in rejections {
        a.step(r).unwrap();
        assert_eq!(a.prs["b"].state, ProgressState::Replicate);
        assert!(appends_to_b(drain_msgs(&mut a)).is_empty());
    }
    // The last acknowledgement covers the new window's first Append: the
    // window slides by one.
    a.step(acks[1].clone()).unwrap();
    assert_eq!(a.prs["b"].state, ProgressState::Replicate);
    assert_eq!(appends_to_b(drain_msgs(&mut a)).len(), 1);
}

/// A node of {a,b,c} whose durable log holds `terms` (index 1..), at `term`,
/// two entries per Append.
fn node_with_short_appends(id: &str, terms: &[u64], term: u64) -> Raft<MemStorage> {
    let mut cfg = test_config(id);
    cfg.max_entries_per_msg = 2;
    let mut r = node_with_log(cfg, terms, term);
    r.clear_startup_lease();
    r
}

/// F6's first suspect, cleared: the follower's (hint index, hint term) and
/// the leader's search of its own log converge on a divergent suffix in one
/// rejection per term the follower holds past the common prefix, whatever
/// the suffix's length (etcd's findConflictByTerm).
#[test]
fn f6_hints_converge_on_a_long_divergent_suffix() {
    // Common prefix 1..=3 (term 1); the leader then has terms 2 and 5, the
    // follower a longer suffix of terms 3 and 4 that never committed.
    let mut a = node_with_short_appends("a", &[1, 1, 1, 2, 2, 2, 5, 5, 5, 5], 5);
    let mut b = node_with_short_appends("b", &[1, 1, 1, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4], 5);
    a.campaign().unwrap();
    a.step(msg(MessageType::PreVoteResponse, "c", "a", 6))
        .unwrap();
    a.step(msg(MessageType::VoteResponse, "c", "a", 6)).unwrap();
    assert_eq!(a.role(), Role::Leader);
    let mut rejections = 0;
    let mut wire = appends_to_b(drain_msgs(&mut a));
    // In order, as over one connection.
    for _ in 0..100 {
        if wire.is_empty() {
            break;
        }
        let m = wire.remove(0);
        let resp = answer(&mut b, m);
        rejections += u64::from(resp.reject);
        a.step(resp).unwrap();
        wire.extend(appends_to_b(drain_msgs(&mut a)));
    }
    assert!(wire.is_empty(), "replication did not settle");
    let leader_log: Vec<u64> = (1..=a.last_index())
        .map(|i| a.term_at(i).unwrap())
        .collect();
    let follower_log: Vec<u64> = (1..=b.last_index())
        .map(|i| b.term_at(i).unwrap())
        .collect();
    assert_eq!(follower_log, leader_log);
    assert!(
        rejections <= 2,
        "{rejections} rejections for two foreign terms"
    );
}
