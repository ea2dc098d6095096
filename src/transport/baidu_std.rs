//! brpc's `baidu_std` protocol, spoken on the same port as rraft's frames.
//!
//! A message on the stream: a 12-byte header (`"PRPC"`, body size u32
//! big-endian, meta size u32 big-endian), then the body: an `RpcMeta`
//! protobuf of `meta size` bytes, the payload (the method's request or
//! response bytes), and the attachment (the last `attachment_size` bytes of
//! the body). Requests carry `RpcMeta.request` (service, method, log id),
//! responses `RpcMeta.response` (error code and text); `correlation_id`
//! matches them. Layout and field numbers are brpc's
//! (`baidu_rpc_meta.proto`, `baidu_rpc_protocol.cpp`), so any brpc client
//! or server talks to this one.
//!
//! Read as an rraft frame header, `"PRPC"` announces a body of over 1 GiB,
//! which no frame may have: the first four bytes of a connection tell the
//! two apart. Only uncompressed bodies are decoded; a request naming another
//! compress type is answered with brpc's `EREQUEST`, a response with one
//! fails the call with `ERESPONSE`.

use std::fmt;
use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The first four bytes of every message.
pub const MAGIC: &[u8; 4] = b"PRPC";
/// Bytes before the body.
pub const HEADER_LEN: usize = 12;
/// Growth step of the read buffer while a large body arrives.
const READ_CHUNK: usize = 64 << 10;
/// The most the read buffer grows by at once.
const MAX_RESERVE_STEP: usize = 4 << 20;

/// brpc's `CompressType` values (options.proto); only NONE is decoded.
pub mod compress {
    pub const NONE: i32 = 0;
    pub const SNAPPY: i32 = 1;
    pub const GZIP: i32 = 2;
    pub const ZLIB: i32 = 3;
    pub const LZ4: i32 = 4;

    /// brpc's name of a compress type.
    pub fn name(t: i32) -> &'static str {
        match t {
            NONE => "none",
            SNAPPY => "snappy",
            GZIP => "gzip",
            ZLIB => "zlib",
            LZ4 => "lz4",
            _ => "unknown",
        }
    }
}

/// brpc's error codes (errno.proto) that this side produces.
pub mod errors {
    /// Service not found.
    pub const ENOSERVICE: i32 = 1001;
    /// Method not found.
    pub const ENOMETHOD: i32 = 1002;
    /// Bad request (e.g. a body compressed in a way not supported).
    pub const EREQUEST: i32 = 1003;
    /// Internal server error.
    pub const EINTERNAL: i32 = 2001;
    /// Bad response (e.g. a body compressed in a way not supported).
    pub const ERESPONSE: i32 = 2002;
    /// The server is stopping.
    pub const ELOGOFF: i32 = 2003;
}

/// brpc's `RpcMeta` (the fields this side reads or writes; others are
/// skipped when decoding).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RpcMeta {
    #[prost(message, optional, tag = "1")]
    pub request: Option<RpcRequestMeta>,
    #[prost(message, optional, tag = "2")]
    pub response: Option<RpcResponseMeta>,
    #[prost(int32, optional, tag = "3")]
    pub compress_type: Option<i32>,
    #[prost(int64, optional, tag = "4")]
    pub correlation_id: Option<i64>,
    #[prost(int32, optional, tag = "5")]
    pub attachment_size: Option<i32>,
}

/// brpc's `RpcRequestMeta`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RpcRequestMeta {
    /// The full service name, e.g. `example.CounterService`.
    #[prost(string, required, tag = "1")]
    pub service_name: String,
    #[prost(string, required, tag = "2")]
    pub method_name: String,
    #[prost(int64, optional, tag = "3")]
    pub log_id: Option<i64>,
}

/// brpc's `RpcResponseMeta`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RpcResponseMeta {
    #[prost(int32, optional, tag = "1")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub error_text: Option<String>,
}

/// One decoded message: the meta, the payload and the attachment (both
/// slices of the read buffer).
#[derive(Clone, Debug, PartialEq)]
pub struct BaiduMessage {
    pub meta: RpcMeta,
    pub payload: Bytes,
    pub attachment: Bytes,
}

