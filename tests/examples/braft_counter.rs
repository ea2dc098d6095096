//! examples-c/counter against braft's own counter: the binaries and data
//! directories in `$RRAFT_BRAFT_DIR` (`bin/counter_server`,
//! `bin/counter_client`, `fixtures/{murmur,crc32}/node0..2`, written by
//! braft's counter with the values in their EXPECTED.txt).
//!
//! - rraft's counter_server starts on copies of braft's data directories
//!   and serves braft's value and log;
//! - braft's counter_server starts on directories rraft's counter wrote
//!   (log, snapshot, meta) and serves the same value;
//! - braft's counter_client (unchanged) drives three rraft counter_servers
//!   while the leader is SIGKILLed: no acknowledged add is lost, none is
//!   applied twice, and no call fails for a protocol reason.
//!
//! Without `RRAFT_BRAFT_DIR` each test says so and returns; with it, a
//! missing binary or fixture fails the test.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use rraft::transport::RpcClient;
use rraft_sim::examples::*;

use super::counter::{fetch_add, get, is_leader, leader_of, status, GROUP};

/// The braft material, or None (after saying why) when the variable is unset.
pub(crate) fn braft_dir() -> Option<PathBuf> {
    match std::env::var_os("RRAFT_BRAFT_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            eprintln!(
                "RRAFT_BRAFT_DIR is not set: skipping the test against braft's counter \
                 (it needs braft's binaries and data directories; .ci/run sets it)"
            );
            None
        }
    }
}

/// braft's binary `name`; fails the test when it is missing.
pub(crate) fn braft_bin(braft: &Path, name: &str) -> PathBuf {
    let path = braft.join("bin").join(name);
    assert!(
        path.is_file(),
        "RRAFT_BRAFT_DIR is set but {} is missing",
        path.display()
    );
    path
}

/// braft's `example.Snapshot`, the message in the snapshot's file `data`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Snapshot {
    #[prost(int64, required, tag = "1")]
    pub(crate) value: i64,
}

/// The ports the fixtures' configuration names (127.0.0.1:8100..8102).
const FIXTURE_PORTS: [u16; 3] = [8100, 8101, 8102];
const FIXTURE_CONF: &str = "127.0.0.1:8100:0,127.0.0.1:8101:0,127.0.0.1:8102:0,";

/// Holds the lock that serializes every test using the fixture ports
/// (across test processes), once they are free.
struct FixturePorts(#[allow(dead_code)] File);

fn lock_fixture_ports() -> FixturePorts {
    let path = "/tmp/rraft-braft-8100.lock";
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: flock(2) on a descriptor this File owns; the lock is released
    // when the File is dropped (or the process dies).
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {path}: {}", std::io::Error::last_os_error());
    for p in FIXTURE_PORTS {
        assert!(
            TcpListener::bind(("127.0.0.1", p)).is_ok(),
            "port {p} is taken by another process: braft's fixtures name \
             127.0.0.1:8100..8102 as their peers, so this test needs those three ports"
        );
    }
    FixturePorts(f)
}

/// Copies a directory tree, every copy writable (the fixtures are
/// read-only, and opening a data directory writes to it).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub(crate) fn conf_of(ports: &[u16]) -> String {
    ports.iter().map(|p| format!("127.0.0.1:{p}:0,")).collect()
}

