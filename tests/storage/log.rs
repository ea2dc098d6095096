//! The segmented log: recovery from torn tails and corruption, model-based
//! random operation sequences against `MemStorage`, sticky errors.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use rraft::core::rng::Rng;
use rraft::core::{LogStorage, MemStorage, StorageError};
use rraft::proto::{Configuration, Entry, EntryType};
use rraft::storage::entry_codec::{self, HEADER_LEN};
use rraft::storage::{
    DurableLog, FaultFs, FileSystem, LogBackend, LogOptions, MemLog, OpenMode, RealFs, SegmentLog,
    SimFs,
};

fn ent(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        term,
        index,
        entry_type: EntryType::Data as i32,
        data: Bytes::copy_from_slice(data),
    }
}

fn conf(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        entry_type: EntryType::Configuration as i32,
        // A configuration naming a peer after the entry's index, so
        // entries differ (stored as braft's ConfigurationPBMeta).
        data: Bytes::from(
            Configuration {
                voters: vec![format!("127.0.0.1:{}:0", 1000 + index % 60000)],
                learners: vec![],
                old_voters: vec![],
            }
            .encode_to_vec(),
        ),
    }
}

fn opts(segment_size: u64, cache_bytes: u64) -> LogOptions {
    LogOptions {
        segment_size,
        sync: true,
        cache_bytes,
        ..LogOptions::default()
    }
}

fn open(
    dir: &Path,
    o: LogOptions,
) -> Result<(SegmentLog, rraft::storage::Recovered), StorageError> {
    SegmentLog::open(RealFs::shared(), dir, o)
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("log_") && n != "log_meta")
        .collect();
    v.sort();
    v
}

fn all(log: &SegmentLog) -> Vec<Entry> {
    let (f, l) = (log.first_index(), log.last_index());
    let mut out = Vec::new();
    let mut i = f;
    while i <= l {
        let v = log.entries(i, l + 1, u64::MAX).unwrap();
        i += v.len() as u64;
        out.extend(v);
    }
    out
}

/// Entries 1..=n with data sizes 0, 7, 14, ... and a configuration at 3.
fn sample(n: u64) -> Vec<Entry> {
    (1..=n)
        .map(|i| {
            if i == 3 {
                conf(i, 1 + i / 4)
            } else {
                ent(i, 1 + i / 4, &vec![i as u8; (i as usize * 7) % 50])
            }
        })
        .collect()
}

#[test]
fn append_read_reopen_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let es = sample(40);
    {
        let (log, rec) = open(d.path(), opts(200, 64)).unwrap();
        assert_eq!((rec.first_index, rec.last_index), (1, 0));
        log.append(&es).unwrap();
        log.sync().unwrap();
        assert_eq!(all(&log), es);
        assert!(log.segment_count() > 3, "small segments roll");
        assert_eq!(log.term(40).unwrap(), es[39].term);
        assert_eq!(log.entry(3).unwrap(), es[2]);
        assert_eq!(log.term(41), Err(StorageError::Unavailable));
        assert_eq!(log.entries(38, 42, 0), Err(StorageError::Unavailable));
    }
    let names = files(d.path());
    assert!(names.iter().any(|n| n.starts_with("log_inprogress_")));
    assert!(
        names.contains(&"log_00000000000000000001_00000000000000000004".to_string())
            || names[0].starts_with("log_00000000000000000001_")
    );
    let (log, rec) = open(d.path(), opts(200, 64)).unwrap();
    assert_eq!((rec.first_index, rec.last_index), (1, 40));
    assert_eq!(rec.configurations, vec![es[2].clone()]);
    assert_eq!(all(&log), es);
    // max_bytes: at least one entry, then as many as fit.
    let v = log.entries(5, 41, 0).unwrap();
    assert_eq!(v.len(), 1);
    let v = log.entries(5, 41, 35 + 42).unwrap();
    assert_eq!(v.len(), 2);
}

