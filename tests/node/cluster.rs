//! Three nodes of one group in one process on one port (idx 0..2): elect,
//! apply 10,000 entries, lose the leader, restart it, catch up by snapshot.

use std::time::Duration;

use super::common::*;

const LIMIT: Duration = Duration::from_secs(20);

fn applied(m: &Member) -> Vec<Vec<u8>> {
    m.record.lock().unwrap().applied.clone()
}

#[test]
fn three_nodes_one_port_replicate_fail_over_and_catch_up_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let Group {
        server,
        conf,
        mut members,
        ..
    } = start_group("g", dir.path(), |_, _| {});

    // Elect and apply 10,000 entries through the leader.
    let leader = leader_of(&members, LIMIT);
    let acked = propose_many(&members[leader].node, "a", 10_000, 256);
    assert_eq!(acked, 10_000, "every proposal on a stable leader succeeds");
    wait_for(LIMIT, "every node to apply 10,000 entries", || {
        members.iter().all(|m| applied(m).len() == 10_000)
    });
    let expected = applied(&members[leader]);
    for m in &members {
        assert_eq!(
            applied(m),
            expected,
            "{} applied a different sequence",
            m.id
        );
    }
    assert!(
        !members[leader]
            .record
            .lock()
            .unwrap()
            .leader_terms
            .is_empty(),
        "on_leader_start ran"
    );

    // Lose the leader: the others elect a new one and keep applying.
    stop(&members[leader]);
    let rest: Vec<&Member> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, m)| m)
        .collect();
    let second = leader_of(&rest, LIMIT);
    assert_eq!(propose_many(&rest[second].node, "b", 1_000, 64), 1_000);

    // Snapshot the new leader and let the log before it go: the old leader
    // can only come back through a snapshot.
    let (tx, rx) = std::sync::mpsc::channel();
    rest[second]
        .node
        .snapshot(Some(rraft::node::Done::new(move |st| tx.send(st).unwrap())));
    let st = rx.recv_timeout(LIMIT).unwrap();
    assert!(st.is_ok(), "snapshot: {st}");
    assert_eq!(propose_many(&rest[second].node, "c", 500, 64), 500);

    // Restart the old leader on its old storage.
    let old = members.remove(leader);
    let old_dir = old.dir.clone();
    let old_id = old.id.clone();
    drop(old);
    let back = start_member(&server, "g", &old_id, &old_dir, &conf, |_| {});
    members.push(back);
    wait_for(LIMIT, "the restarted node to catch up", || {
        members.iter().all(|m| applied(m).len() == 11_500)
    });
    let expected = applied(&members[0]);
    for m in &members {
        assert_eq!(applied(m), expected, "{} diverged after catch-up", m.id);
        assert!(m.record.lock().unwrap().errors.is_empty());
    }
    let back = members.last().unwrap();
    assert!(
        back.record.lock().unwrap().loads >= 1,
        "the restarted node installed a snapshot"
    );

    let status = members[0].node.status().unwrap();
    assert_eq!(status.configuration.voters.len(), 3);
    assert!(status.to_json().contains("\"committed_index\""));
    for m in &members {
        stop(m);
        assert!(m.record.lock().unwrap().shutdown, "on_shutdown ran");
    }
}

/// The leader lease holds only while the leader's state machine has applied
/// every entry it committed (a local read must not miss one), and holds
/// again once the apply is done.
#[test]
fn the_lease_waits_for_the_leaders_apply_and_returns_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let Group { members, .. } = start_group("lease-apply", dir.path(), |_, o| {
        o.enable_leader_lease = true;
    });
    let leader = &members[leader_of(&members, LIMIT)];
    wait_for(LIMIT, "a valid lease", || {
        leader.node.is_leader_lease_valid()
    });

    // The recorder applies under its lock: holding it stalls the leader's
    // on_apply with the write committed.
    let held = leader.record.lock().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    leader.node.apply(rraft::node::Task {
        data: bytes::Bytes::from_static(b"held"),
        done: Some(rraft::node::Done::new(move |st| {
            let _ = tx.send(st);
        })),
        expected_term: -1,
    });
    wait_for(LIMIT, "the write to commit, unapplied", || {
        let st = leader.node.status().unwrap();
        st.committed_index > st.applied_index
    });
    assert!(
        !leader.node.is_leader_lease_valid(),
        "no lease while a committed entry waits to be applied"
    );
    drop(held);
    let status = rx.recv_timeout(LIMIT).expect("the write's done");
    assert!(status.is_ok(), "{status:?}");
    wait_for(LIMIT, "the lease back", || {
        leader.node.is_leader_lease_valid()
    });
}

