//! A node's disk and state machine.
//!
//! The durable log is the `MemStorage` the core reads (`Raft::storage`): the
//! simulator writes to it only when a queued write completes. Next to it sit
//! the durable HardState and the latest snapshot. Writes are queued in the
//! order the Readys were taken and complete after a random delay, in order.
//! A crash keeps the durable part and drops the queue (optionally after a
//! torn prefix of the first queued write reached the disk).

use std::collections::VecDeque;

use rraft::core::{
    Configuration, Entry, EntryType, HardState, LogStorage, MemStorage, Message, SnapshotMeta,
};

use crate::kv::{self, Registers};

/// FNV-1a over an entry's type and data.
pub fn entry_digest(e: &Entry) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in (e.entry_type as u32)
        .to_le_bytes()
        .iter()
        .chain(e.data.iter())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Rolling digest of a state machine after applying one more entry.
pub fn chain(prev: u64, index: u64, term: u64, digest: u64) -> u64 {
    let mut z = prev ^ index.rotate_left(17) ^ term.rotate_left(41) ^ digest;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The replicated state machine: a digest of every applied entry, the data
/// writes count, the configuration in force at `index` and the key-value
/// registers (written only by the KV clients' commands). This is also what a
/// snapshot holds.
#[derive(Clone, Debug, PartialEq)]
pub struct SmState {
    pub index: u64,
    pub term: u64,
    pub digest: u64,
    pub writes: u64,
    pub conf: Configuration,
    pub registers: Registers,
}

impl SmState {
    /// The state before index 1, with the group's initial configuration.
    pub fn genesis(conf: Configuration) -> SmState {
        SmState {
            index: 0,
            term: 0,
            digest: 0,
            writes: 0,
            conf,
            registers: Registers::new(),
        }
    }

    /// Applies one entry; for a KV command, returns (op id, CAS result).
    pub fn apply(&mut self, e: &Entry) -> Option<(u64, bool)> {
        self.index = e.index;
        self.term = e.term;
        self.digest = chain(self.digest, e.index, e.term, entry_digest(e));
        match e.kind() {
            EntryType::Data => {
                self.writes += 1;
                return kv::apply(&mut self.registers, &e.data);
            }
            EntryType::Configuration => {
                if let Ok(c) = <Configuration as prost::Message>::decode(e.data.clone()) {
                    self.conf = c;
                }
            }
            EntryType::Noop => {}
        }
        None
    }

    /// The snapshot metadata of this state.
    pub fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_index: self.index,
            last_term: self.term,
            configuration: Some(self.conf.clone()),
        }
    }
}

/// One Ready's worth of persistence, waiting for the disk.
#[derive(Debug)]
pub struct PendingWrite {
    pub complete_at: u64,
    pub snapshot: Option<(SnapshotMeta, SmState)>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub persisted_messages: Vec<Message>,
}

/// The durable part of a node besides its log, and its write queue.
#[derive(Debug, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Option<(SnapshotMeta, SmState)>,
    pub queue: VecDeque<PendingWrite>,
    /// Completion time of the last queued write (writes complete in order).
    pub last_complete_at: u64,
    pub writes: u64,
}

impl Disk {
    /// Queues `w` behind the writes already waiting.
    pub fn enqueue(&mut self, mut w: PendingWrite) {
        w.complete_at = w.complete_at.max(self.last_complete_at);
        self.last_complete_at = w.complete_at;
        self.queue.push_back(w);
        self.writes += 1;
    }

    /// The next write due at `now`, in order.
    pub fn pop_due(&mut self, now: u64) -> Option<PendingWrite> {
        if self.queue.front()?.complete_at <= now {
            self.queue.pop_front()
        } else {
            None
        }
    }

    /// Index and term of the durable snapshot (0, 0 without one).
    pub fn snapshot_index_term(&self) -> (u64, u64) {
        self.snapshot
            .as_ref()
            .map_or((0, 0), |(m, _)| (m.last_index, m.last_term))
    }

