//! The group-commit writer thread: order, batching, sticky failures.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rraft::core::StorageError;
use rraft::proto::{Entry, EntryType, HardState};
use rraft::storage::{
    FaultFs, LogOptions, LogWriter, MemLog, MetaStore, RealFs, SegmentLog, WriteRequest,
};

fn ent(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        entry_type: EntryType::Data as i32,
        data: Bytes::from(vec![index as u8; 64]),
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    log_fs: FaultFs,
    meta_fs: FaultFs,
    log: Arc<SegmentLog>,
    meta: Arc<MetaStore>,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let log_fs = FaultFs::new(RealFs::shared());
    let meta_fs = FaultFs::new(RealFs::shared());
    let (log, _) = SegmentLog::open(
        log_fs.shared(),
        dir.path().join("log"),
        LogOptions::default(),
    )
    .unwrap();
    let meta = MetaStore::open(meta_fs.shared(), dir.path().join("meta")).unwrap();
    // Count only the writer's syncs, not those of creating the stores.
    for fs in [&log_fs, &meta_fs] {
        fs.faults.file_syncs.store(0, Ordering::SeqCst);
        fs.faults.dir_syncs.store(0, Ordering::SeqCst);
    }
    Rig {
        _dir: dir,
        log_fs,
        meta_fs,
        log: Arc::new(log),
        meta: Arc::new(meta),
    }
}

type Outcomes = Arc<Mutex<Vec<(u64, Result<(), StorageError>)>>>;

