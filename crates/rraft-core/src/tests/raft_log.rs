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

mod kept_entries {
    use std::cell::Cell;

    use bytes::Bytes;

    use crate::raft_log::RaftLog;
    use crate::storage::{LogStorage, MemStorage};
    use crate::{Entry, StorageError};

    /// A storage that counts the entry and term reads the log asks of it.
    #[derive(Default)]
    struct Counting {
        disk: MemStorage,
        reads: Cell<u64>,
    }

    impl LogStorage for Counting {
        fn first_index(&self) -> u64 {
            self.disk.first_index()
        }
        fn last_index(&self) -> u64 {
            self.disk.last_index()
        }
        fn term(&self, index: u64) -> Result<u64, StorageError> {
            self.reads.set(self.reads.get() + 1);
            self.disk.term(index)
        }
        fn entries(&self, lo: u64, hi: u64, max: u64) -> Result<Vec<Entry>, StorageError> {
            self.reads.set(self.reads.get() + 1);
            self.disk.entries(lo, hi, max)
        }
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            data: Bytes::from(format!("{index}@{term}")),
            ..Default::default()
        }
    }

    fn log() -> RaftLog<Counting> {
        RaftLog::new(
            Counting {
                disk: MemStorage::new(),
                ..Default::default()
            },
            None,
        )
    }

    /// The runtime persists what the log hands out, then reports it.
    fn persist(log: &mut RaftLog<Counting>) {
        let ents = log.take_unstable();
        let Some(last) = ents.last().map(|e| (e.index, e.term)) else {
            return;
        };
        log.storage.disk.append(&ents).unwrap();
        log.stable_to(last.0, last.1);
    }

    fn ids(ents: &[Entry]) -> Vec<(u64, u64)> {
        ents.iter().map(|e| (e.index, e.term)).collect()
    }

    /// Entries persisted and then committed are handed out from memory,
    /// and the terms of persisted entries not yet handed out are answered
    /// from memory: neither reads the storage.
    #[test]
    fn persisted_entries_are_handed_out_without_storage_reads() {
        let mut log = log();
        log.append((1..=3).map(|i| entry(i, 1)).collect());
        persist(&mut log);
        assert_eq!(log.persisted(), 3);
        assert_eq!(log.term(2), Ok(1));
        assert!(log.match_term(3, 1));
        log.commit_to(3);
        let handed = log.take_committed(u64::MAX);
        assert_eq!(ids(&handed), vec![(1, 1), (2, 1), (3, 1)]);
        assert_eq!(handed[1].data, Bytes::from("2@1"));
        // The last entry handed out precedes the next Append's entries.
        assert_eq!(log.term(3), Ok(1));
        assert_eq!(log.storage.reads.get(), 0, "storage was read");
        // Handed out: later reads of them go to the storage.
        assert_eq!(
            log.entries(1, 3, u64::MAX).map(|e| ids(&e)),
            Ok(vec![(1, 1), (2, 1)])
        );
        assert!(log.storage.reads.get() > 0);
    }

    /// A truncation below the persisted index replaces the kept entries it
    /// covers: the replacing entries are handed out, never the old ones.
    #[test]
    fn a_truncation_replaces_kept_entries() {
        let mut log = log();
        log.append((1..=4).map(|i| entry(i, 1)).collect());
        persist(&mut log);
        log.commit_to(1);
        assert_eq!(ids(&log.take_committed(u64::MAX)), vec![(1, 1)]);
        log.truncate_and_append(vec![entry(3, 2)]);
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.term(3), Ok(2));
        assert_eq!(log.term(2), Ok(1));
        persist(&mut log);
        assert_eq!(log.term(3), Ok(2));
        assert_eq!(log.term(4), Err(StorageError::Unavailable));
        log.commit_to(3);
        let handed = log.take_committed(u64::MAX);
        assert_eq!(ids(&handed), vec![(2, 1), (3, 2)]);
        assert_eq!(handed[1].data, Bytes::from("3@2"));
    }

    /// Beyond the bound on kept entries the oldest are read back from the
    /// storage: every entry is handed out once, in order, within the byte
    /// limit of each call.
    #[test]
    fn entries_beyond_the_kept_bound_come_from_storage() {
        let mut log = log();
        let n = 3000;
        for i in 1..=n {
            log.append(vec![entry(i, 1)]);
            persist(&mut log);
        }
        log.commit_to(n);
        let mut handed = Vec::new();
        loop {
            let ents = log.take_committed(200);
            if ents.is_empty() {
                break;
            }
            handed.extend(ents);
        }
        assert!(log.storage.reads.get() > 0);
        assert_eq!(ids(&handed), (1..=n).map(|i| (i, 1)).collect::<Vec<_>>());
        assert!(handed.iter().all(|e| e.data == format!("{}@1", e.index)));
    }
}
