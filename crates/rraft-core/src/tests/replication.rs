//! §5.3 log replication, §5.4.2 commitment rules, persistence gating.

use bytes::Bytes;

use crate::testing::*;
use crate::*;

/// A follower "b" of {a,b,c} whose log holds `terms` (index 1..), at term
/// `term` following leader "a".
fn follower_with_log(terms: &[u64], term: u64) -> Raft<MemStorage> {
    let mut b = new_raft("b", &["a", "b", "c"]);
    let mut app = msg(MessageType::Append, "a", "b", term);
    app.entries = terms
        .iter()
        .enumerate()
        .map(|(i, t)| entry(i as u64 + 1, *t))
        .collect();
    b.step(app).unwrap();
    drain_msgs(&mut b);
    b
}

/// "a" as leader of {a,b,c} at term `term`, its log preloaded with `terms`.
fn leader_with_log(terms: &[u64], term: u64) -> Raft<MemStorage> {
    let mut a = node_with_log(test_config("a"), terms, term - 1);
    win_election(&mut a, "b", term);
    assert_eq!((a.role(), a.term()), (Role::Leader, term));
    a
}

/// The leader of {`id`, b} configured by `cfg`, elected by b, b's
/// acknowledgement of the first entry in: b's progress pipelines.
fn leader_replicating_to_b(cfg: Config) -> Raft<MemStorage> {
    let id = cfg.id.clone();
    let mut r = new_raft_with(cfg, conf(&[&id, "b"]));
    win_election(&mut r, "b", 1);
    drain_msgs(&mut r);
    r.step(append_ack("b", &id, 1, 1)).unwrap();
    drain_msgs(&mut r);
    r
}

fn appends_to<'a>(msgs: &'a [Message], to: &str) -> Vec<&'a Message> {
    msgs.iter()
        .filter(|m| m.to == to && m.kind() == Some(MessageType::Append))
        .collect()
}

#[test]
fn leader_replicates_and_everyone_applies() {
    let mut net = Network::three_led_by_a_holding("x");
    net.propose("a", "y").unwrap();
    net.tick();
    for id in ["a", "b", "c"] {
        assert_eq!(net.applied_data(id), vec!["x", "y"], "{id}");
    }
}

#[test]
fn proposals_on_a_non_leader_are_refused_with_the_leader_hint() {
    let mut net = Network::three_led_by_a();
    let err = net
        .raft_mut("b")
        .propose_batch(vec![Bytes::from_static(b"x")])
        .unwrap_err();
    assert_eq!(
        err,
        Error::NotLeader {
            leader: Some("a".into())
        }
    );
}

#[test]
fn propose_batch_lands_contiguously_in_the_current_term() {
    let mut net = Network::new(&["a"]);
    net.elect("a");
    let p = net
        .raft_mut("a")
        .propose_batch((0..5).map(|i| Bytes::from(format!("{i}"))).collect())
        .unwrap();
    assert_eq!(
        p,
        Proposal {
            first_index: 2,
            term: 1
        }
    );
    assert_eq!(net.raft("a").last_index(), 6);
}

#[test]
fn follower_appends_and_acknowledges_only_after_persisting() {
    let mut b = new_raft("b", &["a", "b", "c"]);
    let mut app = msg(MessageType::Append, "a", "b", 1);
    app.entries = vec![entry(1, 1), entry(2, 1)];
    app.commit = 1;
    b.step(app).unwrap();
    let rd = b.ready();
    assert_eq!(rd.entries.len(), 2);
    assert!(
        rd.messages.is_empty(),
        "no ack before the entries are durable"
    );
    let ack = &rd.persisted_messages[0];
    assert_eq!(
        (ack.kind(), ack.reject, ack.index),
        (Some(MessageType::AppendResponse), false, 2)
    );
    assert_eq!(
        b.commit_index(),
        1,
        "a follower commits up to the leader's commit"
    );
    assert!(
        rd.committed_entries.is_empty(),
        "nothing applies before it is durable"
    );
    persist_ready(&mut b, &rd);
    let rd = b.ready();
    assert_eq!(rd.committed_entries.len(), 1);
}

