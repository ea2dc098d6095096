//! Frames on a TCP stream: `[u32 big-endian body length][u8 kind][body]`,
//! the body one prost message of [`super::wire`].
//!
//! [`FrameReader`] reads into one growing buffer and hands each body out as a
//! frozen [`Bytes`] slice of it, so prost decodes every `bytes` field (entry
//! data, payloads) as a sub-slice without copying. A length field above the
//! configured maximum is refused before anything is allocated, and a body is
//! buffered only as fast as its bytes actually arrive.

use std::fmt;
use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::wire::{Heartbeats, RaftBatch, Request, Response};

/// Default maximum body size: 64 MiB, room for a 512 KiB append batch or a
/// snapshot chunk with plenty to spare.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// Bytes before the body: 4 length + 1 kind.
pub const HEADER_LEN: usize = 5;

/// Growth step of the read buffer while a large body arrives: never allocate
/// much more than what the peer has actually sent.
const READ_CHUNK: usize = 64 << 10;
const MAX_RESERVE_STEP: usize = 4 << 20;
/// A read buffer with less free room than this gets a new allocation.
const MIN_SPARE: usize = 4 << 10;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    RaftBatch = 1,
    Request = 2,
    Response = 3,
    Heartbeats = 4,
}

impl FrameKind {
    /// The kind for a wire byte, `None` if unknown.
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        match b {
            1 => Some(FrameKind::RaftBatch),
            2 => Some(FrameKind::Request),
            3 => Some(FrameKind::Response),
            4 => Some(FrameKind::Heartbeats),
            _ => None,
        }
    }
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    RaftBatch(RaftBatch),
    Request(Request),
    Response(Response),
    Heartbeats(Heartbeats),
}

impl Frame {
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::RaftBatch(_) => FrameKind::RaftBatch,
            Frame::Request(_) => FrameKind::Request,
            Frame::Response(_) => FrameKind::Response,
            Frame::Heartbeats(_) => FrameKind::Heartbeats,
        }
    }

    /// Body length once encoded.
    pub fn body_len(&self) -> usize {
        match self {
            Frame::RaftBatch(m) => m.encoded_len(),
            Frame::Request(m) => m.encoded_len(),
            Frame::Response(m) => m.encoded_len(),
            Frame::Heartbeats(m) => m.encoded_len(),
        }
    }
}

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The socket failed.
    Io(io::Error),
    /// The length field (or an outgoing body) exceeds the maximum.
    TooLarge { len: u64, max: usize },
    /// The kind byte is not one of [`FrameKind`].
    UnknownKind(u8),
    /// The body is not a valid prost message of its kind.
    Decode(prost::DecodeError),
    /// The stream ended inside a frame.
    Truncated { have: usize, need: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::Decode(e) => write!(f, "malformed frame body: {e}"),
            FrameError::Truncated { have, need } => {
                write!(f, "stream ended inside a frame ({have} of {need} bytes)")
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Appends one encoded frame to `dst`. Fails (leaving `dst` untouched) when
/// the body exceeds `max`.
pub fn encode_frame(frame: &Frame, dst: &mut BytesMut, max: usize) -> Result<usize, FrameError> {
    match frame {
        Frame::RaftBatch(m) => {
            let n = encode_message(FrameKind::RaftBatch, m, dst, max)?;
            trace_raft_batch(m, true);
            Ok(n)
        }
        Frame::Request(m) => encode_message(FrameKind::Request, m, dst, max),
        Frame::Response(m) => encode_message(FrameKind::Response, m, dst, max),
        Frame::Heartbeats(m) => encode_message(FrameKind::Heartbeats, m, dst, max),
    }
}

/// Appends one frame of `kind` whose body is `msg` (what [`encode_frame`]
/// does for a message it does not own). Fails (leaving `dst` untouched)
/// when the body exceeds `max`.
pub fn encode_message(
    kind: FrameKind,
    msg: &impl Message,
    dst: &mut BytesMut,
    max: usize,
) -> Result<usize, FrameError> {
    let len = msg.encoded_len();
    if len > max || len > u32::MAX as usize {
        return Err(FrameError::TooLarge {
            len: len as u64,
            max,
        });
    }
    dst.reserve(HEADER_LEN + len);
    dst.put_u32(len as u32);
    dst.put_u8(kind as u8);
    put_message(msg, dst);
    Ok(HEADER_LEN + len)
}

/// Appends `msg` encoded (`msg.encoded_len()` bytes) to `dst`, growing it
/// if needed. Reserve the room first: prost writes varints byte by byte.
pub(crate) fn put_message(msg: &impl Message, dst: &mut BytesMut) {
    msg.encode_raw(&mut FastPut(dst));
}

/// A `BytesMut` whose `put_u8` writes the byte in place. prost writes each
/// varint byte with `put_u8`, which `BytesMut` implements as `put_slice`:
/// a capacity check and a `memcpy` call per byte, which made encoding an
/// Append's entries the largest single cost of a busy leader.
pub(crate) struct FastPut<'a>(pub(crate) &'a mut BytesMut);

// SAFETY: every method forwards to `BytesMut`'s own implementation except
// `put_u8`, which writes one byte inside the capacity (after growing it if
// it is full) before it extends the length over that byte.
unsafe impl BufMut for FastPut<'_> {
    #[inline]
    fn remaining_mut(&self) -> usize {
        self.0.remaining_mut()
    }

    #[inline]
    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's promise (the next `cnt` bytes of the chunk
        // are initialised) is the one `BytesMut::advance_mut` asks for.
        unsafe { self.0.advance_mut(cnt) }
    }

    #[inline]
    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.0.chunk_mut()
    }

    #[inline]
    fn put<T: Buf>(&mut self, src: T)
    where
        Self: Sized,
    {
        self.0.put(src)
    }

    #[inline]
    fn put_slice(&mut self, src: &[u8]) {
        self.0.extend_from_slice(src)
    }

    #[inline]
    fn put_u8(&mut self, n: u8) {
        if self.0.len() == self.0.capacity() {
            self.0.reserve(64);
        }
        let len = self.0.len();
        self.0.spare_capacity_mut()[0].write(n);
        // SAFETY: the byte at `len` lies within the capacity and was just
        // written.
        unsafe { self.0.set_len(len + 1) };
    }
}