impl BaiduMessage {
    /// The correlation id as the transport's call id.
    pub fn call_id(&self) -> u64 {
        self.meta.correlation_id.unwrap_or(0) as u64
    }

    /// The compress type of the payload.
    pub fn compress_type(&self) -> i32 {
        self.meta.compress_type.unwrap_or(compress::NONE)
    }
}

/// Why a message could not be read or written. Every variant but `Io`
/// means the peer does not speak baidu_std correctly: the connection is
/// closed.
#[derive(Debug)]
pub enum BaiduError {
    Io(io::Error),
    /// The first four bytes are not `"PRPC"`.
    BadMagic([u8; 4]),
    /// The body size exceeds the maximum.
    TooLarge {
        len: u64,
        max: usize,
    },
    /// The meta size exceeds the body size.
    MetaTooLarge {
        meta: u32,
        body: u32,
    },
    /// The meta is not a valid `RpcMeta`.
    BadMeta(prost::DecodeError),
    /// `attachment_size` is negative or larger than what follows the meta.
    BadAttachment {
        attachment: i64,
        available: usize,
    },
    /// The stream ended inside a message.
    Truncated {
        have: usize,
        need: usize,
    },
}

impl fmt::Display for BaiduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaiduError::Io(e) => write!(f, "i/o error: {e}"),
            BaiduError::BadMagic(m) => write!(f, "baidu_std: bad magic {m:02x?} (want \"PRPC\")"),
            BaiduError::TooLarge { len, max } => {
                write!(f, "baidu_std: body of {len} bytes exceeds the maximum of {max}")
            }
            BaiduError::MetaTooLarge { meta, body } => write!(
                f,
                "baidu_std: meta size {meta} is larger than the body size {body}"
            ),
            BaiduError::BadMeta(e) => write!(f, "baidu_std: malformed RpcMeta: {e}"),
            BaiduError::BadAttachment {
                attachment,
                available,
            } => write!(
                f,
                "baidu_std: attachment_size {attachment} does not fit the {available} bytes after the meta"
            ),
            BaiduError::Truncated { have, need } => write!(
                f,
                "baidu_std: stream ended inside a message ({have} of {need} bytes)"
            ),
        }
    }
}

impl std::error::Error for BaiduError {}

impl From<io::Error> for BaiduError {
    fn from(e: io::Error) -> Self {
        BaiduError::Io(e)
    }
}

/// Whether a connection starting with `prefix` speaks baidu_std.
pub fn is_baidu_std(prefix: &[u8]) -> bool {
    prefix.starts_with(MAGIC)
}

/// Appends one message to `dst`. Fails (leaving `dst` untouched) when the
/// body would exceed `max`.
pub fn encode(
    meta: &RpcMeta,
    payload: &[u8],
    attachment: &[u8],
    dst: &mut BytesMut,
    max: usize,
) -> Result<usize, BaiduError> {
    let meta_len = meta.encoded_len();
    let body = meta_len + payload.len() + attachment.len();
    if body > max || body > u32::MAX as usize {
        return Err(BaiduError::TooLarge {
            len: body as u64,
            max,
        });
    }
    dst.reserve(HEADER_LEN + body);
    dst.put_slice(MAGIC);
    dst.put_u32(body as u32);
    dst.put_u32(meta_len as u32);
    super::frame::put_message(meta, dst);
    dst.put_slice(payload);
    dst.put_slice(attachment);
    Ok(HEADER_LEN + body)
}

/// The body size announced by a header at the front of `buf` (12 bytes).
fn header(buf: &[u8], max: usize) -> Result<(usize, usize), BaiduError> {
    let magic = [buf[0], buf[1], buf[2], buf[3]];
    if &magic != MAGIC {
        return Err(BaiduError::BadMagic(magic));
    }
    let body = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let meta = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if body as usize > max {
        return Err(BaiduError::TooLarge {
            len: u64::from(body),
            max,
        });
    }
    if meta > body {
        return Err(BaiduError::MetaTooLarge { meta, body });
    }
    Ok((body as usize, meta as usize))
}