#[test]
fn follower_rejects_an_append_that_does_not_match_with_a_hint() {
    let mut b = follower_with_log(&[1, 1, 2], 3);
    b.step(append_msg("a", "b", 3, (5, 3), vec![])).unwrap();
    let out = drain_msgs(&mut b);
    let r = &out[0];
    assert!(r.reject);
    assert_eq!((r.index, r.reject_hint, r.hint_term), (5, 3, 2));
    // Mismatching term at an index it holds: hint skips back to the last
    // entry whose term is <= the leader's.
    b.step(append_msg("a", "b", 3, (3, 1), vec![])).unwrap();
    let out = drain_msgs(&mut b);
    assert_eq!(
        (out[0].reject, out[0].reject_hint, out[0].hint_term),
        (true, 2, 1)
    );
}

#[test]
fn conflicting_entries_are_truncated_and_replaced() {
    let mut b = follower_with_log(&[1, 1, 2, 2], 3);
    b.step(append_msg("a", "b", 3, (2, 1), vec![entry(3, 3)]))
        .unwrap();
    let rd = b.ready();
    assert_eq!(
        rd.entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect::<Vec<_>>(),
        vec![(3, 3)]
    );
    persist_ready(&mut b, &rd);
    assert_eq!(b.last_index(), 3);
    assert_eq!(b.term_at(3), Some(3));
    assert_eq!(b.storage().all().len(), 3);
}

#[test]
fn an_old_append_does_not_truncate_newer_matching_entries() {
    let mut b = follower_with_log(&[1, 1, 1], 1);
    let mut app = msg(MessageType::Append, "a", "b", 1);
    app.index = 0;
    app.entries = vec![entry(1, 1)];
    b.step(app).unwrap();
    let out = drain_msgs(&mut b);
    assert_eq!(out[0].index, 1);
    assert_eq!(b.last_index(), 3);
}

#[test]
fn leader_backs_off_a_whole_term_at_a_time() {
    // Leader log terms: [1,1,1,4,4,5,5,6,6,6]; a follower with many stale
    // term-2/3 entries rejects with hint (index 7, term 3): the leader skips
    // straight to index 3 (last entry with term <= 3).
    let mut a = leader_with_log(&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6], 7);
    drain_msgs(&mut a);
    let mut rej = msg(MessageType::AppendResponse, "b", "a", 7);
    rej.reject = true;
    rej.index = 10;
    rej.reject_hint = 7;
    rej.hint_term = 3;
    a.step(rej).unwrap();
    let out = drain_msgs(&mut a);
    let app = appends_to(&out, "b");
    assert_eq!(app.len(), 1);
    assert_eq!((app[0].index, app[0].log_term), (3, 1));
}

#[test]
fn follower_catches_up_through_probing() {
    let mut net = Network::three_led_by_a_behind("c", (0..30).map(|i| format!("v{i}")));
    net.ticks(3);
    assert_eq!(net.applied_data("c").len(), 30);
    assert_eq!(net.raft("c").last_index(), net.raft("a").last_index());
}

#[test]
fn divergent_follower_is_repaired_by_the_new_leader() {
    // Figure 7-like: an old leader appended entries nobody else got.
    let mut net = Network::three_led_by_a_holding("x");
    net.isolate("a");
    propose_each(net.raft_mut("a"), (0..5).map(|i| format!("lost{i}")));
    net.settle();
    net.ticks(30);
    let new_leader = net.leader_other_than("a");
    net.propose(&new_leader, "y").unwrap();
    net.heal();
    net.ticks(5);
    assert_eq!(net.raft("a").role(), Role::Follower);
    for id in ["a", "b", "c"] {
        assert_eq!(net.applied_data(id), vec!["x", "y"], "{id}");
    }
}

#[test]
fn only_current_term_entries_commit_by_counting() {
    // §5.4.2 / Figure 8: leader of term 3 holds an uncommitted term-2 entry;
    // a majority holding it is not enough until an entry of term 3 commits.
    let mut a = leader_with_log(&[1, 2], 3);
    let out = drain_msgs(&mut a);
    assert!(!appends_to(&out, "b").is_empty());
    // b acknowledges index 2 (the term-2 entry) only.
    a.step(append_ack("b", "a", 3, 2)).unwrap();
    assert_eq!(
        a.commit_index(),
        0,
        "a term-2 entry is not committed by counting"
    );
    a.step(append_ack("b", "a", 3, 3)).unwrap();
    assert_eq!(
        a.commit_index(),
        3,
        "the term-3 entry commits, and with it every entry before"
    );
}

