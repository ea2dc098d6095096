//! The properties behind every fuzz target, shared with the proptest twins
//! in `tests/fuzz_props.rs` (which include this file by path), so that CI
//! runs the same checks on bounded random inputs that `cargo fuzz` runs
//! open-ended.
//!
//! Each function takes arbitrary bytes and panics only when a property
//! fails: decoders must return `Ok` or `Err` (never panic), whatever
//! decodes must re-encode to something that decodes to the same value, and
//! the frame reader must not accept a frame larger than its maximum.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use prost::Message as _;
use rraft::node::peer_id::{self, PeerId};
use rraft::proto::{Configuration, Entry, HardState, Message, SnapshotMeta};
use rraft::storage::entry_codec::{self, HEADER_LEN};
use rraft::storage::{LogOptions, RealFs, SegmentLog};
use rraft::transport::frame::{self, encode_frame, try_decode, Frame, FrameError};
use rraft::transport::wire::{Heartbeats, RaftBatch, Request, Response};

/// decode → encode → decode gives the same value, and the second encoding
/// is byte-identical to the first (prost's encoding is canonical).
fn roundtrip<M: prost::Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(m) = M::decode(data) else {
        return;
    };
    let enc = m.encode_to_vec();
    assert_eq!(enc.len(), m.encoded_len());
    let again = M::decode(enc.as_slice()).expect("a re-encoded message decodes");
    assert_eq!(m, again, "decode(encode(m)) != m");
    assert_eq!(enc, again.encode_to_vec(), "encoding is not stable");
}

/// Every wire message type, chosen by the first byte.
pub fn wire_message(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => roundtrip::<Message>(rest),
        1 => roundtrip::<Entry>(rest),
        2 => roundtrip::<Configuration>(rest),
        3 => roundtrip::<HardState>(rest),
        4 => roundtrip::<SnapshotMeta>(rest),
        5 => roundtrip::<RaftBatch>(rest),
        6 => roundtrip::<Request>(rest),
        _ => roundtrip::<Response>(rest),
    }
}

/// The frame reader on an arbitrary byte stream: frames come off the front
/// one by one until it needs more bytes or reports an error; a frame is
/// never bigger than `max`, and every decoded frame re-encodes to the bytes
/// it was read from... up to prost's canonical form, so it is re-decoded and
/// compared instead.
pub fn frame_stream(data: &[u8]) {
    // The first byte picks a small maximum so the limit is exercised.
    let (max, rest) = match data.split_first() {
        Some((&b, rest)) if b & 1 == 1 => (usize::from(b) * 4, rest),
        Some((_, rest)) => (frame::DEFAULT_MAX_FRAME, rest),
        None => return,
    };
    let mut buf = BytesMut::from(rest);
    let mut consumed = 0usize;
    loop {
        let before = buf.len();
        match try_decode(&mut buf, max) {
            Ok(Some((f, n))) => {
                assert!(n >= frame::HEADER_LEN && n - frame::HEADER_LEN <= max);
                assert_eq!(before - buf.len(), n, "consumed bytes != reported size");
                consumed += n;
                let mut out = BytesMut::new();
                encode_frame(&f, &mut out, frame::DEFAULT_MAX_FRAME).expect("re-encode");
                let (g, m) = try_decode(&mut out, frame::DEFAULT_MAX_FRAME)
                    .expect("re-decode")
                    .expect("a whole frame");
                assert_eq!(f, g);
                assert_eq!(m, f.body_len() + frame::HEADER_LEN);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) must leave the buffer alone");
                break;
            }
            Err(FrameError::TooLarge { len, max: m }) => {
                assert!(len as usize > m);
                break;
            }
            Err(_) => break,
        }
    }
    assert!(consumed <= rest.len());
}

/// `decode_body` of each kind on arbitrary bytes.
pub fn frame_body(data: &[u8]) {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    if let Some(kind) = frame::FrameKind::from_u8(k % 5) {
        if let Ok(f) = frame::decode_body(kind, Bytes::copy_from_slice(rest)) {
            assert_eq!(f.kind(), kind);
        }
    }
}

