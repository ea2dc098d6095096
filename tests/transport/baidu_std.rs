//! brpc's baidu_std on the server's port, driven by a client written here
//! from brpc's wire layout (not the library's codec): user methods with
//! body, attachment and log id, error mapping, unknown names, compressed
//! bodies, hostile frames; rraft's frames and HTTP keep working on the same
//! port; the library's own baidu_std client against the same server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rraft::transport::{
    codes, CallInfo, Protocol, Request, Responder, RpcClient, RpcError, Server,
};

use super::runtime;

const T: Duration = Duration::from_secs(5);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    varint(out, u64::from(tag << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn field_varint(out: &mut Vec<u8>, tag: u32, v: u64) {
    varint(out, u64::from(tag << 3));
    varint(out, v);
}

/// One request as brpc's channel writes it.
struct Call<'a> {
    service: &'a str,
    method: &'a str,
    correlation_id: u64,
    log_id: u64,
    compress_type: u64,
    body: &'a [u8],
    attachment: &'a [u8],
}

impl Default for Call<'_> {
    fn default() -> Self {
        Call {
            service: "example.EchoService",
            method: "echo",
            correlation_id: 1,
            log_id: 0,
            compress_type: 0,
            body: b"",
            attachment: b"",
        }
    }
}

fn encode_call(c: &Call) -> Vec<u8> {
    let mut request_meta = Vec::new();
    field_bytes(&mut request_meta, 1, c.service.as_bytes());
    field_bytes(&mut request_meta, 2, c.method.as_bytes());
    if c.log_id != 0 {
        field_varint(&mut request_meta, 3, c.log_id);
    }
    let mut meta = Vec::new();
    field_bytes(&mut meta, 1, &request_meta);
    if c.compress_type != 0 {
        field_varint(&mut meta, 3, c.compress_type);
    }
    field_varint(&mut meta, 4, c.correlation_id);
    if !c.attachment.is_empty() {
        field_varint(&mut meta, 5, c.attachment.len() as u64);
    }
    let body_len = meta.len() + c.body.len() + c.attachment.len();
    let mut out = b"PRPC".to_vec();
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(c.body);
    out.extend_from_slice(c.attachment);
    out
}

/// A decoded response.
#[derive(Debug, Default)]
struct Answer {
    correlation_id: u64,
    error_code: i64,
    error_text: String,
    body: Vec<u8>,
    attachment: Vec<u8>,
}

fn read_varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Each (tag, varint value or bytes) of a protobuf message.
fn fields(b: &[u8]) -> Vec<(u32, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = read_varint(b, &mut i);
        match key & 7 {
            0 => out.push(((key >> 3) as u32, read_varint(b, &mut i), Vec::new())),
            2 => {
                let n = read_varint(b, &mut i) as usize;
                out.push(((key >> 3) as u32, 0, b[i..i + n].to_vec()));
                i += n;
            }
            w => panic!("unexpected wire type {w}"),
        }
    }
    out
}

fn read_answer(s: &mut TcpStream) -> Answer {
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head[..4], b"PRPC");
    let body_len = u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize;
    let meta_len = u32::from_be_bytes(head[8..12].try_into().unwrap()) as usize;
    let mut body = vec![0u8; body_len];
    s.read_exact(&mut body).unwrap();
    let mut a = Answer::default();
    let mut attachment = 0usize;
    for (tag, v, bytes) in fields(&body[..meta_len]) {
        match tag {
            2 => {
                for (t, v, b) in fields(&bytes) {
                    match t {
                        1 => a.error_code = v as i32 as i64,
                        2 => a.error_text = String::from_utf8(b).unwrap(),
                        _ => {}
                    }
                }
            }
            4 => a.correlation_id = v,
            5 => attachment = v as usize,
            _ => {}
        }
    }
    let rest = &body[meta_len..];
    a.body = rest[..rest.len() - attachment].to_vec();
    a.attachment = rest[rest.len() - attachment..].to_vec();
    a
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

fn call(addr: &str, c: &Call) -> Answer {
    let mut s = connect(addr);
    s.write_all(&encode_call(c)).unwrap();
    read_answer(&mut s)
}

