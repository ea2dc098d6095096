//! Meta store and snapshot store: atomic replacement under crashes,
//! checksums, chunked reads, receive with reuse, path traversal.

use std::path::Path;
use std::sync::atomic::Ordering;

use rraft::proto::{Configuration, HardState, SnapshotMeta};
use rraft::storage::snapshot::MANIFEST;
use rraft::storage::{FaultFs, MetaStore, RealFs, SnapshotFile, SnapshotStore};

fn hs(term: u64, vote: &str, commit: u64) -> HardState {
    HardState {
        term,
        vote: vote.into(),
        commit,
    }
}

#[test]
fn meta_default_save_load_reopen() {
    let d = tempfile::tempdir().unwrap();
    let m = MetaStore::open(RealFs::shared(), d.path().join("meta")).unwrap();
    assert_eq!(m.load().unwrap(), HardState::default());
    m.save(&hs(3, "10.0.0.1:8100:0", 7)).unwrap();
    m.save(&hs(4, "10.0.0.2:8100:0", 9)).unwrap();
    drop(m);
    let m = MetaStore::open(RealFs::shared(), d.path().join("meta")).unwrap();
    assert_eq!(m.load().unwrap(), hs(4, "10.0.0.2:8100:0", 9));
}

#[test]
fn corrupt_meta_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let m = MetaStore::open(RealFs::shared(), d.path()).unwrap();
    m.save(&hs(3, "a", 1)).unwrap();
    let path = d.path().join("raft_meta");
    // braft's ProtoBufFile: a length that does not match the file, or a
    // message that does not decode, is refused.
    let b = std::fs::read(&path).unwrap();
    std::fs::write(&path, &b[..b.len() - 1]).unwrap();
    let e = m.load().unwrap_err().to_string();
    assert!(e.contains("raft_meta") && e.contains("length"), "{e}");
    std::fs::write(&path, b"xy").unwrap();
    assert!(m
        .load()
        .unwrap_err()
        .to_string()
        .contains("shorter than the length field"));
    std::fs::write(&path, [0, 0, 0, 2, 0x08, 0x80]).unwrap();
    assert!(m.load().unwrap_err().to_string().contains("cannot decode"));
}

#[test]
fn crash_at_every_step_of_a_meta_save_leaves_old_or_new() {
    let old = hs(5, "old", 2);
    let new = hs(6, "new", 3);
    for k in 0..10 {
        let d = tempfile::tempdir().unwrap();
        MetaStore::open(RealFs::shared(), d.path())
            .unwrap()
            .save(&old)
            .unwrap();
        let ffs = FaultFs::new(RealFs::shared());
        let m = MetaStore::open(ffs.shared(), d.path()).unwrap();
        ffs.faults.crash_after.store(k, Ordering::SeqCst);
        let r = m.save(&new);
        drop(m);
        let got = MetaStore::open(RealFs::shared(), d.path())
            .unwrap()
            .load()
            .unwrap();
        assert!(got == old || got == new, "crash after {k}: {got:?}");
        if r.is_ok() {
            assert_eq!(got, new);
        }
    }
}

#[test]
fn meta_save_error_is_sticky() {
    let d = tempfile::tempdir().unwrap();
    let ffs = FaultFs::new(RealFs::shared());
    let m = MetaStore::open(ffs.shared(), d.path()).unwrap();
    ffs.faults.fail_sync.store(true, Ordering::SeqCst);
    let e = m.save(&hs(1, "", 0)).unwrap_err();
    ffs.faults.fail_sync.store(false, Ordering::SeqCst);
    assert_eq!(m.save(&hs(1, "", 0)).unwrap_err(), e);
}

fn smeta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_index: index,
        last_term: term,
        configuration: Some(Configuration {
            voters: vec!["a:1:0".into(), "b:1:0".into()],
            ..Default::default()
        }),
    }
}

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Publishes a snapshot at `index` with the given files.
fn publish(store: &SnapshotStore, index: u64, files: &[(&str, Vec<u8>)]) {
    let mut w = store.create(smeta(index, 2)).unwrap();
    for (name, data) in files {
        let p = w.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        let f = w.add_file(name).unwrap();
        assert_eq!(f.size, data.len() as u64);
        assert_eq!(f.checksum, crc32c::crc32c(data));
    }
    w.finish().unwrap();
}

fn snapshot_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snapshot_"))
        .collect();
    v.sort();
    v
}

fn read_all(r: &rraft::storage::SnapshotReader, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let (chunk, eof) = r.read_chunk(name, out.len() as u64, 128 * 1024).unwrap();
        assert!(chunk.len() <= 128 * 1024);
        out.extend_from_slice(&chunk);
        if eof {
            return out;
        }
    }
}