/// Rewrites the checksums of back-to-back entries in `buf` so they verify
/// (the header checksum and, over the bytes that are there, the data
/// checksum, each of the type the header names; an unknown type becomes
/// CRC32C): a fuzzer cannot guess checksums, and this lets it reach the
/// logic behind the checks (lengths, types, indexes, torn tails).
pub fn fix_checksums(buf: &mut [u8]) {
    let mut off = 0usize;
    while buf.len() - off >= HEADER_LEN {
        if buf[off + 9] > entry_codec::CHECKSUM_CRC32C {
            buf[off + 9] = entry_codec::CHECKSUM_CRC32C;
        }
        let kind = buf[off + 9];
        let len = u32::from_be_bytes(buf[off + 12..off + 16].try_into().expect("4 bytes")) as usize;
        let start = off + HEADER_LEN;
        let end = start.saturating_add(len).min(buf.len());
        let dck = entry_codec::checksum(kind, &buf[start..end]).expect("known type");
        buf[off + 16..off + 20].copy_from_slice(&dck.to_be_bytes());
        let hck = entry_codec::checksum(kind, &buf[off..off + 20]).expect("known type");
        buf[off + 20..off + 24].copy_from_slice(&hck.to_be_bytes());
        off = end;
    }
}

/// The log entry decoder: header checks and `make_entry` over a buffer of
/// back-to-back entries, as recovery walks a segment; whatever decodes
/// re-encodes to an encoding that decodes to the same entry, byte-identical
/// when it was CRC32C and not a configuration (rraft writes CRC32C; braft's
/// configuration encoding is not canonical). Byte 0 odd: checksums are
/// fixed up first.
pub fn entry_codec(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut data = rest.to_vec();
    if sel & 1 == 1 {
        fix_checksums(&mut data);
    }
    let data = data.as_slice();
    let mut off = 0usize;
    let mut index = 1u64;
    while data.len() - off >= HEADER_LEN {
        let h: &[u8; HEADER_LEN] = data[off..off + HEADER_LEN].try_into().expect("24 bytes");
        let _ = entry_codec::plausible_header(h);
        let Ok(header) = entry_codec::decode_header(h) else {
            break;
        };
        let start = off + HEADER_LEN;
        let end = start
            .saturating_add(header.data_len as usize)
            .min(data.len());
        let body = Bytes::copy_from_slice(&data[start..end]);
        let Ok(e) = entry_codec::make_entry(index, &header, body) else {
            break;
        };
        let mut out = Vec::new();
        entry_codec::encode_flagged(&e, header.batch_start, &mut out)
            .expect("a decoded entry encodes");
        let h2: &[u8; HEADER_LEN] = out[..HEADER_LEN].try_into().expect("24 bytes");
        let h2 = entry_codec::decode_header(h2).expect("a re-encoded header decodes");
        let again = entry_codec::make_entry(index, &h2, Bytes::copy_from_slice(&out[HEADER_LEN..]))
            .expect("a re-encoded entry decodes");
        assert_eq!(again, e, "re-encoding changed the entry");
        if header.checksum_type == entry_codec::CHECKSUM_CRC32C && !header.is_configuration() {
            assert_eq!(out.as_slice(), &data[off..end], "re-encoding differs");
        }
        off = end;
        index += 1;
    }
}

/// Recovery from an arbitrary directory: the bytes become a segment file
/// (the first byte picks its name, whether a `log_meta` is there and, bit 3,
/// whether the entries' checksums are fixed up first), and
/// `SegmentLog::open` must return Ok or a clear Err; if Ok, every index it
/// claims to hold must be readable.
pub fn segment_recovery(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let first = u64::from(sel >> 4) + 1;
    let in_progress = sel & 1 == 0;
    let name = if in_progress {
        format!("log_inprogress_{first:020}")
    } else {
        // A closed segment that claims a few entries.
        format!("log_{first:020}_{:020}", first + u64::from(sel >> 1 & 7))
    };
    let mut seg = rest.to_vec();
    if sel & 8 == 8 {
        fix_checksums(&mut seg);
    }
    // A log_meta with arbitrary bytes from the segment's front.
    let meta = (sel & 2 == 2).then(|| &rest[..rest.len().min(16)]);
    let recovered = open_segment(&name, &seg, meta);
    if in_progress && sel & 4 == 4 {
        // The same segment with zeros after it, as a `local://` log keeps
        // them ahead of its last entry: recovery must read them as the end
        // of the log and find what it finds without them.
        let mut zeroed = seg.clone();
        zeroed.resize(seg.len() + 1 + seg.len() * 7 % 8192, 0);
        let with_zeros = open_segment(&name, &zeroed, meta);
        match (&recovered, &with_zeros) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "zeros after the segment changed what it holds"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("zeros after the segment changed whether it opens: {a:?} / {b:?}"),
        }
    }
}