#[test]
fn torn_tail_cut_at_every_byte_offset() {
    let src = tempfile::tempdir().unwrap();
    let es = sample(6);
    {
        let (log, _) = open(src.path(), opts(1 << 20, 1 << 20)).unwrap();
        log.append(&es).unwrap();
        log.sync().unwrap();
    }
    let name = files(src.path()).pop().unwrap();
    assert!(name.starts_with("log_inprogress_"));
    let mut bytes = std::fs::read(src.path().join(&name)).unwrap();
    // End offset of each entry.
    let mut ends = Vec::new();
    let mut off = 0;
    for e in &es {
        let mut enc = Vec::new();
        entry_codec::encode(e, &mut enc).unwrap();
        off += enc.len();
        ends.push(off);
    }
    // braft's layout: the open segment ends with its last entry.
    assert_eq!(bytes.len(), off);
    bytes.truncate(off);
    for cut in 0..=bytes.len() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(&name), &bytes[..cut]).unwrap();
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        let (log, rec) =
            open(d.path(), opts(1 << 20, 1 << 20)).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(rec.last_index, whole as u64, "cut at {cut}");
        assert_eq!(all(&log), es[..whole].to_vec(), "cut at {cut}");
        // The log goes on from there, and the torn bytes are gone for good.
        log.append(&[ent(whole as u64 + 1, 9, b"after")]).unwrap();
        log.sync().unwrap();
        drop(log);
        let (log, rec) = open(d.path(), opts(1 << 20, 1 << 20)).unwrap();
        assert_eq!(rec.last_index, whole as u64 + 1, "cut at {cut}");
        assert_eq!(
            log.entry(whole as u64 + 1).unwrap().data,
            Bytes::from_static(b"after")
        );
    }
}

#[test]
fn zero_filled_and_garbage_tails_are_cut() {
    let d = tempfile::tempdir().unwrap();
    let es = sample(5);
    {
        let (log, _) = open(d.path(), LogOptions::default()).unwrap();
        log.append(&es).unwrap();
        log.sync().unwrap();
    }
    let name = files(d.path()).pop().unwrap();
    let path = d.path().join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0u8; 8192]);
    std::fs::write(&path, &bytes).unwrap();
    let (log, rec) = open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.last_index, 5);
    assert_eq!(all(&log), es);
    drop(log);
    // Half an entry header of garbage.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0xAB; 13]);
    std::fs::write(&path, &bytes).unwrap();
    let (_, rec) = open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.last_index, 5);
}

/// Writes `n` entries of 40 data bytes into segments of ~3 entries each.
fn closed_segments_log(n: u64) -> (tempfile::TempDir, Vec<Entry>) {
    let d = tempfile::tempdir().unwrap();
    let es: Vec<Entry> = (1..=n).map(|i| ent(i, 1, &[i as u8; 40])).collect();
    let (log, _) = open(d.path(), opts(150, 1 << 20)).unwrap();
    log.append(&es).unwrap();
    log.sync().unwrap();
    (d, es)
}

fn flip(path: &Path, off: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[off] ^= 0x01;
    std::fs::write(path, &b).unwrap();
}

#[test]
fn flipped_byte_in_a_closed_segment_names_file_and_offset() {
    let entry_len = HEADER_LEN + 40;
    for (what, within) in [("data", HEADER_LEN + 5), ("header", 3)] {
        let (d, _) = closed_segments_log(12);
        let names = files(d.path());
        assert!(names.len() >= 3, "{names:?}");
        let closed = names.iter().find(|n| !n.contains("inprogress")).unwrap();
        let path = d.path().join(closed);
        // Second entry of the first closed segment.
        flip(&path, entry_len + within);
        let e = open(d.path(), opts(150, 1 << 20)).unwrap_err().to_string();
        assert!(e.contains(closed.as_str()), "{what}: {e}");
        assert!(
            e.contains(&format!("byte offset {entry_len}")),
            "{what}: {e}"
        );
    }
}

#[test]
fn damage_to_synced_data_in_the_open_segment_names_file_and_offset() {
    // Three sync batches of two entries: 1-2, 3-4, 5-6.
    let d = tempfile::tempdir().unwrap();
    let es: Vec<Entry> = (1..=6).map(|i| ent(i, 1, &[i as u8; 40])).collect();
    {
        let (log, _) = open(d.path(), LogOptions::default()).unwrap();
        for pair in es.chunks(2) {
            log.append(pair).unwrap();
            log.sync().unwrap();
        }
    }
    let name = files(d.path()).pop().unwrap();
    let path = d.path().join(&name);
    let entry_len = HEADER_LEN + 40;
    // Damage to entries 2, 3 and 4 (data, header start, header checksum):
    // a later batch follows, so they had been synced.
    for (within, entry) in [(HEADER_LEN + 1, 1usize), (0, 2), (HEADER_LEN - 1, 3)] {
        let orig = std::fs::read(&path).unwrap();
        flip(&path, entry * entry_len + within);
        let e = open(d.path(), LogOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&name), "{e}");
        assert!(
            e.contains(&format!("byte offset {}", entry * entry_len)),
            "{e}"
        );
        std::fs::write(&path, &orig).unwrap();
    }
    // Damage in the last batch is indistinguishable from a crash while it
    // was being written: it is cut, and reported as possibly acknowledged.
    flip(&path, 4 * entry_len + HEADER_LEN + 3);
    let (_, rec) = open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.last_index, 4);
    assert!(rec.may_have_lost_acked);
}

