//! The shared log (`shared://`): several groups on one stream. Truncation,
//! compaction and reset interleaved across groups, space reclaimed, crash
//! points on a simulated disk (every mutation, random losses of unsynced
//! writes), per-group isolation of a damaged record, the log writer's
//! group commit across groups, and rounds written from their buffer.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rraft::core::StorageError;
use rraft::proto::{Entry, EntryType, HardState};
use rraft::storage::{
    FaultFs, FileSystem, LogOptions, LogWriter, MetaStore, OpenMode, RealFs, SharedGroupLog,
    SharedLog, SimFs, WriteRequest,
};

fn entry(index: u64, term: u64, group: u8) -> Entry {
    let len = 10 + (index * 31 % 90) as usize;
    Entry {
        term,
        index,
        entry_type: EntryType::Data as i32,
        data: Bytes::from(vec![group ^ (index as u8) ^ (term as u8); len]),
    }
}

fn opts(segment_size: u64) -> LogOptions {
    LogOptions {
        segment_size,
        sync: true,
        cache_bytes: 1 << 20,
        ..LogOptions::default()
    }
}

fn all(log: &SharedGroupLog) -> Vec<Entry> {
    let (first, last) = (log.first_index(), log.last_index());
    if last < first {
        return Vec::new();
    }
    log.entries(first, last + 1, u64::MAX).unwrap()
}

/// What a group's log holds: its first index and its entries.
#[derive(Clone, Debug, PartialEq)]
struct Model {
    first: u64,
    entries: Vec<Entry>,
}

impl Model {
    fn new() -> Model {
        Model {
            first: 1,
            entries: Vec::new(),
        }
    }

    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    fn append(&mut self, es: &[Entry]) {
        let head = es[0].index;
        self.entries.truncate((head - self.first) as usize);
        self.entries.extend_from_slice(es);
    }

    fn truncate_suffix(&mut self, last_kept: u64) {
        if last_kept < self.last() {
            self.entries
                .truncate(last_kept.saturating_sub(self.first - 1) as usize);
        }
    }

    fn truncate_prefix(&mut self, first_kept: u64) {
        if first_kept > self.last() + 1 {
            self.reset(first_kept);
        } else if first_kept > self.first {
            self.entries.drain(..(first_kept - self.first) as usize);
            self.first = first_kept;
        }
    }

    fn reset(&mut self, next: u64) {
        self.entries.clear();
        self.first = next;
    }

    /// Whether the recovered `log` shows this state: the same last index
    /// and entries from this state's first index on. Entries before it may
    /// still be there (a compaction is not made durable on its own).
    fn shown_by(&self, log: &SharedGroupLog) -> bool {
        if log.last_index() != self.last() {
            return false;
        }
        if self.entries.is_empty() {
            return true;
        }
        log.first_index() <= self.first
            && log
                .entries(self.first, self.last() + 1, u64::MAX)
                .is_ok_and(|es| es == self.entries)
    }
}

#[test]
fn groups_interleave_truncate_compact_and_reset_then_recover() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let expected = {
        let log = SharedLog::open(fs.clone(), dir.path(), opts(4096)).unwrap();
        let mut groups = Vec::new();
        let mut models = vec![Model::new(), Model::new(), Model::new()];
        for name in ["a", "b", "c"] {
            let (g, rec) = log.open_group(name, 1 << 20).unwrap();
            assert_eq!((rec.first_index, rec.last_index), (1, 0));
            groups.push(g);
        }
        for round in 1..=20u64 {
            for (i, g) in groups.iter().enumerate() {
                let next = g.last_index() + 1;
                let es: Vec<Entry> = (0..3).map(|k| entry(next + k, round, i as u8)).collect();
                g.append(&es).unwrap();
                models[i].append(&es);
            }
            if round % 5 == 0 {
                // Group a: a conflict replaces its last two entries.
                let at = groups[0].last_index() - 1;
                let es = vec![entry(at, round + 100, 0)];
                groups[0].append(&es).unwrap();
                models[0].append(&es);
                // Group b compacts, group c drops its last entry.
                let first = groups[1].last_index() - 4;
                groups[1].truncate_prefix(first).unwrap();
                models[1].truncate_prefix(first);
                let last = groups[2].last_index() - 1;
                groups[2].truncate_suffix(last).unwrap();
                models[2].truncate_suffix(last);
            }
            if round == 12 {
                groups[2].reset(500).unwrap();
                models[2].reset(500);
            }
            groups[round as usize % 3].sync().unwrap();
        }
        for (g, m) in groups.iter().zip(&models) {
            assert_eq!((g.first_index(), all(g)), (m.first, m.entries.clone()));
        }
        models
    };
    let log = SharedLog::open(fs, dir.path(), opts(4096)).unwrap();
    for (name, m) in ["a", "b", "c"].iter().zip(&expected) {
        let (g, rec) = log.open_group(name, 1 << 20).unwrap();
        assert_eq!(rec.last_index, m.last(), "group {name}");
        assert!(m.shown_by(&g), "group {name}: {:?}", all(&g));
        assert!(!rec.may_have_lost_acked);
    }
}