/// A counter_server (rraft's or braft's: the same flags) on 127.0.0.1:`port`
/// with its data in `data`; its output goes to `log`.
fn start_counter(bin: &Path, port: u16, conf: &str, data: &Path, log: &Path) -> Child {
    let out = File::create(log).unwrap();
    Command::new(bin)
        .arg("-ip=127.0.0.1")
        .arg(format!("-port={port}"))
        .arg(format!("-conf={conf}"))
        .arg(format!("-group={GROUP}"))
        .arg(format!("-data_path={}", data.display()))
        .args(["-election_timeout_ms=1000", "-snapshot_interval=0"])
        .current_dir(data.parent().unwrap())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()))
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; the body of the answer.
pub(crate) fn http(port: u16, request_line: &str, body: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let req = format!(
        "{request_line} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Read until the announced body is complete (or the peer closes).
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(len) = len {
                if buf.len() >= end + 4 + len {
                    return Some(
                        String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned(),
                    );
                }
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(String::from_utf8_lossy(&buf[end + 4..]).into_owned())
}

/// `get` through brpc's HTTP/JSON gateway of braft's counter_server (as
/// braft's fixture script reads it): the value when this node leads.
fn braft_get(port: u16) -> Option<i64> {
    let body = http(port, "POST /example.CounterService/get", "{}")?;
    body.contains("\"success\":true")
        .then(|| json_num(&body, "value"))
        .flatten()
}

/// `(term, last log index)` from a status page: rraft's `/raft_stat`
/// ("term: T", "log: ... last_index=I") or braft's ("term: T",
/// "last_log_id: (index=I,term=T)").
fn page_term_and_last_index(page: &str) -> Option<(i64, i64)> {
    let term = page
        .lines()
        .find_map(|l| l.trim().strip_prefix("term: "))?
        .trim()
        .parse()
        .ok()?;
    let last = page.lines().find_map(|l| {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("last_log_id: (index=") {
            return rest.split(',').next()?.parse().ok();
        }
        if l.starts_with("log:") {
            return kv_num(l, "last_index").map(|v| v as i64);
        }
        None
    })?;
    Some((term, last))
}

/// SIGINT, then waits for a clean exit.
pub(crate) fn stop(name: &str, mut child: Child) {
    signal(&child, libc::SIGINT);
    let st = wait_exit(&mut child, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{name} did not exit within 20 s of SIGINT"));
    assert!(st.success(), "{name} exited with {st}");
}

#[test]
fn rraft_counter_starts_on_braft_data_directories() {
    let Some(braft) = braft_dir() else {
        return;
    };
    let example = build_example("counter");
    let rpc = RpcClient::new(rraft::node::runtime::handle());
    let _ports = lock_fixture_ports();
    for fixture in ["murmur", "crc32"] {
        let source = braft.join("fixtures").join(fixture);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("braft_fixture_{fixture}"))
            .tempdir()
            .unwrap();
        let mut kids = Children::default();
        let mut logs = Vec::new();
        for (i, &port) in FIXTURE_PORTS.iter().enumerate() {
            let node = source.join(format!("node{i}"));
            assert!(node.is_dir(), "missing fixture {}", node.display());
            let data = tmp.path().join(format!("node{i}"));
            copy_tree(&node, &data);
            let log = tmp.path().join(format!("server{i}.log"));
            kids.add(
                &format!("server{i}"),
                start_counter(
                    &example.join("counter_server"),
                    port,
                    FIXTURE_CONF,
                    &data,
                    &log,
                ),
            );
            logs.push(log);
        }

        // Each node recovered braft's state: log 1..1501 in term 2, the
        // snapshot at 1001 holding the value 1000.
        for log in &logs {
            let line = wait_for("a server to start", Duration::from_secs(20), || {
                let text = read_text(log);
                assert!(
                    !text.contains("init failed") && !text.contains("cannot listen"),
                    "{fixture}: a server failed to start:\n{text}"
                );
                text.lines()
                    .find(|l| l.starts_with("counter_server started:"))
                    .map(str::to_string)
            });
            assert_eq!(
                json_num(&line, "last_index"),
                Some(1501),
                "{fixture}: {line}"
            );
            assert_eq!(
                json_num(&line, "snapshot_index"),
                Some(1001),
                "{fixture}: {line}"
            );
            wait_for("the snapshot to load", Duration::from_secs(10), || {
                read_text(log)
                    .contains("snapshot loaded: index=1001 value=1000")
                    .then_some(())
            });
        }
        // The status page: braft's log as recovered (term 2, last 1501);
        // once an election started, a later term, and a new leader's first
        // entry (one) may be on top.
        for port in FIXTURE_PORTS {
            let page = wait_for("a status page", Duration::from_secs(10), || {
                http(port, "GET /raft_stat", "")
            });
            let (term, last) = page_term_and_last_index(&page)
                .unwrap_or_else(|| panic!("{fixture}: no term or last index in:\n{page}"));
            assert!(
                (term == 2 && last == 1501) || (term > 2 && (1501..=1502).contains(&last)),
                "{fixture}: term {term}, last index {last} on {port}:\n{page}"
            );
        }

        // A leader is elected; the entries after the snapshot commit and
        // `get` answers braft's value.
        let value = wait_for("get from a leader", Duration::from_secs(30), || {
            FIXTURE_PORTS.iter().find_map(|&p| get(&rpc, p))
        });
        assert_eq!(value, 1500, "{fixture}: get");
        for port in FIXTURE_PORTS {
            wait_for(
                "every node to apply the log",
                Duration::from_secs(20),
                || {
                    let st = status(&rpc, port)?;
                    (json_num(&st, "value") == Some(1500)
                        && json_num(&st, "applied_index") >= Some(1501))
                    .then_some(())
                },
            );
        }
        for i in 0..FIXTURE_PORTS.len() {
            let name = format!("server{i}");
            stop(&name, kids.take(&name).unwrap());
        }
    }
}

/// Three rraft counter_servers on free ports, node `i` with its data in
/// `<tmp>/node<i>/data` and its output in `<tmp>/rraft<i>.log`, once they
/// elected a leader. Each child is guarded under its port.
struct RraftGroup {
    tmp: tempfile::TempDir,
    ports: Vec<u16>,
    conf: String,
    data: Vec<PathBuf>,
    kids: Children,
    rpc: RpcClient,
    leader: u16,
}

impl RraftGroup {
    fn start(prefix: &str) -> RraftGroup {
        let example = build_example("counter");
        let rpc = RpcClient::new(rraft::node::runtime::handle());
        let tmp = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let ports = free_ports(3);
        let conf = conf_of(&ports);
        let data: Vec<PathBuf> = (0..3)
            .map(|i| tmp.path().join(format!("node{i}/data")))
            .collect();
        let mut kids = Children::default();
        for (i, &port) in ports.iter().enumerate() {
            std::fs::create_dir_all(data[i].parent().unwrap()).unwrap();
            let log = tmp.path().join(format!("rraft{i}.log"));
            kids.add(
                &port.to_string(),
                start_counter(&example.join("counter_server"), port, &conf, &data[i], &log),
            );
        }
        let (leader, _) = wait_for("a leader", Duration::from_secs(30), || {
            leader_of(&rpc, &ports)
        });
        RraftGroup {
            tmp,
            ports,
            conf,
            data,
            kids,
            rpc,
            leader,
        }
    }
}

/// Waits until every node of `ports` applied the same index with the
/// counter at `value`; returns that index.
fn all_applied(rpc: &RpcClient, ports: &[u16], value: i64) -> i64 {
    wait_for(
        "every node to apply every add",
        Duration::from_secs(20),
        || {
            let sts: Vec<String> = ports
                .iter()
                .map(|&p| status(rpc, p))
                .collect::<Option<_>>()?;
            let applied: Vec<i64> = sts
                .iter()
                .map(|s| json_num(s, "applied_index"))
                .collect::<Option<_>>()?;
            let done = sts.iter().all(|s| json_num(s, "value") == Some(value))
                && applied.iter().all(|&a| a == applied[0]);
            done.then_some(applied[0])
        },
    )
}

#[test]
fn braft_counter_starts_on_data_directories_rraft_wrote() {
    let Some(braft) = braft_dir() else {
        return;
    };
    let braft_server = braft_bin(&braft, "counter_server");
    let RraftGroup {
        tmp,
        ports,
        conf,
        data,
        mut kids,
        rpc,
        leader,
    } = RraftGroup::start("braft_reads_rraft");

    // Adds of 1 and 2, some with a payload (braft's benchmark field), each
    // answered with the value before it.
    let mut expected = 0i64;
    let add = |n: usize, expected: &mut i64| {
        for i in 0..n {
            let value = if i % 3 == 0 { 2 } else { 1 };
            let payload = (i % 4 == 0).then(|| vec![b'x'; 16]);
            let before = fetch_add(&rpc, leader, value, payload)
                .unwrap_or_else(|| panic!("fetch_add {i} on the leader {leader} failed"));
            assert_eq!(before, *expected, "fetch_add {i}");
            *expected += value;
        }
    };
    add(300, &mut expected);
    // A snapshot on every node, then more adds after it.
    let snapshot_index = all_applied(&rpc, &ports, expected);
    for &port in &ports {
        let out = Command::new(env!("CARGO_BIN_EXE_rraft-cli"))
            .args(["snapshot", "--group", GROUP, "--peer"])
            .arg(format!("127.0.0.1:{port}:0"))
            .output()
            .expect("run rraft-cli");
        assert!(
            out.status.success(),
            "rraft-cli snapshot on {port}: {}",
            rraft_sim::native::output_text(&out)
        );
    }
    // Each snapshot holds braft's file `data`: a ProtoBufFile (4-byte
    // big-endian length, then the message) of Snapshot{value}.
    let snapshot = Snapshot { value: expected }.encode_to_vec();
    let mut protobuf_file = (snapshot.len() as u32).to_be_bytes().to_vec();
    protobuf_file.extend_from_slice(&snapshot);
    for (i, &port) in ports.iter().enumerate() {
        let st = status(&rpc, port).unwrap_or_default();
        assert_eq!(
            json_num(&st, "snapshot_index"),
            Some(snapshot_index),
            "the snapshot of {port}: {st}"
        );
        let file = data[i]
            .join("snapshot")
            .join(format!("snapshot_{snapshot_index:020}"))
            .join("data");
        assert_eq!(
            std::fs::read(&file).ok(),
            Some(protobuf_file.clone()),
            "{} is not braft's ProtoBufFile of Snapshot{{value: {expected}}}",
            file.display()
        );
    }
    add(200, &mut expected);
    let last = all_applied(&rpc, &ports, expected);
    assert!(last > snapshot_index, "no entries after the snapshot");
    eprintln!("rraft wrote value {expected}: snapshot at {snapshot_index}, log to {last}");
    // Followers first, then the leader, so no election follows the stop.
    for &port in ports
        .iter()
        .filter(|&&p| p != leader)
        .chain([leader].iter())
    {
        stop(
            &format!("rraft server {port}"),
            kids.take(&port.to_string()).unwrap(),
        );
    }

    // braft's servers on the same directories.
    let mut logs = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let log = tmp.path().join(format!("braft{i}.log"));
        kids.add(
            &port.to_string(),
            start_counter(&braft_server, port, &conf, &data[i], &log),
        );
        logs.push(log);
    }
    let value = wait_for(
        "get from braft's leader (brpc's HTTP/JSON gateway)",
        Duration::from_secs(40),
        || {
            for (i, log) in logs.iter().enumerate() {
                if let Ok(Some(st)) = kids.get_mut(&ports[i].to_string()).unwrap().try_wait() {
                    panic!(
                        "braft's counter_server exited with {st}:\n{}",
                        read_text(log)
                    );
                }
            }
            ports.iter().find_map(|&p| braft_get(p))
        },
    );
    assert_eq!(value, expected, "braft's value on rraft's data");
    // braft took rraft's snapshot as its own.
    for &port in &ports {
        let page = http(port, &format!("GET /raft_stat/{GROUP}"), "").unwrap_or_default();
        assert!(
            page.contains(&format!("last_snapshot_index: {snapshot_index}")),
            "braft on {port} does not report the snapshot at {snapshot_index}:\n{page}"
        );
    }
    for &port in &ports {
        stop(
            &format!("braft server {port}"),
            kids.take(&port.to_string()).unwrap(),
        );
    }
}

/// What braft's counter_client printed: each acknowledged add's value
/// before it, calls that failed (outcome unknown), redirects, and the
/// failures that no server or network fault explains.
#[derive(Debug, Default)]
struct BraftClientLog {
    acked: Vec<i64>,
    failed: usize,
    redirected: usize,
    protocol_errors: Vec<String>,
}

/// Error codes a call to a live server may fail with: EAGAIN (braft's
/// "Unknown leader" from get_leader during an election) and ERPCTIMEDOUT
/// (brpc's timeout: an add waiting for a new leader's commit).
const LIVE_SERVER_FAILURES: [i64; 2] = [11, 1008];

/// What a call to the killed server may fail with besides: EPIPE,
/// ECONNRESET, ETIMEDOUT, ECONNREFUSED, EHOSTDOWN (brpc: not connected),
/// EFAILEDSOCKET, EEOF, ECLOSE.
const DEAD_SERVER_FAILURES: [i64; 8] = [32, 104, 110, 111, 112, 1009, 1014, 2005];

/// The servers a failure line names (by port) with the error codes of
/// each: "Fail to send request to PEER : [Ecode]..." or braft's
/// refresh_leader "[PEER] [Ecode]..., [PEER] [Ecode]...".
fn failures_by_server(line: &str) -> Vec<(u16, Vec<i64>)> {
    let port_of = |s: &str| {
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..digits].parse::<u16>().ok()
    };
    if let Some(rest) = line.split("Fail to send request to 127.0.0.1:").nth(1) {
        return port_of(rest)
            .map(|p| vec![(p, error_codes(rest))])
            .unwrap_or_default();
    }
    line.split("[127.0.0.1:")
        .skip(1)
        .filter_map(|seg| Some((port_of(seg)?, error_codes(seg))))
        .collect()
}