#[test]
fn a_crash_inside_an_unsynced_batch_never_stops_the_log_from_opening() {
    // Batch 1-2 synced; 3, 4 and 5 appended one by one and not synced. The
    // disk kept the write of 4 and 5 but not that of 3 (zeros) or tore it.
    let entry_len = HEADER_LEN + 40;
    for damage in [&[0u8; 5][..], &[0x5A; 5][..]] {
        let d = tempfile::tempdir().unwrap();
        let es: Vec<Entry> = (1..=5).map(|i| ent(i, 1, &[i as u8; 40])).collect();
        {
            let (log, _) = open(d.path(), LogOptions::default()).unwrap();
            log.append(&es[..2]).unwrap();
            log.sync().unwrap();
            for e in &es[2..] {
                log.append(std::slice::from_ref(e)).unwrap();
            }
        }
        let name = files(d.path()).pop().unwrap();
        let path = d.path().join(&name);
        let mut b = std::fs::read(&path).unwrap();
        let third = 2 * entry_len;
        b[third..third + entry_len].fill(0);
        b[third + 10..third + 15].copy_from_slice(damage);
        std::fs::write(&path, &b).unwrap();
        let (log, rec) = open(d.path(), LogOptions::default()).unwrap();
        assert_eq!(rec.last_index, 2);
        assert_eq!(all(&log), es[..2].to_vec());
        // With the old rule (a valid entry after the bad spot means
        // damage), the same files are refused.
        drop(log);
        if damage[0] != 0 {
            std::fs::write(&path, &b).unwrap();
            let strict = LogOptions {
                strict_tail_mutation: true,
                ..LogOptions::default()
            };
            assert!(open(d.path(), strict).is_err());
        }
    }
}

#[test]
fn damage_in_a_sealed_open_segment_is_judged_by_the_batches_in_later_segments() {
    // Segments of 3 entries (150 bytes). Batch A (entries 1-3) fills the
    // first segment and is synced; batch B (4-6) rolls into a second one
    // and is not synced, so both segments keep their open names.
    let entry_len = HEADER_LEN + 40;
    let es: Vec<Entry> = (1..=6).map(|i| ent(i, 1, &[i as u8; 40])).collect();
    let setup = || {
        let d = tempfile::tempdir().unwrap();
        let (log, _) = open(d.path(), opts(150, 1 << 20)).unwrap();
        log.append(&es[..3]).unwrap();
        log.sync().unwrap();
        for e in &es[3..] {
            log.append(std::slice::from_ref(e)).unwrap();
        }
        drop(log);
        let names = files(d.path());
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| n.contains("inprogress")), "{names:?}");
        (d, names)
    };

    // Entry 2 damaged: the first entry of the second segment starts batch
    // B, so entry 2 had been synced.
    let (d, names) = setup();
    flip(&d.path().join(&names[0]), entry_len + HEADER_LEN + 2);
    let e = open(d.path(), opts(150, 1 << 20)).unwrap_err().to_string();
    assert!(e.contains(&names[0]), "{e}");
    assert!(e.contains(&format!("byte offset {entry_len}")), "{e}");
    assert!(e.contains(&names[1]), "{e}");

    // Entry 5 damaged (in the second segment, batch B): cut there.
    let (d, names) = setup();
    flip(&d.path().join(&names[1]), entry_len + 3);
    let (log, rec) = open(d.path(), opts(150, 1 << 20)).unwrap();
    assert_eq!(rec.last_index, 4);
    assert!(rec.may_have_lost_acked);
    assert_eq!(all(&log), es[..4].to_vec());
    drop(log);

    // Entry 4 lost whole (batch B's first write did not reach the disk)
    // while entries 5 and 6 did: the second segment is dropped.
    let (d, names) = setup();
    let second = d.path().join(&names[1]);
    let mut b = std::fs::read(&second).unwrap();
    b[..entry_len].fill(0);
    std::fs::write(&second, &b).unwrap();
    let (log, rec) = open(d.path(), opts(150, 1 << 20)).unwrap();
    assert_eq!(rec.last_index, 3);
    assert_eq!(all(&log), es[..3].to_vec());
    drop(log);
    let names = files(d.path());
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn sealed_segments_not_yet_renamed_are_recovered_and_closed() {
    let d = tempfile::tempdir().unwrap();
    let es: Vec<Entry> = (1..=12).map(|i| ent(i, 1, &[i as u8; 40])).collect();
    {
        let (log, _) = open(d.path(), opts(150, 1 << 20)).unwrap();
        log.append(&es).unwrap();
        // No sync: every segment still has its open name.
    }
    let names = files(d.path());
    assert!(
        names.len() >= 3 && names.iter().all(|n| n.contains("inprogress")),
        "{names:?}"
    );
    {
        let (log, rec) = open(d.path(), opts(150, 1 << 20)).unwrap();
        assert_eq!(rec.last_index, 12);
        assert_eq!(all(&log), es);
    }
    let names = files(d.path());
    assert_eq!(
        names.iter().filter(|n| n.contains("inprogress")).count(),
        1,
        "{names:?}"
    );

    // A torn sealed segment: everything after it was never synced.
    let d = tempfile::tempdir().unwrap();
    {
        let (log, _) = open(d.path(), opts(150, 1 << 20)).unwrap();
        log.append(&es).unwrap();
    }
    let names = files(d.path());
    let second = d.path().join(&names[1]);
    let b = std::fs::read(&second).unwrap();
    std::fs::write(&second, &b[..HEADER_LEN + 40 + 10]).unwrap();
    let (log, rec) = open(d.path(), opts(150, 1 << 20)).unwrap();
    let first_seg = (b.len() / (HEADER_LEN + 40)) as u64; // entries per segment
    assert_eq!(rec.last_index, first_seg + 1);
    assert_eq!(all(&log), es[..first_seg as usize + 1].to_vec());
    assert_eq!(files(d.path()).len(), 2);
}