#[test]
fn leader_does_not_count_its_own_unpersisted_entries() {
    let mut a = new_raft("a", &["a"]);
    a.campaign().unwrap();
    assert_eq!(a.role(), Role::Leader);
    let rd = a.ready();
    assert_eq!(
        a.commit_index(),
        0,
        "a lone leader commits only when its write is durable"
    );
    persist_ready(&mut a, &rd);
    assert_eq!(a.commit_index(), 1);
    a.propose_batch(vec![Bytes::from_static(b"x")]).unwrap();
    assert_eq!(a.commit_index(), 1);
    let rd = a.ready();
    // Persisted with a stale term: ignored.
    a.on_persisted(2, 99);
    assert_eq!(a.commit_index(), 1);
    persist_ready(&mut a, &rd);
    assert_eq!(a.commit_index(), 2);
}

#[test]
fn leader_needs_a_durable_quorum_counting_itself_only_when_persisted() {
    let mut net = Network::three_led_by_a();
    net.down.insert("c".into());
    net.node_mut("a").auto_persist = false;
    net.raft_mut("a")
        .propose_batch(vec![Bytes::from_static(b"x")])
        .unwrap();
    net.settle();
    let idx = net.raft("a").last_index();
    assert_eq!(
        net.raft("b").last_index(),
        idx,
        "appends go out before the leader's write"
    );
    assert!(
        net.raft("a").commit_index() < idx,
        "b alone is not a quorum"
    );
    net.persist("a", 10);
    net.settle();
    assert_eq!(net.raft("a").commit_index(), idx);
}

#[test]
fn a_leader_waits_for_its_own_write_only_when_it_commits_or_applies_something() {
    let mut a = new_raft("a", &["a", "b", "c"]);
    win_election(&mut a, "b", 1);
    let rd = a.ready();
    persist_ready(&mut a, &rd);
    a.step(append_ack("b", "a", 1, 1)).unwrap();
    assert_eq!(a.commit_index(), 1);
    assert!(
        !a.waits_for_own_write(),
        "everything of the leader's is durable"
    );
    a.propose_batch(vec![Bytes::from_static(b"x")]).unwrap();
    let rd = a.ready();
    assert!(
        !a.waits_for_own_write(),
        "with no peer ahead of the commit index, the leader's write alone commits nothing"
    );
    a.step(append_ack("b", "a", 1, 2)).unwrap();
    assert_eq!(a.commit_index(), 1, "b alone is not a quorum");
    assert!(
        a.waits_for_own_write(),
        "b and the leader's write commit index 2"
    );
    persist_ready(&mut a, &rd);
    assert_eq!(a.commit_index(), 2);
    assert!(!a.waits_for_own_write());

    a.propose_batch(vec![Bytes::from_static(b"y")]).unwrap();
    let rd = a.ready();
    a.step(append_ack("b", "a", 1, 3)).unwrap();
    a.step(append_ack("c", "a", 1, 3)).unwrap();
    assert_eq!(a.commit_index(), 3, "b and c commit index 3");
    assert!(
        a.waits_for_own_write(),
        "the committed entry is applied only once the leader's write is durable"
    );
    persist_ready(&mut a, &rd);
    assert!(!a.waits_for_own_write());

    let mut lone = new_raft("a", &["a"]);
    lone.campaign().unwrap();
    assert!(
        lone.waits_for_own_write(),
        "a lone leader commits with its own write"
    );
    let mut follower = new_raft("b", &["a", "b", "c"]);
    follower
        .step(append_msg("a", "b", 1, (0, 0), vec![entry(1, 1)]))
        .unwrap();
    assert!(
        follower.waits_for_own_write(),
        "only a leader's writes may wait"
    );
}

#[test]
fn followers_learn_the_commit_index_from_the_leader() {
    let mut net = Network::three_led_by_a_holding("x");
    let c = net.raft("a").commit_index();
    net.tick();
    assert_eq!(net.raft("b").commit_index(), c);
    assert_eq!(net.raft("c").commit_index(), c);
}

#[test]
fn heartbeat_carries_commit_capped_by_the_followers_match() {
    let mut net = Network::three_led_by_a();
    net.isolate("c");
    net.propose("a", "x").unwrap();
    net.raft_mut("a").tick();
    let out = drain_msgs(net.raft_mut("a"));
    let hb: Vec<_> = out
        .iter()
        .filter(|m| m.kind() == Some(MessageType::Heartbeat))
        .collect();
    let to_b = hb.iter().find(|m| m.to == "b").unwrap();
    let to_c = hb.iter().find(|m| m.to == "c").unwrap();
    assert_eq!(to_b.commit, 2);
    assert_eq!(to_c.commit, 1, "c only matched index 1");
}

