//! A minimal HTTP/1.x server on the same port as the frames, for status
//! pages (braft serves `/raft_stat` on its brpc port). A connection whose
//! first four bytes are `GET ` or `HEAD` speaks HTTP: read as a frame
//! header, those bytes would announce a body of over 1 GiB, which no frame
//! may have. One request per connection; the answer closes it.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a status page answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl HttpReply {
    pub fn text(status: u16, body: impl Into<String>) -> HttpReply {
        HttpReply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Answers GET requests by path (without the query string). Called on the
/// blocking pool: it may wait for nodes.
pub trait HttpHandler: Send + Sync {
    fn get(&self, path: &str) -> HttpReply;
}

/// The request head may not exceed this.
const MAX_HEAD: usize = 16 << 10;
/// A client has this long to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a connection starting with `prefix` (4 bytes) speaks HTTP.
pub(crate) fn is_http(prefix: &[u8]) -> bool {
    prefix.starts_with(b"GET ") || prefix.starts_with(b"HEAD")
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    }
}

/// Reads one request, answers it through `handler` and closes.
pub(crate) async fn serve(mut stream: TcpStream, handler: Option<Arc<dyn HttpHandler>>) {
    let mut head = Vec::with_capacity(1024);
    let read_head = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() > MAX_HEAD {
                return Err(std::io::Error::other("request head too large"));
            }
        }
        Ok(())
    };
    let reply = match tokio::time::timeout(HEAD_TIMEOUT, read_head).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
        _ => Some(HttpReply::text(400, "bad request\n")),
    };
    let line = String::from_utf8_lossy(&head);
    let mut words = line.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let head_only = method == "HEAD";
    let reply = match (reply, handler) {
        (Some(reply), _) => reply,
        _ if method != "GET" && method != "HEAD" => HttpReply::text(405, "only GET\n"),
        (None, None) => HttpReply::text(404, "no status pages on this port\n"),
        (None, Some(handler)) => {
            let path = target.split('?').next().unwrap_or("").to_string();
            match tokio::task::spawn_blocking(move || handler.get(&path)).await {
                Ok(reply) => reply,
                Err(_) => HttpReply::text(500, "status page failed\n"),
            }
        }
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(reply.body.as_bytes());
    }
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}