#[test]
fn a_group_is_open_once_and_reopens_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let log = SharedLog::open(RealFs::shared(), dir.path(), opts(1 << 20)).unwrap();
    let (g, _) = log.open_group("g", 0).unwrap();
    g.append(&[entry(1, 1, 0)]).unwrap();
    let e = log.open_group("g", 0).unwrap_err();
    assert!(e.to_string().contains("already open"), "{e}");
    drop(g);
    let (g, rec) = log.open_group("g", 0).unwrap();
    assert_eq!(rec.last_index, 1);
    assert_eq!(g.entry(1).unwrap(), entry(1, 1, 0));
    // A second log on the same directory is refused while this one is open.
    let e = SharedLog::open(RealFs::shared(), dir.path(), opts(1 << 20)).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
}

#[test]
fn files_are_reclaimed_when_compacted_and_idle_groups_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let log = SharedLog::open(RealFs::shared(), dir.path(), opts(2048)).unwrap();
    let (busy, _) = log.open_group("busy", 1 << 20).unwrap();
    let (idle, _) = log.open_group("idle", 1 << 20).unwrap();
    idle.append(&[entry(1, 1, 1), entry(2, 1, 1)]).unwrap();
    for i in 1..=200 {
        busy.append(&[entry(i, 1, 0)]).unwrap();
        if i % 10 == 0 {
            busy.sync().unwrap();
        }
    }
    // Nothing is compacted: every file holds live entries of the busy group.
    assert!(log.file_names().len() > 5, "{:?}", log.file_names());
    // Compacting the busy group leaves the oldest file pinned by the idle
    // group's two entries only: the syncer rewrites them (it looks every
    // few rounds), and each round deletes the files that hold nothing live
    // any more.
    busy.truncate_prefix(195).unwrap();
    for _ in 0..20 {
        busy.sync().unwrap();
    }
    assert!(log.file_names().len() <= 2, "{:?}", log.file_names());
    assert_eq!(all(&idle), vec![entry(1, 1, 1), entry(2, 1, 1)]);
    assert_eq!(busy.first_index(), 195);
    assert_eq!(busy.entry(200).unwrap(), entry(200, 1, 0));
    // An explicit rewrite of a file pinned by many live entries works too.
    for i in 201..=240 {
        busy.append(&[entry(i, 1, 0)]).unwrap();
    }
    busy.sync().unwrap();
    while log.file_names().len() > 2 && log.rewrite_oldest().unwrap() {
        busy.sync().unwrap();
    }
    assert!(log.file_names().len() <= 3, "{:?}", log.file_names());
    drop((busy, idle));
    drop(log);
    let log = SharedLog::open(RealFs::shared(), dir.path(), opts(2048)).unwrap();
    let (idle, _) = log.open_group("idle", 0).unwrap();
    assert_eq!(all(&idle), vec![entry(1, 1, 1), entry(2, 1, 1)]);
    let (busy, _) = log.open_group("busy", 0).unwrap();
    assert_eq!(busy.last_index(), 240);
    assert!(busy.first_index() <= 195);
    assert_eq!(busy.entry(195).unwrap(), entry(195, 1, 0));
}