/// Tries to split one whole message off the front of `buf`.
///
/// `Ok(None)`: more bytes are needed (`buf` untouched). Header errors are
/// reported as soon as the 12 header bytes are there.
pub fn try_decode(
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<(BaiduMessage, usize)>, BaiduError> {
    if buf.len() < HEADER_LEN {
        // A wrong magic is refused as soon as its bytes are in.
        let n = buf.len().min(4);
        if buf[..n] != MAGIC[..n] {
            let mut magic = [0u8; 4];
            magic[..n].copy_from_slice(&buf[..n]);
            return Err(BaiduError::BadMagic(magic));
        }
        return Ok(None);
    }
    let (body_len, meta_len) = header(buf, max)?;
    if buf.len() < HEADER_LEN + body_len {
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let mut body = buf.split_to(body_len).freeze();
    let meta = RpcMeta::decode(body.split_to(meta_len)).map_err(BaiduError::BadMeta)?;
    let attachment_len = i64::from(meta.attachment_size.unwrap_or(0));
    if attachment_len < 0 || attachment_len as usize > body.len() {
        return Err(BaiduError::BadAttachment {
            attachment: attachment_len,
            available: body.len(),
        });
    }
    let attachment = body.split_off(body.len() - attachment_len as usize);
    Ok(Some((
        BaiduMessage {
            meta,
            payload: body,
            attachment,
        },
        HEADER_LEN + body_len,
    )))
}

/// Reads messages from any `AsyncRead`; [`BaiduReader::read_message`] is
/// cancel-safe. A body is buffered only as fast as its bytes arrive.
pub struct BaiduReader<R> {
    inner: R,
    buf: BytesMut,
    max: usize,
}

impl<R: AsyncRead + Unpin> BaiduReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        BaiduReader {
            inner,
            buf: BytesMut::new(),
            max,
        }
    }

    /// The next message with its size on the wire; `Ok(None)` on a clean
    /// end of stream between messages.
    pub async fn read_message(&mut self) -> Result<Option<(BaiduMessage, usize)>, BaiduError> {
        loop {
            if let Some(m) = try_decode(&mut self.buf, self.max)? {
                return Ok(Some(m));
            }
            let need = if self.buf.len() >= HEADER_LEN {
                HEADER_LEN + header(&self.buf, self.max)?.0
            } else {
                HEADER_LEN
            };
            if self.buf.capacity() - self.buf.len() < READ_CHUNK.min(need - self.buf.len()) {
                self.buf
                    .reserve((need - self.buf.len()).clamp(READ_CHUNK, MAX_RESERVE_STEP));
            }
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(BaiduError::Truncated {
                    have: self.buf.len(),
                    need,
                });
            }
        }
    }
}

/// Buffers encoded messages and writes them with one `write_all` + flush.
pub struct BaiduWriter<W> {
    inner: W,
    buf: BytesMut,
    max: usize,
    messages: usize,
}

impl<W: AsyncWrite + Unpin> BaiduWriter<W> {
    pub fn new(inner: W, max: usize) -> Self {
        BaiduWriter {
            inner,
            buf: BytesMut::with_capacity(READ_CHUNK),
            max,
            messages: 0,
        }
    }

    /// Encodes a message into the buffer.
    pub fn push(
        &mut self,
        meta: &RpcMeta,
        payload: &[u8],
        attachment: &[u8],
    ) -> Result<usize, BaiduError> {
        let n = encode(meta, payload, attachment, &mut self.buf, self.max)?;
        self.messages += 1;
        Ok(n)
    }

    /// Bytes buffered and not yet written.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Writes everything buffered and flushes; returns (messages, bytes).
    pub async fn flush(&mut self) -> io::Result<(usize, usize)> {
        let out = (self.messages, self.buf.len());
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
            self.messages = 0;
            if self.buf.capacity() > 8 * MAX_RESERVE_STEP {
                self.buf = BytesMut::with_capacity(READ_CHUNK);
            }
        }
        self.inner.flush().await?;
        Ok(out)
    }
}

/// The meta of a request: `method` is `Service.method` with the service's
/// full name (`example.CounterService.fetch_add`); the text after the last
/// dot is the method.
pub fn request_meta(call_id: u64, method: &str, log_id: i64, attachment_len: usize) -> RpcMeta {
    let (service, method) = method.rsplit_once('.').unwrap_or(("", method));
    RpcMeta {
        request: Some(RpcRequestMeta {
            service_name: service.to_string(),
            method_name: method.to_string(),
            log_id: (log_id != 0).then_some(log_id),
        }),
        correlation_id: Some(call_id as i64),
        attachment_size: (attachment_len > 0).then_some(attachment_len as i32),
        ..Default::default()
    }
}

