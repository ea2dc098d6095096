//! §5.2 leader election, pre-vote, leases, check-quorum.

use crate::core::testing::*;
use crate::core::*;

#[test]
fn single_voter_elects_itself_on_timeout() {
    let mut net = Network::new(&["a"]);
    net.ticks(20);
    assert_eq!(net.raft("a").role(), Role::Leader);
    assert_eq!(net.raft("a").term(), 1);
}

#[test]
fn three_nodes_elect_one_leader() {
    let mut net = Network::new(&["a", "b", "c"]);
    net.ticks(25);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    let l = &leaders[0];
    for id in ["a", "b", "c"] {
        assert_eq!(net.raft(id).leader(), Some(l.as_str()));
    }
}
