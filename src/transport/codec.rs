//! One connection's reader and writer in the protocol it speaks: rraft's
//! frames or brpc's baidu_std. The server's connection loop and the RPC
//! client's are written once against these.

use std::io;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::baidu_std::{self, BaiduError, BaiduMessage, BaiduReader, BaiduWriter};
use super::frame::{Frame, FrameError, FrameReader, FrameWriter};
use super::wire::{Request, Response};
use super::Protocol;

/// An answer queued for a connection's writer.
pub(crate) struct Reply {
    pub resp: Response,
    /// Sent over baidu_std with a successful answer; rraft's frames have
    /// no field for it.
    pub attachment: Bytes,
}

/// A request queued for a client connection's writer.
pub(crate) struct Outgoing {
    pub req: Request,
    /// brpc's log id and request attachment (baidu_std only).
    pub log_id: i64,
    pub attachment: Bytes,
}

/// What a connection read.
pub(crate) enum Incoming {
    Frame(Frame),
    Baidu(BaiduMessage),
}

/// Why a connection stops reading.
pub(crate) enum ReadError {
    /// The socket failed (a reset from a crashed peer is not a protocol
    /// error).
    Io(io::Error),
    /// The peer sent something that is not the protocol.
    Malformed(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Malformed(text) => f.write_str(text),
        }
    }
}

impl From<FrameError> for ReadError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => ReadError::Io(e),
            other => ReadError::Malformed(other.to_string()),
        }
    }
}

impl From<BaiduError> for ReadError {
    fn from(e: BaiduError) -> Self {
        match e {
            BaiduError::Io(e) => ReadError::Io(e),
            other => ReadError::Malformed(other.to_string()),
        }
    }
}

pub(crate) enum ConnReader<R> {
    Rraft(FrameReader<R>),
    Baidu(BaiduReader<R>),
}

impl<R: AsyncRead + Unpin> ConnReader<R> {
    pub fn new(protocol: Protocol, inner: R, max: usize) -> Self {
        match protocol {
            Protocol::Rraft => ConnReader::Rraft(FrameReader::new(inner, max)),
            Protocol::BaiduStd => ConnReader::Baidu(BaiduReader::new(inner, max)),
        }
    }

    /// The next message with its size on the wire; `Ok(None)` on a clean
    /// end of stream. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<(Incoming, usize)>, ReadError> {
        Ok(match self {
            ConnReader::Rraft(r) => r.read_frame().await?.map(|(f, n)| (Incoming::Frame(f), n)),
            ConnReader::Baidu(r) => r
                .read_message()
                .await?
                .map(|(m, n)| (Incoming::Baidu(m), n)),
        })
    }
}

pub(crate) enum ConnWriter<W> {
    Rraft(FrameWriter<W>),
    Baidu(BaiduWriter<W>),
}

impl<W: AsyncWrite + Unpin> ConnWriter<W> {
    pub fn new(protocol: Protocol, inner: W, max: usize) -> Self {
        match protocol {
            Protocol::Rraft => ConnWriter::Rraft(FrameWriter::new(inner, max)),
            Protocol::BaiduStd => ConnWriter::Baidu(BaiduWriter::new(inner, max)),
        }
    }

    /// Encodes a server's answer. Over baidu_std the code becomes brpc's
    /// (see [`baidu_std::brpc_error_code`]) and a leader hint is appended
    /// to the error text as ` [leader: <peer id>]`; a failed call carries
    /// neither payload nor attachment (as brpc's servers answer).
    pub fn push_reply(&mut self, reply: Reply) -> Result<(), String> {
        let resp = reply.resp;
        match self {
            ConnWriter::Rraft(w) => w
                .push(&Frame::Response(resp))
                .map(drop)
                .map_err(|e| e.to_string()),
            ConnWriter::Baidu(w) => {
                let code = baidu_std::brpc_error_code(resp.code);
                let meta_and_bodies = if code == 0 {
                    let meta =
                        baidu_std::response_meta(resp.call_id, 0, "", reply.attachment.len());
                    (meta, &resp.payload[..], &reply.attachment[..])
                } else {
                    let text = if resp.leader_hint.is_empty() {
                        resp.error_text.clone()
                    } else {
                        format!("{} [leader: {}]", resp.error_text, resp.leader_hint)
                    };
                    let meta = baidu_std::response_meta(resp.call_id, code, &text, 0);
                    (meta, &[][..], &[][..])
                };
                let (meta, payload, attachment) = meta_and_bodies;
                w.push(&meta, payload, attachment)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Encodes a client's request (over baidu_std, `req.method` is
    /// `package.Service.method`; rraft's frames carry no log id or
    /// attachment).
    pub fn push_request(&mut self, out: Outgoing) -> Result<(), String> {
        let Outgoing {
            req,
            log_id,
            attachment,
        } = out;
        match self {
            ConnWriter::Rraft(w) => w
                .push(&Frame::Request(req))
                .map(drop)
                .map_err(|e| e.to_string()),
            ConnWriter::Baidu(w) => {
                let meta =
                    baidu_std::request_meta(req.call_id, &req.method, log_id, attachment.len());
                w.push(&meta, &req.payload, &attachment)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Bytes buffered and not yet written.
    pub fn buffered(&self) -> usize {
        match self {
            ConnWriter::Rraft(w) => w.buffered(),
            ConnWriter::Baidu(w) => w.buffered(),
        }
    }

    /// Writes everything buffered; returns (messages, bytes).
    pub async fn flush(&mut self) -> io::Result<(usize, usize)> {
        match self {
            ConnWriter::Rraft(w) => w.flush().await,
            ConnWriter::Baidu(w) => w.flush().await,
        }
    }
}

/// A baidu_std response as the transport's [`Response`] (the correlation
/// id, brpc's error code and text, the payload) and its attachment. `Err`
/// when the message is not a response; a compressed payload is the call's
/// ERESPONSE.
pub(crate) fn baidu_response(msg: BaiduMessage) -> Result<Reply, String> {
    let call_id = msg.call_id();
    let compress = msg.compress_type();
    let Some(meta) = msg.meta.response else {
        return Err("baidu_std: a request where a response was expected".into());
    };
    let code = meta.error_code.unwrap_or(0);
    if code == 0 && compress != baidu_std::compress::NONE {
        return Ok(Reply {
            resp: Response {
                call_id,
                code: baidu_std::errors::ERESPONSE,
                error_text: format!(
                    "response compressed with {} ({compress}), which this client does not decode",
                    baidu_std::compress::name(compress)
                ),
                ..Default::default()
            },
            attachment: Bytes::new(),
        });
    }
    Ok(Reply {
        resp: Response {
            call_id,
            code,
            error_text: meta.error_text.unwrap_or_default(),
            leader_hint: String::new(),
            payload: msg.payload,
        },
        attachment: msg.attachment,
    })
}
