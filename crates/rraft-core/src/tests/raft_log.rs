//! The Raft log: durable and unstable entries, handed out once.

use crate::testing::*;

/// Committed entries that are all durable (in storage only, none left in
/// the unstable part) are read from storage and handed out.
#[test]
fn committed_entries_held_only_in_storage_are_handed_out() {
    let mut a = new_raft("a", &["a"]);
    a.campaign().unwrap();
    let rd = a.ready();
    persist_ready(&mut a, &rd);
    // Entry 1 is durable (in storage only) and committed: reading it must
    // not touch the (empty) unstable part.
    let rd = a.ready();
    assert_eq!(rd.committed_entries.len(), 1);
}