/// Writes two groups, both synced, then a later synced round; returns the
/// directory, the path of the first file and each group's entries.
fn two_synced_groups() -> (tempfile::TempDir, PathBuf, Vec<Entry>, Vec<Entry>) {
    let dir = tempfile::tempdir().unwrap();
    let log = SharedLog::open(RealFs::shared(), dir.path(), opts(1 << 20)).unwrap();
    let (a, _) = log.open_group("a", 0).unwrap();
    let (b, _) = log.open_group("b", 0).unwrap();
    let ea: Vec<Entry> = (1..=5).map(|i| entry(i, 1, 0xa)).collect();
    let eb: Vec<Entry> = (1..=5).map(|i| entry(i, 1, 0xb)).collect();
    a.append(&ea).unwrap();
    b.append(&eb).unwrap();
    a.sync().unwrap();
    // A later round: its records carry a durable mark past the ones above.
    b.append(&[entry(6, 1, 0xb)]).unwrap();
    b.sync().unwrap();
    let file = dir.path().join(&log.file_names()[0]);
    drop((a, b, log));
    let mut eb = eb;
    eb.push(entry(6, 1, 0xb));
    (dir, file, ea, eb)
}

/// Offset of the entry record of `index` written by [`entry`] for group
/// `tag` in term 1 (found by scanning for the record magic).
fn record_offset(bytes: &[u8], index: u64, tag: u8) -> usize {
    (0..bytes.len() - 40)
        .find(|&p| {
            &bytes[p..p + 4] == b"RRSL"
                && bytes[p + 4] == 1
                && bytes[p + 16..p + 24] == index.to_le_bytes()
                && bytes[p + 49] == tag ^ (index as u8) ^ 1
        })
        .expect("record present")
}

#[test]
fn a_damaged_synced_record_fails_its_group_alone() {
    let (dir, file, _, eb) = two_synced_groups();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = record_offset(&bytes, 3, 0xa);
    bytes[at + 50] ^= 0xff; // a byte of the entry's data
    std::fs::write(&file, &bytes).unwrap();
    let log = SharedLog::open(RealFs::shared(), dir.path(), opts(1 << 20)).unwrap();
    let e = log.open_group("a", 0).unwrap_err().to_string();
    assert!(
        e.contains("damaged") && e.contains(&format!("offset {at}")),
        "{e}"
    );
    let (b, rec) = log.open_group("b", 0).unwrap();
    assert_eq!(all(&b), eb);
    assert!(!rec.may_have_lost_acked);
}

#[test]
fn a_damaged_synced_header_fails_every_group() {
    let (dir, file, _, _) = two_synced_groups();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = record_offset(&bytes, 3, 0xa);
    bytes[at + 10] ^= 0xff; // the group number
    std::fs::write(&file, &bytes).unwrap();
    let e = SharedLog::open(RealFs::shared(), dir.path(), opts(1 << 20)).unwrap_err();
    assert!(e.to_string().contains("names no group"), "{e}");
}

#[test]
fn a_torn_unsynced_tail_is_cut_for_every_group() {
    let (dir, _, ea, eb) = two_synced_groups();
    // An unsynced record of b, torn: its length stays, half its body is gone.
    let log = SharedLog::open(RealFs::shared(), dir.path(), opts(1 << 20)).unwrap();
    let names = log.file_names();
    drop(log);
    let last = dir.path().join(names.last().unwrap());
    let mut tail = Vec::new();
    {
        let fs = RealFs::shared();
        let f = fs.open(&last, OpenMode::ReadWrite).unwrap();
        let size = f.size().unwrap();
        // Forge a record header with a wrong body checksum at the end.
        tail.extend_from_slice(b"RRSL\x01\0\0\0");
        tail.extend_from_slice(&[0xee; 32]);
        f.write_at(&tail, size).unwrap();
    }
    let log = SharedLog::open(RealFs::shared(), dir.path(), opts(1 << 20)).unwrap();
    let (a, rec) = log.open_group("a", 0).unwrap();
    assert_eq!(all(&a), ea);
    assert!(rec.may_have_lost_acked, "non-zero bytes were cut");
    let (b, _) = log.open_group("b", 0).unwrap();
    assert_eq!(all(&b), eb);
}

// ---- crash points ---------------------------------------------------------

/// Every state the groups went through since the last completed sync round
/// (all groups at once: the stream is cut at one point).
#[derive(Default)]
struct Record {
    states: Vec<Vec<Model>>,
}

const GROUPS: [&str; 3] = ["a", "b", "c"];