#[test]
fn gap_between_segments_is_an_error() {
    let (d, _) = closed_segments_log(12);
    let names = files(d.path());
    std::fs::remove_file(d.path().join(&names[1])).unwrap();
    let e = open(d.path(), opts(150, 1 << 20)).unwrap_err().to_string();
    assert!(e.contains("gap"), "{e}");
}

#[test]
fn a_closed_segment_shorter_than_its_name_is_an_error() {
    let (d, _) = closed_segments_log(12);
    let names = files(d.path());
    let path = d.path().join(&names[0]);
    let b = std::fs::read(&path).unwrap();
    std::fs::write(&path, &b[..b.len() - 10]).unwrap();
    let e = open(d.path(), opts(150, 1 << 20)).unwrap_err().to_string();
    assert!(e.contains(&names[0]), "{e}");
}

#[test]
fn truncations_and_reset_survive_reopen() {
    let (d, es) = closed_segments_log(20);
    let o = opts(150, 100);
    {
        let (log, _) = open(d.path(), o).unwrap();
        log.truncate_suffix(8).unwrap(); // into a closed segment
        assert_eq!(log.last_index(), 8);
        log.append(&[ent(9, 2, b"new9"), ent(10, 2, b"new10")])
            .unwrap();
        log.truncate_prefix(5).unwrap();
        log.sync().unwrap();
        assert_eq!(log.entries(4, 5, 0), Err(StorageError::Compacted));
    }
    {
        let (log, rec) = open(d.path(), o).unwrap();
        assert_eq!((rec.first_index, rec.last_index), (5, 10));
        assert_eq!(all(&log)[..4].to_vec(), es[4..8].to_vec());
        assert_eq!(log.entry(10).unwrap().data, Bytes::from_static(b"new10"));
        log.reset(100).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (100, 99));
        assert!(files(d.path()).is_empty());
    }
    let (log, rec) = open(d.path(), o).unwrap();
    assert_eq!((rec.first_index, rec.last_index), (100, 99));
    log.append(&[ent(100, 3, b"x")]).unwrap();
    assert_eq!(log.term(100).unwrap(), 3);
    assert_eq!(log.term(99), Err(StorageError::Compacted));
}

#[test]
fn append_refuses_holes_and_falling_terms() {
    let d = tempfile::tempdir().unwrap();
    let (log, _) = open(d.path(), LogOptions::default()).unwrap();
    assert!(log.append(&[ent(2, 1, b"")]).is_err());
    log.append(&[ent(1, 2, b"")]).unwrap();
    assert!(log.append(&[ent(2, 1, b"")]).is_err());
    assert!(log.append(&[ent(2, 2, b""), ent(4, 2, b"")]).is_err());
    // Those are caller errors, not sticky.
    log.append(&[ent(2, 2, b"")]).unwrap();
    assert!(log.failure().is_none());
}

/// A log with entry 1 "a" on a fault-injecting file system (and the
/// directory it lives in).
fn log_with_entry_on_fault_fs() -> (tempfile::TempDir, FaultFs, SegmentLog) {
    let d = tempfile::tempdir().unwrap();
    let ffs = FaultFs::new(RealFs::shared());
    let (log, _) = SegmentLog::open(ffs.shared(), d.path(), LogOptions::default()).unwrap();
    log.append(&[ent(1, 1, b"a")]).unwrap();
    (d, ffs, log)
}