    /// A crash: the queue is lost. With `torn = Some(k)`, the snapshot and
    /// the first `k` entries of the first queued write reached the disk
    /// (the write order is snapshot, entries, hard state).
    pub fn crash(&mut self, log: &mut MemStorage, torn: Option<usize>) {
        if let (Some(k), Some(w)) = (torn, self.queue.pop_front()) {
            if let Some((meta, state)) = w.snapshot {
                log.reset(meta.last_index);
                self.snapshot = Some((meta, state));
            }
            let k = k.min(w.entries.len());
            let _ = append_trimmed(log, &w.entries[..k]);
            if k == w.entries.len() {
                if let Some(hs) = w.hard_state {
                    self.hard_state = hs;
                }
            }
        }
        self.queue.clear();
        self.last_complete_at = 0;
    }
}

/// Appends to the durable log, skipping the part of the batch that lies
/// before its first index (already compacted into a snapshot). Returns the
/// skipped entries, which the caller checks against the history.
pub fn append_trimmed(log: &mut MemStorage, entries: &[Entry]) -> Result<Vec<Entry>, String> {
    let first = log.first_index();
    let skip = entries.iter().take_while(|e| e.index < first).count();
    log.append(&entries[skip..]).map_err(|e| e.to_string())?;
    Ok(entries[..skip].to_vec())
}

/// Configuration entries after `after` in a log, for `InitialState`.
pub fn configurations_after(log: &MemStorage, after: u64) -> Vec<Entry> {
    log.all()
        .iter()
        .filter(|e| e.index > after && e.kind() == EntryType::Configuration)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn e(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            entry_type: EntryType::Data as i32,
            data: Bytes::from(index.to_le_bytes().to_vec()),
        }
    }

    #[test]
    fn writes_complete_in_order() {
        let mut d = Disk::default();
        for (i, at) in [(1, 5), (2, 2), (3, 7)] {
            d.enqueue(PendingWrite {
                complete_at: at,
                snapshot: None,
                entries: vec![e(i, 1)],
                hard_state: None,
                persisted_messages: vec![],
            });
        }
        assert!(d.pop_due(4).is_none());
        assert_eq!(d.pop_due(5).unwrap().entries[0].index, 1);
        assert_eq!(d.pop_due(5).unwrap().entries[0].index, 2);
        assert!(d.pop_due(6).is_none());
        assert_eq!(d.pop_due(7).unwrap().entries[0].index, 3);
    }

    #[test]
    fn torn_write_keeps_a_prefix_and_not_the_hard_state() {
        let mut d = Disk::default();
        let mut log = MemStorage::new();
        d.enqueue(PendingWrite {
            complete_at: 1,
            snapshot: None,
            entries: vec![e(1, 1), e(2, 1), e(3, 1)],
            hard_state: Some(HardState {
                term: 1,
                vote: Default::default(),
                commit: 0,
            }),
            persisted_messages: vec![],
        });
        d.crash(&mut log, Some(2));
        assert_eq!(log.last_index(), 2);
        assert_eq!(d.hard_state.term, 0);
        assert!(d.queue.is_empty());
    }

    #[test]
    fn trimmed_append_skips_compacted_entries() {
        let mut log = MemStorage::new();
        log.append(&[e(1, 1), e(2, 1), e(3, 1)]).unwrap();
        log.compact(3);
        let skipped = append_trimmed(&mut log, &[e(2, 1), e(3, 1), e(4, 1)]).unwrap();
        assert_eq!(skipped.len(), 1);
        assert_eq!(log.first_index(), 3);
        assert_eq!(log.last_index(), 4);
    }

    #[test]
    fn state_digest_depends_on_history() {
        let mut a = SmState::genesis(Configuration::default());
        let mut b = a.clone();
        a.apply(&e(1, 1));
        b.apply(&e(1, 2));
        assert_ne!(a.digest, b.digest);
    }
}