/// Reads braft's counter_client log (`--log_each_request`: one line per
/// acknowledged call). A failure is a protocol error when it carries a
/// code that neither a live server (`LIVE_SERVER_FAILURES`) nor, for the
/// `dead` one, a killed server (`DEAD_SERVER_FAILURES`) explains: no such
/// service or method, a request or response that does not parse, a
/// connection a live server closed.
fn read_braft_client_log(text: &str, dead: Option<u16>) -> BraftClientLog {
    let mut log = BraftClientLog::default();
    for line in text.lines() {
        if let Some(rest) = line.split("Received response from ").nth(1) {
            let value = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("value="))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no value in: {line}"));
            log.acked.push(value);
        } else if line.contains("Fail to send request to ") && line.contains(", redirecting to ") {
            log.redirected += 1;
        } else if line.contains("Fail to send request to ")
            || line.contains("Fail to refresh_leader")
        {
            if line.contains("Fail to send request to ") {
                log.failed += 1;
            }
            let unexplained = failures_by_server(line).iter().any(|(port, codes)| {
                codes.iter().any(|c| {
                    let explained = LIVE_SERVER_FAILURES.contains(c)
                        || (Some(*port) == dead && DEAD_SERVER_FAILURES.contains(c));
                    !explained
                })
            });
            if unexplained {
                log.protocol_errors.push(line.to_string());
            }
        }
    }
    log
}

