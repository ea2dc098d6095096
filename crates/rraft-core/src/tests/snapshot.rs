//! Snapshots: sending to a lagging follower and installing.

use crate::testing::*;
use crate::*;

fn snapshot_at(net: &mut Network, id: &str, index: u64) -> SnapshotMeta {
    let r = net.raft_mut(id);
    let meta = SnapshotMeta {
        last_index: index,
        last_term: r.term_at(index).unwrap(),
        configuration: Some(r.configuration().clone()),
    };
    r.on_snapshot(meta.clone());
    r.storage_mut().compact(index + 1);
    meta
}

/// "b" of {a,b} holding 1..=5 of term 1 from leader "a", `commit` of them
/// known committed.
fn follower_holding_five(commit: u64) -> Raft<MemStorage> {
    let mut b = new_raft("b", &["a", "b"]);
    let mut app = msg(MessageType::Append, "a", "b", 1);
    app.entries = (1..=5).map(|i| entry(i, 1)).collect();
    app.commit = commit;
    b.step(app).unwrap();
    drain_msgs(&mut b);
    b
}

/// An InstallSnapshot from "a" to "b" at `term` of the snapshot ending at
/// `last` = (index, term).
fn install_snapshot(term: u64, last: (u64, u64), configuration: Option<Configuration>) -> Message {
    let mut m = msg(MessageType::InstallSnapshot, "a", "b", term);
    m.snapshot = Some(SnapshotMeta {
        last_index: last.0,
        last_term: last.1,
        configuration,
    });
    m
}

#[test]
fn leader_sends_a_snapshot_when_the_follower_needs_compacted_entries() {
    let mut net = Network::three_led_by_a();
    net.down.insert("c".into());
    net.propose_all("a", (0..10).map(|i| format!("{i}")));
    let meta = snapshot_at(&mut net, "a", 8);
    assert_eq!(net.raft("a").first_index(), 9);
    assert_eq!(
        net.raft("a").term_at(8),
        Some(meta.last_term),
        "term read from the meta"
    );
    net.down.clear();
    net.ticks(4);
    let snap: Vec<_> = net
        .delivered
        .iter()
        .filter(|m| m.kind() == Some(MessageType::InstallSnapshot))
        .collect();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].snapshot.as_ref(), Some(&meta));
    let c = net.raft("c");
    assert_eq!(c.commit_index(), 11);
    assert_eq!(c.status().snapshot_index, 8);
    assert_eq!(c.last_index(), 11);
    assert_eq!(c.storage().first_index(), 9);
    // Entries after the snapshot are applied normally.
    assert_eq!(net.applied_data("c"), vec!["7", "8", "9"]);
    let pr = net
        .raft("a")
        .status()
        .peers
        .into_iter()
        .find(|p| p.id == "c")
        .unwrap();
    assert_eq!(pr.state, ProgressState::Replicate);
}

#[test]
fn follower_installs_a_snapshot_and_acknowledges_after_persisting() {
    let mut b = new_raft("b", &["a", "b"]);
    b.step(install_snapshot(2, (20, 2), Some(conf(&["a", "b", "c"]))))
        .unwrap();
    assert_eq!(b.commit_index(), 20);
    assert_eq!(
        b.configuration(),
        &conf(&["a", "b", "c"]),
        "adopts the snapshot's configuration"
    );
    let rd = b.ready();
    assert_eq!(rd.snapshot.as_ref().map(|s| s.last_index), Some(20));
    assert!(
        rd.committed_entries.is_empty(),
        "the snapshot replaces those entries"
    );
    assert!(rd.messages.is_empty());
    assert_eq!(rd.persisted_messages[0].index, 20);
    persist_ready(&mut b, &rd);
    assert_eq!(b.last_index(), 20);
    assert_eq!(b.term_at(20), Some(2));
    // Replication continues after the snapshot.
    let mut app = msg(MessageType::Append, "a", "b", 2);
    app.index = 20;
    app.log_term = 2;
    app.entries = vec![entry(21, 2)];
    app.commit = 21;
    b.step(app).unwrap();
    let out = drain_msgs(&mut b);
    assert!(!out[0].reject);
    assert_eq!(b.commit_index(), 21);
}

#[test]
fn snapshot_matching_the_log_only_advances_commit() {
    let mut b = follower_holding_five(0);
    b.step(install_snapshot(1, (3, 1), Some(conf(&["a", "b"]))))
        .unwrap();
    let rd = b.ready();
    assert!(rd.snapshot.is_none());
    assert_eq!(b.commit_index(), 3);
    assert_eq!(b.last_index(), 5, "the log is kept");
}

#[test]
fn stale_snapshot_is_answered_with_the_commit_index() {
    let mut b = follower_holding_five(4);
    b.step(install_snapshot(1, (2, 1), None)).unwrap();
    let out = drain_msgs(&mut b);
    assert_eq!(
        (out[0].kind(), out[0].index),
        (Some(MessageType::AppendResponse), 4)
    );
}

#[test]
fn failed_snapshot_report_retries() {
    let mut net = Network::three_led_by_a();
    net.down.insert("c".into());
    net.propose_all("a", (0..5).map(|i| format!("{i}")));
    snapshot_at(&mut net, "a", 5);
    net.drop_kinds.insert(MessageType::InstallSnapshot as i32);
    net.down.clear();
    net.ticks(4);
    let st = |net: &Network| {
        net.raft("a")
            .status()
            .peers
            .into_iter()
            .find(|p| p.id == "c")
            .unwrap()
            .state
    };
    assert_eq!(
        st(&net),
        ProgressState::Snapshot,
        "paused while the snapshot streams"
    );
    net.raft_mut("a").report_snapshot("c", false);
    assert_eq!(st(&net), ProgressState::Probe);
    net.heal();
    net.ticks(3);
    assert_eq!(net.raft("c").commit_index(), net.raft("a").commit_index());
}

#[test]
fn restart_from_a_snapshot() {
    let mut storage = MemStorage::new();
    storage.reset(10);
    storage.append(&[entry(11, 3), entry(12, 3)]).unwrap();
    let init = InitialState {
        hard_state: HardState {
            term: 3,
            vote: "a".into(),
            commit: 11,
        },
        snapshot: Some(SnapshotMeta {
            last_index: 10,
            last_term: 2,
            configuration: Some(conf(&["a", "b", "c"])),
        }),
        applied: 10,
        ..Default::default()
    };
    let mut r = Raft::new(test_config("a"), storage, init).unwrap();
    assert_eq!(r.configuration(), &conf(&["a", "b", "c"]));
    assert_eq!(
        (r.first_index(), r.last_index(), r.commit_index()),
        (11, 12, 11)
    );
    assert_eq!(r.term_at(10), Some(2));
    let rd = r.ready();
    assert_eq!(
        rd.committed_entries
            .iter()
            .map(|e| e.index)
            .collect::<Vec<_>>(),
        vec![11]
    );
}
