//! Hostile input on raw sockets: garbage, truncated frames, a 4 GiB length,
//! unknown kinds, oversized frames, batches for unknown groups. Each closes
//! (only) its own connection with a warn line; the server keeps serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rraft::proto::Message;
use rraft::transport::frame::{encode_frame, DEFAULT_MAX_FRAME};
use rraft::transport::{Frame, RaftBatch, Request, Responder, RpcClient, Server, TransportConfig};

use super::{record_on, runtime};

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _m: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        if r.level() <= log::Level::Warn {
            self.0.lock().unwrap().push(format!("{}", r.args()));
        }
    }
    fn flush(&self) {}
}

static LOG: Capture = Capture(Mutex::new(Vec::new()));

/// A server on a free local port that refuses frames over `max_frame`
/// bytes, and its address.
fn server_with_max_frame(rt: &tokio::runtime::Runtime, max_frame: usize) -> (Arc<Server>, String) {
    let cfg = TransportConfig {
        max_frame,
        ..Default::default()
    };
    let s = Server::bind_with("127.0.0.1:0", rt.handle(), cfg).unwrap();
    let addr = s.local_addr().to_string();
    (s, addr)
}

/// Writes `bytes` (then optionally half-closes) and expects the server to
/// close the connection within a few seconds.
fn expect_closed(addr: &str, bytes: &[u8], half_close: bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    if half_close {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!(
            "connection not closed after {:?}: {other:?}",
            &bytes[..bytes.len().min(16)]
        ),
    }
}

fn frame(f: &Frame) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_frame(f, &mut b, DEFAULT_MAX_FRAME).unwrap();
    b.to_vec()
}

