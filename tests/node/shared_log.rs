//! Several groups in one process on `shared://` logs: three servers, each
//! with one shared log for its replicas of four groups; writes in every
//! group, a snapshot (compaction in the shared log), then one server's
//! nodes stop and restart in the same process on their logs and catch up.

use std::sync::Arc;
use std::time::Duration;

use super::common::*;
use rraft::node::RaftServer;

const GROUPS: usize = 4;

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