#[test]
fn snapshot_write_publish_read_back_in_chunks() {
    let d = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(RealFs::shared(), d.path()).unwrap();
    assert!(store.latest().is_none());
    let big = content(1, 300_000);
    publish(
        &store,
        10,
        &[
            ("data.bin", big.clone()),
            ("sub/small", b"hi".to_vec()),
            ("empty", vec![]),
        ],
    );
    let r = store.latest().unwrap();
    assert_eq!(r.meta(), &smeta(10, 2));
    assert_eq!(r.files().len(), 3);
    assert!(r.path().ends_with("snapshot_00000000000000000010"));
    assert!(r.path().join(MANIFEST).exists());
    assert_eq!(read_all(&r, "data.bin"), big);
    assert_eq!(read_all(&r, "sub/small"), b"hi");
    assert_eq!(read_all(&r, "empty"), b"");
    // Reopen finds it.
    drop(r);
    drop(store);
    let store = SnapshotStore::open(RealFs::shared(), d.path()).unwrap();
    let r = store.latest().unwrap();
    assert_eq!(r.meta().last_index, 10);
    assert_eq!(read_all(&r, "data.bin"), big);
}

#[test]
fn older_snapshots_are_deleted_after_publishing_but_not_under_a_reader() {
    let d = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(RealFs::shared(), d.path()).unwrap();
    publish(&store, 10, &[("f", content(1, 1000))]);
    let reader = store.latest().unwrap();
    publish(&store, 20, &[("f", content(2, 1000))]);
    // Still streaming snapshot 10 to a follower: it stays.
    assert_eq!(snapshot_dirs(d.path()).len(), 2);
    assert_eq!(read_all(&reader, "f"), content(1, 1000));
    drop(reader);
    assert_eq!(
        snapshot_dirs(d.path()),
        vec!["snapshot_00000000000000000020"]
    );
    publish(&store, 30, &[("f", content(3, 1000))]);
    assert_eq!(
        snapshot_dirs(d.path()),
        vec!["snapshot_00000000000000000030"]
    );
    // An older index is refused; the same index keeps the published one.
    let mut w = store.create(smeta(25, 2)).unwrap();
    std::fs::write(w.path().join("f"), b"x").unwrap();
    w.add_file("f").unwrap();
    assert!(w.finish().is_err());
    publish(&store, 30, &[("f", b"other".to_vec())]);
    assert_eq!(read_all(&store.latest().unwrap(), "f"), content(3, 1000));
    // No temp/ left once nothing is being built (braft's layout at rest).
    assert!(!d.path().join("temp").exists());
}

#[test]
fn receive_reuses_identical_files_and_verifies_the_rest() {
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = SnapshotStore::open(RealFs::shared(), leader_dir.path()).unwrap();
    let same = content(7, 200_000);
    let changed = content(8, 50_000);
    publish(
        &leader,
        50,
        &[
            ("same", same.clone()),
            ("changed", changed.clone()),
            ("new", b"n".to_vec()),
        ],
    );
    let src = leader.latest().unwrap();

    let follower_dir = tempfile::tempdir().unwrap();
    let follower = SnapshotStore::open(RealFs::shared(), follower_dir.path()).unwrap();
    publish(
        &follower,
        30,
        &[("same", same.clone()), ("changed", content(9, 50_000))],
    );

    let mut w = follower
        .begin_receive(src.meta().clone(), src.files().to_vec())
        .unwrap();
    let mut missing: Vec<String> = w.missing_files().into_iter().map(|f| f.name).collect();
    missing.sort();
    assert_eq!(missing, vec!["changed", "new"]);
    for name in &missing {
        let mut off = 0u64;
        loop {
            let (chunk, eof) = src.read_chunk(name, off, 128 * 1024).unwrap();
            w.write_chunk(name, off, &chunk).unwrap();
            off += chunk.len() as u64;
            if eof {
                break;
            }
        }
    }
    // A file not in the list cannot be written.
    assert!(w.write_chunk("same", 0, b"x").is_err());
    assert!(w.write_chunk("../escape", 0, b"x").is_err());
    let r = w.finish().unwrap();
    assert_eq!(r.meta().last_index, 50);
    assert_eq!(read_all(&r, "same"), same);
    assert_eq!(read_all(&r, "changed"), changed);
    assert_eq!(
        snapshot_dirs(follower_dir.path()),
        vec!["snapshot_00000000000000000050"]
    );
    // The reused file was linked, not copied.
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(r.path().join("same")).unwrap();
    assert_eq!(m.nlink(), 1, "old snapshot gone, link count back to 1");
}

#[test]
fn receive_with_a_bad_checksum_is_rejected_and_cleaned_up() {
    let d = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(RealFs::shared(), d.path()).unwrap();
    publish(&store, 5, &[("f", b"old".to_vec())]);
    let data = content(3, 1000);
    let files = vec![SnapshotFile {
        name: "received".into(),
        size: data.len() as u64,
        checksum: crc32c::crc32c(&data),
    }];
    let mut w = store.begin_receive(smeta(9, 3), files.clone()).unwrap();
    let mut bad = data.clone();
    bad[500] ^= 1;
    w.write_chunk("received", 0, &bad).unwrap();
    let e = w.finish().unwrap_err().to_string();
    assert!(e.contains("received") && e.contains("expected"), "{e}");
    assert_eq!(store.latest().unwrap().meta().last_index, 5);
    assert!(!d.path().join("temp").exists());
    // A file never sent is also rejected.
    let w = store.begin_receive(smeta(9, 3), files).unwrap();
    assert!(w
        .finish()
        .unwrap_err()
        .to_string()
        .contains("never received"));
    // Chunks past the announced size are refused.
    let files = vec![SnapshotFile {
        name: "g".into(),
        size: 3,
        checksum: 0,
    }];
    let mut w = store.begin_receive(smeta(9, 3), files).unwrap();
    assert!(w.write_chunk("g", 2, b"xy").is_err());
}