fn echo_ok(c: &RpcClient, addr: &str) {
    let r = c
        .call_blocking(
            addr,
            "echo",
            "g",
            Bytes::from_static(b"still here"),
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(&r.payload[..], b"still here");
}

#[test]
fn hostile_input_closes_only_that_connection() {
    log::set_logger(&LOG).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let rt = runtime();
    let (s, addr) = server_with_max_frame(&rt, 1 << 20);
    let peer = format!("{addr}:0");
    let node = record_on(&s, &peer);
    s.add_method(
        "echo",
        Arc::new(|req: Request, r: Responder| r.reply(req.payload)),
    )
    .unwrap();
    let c = RpcClient::new(rt.handle().clone());
    echo_ok(&c, &addr);

    // A well-behaved connection that stays open through all of it.
    let mut good = TcpStream::connect(&addr).unwrap();

    // Text garbage: "POST" reads as a ~1.3 GB length → refused at the header.
    expect_closed(&addr, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", false);
    // "GET " is HTTP: answered (no status pages on a bare transport), then closed.
    let mut http = TcpStream::connect(&addr).unwrap();
    http.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    // A 4 GiB length claim: refused before any allocation.
    expect_closed(&addr, &[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0], false);
    // Just over this server's 1 MiB maximum.
    expect_closed(&addr, &[0x00, 0x10, 0x00, 0x01, 2], false);
    // An unknown kind.
    expect_closed(&addr, &[0, 0, 0, 2, 42, 8, 1], false);
    // A known kind with a body that is not protobuf.
    expect_closed(&addr, &[0, 0, 0, 4, 2, 0xff, 0xff, 0xff, 0xff], false);
    // Random bytes.
    let mut x: u32 = 12345;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    expect_closed(&addr, &noise, false);
    // A truncated frame, then the client closes its side.
    let req = frame(&Frame::Request(Request {
        call_id: 1,
        method: "echo".into(),
        group: "g".into(),
        payload: Bytes::from(vec![1u8; 1000]),
    }));
    expect_closed(&addr, &req[..500], true);
    // A header only, then close.
    expect_closed(&addr, &req[..3], true);

    // A valid batch for an unknown group and one for an unknown peer: dropped
    // and counted, the connection stays open and keeps working.
    let unknown = frame(&Frame::RaftBatch(RaftBatch {
        group: "nope".into(),
        messages: vec![Message {
            to: peer.clone().into(),
            ..Default::default()
        }],
    }));
    let known = frame(&Frame::RaftBatch(RaftBatch {
        group: "g".into(),
        messages: vec![
            Message {
                to: format!("{addr}:9").into(),
                ..Default::default()
            },
            Message {
                to: peer.clone().into(),
                term: 7,
                ..Default::default()
            },
        ],
    }));
    good.write_all(&unknown).unwrap();
    good.write_all(&known).unwrap();
    good.write_all(&req).unwrap();
    let mut hdr = [0u8; 5];
    good.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    good.read_exact(&mut hdr).unwrap();
    assert_eq!(hdr[4], 3, "a Response frame");
    let len = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    let mut body = vec![0u8; len];
    good.read_exact(&mut body).unwrap();
    let resp: rraft::transport::Response = prost::Message::decode(&body[..]).unwrap();
    assert_eq!((resp.call_id, resp.code, resp.payload.len()), (1, 0, 1000));
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.got.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(node.got.lock().unwrap()[0].term, 7);

    echo_ok(&c, &addr);
    let st = s.stats();
    assert_eq!(st.bad_frames, 8, "{st:?}");
    assert_eq!(st.dropped_unknown_target, 2, "{st:?}");
    let warns = LOG.0.lock().unwrap().clone();
    assert!(
        warns
            .iter()
            .filter(|w| w.contains("closing connection from"))
            .count()
            >= 8,
        "{warns:#?}"
    );

    // Oversized outgoing: a request over the client's own maximum is refused
    // locally, and the connection stays usable.
    let small = RpcClient::with_config(
        rt.handle().clone(),
        TransportConfig {
            max_frame: 1024,
            ..Default::default()
        },
    );
    let e = small
        .call_blocking(
            &addr,
            "echo",
            "g",
            Bytes::from(vec![0u8; 4096]),
            Duration::from_secs(5),
        )
        .unwrap_err();
    assert_eq!(e.code(), rraft::transport::codes::EINVAL, "{e}");
    echo_ok(&small, &addr);
    // A request over the server's 1 MiB maximum from a permissive client:
    // the server closes that connection, the call fails, the next one works.
    let loose = RpcClient::new(rt.handle().clone());
    let e = loose
        .call_blocking(
            &addr,
            "echo",
            "g",
            Bytes::from(vec![0u8; 2 << 20]),
            Duration::from_secs(5),
        )
        .unwrap_err();
    assert!(matches!(e, rraft::transport::RpcError::Lost(_)), "{e:?}");
    echo_ok(&loose, &addr);
    s.stop();
}

#[test]
fn mutated_frames_never_take_the_server_down() {
    let rt = runtime();
    let s = Server::bind("127.0.0.1:0", rt.handle()).unwrap();
    let addr = s.local_addr().to_string();
    let _node = record_on(&s, &format!("{addr}:0"));
    s.add_method(
        "echo",
        Arc::new(|req: Request, r: Responder| r.reply(req.payload)),
    )
    .unwrap();
    let valid = [
        frame(&Frame::RaftBatch(RaftBatch {
            group: "g".into(),
            messages: vec![Message {
                to: format!("{addr}:0").into(),
                entries: vec![rraft::proto::Entry {
                    data: Bytes::from_static(b"payload"),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })),
        frame(&Frame::Request(Request {
            call_id: 5,
            method: "echo".into(),
            group: "g".into(),
            payload: Bytes::from_static(b"abc"),
        })),
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..300 {
        let mut bytes = valid[i % 2].clone();
        for _ in 0..(1 + rnd() % 4) {
            let pos = (rnd() as usize) % bytes.len();
            bytes[pos] ^= 1 << (rnd() % 8);
        }
        if rnd() % 3 == 0 {
            let cut = (rnd() as usize) % bytes.len();
            bytes.truncate(cut);
        }
        let mut c = TcpStream::connect(&addr).unwrap();
        let _ = c.write_all(&bytes);
        let _ = c.shutdown(std::net::Shutdown::Write);
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    let c = RpcClient::new(rt.handle().clone());
    echo_ok(&c, &addr);
    s.stop();
}

#[test]
fn public_handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Responder>();
    send_sync::<Server>();
    send_sync::<rraft::transport::Transport>();
    send_sync::<RpcClient>();
    send_sync::<rraft::transport::GroupClient>();
}

#[test]
fn oversized_response_becomes_an_error() {
    let rt = runtime();
    let (s, addr) = server_with_max_frame(&rt, 64 << 10);
    s.add_method(
        "big",
        Arc::new(|_req: Request, r: Responder| r.reply(Bytes::from(vec![1u8; 100 << 10]))),
    )
    .unwrap();
    let c = RpcClient::new(rt.handle().clone());
    let e = c
        .call_blocking(&addr, "big", "g", Bytes::new(), Duration::from_secs(5))
        .unwrap_err();
    assert_eq!(e.code(), rraft::transport::codes::EINVAL, "{e:?}");
}
