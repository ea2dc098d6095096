//! The proptest twins of the fuzz targets in `fuzz/`: the same property
//! functions (`fuzz/src/lib.rs`, included by path) on bounded random inputs,
//! so every `cargo test --release` runs them; `fuzz/run.sh` runs them
//! open-ended with libFuzzer.
//!
//! - arbitrary bytes → no decoder panics (every target);
//! - arbitrary valid messages → encode/decode round trip, also framed;
//! - mutated valid encodings (flips, truncations, insertions, splices) →
//!   no panic, and the frame reader never yields a frame above its maximum.
//!
//! `FUZZ_WRITE_SEEDS=1 cargo test --release --test fuzz_props -- seed_corpus`
//! rewrites the committed seed corpus `fuzz/seeds/<target>/`.

// The properties are the fuzz crate's library, included by path: that crate
// (outside the workspace) links libfuzzer-sys, which a dependency on it
// would bring into every test build.
#[path = "../fuzz/src/lib.rs"]
mod targets;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rraft::proto::{Configuration, Entry, EntryType, HardState, Message, SnapshotMeta};
use rraft::transport::frame::{encode_frame, try_decode, Frame};
use rraft::transport::wire::{Heartbeats, RaftBatch, Request, Response};

/// `cases` per property, times `FUZZ_PROPS_SCALE` when it is set (a long
/// run: `FUZZ_PROPS_SCALE=100 cargo test --release --test fuzz_props`).
fn cfg(cases: u32) -> ProptestConfig {
    let scale = std::env::var("FUZZ_PROPS_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    ProptestConfig {
        cases: cases.saturating_mul(scale),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn bytes_up_to(n: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..n)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.:\\[\\]]{0,24}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (any::<u64>(), any::<u64>(), 0i32..4, bytes_up_to(64)).prop_map(|(term, index, t, d)| Entry {
        term,
        index,
        entry_type: t,
        data: Bytes::from(d),
    })
}

fn configuration() -> impl Strategy<Value = Configuration> {
    let ids = || proptest::collection::vec(text(), 0..4);
    (ids(), ids(), ids()).prop_map(|(voters, learners, old_voters)| Configuration {
        voters,
        learners,
        old_voters,
    })
}

fn snapshot_meta() -> impl Strategy<Value = SnapshotMeta> {
    (
        any::<u64>(),
        any::<u64>(),
        proptest::option::of(configuration()),
    )
        .prop_map(|(last_index, last_term, configuration)| SnapshotMeta {
            last_index,
            last_term,
            configuration,
        })
}

fn message() -> impl Strategy<Value = Message> {
    (
        (
            0i32..20,
            text(),
            text(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        proptest::collection::vec(entry(), 0..4),
        (
            any::<u64>(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
        ),
        proptest::option::of(snapshot_meta()),
        bytes_up_to(32),
    )
        .prop_map(
            |(
                (msg_type, from, to, term, log_term, index),
                entries,
                (commit, reject, reject_hint, hint_term, flight, follower_last),
                snapshot,
                ctx,
            )| Message {
                msg_type,
                from: from.into(),
                to: to.into(),
                term,
                log_term,
                index,
                entries,
                commit,
                reject,
                reject_hint,
                hint_term,
                snapshot,
                context: Bytes::from(ctx),
                flight,
                follower_last,
                quiesce: reject && flight % 2 == 1,
            },
        )
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (text(), proptest::collection::vec(message(), 0..3))
            .prop_map(|(group, messages)| Frame::RaftBatch(RaftBatch { group, messages })),
        (any::<u64>(), text(), text(), bytes_up_to(64)).prop_map(|(call_id, method, group, p)| {
            Frame::Request(Request {
                call_id,
                method: method.into(),
                group: group.into(),
                payload: Bytes::from(p),
            })
        }),
        (any::<u64>(), any::<i32>(), text(), text(), bytes_up_to(64)).prop_map(
            |(call_id, code, error_text, leader_hint, p)| Frame::Response(Response {
                call_id,
                code,
                error_text,
                leader_hint,
                payload: Bytes::from(p),
            })
        ),
        proptest::collection::vec((text(), message()), 0..4).prop_map(|msgs| {
            // Whatever fits a beat: heartbeats and plain answers.
            let mut beats = Heartbeats::default();
            for (group, m) in msgs {
                let _ = beats.push(&group, m);
            }
            Frame::Heartbeats(beats)
        }),
    ]
}

fn roundtrip<M: prost::Message + Default + PartialEq + std::fmt::Debug>(m: &M) {
    let enc = m.encode_to_vec();
    assert_eq!(enc.len(), m.encoded_len());
    let back = M::decode(enc.as_slice()).expect("decodes");
    assert_eq!(&back, m);
    assert_eq!(back.encode_to_vec(), enc);
}

/// A random edit of a valid encoding.
#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Dup(usize, usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Edit::Flip(i, x)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), bytes_up_to(8)).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Remove(i, n)),
        (any::<usize>(), 1usize..32).prop_map(|(i, n)| Edit::Dup(i, n)),
    ];
    proptest::collection::vec(edit, 1..5)
}

