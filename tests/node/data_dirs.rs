//! A data directory belongs to one node: it is locked while the node runs
//! (another node, in this process or another, is refused with EBUSY), and
//! it records the group and peer that first used it (a node of another
//! group or peer is refused with EINVAL naming the directory and both
//! identities). Shutdown releases the lock; the owner restarts on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::common::*;
use rraft::node::errno;
use rraft::node::{Node, RaftServer};

const LIMIT: Duration = Duration::from_secs(20);

fn try_init(
    server: &Arc<RaftServer>,
    group: &str,
    id: &str,
    dir: &std::path::Path,
) -> Result<Node, rraft::node::Status> {
    let node = Node::new(server, group, id).expect("node");
    let record = Arc::new(Mutex::new(Record::default()));
    node.init(options(dir, id), Box::new(Recorder(record)))
        .map(|()| node)
}

#[test]
fn a_second_node_on_a_directory_in_use_is_refused_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let server = RaftServer::start("127.0.0.1:0").unwrap();
    let ids = peer_ids(server.port(), 2);
    let first = start_member(&server, "a", &ids[0], dir.path(), &ids[0], |_| {});
    // Another group, another peer: the lock refuses it before any identity.
    let e = try_init(&server, "b", &ids[1], dir.path())
        .err()
        .expect("refused");
    assert_eq!(e.code, errno::EBUSY, "{e}");
    assert!(e.message.contains("in use by another node"), "{e}");
    assert!(
        e.message.contains(&dir.path().display().to_string()),
        "the error names the directory: {e}"
    );
    // The refused node left the running one untouched.
    wait_for(LIMIT, "the first node leads", || first.node.is_leader());
    assert_eq!(propose_many(&first.node, "x", 5, 5), 5);
    stop(&first);
}

#[test]
fn a_directory_of_group_a_is_refused_to_group_b_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = RaftServer::start("127.0.0.1:0").unwrap();
    let ids = peer_ids(server.port(), 1);
    let a = start_member(&server, "group_a", &ids[0], dir.path(), &ids[0], |_| {});
    wait_for(LIMIT, "a leads", || a.node.is_leader());
    assert_eq!(propose_many(&a.node, "a", 3, 3), 3);
    stop(&a);
    let e = try_init(&server, "group_b", &ids[0], dir.path())
        .err()
        .expect("refused");
    assert_eq!(e.code, errno::EINVAL, "{e}");
    for needle in ["\"group_a\"", "\"group_b\"", &ids[0]] {
        assert!(e.message.contains(needle), "missing {needle}: {e}");
    }
    // Another peer of the same group is refused as well.
    let other = format!("{}:{}:7", "127.0.0.1", server.port());
    let e = try_init(&server, "group_a", &other, dir.path())
        .err()
        .expect("refused");
    assert_eq!(e.code, errno::EINVAL, "{e}");
    assert!(e.message.contains(&other), "{e}");
}

#[test]
fn shutdown_releases_the_directory_and_its_owner_restarts_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = RaftServer::start("127.0.0.1:0").unwrap();
    let ids = peer_ids(server.port(), 1);
    let first = start_member(&server, "g", &ids[0], dir.path(), &ids[0], |_| {});
    wait_for(LIMIT, "a leader", || first.node.is_leader());
    assert_eq!(propose_many(&first.node, "p", 10, 10), 10);
    stop(&first);
    let again = start_member(&server, "g", &ids[0], dir.path(), &ids[0], |_| {});
    wait_for(LIMIT, "the restarted node replays its log", || {
        again.record.lock().unwrap().applied.len() == 10
    });
    assert_eq!(
        again.record.lock().unwrap().applied[9],
        b"p-9".to_vec(),
        "its own entries"
    );
    stop(&again);
}

#[test]
fn a_directory_without_an_identity_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let server = RaftServer::start("127.0.0.1:0").unwrap();
    let ids = peer_ids(server.port(), 1);
    let first = start_member(&server, "g", &ids[0], dir.path(), &ids[0], |_| {});
    wait_for(LIMIT, "a leader", || first.node.is_leader());
    assert_eq!(propose_many(&first.node, "p", 4, 4), 4);
    stop(&first);
    for store in ["log", "meta", "snapshot"] {
        let file = dir.path().join(store).join("raft_identity");
        std::fs::remove_file(&file).expect("each store records its owner");
    }
    let again = start_member(&server, "g", &ids[0], dir.path(), &ids[0], |_| {});
    wait_for(LIMIT, "its log replayed", || {
        again.record.lock().unwrap().applied.len() == 4
    });
    stop(&again);
    for store in ["log", "meta", "snapshot"] {
        assert!(dir.path().join(store).join("raft_identity").exists());
    }
    // Adopted for the opener: now another group is refused.
    let e = try_init(&server, "h", &ids[0], dir.path())
        .err()
        .expect("refused");
    assert_eq!(e.code, errno::EINVAL, "{e}");
}

#[test]
fn stores_sharing_one_directory_are_claimed_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = RaftServer::start("127.0.0.1:0").unwrap();
    let ids = peer_ids(server.port(), 1);
    let uri = format!("local://{}", dir.path().join("all").display());
    let m = start_member(&server, "g", &ids[0], dir.path(), &ids[0], |o| {
        o.log_uri = uri.clone();
        o.raft_meta_uri = uri.clone();
        o.snapshot_uri = uri.clone();
    });
    wait_for(LIMIT, "a leader", || m.node.is_leader());
    assert_eq!(propose_many(&m.node, "s", 3, 3), 3);
    stop(&m);
}
