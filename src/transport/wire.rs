//! Envelopes carried in transport frames. Hand-written prost derives like
//! `rraft::proto` (in `crates/rraft-core`); `wire.proto` beside this file is the same schema for other
//! languages (field tags are the contract).

use bytes::Bytes;

use super::wire_str::{self, WireStr};
use crate::core::id::{self, Id as PeerId};
use crate::proto::{Message, MessageType};

/// Raft messages for nodes of one group hosted on the receiving server.
/// Each message's `to` names the node; order is kept per connection.
///
/// The encoding is prost's for `string group = 1; repeated Message
/// messages = 2;`. Decoding counts a message's entries (tag 7 of
/// `Message`) before it decodes the message, so that its list of entries
/// is allocated once at its size rather than grown (and copied) entry by
/// entry; the entries' data stay slices of the frame.
#[derive(Clone, Default, PartialEq, Debug)]
pub struct RaftBatch {
    /// Tag 1.
    pub group: String,
    /// Tag 2.
    pub messages: Vec<Message>,
}

/// `Message.entries`' field number.
const MESSAGE_ENTRIES_TAG: u64 = 7;

/// Most entries a message's list is sized for before decoding; a message
/// with more grows its list as it decodes (a bound on what a malformed
/// frame can make a reader allocate ahead of its contents).
const MAX_PRESIZED_ENTRIES: usize = 1 << 16;

/// How many `entries` fields the encoded `Message` `body` holds, counted
/// up to the first malformed field (the decoder then reports it).
fn count_entries(mut body: &[u8]) -> usize {
    use prost::encoding::decode_varint;
    let mut count = 0;
    while !body.is_empty() && count < MAX_PRESIZED_ENTRIES {
        let Ok(key) = decode_varint(&mut body) else {
            break;
        };
        let skip = match key & 7 {
            0 => match decode_varint(&mut body) {
                Ok(_) => 0,
                Err(_) => break,
            },
            1 => 8,
            2 => {
                if key >> 3 == MESSAGE_ENTRIES_TAG {
                    count += 1;
                }
                match decode_varint(&mut body) {
                    Ok(len) => usize::try_from(len).unwrap_or(usize::MAX),
                    Err(_) => break,
                }
            }
            5 => 4,
            _ => break,
        };
        if skip > body.len() {
            break;
        }
        body = &body[skip..];
    }
    count
}

/// Decodes the encoded `Message` `body` into `msg` as prost's derived
/// decoder does, decoding its entries here: their fields are read straight
/// from the body's bytes and their data are slices of it. Any field this
/// does not read itself (the message's other fields, an entry's unknown or
/// malformed ones) goes to the derived decoder, which also reports every
/// error.
fn merge_message(
    msg: &mut Message,
    body: Bytes,
    ctx: prost::encoding::DecodeContext,
) -> Result<(), prost::DecodeError> {
    use bytes::Buf;
    use prost::encoding::{decode_key, decode_varint, WireType};
    use prost::Message as _;
    let mut rest = body.clone();
    while rest.has_remaining() {
        let (tag, wire_type) = decode_key(&mut rest)?;
        if tag == MESSAGE_ENTRIES_TAG as u32 && wire_type == WireType::LengthDelimited {
            let mut peek = rest.chunk();
            if let Ok(len) = decode_varint(&mut peek) {
                if let Some(entry) = usize::try_from(len).ok().and_then(|len| peek.get(..len)) {
                    msg.entries.push(decode_entry(&body, entry, &ctx)?);
                    rest.advance(rest.len() - peek.len() + entry.len());
                    continue;
                }
            }
        }
        msg.merge_field(tag, wire_type, &mut rest, ctx.clone())?;
    }
    Ok(())
}