fn mutate(mut v: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = v.len().max(1);
        match e {
            Edit::Flip(i, x) => {
                if !v.is_empty() {
                    let i = i % v.len();
                    v[i] ^= x;
                }
            }
            Edit::Truncate(i) => v.truncate(i % len),
            Edit::Insert(i, b) => {
                let i = i % (v.len() + 1);
                v.splice(i..i, b.iter().copied());
            }
            Edit::Remove(i, n) => {
                let i = i % len;
                let j = (i + n).min(v.len());
                if i < j {
                    v.drain(i..j);
                }
            }
            Edit::Dup(i, n) => {
                let i = i % len;
                let j = (i + n).min(v.len());
                if i < j {
                    let part: Vec<u8> = v[i..j].to_vec();
                    v.extend(part);
                }
            }
        }
    }
    v
}

/// (target name, property) for the per-target properties.
type Target = (&'static str, fn(&[u8]));
const TARGETS: [Target; 7] = [
    ("wire_message", targets::wire_message),
    ("frame_stream", targets::frame_stream),
    ("frame_body", targets::frame_body),
    ("entry_codec", targets::entry_codec),
    ("segment_recovery", targets::segment_recovery),
    ("peer_ids", targets::peer_ids),
    ("shared_recovery", targets::shared_recovery),
];

fn seeds_of(name: &str) -> Vec<Vec<u8>> {
    targets::seeds()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

// ----- arbitrary bytes: no panic -------------------------------------------

/// One proptest per fuzz target: `target` never panics on arbitrary bytes
/// up to `max` long.
macro_rules! arbitrary_bytes_never_panic {
    ($($name:ident: $target:ident up to $max:expr;)*) => {
        proptest! {
            #![proptest_config(cfg(1000))]
            $(
                #[test]
                fn $name(data in bytes_up_to($max)) {
                    targets::$target(&data);
                }
            )*
        }
    };
}

arbitrary_bytes_never_panic! {
    wire_message_arbitrary_bytes: wire_message up to 512;
    frame_stream_arbitrary_bytes: frame_stream up to 512;
    frame_body_arbitrary_bytes: frame_body up to 512;
    entry_codec_arbitrary_bytes: entry_codec up to 512;
    peer_ids_arbitrary_bytes: peer_ids up to 64;
}

proptest! {
    #![proptest_config(cfg(1000))]

    #[test]
    fn peer_ids_near_valid(s in "[0-9a-z.:\\[\\], ]{0,40}") {
        targets::peer_ids(s.as_bytes());
    }
}

proptest! {
    // Each case creates a directory and opens a log: fewer cases.
    #![proptest_config(cfg(256))]

    #[test]
    fn segment_recovery_arbitrary_bytes(data in bytes_up_to(512)) {
        targets::segment_recovery(&data);
    }

    #[test]
    fn segment_recovery_mutated_segments(pick in any::<usize>(), e in edits()) {
        let seeds = seeds_of("segment_recovery");
        let s = &seeds[pick % seeds.len()];
        // Keep the selector byte; damage the segment.
        let mut v = vec![s[0]];
        v.extend(mutate(s[1..].to_vec(), &e));
        targets::segment_recovery(&v);
    }

    #[test]
    fn segment_recovery_with_zeros_after_damaged_segments(pick in any::<usize>(), e in edits(), fix in any::<bool>()) {
        let seeds = seeds_of("segment_recovery");
        let s = &seeds[pick % seeds.len()];
        // An in-progress segment with zeros appended (bit 2), its checksums
        // fixed up or not (bit 3) after the damage.
        let mut v = vec![(s[0] & !0b1101) | 0b100 | if fix { 0b1000 } else { 0 }];
        v.extend(mutate(s[1..].to_vec(), &e));
        targets::segment_recovery(&v);
    }
}

proptest! {
    // Each case opens a shared log (a directory and its syncer thread).
    #![proptest_config(cfg(128))]

    #[test]
    fn shared_recovery_arbitrary_bytes(data in bytes_up_to(512)) {
        targets::shared_recovery(&data);
    }

    #[test]
    fn shared_recovery_mutated_logs(pick in any::<usize>(), e in edits(), fix in any::<bool>()) {
        let seeds = seeds_of("shared_recovery");
        let s = &seeds[pick % seeds.len()];
        let mut v = vec![s[0] | u8::from(fix)];
        v.extend(mutate(s[1..].to_vec(), &e));
        targets::shared_recovery(&v);
    }

    #[test]
    fn shared_log_groups_match_a_model_across_reopens(
        ops in proptest::collection::vec(shared_op(), 1..60),
    ) {
        shared_log_model_check(&ops);
    }
}

// ----- the shared log against a model ----------------------------------------

/// One operation on one of three groups of a shared log.
#[derive(Clone, Debug)]
enum SharedOp {
    /// Append `n` entries at `back` before the group's next index (a
    /// conflict when `back` > 0).
    Append {
        group: usize,
        back: u64,
        n: u64,
    },
    TruncateSuffix {
        group: usize,
        back: u64,
    },
    TruncatePrefix {
        group: usize,
        ahead: u64,
    },
    Reset {
        group: usize,
        ahead: u64,
    },
    Sync,
    RewriteOldest,
    Reopen,
}

fn shared_op() -> impl Strategy<Value = SharedOp> {
    let g = 0usize..3;
    prop_oneof![
        6 => (g.clone(), 0u64..3, 1u64..5).prop_map(|(group, back, n)| SharedOp::Append { group, back, n }),
        1 => (g.clone(), 0u64..4).prop_map(|(group, back)| SharedOp::TruncateSuffix { group, back }),
        1 => (g.clone(), 0u64..6).prop_map(|(group, ahead)| SharedOp::TruncatePrefix { group, ahead }),
        1 => (g, 0u64..4).prop_map(|(group, ahead)| SharedOp::Reset { group, ahead }),
        2 => Just(SharedOp::Sync),
        1 => Just(SharedOp::RewriteOldest),
        1 => Just(SharedOp::Reopen),
    ]
}

/// Runs `ops` on three groups of a shared log with small files (so they
/// roll and get deleted) and on a model (first index, entries); after each
/// operation and each reopen every group holds the model's entries from
/// the model's first index on, ending where the model ends.
fn shared_log_model_check(ops: &[SharedOp]) {
    use rraft::storage::{SharedGroupLog, SharedLog};
    let dir = tempfile::tempdir().unwrap();
    let opts = rraft::storage::LogOptions {
        segment_size: 512,
        sync: false,
        cache_bytes: 256,
        ..rraft::storage::LogOptions::default()
    };
    let fs = rraft::storage::RealFs::shared();
    let open = || {
        let log = SharedLog::open(fs.clone(), dir.path(), opts).unwrap();
        let groups: Vec<SharedGroupLog> = (0..3)
            .map(|g| log.open_group(&format!("g{g}"), 256).unwrap().0)
            .collect();
        (log, groups)
    };
    let (mut log, mut groups) = open();
    let mut models: Vec<(u64, Vec<Entry>)> = vec![(1, Vec::new()); 3];
    let mut term = 1u64;
    for op in ops {
        match *op {
            SharedOp::Append { group, back, n } => {
                let (first, es) = &mut models[group];
                let next = (*first + es.len() as u64).saturating_sub(back).max(*first);
                term += 1;
                let new: Vec<Entry> = (0..n)
                    .map(|k| Entry {
                        term,
                        index: next + k,
                        entry_type: EntryType::Data as i32,
                        data: Bytes::from(vec![(next + k) as u8; (term % 7) as usize]),
                    })
                    .collect();
                groups[group].append(&new).unwrap();
                es.truncate((next - *first) as usize);
                es.extend(new);
            }
            SharedOp::TruncateSuffix { group, back } => {
                let (first, es) = &mut models[group];
                let last_kept = (*first + es.len() as u64 - 1).saturating_sub(back);
                groups[group].truncate_suffix(last_kept).unwrap();
                es.truncate(last_kept.saturating_sub(*first - 1) as usize);
            }
            SharedOp::TruncatePrefix { group, ahead } => {
                let (first, es) = &mut models[group];
                let first_kept = *first + ahead;
                groups[group].truncate_prefix(first_kept).unwrap();
                if first_kept > *first + es.len() as u64 {
                    es.clear();
                } else {
                    es.drain(..ahead as usize);
                }
                *first = first_kept;
            }
            SharedOp::Reset { group, ahead } => {
                let (first, es) = &mut models[group];
                let next = *first + es.len() as u64 + ahead;
                groups[group].reset(next).unwrap();
                es.clear();
                *first = next;
            }
            SharedOp::Sync => groups[0].sync().unwrap(),
            SharedOp::RewriteOldest => {
                log.rewrite_oldest().unwrap();
            }
            SharedOp::Reopen => {
                drop(groups);
                drop(log);
                (log, groups) = open();
            }
        }
        for (g, (first, es)) in groups.iter().zip(&models) {
            let last = first + es.len() as u64 - 1;
            assert_eq!(g.last_index(), last, "after {op:?}");
            assert!(g.first_index() <= *first || es.is_empty(), "after {op:?}");
            if !es.is_empty() {
                assert_eq!(
                    &g.entries(*first, last + 1, u64::MAX).unwrap(),
                    es,
                    "after {op:?}"
                );
            }
        }
    }
}

// ----- arbitrary valid messages: round trip ---------------------------------

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn messages_round_trip(m in message()) {
        roundtrip(&m);
        for e in &m.entries {
            roundtrip(e);
        }
        if let Some(s) = &m.snapshot {
            roundtrip(s);
        }
    }

    #[test]
    fn configurations_and_hard_states_round_trip(
        c in configuration(), term in any::<u64>(), vote in text(), commit in any::<u64>()
    ) {
        roundtrip(&c);
        roundtrip(&HardState {
            term,
            vote: vote.into(),
            commit,
        });
    }

    #[test]
    fn frames_round_trip(fs in proptest::collection::vec(frame(), 1..4), cut in any::<usize>()) {
        let mut stream = BytesMut::new();
        for f in &fs {
            encode_frame(f, &mut stream, 1 << 20).expect("encode");
        }
        // A prefix yields the whole frames in it and then asks for more.
        let total = stream.len();
        let mut part = BytesMut::from(&stream[..cut % (total + 1)]);
        while let Some((f, _)) = try_decode(&mut part, 1 << 20).expect("valid prefix") {
            prop_assert!(fs.contains(&f));
        }
        let mut got = Vec::new();
        while let Some((f, n)) = try_decode(&mut stream, 1 << 20).expect("valid stream") {
            prop_assert_eq!(n, f.body_len() + 5);
            got.push(f);
        }
        prop_assert_eq!(got, fs);
        prop_assert!(stream.is_empty());
    }

    #[test]
    fn entries_round_trip_through_the_log_codec(es in proptest::collection::vec(entry(), 0..6)) {
        let mut seg = Vec::new();
        for e in &es {
            let mut e = e.clone();
            // Noop or Data: a configuration entry's data must be a
            // Configuration (the codec stores it as braft's).
            e.entry_type = e.entry_type.rem_euclid(2);
            rraft::storage::entry_codec::encode(&e, &mut seg).expect("encode");
        }
        targets::entry_codec(&[[0u8].as_slice(), &seg].concat());
    }
}

// ----- mutated valid encodings: no panic ------------------------------------

proptest! {
    #![proptest_config(cfg(1000))]

    #[test]
    fn mutated_seeds(t in 0usize..5, pick in any::<usize>(), e in edits()) {
        // Every target but segment_recovery (above, with fewer cases).
        let (name, f) = TARGETS[[0, 1, 2, 3, 5][t]];
        let seeds = seeds_of(name);
        let s = &seeds[pick % seeds.len()];
        f(&mutate(s.clone(), &e));
    }

    #[test]
    fn mutated_frames(f in frame(), e in edits(), small in any::<bool>()) {
        let mut buf = BytesMut::new();
        encode_frame(&f, &mut buf, 1 << 20).expect("encode");
        let v = mutate(buf.to_vec(), &e);
        // Selector byte: odd = a small maximum (exercises TooLarge).
        let mut data = vec![if small { 0x21 } else { 0 }];
        data.extend(v);
        targets::frame_stream(&data);
    }
}

/// The committed seed corpus passes every target, and matches what
/// `targets::seeds()` generates (`FUZZ_WRITE_SEEDS=1` rewrites it).
#[test]
fn seed_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let write = std::env::var_os("FUZZ_WRITE_SEEDS").is_some();
    for (name, seeds) in targets::seeds() {
        let f = TARGETS.iter().find(|t| t.0 == name).expect("a target").1;
        let dir = root.join(name);
        if write {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        for (i, s) in seeds.iter().enumerate() {
            f(s);
            let path = dir.join(format!("seed-{i}"));
            if write {
                std::fs::write(&path, s).expect("write seed");
            } else {
                let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!("{}: {e} (FUZZ_WRITE_SEEDS=1 rewrites)", path.display())
                });
                assert_eq!(&on_disk, s, "{} is stale", path.display());
            }
        }
    }
}