/// The codes of brpc's "[E<code>]" marks in a line.
fn error_codes(line: &str) -> Vec<i64> {
    line.split("[E")
        .skip(1)
        .filter_map(|rest| rest.split(']').next()?.parse().ok())
        .collect()
}

#[test]
fn braft_counter_client_loses_no_acknowledged_add_across_a_leader_kill() {
    let Some(braft) = braft_dir() else {
        return;
    };
    let braft_client = braft_bin(&braft, "counter_client");
    let RraftGroup {
        tmp,
        ports,
        conf,
        mut kids,
        rpc,
        ..
    } = RraftGroup::start("braft_client_rraft");

    // braft's client, unchanged: --log_each_request prints one line per
    // acknowledged call with the value before the add (each sender then
    // pauses a second), which is what makes the adds countable.
    const THREADS: usize = 24;
    let client_log = tmp.path().join("client.log");
    let out = File::create(&client_log).unwrap();
    let started = Instant::now();
    let client = Command::new(&braft_client)
        .arg(format!("--conf={conf}"))
        .arg(format!("--group={GROUP}"))
        .arg(format!("--thread_num={THREADS}"))
        .args([
            "--log_each_request=true",
            "--timeout_ms=1000",
            "--payload_size=8",
        ])
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start braft's counter_client");
    kids.add("client", client);

    // SIGKILL the leader midway through the 15 s run.
    std::thread::sleep(Duration::from_secs(6));
    let (leader, _) = wait_for("the leader", Duration::from_secs(10), || {
        leader_of(&rpc, &ports)
    });
    let mut victim = kids.take(&leader.to_string()).unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    // Every acknowledgement logged from here on came after the kill.
    let acked_before_kill = read_braft_client_log(&read_text(&client_log), None)
        .acked
        .len();
    eprintln!("killed the leader {leader} at {:?}", started.elapsed());
    let others: Vec<u16> = ports.iter().copied().filter(|&p| p != leader).collect();
    std::thread::sleep(Duration::from_secs(15).saturating_sub(started.elapsed()));

    // SIGINT: every sender finishes (and logs) its call in flight, so every
    // outcome is in the log; a client that does not exit leaves up to one
    // call per sender unknown.
    let mut client = kids.take("client").unwrap();
    signal(&client, libc::SIGINT);
    let in_flight_unknown = match wait_exit(&mut client, Duration::from_secs(15)) {
        Some(st) => {
            assert!(st.success(), "braft's counter_client exited with {st}");
            0
        }
        None => {
            let _ = client.kill();
            let _ = client.wait();
            THREADS
        }
    };
    let text = read_text(&client_log);
    let log = read_braft_client_log(&text, Some(leader));
    let acked_after = log.acked.len().saturating_sub(acked_before_kill);
    let value = wait_for("the new leader's value", Duration::from_secs(20), || {
        let (p, st) = leader_of(&rpc, &others)?;
        assert!(is_leader(&st));
        get(&rpc, p)
    });
    let acked = log.acked.len() as i64;
    let unknown = (log.failed + in_flight_unknown) as i64;
    eprintln!(
        "braft client: acked={acked} (after the kill {acked_after}) failed={} redirected={} \
         in_flight_unknown={in_flight_unknown}; value={value}",
        log.failed, log.redirected
    );
    assert!(
        log.protocol_errors.is_empty(),
        "calls failed for a protocol reason:\n{}",
        log.protocol_errors.join("\n")
    );
    assert!(acked >= 50, "too few acknowledged adds ({acked}):\n{text}");
    assert!(
        acked_after > 0,
        "no add was acknowledged after the leader died:\n{text}"
    );
    let mut befores = log.acked.clone();
    befores.sort_unstable();
    befores.dedup();
    assert_eq!(
        befores.len(),
        log.acked.len(),
        "two acknowledged adds saw the same value"
    );
    assert!(
        log.acked.iter().all(|&b| (0..value).contains(&b)),
        "an acknowledged add saw a value outside [0, {value})"
    );
    assert!(
        value >= acked,
        "lost acknowledged adds: value {value} < acked {acked}"
    );
    assert!(
        value <= acked + unknown,
        "adds applied twice: value {value} > acked {acked} + unknown {unknown}"
    );
    for port in others {
        stop(
            &format!("server {port}"),
            kids.take(&port.to_string()).unwrap(),
        );
    }
}