#[test]
fn fsync_error_is_sticky() {
    let (_d, ffs, log) = log_with_entry_on_fault_fs();
    log.sync().unwrap();
    ffs.faults.fail_sync.store(true, Ordering::SeqCst);
    log.append(&[ent(2, 1, b"b")]).unwrap();
    let e = log.sync().unwrap_err();
    assert!(e.to_string().contains("injected"), "{e}");
    // The disk recovers; the log does not pretend it did.
    ffs.faults.fail_sync.store(false, Ordering::SeqCst);
    assert_eq!(log.sync().unwrap_err(), e);
    assert_eq!(log.append(&[ent(3, 1, b"c")]).unwrap_err(), e);
    assert_eq!(log.truncate_prefix(2).unwrap_err(), e);
    assert_eq!(log.reset(10).unwrap_err(), e);
    // Reads still work.
    assert_eq!(log.entry(1).unwrap().data, Bytes::from_static(b"a"));
}

#[test]
fn write_error_is_sticky() {
    let (_d, ffs, log) = log_with_entry_on_fault_fs();
    ffs.faults.fail_write.store(true, Ordering::SeqCst);
    let e = log.append(&[ent(2, 1, b"b")]).unwrap_err();
    assert_eq!(log.last_index(), 1);
    ffs.faults.fail_write.store(false, Ordering::SeqCst);
    assert_eq!(log.sync().unwrap_err(), e);
    assert_eq!(log.append(&[ent(2, 1, b"b")]).unwrap_err(), e);
}

