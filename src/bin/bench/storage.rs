//! `rraft-bench storage`: the segmented log's append throughput with
//! fdatasync per batch, next to the raw sequential write + fdatasync rate of
//! the same disk measured in the same run, and the time to reopen a log of a
//! million entries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use rraft::proto::{Entry, EntryType};
use rraft::storage::{
    FileSystem, LogOptions, LogWriter, MetaStore, RealFs, SegmentLog, WriteRequest,
};

#[derive(Args, Debug)]
pub struct StorageArgs {
    /// Directory to write in (default: a fresh directory under /tmp, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Entry data sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "128,1024,16384")]
    sizes: Vec<usize>,
    /// Entries per fdatasync for the "small batch" runs (braft raft_leader_batch).
    #[arg(long, default_value_t = 256)]
    batch_entries: usize,
    /// Bytes per fdatasync for the "large batch" runs.
    #[arg(long, default_value_t = 1 << 20)]
    batch_bytes: usize,
    /// Stop each run after this many MiB of data ...
    #[arg(long, default_value_t = 256)]
    max_mib: u64,
    /// ... or after this many seconds, whichever comes first.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Entries in the reopen test (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    reopen_entries: u64,
    /// Data bytes per entry in the reopen test.
    #[arg(long, default_value_t = 128)]
    reopen_entry_size: usize,
    /// Segment size of the log in MiB (braft raft_max_segment_size: 8).
    #[arg(long, default_value_t = 8)]
    segment_mib: u64,
    /// Rounds of alternating raw / log runs per case (the ratio compares
    /// their sums, which cancels a virtual disk's drift).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Skip fdatasync (braft raft_sync=false): shows the CPU cost alone.
    #[arg(long)]
    no_sync: bool,
    /// Skip the runs through the group-commit writer thread.
    #[arg(long)]
    no_writer: bool,
    /// KiB of synced zeros kept ahead of the open segment's last entry
    /// (a node's `local://` log: 256; 0: off). The "log" runs top them up
    /// after each sync, outside the commit time, as the writer thread does.
    #[arg(long, default_value_t = 0)]
    prealloc_kib: u64,
    /// Only measure the disk's small-write commit floor: 200-byte writes,
    /// each followed by fdatasync, from 1, 2 and 3 writers at once (the
    /// replicas of a group on one machine sync concurrently), and exit.
    #[arg(long)]
    sync_floor: bool,
}

/// A scratch directory removed on drop (unless the user chose it).
struct Scratch {
    path: PathBuf,
    remove: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn scratch(dir: &Option<PathBuf>) -> std::io::Result<Scratch> {
    let (path, remove) = match dir {
        Some(d) => (
            d.join(format!("rraft-bench-storage-{}", std::process::id())),
            true,
        ),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            (
                std::env::temp_dir().join(format!(
                    "rraft-bench-storage-{}-{nanos}",
                    std::process::id()
                )),
                true,
            )
        }
    };
    std::fs::create_dir_all(&path)?;
    Ok(Scratch { path, remove })
}