#[test]
fn braft_client_log_lines_are_read() {
    let text = "\
I1206 22:56:13.270660  3000     0 /build/x/client.cpp:100 sender] Received response from 127.0.0.1:38102:0:0 value=7 latency=12271
W1206 22:56:34.167354  4095     0 /build/x/client.cpp:82 sender] Fail to send request to 127.0.0.1:38102:0:0 : [E112]Not connected to 127.0.0.1:38102 yet, server_id=2 [R1][E111]Connection refused
W1206 22:56:34.200000  4095     0 /build/x/client.cpp:91 sender] Fail to send request to 127.0.0.1:38102:0:0, redirecting to 127.0.0.1:38101:0:0
W1206 22:56:55.233639  5218     0 /build/x/client.cpp:49 sender] Fail to refresh_leader : [127.0.0.1:38100:0:0] [E11][127.0.0.1:38100][E11]Unknown leader, [127.0.0.1:38102:0:0] [E1014]Got EOF of brpc::Socket{id=9 fd=3 addr=127.0.0.1:38102:52964}
W1206 22:56:55.433639  5218     0 /build/x/client.cpp:49 sender] Fail to refresh_leader : [127.0.0.1:38100:0:0] [E1014]Got EOF of brpc::Socket{id=9 fd=3 addr=127.0.0.1:38100:52964}
W1206 22:56:55.533639  5218     0 /build/x/client.cpp:82 sender] Fail to send request to 127.0.0.1:38101:0:0 : [E1008]Reached timeout=1000ms @127.0.0.1:38101
I1206 22:56:56.000000  3000     0 /build/x/client.cpp:100 sender] Received response from 127.0.0.1:38101:0:0 value=8 latency=100
W1206 22:56:57.000000  4095     0 /build/x/client.cpp:82 sender] Fail to send request to 127.0.0.1:38101:0:0 : [E1002]Fail to find method
";
    let log = read_braft_client_log(text, Some(38102));
    assert_eq!(log.acked, vec![7, 8]);
    assert_eq!(log.failed, 3);
    assert_eq!(log.redirected, 1);
    assert_eq!(log.protocol_errors.len(), 2, "{:?}", log.protocol_errors);
    assert!(log.protocol_errors[0]
        .contains("E1014]Got EOF of brpc::Socket{id=9 fd=3 addr=127.0.0.1:38100"));
    assert!(log.protocol_errors[1].contains("E1002"));
}
