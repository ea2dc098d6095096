//! Crash points on a simulated disk (`storage::SimFs`): small workloads
//! (log append + truncate, one sync per append or several appends per sync
//! with truncations and a reset between, in braft's layout and with
//! preallocated segment space: zeros written and synced after a sync,
//! overwritten by the next batch, cut at a roll and at a clean close;
//! meta updates; snapshot publish)
//! are run up to every mutation in turn; the disk then loses what was not
//! synced (keeping a random subset, maybe torn) and recovery must:
//! - open without a false corruption error (a crash inside an unsynced
//!   batch never stops a node from starting),
//! - keep every entry, term/vote and snapshot that was acknowledged,
//! - never bring back an entry whose truncation was acknowledged, and
//! - show the old or the new meta / snapshot, never a mix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rraft::proto::{Configuration, Entry, EntryType, HardState, SnapshotMeta};
use rraft::storage::{
    FileSystem, LogOptions, MetaStore, OpenMode, SegmentLog, SimFs, SnapshotStore,
};

/// Random crashes tried at each crash point.
const SEEDS_PER_POINT: u64 = 4;
/// Random crashes per point for the workloads with several appends per
/// sync (which writes survive matters more there).
const BATCHED_SEEDS_PER_POINT: u64 = 16;

fn node_dir(fs: &SimFs) -> PathBuf {
    // The data directory exists and is durable before the node starts.
    fs.create_dir_all(Path::new("/node")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    PathBuf::from("/node")
}

/// Runs `workload` on a fresh disk up to crash point `point` (None: to the
/// end), then crashes with `seed`. Returns the disk, the workload's record
/// and the mutations it made.
fn crash_at<R: Default>(
    point: Option<u64>,
    seed: u64,
    workload: impl Fn(&SimFs, &Path, &mut R),
) -> (SimFs, R, u64) {
    let fs = SimFs::new();
    let dir = node_dir(&fs);
    let start = fs.mutations();
    if let Some(p) = point {
        fs.crash_after(start + p);
    }
    let mut record = R::default();
    workload(&fs, &dir, &mut record);
    let made = fs.mutations() - start;
    fs.crash(seed);
    (fs, record, made)
}

/// Every crash point of `workload`, each with several random crashes.
fn every_crash_point<R: Default>(
    workload: impl Fn(&SimFs, &Path, &mut R) + Copy,
    check: impl Fn(&SimFs, &Path, &R, u64, u64),
) -> u64 {
    every_crash_point_seeds(SEEDS_PER_POINT, workload, check)
}

fn every_crash_point_seeds<R: Default>(
    seeds: u64,
    workload: impl Fn(&SimFs, &Path, &mut R) + Copy,
    check: impl Fn(&SimFs, &Path, &R, u64, u64),
) -> u64 {
    let (_, _, total) = crash_at::<R>(None, 0, workload);
    assert!(total > 10, "the workload makes {total} mutations");
    for point in 0..=total {
        for seed in 0..seeds {
            let (fs, record, _) = crash_at(Some(point), seed, workload);
            check(&fs, Path::new("/node"), &record, point, seed);
        }
    }
    total
}

// ---- log: append, sync, truncate ------------------------------------------

#[derive(Default)]
struct LogRecord {
    /// Entries acknowledged (synced, or kept by an acknowledged truncation).
    acked: BTreeMap<u64, Entry>,
    /// Every entry that may legitimately be found at an index: acknowledged
    /// ones, and ones written but not yet acknowledged. An acknowledged
    /// truncation removes the entries it dropped.
    allowed: BTreeMap<u64, Vec<Entry>>,
    /// A truncation in progress when the crash came: entries after this
    /// index may or may not have been dropped (or replaced by allowed ones).
    truncating: Option<u64>,
}

impl LogRecord {
    /// Entries `batch` were written (not yet acknowledged).
    fn written(&mut self, batch: &[Entry]) {
        for e in batch {
            self.allowed.entry(e.index).or_default().push(e.clone());
        }
    }

    /// Everything written so far is synced.
    fn synced(&mut self) {
        for (i, options) in &self.allowed {
            self.acked.insert(*i, options.last().unwrap().clone());
        }
    }

    /// An acknowledged truncation: nothing after `last_kept` remains.
    fn truncated(&mut self, last_kept: u64) {
        self.truncating = None;
        self.acked.retain(|i, _| *i <= last_kept);
        self.allowed.retain(|i, _| *i <= last_kept);
    }
}

fn entry(index: u64, term: u64) -> Entry {
    let len = 20 + (index * 37 % 300) as usize;
    Entry {
        term,
        index,
        entry_type: EntryType::Data as i32,
        data: Bytes::from(vec![(index ^ term) as u8; len]),
    }
}

/// braft's layout (`LogOptions::default()`): the open segment ends with
/// its last entry.
fn log_opts() -> LogOptions {
    // Small segments so the workload rolls, closes and deletes segments.
    LogOptions {
        segment_size: 1024,
        sync: true,
        cache_bytes: 2048,
        ..LogOptions::default()
    }
}

/// A node's `local://` log: zeros kept ahead of the open segment's last entry.
fn prealloc_log_opts() -> LogOptions {
    LogOptions {
        // Less than a segment: crashes hit both top-ups and zero tails.
        preallocate_bytes: 512,
        ..log_opts()
    }
}

fn log_workload(fs: &SimFs, dir: &Path, r: &mut LogRecord) {
    log_workload_with(fs, dir, r, log_opts())
}

fn log_workload_with(fs: &SimFs, dir: &Path, r: &mut LogRecord, opts: LogOptions) {
    let Ok((log, _)) = SegmentLog::open(fs.shared(), dir.join("log"), opts) else {
        return;
    };
    let mut next = 1u64;
    let mut term = 1u64;
    for round in 0..8u64 {
        let batch: Vec<Entry> = (0..5).map(|i| entry(next + i, term)).collect();
        for e in &batch {
            r.allowed.entry(e.index).or_default().push(e.clone());
        }
        if log.append(&batch).is_err() || log.sync().is_err() {
            return;
        }
        for e in batch {
            r.acked.insert(e.index, e);
        }
        // The writer thread's step after reporting a batch (zeros written
        // and synced ahead of the last entry, with preallocation on).
        if log.prepare_ahead().is_err() {
            return;
        }
        next += 5;
        if round == 3 {
            // A follower's conflict: drop the last 3 and continue in a new term.
            let keep = next - 4;
            r.truncating = Some(keep);
            if log.truncate_suffix(keep).is_err() {
                return;
            }
            r.truncating = None;
            r.acked.retain(|i, _| *i <= keep);
            r.allowed.retain(|i, _| *i <= keep);
            next = keep + 1;
            term += 1;
        }
        if round == 5 {
            let first = log.first_index() + 7;
            if log.truncate_prefix(first).is_err() {
                return;
            }
            r.acked.retain(|i, _| *i >= first);
        }
    }
    // A clean shutdown: the zeros after the last entry are cut.
    let _ = log.close();
}

fn check_log(fs: &SimFs, dir: &Path, r: &LogRecord, point: u64, seed: u64) {
    check_log_with(fs, dir, r, point, seed, log_opts())
}

fn check_log_with(fs: &SimFs, dir: &Path, r: &LogRecord, point: u64, seed: u64, opts: LogOptions) {
    let at = format!(
        "crash point {point}, seed {seed}; journal:\n{}\n",
        fs.journal().join("\n")
    );
    let (log, _) = match SegmentLog::open(fs.shared(), dir.join("log"), opts) {
        Ok(opened) => opened,
        Err(e) => panic!("{at}: recovery refused a crashed log: {e}"),
    };
    let listing = || {
        let mut names = fs.list_dir(&dir.join("log")).unwrap_or_default();
        names.sort();
        format!(
            "log holds {}..={} in {names:?}",
            log.first_index(),
            log.last_index()
        )
    };
    for (index, want) in &r.acked {
        if r.truncating.is_some_and(|keep| *index > keep) {
            continue; // dropped by the truncation the crash interrupted
        }
        let got = log.entry(*index).unwrap_or_else(|e| {
            panic!("{at}: acknowledged entry {index} lost: {e}; {}", listing())
        });
        assert_eq!(&got, want, "{at}: acknowledged entry {index} changed");
    }
    for index in log.first_index()..=log.last_index() {
        let got = log
            .entry(index)
            .unwrap_or_else(|e| panic!("{at}: entry {index} unreadable: {e}"));
        let ok = r
            .allowed
            .get(&index)
            .is_some_and(|options| options.contains(&got));
        assert!(
            ok,
            "{at}: entry {index} (term {}) was truncated or never written",
            got.term
        );
    }
}

#[test]
fn log_survives_a_crash_at_every_point() {
    let points = every_crash_point(log_workload, check_log);
    println!("log: {points} crash points x {SEEDS_PER_POINT} crashes");
}

#[test]
fn preallocated_log_survives_a_crash_at_every_point() {
    let opts = prealloc_log_opts();
    let points = every_crash_point(
        move |fs: &SimFs, dir: &Path, r: &mut LogRecord| log_workload_with(fs, dir, r, opts),
        move |fs: &SimFs, dir: &Path, r: &LogRecord, point, seed| {
            check_log_with(fs, dir, r, point, seed, opts)
        },
    );
    println!("preallocated log: {points} crash points x {SEEDS_PER_POINT} crashes");
}

/// Several appends per sync, each a separate write (a crash can keep a
/// later one and lose an earlier one), batches that span segment rolls, an
/// append that overwrites part of its own unsynced batch, a truncation into
/// closed segments, a compaction and a reset.
fn batched_log_workload(fs: &SimFs, dir: &Path, r: &mut LogRecord) {
    batched_log_workload_with(fs, dir, r, log_opts())
}

fn batched_log_workload_with(fs: &SimFs, dir: &Path, r: &mut LogRecord, opts: LogOptions) {
    let Ok((log, _)) = SegmentLog::open(fs.shared(), dir.join("log"), opts) else {
        return;
    };
    let mut next = 1u64;
    let mut term = 1u64;
    for round in 0..9u64 {
        for k in 0..3u64 {
            let n = 1 + (round + k) % 3;
            let batch: Vec<Entry> = (0..n).map(|i| entry(next + i, term)).collect();
            r.written(&batch);
            if log.append(&batch).is_err() {
                return;
            }
            next += n;
        }
        if round == 2 {
            // Replaces the last two entries of the unsynced batch.
            term += 1;
            let from = next - 2;
            let batch: Vec<Entry> = (0..3).map(|i| entry(from + i, term)).collect();
            r.truncating = Some(from - 1);
            r.written(&batch);
            if log.append(&batch).is_err() {
                return;
            }
            r.truncated(from - 1);
            r.written(&batch);
            next = from + 3;
        }
        if log.sync().is_err() {
            return;
        }
        r.synced();
        if log.prepare_ahead().is_err() {
            return;
        }
        match round {
            4 => {
                // Deep enough to cut into a closed segment.
                let keep = next - 10;
                r.truncating = Some(keep);
                if log.truncate_suffix(keep).is_err() {
                    return;
                }
                r.truncated(keep);
                next = keep + 1;
                term += 1;
            }
            6 => {
                let first = log.first_index() + 4;
                if log.truncate_prefix(first).is_err() {
                    return;
                }
                r.acked.retain(|i, _| *i >= first);
                r.allowed.retain(|i, _| *i >= first);
            }
            7 => {
                // A snapshot was installed.
                next += 5;
                r.truncating = Some(0);
                if log.reset(next).is_err() {
                    return;
                }
                r.truncated(0);
            }
            _ => {}
        }
    }
    let _ = log.close();
}

#[test]
fn log_with_several_appends_per_sync_survives_a_crash_at_every_point() {
    let points = every_crash_point_seeds(BATCHED_SEEDS_PER_POINT, batched_log_workload, check_log);
    println!("batched log: {points} crash points x {BATCHED_SEEDS_PER_POINT} crashes");
}

#[test]
fn preallocated_log_with_several_appends_per_sync_survives_a_crash_at_every_point() {
    let opts = prealloc_log_opts();
    let points = every_crash_point_seeds(
        BATCHED_SEEDS_PER_POINT,
        move |fs: &SimFs, dir: &Path, r: &mut LogRecord| {
            batched_log_workload_with(fs, dir, r, opts)
        },
        move |fs: &SimFs, dir: &Path, r: &LogRecord, point, seed| {
            check_log_with(fs, dir, r, point, seed, opts)
        },
    );
    println!("preallocated batched log: {points} crash points x {BATCHED_SEEDS_PER_POINT} crashes");
}

/// Mutation check: with the old rule (refuse whenever a valid entry follows
/// a damaged spot) some crash inside an unsynced batch must fail to open,
/// or the test above could not tell the rules apart.
#[test]
fn the_old_tail_rule_fails_the_several_appends_per_sync_crash_test() {
    let strict = LogOptions {
        strict_tail_mutation: true,
        ..log_opts()
    };
    let workload = move |fs: &SimFs, dir: &Path, r: &mut LogRecord| {
        batched_log_workload_with(fs, dir, r, strict)
    };
    let (_, _, total) = crash_at::<LogRecord>(None, 0, workload);
    let mut refused = 0;
    for point in 0..=total {
        for seed in 0..BATCHED_SEEDS_PER_POINT {
            let (fs, _, _) = crash_at::<LogRecord>(Some(point), seed, workload);
            if SegmentLog::open(fs.shared(), Path::new("/node/log"), strict).is_err() {
                refused += 1;
            }
        }
    }
    println!(
        "old rule: {refused} of {} crashes refused",
        (total + 1) * BATCHED_SEEDS_PER_POINT
    );
    assert!(
        refused > 0,
        "the old rule refused no crash of the batched workload"
    );
}

// ---- meta: term and vote ----------------------------------------------------

#[derive(Default)]
struct MetaRecord {
    acked: Option<HardState>,
    in_flight: Option<HardState>,
}

fn hard_state(i: u64) -> HardState {
    HardState {
        term: i,
        vote: format!("127.0.0.1:{}:0", 8000 + i).into(),
        commit: i * 10,
    }
}

fn meta_workload(fs: &SimFs, dir: &Path, r: &mut MetaRecord) {
    let Ok(meta) = MetaStore::open(fs.shared(), dir.join("meta")) else {
        return;
    };
    for i in 1..=6 {
        r.in_flight = Some(hard_state(i));
        if meta.save(&hard_state(i)).is_err() {
            return;
        }
        r.acked = r.in_flight.take();
    }
}

fn check_meta(fs: &SimFs, dir: &Path, r: &MetaRecord, point: u64, seed: u64) {
    let at = format!("crash point {point}, seed {seed}");
    let meta =
        MetaStore::open(fs.shared(), dir.join("meta")).unwrap_or_else(|e| panic!("{at}: {e}"));
    let got = meta
        .load()
        .unwrap_or_else(|e| panic!("{at}: meta unreadable after a crash: {e}"));
    let old = r.acked.clone().unwrap_or_default();
    assert!(
        got == old || Some(&got) == r.in_flight.as_ref(),
        "{at}: meta is {got:?}: neither the acknowledged {old:?} nor the one being saved {:?}",
        r.in_flight
    );
}

#[test]
fn meta_is_old_or_new_after_a_crash_at_every_point() {
    let points = every_crash_point(meta_workload, check_meta);
    println!("meta: {points} crash points x {SEEDS_PER_POINT} crashes");
}

// ---- snapshots: write, publish ----------------------------------------------

#[derive(Default)]
struct SnapshotRecord {
    acked: Option<u64>,
    in_flight: Option<u64>,
}

fn snapshot_bytes(i: u64) -> Vec<u8> {
    format!("state of snapshot {i};")
        .repeat(300 + i as usize * 50)
        .into_bytes()
}

fn snapshot_workload(fs: &SimFs, dir: &Path, r: &mut SnapshotRecord) {
    let Ok(store) = SnapshotStore::open(fs.shared(), dir.join("snapshot")) else {
        return;
    };
    for i in 1..=4u64 {
        r.in_flight = Some(i);
        let meta = SnapshotMeta {
            last_index: i * 10,
            last_term: i,
            configuration: Some(Configuration {
                voters: vec!["a".into(), "b".into()],
                ..Default::default()
            }),
        };
        let Ok(mut writer) = store.create(meta) else {
            return;
        };
        let written = (|| -> std::io::Result<()> {
            let f = fs.open(&writer.path().join("data"), OpenMode::Create)?;
            f.write_at(&snapshot_bytes(i), 0)
        })();
        if written.is_err() || writer.add_file("data").is_err() || writer.finish().is_err() {
            return;
        }
        r.acked = r.in_flight.take();
    }
}

fn check_snapshot(fs: &SimFs, dir: &Path, r: &SnapshotRecord, point: u64, seed: u64) {
    let at = format!("crash point {point}, seed {seed}");
    let store = SnapshotStore::open(fs.shared(), dir.join("snapshot"))
        .unwrap_or_else(|e| panic!("{at}: {e}"));
    let found = store.latest().map(|s| s.meta().last_term);
    assert!(
        found == r.acked || (found.is_some() && found == r.in_flight),
        "{at}: newest snapshot is {found:?}: neither the acknowledged {:?} nor the one being published {:?}",
        r.acked,
        r.in_flight
    );
    if let Some(reader) = store.latest() {
        let i = reader.meta().last_term;
        assert_eq!(
            reader.meta().last_index,
            i * 10,
            "{at}: meta of snapshot {i}"
        );
        let want = snapshot_bytes(i);
        let (got, eof) = reader
            .read_chunk("data", 0, want.len() + 1)
            .unwrap_or_else(|e| panic!("{at}: {e}"));
        assert!(eof && got == want, "{at}: snapshot {i} holds other data");
    }
}

#[test]
fn snapshot_publish_is_all_or_nothing_at_every_crash_point() {
    let points = every_crash_point(snapshot_workload, check_snapshot);
    println!("snapshot: {points} crash points x {SEEDS_PER_POINT} crashes");
}

/// The simulated disk is a FileSystem like the real one (checked at compile
/// time).
const _: fn(SimFs) -> Arc<dyn FileSystem> = |fs| fs.shared();