/// Records the Appends with entries and the append answers of `batch`
/// ([`crate::stage_trace`]), as sent or as read.
pub(crate) fn trace_raft_batch(batch: &RaftBatch, sent: bool) {
    use crate::proto::MessageType;
    use crate::stage_trace::{self, Stage};
    if !stage_trace::enabled() {
        return;
    }
    for m in &batch.messages {
        match (m.kind(), m.entries.last()) {
            (Some(MessageType::Append), Some(last)) => {
                let stage = if sent {
                    Stage::AppendSent
                } else {
                    Stage::AppendRead
                };
                stage_trace::record(stage, last.index);
            }
            (Some(MessageType::AppendResponse), _) if !m.reject => {
                let stage = if sent { Stage::AckSent } else { Stage::AckRead };
                stage_trace::record(stage, m.index);
            }
            _ => {}
        }
    }
}

/// Decodes a body of `kind`. `bytes` fields of the result are slices of
/// `body` (no copy).
pub fn decode_body(kind: FrameKind, body: Bytes) -> Result<Frame, FrameError> {
    let frame = match kind {
        FrameKind::RaftBatch => {
            Frame::RaftBatch(RaftBatch::decode(body).map_err(FrameError::Decode)?)
        }
        FrameKind::Request => Frame::Request(Request::decode(body).map_err(FrameError::Decode)?),
        FrameKind::Response => Frame::Response(Response::decode(body).map_err(FrameError::Decode)?),
        FrameKind::Heartbeats => {
            Frame::Heartbeats(Heartbeats::decode_reusing(body).map_err(FrameError::Decode)?)
        }
    };
    Ok(frame)
}

/// Tries to split one whole frame off the front of `buf`.
///
/// `Ok(None)`: more bytes are needed (`buf` untouched). Header errors are
/// reported as soon as the 5 header bytes are there, before the body.
pub fn try_decode(buf: &mut BytesMut, max: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge {
            len: len as u64,
            max,
        });
    }
    let kind = FrameKind::from_u8(buf[4]).ok_or(FrameError::UnknownKind(buf[4]))?;
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let body = buf.split_to(len).freeze();
    Ok(Some((decode_body(kind, body)?, HEADER_LEN + len)))
}

