//! Several groups in one process on `shared://` logs: three servers, each
//! with one shared log for its replicas of four groups; writes in every
//! group, a snapshot (compaction in the shared log), then one server's
//! nodes stop and restart in the same process on their logs and catch up.

use std::sync::Arc;
use std::time::Duration;

use super::common::*;
use rraft::node::RaftServer;

const GROUPS: usize = 4;
const LIMIT: Duration = Duration::from_secs(20);

fn member_of(
    server: &Arc<RaftServer>,
    root: &std::path::Path,
    s: usize,
    g: usize,
    id: &str,
    conf: &str,
) -> Member {
    let dir = root.join(format!("s{s}")).join(format!("g{g}"));
    let wal = root.join(format!("s{s}")).join("wal");
    start_member(server, &format!("shared{g}"), id, &dir, conf, |o| {
        o.log_uri = format!("shared://{}", wal.display());
    })
}

fn digests(members: &[Member]) -> Vec<String> {
    members
        .iter()
        .map(|m| m.record.lock().unwrap().digest())
        .collect()
}

#[test]
fn groups_on_shared_logs_write_compact_restart_and_catch_up() {
    let root = tempfile::tempdir().unwrap();
    let (servers, ids) = start_servers(3);
    let conf = ids.join(",");
    // groups[g][s]: group g's replica on server s.
    let mut groups: Vec<Vec<Member>> = (0..GROUPS)
        .map(|g| {
            (0..3)
                .map(|s| member_of(&servers[s], root.path(), s, g, &ids[s], &conf))
                .collect()
        })
        .collect();
    for (g, members) in groups.iter().enumerate() {
        let leader = leader_of(members, Duration::from_secs(20));
        let ok = propose_many(&members[leader].node, &format!("a{g}"), 200, 32);
        assert_eq!(ok, 200, "group {g}");
    }
    // A snapshot compacts one replica's entries in its shared log.
    let (tx, rx) = std::sync::mpsc::channel();
    groups[0][2]
        .node
        .snapshot(Some(rraft::node::Done::new(move |st| {
            let _ = tx.send(st);
        })));
    assert!(rx.recv_timeout(Duration::from_secs(20)).unwrap().is_ok());

    // Server 2's replicas stop; the others go on.
    for members in &groups {
        stop(&members[2]);
    }
    for (g, members) in groups.iter().enumerate() {
        let leader = leader_of(&members[..2], Duration::from_secs(20));
        let ok = propose_many(&members[leader].node, &format!("b{g}"), 100, 32);
        assert_eq!(ok, 100, "group {g}");
    }
    // They restart in this process on the same shared log and catch up.
    for (g, members) in groups.iter_mut().enumerate() {
        let old = members.pop().unwrap();
        drop(old);
        members.push(member_of(&servers[2], root.path(), 2, g, &ids[2], &conf));
    }
    for (g, members) in groups.iter().enumerate() {
        wait_for(
            Duration::from_secs(30),
            &format!("group {g} to converge on 300 entries"),
            || {
                let d = digests(members);
                d[0].starts_with("300 ") && d.windows(2).all(|w| w[0] == w[1])
            },
        );
    }
    let files = std::fs::read_dir(root.path().join("s2").join("wal"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("shared_"))
        .count();
    assert!(files > 0, "server 2's replicas share one log");
}

/// A commit that waits for the leader's own write (always so in a group
/// of one) is handed to the driver by the shared log's syncer that made
/// the write durable: the syncer runs the driver's turn itself (the driver
/// is free then), without waking the driver's task. The process counts
/// such turns with the ones run by the threads that deliver messages; a
/// group of one has no deliverer, so each write adds one.
#[test]
fn the_syncer_runs_the_turn_of_a_leader_that_waits_for_its_own_write() {
    let root = tempfile::tempdir().unwrap();
    let server = RaftServer::start("127.0.0.1:0").unwrap();
    let id = peer_ids(server.port(), 1).remove(0);
    let wal = root.path().join("wal");
    let m = start_member(
        &server,
        "own-write",
        &id,
        &root.path().join("g"),
        &id,
        |o| {
            o.log_uri = format!("shared://{}", wal.display());
        },
    );
    wait_for(LIMIT, "the single node to lead", || m.node.is_leader());
    let writes = 20u64;
    let before = rraft::node::inline_turns();
    for i in 0..writes {
        let (tx, rx) = std::sync::mpsc::channel();
        m.node.apply(rraft::node::Task {
            data: format!("w{i}").into_bytes().into(),
            done: Some(rraft::node::Done::new(move |st| {
                let _ = tx.send(st.is_ok());
            })),
            expected_term: -1,
        });
        assert!(
            rx.recv_timeout(LIMIT).expect("the done runs"),
            "write {i} failed"
        );
    }
    let ran = rraft::node::inline_turns() - before;
    // One per write; a few may find the driver busy (a tick's turn) and
    // go to its task instead.
    assert!(
        ran >= writes / 2,
        "{ran} turns ran off the driver's task for {writes} writes"
    );
    stop(&m);
    server.stop();
}