/// Decodes one encoded `Entry`, `bytes` (a part of `body`): the data is a
/// slice of `body`.
fn decode_entry(
    body: &Bytes,
    bytes: &[u8],
    ctx: &prost::encoding::DecodeContext,
) -> Result<crate::proto::Entry, prost::DecodeError> {
    use prost::encoding::{decode_key, decode_varint, WireType};
    use prost::Message as _;
    let mut e = crate::proto::Entry::default();
    let mut p = bytes;
    while !p.is_empty() {
        let (tag, wire_type) = decode_key(&mut p)?;
        match (tag, wire_type) {
            (1, WireType::Varint) => e.term = decode_varint(&mut p)?,
            (2, WireType::Varint) => e.index = decode_varint(&mut p)?,
            // An enumeration: an int32, as prost reads it.
            (3, WireType::Varint) => e.entry_type = decode_varint(&mut p)? as i32,
            (4, WireType::LengthDelimited) => {
                let mut peek = p;
                let data = decode_varint(&mut peek)
                    .ok()
                    .and_then(|len| usize::try_from(len).ok())
                    .and_then(|len| peek.get(..len));
                match data {
                    Some(data) => {
                        e.data = body.slice_ref(data);
                        p = &peek[data.len()..];
                    }
                    None => e.merge_field(tag, wire_type, &mut p, ctx.clone())?,
                }
            }
            _ => e.merge_field(tag, wire_type, &mut p, ctx.clone())?,
        }
    }
    Ok(e)
}

impl prost::Message for RaftBatch {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        if !self.group.is_empty() {
            prost::encoding::string::encode(1, &self.group, buf);
        }
        prost::encoding::message::encode_repeated(2, &self.messages, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => prost::encoding::string::merge(wire_type, &mut self.group, buf, ctx),
            2 => {
                use prost::encoding::{decode_varint, WireType};
                // A message whose length and body are in the buffer's
                // contiguous chunk takes the fast path; anything else goes
                // to prost, which reports what is wrong.
                let mut peek = buf.chunk();
                let whole = match decode_varint(&mut peek) {
                    Ok(len) if wire_type == WireType::LengthDelimited => usize::try_from(len)
                        .ok()
                        .filter(|len| *len <= peek.len())
                        .map(|len| (buf.chunk().len() - peek.len(), len)),
                    _ => None,
                };
                let mut msg = Message::default();
                match whole {
                    Some((head, len)) => {
                        buf.advance(head);
                        let body = buf.copy_to_bytes(len);
                        msg.entries = Vec::with_capacity(count_entries(&body));
                        merge_message(&mut msg, body, ctx)?;
                    }
                    None => prost::encoding::message::merge(wire_type, &mut msg, buf, ctx)?,
                }
                self.messages.push(msg);
                Ok(())
            }
            _ => prost::encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        (if self.group.is_empty() {
            0
        } else {
            prost::encoding::string::encoded_len(1, &self.group)
        }) + prost::encoding::message::encoded_len_repeated(2, &self.messages)
    }

    fn clear(&mut self) {
        self.group.clear();
        self.messages.clear();
    }
}

/// A call of a method registered on the server. `call_id` is chosen by the
/// caller and echoed in the [`Response`]; many calls may be in flight on one
/// connection and answers may come back in any order. The method and group
/// names are [`WireStr`]s: decoded from a frame they, like the payload, are
/// slices of the frame's bytes (the encoding is protobuf's `string`).
#[derive(Clone, Default, PartialEq, Debug)]
pub struct Request {
    /// Tag 1.
    pub call_id: u64,
    /// Tag 2.
    pub method: WireStr,
    /// Tag 3.
    pub group: WireStr,
    /// Tag 4.
    pub payload: Bytes,
}

