//! braft's on-disk format, both ways: data directories written by braft's
//! counter example (`$RRAFT_BRAFT_DIR/fixtures/{murmur,crc32}/node0..2`)
//! open through rraft's log, meta and snapshot stores with the values
//! braft recorded in `EXPECTED.txt`, and what rraft writes on top of them
//! (or into a fresh directory) passes braft's own checker,
//! `fixtures/braft_dump.py` (every checksum and the structure).
//!
//! Without `RRAFT_BRAFT_DIR` the tests say so and return; with it set, a
//! missing fixture or checker fails them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use rraft::proto::{Configuration, Entry, EntryType, HardState, SnapshotMeta};
use rraft::storage::{FileSystem, LogOptions, MetaStore, RealFs, SegmentLog, SnapshotStore};

/// The braft material folder, or `None` (after saying so) when unset.
fn braft_dir() -> Option<PathBuf> {
    match std::env::var_os("RRAFT_BRAFT_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            eprintln!("RRAFT_BRAFT_DIR is not set: skipping the braft on-disk format test");
            None
        }
    }
}

const PEERS: [&str; 3] = ["127.0.0.1:8100:0", "127.0.0.1:8101:0", "127.0.0.1:8102:0"];

fn fs() -> Arc<dyn FileSystem> {
    RealFs::shared()
}

fn log_opts() -> LogOptions {
    LogOptions {
        segment_size: 8192,
        ..LogOptions::default()
    }
}

/// Copies `from` into `to` recursively, writable (the fixtures are
/// read-only, and opening a store writes to it).
fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// Field 1 (a varint) of a protobuf message: the counter example's
/// `FetchAddRequest.value` and `Snapshot.value`.
fn field1_varint(msg: &[u8]) -> i64 {
    assert_eq!(
        msg.first(),
        Some(&0x08),
        "field 1 varint expected in {msg:02x?}"
    );
    let mut v = 0u64;
    for (i, b) in msg[1..].iter().enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return v as i64;
        }
    }
    panic!("unterminated varint in {msg:02x?}");
}

/// The counter's snapshot file: a ProtoBufFile of `Snapshot{value}`.
fn snapshot_value_file(value: i64) -> Vec<u8> {
    let mut body = vec![0x08];
    let mut v = value as u64;
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            body.push(b);
            break;
        }
        body.push(b | 0x80);
    }
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// The vote braft recorded for `node` in `EXPECTED.txt` (braft's text).
fn expected_vote(expected: &str, node: &str) -> String {
    let section = expected
        .split(&format!("\n{node}:\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no section {node} in EXPECTED.txt"));
    let line = section
        .lines()
        .find(|l| l.trim_start().starts_with("raft_meta:"))
        .expect("raft_meta line");
    line.split("votedfor=").nth(1).unwrap().trim().to_string()
}

fn data_entry(index: u64, term: u64, value: u8) -> Entry {
    Entry {
        term,
        index,
        entry_type: EntryType::Data as i32,
        data: Bytes::from(vec![0x08, value]),
    }
}

fn conf_entry(index: u64, term: u64, voters: &[&str]) -> Entry {
    let conf = Configuration {
        voters: voters.iter().map(|p| p.to_string()).collect(),
        learners: vec![],
        old_voters: vec![],
    };
    Entry {
        term,
        index,
        entry_type: EntryType::Configuration as i32,
        data: Bytes::from(conf.encode_to_vec()),
    }
}

fn voters_of(e: &Entry) -> Vec<String> {
    Configuration::decode(&e.data[..]).unwrap().voters
}

