//! Regression tests for bugs the simulator reported (/work/wt/sim-findings.md).

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
