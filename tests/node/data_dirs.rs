//! A data directory belongs to one node: it is locked while the node runs
//! (another node, in this process or another, is refused with EBUSY), and
//! it records the group and peer that first used it (a node of another
//! group or peer is refused with EINVAL naming the directory and both
//! identities). Shutdown releases the lock; the owner restarts on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::common::*;
use rraft::node::errno;
use rraft::node::{Node, NodeOptions, RaftServer};

const LIMIT: Duration = Duration::from_secs(20);

/// A data directory, a server and the ids of peers on it.
struct Fixture {
    dir: tempfile::TempDir,
    server: Arc<RaftServer>,
    ids: Vec<String>,
}

fn fixture(peers: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let server = RaftServer::start("127.0.0.1:0").unwrap();
    let ids = peer_ids(server.port(), peers);
    Fixture { dir, server, ids }
}

impl Fixture {
    /// Starts the single-node group `group` of the first peer on the
    /// directory, with `tune` applied to its options.
    fn start(&self, group: &str, tune: impl FnOnce(&mut NodeOptions)) -> Member {
        let id = &self.ids[0];
        start_member(&self.server, group, id, self.dir.path(), id, tune)
    }

    /// Starts `group`, commits `count` entries `prefix-i` once it leads,
    /// and stops it.
    fn commit_and_stop(&self, group: &str, prefix: &str, count: usize) {
        let m = self.start(group, |_| {});
        wait_for(LIMIT, "the single node leads", || m.node.is_leader());
        assert_eq!(propose_many(&m.node, prefix, count, count), count);
        stop(&m);
    }

    /// The refusal of a node of `group` and peer `id` on the directory.
    fn refused(&self, group: &str, id: &str) -> rraft::node::Status {
        let node = Node::new(&self.server, group, id).expect("node");
        let record = Arc::new(Mutex::new(Record::default()));
        node.init(options(self.dir.path(), id), Box::new(Recorder(record)))
            .expect_err("refused")
    }
}

#[test]
fn a_second_node_on_a_directory_in_use_is_refused_as_busy() {
    let f = fixture(2);
    let first = f.start("a", |_| {});
    // Another group, another peer: the lock refuses it before any identity.
    let e = f.refused("b", &f.ids[1]);
    assert_eq!(e.code, errno::EBUSY, "{e}");
    assert!(e.message.contains("in use by another node"), "{e}");
    assert!(
        e.message.contains(&f.dir.path().display().to_string()),
        "the error names the directory: {e}"
    );
    // The refused node left the running one untouched.
    wait_for(LIMIT, "the first node leads", || first.node.is_leader());
    assert_eq!(propose_many(&first.node, "x", 5, 5), 5);
    stop(&first);
}

#[test]
fn a_directory_of_group_a_is_refused_to_group_b_after_a_restart() {
    let f = fixture(1);
    f.commit_and_stop("group_a", "a", 3);
    let e = f.refused("group_b", &f.ids[0]);
    assert_eq!(e.code, errno::EINVAL, "{e}");
    for needle in ["\"group_a\"", "\"group_b\"", &f.ids[0]] {
        assert!(e.message.contains(needle), "missing {needle}: {e}");
    }
    // Another peer of the same group is refused as well.
    let other = format!("{}:{}:7", "127.0.0.1", f.server.port());
    let e = f.refused("group_a", &other);
    assert_eq!(e.code, errno::EINVAL, "{e}");
    assert!(e.message.contains(&other), "{e}");
}

#[test]
fn shutdown_releases_the_directory_and_its_owner_restarts_on_it() {
    let f = fixture(1);
    f.commit_and_stop("g", "p", 10);
    let again = f.start("g", |_| {});
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
    let f = fixture(1);
    f.commit_and_stop("g", "p", 4);
    for store in ["log", "meta", "snapshot"] {
        let file = f.dir.path().join(store).join("raft_identity");
        std::fs::remove_file(&file).expect("each store records its owner");
    }
    let again = f.start("g", |_| {});
    wait_for(LIMIT, "its log replayed", || {
        again.record.lock().unwrap().applied.len() == 4
    });
    stop(&again);
    for store in ["log", "meta", "snapshot"] {
        assert!(f.dir.path().join(store).join("raft_identity").exists());
    }
    // Adopted for the opener: now another group is refused.
    let e = f.refused("h", &f.ids[0]);
    assert_eq!(e.code, errno::EINVAL, "{e}");
}

#[test]
fn stores_sharing_one_directory_are_claimed_once() {
    let f = fixture(1);
    let uri = format!("local://{}", f.dir.path().join("all").display());
    let m = f.start("g", |o| {
        o.log_uri = uri.clone();
        o.raft_meta_uri = uri.clone();
        o.snapshot_uri = uri.clone();
    });
    wait_for(LIMIT, "a leader", || m.node.is_leader());
    assert_eq!(propose_many(&m.node, "s", 3, 3), 3);
    stop(&m);
}