fn mb(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Raw disk: appends of 1 MiB, each followed by fdatasync.
pub(crate) fn raw_rate(dir: &Path, max_bytes: u64, limit: Duration) -> std::io::Result<f64> {
    use std::io::Write;
    let path = dir.join("raw.bin");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let buf = vec![0x5Au8; 1 << 20];
    let start = Instant::now();
    let mut written = 0u64;
    while written < max_bytes && start.elapsed() < limit {
        f.write_all(&buf)?;
        f.sync_data()?;
        written += buf.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(written as f64 / secs)
}

struct RunResult {
    entries: u64,
    bytes: u64,
    secs: f64,
    syncs: u64,
    /// Time spent in append + sync (the "log" runs; 0 otherwise).
    commit_secs: f64,
}

fn entries_for(first: u64, n: usize, data: &Bytes) -> Vec<Entry> {
    (0..n as u64)
        .map(|i| Entry {
            term: 1,
            index: first + i,
            entry_type: EntryType::Data as i32,
            data: data.clone(),
        })
        .collect()
}

/// What one run writes: batches of `batch` entries of `size` bytes, until
/// `max_bytes` are written or `limit` has passed.
#[derive(Clone, Copy)]
struct Workload {
    size: usize,
    batch: usize,
    max_bytes: u64,
    limit: Duration,
}

impl Workload {
    /// Hands each batch to `write`; returns the entries and bytes written
    /// and when the run started.
    fn drive(
        &self,
        mut write: impl FnMut(Vec<Entry>) -> Result<(), String>,
    ) -> Result<(u64, u64, Instant), String> {
        let data = Bytes::from(vec![0xA5u8; self.size]);
        let (mut next, mut bytes) = (1u64, 0u64);
        let start = Instant::now();
        while bytes < self.max_bytes && start.elapsed() < self.limit {
            write(entries_for(next, self.batch, &data))?;
            next += self.batch as u64;
            bytes += (self.batch * self.size) as u64;
        }
        Ok((next - 1, bytes, start))
    }
}

/// Appends each batch and syncs it.
fn log_run(opts: LogOptions, dir: &Path, work: Workload) -> Result<RunResult, String> {
    let (log, _) = SegmentLog::open(RealFs::shared(), dir, opts).map_err(|e| e.to_string())?;
    let mut syncs = 0;
    let mut commit_secs = 0.0;
    let (entries, bytes, start) = work.drive(|es| {
        let t = Instant::now();
        log.append(&es).map_err(|e| e.to_string())?;
        log.sync().map_err(|e| e.to_string())?;
        commit_secs += t.elapsed().as_secs_f64();
        log.prepare_ahead().map_err(|e| e.to_string())?;
        syncs += 1;
        Ok(())
    })?;
    Ok(RunResult {
        entries,
        bytes,
        secs: start.elapsed().as_secs_f64(),
        syncs,
        commit_secs,
    })
}

/// The same through the writer thread: one request per batch, submitted as
/// fast as possible (the group commit merges them).
fn writer_run(opts: LogOptions, dir: &Path, work: Workload) -> Result<RunResult, String> {
    let (log, _) =
        SegmentLog::open(RealFs::shared(), dir.join("log"), opts).map_err(|e| e.to_string())?;
    let meta = MetaStore::open(RealFs::shared(), dir.join("meta")).map_err(|e| e.to_string())?;
    let mut w = LogWriter::spawn(Arc::new(log), Arc::new(meta));
    // Keep a bounded number of requests in flight, like a busy leader.
    let (tx, rx) = crossbeam_channel::bounded::<Result<(), rraft::core::StorageError>>(1 << 16);
    let wait_one = || -> Result<(), String> {
        rx.recv()
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    };
    let in_flight_max = 8;
    let mut in_flight = 0;
    let (entries, bytes, start) = work.drive(|es| {
        while in_flight >= in_flight_max {
            wait_one()?;
            in_flight -= 1;
        }
        let tx = tx.clone();
        w.submit(WriteRequest {
            reset_to: None,
            entries: es,
            hard_state: None,
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        });
        in_flight += 1;
        Ok(())
    })?;
    while in_flight > 0 {
        wait_one()?;
        in_flight -= 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let syncs = w.stats().batches.load(std::sync::atomic::Ordering::Relaxed);
    w.shutdown();
    Ok(RunResult {
        entries,
        bytes,
        secs,
        syncs,
        commit_secs: 0.0,
    })
}

fn print_row(label: &str, size: usize, batch: usize, r: &RunResult, raw: f64) {
    let eps = r.entries as f64 / r.secs;
    let bw = r.bytes as f64 / r.secs;
    println!(
        "{label:<8} {size:>7} B {batch:>7} {:>12.0} {:>9.1} {:>9.1} {:>7.0}% {:>8.2} {:>9.0}",
        eps,
        mb(bw),
        mb(raw),
        100.0 * bw / raw,
        r.secs * 1000.0 / r.syncs.max(1) as f64,
        r.commit_secs * 1e6 / r.syncs.max(1) as f64,
    );
}

/// Small-write commit latency: `writers` threads, each on its own file
/// (preallocated and synced first, so a write changes no metadata), each
/// looping a 200-byte write + fdatasync for `limit`. Returns every
/// commit's duration, sorted.
fn sync_latencies(dir: &Path, writers: usize, limit: Duration) -> std::io::Result<Vec<Duration>> {
    use std::os::unix::fs::FileExt;
    const FILE_BYTES: u64 = 1 << 20;
    const WRITE_BYTES: u64 = 200;
    let run = |w: usize| -> std::io::Result<Vec<Duration>> {
        let path = dir.join(format!("floor{w}.bin"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        f.write_all_at(&vec![0u8; FILE_BYTES as usize], 0)?;
        f.sync_all()?;
        let data = [0x5Au8; WRITE_BYTES as usize];
        let mut times = Vec::new();
        let start = Instant::now();
        let mut at = 0u64;
        while start.elapsed() < limit {
            let t = Instant::now();
            f.write_all_at(&data, at)?;
            f.sync_data()?;
            times.push(t.elapsed());
            at = (at + WRITE_BYTES) % (FILE_BYTES - WRITE_BYTES);
        }
        drop(f);
        std::fs::remove_file(&path)?;
        Ok(times)
    };
    let mut all = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers).map(|w| scope.spawn(move || run(w))).collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| std::io::Error::other("writer panicked"))??,
            );
        }
        Ok::<_, std::io::Error>(all)
    })?;
    all.sort();
    Ok(all)
}