/// Reads frames from any `AsyncRead`. [`FrameReader::read_frame`] is
/// cancel-safe (all state lives in the reader), so it can sit in a
/// `tokio::select!` loop.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max_frame: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::new(),
            max: max_frame,
        }
    }

    /// The next frame with its size on the wire; `Ok(None)` on a clean end of
    /// stream between frames.
    pub async fn read_frame(&mut self) -> Result<Option<(Frame, usize)>, FrameError> {
        loop {
            if let Some(f) = try_decode(&mut self.buf, self.max)? {
                return Ok(Some(f));
            }
            // How much is still missing of the frame being read, if its
            // header is in (try_decode checked the length against max).
            let missing = if self.buf.len() >= HEADER_LEN {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                HEADER_LEN + len - self.buf.len()
            } else {
                HEADER_LEN - self.buf.len()
            };
            // Frames handed out are slices of this buffer and may live long
            // (entries in the log cache pin them): fill the current
            // allocation before taking a new one, or every small read would
            // pin a fresh READ_CHUNK allocation (the log cache then held
            // ~8x its byte bound in RSS).
            let spare = self.buf.capacity() - self.buf.len();
            if spare < MIN_SPARE || spare < missing.min(MAX_RESERVE_STEP) {
                self.buf
                    .reserve(missing.clamp(READ_CHUNK, MAX_RESERVE_STEP));
            }
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let need = if self.buf.len() >= 4 {
                    HEADER_LEN
                        + u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                            as usize
                } else {
                    HEADER_LEN
                };
                return Err(FrameError::Truncated {
                    have: self.buf.len(),
                    need,
                });
            }
        }
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

