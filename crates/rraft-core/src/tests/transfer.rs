//! Leadership transfer (Raft thesis §3.10).

use bytes::Bytes;

use crate::testing::*;
use crate::*;

#[test]
fn transfer_hands_leadership_to_the_target() {
    let mut net = Network::three_led_by_a_holding("x");
    net.raft_mut("a").transfer_leader(Some("b")).unwrap();
    net.settle();
    assert_eq!(net.raft("b").role(), Role::Leader);
    assert_eq!(net.raft("a").role(), Role::Follower);
    assert_eq!(net.raft("a").leader(), Some("b"));
    assert!(net
        .delivered
        .iter()
        .any(|m| m.kind() == Some(MessageType::TimeoutNow) && m.to == "b"));
    assert!(net.node("a").events.is_empty());
}

#[test]
fn transfer_catches_the_target_up_first() {
    let mut net = Network::three_led_by_a_behind("b", (0..10).map(|i| format!("{i}")));
    net.raft_mut("a").transfer_leader(Some("b")).unwrap();
    assert!(!net
        .raft_mut("a")
        .ready()
        .messages
        .iter()
        .any(|m| m.kind() == Some(MessageType::TimeoutNow)));
    net.settle();
    net.ticks(8);
    assert_eq!(net.raft("b").role(), Role::Leader);
    assert_eq!(net.applied_data("b").len(), 10);
}

#[test]
fn proposals_and_changes_are_busy_while_transferring() {
    let mut net = Network::three_led_by_a();
    net.down.insert("b".into());
    net.raft_mut("a").transfer_leader(Some("b")).unwrap();
    assert_eq!(
        net.raft_mut("a")
            .propose_batch(vec![Bytes::from_static(b"x")]),
        Err(Error::Busy("leadership transfer in progress"))
    );
    assert!(matches!(
        net.raft_mut("a").propose_conf_change(conf(&["a", "b"])),
        Err(Error::Busy(_))
    ));
    assert!(!net.raft("a").is_lease_valid());
    assert_eq!(net.raft("a").status().transferring_to.as_deref(), Some("b"));
}

#[test]
fn transfer_to_an_unresponsive_target_times_out() {
    let mut net = Network::three_led_by_a();
    net.down.insert("b".into());
    net.raft_mut("a").transfer_leader(Some("b")).unwrap();
    net.ticks(9);
    assert!(net.node("a").events.is_empty());
    net.ticks(1);
    assert_eq!(
        net.node("a").events,
        vec![Event::TransferFailed(Error::TransferTimeout("b".into()))]
    );
    assert_eq!(net.raft("a").role(), Role::Leader);
    assert!(net
        .raft_mut("a")
        .propose_batch(vec![Bytes::from_static(b"x")])
        .is_ok());
}

#[test]
fn transfer_target_must_be_another_voter() {
    let mut net = Network::from_conf(conf_with_learners(&["a", "b", "c"], &["l"]), |_| {});
    net.elect("a");
    assert!(matches!(
        net.raft_mut("a").transfer_leader(Some("a")),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        net.raft_mut("a").transfer_leader(Some("l")),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        net.raft_mut("a").transfer_leader(Some("zz")),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        net.raft_mut("b").transfer_leader(Some("c")),
        Err(Error::NotLeader { .. })
    ));
}

#[test]
fn transfer_to_any_picks_the_most_up_to_date_voter() {
    let mut net = Network::three_led_by_a_behind("b", ["x"]);
    net.down.insert("b".into());
    net.raft_mut("a").transfer_leader(None).unwrap();
    assert_eq!(net.raft("a").transferring_to(), Some("c"));
    net.settle();
    assert_eq!(net.raft("c").role(), Role::Leader);
}

#[test]
fn timeout_now_makes_the_target_campaign_at_once_past_the_lease() {
    let mut net = Network::three_led_by_a();
    let t = net.raft("b").term();
    net.timeout_now("a", "b");
    assert_eq!(net.raft("b").role(), Role::Candidate, "no pre-vote");
    assert_eq!(net.raft("b").term(), t + 1);
    let out = drain_msgs(net.raft_mut("b"));
    assert!(out
        .iter()
        .filter(|m| m.kind() == Some(MessageType::Vote))
        .all(|m| m.context.as_ref() == TRANSFER_CONTEXT));
}

/// The transcripts of `testdata/transfer.txt` (see `datadriven::InteractionEnv`).
#[test]
fn transfer_transcripts() {
    let mut env = crate::datadriven::InteractionEnv::default();
    crate::datadriven::run_file("transfer.txt", |c| env.run(c));
}