/// Runs braft's checker on a node directory; its output when every check passed.
fn braft_dump(braft: &Path, node_dir: &Path) -> String {
    let script = braft.join("fixtures/braft_dump.py");
    assert!(script.exists(), "{} is missing", script.display());
    let out = Command::new("python3")
        .arg(&script)
        .arg(node_dir)
        .output()
        .expect("run python3 braft_dump.py");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("checks: OK"),
        "braft_dump.py refused {}:\n{text}\n{}",
        node_dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Opens one braft node directory with rraft's stores and checks what
/// braft recorded; returns the counter value replayed on the snapshot.
fn check_braft_node(node_dir: &Path, expected: &str, node: &str) -> i64 {
    let (log, rec) = SegmentLog::open(fs(), node_dir.join("log"), log_opts()).unwrap();
    assert_eq!((rec.first_index, rec.last_index), (1, 1501), "{node}");
    assert!(!rec.may_have_lost_acked);
    assert_eq!(
        log.segment_count(),
        5,
        "{node}: four closed segments and the open one"
    );
    assert_eq!(rec.configurations.len(), 1);
    assert_eq!(rec.configurations[0].index, 1);
    assert_eq!(voters_of(&rec.configurations[0]), PEERS);

    let entries = log.entries(1, 1502, u64::MAX).unwrap();
    assert_eq!(entries.len(), 1501);
    assert!(entries.iter().all(|e| e.term == 2));
    assert_eq!(entries[0].entry_type, EntryType::Configuration as i32);
    assert!(entries[1..]
        .iter()
        .all(|e| e.entry_type == EntryType::Data as i32 && e.data[..] == [0x08, 0x01]));

    let meta = MetaStore::open(fs(), node_dir.join("raft_meta")).unwrap();
    let hs = meta.load().unwrap();
    let vote = expected_vote(expected, node);
    assert_eq!(hs.term, 2);
    assert_eq!(
        format!("{}:0", hs.vote),
        vote,
        "{node}: rraft's vote is braft's minus the role"
    );
    assert_eq!(hs.commit, 0, "braft records no commit index");

    let snaps = SnapshotStore::open(fs(), node_dir.join("snapshot")).unwrap();
    let snap = snaps.latest().expect("braft's snapshot");
    let m = snap.meta();
    assert_eq!((m.last_index, m.last_term), (1001, 2));
    assert_eq!(m.configuration.as_ref().unwrap().voters, PEERS);
    let names: Vec<&str> = snap.files().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["data"]);
    let (data, eof) = snap.read_chunk("data", 0, 1 << 20).unwrap();
    assert!(eof);
    assert_eq!(snap.files()[0].size, data.len() as u64);
    assert_eq!(snap.files()[0].checksum, crc32c::crc32c(&data));
    let base = field1_varint(&data[4..]);
    assert_eq!(base, 1000);
    let replayed: i64 = log
        .entries(1002, 1502, u64::MAX)
        .unwrap()
        .iter()
        .map(|e| field1_varint(&e.data))
        .sum();
    base + replayed
}

#[test]
fn braft_fixtures_open_with_the_values_braft_recorded() {
    let Some(braft) = braft_dir() else {
        return;
    };
    for kind in ["murmur", "crc32"] {
        let fixture = braft.join("fixtures").join(kind);
        let expected = std::fs::read_to_string(fixture.join("EXPECTED.txt"))
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
        assert!(expected.contains("final_counter_value: 1500"));
        for node in ["node0", "node1", "node2"] {
            let d = tempfile::tempdir().unwrap();
            copy_tree(&fixture.join(node), d.path());
            let value = check_braft_node(d.path(), &expected, node);
            assert_eq!(value, 1500, "{kind}/{node}");
            // Opening changed nothing braft's checker objects to.
            braft_dump(&braft, d.path());
        }
    }
}

/// Writes with rraft's stores on top of `dir`'s log from `next` on:
/// entries of every kind, a truncation, a vote, a snapshot and a
/// compaction. Returns the last index written.
fn write_with_rraft(dir: &Path, next: u64, term: u64) -> u64 {
    let (log, _) = SegmentLog::open(fs(), dir.join("log"), log_opts()).unwrap();
    assert_eq!(log.last_index() + 1, next);
    // A new leader's configuration, then data; a later leader overwrites
    // the tail (truncation) with a noop and a joint configuration.
    let mut batch = vec![conf_entry(next, term, &PEERS)];
    batch.extend((1..=600).map(|i| data_entry(next + i, term, 1)));
    log.append(&batch).unwrap();
    log.sync().unwrap();
    let cut = next + 590;
    log.truncate_suffix(cut).unwrap();
    let tail = vec![
        Entry {
            term: term + 1,
            index: cut + 1,
            entry_type: EntryType::Noop as i32,
            data: Bytes::new(),
        },
        conf_entry(cut + 2, term + 1, &PEERS[..2]),
        data_entry(cut + 3, term + 1, 2),
    ];
    log.append(&tail).unwrap();
    log.sync().unwrap();
    let last = cut + 3;

    let meta = MetaStore::open(fs(), dir.join("raft_meta")).unwrap();
    meta.save(&HardState {
        term: term + 1,
        vote: PEERS[0].into(),
        commit: last,
    })
    .unwrap();

    let snaps = SnapshotStore::open(fs(), dir.join("snapshot")).unwrap();
    let snap_index = next + 300;
    let mut w = snaps
        .create(SnapshotMeta {
            last_index: snap_index,
            last_term: term,
            configuration: Some(Configuration {
                voters: PEERS.iter().map(|p| p.to_string()).collect(),
                learners: vec![],
                old_voters: vec![],
            }),
        })
        .unwrap();
    std::fs::write(w.path().join("data"), snapshot_value_file(1234)).unwrap();
    w.add_file("data").unwrap();
    w.finish().unwrap();
    drop(snaps);
    // Compaction keeps a margin before the snapshot, as rraft's node does.
    log.truncate_prefix(next + 50).unwrap();
    log.sync().unwrap();
    last
}