/// Buffers encoded frames and writes them with one `write_all` + `flush`.
pub struct FrameWriter<W> {
    inner: W,
    buf: BytesMut,
    max: usize,
    frames: usize,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W, max_frame: usize) -> Self {
        FrameWriter {
            inner,
            buf: BytesMut::with_capacity(READ_CHUNK),
            max: max_frame,
            frames: 0,
        }
    }

    /// Encodes a frame into the buffer; returns its size on the wire.
    pub fn push(&mut self, frame: &Frame) -> Result<usize, FrameError> {
        let n = encode_frame(frame, &mut self.buf, self.max)?;
        self.frames += 1;
        Ok(n)
    }

    /// Bytes buffered and not yet written.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Frames buffered and not yet written.
    pub fn buffered_frames(&self) -> usize {
        self.frames
    }

    /// Writes everything buffered and flushes; returns (frames, bytes).
    pub async fn flush(&mut self) -> io::Result<(usize, usize)> {
        let out = (self.frames, self.buf.len());
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
            self.frames = 0;
            // Do not keep a huge buffer around after one big snapshot chunk.
            if self.buf.capacity() > 8 * MAX_RESERVE_STEP {
                self.buf = BytesMut::with_capacity(READ_CHUNK);
            }
        }
        self.inner.flush().await?;
        Ok(out)
    }

    /// Encodes, writes and flushes one frame.
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), FrameError> {
        self.push(frame)?;
        self.flush().await?;
        Ok(())
    }

    /// The wrapped writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Entry, Message};
    use prost::Message as _;

    /// `put_message` writes exactly prost's bytes, whether the buffer has
    /// room reserved (the frame encoders) or must grow on the way (a full
    /// buffer, every varint byte then takes the growing path once).
    #[test]
    fn put_message_writes_prosts_bytes_into_reserved_or_full_buffers() {
        let entries: Vec<Entry> = [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX]
            .iter()
            .enumerate()
            .map(|(i, &n)| Entry {
                term: n,
                index: n ^ i as u64,
                entry_type: i as i32 % 3,
                data: Bytes::from(vec![i as u8; i * 61]),
            })
            .collect();
        let batch = RaftBatch {
            group: "g".into(),
            messages: vec![
                Message {
                    to: "127.0.0.1:1:0".into(),
                    term: u64::MAX,
                    entries,
                    ..Default::default()
                },
                Message::default(),
            ],
        };
        let want = batch.encode_to_vec();
        let mut reserved = BytesMut::with_capacity(want.len());
        put_message(&batch, &mut reserved);
        assert_eq!(&reserved[..], &want[..]);
        let mut full = BytesMut::with_capacity(4);
        while full.len() < full.capacity() {
            full.put_u8(9);
        }
        let head = full.len();
        put_message(&batch, &mut full);
        assert_eq!(&full[head..], &want[..]);
        assert_eq!(RaftBatch::decode(&full[head..]).unwrap(), batch);
    }

    #[test]
    fn roundtrip_and_zero_copy() {
        let data = Bytes::from(vec![7u8; 100_000]);
        let batch = RaftBatch {
            group: "g".into(),
            messages: vec![Message {
                to: "127.0.0.1:1:0".into(),
                entries: vec![Entry {
                    data: data.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut buf = BytesMut::new();
        encode_frame(
            &Frame::RaftBatch(batch.clone()),
            &mut buf,
            DEFAULT_MAX_FRAME,
        )
        .unwrap();
        let total = buf.len();
        let start = buf.as_ptr() as usize;
        let (f, n) = try_decode(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(n, total);
        let Frame::RaftBatch(got) = f else { panic!() };
        assert_eq!(got, batch);
        let p = got.messages[0].entries[0].data.as_ptr() as usize;
        assert!(p >= start && p < start + total, "entry data was copied");
    }

    #[test]
    fn header_errors_before_body() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1][..]);
        assert!(matches!(
            try_decode(&mut buf, DEFAULT_MAX_FRAME),
            Err(FrameError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 9][..]);
        assert!(matches!(
            try_decode(&mut buf, DEFAULT_MAX_FRAME),
            Err(FrameError::UnknownKind(9))
        ));
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 2, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            try_decode(&mut buf, DEFAULT_MAX_FRAME),
            Err(FrameError::Decode(_))
        ));
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 2, 0][..]);
        assert!(try_decode(&mut buf, DEFAULT_MAX_FRAME).unwrap().is_none());
    }

    /// The Request as prost derives it with `String` names: the schema
    /// `wire.proto` gives other languages.
    #[derive(Clone, PartialEq, ::prost::Message)]
    struct DerivedRequest {
        #[prost(uint64, tag = "1")]
        call_id: u64,
        #[prost(string, tag = "2")]
        method: String,
        #[prost(string, tag = "3")]
        group: String,
        #[prost(bytes = "bytes", tag = "4")]
        payload: Bytes,
    }

    #[test]
    fn a_request_encodes_as_the_derived_schema_and_decodes_without_copies() {
        let cases = [
            (0, "", "", &b""[..]),
            (
                7,
                "example.CounterService.fetch_add",
                "counter",
                &b"\x08\x01"[..],
            ),
            (u64::MAX, "raft.get_leader", "", &b""[..]),
            (1, "m", "gr\u{00e9}oupe", &[0u8; 300][..]),
        ];
        for (call_id, method, group, payload) in cases {
            let derived = DerivedRequest {
                call_id,
                method: method.into(),
                group: group.into(),
                payload: Bytes::copy_from_slice(payload),
            };
            let req = Request {
                call_id,
                method: method.into(),
                group: group.into(),
                payload: Bytes::copy_from_slice(payload),
            };
            assert_eq!(req.encode_to_vec(), derived.encode_to_vec());
            assert_eq!(req.encoded_len(), derived.encoded_len());
            let back = DerivedRequest::decode(Bytes::from(req.encode_to_vec())).unwrap();
            assert_eq!(back, derived);

            let mut buf = BytesMut::new();
            let total = encode_frame(&Frame::Request(req.clone()), &mut buf, 1 << 20).unwrap();
            let start = buf.as_ptr() as usize;
            let (f, _) = try_decode(&mut buf, 1 << 20).unwrap().unwrap();
            let Frame::Request(got) = f else { panic!() };
            assert_eq!(got, req);
            for name in [&got.method, &got.group] {
                let p = name.as_ptr() as usize;
                assert!(
                    name.is_empty() || (p >= start && p < start + total),
                    "{name:?} was copied out of the frame"
                );
            }
        }
    }

    #[test]
    fn a_request_name_that_is_not_utf8_is_a_decode_error() {
        let mut body = Vec::new();
        prost::encoding::bytes::encode(2, &Bytes::from_static(b"\xff\xfe"), &mut body);
        let mut buf = BytesMut::new();
        buf.put_u32(body.len() as u32);
        buf.put_u8(FrameKind::Request as u8);
        buf.put_slice(&body);
        assert!(matches!(
            try_decode(&mut buf, DEFAULT_MAX_FRAME),
            Err(FrameError::Decode(_))
        ));
    }

    #[test]
    fn oversized_outgoing_refused() {
        let mut buf = BytesMut::new();
        let f = Frame::Request(Request {
            payload: Bytes::from(vec![0u8; 100]),
            ..Default::default()
        });
        assert!(encode_frame(&f, &mut buf, 50).is_err());
        assert!(buf.is_empty());
    }
}