fn crash_workload(fs: &SimFs, dir: &Path, r: &mut Record) {
    let mut models = vec![Model::new(); GROUPS.len()];
    r.states = vec![models.clone()];
    let Ok(log) = SharedLog::open(fs.shared(), dir, opts(700)) else {
        return;
    };
    let mut groups = Vec::new();
    for name in GROUPS {
        let Ok((g, _)) = log.open_group(name, 4096) else {
            return;
        };
        groups.push(g);
    }
    let step = |r: &mut Record, models: &Vec<Model>| r.states.push(models.clone());
    for round in 1..=7u64 {
        for (i, g) in groups.iter().enumerate() {
            let next = models[i].last() + 1;
            let n = 1 + (round + i as u64) % 3;
            let es: Vec<Entry> = (0..n).map(|k| entry(next + k, round, i as u8)).collect();
            if g.append(&es).is_err() {
                return;
            }
            models[i].append(&es);
            step(r, &models);
        }
        if round == 3 {
            // A follower's conflict in group a: its last entry replaced.
            let at = models[0].last();
            let es = vec![entry(at, 50, 0)];
            if groups[0].append(&es).is_err() {
                return;
            }
            models[0].append(&es);
            step(r, &models);
            let last = models[2].last() - 1;
            if groups[2].truncate_suffix(last).is_err() {
                return;
            }
            models[2].truncate_suffix(last);
            step(r, &models);
        }
        if round == 4 {
            let first = models[1].last() - 1;
            if groups[1].truncate_prefix(first).is_err() {
                return;
            }
            models[1].truncate_prefix(first);
            step(r, &models);
            let first = models[0].last();
            if groups[0].truncate_prefix(first).is_err() {
                return;
            }
            models[0].truncate_prefix(first);
            step(r, &models);
        }
        if round == 5 {
            let next = models[2].last() + 20;
            if groups[2].reset(next).is_err() {
                return;
            }
            models[2].reset(next);
            step(r, &models);
            if log.rewrite_oldest().is_err() {
                return;
            }
        }
        if groups[round as usize % 3].sync().is_err() {
            return;
        }
        r.states = vec![models.clone()];
    }
}

fn check_crash(fs: &SimFs, dir: &Path, r: &Record, point: u64, seed: u64) {
    let ctx = || {
        format!(
            "crash point {point}, seed {seed}\n{}",
            fs.journal().join("\n")
        )
    };
    let log = SharedLog::open(fs.shared(), dir, opts(700))
        .unwrap_or_else(|e| panic!("recovery refused: {e}; {}", ctx()));
    let mut groups = Vec::new();
    for name in GROUPS {
        let (g, _) = log
            .open_group(name, 4096)
            .unwrap_or_else(|e| panic!("group {name}: {e}; {}", ctx()));
        groups.push(g);
    }
    let matches = r
        .states
        .iter()
        .any(|models| models.iter().zip(&groups).all(|(m, g)| m.shown_by(g)));
    if !matches {
        let got: Vec<_> = groups
            .iter()
            .map(|g| (g.first_index(), g.last_index()))
            .collect();
        let want: Vec<Vec<_>> = r
            .states
            .iter()
            .map(|ms| ms.iter().map(|m| (m.first, m.last())).collect())
            .collect();
        panic!(
            "recovered {got:?}, none of the states since the last sync {want:?}; {}",
            ctx()
        );
    }
    // The recovered log takes new writes and survives another reopen.
    let next = groups[0].last_index() + 1;
    groups[0].append(&[entry(next, 99, 0)]).unwrap();
    groups[0].sync().unwrap();
    drop(groups);
    drop(log);
    let log = SharedLog::open(fs.shared(), dir, opts(700)).unwrap();
    let (g, _) = log.open_group("a", 0).unwrap();
    assert_eq!(g.last_index(), next, "{}", ctx());
}

#[test]
fn crash_at_every_point_loses_no_synced_entry_of_any_group() {
    let run = |point: Option<u64>, seed: u64| {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/wal")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let start = fs.mutations();
        if let Some(p) = point {
            fs.crash_after(start + p);
        }
        let mut r = Record::default();
        crash_workload(&fs, Path::new("/wal"), &mut r);
        let made = fs.mutations() - start;
        fs.crash(seed);
        (fs, r, made)
    };
    let (_, full, total) = run(None, 0);
    assert!(total > 40, "the workload makes {total} mutations");
    assert_eq!(full.states.len(), 1, "the workload ends synced");
    for point in 0..=total {
        for seed in 0..8 {
            let (fs, r, _) = run(Some(point), seed);
            check_crash(&fs, Path::new("/wal"), &r, point, seed);
        }
    }
}