/// Prints the commit floor table (see `--sync-floor`).
fn print_sync_floor(dir: &Path, limit: Duration) -> Result<(), String> {
    println!(
        "{:>8} {:>9} {:>9} {:>9} {:>9}",
        "writers", "commits", "p50 us", "p90 us", "mean us"
    );
    for writers in 1..=3 {
        let t = sync_latencies(dir, writers, limit).map_err(|e| format!("sync floor: {e}"))?;
        if t.is_empty() {
            continue;
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let mean = t.iter().map(|d| us(*d)).sum::<f64>() / t.len() as f64;
        println!(
            "{writers:>8} {:>9} {:>9.0} {:>9.0} {mean:>9.0}",
            t.len(),
            us(t[t.len() / 2]),
            us(t[t.len() * 9 / 10]),
        );
    }
    println!("(each writer: its own preallocated file, a 200-byte write then fdatasync, in a loop; a 3-replica group on one machine commits after two of its replicas' concurrent syncs)");
    Ok(())
}

pub fn run(args: StorageArgs) -> Result<(), String> {
    let s = scratch(&args.dir).map_err(|e| format!("scratch directory: {e}"))?;
    let limit = Duration::from_secs_f64(args.seconds);
    if args.sync_floor {
        println!("rraft-bench storage --sync-floor in {}", s.path.display());
        return print_sync_floor(&s.path, limit);
    }
    let max_bytes = args.max_mib << 20;
    let opts = LogOptions {
        segment_size: args.segment_mib << 20,
        sync: !args.no_sync,
        preallocate_bytes: args.prealloc_kib << 10,
        ..LogOptions::default()
    };
    println!("rraft-bench storage in {}", s.path.display());

    // Virtual disks warm up and drift: one discarded raw run, then every
    // case alternates raw and log runs and compares the sums.
    let raw_err = |e: std::io::Error| format!("raw disk: {e}");
    let raw0 = raw_rate(&s.path, max_bytes, limit).map_err(raw_err)?;
    println!(
        "raw disk (warm-up run): sequential 1 MiB write + fdatasync: {:.1} MiB/s",
        mb(raw0)
    );
    println!();
    println!(
        "{:<8} {:>9} {:>7} {:>12} {:>9} {:>9} {:>8} {:>8} {:>9}",
        "path",
        "entry",
        "batch",
        "entries/s",
        "MiB/s",
        "raw MiB/s",
        "of raw",
        "ms/sync",
        "us/commit"
    );
    let mut case = 0;
    for &size in &args.sizes {
        let big = (args.batch_bytes / size.max(1)).max(1);
        for batch in [args.batch_entries, big] {
            let paths: &[&str] = if args.no_writer {
                &["log"]
            } else {
                &["log", "writer"]
            };
            for &path in paths {
                let mut total = RunResult {
                    entries: 0,
                    bytes: 0,
                    secs: 0.0,
                    syncs: 0,
                    commit_secs: 0.0,
                };
                let (mut raw_bytes, mut raw_secs) = (0f64, 0f64);
                for _ in 0..args.rounds {
                    case += 1;
                    let t = Instant::now();
                    let rate = raw_rate(&s.path, max_bytes, limit).map_err(raw_err)?;
                    let secs = t.elapsed().as_secs_f64();
                    raw_bytes += rate * secs;
                    raw_secs += secs;
                    let d = s.path.join(format!("{path}{case}"));
                    let work = Workload {
                        size,
                        batch,
                        max_bytes,
                        limit,
                    };
                    let r = if path == "log" {
                        log_run(opts, &d, work)?
                    } else {
                        writer_run(opts, &d, work)?
                    };
                    let _ = std::fs::remove_dir_all(&d);
                    total.entries += r.entries;
                    total.bytes += r.bytes;
                    total.secs += r.secs;
                    total.syncs += r.syncs;
                    total.commit_secs += r.commit_secs;
                }
                print_row(path, size, batch, &total, raw_bytes / raw_secs);
            }
        }
    }
    println!("(MiB/s counts entry data only; raw = 1 MiB write + fdatasync runs alternating with the log runs of the row; 'writer' = through the group-commit thread, 8 requests in flight; ms/sync = time per fdatasync'd batch; us/commit = append + sync of a log-path batch, without the preallocation after it)");

    if args.reopen_entries > 0 {
        println!();
        let d = s.path.join("reopen");
        let n = args.reopen_entries;
        let build = Instant::now();
        {
            let opts = LogOptions {
                sync: false,
                ..LogOptions::default()
            };
            let (log, _) =
                SegmentLog::open(RealFs::shared(), &d, opts).map_err(|e| e.to_string())?;
            let data = Bytes::from(vec![0x3Cu8; args.reopen_entry_size]);
            let mut next = 1;
            while next <= n {
                let k = (n - next + 1).min(4096) as usize;
                log.append(&entries_for(next, k, &data))
                    .map_err(|e| e.to_string())?;
                next += k as u64;
            }
        }
        let build = build.elapsed();
        let fs: Arc<dyn FileSystem> = RealFs::shared();
        let mut best = Duration::MAX;
        let mut segs = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let (log, rec) = SegmentLog::open(fs.clone(), &d, LogOptions::default())
                .map_err(|e| e.to_string())?;
            best = best.min(t.elapsed());
            segs = log.segment_count();
            if rec.last_index != n {
                return Err(format!(
                    "reopen found {} entries, wrote {n}",
                    rec.last_index
                ));
            }
        }
        println!(
            "reopen: {n} entries of {} B ({segs} segments, written in {:.2} s): {:.0} ms (best of 3, page cache warm)",
            args.reopen_entry_size,
            build.as_secs_f64(),
            best.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