/// A server with an echo method under its full name, a counter method
/// registered without its package, and methods that fail.
fn setup(rt: &tokio::runtime::Runtime) -> (Arc<Server>, String) {
    let s = Server::bind("127.0.0.1:0", rt.handle()).unwrap();
    let addr = s.local_addr().to_string();
    s.add_method(
        "example.EchoService.echo",
        Arc::new(|req: Request, r: Responder| {
            // Echo the body; the reply's attachment is the request's log id
            // in decimal followed by the request's attachment.
            let mut att = format!("{}:", r.log_id()).into_bytes();
            att.extend_from_slice(r.request_attachment());
            r.reply_with_attachment(req.payload, Bytes::from(att))
        }),
    )
    .unwrap();
    s.add_method(
        "CounterService.fetch_add",
        Arc::new(|req: Request, r: Responder| {
            let mut out = b"added ".to_vec();
            out.extend_from_slice(&req.payload);
            r.reply(Bytes::from(out))
        }),
    )
    .unwrap();
    s.add_method(
        "example.EchoService.fail",
        Arc::new(|_req: Request, r: Responder| {
            r.reply_error(codes::EPERM, "not the leader", "10.0.0.1:80:0")
        }),
    )
    .unwrap();
    s.add_method(
        "example.EchoService.drop",
        Arc::new(|_req: Request, r: Responder| drop(r)),
    )
    .unwrap();
    (s, addr)
}

#[test]
fn user_method_with_body_attachment_and_log_id() {
    let rt = runtime();
    let (_s, addr) = setup(&rt);
    let a = call(
        &addr,
        &Call {
            correlation_id: 77,
            log_id: 4242,
            body: b"\x08\x01",
            attachment: b"tail",
            ..Default::default()
        },
    );
    assert_eq!(a.correlation_id, 77);
    assert_eq!(a.error_code, 0, "{a:?}");
    assert_eq!(a.body, b"\x08\x01");
    assert_eq!(a.attachment, b"4242:tail");
    // Without attachment or log id.
    let a = call(
        &addr,
        &Call {
            body: b"plain",
            ..Default::default()
        },
    );
    assert_eq!((a.error_code, &a.body[..]), (0, &b"plain"[..]));
    assert_eq!(a.attachment, b"0:");
}

#[test]
fn name_without_package_matches() {
    let rt = runtime();
    let (_s, addr) = setup(&rt);
    let a = call(
        &addr,
        &Call {
            service: "example.CounterService",
            method: "fetch_add",
            body: b"\x08\x01",
            ..Default::default()
        },
    );
    assert_eq!(a.error_code, 0, "{a:?}");
    assert_eq!(a.body, b"added \x08\x01");
}

#[test]
fn errors_map_to_brpc_codes() {
    let rt = runtime();
    let (_s, addr) = setup(&rt);
    let fail = call(
        &addr,
        &Call {
            method: "fail",
            ..Default::default()
        },
    );
    assert_eq!(fail.error_code, i64::from(codes::EPERM));
    assert_eq!(fail.error_text, "not the leader [leader: 10.0.0.1:80:0]");
    assert!(fail.body.is_empty() && fail.attachment.is_empty());
    let dropped = call(
        &addr,
        &Call {
            method: "drop",
            ..Default::default()
        },
    );
    assert_eq!(dropped.error_code, 2001, "brpc's EINTERNAL: {dropped:?}");
    let no_method = call(
        &addr,
        &Call {
            method: "nope",
            ..Default::default()
        },
    );
    assert_eq!(no_method.error_code, 1002, "ENOMETHOD: {no_method:?}");
    assert!(no_method.error_text.contains("example.EchoService/nope"));
    let no_service = call(
        &addr,
        &Call {
            service: "other.Service",
            method: "echo",
            ..Default::default()
        },
    );
    assert_eq!(no_service.error_code, 1001, "ENOSERVICE: {no_service:?}");
    // The library's own methods are not reachable over baidu_std.
    let internal = call(
        &addr,
        &Call {
            service: "raft",
            method: "get_leader",
            ..Default::default()
        },
    );
    assert_eq!(internal.error_code, 1001, "{internal:?}");
    let compressed = call(
        &addr,
        &Call {
            compress_type: 1,
            body: b"snappy?",
            ..Default::default()
        },
    );
    assert_eq!(compressed.error_code, 1003, "EREQUEST: {compressed:?}");
    assert!(compressed.error_text.contains("snappy"), "{compressed:?}");
}

#[test]
fn pipelined_calls_on_one_connection() {
    let rt = runtime();
    let (_s, addr) = setup(&rt);
    let mut s = connect(&addr);
    let mut out = Vec::new();
    for id in 1..=50u64 {
        let body = id.to_string();
        out.extend(encode_call(&Call {
            correlation_id: id,
            body: body.as_bytes(),
            ..Default::default()
        }));
    }
    s.write_all(&out).unwrap();
    let mut seen = Vec::new();
    for _ in 0..50 {
        let a = read_answer(&mut s);
        assert_eq!(a.body, a.correlation_id.to_string().as_bytes());
        seen.push(a.correlation_id);
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=50).collect::<Vec<_>>());
}

/// Writes `bytes` (then half-closes) and expects the server to close the
/// connection.
fn expect_closed(addr: &str, bytes: &[u8]) {
    let mut s = connect(addr);
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("connection not closed: {other:?}"),
    }
}

