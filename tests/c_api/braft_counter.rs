//! `raft_client_t` (through the C ABI) speaking baidu_std calls braft's own counter service:
//! three `counter_server`s from `$RRAFT_BRAFT_DIR/bin`, the leader found
//! with braft's `CliService.get_leader`, then `fetch_add` and `get` with
//! braft's example messages (`FetchAddRequest{value=1}` is `08 01`).

use std::ffi::CString;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rraft::ffi::client::{
    raft_buffer_free, raft_buffer_t, raft_client_call, raft_client_free, raft_client_leader,
    raft_client_new, raft_client_refresh_leader, raft_client_set_protocol, RAFT_PROTOCOL_BAIDU_STD,
};
use rraft::ffi::status::raft_string_free;
use rraft_sim::examples::{free_ports, Children};

use super::client_async::CounterResponse;

fn counter_server_bin() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("RRAFT_BRAFT_DIR") else {
        println!("RRAFT_BRAFT_DIR is not set: skipping the braft counter test");
        return None;
    };
    let bin = PathBuf::from(dir).join("bin").join("counter_server");
    assert!(
        bin.is_file(),
        "RRAFT_BRAFT_DIR is set but {bin:?} is missing"
    );
    Some(bin)
}

/// Calls `method` through the C client; the decoded answer or the error
/// code.
fn c_call(
    client: *mut rraft::ffi::client::raft_client_t,
    method: &str,
    body: &[u8],
) -> Result<CounterResponse, i32> {
    let method = CString::new(method).unwrap();
    let mut reply = raft_buffer_t {
        data: std::ptr::null_mut(),
        len: 0,
    };
    let rc = raft_client_call(
        client,
        method.as_ptr(),
        body.as_ptr(),
        body.len(),
        30_000,
        &mut reply,
    );
    if rc != 0 {
        return Err(rc);
    }
    let bytes = if reply.data.is_null() {
        Vec::new()
    } else {
        // SAFETY: the library filled `reply` with `len` bytes it owns.
        unsafe { std::slice::from_raw_parts(reply.data, reply.len) }.to_vec()
    };
    raft_buffer_free(&mut reply);
    Ok(<CounterResponse as prost::Message>::decode(&bytes[..]).expect("a CounterResponse"))
}

#[test]
fn c_client_calls_braft_counter_over_baidu_std() {
    let Some(bin) = counter_server_bin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let conf: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}:0")).collect();
    let conf = conf.join(",");
    let mut children = Children::default();
    for (i, port) in ports.iter().enumerate() {
        let d = dir.path().join(format!("server{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let log = std::fs::File::create(d.join("std.log")).unwrap();
        let child = Command::new(&bin)
            .current_dir(&d)
            .args([
                "-ip=127.0.0.1".to_string(),
                format!("-port={port}"),
                format!("-conf={conf}"),
                "-group=Counter".to_string(),
                "-data_path=./data".to_string(),
                "-election_timeout_ms=1000".to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start counter_server");
        children.add(&format!("server{i}"), child);
    }

    let group = CString::new("Counter").unwrap();
    let c_conf = CString::new(conf.clone()).unwrap();
    let client = raft_client_new(group.as_ptr(), c_conf.as_ptr());
    assert!(!client.is_null());
    assert_eq!(raft_client_set_protocol(client, RAFT_PROTOCOL_BAIDU_STD), 0);
    assert_ne!(raft_client_set_protocol(client, 7), 0);

    // fetch_add answers the value before the add; the client waits out the
    // election through get_leader's EAGAIN. A new leader answers "not the
    // leader" (success false, nothing applied) until it has started
    // leading: ask again, refreshing the leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let r = c_call(client, "example.CounterService.fetch_add", b"\x08\x01").unwrap();
        if r.success || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
        raft_client_refresh_leader(client, 5000);
    };
    assert!(first.success, "{first:?}");
    assert_eq!(first.value, Some(0), "{first:?}");
    let second = c_call(client, "example.CounterService.fetch_add", b"\x08\x01").unwrap();
    assert_eq!((second.success, second.value), (true, Some(1)));
    let got = c_call(client, "example.CounterService.get", b"").unwrap();
    assert_eq!((got.success, got.value), (true, Some(2)));

    // The leader the client follows is one of the servers.
    let leader = raft_client_leader(client);
    assert!(!leader.is_null());
    // SAFETY: a C string the library returned; freed right below.
    let text = unsafe { std::ffi::CStr::from_ptr(leader) }
        .to_string_lossy()
        .into_owned();
    raft_string_free(leader);
    assert!(
        ports
            .iter()
            .any(|p| text.starts_with(&format!("127.0.0.1:{p}:"))),
        "leader {text}"
    );

    // An unknown method is brpc's ENOMETHOD.
    assert_eq!(
        c_call(client, "example.CounterService.nope", b"").unwrap_err(),
        1002
    );
    raft_client_free(client);
}