#[test]
fn concurrent_submitters_callbacks_in_order_one_sync_per_batch() {
    let r = rig();
    // A slow disk, so requests pile up behind each fdatasync.
    r.log_fs.faults.sync_delay_us.store(2000, Ordering::SeqCst);
    let writer = Arc::new(Mutex::new(LogWriter::spawn(r.log.clone(), r.meta.clone())));
    let outcomes: Outcomes = Arc::default();
    // Submission order is decided under the lock (the runtime's core task
    // is one submitter; here eight threads race for the next index).
    let next = Arc::new(Mutex::new(1u64));
    let last_hs = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let writer = writer.clone();
            let outcomes = outcomes.clone();
            let next = next.clone();
            let last_hs = last_hs.clone();
            std::thread::spawn(move || {
                for k in 0..50u64 {
                    let mut n = next.lock().unwrap();
                    let idx = *n;
                    *n += 2;
                    let o = outcomes.clone();
                    if k % 3 == 0 {
                        *last_hs.lock().unwrap() = idx;
                    }
                    writer.lock().unwrap().submit(WriteRequest {
                        reset_to: None,
                        entries: vec![ent(idx, 1), ent(idx + 1, 1)],
                        hard_state: (k % 3 == 0).then(|| HardState {
                            term: 1,
                            vote: format!("t{t}").into(),
                            commit: idx,
                        }),
                        done: Box::new(move |res| o.lock().unwrap().push((idx, res))),
                    });
                    drop(n);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut w = Arc::try_unwrap(writer).unwrap().into_inner().unwrap();
    w.shutdown();
    let out = outcomes.lock().unwrap();
    assert_eq!(out.len(), 400);
    for (k, (idx, res)) in out.iter().enumerate() {
        assert_eq!(*idx, 1 + 2 * k as u64, "callbacks run in submission order");
        assert!(res.is_ok());
    }
    let batches = w.stats().batches.load(Ordering::SeqCst);
    let log_syncs = r.log_fs.faults.file_syncs.load(Ordering::SeqCst);
    let meta_syncs = r.meta_fs.faults.file_syncs.load(Ordering::SeqCst);
    assert_eq!(log_syncs, batches, "exactly one log fdatasync per batch");
    assert!(meta_syncs <= batches, "at most one meta save per batch");
    assert!(batches < 400, "requests were grouped ({batches} batches)");
    assert_eq!(r.log.last_index(), 800);
    // The last hard state of the last batch with one is what is stored.
    assert_eq!(r.meta.load().unwrap().commit, *last_hs.lock().unwrap());
}

#[test]
fn a_failed_fsync_fails_that_batch_and_every_later_request() {
    let r = rig();
    let mut w = LogWriter::spawn(r.log.clone(), r.meta.clone());
    let outcomes: Outcomes = Arc::default();
    let submit = |w: &LogWriter, idx: u64| {
        let o = outcomes.clone();
        w.submit(WriteRequest {
            reset_to: None,
            entries: vec![ent(idx, 1)],
            hard_state: None,
            done: Box::new(move |res| o.lock().unwrap().push((idx, res))),
        });
    };
    submit(&w, 1);
    submit(&w, 2);
    // Wait for the first two to be durable.
    while outcomes.lock().unwrap().len() < 2 {
        std::thread::yield_now();
    }
    r.log_fs.faults.fail_sync.store(true, Ordering::SeqCst);
    submit(&w, 3);
    while outcomes.lock().unwrap().len() < 3 {
        std::thread::yield_now();
    }
    // The disk "recovers": nothing is retried, nothing acknowledged.
    r.log_fs.faults.fail_sync.store(false, Ordering::SeqCst);
    for i in 4..20 {
        submit(&w, i);
    }
    let o = outcomes.clone();
    w.submit(WriteRequest {
        reset_to: None,
        entries: vec![],
        hard_state: Some(HardState::default()),
        done: Box::new(move |res| o.lock().unwrap().push((0, res))),
    });
    w.shutdown();
    let out = outcomes.lock().unwrap();
    assert_eq!(out.len(), 20);
    assert!(out[0].1.is_ok() && out[1].1.is_ok());
    let first_err = out[2].1.clone().unwrap_err();
    assert!(first_err.to_string().contains("injected"), "{first_err}");
    for (idx, res) in &out[2..] {
        assert_eq!(res.as_ref().unwrap_err(), &first_err, "request {idx}");
    }
    drop(out);
    // After shutdown, submit fails at once.
    let o = outcomes.clone();
    w.submit(WriteRequest {
        reset_to: None,
        entries: vec![],
        hard_state: None,
        done: Box::new(move |res| o.lock().unwrap().push((99, res))),
    });
    assert!(outcomes.lock().unwrap().last().unwrap().1.is_err());
}

#[test]
fn a_failed_meta_save_is_sticky_too() {
    let r = rig();
    let mut w = LogWriter::spawn(r.log.clone(), r.meta.clone());
    r.meta_fs.faults.fail_sync.store(true, Ordering::SeqCst);
    let outcomes: Outcomes = Arc::default();
    for i in 1..5 {
        let o = outcomes.clone();
        w.submit(WriteRequest {
            reset_to: None,
            entries: vec![ent(i, 1)],
            hard_state: Some(HardState {
                term: 1,
                vote: "x".into(),
                commit: 0,
            }),
            done: Box::new(move |res| o.lock().unwrap().push((i, res))),
        });
    }
    w.shutdown();
    assert!(outcomes.lock().unwrap().iter().all(|(_, r)| r.is_err()));
}

#[test]
fn reset_then_append_and_shutdown_drains() {
    let r = rig();
    let mut w = LogWriter::spawn(r.log.clone(), r.meta.clone());
    let outcomes: Outcomes = Arc::default();
    let o = outcomes.clone();
    w.submit(WriteRequest {
        reset_to: None,
        entries: (1..=10).map(|i| ent(i, 1)).collect(),
        hard_state: None,
        done: Box::new(move |res| o.lock().unwrap().push((1, res))),
    });
    // A snapshot at 100 installed, then entries after it.
    let o = outcomes.clone();
    w.submit(WriteRequest {
        reset_to: Some(101),
        entries: vec![ent(101, 2), ent(102, 2)],
        hard_state: Some(HardState {
            term: 2,
            vote: Default::default(),
            commit: 100,
        }),
        done: Box::new(move |res| o.lock().unwrap().push((2, res))),
    });
    for i in 0..100 {
        let o = outcomes.clone();
        w.submit(WriteRequest {
            reset_to: None,
            entries: vec![],
            hard_state: None,
            done: Box::new(move |res| o.lock().unwrap().push((3 + i, res))),
        });
    }
    w.shutdown();
    assert_eq!(outcomes.lock().unwrap().len(), 102);
    assert!(outcomes.lock().unwrap().iter().all(|(_, r)| r.is_ok()));
    assert_eq!((r.log.first_index(), r.log.last_index()), (101, 102));
    assert_eq!(r.meta.load().unwrap().commit, 100);
    // And it is all on disk.
    drop(r.log);
    let (log, rec) = SegmentLog::open(
        RealFs::shared(),
        r._dir.path().join("log"),
        LogOptions::default(),
    )
    .unwrap();
    assert_eq!((rec.first_index, rec.last_index), (101, 102));
    assert_eq!(log.term(102).unwrap(), 2);
}

#[test]
fn writer_works_on_the_memory_log() {
    let d = tempfile::tempdir().unwrap();
    let meta = Arc::new(MetaStore::open(RealFs::shared(), d.path()).unwrap());
    let log = Arc::new(MemLog::new());
    let mut w = LogWriter::spawn(log.clone(), meta);
    let done = Arc::new(Mutex::new(false));
    let d2 = done.clone();
    w.submit(WriteRequest {
        reset_to: None,
        entries: vec![ent(1, 1), ent(2, 1)],
        hard_state: None,
        done: Box::new(move |res| *d2.lock().unwrap() = res.is_ok()),
    });
    w.shutdown();
    assert!(*done.lock().unwrap());
    assert_eq!(log.last_index(), 2);
}

#[test]
fn a_panicking_callback_does_not_stop_the_writer() {
    let r = rig();
    let mut w = LogWriter::spawn(r.log.clone(), r.meta.clone());
    w.submit(WriteRequest {
        reset_to: None,
        entries: vec![ent(1, 1)],
        hard_state: None,
        done: Box::new(|_| panic!("user callback bug")),
    });
    let ok = Arc::new(Mutex::new(false));
    let ok2 = ok.clone();
    w.submit(WriteRequest {
        reset_to: None,
        entries: vec![ent(2, 1)],
        hard_state: None,
        done: Box::new(move |res| *ok2.lock().unwrap() = res.is_ok()),
    });
    w.shutdown();
    assert!(*ok.lock().unwrap());
}

#[test]
fn without_sync_the_writer_never_fdatasyncs_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log_fs = FaultFs::new(RealFs::shared());
    let opts = LogOptions {
        sync: false,
        ..LogOptions::default()
    };
    let (log, _) = SegmentLog::open(log_fs.shared(), dir.path().join("log"), opts).unwrap();
    let meta = MetaStore::open(RealFs::shared(), dir.path().join("meta")).unwrap();
    let mut w = LogWriter::spawn(Arc::new(log), Arc::new(meta));
    let n = Arc::new(Mutex::new(0));
    for i in 1..=50 {
        let n = n.clone();
        w.submit(WriteRequest {
            reset_to: None,
            entries: vec![ent(i, 1)],
            hard_state: None,
            done: Box::new(move |r| {
                r.unwrap();
                *n.lock().unwrap() += 1;
            }),
        });
    }
    w.shutdown();
    assert_eq!(*n.lock().unwrap(), 50);
    assert_eq!(log_fs.faults.file_syncs.load(Ordering::SeqCst), 0);
    assert_eq!(log_fs.faults.dir_syncs.load(Ordering::SeqCst), 0);
}

/// Length of the only open segment in `dir`.
fn open_segment_len(dir: &std::path::Path) -> u64 {
    let name = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("log_inprogress_"))
        .expect("an open segment");
    std::fs::metadata(dir.join(name)).unwrap().len()
}

#[test]
fn preallocation_runs_after_the_batch_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let o = LogOptions {
        preallocate_bytes: 4096,
        ..LogOptions::default()
    };
    let (log, _) = SegmentLog::open(RealFs::shared(), &log_dir, o).unwrap();
    let meta = MetaStore::open(RealFs::shared(), dir.path().join("meta")).unwrap();
    let mut w = LogWriter::spawn(Arc::new(log), Arc::new(meta));
    let used = (rraft::storage::entry_codec::HEADER_LEN + 64) as u64;
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let d = log_dir.clone();
    w.submit(WriteRequest {
        reset_to: None,
        entries: vec![ent(1, 1)],
        hard_state: None,
        done: Box::new(move |res| {
            res.unwrap();
            // The acknowledgement leaves before any zero is written.
            *s.lock().unwrap() = Some(open_segment_len(&d));
        }),
    });
    w.shutdown();
    assert_eq!(*seen.lock().unwrap(), Some(used));
    // Then the writer kept zeros ahead of the entry.
    assert_eq!(open_segment_len(&log_dir), used + 4096);
}