// ---- the writer: one fdatasync for many groups ----------------------------

#[test]
fn writers_of_many_groups_share_sync_rounds_and_ack_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let log = SharedLog::open_shared(fs.clone(), &dir.path().join("wal"), opts(1 << 20)).unwrap();
    const GROUPS: usize = 40;
    const WRITES: u64 = 20;
    let acked = Arc::new(Mutex::new(vec![Vec::new(); GROUPS]));
    let mut writers = Vec::new();
    let mut logs = Vec::new();
    for g in 0..GROUPS {
        let (gl, _) = log.open_group(&format!("g{g}"), 1 << 16).unwrap();
        let gl = Arc::new(gl);
        let meta = Arc::new(MetaStore::open(fs.clone(), dir.path().join(format!("m{g}"))).unwrap());
        writers.push(LogWriter::spawn(gl.clone(), meta));
        logs.push(gl);
    }
    let before = log.sync_rounds();
    for i in 1..=WRITES {
        for (g, w) in writers.iter().enumerate() {
            let acked = acked.clone();
            w.submit(WriteRequest {
                reset_to: None,
                entries: vec![entry(i, 1, g as u8)],
                hard_state: (i == 1).then(|| HardState {
                    term: 1,
                    vote: Default::default(),
                    commit: 0,
                }),
                done: Box::new(move |r: Result<(), StorageError>| {
                    r.unwrap();
                    acked.lock().unwrap()[g].push(i);
                }),
            });
        }
    }
    for w in &mut writers {
        w.shutdown();
    }
    let acked = acked.lock().unwrap();
    for (g, a) in acked.iter().enumerate() {
        assert_eq!(*a, (1..=WRITES).collect::<Vec<_>>(), "group {g} in order");
        assert_eq!(logs[g].durable_last_index(), WRITES);
    }
    let rounds = log.sync_rounds() - before;
    let requests = GROUPS as u64 * WRITES;
    assert!(
        rounds * 4 < requests,
        "{rounds} sync rounds for {requests} writes of {GROUPS} groups"
    );
    // Every acknowledged entry is on disk after a reopen.
    // The writers' lanes release their logs on the pool's threads: the
    // reopen goes through the process's registry, which waits for that.
    let wal = dir.path().join("wal");
    drop((writers, logs));
    drop(log);
    let log = SharedLog::open_shared(fs, &wal, opts(1 << 20)).unwrap();
    for g in 0..GROUPS {
        let (gl, _) = log.open_group(&format!("g{g}"), 0).unwrap();
        assert_eq!(gl.last_index(), WRITES);
        assert_eq!(gl.entry(WRITES).unwrap(), entry(WRITES, 1, g as u8));
    }
}

#[test]
fn the_commit_index_saved_with_a_vote_never_runs_ahead_of_the_shared_log() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let log = SharedLog::open(fs.clone(), &dir.path().join("wal"), opts(1 << 20)).unwrap();
    let (gl, _) = log.open_group("g", 0).unwrap();
    let meta = Arc::new(MetaStore::open(fs, dir.path().join("meta")).unwrap());
    let mut writer = LogWriter::spawn(Arc::new(gl), meta.clone());
    let submit = |term: u64, entries: Vec<Entry>| {
        let (tx, rx) = std::sync::mpsc::channel();
        writer.submit(WriteRequest {
            reset_to: None,
            entries,
            hard_state: Some(HardState {
                term,
                vote: Default::default(),
                commit: 3,
            }),
            done: Box::new(move |r| tx.send(r).unwrap()),
        });
        rx.recv().unwrap().unwrap();
    };
    // The vote is saved before the batch's entries are synced: the commit
    // index stored with it is capped at what the log held durably then.
    submit(1, (1..=3).map(|i| entry(i, 1, 0)).collect());
    assert_eq!(meta.load().unwrap().commit, 0);
    assert_eq!(meta.load().unwrap().term, 1);
    submit(2, vec![entry(4, 2, 0)]);
    assert_eq!(meta.load().unwrap().commit, 3);
    assert_eq!(meta.load().unwrap().term, 2);
    writer.shutdown();
}

// ---- buffered rounds -------------------------------------------------------