/// A follower's Appends are handled by the thread that reads them from the
/// connection (the driver is free between them): the process counts those
/// turns, at least one per delivered batch of Appends.
#[test]
fn followers_take_their_turns_on_the_thread_that_delivers_their_messages() {
    let cluster = three_servers("inline-turns");
    cluster.leader();
    let before = rraft::node::inline_turns();
    let count = 40;
    cluster.commit_everywhere("inline", count);
    let ran = rraft::node::inline_turns() - before;
    // Two followers, proposals at most 4 in flight: at least count / 4
    // Append batches reach each follower.
    assert!(
        ran >= (2 * count / 4) as u64,
        "{ran} turns ran on the delivering thread for {count} entries"
    );
}

/// An idle leader's heartbeat turns are run by the process's ticker itself
/// (the driver is free between them), not by waking the node's task: the
/// process counts those turns, about one per heartbeat period.
#[test]
fn an_idle_leaders_ticks_are_turns_run_by_the_ticker() {
    let cluster = three_servers("ticker-turns");
    cluster.leader();
    let before = rraft::node::ticker::ticker_turns();
    std::thread::sleep(Duration::from_secs(1));
    let ran = rraft::node::ticker::ticker_turns() - before;
    // Heartbeats every election timeout / 10 (30 ms here): about 33 turns
    // of the leader alone in a second.
    assert!(ran >= 10, "the ticker ran {ran} turns in a second");
}

/// A commit that waits for the leader's own write (always so in a group
/// of one) is finished by the log writer's thread that made the write
/// durable: it runs the driver's turn and, the FSM caller being idle, the
/// apply and its done, without waking the driver's task or an FSM thread.
/// A node with an FSM thread of its own still runs every done there.
#[test]
fn a_commit_on_the_leaders_own_write_is_applied_by_the_log_writer_thread() {
    let done_threads = |group: &str, dedicated: bool| {
        let dir = tempfile::tempdir().unwrap();
        let server = rraft::node::RaftServer::start("127.0.0.1:0").unwrap();
        let id = peer_ids(server.port(), 1).remove(0);
        let m = start_member(&server, group, &id, dir.path(), &id, |o| {
            o.dedicated_fsm_thread = dedicated;
        });
        wait_for(LIMIT, "the single node to lead", || m.node.is_leader());
        let mut threads = Vec::new();
        for i in 0..20 {
            let (tx, rx) = std::sync::mpsc::channel();
            m.node.apply(rraft::node::Task {
                data: format!("w{i}").into_bytes().into(),
                done: Some(rraft::node::Done::new(move |st| {
                    let name = std::thread::current().name().unwrap_or("").to_string();
                    tx.send((st.is_ok(), name)).unwrap();
                })),
                expected_term: -1,
            });
            let (ok, name) = rx.recv_timeout(LIMIT).expect("the done runs");
            assert!(ok, "write {i} failed");
            threads.push(name);
        }
        stop(&m);
        server.stop();
        threads
    };
    let shared = done_threads("own-write", false);
    assert!(
        shared.iter().any(|t| t.starts_with("rraft-log-writer")),
        "no done ran on the log writer's thread: {shared:?}"
    );
    let dedicated = done_threads("own-write-fsm", true);
    assert!(
        dedicated.iter().all(|t| t.starts_with("rraft-fsm")),
        "a dedicated FSM thread runs every done: {dedicated:?}"
    );
}