/// Reopens what [`write_with_rraft`] left and checks it through rraft.
fn reopen_and_check(dir: &Path, first: u64, last: u64, term: u64) {
    let (log, rec) = SegmentLog::open(fs(), dir.join("log"), log_opts()).unwrap();
    assert_eq!((rec.first_index, rec.last_index), (first, last));
    let conf = log.entry(last - 1).unwrap();
    assert_eq!(voters_of(&conf), PEERS[..2]);
    assert_eq!(
        log.entry(last - 2).unwrap().entry_type,
        EntryType::Noop as i32
    );
    assert_eq!(log.term(last).unwrap(), term + 1);
    let hs = MetaStore::open(fs(), dir.join("raft_meta"))
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(
        (hs.term, hs.vote.as_str(), hs.commit),
        (term + 1, PEERS[0], last)
    );
    let snaps = SnapshotStore::open(fs(), dir.join("snapshot")).unwrap();
    let snap = snaps.latest().unwrap();
    let (data, _) = snap.read_chunk("data", 0, 64).unwrap();
    assert_eq!(field1_varint(&data[4..]), 1234);
}

#[test]
fn what_rraft_writes_on_a_braft_directory_passes_braft_checks() {
    let Some(braft) = braft_dir() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    copy_tree(&braft.join("fixtures/murmur/node1"), d.path());
    let last = write_with_rraft(d.path(), 1502, 3);
    let out = braft_dump(&braft, d.path());
    // braft's murmurhash32 entries, then rraft's crc32c ones.
    assert!(
        out.contains("crc32c=") && out.contains("murmurhash32="),
        "{out}"
    );
    assert!(
        out.contains(&format!("raft_meta: term=4 votedfor={}:0", PEERS[0])),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "config entry index={} term=4 peers={}:0,{}:0 old_peers=",
            last - 1,
            PEERS[0],
            PEERS[1]
        )),
        "{out}"
    );
    assert!(
        out.contains("snapshot snapshot_00000000000000001802: last_included_index=1802"),
        "{out}"
    );
    assert!(out.contains("first_log_index (log_meta): 1552"), "{out}");
    assert!(!out.contains("snapshot_00000000000000001001"), "{out}");
    reopen_and_check(d.path(), 1552, last, 3);
}

#[test]
fn a_directory_rraft_wrote_from_empty_passes_braft_checks() {
    let Some(braft) = braft_dir() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    {
        // braft's init writes log_meta before any segment; so does rraft.
        let (_log, _) = SegmentLog::open(fs(), d.path().join("log"), log_opts()).unwrap();
        assert_eq!(
            std::fs::read(d.path().join("log/log_meta")).unwrap(),
            [0, 0, 0, 2, 0x08, 0x01]
        );
    }
    let last = write_with_rraft(d.path(), 1, 1);
    let out = braft_dump(&braft, d.path());
    assert!(out.contains("entry checksum types: crc32c="), "{out}");
    assert!(!out.contains("murmurhash32="), "{out}");
    reopen_and_check(d.path(), 51, last, 1);
}

#[test]
fn a_torn_braft_open_segment_is_cut_and_a_damaged_closed_one_refused() {
    let Some(braft) = braft_dir() else {
        return;
    };
    let open_name = "log_inprogress_00000000000000001262";
    let closed_name = "log_00000000000000000946_00000000000000001261";
    for kind in ["murmur", "crc32"] {
        let src = braft.join("fixtures").join(kind).join("node0/log");
        // A torn last entry of the open segment: cut, the rest kept.
        let d = tempfile::tempdir().unwrap();
        copy_tree(&src, d.path());
        let seg = d.path().join(open_name);
        let len = std::fs::metadata(&seg).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (log, rec) = SegmentLog::open(fs(), d.path(), log_opts()).unwrap();
        assert_eq!(rec.last_index, 1500, "{kind}");
        assert!(rec.may_have_lost_acked, "{kind}: non-zero bytes were cut");
        assert_eq!(log.entry(1500).unwrap().data[..], [0x08, 0x01]);
        // A damaged closed segment: refused, naming the file and offset.
        let d = tempfile::tempdir().unwrap();
        copy_tree(&src, d.path());
        let seg = d.path().join(closed_name);
        let mut b = std::fs::read(&seg).unwrap();
        b[26 * 10 + 25] ^= 0x01;
        std::fs::write(&seg, &b).unwrap();
        let e = SegmentLog::open(fs(), d.path(), log_opts())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(closed_name) && e.contains("byte offset 260"),
            "{kind}: {e}"
        );
    }
}