#[test]
fn path_traversal_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(RealFs::shared(), d.path()).unwrap();
    publish(&store, 5, &[("f", b"x".to_vec())]);
    std::fs::write(d.path().join("secret"), b"s").unwrap();
    let r = store.latest().unwrap();
    for bad in [
        "../x",
        "../../secret",
        "/etc/passwd",
        "a/../../x",
        "./f",
        "",
        MANIFEST,
        "a//b",
    ] {
        assert!(r.read_chunk(bad, 0, 10).is_err(), "{bad:?}");
        let files = vec![SnapshotFile {
            name: bad.into(),
            size: 1,
            checksum: 0,
        }];
        assert!(store.begin_receive(smeta(9, 3), files).is_err(), "{bad:?}");
        let mut w = store.create(smeta(9, 3)).unwrap();
        assert!(w.add_file(bad).is_err(), "{bad:?}");
    }
    // Only files in the manifest are served.
    assert!(r.read_chunk("nope", 0, 10).is_err());
}

#[test]
fn open_cleans_temp_and_keeps_only_the_newest_snapshot() {
    let d = tempfile::tempdir().unwrap();
    {
        let store = SnapshotStore::open(RealFs::shared(), d.path()).unwrap();
        publish(&store, 5, &[("f", b"x".to_vec())]);
        let reader = store.latest().unwrap();
        publish(&store, 6, &[("f", b"y".to_vec())]);
        // Simulate a crash that left the old snapshot and a half-built one.
        std::mem::forget(reader);
        let w = store.create(smeta(7, 3)).unwrap();
        std::fs::write(w.path().join("f"), b"partial").unwrap();
        std::mem::forget(w);
    }
    assert_eq!(snapshot_dirs(d.path()).len(), 2);
    let store = SnapshotStore::open(RealFs::shared(), d.path()).unwrap();
    assert_eq!(store.latest().unwrap().meta().last_index, 6);
    assert_eq!(
        snapshot_dirs(d.path()),
        vec!["snapshot_00000000000000000006"]
    );
    assert!(!d.path().join("temp").exists());
}

#[test]
fn corrupt_manifest_of_the_newest_snapshot_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(RealFs::shared(), d.path()).unwrap();
    publish(&store, 5, &[("f", b"x".to_vec())]);
    let path = store.latest().unwrap().path().join(MANIFEST);
    drop(store);
    let b = std::fs::read(&path).unwrap();
    std::fs::write(&path, &b[..b.len() - 1]).unwrap();
    let e = SnapshotStore::open(RealFs::shared(), d.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains(MANIFEST) && e.contains("length"), "{e}");
}

#[test]
fn crash_at_every_step_of_a_snapshot_publish_leaves_old_or_new() {
    let old_files = [("a", content(1, 5000)), ("b", content(2, 100))];
    let new_files = [("a", content(3, 7000)), ("c", content(4, 10))];
    let mut saw_old = false;
    let mut saw_new = false;
    for k in 0..30 {
        let d = tempfile::tempdir().unwrap();
        publish(
            &SnapshotStore::open(RealFs::shared(), d.path()).unwrap(),
            10,
            &old_files,
        );
        let ffs = FaultFs::new(RealFs::shared());
        let store = SnapshotStore::open(ffs.shared(), d.path()).unwrap();
        // The user's files are written with std::fs; the store's own steps
        // (checksums, fsyncs, manifest, rename, deletion) go through ffs.
        let r = (|| {
            let mut w = store.create(smeta(20, 3))?;
            ffs.faults.crash_after.store(
                ffs.faults.mutations.load(Ordering::SeqCst) + k,
                Ordering::SeqCst,
            );
            for (name, data) in &new_files {
                std::fs::write(w.path().join(name), data).unwrap();
                w.add_file(name)?;
            }
            w.finish()
        })();
        let published = r.is_ok();
        drop(r);
        drop(store);
        let store = SnapshotStore::open(RealFs::shared(), d.path()).unwrap();
        let latest = store.latest().unwrap();
        let expect: &[(&str, Vec<u8>)] = match latest.meta().last_index {
            10 => {
                saw_old = true;
                assert!(!published, "crash after {k}");
                &old_files
            }
            20 => {
                saw_new = true;
                &new_files
            }
            i => panic!("unexpected snapshot {i}"),
        };
        let mut names: Vec<&str> = latest.files().iter().map(|f| f.name.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            expect.iter().map(|f| f.0).collect::<Vec<_>>(),
            "crash after {k}"
        );
        for (name, data) in expect {
            assert_eq!(&read_all(&latest, name), data, "crash after {k}");
        }
        assert_eq!(snapshot_dirs(d.path()).len(), 1, "crash after {k}");
    }
    assert!(saw_old && saw_new);
}
