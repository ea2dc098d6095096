//! §5.3 log replication and §5.4 safety.

use crate::core::testing::*;

#[test]
fn leader_replicates_and_everyone_applies() {
    let mut net = Network::new(&["a", "b", "c"]);
    net.elect("a");
    net.propose("a", "x").unwrap();
    net.propose("a", "y").unwrap();
    net.tick();
    for id in ["a", "b", "c"] {
        assert_eq!(net.applied_data(id), vec!["x", "y"], "{id}");
    }
}