#[test]
fn append_batches_respect_entry_and_byte_limits() {
    let mut a = leader_with_log(&[1], 2);
    drain_msgs(&mut a);
    // Make b replicate so appends pipeline.
    a.step(append_ack("b", "a", 2, 2)).unwrap();
    drain_msgs(&mut a);
    let data: Vec<Bytes> = (0..10).map(|_| Bytes::from(vec![0u8; 100])).collect();
    let mut cfg = test_config("a");
    cfg.max_entries_per_msg = 3;
    cfg.max_bytes_per_msg = 250;
    cfg.max_inflight_msgs = 100;
    let mut a2 = leader_replicating_to_b(cfg);
    a2.propose_batch(data).unwrap();
    let out = drain_msgs(&mut a2);
    let apps = appends_to(&out, "b");
    let sizes: Vec<usize> = apps.iter().map(|m| m.entries.len()).collect();
    assert!(
        sizes.iter().all(|n| *n >= 1 && *n <= 2),
        "250 bytes fit 2 entries: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), 10);
    let mut cfg = test_config("h");
    cfg.max_bytes_per_msg = 10;
    let mut huge = leader_replicating_to_b(cfg);
    huge.propose_batch(vec![Bytes::from(vec![1u8; 1000])])
        .unwrap();
    let out = drain_msgs(&mut huge);
    assert_eq!(
        appends_to(&out, "b")[0].entries.len(),
        1,
        "at least one entry even if too big"
    );
}

#[test]
fn replicate_state_pipelines_up_to_the_inflight_window() {
    let mut cfg = test_config("a");
    cfg.max_inflight_msgs = 2;
    let mut a = leader_replicating_to_b(cfg);
    propose_each(&mut a, (0..5).map(|i| format!("{i}")));
    let out = drain_msgs(&mut a);
    assert_eq!(
        appends_to(&out, "b").len(),
        2,
        "window of 2 Appends in flight"
    );
    a.step(append_ack("b", "a", 1, 2)).unwrap();
    let out = drain_msgs(&mut a);
    let apps = appends_to(&out, "b");
    assert_eq!(apps.len(), 1, "one slot freed, one more Append");
    assert_eq!(apps[0].index, 3);
    assert_eq!(apps[0].entries.len(), 3, "the rest goes in one batch");
}

#[test]
fn at_the_in_flight_limit_one_append_per_peer_stays_in_flight() {
    let mut cfg = test_config("a");
    cfg.max_inflight_msgs = 8;
    cfg.max_entries_per_msg = 1;
    let mut a = leader_replicating_to_b(cfg);
    a.set_in_flight_limit(10);
    propose_each(&mut a, (0..5).map(|i| format!("entry-{i}")));
    let out = drain_msgs(&mut a);
    assert_eq!(
        appends_to(&out, "b").len(),
        2,
        "entries go out until the limit is reached"
    );
    assert_eq!(a.inflight_bytes(), 14, "two entries of 7 bytes in flight");
    a.step(append_ack("b", "a", 1, 2)).unwrap();
    let out = drain_msgs(&mut a);
    assert_eq!(appends_to(&out, "b").len(), 1, "one more per freed Append");
    a.set_in_flight_limit(u64::MAX);
    a.step(append_ack("b", "a", 1, 3)).unwrap();
    let out = drain_msgs(&mut a);
    assert_eq!(appends_to(&out, "b").len(), 2, "no limit: the window again");
    a.step(append_ack("b", "a", 1, 6)).unwrap();
    assert_eq!(a.inflight_bytes(), 0, "acknowledged data is not in flight");
}

#[test]
fn probe_state_sends_one_append_at_a_time() {
    let mut a = leader_with_log(&[1, 1, 1], 2);
    let out = drain_msgs(&mut a);
    assert_eq!(appends_to(&out, "b").len(), 1);
    propose_each(&mut a, (0..3).map(|i| format!("{i}")));
    let out = drain_msgs(&mut a);
    assert!(
        appends_to(&out, "b").is_empty(),
        "probe: wait for the outstanding answer"
    );
    // The heartbeat answer lets the probe go again.
    let hb = msg(MessageType::HeartbeatResponse, "b", "a", 2);
    a.step(hb).unwrap();
    let out = drain_msgs(&mut a);
    assert_eq!(appends_to(&out, "b").len(), 1);
}

#[test]
fn report_unreachable_drops_replicate_back_to_probe() {
    let mut net = Network::three_led_by_a();
    assert_eq!(net.peer_status("a", "b").state, ProgressState::Replicate);
    net.raft_mut("a").report_unreachable("b");
    assert_eq!(net.peer_status("a", "b").state, ProgressState::Probe);
}

#[test]
fn ready_never_hands_out_a_committed_entry_twice() {
    let mut net = Network::three_led_by_a();
    for i in 0..50 {
        net.raft_mut("a")
            .propose_batch(vec![Bytes::from(format!("{i}"))])
            .unwrap();
        if i % 7 == 0 {
            net.settle();
        }
        if i % 11 == 0 {
            net.tick();
        }
    }
    net.settle();
    net.ticks(2);
    for id in ["a", "b", "c"] {
        let idx: Vec<u64> = net.node(id).applied.iter().map(|e| e.index).collect();
        let expect: Vec<u64> = (1..=idx.len() as u64).collect();
        assert_eq!(idx, expect, "{id}: every index exactly once, in order");
        assert_eq!(net.applied_data(id).len(), 50);
    }
}

#[test]
fn committed_entries_flow_in_bounded_chunks() {
    let mut a = new_raft("a", &["a"]);
    a.campaign().unwrap();
    drain_msgs(&mut a);
    let mb = Bytes::from(vec![7u8; 1024 * 1024]);
    a.propose_batch(vec![mb; 10]).unwrap();
    let rd = a.ready();
    persist_ready(&mut a, &rd);
    let mut chunks = Vec::new();
    while a.has_ready() {
        let rd = drive(&mut a);
        if !rd.committed_entries.is_empty() {
            chunks.push(rd.committed_entries.len());
        }
    }
    assert!(chunks.len() >= 3, "10 MiB in chunks of ~4 MiB: {chunks:?}");
    assert_eq!(chunks.iter().sum::<usize>(), 10);
}

#[test]
fn hard_and_soft_state_only_when_changed() {
    let mut net = Network::three_led_by_a();
    net.tick();
    let a = net.raft_mut("a");
    a.tick();
    let rd = a.ready();
    assert!(rd.hard_state.is_none());
    assert!(rd.soft_state.is_none());
    let mut a = new_raft("a", &["a", "b", "c"]);
    a.campaign().unwrap();
    let rd = a.ready();
    assert_eq!(rd.soft_state.unwrap().role, Role::PreCandidate);
    assert!(rd.hard_state.is_none());
}

#[test]
fn stale_persist_report_after_truncation_is_ignored() {
    let mut b = follower_with_log(&[1], 1);
    b.step(append_msg(
        "a",
        "b",
        1,
        (1, 1),
        vec![entry(2, 1), entry(3, 1)],
    ))
    .unwrap();
    let rd_old = b.ready();
    // A new leader replaces index 2..3 before the write completes.
    b.step(append_msg("c", "b", 2, (1, 1), vec![entry(2, 2)]))
        .unwrap();
    let rd_new = b.ready();
    assert_eq!(rd_new.entries[0].index, 2);
    // The old write completes: index 3 / term 1 is no longer in the log.
    b.storage_mut().append(&rd_old.entries).unwrap();
    b.on_persisted(3, 1);
    assert_eq!(b.persisted_index(), 1);
    persist_ready(&mut b, &rd_new);
    assert_eq!(b.persisted_index(), 2);
    assert_eq!(b.last_index(), 2);
}

/// Throughput smoke test: run with `--ignored --nocapture`.
#[test]
#[ignore]
fn bench_three_node_throughput() {
    let mut net = Network::with_config(&["a", "b", "c"], |c| c.max_inflight_msgs = 256);
    net.elect("a");
    let start = std::time::Instant::now();
    let batches = 2000;
    for i in 0..batches {
        let data: Vec<Bytes> = (0..100).map(|j| Bytes::from(format!("{i}-{j}"))).collect();
        net.raft_mut("a").propose_batch(data).unwrap();
        if i % 10 == 0 {
            net.settle();
        }
    }
    net.settle();
    net.tick();
    let el = start.elapsed();
    assert_eq!(
        net.node("b").applied.len() as u64,
        net.raft("a").commit_index()
    );
    eprintln!(
        "{} entries through 3 nodes in {:?} ({:.0} entries/s)",
        batches * 100,
        el,
        (batches * 100) as f64 / el.as_secs_f64()
    );
}

/// A follower restarted on an empty store: the first heartbeat answer shows
/// a log ending below what it acknowledged. The leader resets its progress
/// (match 0, probing) and brings it back; until it holds the log up to the
/// leader's commit index the follower neither votes nor campaigns.
#[test]
fn a_follower_that_lost_its_log_is_replicated_to_again() {
    let mut net = Network::three_led_by_a();
    net.propose_all("a", (0..5).map(|i| format!("x{i}")));
    let last = net.raft("a").status().last_index;
    assert_eq!(net.peer_status("a", "c").match_index, last);

    // "c" loses its storage and starts again with nothing.
    net.add(new_raft("c", &["a", "b", "c"]));
    net.raft_mut("c").clear_startup_lease();
    // Appends to "c" are lost for now: heartbeats alone reveal the loss.
    net.cut.insert(("a".into(), "c".into()));
    net.tick();
    net.cut.clear();
    net.drop_kinds.insert(MessageType::Append as i32);
    net.ticks(4);
    let c = net.peer_status("a", "c");
    assert_eq!(c.match_index, 0, "the status shows what c really holds");
    assert_eq!(c.state, ProgressState::Probe);
    // Behind the leader's commit index, "c" refuses to vote.
    // Past the leader's lease, an empty candidate asks "c" for a pre-vote.
    net.raft_mut("c").advance(100);
    let roles = drain_msgs(net.raft_mut("c"));
    assert!(
        !roles.iter().any(|m| m.kind() == Some(MessageType::PreVote)),
        "no campaign while it lacks committed entries"
    );
    let pre_vote = msg(MessageType::PreVote, "b", "c", net.raft("c").term() + 1);
    net.raft_mut("c").step(pre_vote).unwrap();
    let answers = drain_msgs(net.raft_mut("c"));
    let answer = answers
        .iter()
        .find(|m| m.kind() == Some(MessageType::PreVoteResponse))
        .expect("an answer");
    assert!(answer.reject, "no vote while it lacks committed entries");

    // Appends flow again: "c" catches up and matches the leader.
    net.heal();
    net.propose("a", "after").unwrap();
    net.ticks(4);
    let last = net.raft("a").status().last_index;
    assert_eq!(net.peer_status("a", "c").match_index, last);
    assert_eq!(net.raft("c").status().last_index, last);
    assert_eq!(net.applied_data("c"), net.applied_data("a"));
}

/// "a" leads {a,b,c} at term 2 with 1..=40 of term 1 (plus its noop at 41);
/// two entries per Append, a pipelining window of 8.
fn leader_pipelining_two_entries_per_append() -> Raft<MemStorage> {
    let mut cfg = test_config("a");
    cfg.max_entries_per_msg = 2;
    cfg.max_inflight_msgs = 8;
    let mut a = node_with_log(cfg, &[1; 40], 1);
    win_election(&mut a, "b", 2);
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

/// The Appends of a pipelined flight may overtake each other on the wire;
/// the follower keeps the in-order prefix and rejects the rest. The first
/// rejection sends the progress back to probing, and a later acknowledgement
/// re-opens the window with a new flight. The other rejections of the
/// abandoned flight carry nothing new: they leave the progress pipelining
/// and send nothing, so each (rejection, acknowledgement) pair does not send
/// another full window while the previous ones are still on the wire.
#[test]
fn rejections_of_an_abandoned_flight_do_not_reopen_the_window() {
    let mut a = leader_pipelining_two_entries_per_append();
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

/// The follower's (hint index, hint term) and the leader's search of its own
/// log converge on a divergent suffix in one rejection per term the follower
/// holds past the common prefix, whatever the suffix's length (etcd's
/// findConflictByTerm).
#[test]
fn hints_converge_on_a_long_divergent_suffix() {
    // Common prefix 1..=3 (term 1); the leader then has terms 2 and 5, the
    // follower a longer suffix of terms 3 and 4 that never committed.
    let mut a = node_with_short_appends("a", &[1, 1, 1, 2, 2, 2, 5, 5, 5, 5], 5);
    let mut b = node_with_short_appends("b", &[1, 1, 1, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4], 5);
    win_election(&mut a, "c", 6);
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