/// A sync round writes the records buffered since the last one, then
/// fdatasyncs: an append does no IO, its records are read back from the
/// buffer, and it is durable only once its round has written and synced it.
/// Records of a process that dies before their round are lost, and nothing
/// acknowledged is.
#[test]
fn appends_are_buffered_until_their_round_writes_and_syncs_them() {
    for seed in 0..16 {
        let fs = SimFs::new();
        let wal = Path::new("/wal");
        fs.create_dir_all(wal).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let log = SharedLog::open(fs.shared(), wal, opts(1 << 20)).unwrap();
        // No entry cache: every read below comes from the buffer or the file.
        let (a, _) = log.open_group("a", 0).unwrap();
        let (b, _) = log.open_group("b", 0).unwrap();
        let acked_a: Vec<Entry> = (1..=3).map(|i| entry(i, 1, 0xa)).collect();
        let before = fs.mutations();
        a.append(&acked_a).unwrap();
        assert_eq!(fs.mutations(), before, "an append does no IO");
        assert_eq!(all(&a), acked_a, "buffered records read back");
        assert_eq!(a.durable_last_index(), 0, "not durable before its round");
        // b: five entries, compaction and a conflicting suffix, all in one
        // round's buffer.
        b.append(&(1..=5).map(|i| entry(i, 1, 0xb)).collect::<Vec<_>>())
            .unwrap();
        b.truncate_prefix(4).unwrap();
        b.append(&[entry(5, 2, 0xb)]).unwrap();
        let acked_b = vec![entry(4, 1, 0xb), entry(5, 2, 0xb)];
        assert_eq!(all(&b), acked_b);
        assert_eq!((b.term(4), b.term(5)), (Ok(1), Ok(2)));
        assert_eq!(b.term(3), Err(StorageError::Compacted));
        a.sync().unwrap();
        assert!(fs.mutations() > before, "the round wrote the records");
        assert_eq!(a.durable_last_index(), 3);
        assert_eq!(b.durable_last_index(), 5);
        assert_eq!(all(&a), acked_a, "written records read back");
        // Buffered, never written: the process dies before the next round.
        a.append(&[entry(4, 1, 0xa)]).unwrap();
        b.truncate_suffix(4).unwrap();
        assert_eq!(a.entry(4).unwrap(), entry(4, 1, 0xa));
        fs.crash_after(fs.mutations());
        drop((a, b, log));
        fs.crash(seed);
        let log = SharedLog::open(fs.shared(), wal, opts(1 << 20)).unwrap();
        let (a, rec) = log.open_group("a", 0).unwrap();
        assert_eq!(all(&a), acked_a, "seed {seed}");
        assert!(!rec.may_have_lost_acked, "seed {seed}");
        let (b, _) = log.open_group("b", 0).unwrap();
        assert_eq!(b.first_index(), 4, "seed {seed}");
        assert_eq!(all(&b), acked_b, "seed {seed}");
    }
}

/// A round whose write fails acknowledges nothing it covered: its sync
/// fails, no fdatasync runs, and every later write of every group fails
/// (the error is sticky); the records it had buffered stay readable.
#[test]
fn a_failed_round_write_acknowledges_nothing_and_fails_every_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultFs::new(RealFs::shared());
    let log = SharedLog::open(faults.shared(), dir.path(), opts(1 << 20)).unwrap();
    let (a, _) = log.open_group("a", 0).unwrap();
    let (b, _) = log.open_group("b", 0).unwrap();
    a.append(&[entry(1, 1, 0xa)]).unwrap();
    a.sync().unwrap();
    faults.faults.fail_write.store(true, Ordering::SeqCst);
    // Buffered: the append itself does no IO and succeeds.
    b.append(&[entry(1, 1, 0xb)]).unwrap();
    let syncs = faults.faults.file_syncs.load(Ordering::SeqCst);
    let e = b.sync().unwrap_err();
    assert!(e.to_string().contains("write"), "{e}");
    assert_eq!(
        faults.faults.file_syncs.load(Ordering::SeqCst),
        syncs,
        "no fdatasync after the failed write"
    );
    assert_eq!(b.durable_last_index(), 0);
    assert_eq!(b.entry(1).unwrap(), entry(1, 1, 0xb));
    faults.faults.fail_write.store(false, Ordering::SeqCst);
    assert!(a.append(&[entry(2, 1, 0xa)]).is_err());
    assert!(a.sync().is_err());
    assert_eq!(a.durable_last_index(), 1);
}
