//! Helpers for the end-to-end tests of the C examples (`examples-c/`):
//! building them with make, free ports, child processes that are killed
//! even when a test fails, polling with a deadline, and tiny JSON lookups.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rraft::transport::RpcClient;

use crate::native::{self, repo};

/// Builds the library (fresh), then runs `make -C examples-c/<name>`, and
/// returns the example's directory.
pub fn build_example(name: &str) -> PathBuf {
    native::build_library();
    // Tests of one binary run in parallel: one make at a time, so no test
    // runs a program another make is still linking.
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = repo().join("examples-c").join(name);
    let out = Command::new("make")
        .arg("-C")
        .arg(&dir)
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make -C examples-c/{name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// `n` distinct ports that were free a moment ago. Ports are probed from a
/// random start in [`probe_range`] so that two test processes rarely race,
/// and no port is handed out twice in one process (tests of one binary run
/// in parallel and bind their ports only later, in child processes).
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    // Ephemeral port 0 would also work, but the kernel hands those out again
    // to outgoing connections; a random probe range avoids that.
    let (lo, hi) = probe_range();
    let mut candidate = random_start(lo, hi);
    while ports.len() < n {
        candidate = if candidate + 1 >= hi {
            lo
        } else {
            candidate + 1
        };
        if claim(&[candidate]) {
            ports.push(candidate);
        }
    }
    ports
}

/// `n` consecutive ports that were free a moment ago (coffee wants ming's
/// port and the four after it), never handed out before in this process.
pub fn free_port_range(n: u16) -> u16 {
    let (lo, hi) = probe_range();
    let mut base = random_start(lo, hi);
    loop {
        if base > hi - n {
            base = lo;
        }
        let range: Vec<u16> = (base..base + n).collect();
        if claim(&range) {
            return base;
        }
        base += n;
    }
}

/// Records `ports` as handed out if none was handed out before in this
/// process and each can be bound now.
fn claim(ports: &[u16]) -> bool {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let free = ports
        .iter()
        .all(|&p| !handed_out.contains(&p) && TcpListener::bind(("127.0.0.1", p)).is_ok());
    if free {
        handed_out.extend(ports);
    }
    free
}

/// The ports tests probe, `lo..hi`: below the kernel's ephemeral range
/// (`ip_local_port_range`, 32768..60999 by default), which it hands to
/// outgoing connections. A port probed free inside that range can be taken
/// by another test's client connection before the child process binds it.
pub fn probe_range() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        });
    match ephemeral {
        Some((first, _)) if first >= 12000 => (10000, first),
        Some((_, last)) if last <= 55000 => (last + 1, 65000),
        _ => (20000, 60000),
    }
}

fn random_start(lo: u16, hi: u16) -> u16 {
    let seed = std::process::id() as u64 ^ nanos_now();
    lo + (seed % (hi - lo) as u64) as u16
}

fn nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what`
/// after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Calls `method` of `group` with an empty request on the server at `addr`
/// and returns the reply as text; None when the call fails.
pub fn ask_text(
    rpc: &RpcClient,
    addr: &str,
    method: &str,
    group: &str,
    timeout: Duration,
) -> Option<String> {
    let resp = rpc
        .call_blocking(addr, method, group, bytes::Bytes::new(), timeout)
        .ok()?;
    Some(String::from_utf8_lossy(&resp.payload).into_owned())
}

/// Child processes that are SIGKILLed (and reaped) when dropped, so a
/// failing test leaves nothing running.
#[derive(Default)]
pub struct Children {
    procs: Vec<(String, Child)>,
}

impl Children {
    /// Guards `child` under `name`.
    pub fn add(&mut self, name: &str, child: Child) {
        self.procs.push((name.to_string(), child));
    }

    /// The child named `name`.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Child> {
        self.procs
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
    }

    /// Removes `name` from the guard (the caller now owns it).
    pub fn take(&mut self, name: &str) -> Option<Child> {
        let at = self.procs.iter().position(|(n, _)| n == name)?;
        Some(self.procs.remove(at).1)
    }

    /// The names of the children still guarded.
    pub fn names(&self) -> Vec<String> {
        self.procs.iter().map(|(n, _)| n.clone()).collect()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.procs {
            let _ = child.kill();
        }
        for (_, child) in &mut self.procs {
            let _ = child.wait();
        }
    }
}

/// One child process that is SIGKILLed (and reaped) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `sig` to `child`.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child we have not reaped yet.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({}, {sig}) failed", child.id());
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The text of a file ("" if it cannot be read yet).
pub fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The number after `"key":` (the first occurrence), e.g. in status JSON.
pub fn json_num(text: &str, key: &str) -> Option<i64> {
    let pat = format!("\"{key}\":");
    let at = text.find(&pat)? + pat.len();
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The string after `"key":"` (the first occurrence).
pub fn json_str<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let at = text.find(&pat)? + pat.len();
    let rest = &text[at..];
    Some(&rest[..rest.find('"')?])
}

/// The value of `key=` in a `key=value key=value` line.
pub fn kv_num(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
}

/// The number in the environment variable `name`, if set; panics when it
/// is not a number (a mistyped seed or length must not run another test).
pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// Runs `cmd`; its output (stdout and stderr) when it succeeds, else the
/// output as the error.
pub fn run_tool(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("run {:?}: {e}", cmd.get_program()))?;
    let text = native::output_text(&out);
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}