/// Opens `bytes` as the segment file `name` (and `meta` as the log_meta)
/// of a fresh `SegmentLog`: its first and last index and up to 64 of its
/// entries, every index it reports readable; or the error's text.
fn open_segment(
    name: &str,
    bytes: &[u8],
    meta: Option<&[u8]>,
) -> Result<(u64, u64, Vec<Entry>), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(name), bytes).expect("write segment");
    if let Some(meta) = meta {
        std::fs::write(dir.path().join(rraft::storage::LOG_META), meta).expect("write meta");
    }
    let opts = LogOptions {
        segment_size: 1 << 20,
        sync: false,
        cache_bytes: 1 << 16,
        preallocate_bytes: 0,
        ..LogOptions::default()
    };
    let fs: Arc<dyn rraft::storage::FileSystem> = Arc::new(RealFs);
    match SegmentLog::open(fs, dir.path(), opts) {
        Ok((log, _)) => {
            let (lo, hi) = (log.first_index(), log.last_index());
            let mut entries = Vec::new();
            if hi >= lo {
                for i in lo..=hi.min(lo + 64) {
                    entries.push(log.entry(i).expect("an index the log reports is readable"));
                    log.term(i).expect("its term too");
                }
            }
            let _ = log.entries(lo, hi.saturating_add(1), 1 << 20);
            Ok((lo, hi, entries))
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty());
            Err(text)
        }
    }
}

/// Makes every record of a shared log file well formed enough to pass its
/// checks (magic, kind, zero bytes, length within the buffer, both
/// checksums), so that the fuzzer reaches replay rather than the first
/// checksum.
pub fn fix_shared_checksums(buf: &mut [u8]) {
    use rraft::storage::shared_log::RECORD_HEADER_LEN as H;
    let mut off = 0usize;
    while buf.len() - off >= H {
        buf[off..off + 4].copy_from_slice(b"RRSL");
        buf[off + 4] = 1 + buf[off + 4] % 5;
        buf[off + 5..off + 8].fill(0);
        let room = buf.len() - off - H;
        let len = (u32::from_le_bytes(buf[off + 12..off + 16].try_into().expect("4 bytes"))
            as usize)
            .min(room);
        buf[off + 12..off + 16].copy_from_slice(&(len as u32).to_le_bytes());
        let body = crc32c::crc32c(&buf[off + H..off + H + len]);
        buf[off + 32..off + 36].copy_from_slice(&body.to_le_bytes());
        let head = crc32c::crc32c(&buf[off..off + 36]);
        buf[off + 36..off + 40].copy_from_slice(&head.to_le_bytes());
        off += H + len;
    }
}