impl prost::Message for Request {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        if self.call_id != 0 {
            prost::encoding::uint64::encode(1, &self.call_id, buf);
        }
        if !self.method.is_empty() {
            wire_str::encode(2, &self.method, buf);
        }
        if !self.group.is_empty() {
            wire_str::encode(3, &self.group, buf);
        }
        if !self.payload.is_empty() {
            prost::encoding::bytes::encode(4, &self.payload, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => prost::encoding::uint64::merge(wire_type, &mut self.call_id, buf, ctx),
            2 => wire_str::merge(wire_type, &mut self.method, buf, ctx),
            3 => wire_str::merge(wire_type, &mut self.group, buf, ctx),
            4 => prost::encoding::bytes::merge(wire_type, &mut self.payload, buf, ctx),
            _ => prost::encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        (if self.call_id != 0 {
            prost::encoding::uint64::encoded_len(1, &self.call_id)
        } else {
            0
        }) + (if self.method.is_empty() {
            0
        } else {
            wire_str::encoded_len(2, &self.method)
        }) + (if self.group.is_empty() {
            0
        } else {
            wire_str::encoded_len(3, &self.group)
        }) + (if self.payload.is_empty() {
            0
        } else {
            prost::encoding::bytes::encoded_len(4, &self.payload)
        })
    }

    fn clear(&mut self) {
        *self = Request::default();
    }
}

/// The answer to a [`Request`]. `code` 0 is success; otherwise an errno or
/// braft code (see [`super::codes`]) with `error_text`, and on "not leader"
/// (EPERM) the leader's peer id in `leader_hint` when known.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Response {
    #[prost(uint64, tag = "1")]
    pub call_id: u64,
    #[prost(int32, tag = "2")]
    pub code: i32,
    #[prost(string, tag = "3")]
    pub error_text: String,
    #[prost(string, tag = "4")]
    pub leader_hint: String,
    #[prost(bytes = "bytes", tag = "5")]
    pub payload: Bytes,
}

/// The heartbeats and heartbeat answers of every group two servers share,
/// in one frame: a sender puts all it has queued for a server into one
/// (Raft messages of other kinds travel in [`RaftBatch`]es). Peer ids are
/// listed once and named by position; decoded from a frame they are slices
/// of it, shared by every message of the frame that names them.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct Heartbeats {
    /// Tag 1 (repeated `string`).
    pub peers: Vec<PeerId>,
    /// Tag 2.
    pub beats: Vec<Beat>,
}

impl prost::Message for Heartbeats {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        for p in &self.peers {
            id::encode(1, p, buf);
        }
        prost::encoding::message::encode_repeated(2, &self.beats, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => {
                let mut p = PeerId::empty();
                id::merge(wire_type, &mut p, buf, ctx)?;
                self.peers.push(p);
                Ok(())
            }
            2 => prost::encoding::message::merge_repeated(wire_type, &mut self.beats, buf, ctx),
            _ => prost::encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.peers
            .iter()
            .map(|p| id::encoded_len(1, p))
            .sum::<usize>()
            + prost::encoding::message::encoded_len_repeated(2, &self.beats)
    }

    fn clear(&mut self) {
        self.peers.clear();
        self.beats.clear();
    }
}

/// One heartbeat (or answer) of one group: the fields of the Raft message
/// that a heartbeat uses.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Beat {
    /// The group's name (UTF-8; a `string` on the wire). Held as bytes so
    /// that a decoded beat's name is a slice of its frame, not a copy.
    #[prost(bytes = "bytes", tag = "1")]
    pub group: Bytes,
    /// Positions in [`Heartbeats::peers`].
    #[prost(uint32, tag = "2")]
    pub from: u32,
    #[prost(uint32, tag = "3")]
    pub to: u32,
    /// A HeartbeatResponse; otherwise a Heartbeat.
    #[prost(bool, tag = "4")]
    pub response: bool,
    #[prost(uint64, tag = "5")]
    pub term: u64,
    #[prost(uint64, tag = "6")]
    pub commit: u64,
    /// The leader's tick stamp, echoed by the answer.
    #[prost(uint64, tag = "7")]
    pub index: u64,
    #[prost(bytes = "bytes", tag = "8")]
    pub context: Bytes,
    #[prost(uint64, optional, tag = "9")]
    pub follower_last: Option<u64>,
    #[prost(bool, tag = "10")]
    pub quiesce: bool,
    /// A heartbeat: the term of the entry at its commit point (what lets
    /// it stand for an empty Append there); 0 in an answer.
    #[prost(uint64, tag = "11")]
    pub log_term: u64,
}