#[test]
fn hostile_frames_close_only_their_connection() {
    let rt = runtime();
    let (s, addr) = setup(&rt);
    let good = encode_call(&Call {
        body: b"x",
        ..Default::default()
    });
    // A connection holding a partial frame open does not stall others.
    let mut stalled = connect(&addr);
    stalled.write_all(&good[..good.len() - 1]).unwrap();
    // Truncated: the stream ends inside the body.
    expect_closed(&addr, &good[..good.len() - 1]);
    // Truncated inside the header.
    expect_closed(&addr, b"PRPC\0\0");
    // meta size larger than body size.
    expect_closed(&addr, b"PRPC\0\0\0\x02\0\0\0\x09xx");
    // A body over the maximum frame size.
    expect_closed(&addr, b"PRPC\xff\xff\xff\xff\0\0\0\x01");
    // A meta that is not protobuf.
    expect_closed(&addr, b"PRPC\0\0\0\x03\0\0\0\x03\xff\xff\xff");
    // attachment_size larger than what follows the meta.
    let mut meta = Vec::new();
    field_varint(&mut meta, 4, 1);
    field_varint(&mut meta, 5, 100);
    let mut bad = b"PRPC".to_vec();
    bad.extend_from_slice(&(meta.len() as u32 + 2).to_be_bytes());
    bad.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    bad.extend_from_slice(&meta);
    bad.extend_from_slice(b"ab");
    expect_closed(&addr, &bad);
    // A response (no request meta) sent to the server.
    let mut meta = Vec::new();
    field_bytes(&mut meta, 2, &[]);
    let mut resp = b"PRPC".to_vec();
    resp.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    resp.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    resp.extend_from_slice(&meta);
    expect_closed(&addr, &resp);
    // Garbage after a good frame closes that connection too.
    let mut mixed = good.clone();
    mixed.extend_from_slice(b"PRPX garbage");
    expect_closed(&addr, &mixed);
    assert!(s.stats().bad_frames >= 7, "{:?}", s.stats());

    // The server still serves baidu_std, rraft's frames and HTTP.
    assert_eq!(
        call(
            &addr,
            &Call {
                body: b"ok",
                ..Default::default()
            }
        )
        .body,
        b"ok"
    );
    let rpc = RpcClient::new(rt.handle().clone());
    let r = rpc
        .call_blocking(
            &addr,
            "example.EchoService.echo",
            "",
            Bytes::from_static(b"frames"),
            T,
        )
        .unwrap();
    assert_eq!(&r.payload[..], b"frames");
    let mut h = connect(&addr);
    h.write_all(b"GET /raft_stat HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    h.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 "), "{page}");
    // The stalled connection completes once its last byte arrives.
    stalled.write_all(&good[good.len() - 1..]).unwrap();
    assert_eq!(read_answer(&mut stalled).body, b"x");
}

#[test]
fn library_client_speaks_baidu_std() {
    let rt = runtime();
    let (_s, addr) = setup(&rt);
    let rpc = RpcClient::new(rt.handle().clone());
    let call = |method: &str, body: &'static [u8]| {
        rt.block_on(rpc.call_with_protocol(
            &addr,
            Protocol::BaiduStd,
            method,
            "",
            Bytes::from_static(body),
            T,
        ))
    };
    let r = call("example.CounterService.fetch_add", b"\x08\x01").unwrap();
    assert_eq!(&r.payload[..], b"added \x08\x01");
    // log id and attachments both ways.
    let info = CallInfo {
        protocol: Protocol::BaiduStd,
        log_id: 9,
        attachment: Bytes::from_static(b"sent"),
    };
    let fut = rpc.call_with_info(
        &addr,
        "example.EchoService.echo",
        "",
        Bytes::from_static(b"body"),
        info,
        T,
    );
    let (r, attachment) = rt.block_on(fut).unwrap();
    assert_eq!(&r.payload[..], b"body");
    assert_eq!(&attachment[..], b"9:sent");
    match call("example.EchoService.fail", b"") {
        Err(RpcError::Remote { code, text, .. }) => {
            assert_eq!(code, codes::EPERM);
            assert!(text.contains("leader: 10.0.0.1:80:0"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    match call("example.EchoService.missing", b"") {
        Err(RpcError::Remote { code, .. }) => assert_eq!(code, 1002),
        other => panic!("{other:?}"),
    }
    // Many calls in flight on the pooled connection.
    let futs: Vec<_> = (0..100u32)
        .map(|i| {
            rpc.call_with_protocol(
                &addr,
                Protocol::BaiduStd,
                "example.EchoService.echo",
                "",
                Bytes::from(i.to_string()),
                T,
            )
        })
        .collect();
    let got = rt.block_on(async {
        let mut out = Vec::new();
        for f in futs {
            out.push(f.await.unwrap().payload);
        }
        out
    });
    for (i, p) in got.iter().enumerate() {
        assert_eq!(&p[..], i.to_string().as_bytes());
    }
}