/// Two groups' conflicting appends and a truncation of everything in one
/// of them, then a sync and a reopen: the truncated group comes back empty.
#[test]
fn shared_log_keeps_a_truncation_to_empty_across_a_reopen() {
    use SharedOp::*;
    shared_log_model_check(&[
        Append {
            group: 2,
            back: 0,
            n: 1,
        },
        Reopen,
        Append {
            group: 1,
            back: 0,
            n: 3,
        },
        Append {
            group: 0,
            back: 0,
            n: 2,
        },
        Append {
            group: 1,
            back: 2,
            n: 1,
        },
        TruncateSuffix { group: 1, back: 2 },
        Append {
            group: 2,
            back: 1,
            n: 1,
        },
        Sync,
        Reopen,
    ]);
}

/// A group compacted to its last entry, that entry rewritten, the log
/// reopened, then a truncation below the group's first index: the group
/// comes back empty, ending just before its first index.
#[test]
fn shared_log_keeps_a_compaction_floor_across_a_reopen() {
    use SharedOp::*;
    shared_log_model_check(&[
        Append {
            group: 2,
            back: 0,
            n: 4,
        },
        Reset { group: 0, ahead: 0 },
        Append {
            group: 0,
            back: 0,
            n: 1,
        },
        Append {
            group: 2,
            back: 0,
            n: 1,
        },
        Append {
            group: 0,
            back: 1,
            n: 1,
        },
        TruncateSuffix { group: 2, back: 1 },
        TruncatePrefix { group: 2, ahead: 3 },
        Append {
            group: 2,
            back: 1,
            n: 1,
        },
        Reopen,
        TruncateSuffix { group: 2, back: 2 },
    ]);
}