impl Heartbeats {
    /// Takes `msg` of `group` if it is a heartbeat or an answer that a
    /// [`Beat`] carries whole (None); otherwise gives it back.
    pub fn push(&mut self, group: &str, msg: Message) -> Option<Message> {
        if Self::beat_kind(&msg).is_none() {
            return Some(msg);
        }
        self.push_owned(group.to_string(), msg).map(|(_, m)| m)
    }

    /// [`Heartbeats::push`] taking the group's name by value (no copy of
    /// it); a message a [`Beat`] cannot carry comes back with it.
    pub fn push_owned(&mut self, group: String, msg: Message) -> Option<(String, Message)> {
        let Some(response) = Self::beat_kind(&msg) else {
            return Some((group, msg));
        };
        // A heartbeat names its commit point's term (`log_term`), which
        // the beat carries; an answer carries none.
        let plain = (!response || msg.log_term == 0)
            && msg.entries.is_empty()
            && !msg.reject
            && msg.reject_hint == 0
            && msg.hint_term == 0
            && msg.snapshot.is_none()
            && msg.flight == 0;
        if !plain {
            return Some((group, msg));
        }
        let from = self.peer(msg.from);
        let to = self.peer(msg.to);
        self.beats.push(Beat {
            group: Bytes::from(group),
            from,
            to,
            response,
            term: msg.term,
            commit: msg.commit,
            index: msg.index,
            context: msg.context,
            follower_last: msg.follower_last,
            quiesce: msg.quiesce,
            log_term: msg.log_term,
        });
        None
    }

    /// Whether `msg` is a heartbeat (Some(false)) or an answer to one
    /// (Some(true)).
    fn beat_kind(msg: &Message) -> Option<bool> {
        match msg.kind() {
            Some(MessageType::Heartbeat) => Some(false),
            Some(MessageType::HeartbeatResponse) => Some(true),
            _ => None,
        }
    }

    fn peer(&mut self, id: PeerId) -> u32 {
        match self.peers.iter().position(|p| *p == id) {
            Some(i) => i as u32,
            None => {
                self.peers.push(id);
                (self.peers.len() - 1) as u32
            }
        }
    }

    /// The Raft messages again, with their groups, in order. A beat naming
    /// a peer position that is not listed is dropped (counted by the caller
    /// as the difference in length).
    pub fn into_messages(self) -> Vec<(String, Message)> {
        let peers = self.peers;
        self.beats
            .into_iter()
            .filter_map(|b| {
                let group = b.group_name()?.to_string();
                b.into_message(&peers).map(|m| (group, m))
            })
            .collect()
    }

    /// Clears the frame for reuse, keeping the room of its lists.
    pub fn clear(&mut self) {
        self.peers.clear();
        self.beats.clear();
    }
}