/// Recovery of the shared log (`shared://`). Byte 0: bit 0 fixes the
/// records' checksums up first; bits 4..8 pick where the rest is split into
/// two files (none when 0). `SharedLog::open` returns Ok or an Err, never
/// panics; every group it knows opens or fails with an Err; an open group's
/// indexes are readable; and an entry appended and synced to the first
/// group that opens is there after a reopen.
pub fn shared_recovery(data: &[u8]) {
    use rraft::storage::SharedLog;
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let split = (usize::from(sel >> 4) * rest.len() / 16).min(rest.len());
    let parts: Vec<&[u8]> = if split == 0 {
        vec![rest]
    } else {
        vec![&rest[..split], &rest[split..]]
    };
    for (i, part) in parts.iter().enumerate() {
        let mut bytes = part.to_vec();
        if sel & 1 == 1 {
            fix_shared_checksums(&mut bytes);
        }
        let name = format!(
            "{}{:020}",
            rraft::storage::shared_log::SHARED_FILE_PREFIX,
            i + 1
        );
        std::fs::write(dir.path().join(name), &bytes).expect("write shared log file");
    }
    let opts = LogOptions {
        segment_size: 1 << 20,
        sync: false,
        cache_bytes: 1 << 16,
        ..LogOptions::default()
    };
    let fs: Arc<dyn rraft::storage::FileSystem> = Arc::new(RealFs);
    let log = match SharedLog::open(fs.clone(), dir.path(), opts) {
        Ok(log) => log,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let mut appended = None;
    for name in log.group_names() {
        let Ok((group, rec)) = log.open_group(&name, 1 << 16) else {
            continue;
        };
        let (lo, hi) = (group.first_index(), group.last_index());
        assert_eq!((rec.first_index, rec.last_index), (lo, hi));
        if hi >= lo {
            for i in lo..=hi.min(lo + 64) {
                let e = group
                    .entry(i)
                    .expect("an index the group reports is readable");
                assert_eq!(group.term(i).expect("its term too"), e.term);
            }
        }
        if appended.is_none() {
            let e = Entry {
                term: 1 << 40,
                index: hi + 1,
                entry_type: 1,
                data: Bytes::from_static(b"appended"),
            };
            group.append(std::slice::from_ref(&e)).expect("append");
            group.sync().expect("sync");
            appended = Some((name.clone(), e));
        }
    }
    drop(log);
    if let Some((name, e)) = appended {
        let log = SharedLog::open(fs, dir.path(), opts).expect("reopen after a clean close");
        let (group, _) = log.open_group(&name, 0).expect("the group opens again");
        assert_eq!(group.last_index(), e.index);
        assert_eq!(group.entry(e.index).expect("the appended entry"), e);
    }
}

/// A small shared log written through the API: two groups, a conflict
/// truncation, a compaction, a configuration entry.
fn shared_seed() -> Vec<u8> {
    use rraft::storage::SharedLog;
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LogOptions {
        sync: false,
        ..LogOptions::default()
    };
    let log = SharedLog::open(Arc::new(RealFs), dir.path(), opts).expect("open");
    let (a, _) = log.open_group("a/127.0.0.1:1:0", 0).expect("group a");
    let (b, _) = log.open_group("b/127.0.0.1:1:0", 0).expect("group b");
    let data = |i: u64, t: u64| Entry {
        term: t,
        index: i,
        entry_type: 1,
        data: Bytes::from(vec![i as u8; 3]),
    };
    a.append(&[data(1, 1), data(2, 1), data(3, 1)])
        .expect("append");
    let conf = Configuration {
        voters: vec!["127.0.0.1:1:0".into()],
        ..Configuration::default()
    };
    b.append(&[Entry {
        term: 1,
        index: 1,
        entry_type: 2,
        data: Bytes::from(conf.encode_to_vec()),
    }])
    .expect("append");
    a.append(&[data(3, 2)]).expect("append");
    b.truncate_prefix(2).expect("compact");
    b.append(&[data(2, 2)]).expect("append");
    b.sync().expect("sync");
    let name = log.file_names().pop().expect("a file");
    drop((a, b, log));
    std::fs::read(dir.path().join(name)).expect("read")
}

/// Peer ids and configuration strings: parse → print → parse is stable,
/// and so is a canonical id through braft's file text.
pub fn peer_ids(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = text.parse::<PeerId>() {
        let printed = p.to_string();
        let again: PeerId = printed.parse().expect("a printed peer id parses");
        assert_eq!(p, again);
        assert_eq!(p.witness, again.witness);
        assert_eq!(printed, again.to_string());
        // braft's file text and back gives the canonical id again.
        let braft = peer_id::to_braft_form(&printed);
        assert_eq!(braft, p.braft_string());
        assert_eq!(peer_id::from_braft_form(&braft), printed);
        let _ = p.addr();
        let _ = p.is_unspecified();
    }
    let _ = peer_id::canonical(&text);
    if let Ok(list) = peer_id::parse_peer_list(&text) {
        let printed = peer_id::format_peer_list(&list);
        let again = peer_id::parse_peer_list(&printed).expect("a printed list parses");
        assert_eq!(list, again);
    }
}

/// Valid encodings for the seed corpora, one list per target.
pub fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let entry = Entry {
        term: 3,
        index: 7,
        entry_type: 1,
        data: Bytes::from_static(b"hello"),
    };
    let conf = Configuration {
        voters: vec!["127.0.0.1:8100:0".into(), "127.0.0.1:8101:0".into()],
        learners: vec!["127.0.0.1:8102:0".into()],
        old_voters: vec![],
    };
    let msg = Message {
        msg_type: 2,
        from: "a:1:0".into(),
        to: "b:2:0".into(),
        term: 4,
        log_term: 3,
        index: 6,
        entries: vec![entry.clone(), entry.clone()],
        commit: 5,
        reject: false,
        reject_hint: 0,
        hint_term: 0,
        snapshot: Some(SnapshotMeta {
            last_index: 9,
            last_term: 2,
            configuration: Some(conf.clone()),
        }),
        context: Bytes::from_static(b"ctx"),
        flight: 3,
        follower_last: Some(7),
        quiesce: true,
    };
    let batch = RaftBatch {
        group: "g".into(),
        messages: vec![msg.clone()],
    };
    let req = Request {
        call_id: 11,
        method: "get".into(),
        group: "g".into(),
        payload: Bytes::from_static(b"\x01\x02"),
    };
    let resp = Response {
        call_id: 11,
        code: 1,
        error_text: "not leader".into(),
        leader_hint: "127.0.0.1:8100:0".into(),
        payload: Bytes::new(),
    };
    let mut beats = Heartbeats::default();
    let beat = Message {
        msg_type: rraft::proto::MessageType::Heartbeat as i32,
        from: "127.0.0.1:8100:0".into(),
        to: "127.0.0.1:8101:0".into(),
        term: 3,
        commit: 5,
        index: 40,
        quiesce: true,
        ..Default::default()
    };
    let _ = beats.push("g", beat);
    let hs = HardState {
        term: 4,
        vote: "a:1:0".into(),
        commit: 6,
    };
    let tagged = |t: u8, v: Vec<u8>| {
        let mut o = vec![t];
        o.extend(v);
        o
    };
    let wire = vec![
        tagged(0, msg.encode_to_vec()),
        tagged(1, entry.encode_to_vec()),
        tagged(2, conf.encode_to_vec()),
        tagged(3, hs.encode_to_vec()),
        tagged(4, msg.snapshot.clone().unwrap_or_default().encode_to_vec()),
        tagged(5, batch.encode_to_vec()),
        tagged(6, req.encode_to_vec()),
        tagged(7, resp.encode_to_vec()),
    ];
    let mut frames = Vec::new();
    let mut stream = BytesMut::new();
    for f in [
        Frame::RaftBatch(batch.clone()),
        Frame::Request(req.clone()),
        Frame::Response(resp.clone()),
        Frame::Heartbeats(beats.clone()),
    ] {
        let mut one = BytesMut::new();
        encode_frame(&f, &mut one, 1 << 20).expect("encode");
        frames.push(tagged(0, one.to_vec()));
        encode_frame(&f, &mut stream, 1 << 20).expect("encode");
    }
    frames.push(tagged(0, stream.to_vec()));
    let bodies = vec![
        tagged(1, batch.encode_to_vec()),
        tagged(2, req.encode_to_vec()),
        tagged(3, resp.encode_to_vec()),
        tagged(4, beats.encode_to_vec()),
    ];
    let mut seg = Vec::new();
    for i in 0..4u64 {
        let e = Entry {
            term: 1 + i / 2,
            index: 1 + i,
            entry_type: 1,
            data: Bytes::from(format!("entry {i}")),
        };
        entry_codec::encode(&e, &mut seg).expect("encode");
    }
    // A configuration entry, stored as braft's ConfigurationPBMeta.
    let conf_entry = Entry {
        term: 2,
        index: 5,
        entry_type: 2,
        data: Bytes::from(conf.encode_to_vec()),
    };
    entry_codec::encode(&conf_entry, &mut seg).expect("encode");
    let mut torn = seg.clone();
    torn.truncate(seg.len() - 3);
    let peers = vec![
        b"127.0.0.1:8100:0".to_vec(),
        b"127.0.0.1:8100".to_vec(),
        b"[::1]:80:2:1".to_vec(),
        b"host.example:9:0,127.0.0.1:1:1,".to_vec(),
    ];
    vec![
        ("wire_message", wire),
        ("frame_stream", frames),
        ("frame_body", bodies),
        (
            "entry_codec",
            vec![tagged(0, seg.clone()), tagged(1, torn.clone())],
        ),
        (
            "segment_recovery",
            vec![
                tagged(0x10, seg.clone()),
                tagged(0x18, torn),
                tagged(0x17, seg),
            ],
        ),
        ("peer_ids", peers),
        (
            "shared_recovery",
            vec![tagged(0, shared_seed()), tagged(0x81, shared_seed())],
        ),
    ]
}