#[test]
fn crash_during_truncate_prefix_and_reset_keeps_a_consistent_log() {
    // Crash after each possible number of mutating operations.
    for op in ["prefix", "reset"] {
        for k in 0..40 {
            let (d, es) = closed_segments_log(20);
            let ffs = FaultFs::new(RealFs::shared());
            let (log, _) = SegmentLog::open(ffs.shared(), d.path(), opts(150, 1 << 20)).unwrap();
            ffs.faults.crash_after.store(k, Ordering::SeqCst);
            let r = match op {
                "prefix" => log.truncate_prefix(10),
                _ => log.reset(31),
            };
            drop(log);
            let (log, rec) = open(d.path(), opts(150, 1 << 20))
                .unwrap_or_else(|e| panic!("{op} crash after {k}: {e}"));
            match op {
                "prefix" => {
                    assert_eq!(rec.last_index, 20);
                    assert!(rec.first_index == 1 || rec.first_index == 10, "{k}");
                    if r.is_ok() {
                        assert_eq!(rec.first_index, 10);
                    }
                    let f = rec.first_index as usize;
                    assert_eq!(all(&log), es[f - 1..].to_vec());
                }
                _ => {
                    // Old log, a prefix of the old log, or the new empty log.
                    if r.is_ok() {
                        assert_eq!((rec.first_index, rec.last_index), (31, 30));
                    }
                    let got = all(&log);
                    assert_eq!(got, es[..got.len()].to_vec(), "{k}");
                    // After aligning with the snapshot at 30 the log is the new one.
                    log.align_with_snapshot(30).unwrap();
                    assert_eq!((log.first_index(), log.last_index()), (31, 30));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Model-based: random operations on SegmentLog (and MemLog) against MemStorage.

struct Model {
    mem: MemStorage,
}

impl Model {
    fn truncate_suffix(&mut self, last_kept: u64) {
        let first = self.mem.first_index();
        let keep = (last_kept + 1).saturating_sub(first) as usize;
        let kept: Vec<Entry> = self.mem.all()[..keep.min(self.mem.all().len())].to_vec();
        let mut m = MemStorage::new();
        m.reset(first - 1);
        m.append(&kept).unwrap();
        self.mem = m;
    }
}

fn check_same(log: &dyn DurableLog, model: &MemStorage, rng: &mut Rng, ctx: &str) {
    assert_eq!(log.first_index(), model.first_index(), "{ctx}");
    assert_eq!(log.last_index(), model.last_index(), "{ctx}");
    let (f, l) = (model.first_index(), model.last_index());
    for i in f.saturating_sub(1).max(1)..=l + 1 {
        assert_eq!(log.term(i), model.term(i), "{ctx}: term({i})");
    }
    for _ in 0..4 {
        if l < f {
            break;
        }
        let lo = rng.range(f, l + 1);
        let hi = rng.range(lo + 1, l + 2);
        let max = rng.range(0, 400);
        assert_eq!(
            log.entries(lo, hi, max),
            model.entries(lo, hi, max),
            "{ctx}: entries({lo}, {hi}, {max})"
        );
    }
}

fn random_ops(
    seed: u64,
    steps: usize,
    mut log: Box<dyn DurableLog>,
    reopen: &dyn Fn() -> Box<dyn DurableLog>,
) {
    let mut rng = Rng::new(seed);
    let mut model = Model {
        mem: MemStorage::new(),
    };
    let mut term = 1;
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        let (f, l) = (model.mem.first_index(), model.mem.last_index());
        match rng.range(0, 100) {
            0..=59 => {
                let head = if rng.chance(1, 4) && l >= f {
                    rng.range(f, l + 2)
                } else {
                    l + 1
                };
                if rng.chance(1, 5) {
                    term += 1;
                }
                let n = rng.range(1, 9);
                let es: Vec<Entry> = (head..head + n)
                    .map(|i| {
                        if rng.chance(1, 10) {
                            conf(i, term)
                        } else {
                            let len = rng.range(0, 90) as usize;
                            ent(i, term, &vec![(i ^ seed) as u8; len])
                        }
                    })
                    .collect();
                model.mem.append(&es).unwrap();
                log.append(&es).unwrap();
            }
            60..=69 => {
                let k = rng.range(f.saturating_sub(1), l + 1);
                model.truncate_suffix(k);
                log.truncate_suffix(k).unwrap();
            }
            70..=79 => {
                let k = rng.range(f, l + 3);
                if k > l + 1 {
                    model.mem.reset(k - 1);
                } else {
                    model.mem.compact(k);
                }
                log.truncate_prefix(k).unwrap();
            }
            80..=82 => {
                let k = l + rng.range(0, 5);
                model.mem.reset(k);
                log.reset(k + 1).unwrap();
            }
            83..=89 => {
                log.sync().unwrap();
            }
            _ => {
                // Without a sync, sealed segments are still log_inprogress_*.
                if rng.chance(1, 2) {
                    log.sync().unwrap();
                }
                drop(log);
                log = reopen();
            }
        }
        check_same(&*log, &model.mem, &mut rng, &ctx);
    }
}

#[test]
fn random_operations_match_the_model() {
    for seed in 0..40 {
        let d = tempfile::tempdir().unwrap();
        let dir: PathBuf = d.path().to_path_buf();
        let segment_size = 64 + seed * 37 % 400;
        let mut o = opts(segment_size, seed * 53 % 300);
        // fdatasync costs time and proves nothing here (no crash): sync a few.
        o.sync = seed % 8 == 0;
        let reopen = || -> Box<dyn DurableLog> {
            let (log, rec) = open(&dir, o).unwrap();
            // Recovered configurations are exactly the log's configuration entries.
            let confs: Vec<Entry> = all(&log)
                .into_iter()
                .filter(|e| e.entry_type == EntryType::Configuration as i32)
                .collect();
            assert_eq!(rec.configurations, confs);
            Box::new(log)
        };
        random_ops(seed, 300, reopen(), &reopen);
    }
}

#[test]
fn mem_log_matches_the_model() {
    for seed in 100..110 {
        // "Reopen" keeps the same in-memory log (no restart for memory://).
        let shared = Arc::new(MemLog::new());
        struct Shared(Arc<MemLog>);
        impl LogStorage for Shared {
            fn first_index(&self) -> u64 {
                self.0.first_index()
            }
            fn last_index(&self) -> u64 {
                self.0.last_index()
            }
            fn term(&self, i: u64) -> Result<u64, StorageError> {
                self.0.term(i)
            }
            fn entries(&self, lo: u64, hi: u64, m: u64) -> Result<Vec<Entry>, StorageError> {
                self.0.entries(lo, hi, m)
            }
        }
        impl DurableLog for Shared {
            fn append(&self, e: &[Entry]) -> Result<(), StorageError> {
                self.0.append(e)
            }
            fn sync(&self) -> Result<(), StorageError> {
                Ok(())
            }
            fn truncate_suffix(&self, k: u64) -> Result<(), StorageError> {
                self.0.truncate_suffix(k)
            }
            fn truncate_prefix(&self, k: u64) -> Result<(), StorageError> {
                self.0.truncate_prefix(k)
            }
            fn reset(&self, k: u64) -> Result<(), StorageError> {
                self.0.reset(k)
            }
        }
        let s2 = shared.clone();
        random_ops(seed, 300, Box::new(Shared(shared)), &move || {
            Box::new(Shared(s2.clone()))
        });
    }
}

#[test]
fn log_backend_opens_from_uris() {
    let d = tempfile::tempdir().unwrap();
    let uri = format!("local://{}", d.path().join("log").display());
    let (b, rec) = LogBackend::open(RealFs::shared(), &uri, LogOptions::default()).unwrap();
    assert_eq!(rec.last_index, 0);
    b.append(&[ent(1, 1, b"x")]).unwrap();
    b.sync().unwrap();
    assert!(matches!(b, LogBackend::Segment(_)));
    let (m, _) = LogBackend::open(RealFs::shared(), "memory://", LogOptions::default()).unwrap();
    assert!(matches!(m, LogBackend::Memory(_)));
    m.append(&[ent(1, 1, b"x")]).unwrap();
    assert_eq!(m.entry(1).unwrap().data, Bytes::from_static(b"x"));
    assert!(LogBackend::open(RealFs::shared(), "file:///x", LogOptions::default()).is_err());
    let fs: Arc<dyn FileSystem> = RealFs::shared();
    assert!(LogBackend::open(fs, "", LogOptions::default()).is_err());
}

#[test]
fn concurrent_readers_while_appending() {
    let d = tempfile::tempdir().unwrap();
    let (log, _) = open(d.path(), opts(4096, 2048)).unwrap();
    let log = Arc::new(log);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let log = log.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(t);
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let l = log.last_index();
                    if l == 0 {
                        continue;
                    }
                    let lo = rng.range(1, l + 1);
                    let v = log.entries(lo, l + 1, 10_000).unwrap();
                    for (k, e) in v.iter().enumerate() {
                        assert_eq!(e.index, lo + k as u64);
                        assert_eq!(e.data.len(), 100);
                        assert_eq!(e.data[0], e.index as u8);
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 0..200u64 {
        let es: Vec<Entry> = (i * 10 + 1..=i * 10 + 10)
            .map(|j| ent(j, 1, &[j as u8; 100]))
            .collect();
        log.append(&es).unwrap();
        log.sync().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

#[test]
fn crash_at_any_point_of_appends_and_syncs_keeps_every_acknowledged_entry() {
    let es: Vec<Entry> = (1..=60)
        .map(|i| ent(i, 1 + i / 20, &[i as u8; 30]))
        .collect();
    for k in 0..80 {
        let d = tempfile::tempdir().unwrap();
        let ffs = FaultFs::new(RealFs::shared());
        let (log, _) = SegmentLog::open(ffs.shared(), d.path(), opts(200, 1 << 20)).unwrap();
        ffs.faults.crash_after.store(k, Ordering::SeqCst);
        let mut acked = 0;
        for chunk in es.chunks(7) {
            if log.append(chunk).is_err() || log.sync().is_err() {
                break;
            }
            acked = chunk.last().unwrap().index;
        }
        drop(log);
        let (log, rec) =
            open(d.path(), opts(200, 1 << 20)).unwrap_or_else(|e| panic!("crash after {k}: {e}"));
        assert!(
            rec.last_index >= acked,
            "crash after {k}: lost acknowledged entries"
        );
        assert_eq!(
            all(&log),
            es[..rec.last_index as usize].to_vec(),
            "crash after {k}"
        );
    }
}

#[test]
fn preallocated_zeros_stay_in_the_open_segment_and_recovery_cuts_them() {
    let d = tempfile::tempdir().unwrap();
    let o = LogOptions {
        segment_size: 4096,
        sync: true,
        cache_bytes: 1 << 20,
        preallocate_bytes: 1024,
        ..LogOptions::default()
    };
    // 100-byte entries, a few per append: segments roll every ~33 entries.
    let es: Vec<Entry> = (1..=100).map(|i| ent(i, 1, &[i as u8; 100])).collect();
    {
        let (log, _) = open(d.path(), o).unwrap();
        for chunk in es.chunks(3) {
            log.append(chunk).unwrap();
            log.sync().unwrap();
            log.prepare_ahead().unwrap();
        }
    }
    let names = files(d.path());
    assert!(names.len() >= 3, "{names:?}");
    for name in &names {
        let bytes = std::fs::read(d.path().join(name)).unwrap();
        let entries = bytes.len() / (HEADER_LEN + 100);
        if name.starts_with("log_inprogress_") {
            // Entries, then zeros up to the preallocated length.
            let used = bytes
                .chunks(HEADER_LEN + 100)
                .take_while(|c| c.iter().any(|&b| b != 0))
                .count()
                * (HEADER_LEN + 100);
            assert!(bytes.len() > used, "{name}: no preallocated space");
            assert!(bytes[used..].iter().all(|&b| b == 0), "{name}");
        } else {
            // A closed segment ends with its last entry.
            assert_eq!(bytes.len(), entries * (HEADER_LEN + 100), "{name}");
        }
    }
    let (log, rec) = open(d.path(), o).unwrap();
    assert_eq!((rec.first_index, rec.last_index), (1, 100));
    assert_eq!(all(&log), es);
    log.append(&[ent(101, 2, b"after")]).unwrap();
    log.sync().unwrap();
    drop(log);
    let (log, rec) = open(d.path(), o).unwrap();
    assert_eq!(rec.last_index, 101);
    assert_eq!(log.entry(101).unwrap().data, Bytes::from_static(b"after"));
}

fn prealloc_opts() -> LogOptions {
    LogOptions {
        segment_size: 4096,
        sync: true,
        cache_bytes: 1 << 20,
        preallocate_bytes: 1024,
        ..LogOptions::default()
    }
}

/// Bytes of the open segment `dir` holds, and where its entries end.
fn open_segment_len(fs: &dyn FileSystem, dir: &Path) -> u64 {
    let mut names = fs.list_dir(dir).unwrap();
    names.sort();
    let name = names
        .iter()
        .find(|n| n.starts_with("log_inprogress_"))
        .expect("an open segment");
    fs.open(&dir.join(name), OpenMode::Read)
        .unwrap()
        .size()
        .unwrap()
}

#[test]
fn zeros_go_in_after_the_sync_and_are_durable_before_entries_overwrite_them() {
    let o = prealloc_opts();
    let one = HEADER_LEN as u64 + 100;
    let dir = Path::new("/log");
    for seed in 0..16 {
        let fs = SimFs::new();
        let (log, _) = SegmentLog::open(fs.shared(), dir, o).unwrap();
        log.append(&[ent(1, 1, &[1; 100])]).unwrap();
        log.sync().unwrap();
        // The commit path wrote the entry alone.
        assert_eq!(open_segment_len(&*fs.shared(), dir), one);
        log.prepare_ahead().unwrap();
        assert_eq!(open_segment_len(&*fs.shared(), dir), one + 1024);
        // The next entry overwrites zeros: the file keeps its length.
        log.append(&[ent(2, 1, &[2; 100])]).unwrap();
        assert_eq!(open_segment_len(&*fs.shared(), dir), one + 1024);
        drop(log);
        // A power loss before that entry's sync keeps the zeros (synced
        // already) and the first entry; the second may be lost.
        fs.crash(seed);
        assert_eq!(
            open_segment_len(&*fs.shared(), dir),
            one + 1024,
            "seed {seed}"
        );
        let (log, rec) = SegmentLog::open(fs.shared(), dir, o).unwrap();
        assert_eq!(rec.first_index, 1);
        assert!(rec.last_index >= 1, "seed {seed}");
        assert_eq!(log.entry(1).unwrap().data, Bytes::from(vec![1u8; 100]));
    }
}

#[test]
fn a_large_batch_gets_no_zeros_and_neither_does_a_log_without_sync() {
    let d = tempfile::tempdir().unwrap();
    let o = LogOptions {
        segment_size: 1 << 20,
        ..prealloc_opts()
    };
    let (log, _) = open(d.path(), o).unwrap();
    let big: Vec<Entry> = (1..=5).map(|i| ent(i, 1, &[7; 4000])).collect();
    log.append(&big).unwrap();
    log.sync().unwrap();
    log.prepare_ahead().unwrap();
    let used: u64 = 5 * (HEADER_LEN as u64 + 4000);
    let fs = RealFs::shared();
    assert_eq!(open_segment_len(&*fs, d.path()), used);
    let d2 = tempfile::tempdir().unwrap();
    let o = LogOptions {
        sync: false,
        ..prealloc_opts()
    };
    let (log, _) = open(d2.path(), o).unwrap();
    log.append(&[ent(1, 1, b"x")]).unwrap();
    log.sync().unwrap();
    log.prepare_ahead().unwrap();
    assert_eq!(open_segment_len(&*fs, d2.path()), HEADER_LEN as u64 + 1);
}

#[test]
fn a_clean_close_cuts_the_zeros_and_the_log_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let o = prealloc_opts();
    let fs = RealFs::shared();
    let (log, _) = open(d.path(), o).unwrap();
    let one = HEADER_LEN as u64 + 100;
    for i in 1..=3 {
        log.append(&[ent(i, 1, &[i as u8; 100])]).unwrap();
        log.sync().unwrap();
        log.prepare_ahead().unwrap();
    }
    assert!(open_segment_len(&*fs, d.path()) > 3 * one);
    log.close().unwrap();
    // braft's layout: the open segment ends with its last entry.
    assert_eq!(open_segment_len(&*fs, d.path()), 3 * one);
    log.close().unwrap();
    // Still usable: later syncs preallocate again.
    log.append(&[ent(4, 1, &[4; 100])]).unwrap();
    log.sync().unwrap();
    log.prepare_ahead().unwrap();
    assert!(open_segment_len(&*fs, d.path()) > 4 * one);
    log.close().unwrap();
    drop(log);
    assert_eq!(open_segment_len(&*fs, d.path()), 4 * one);
    let (log, rec) = open(d.path(), o).unwrap();
    assert_eq!(rec.last_index, 4);
    assert_eq!(log.entry(4).unwrap().data, Bytes::from(vec![4u8; 100]));
}