thread_local! {
    /// The list of beats of the last frame this thread routed, emptied:
    /// the next frame decoded on the thread fills it (see
    /// [`Heartbeats::decode_reusing`]). A frame of hundreds of beats is tens
    /// of KiB, which the allocator would otherwise hand back to the system
    /// and fault in again at every frame.
    static SPARE_BEATS: std::cell::Cell<Vec<Beat>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Most beats a spare list keeps room for.
const MAX_SPARE_BEATS: usize = 4096;

impl Heartbeats {
    /// Decodes a frame's body into this thread's spare list of beats (see
    /// [`Heartbeats::recycle`]).
    pub fn decode_reusing(body: Bytes) -> Result<Heartbeats, prost::DecodeError> {
        use prost::Message as _;
        let beats = SPARE_BEATS.with(|s| s.take());
        let mut frame = Heartbeats {
            peers: Vec::new(),
            beats,
        };
        frame.merge(body)?;
        Ok(frame)
    }

    /// Keeps `beats` (emptied) for the next frame decoded on this thread.
    pub fn recycle(mut beats: Vec<Beat>) {
        beats.clear();
        if beats.capacity() <= MAX_SPARE_BEATS {
            SPARE_BEATS.with(|s| {
                let old = s.take();
                s.set(if beats.capacity() >= old.capacity() {
                    beats
                } else {
                    old
                });
            });
        }
    }
}

impl Beat {
    /// The group's name; None when it is not UTF-8.
    pub fn group_name(&self) -> Option<&str> {
        std::str::from_utf8(&self.group).ok()
    }

    /// The Raft message again; None when it names a peer position that
    /// `peers` (its frame's list) does not have.
    pub fn into_message(self, peers: &[PeerId]) -> Option<Message> {
        let from = peers.get(self.from as usize)?.clone();
        let to = peers.get(self.to as usize)?.clone();
        let kind = if self.response {
            MessageType::HeartbeatResponse
        } else {
            MessageType::Heartbeat
        };
        let msg = Message {
            msg_type: kind as i32,
            from,
            to,
            term: self.term,
            commit: self.commit,
            index: self.index,
            context: self.context,
            follower_last: self.follower_last,
            quiesce: self.quiesce,
            log_term: self.log_term,
            ..Default::default()
        };
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn frame_of(groups: &[&str]) -> Bytes {
        let mut frame = Heartbeats::default();
        for g in groups {
            let msg = Message {
                msg_type: MessageType::Heartbeat as i32,
                from: "a:1:0".into(),
                to: "b:1:0".into(),
                term: 2,
                commit: 5,
                log_term: 2,
                ..Default::default()
            };
            assert!(frame.push(g, msg).is_none());
        }
        Bytes::from(frame.encode_to_vec())
    }

    /// `RaftBatch` as prost derives it: the schema `wire.proto` gives.
    #[derive(Clone, PartialEq, ::prost::Message)]
    struct DerivedRaftBatch {
        #[prost(string, tag = "1")]
        group: String,
        #[prost(message, repeated, tag = "2")]
        messages: Vec<Message>,
    }

    fn append_of(n: usize) -> Message {
        Message {
            msg_type: MessageType::Append as i32,
            from: "a:1:0".into(),
            to: "b:1:0".into(),
            term: 3,
            log_term: 2,
            index: 40,
            commit: 41,
            entries: (0..n as u64)
                .map(|i| crate::proto::Entry {
                    term: 3,
                    index: 41 + i,
                    entry_type: (i % 3) as i32,
                    data: Bytes::from(vec![i as u8; (i as usize * 37) % 300]),
                })
                .collect(),
            context: Bytes::from_static(b"ctx"),
            follower_last: Some(9),
            ..Default::default()
        }
    }

    #[test]
    fn a_raft_batch_encodes_and_decodes_as_the_derived_schema() {
        let batches = [
            RaftBatch::default(),
            RaftBatch {
                group: "g".into(),
                messages: vec![append_of(0), Message::default(), append_of(100)],
            },
            RaftBatch {
                group: String::new(),
                messages: vec![append_of(1)],
            },
        ];
        for batch in batches {
            let derived = DerivedRaftBatch {
                group: batch.group.clone(),
                messages: batch.messages.clone(),
            };
            let bytes = batch.encode_to_vec();
            assert_eq!(bytes, derived.encode_to_vec());
            assert_eq!(batch.encoded_len(), derived.encoded_len());
            let body = Bytes::from(bytes);
            let back = RaftBatch::decode(body.clone()).unwrap();
            assert_eq!(back, batch);
            for m in &back.messages {
                assert_eq!(
                    m.entries.capacity(),
                    m.entries.len(),
                    "the entries are allocated once, at their count"
                );
                for e in &m.entries {
                    let p = e.data.as_ptr() as usize;
                    let start = body.as_ptr() as usize;
                    assert!(
                        e.data.is_empty() || (p >= start && p < start + body.len()),
                        "entry data was copied"
                    );
                }
            }
        }
    }

    #[test]
    fn a_damaged_raft_batch_decodes_as_the_derived_schema_does() {
        let batch = RaftBatch {
            group: "g".into(),
            messages: vec![append_of(5), append_of(2)],
        };
        let bytes = batch.encode_to_vec();
        let mut cases: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
        // Fields in an order of another encoder, repeated and unknown
        // fields, in a message and in its entries.
        use prost::encoding::{bytes as pbytes, encode_key, encode_varint, uint64, WireType};
        let mut entry = Vec::new();
        uint64::encode(1, &4, &mut entry);
        pbytes::encode(4, &Bytes::from_static(b"first"), &mut entry);
        uint64::encode(9, &77, &mut entry);
        pbytes::encode(10, &Bytes::from_static(b"unknown"), &mut entry);
        uint64::encode(1, &5, &mut entry);
        uint64::encode(3, &u64::MAX, &mut entry);
        pbytes::encode(4, &Bytes::from_static(b"last"), &mut entry);
        uint64::encode(2, &6, &mut entry);
        let mut msg = Vec::new();
        uint64::encode(8, &3, &mut msg);
        pbytes::encode(7, &Bytes::from(entry.clone()), &mut msg);
        uint64::encode(1, &(MessageType::Append as u64), &mut msg);
        pbytes::encode(7, &Bytes::new(), &mut msg);
        pbytes::encode(13, &Bytes::from_static(b"ctx"), &mut msg);
        pbytes::encode(7, &Bytes::from(entry), &mut msg);
        // An entries field that is not length-delimited.
        let mut bad = msg.clone();
        uint64::encode(7, &1, &mut bad);
        for m in [msg, bad] {
            let mut b = Vec::new();
            pbytes::encode(1, &Bytes::from_static(b"g"), &mut b);
            encode_key(2, WireType::LengthDelimited, &mut b);
            encode_varint(m.len() as u64, &mut b);
            b.extend_from_slice(&m);
            cases.push(b);
        }
        let odd = RaftBatch::decode(Bytes::from(cases[cases.len() - 2].clone())).unwrap();
        let entries = &odd.messages[0].entries;
        assert_eq!(entries.len(), 3);
        assert_eq!(odd.messages[0].context, Bytes::from_static(b"ctx"));
        assert_eq!((entries[2].term, entries[2].index), (5, 6));
        assert_eq!(
            (entries[2].entry_type, &entries[2].data[..]),
            (-1, &b"last"[..])
        );
        assert!(RaftBatch::decode(Bytes::from(cases[cases.len() - 1].clone())).is_err());
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                cases.push(b);
            }
        }
        for case in cases {
            let mine = RaftBatch::decode(Bytes::from(case.clone()));
            let derived = DerivedRaftBatch::decode(Bytes::from(case.clone()));
            match (mine, derived) {
                (Ok(m), Ok(d)) => {
                    assert_eq!((m.group, m.messages), (d.group, d.messages), "{case:?}")
                }
                (Err(_), Err(_)) => {}
                (m, d) => panic!("{case:?}: {m:?} vs {d:?}"),
            }
        }
    }

    #[test]
    fn entries_are_counted_up_to_the_first_malformed_field() {
        let m = append_of(7);
        let body = m.encode_to_vec();
        assert_eq!(count_entries(&body), 7);
        // A body cut inside its third entry counts the entries whose
        // field starts before the cut.
        let through_third = Message {
            commit: 0,
            context: Bytes::new(),
            follower_last: None,
            ..append_of(3)
        }
        .encode_to_vec();
        assert_eq!(&body[..through_third.len()], &through_third[..]);
        let cut = through_third.len() - 2;
        assert_eq!(count_entries(&body[..cut]), 3);
        assert_eq!(count_entries(&[0xff; 11]), 0);
        assert_eq!(count_entries(&[]), 0);
    }

    #[test]
    fn a_frame_decoded_into_a_recycled_list_holds_only_its_own_beats() {
        let many: Vec<String> = (0..20).map(|i| format!("g{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let first = Heartbeats::decode_reusing(frame_of(&many)).unwrap();
        assert_eq!(first.beats.len(), 20);
        Heartbeats::recycle(first.beats);
        let second = Heartbeats::decode_reusing(frame_of(&["g4"])).unwrap();
        assert!(second.beats.capacity() >= 20, "the list's room is reused");
        let groups: Vec<&str> = second.beats.iter().filter_map(Beat::group_name).collect();
        assert_eq!(groups, ["g4"]);
        assert_eq!(second.into_messages().len(), 1);
    }
}