/// The meta of a response. `code` is already brpc's (see
/// [`brpc_error_code`]); 0 is success.
pub fn response_meta(call_id: u64, code: i32, text: &str, attachment_len: usize) -> RpcMeta {
    RpcMeta {
        response: Some(RpcResponseMeta {
            error_code: (code != 0).then_some(code),
            error_text: (!text.is_empty()).then(|| text.to_string()),
        }),
        correlation_id: Some(call_id as i64),
        attachment_size: (attachment_len > 0).then_some(attachment_len as i32),
        ..Default::default()
    }
}

/// The error code a brpc client sees for a transport status code: errno
/// values and braft's codes pass unchanged; an internal failure (-1, or
/// the library's EINTERNAL 20002) becomes brpc's `EINTERNAL` (2001), and
/// "server is stopping" (ESHUTDOWN) brpc's `ELOGOFF` (2003).
pub fn brpc_error_code(code: i32) -> i32 {
    match code {
        super::codes::EINTERNAL | 20002 => errors::EINTERNAL,
        super::codes::ESHUTDOWN => errors::ELOGOFF,
        other => other,
    }
}

/// The names a request may be registered under, tried in order: the full
/// `package.Service.method`, then `Service.method` without the package
/// (so a C user may register either).
pub fn method_names(req: &RpcRequestMeta) -> [String; 2] {
    let short = req
        .service_name
        .rsplit_once('.')
        .map_or(req.service_name.as_str(), |(_, s)| s);
    [
        format!("{}.{}", req.service_name, req.method_name),
        format!("{short}.{}", req.method_name),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_attachment() {
        let meta = request_meta(7, "example.CounterService.fetch_add", 42, 3);
        let mut buf = BytesMut::new();
        let n = encode(&meta, b"\x08\x01", b"att", &mut buf, 1 << 20).unwrap();
        assert_eq!(&buf[..4], b"PRPC");
        let (m, used) = try_decode(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(used, n);
        assert_eq!(&m.payload[..], b"\x08\x01");
        assert_eq!(&m.attachment[..], b"att");
        let req = m.meta.request.unwrap();
        assert_eq!(req.service_name, "example.CounterService");
        assert_eq!(req.method_name, "fetch_add");
        assert_eq!(req.log_id, Some(42));
        assert_eq!(m.meta.correlation_id, Some(7));
    }

    #[test]
    fn header_errors() {
        let mut buf = BytesMut::from(&b"PRPX"[..]);
        assert!(matches!(
            try_decode(&mut buf, 100),
            Err(BaiduError::BadMagic(_))
        ));
        let mut buf = BytesMut::from(&b"PRPC\0\0\0\x05\0\0\0\x06"[..]);
        assert!(matches!(
            try_decode(&mut buf, 100),
            Err(BaiduError::MetaTooLarge { .. })
        ));
        let mut buf = BytesMut::from(&b"PRPC\x7f\0\0\0\0\0\0\0"[..]);
        assert!(matches!(
            try_decode(&mut buf, 100),
            Err(BaiduError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&b"PRP"[..]);
        assert!(try_decode(&mut buf, 100).unwrap().is_none());
    }

    #[test]
    fn attachment_larger_than_body_is_refused() {
        let mut meta = request_meta(1, "S.m", 0, 0);
        meta.attachment_size = Some(10);
        let mut buf = BytesMut::new();
        encode(&meta, b"ab", b"", &mut buf, 100).unwrap();
        assert!(matches!(
            try_decode(&mut buf, 100),
            Err(BaiduError::BadAttachment { .. })
        ));
    }

    #[test]
    fn names_full_then_without_package() {
        let req = RpcRequestMeta {
            service_name: "example.CounterService".into(),
            method_name: "fetch_add".into(),
            log_id: None,
        };
        assert_eq!(
            method_names(&req),
            [
                "example.CounterService.fetch_add".to_string(),
                "CounterService.fetch_add".to_string()
            ]
        );
    }
}
