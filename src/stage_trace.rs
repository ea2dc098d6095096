//! Per-stage timestamps of the write path, for finding where a request's
//! time goes (`rraft-bench cluster --trace-stages`).
//!
//! Off unless the environment variable `RRAFT_TRACE_STAGES` names a
//! directory when the process first records: then every [`record`] appends
//! `(CLOCK_MONOTONIC ns, stage, log index)` to an in-memory list, and a
//! thread of its own appends the list to `DIR/stages.PID` every 200 ms (a
//! traced process may be killed at any time). CLOCK_MONOTONIC is one clock
//! for every process of the machine, so the files of a client and its
//! replicas line up; the log index ties a follower's stages to the leader's.
//! Stages that know no index (a request or answer frame, a wake-up, a
//! socket write) record 0.
//!
//! Disabled, a call costs one relaxed atomic load.

use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

/// The environment variable naming the directory of the trace files.
pub const ENV: &str = "RRAFT_TRACE_STAGES";

/// A point on the path of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// A client encoded a request (it is written at once or by a task).
    RequestSent = 1,
    /// A server read a request frame.
    RequestRead = 2,
    /// A leader encoded an Append carrying entries (index: its last).
    AppendSent = 3,
    /// A follower read an Append carrying entries (index: its last).
    AppendRead = 4,
    /// A log writer took a batch with entries (index: the batch's last).
    WriteStart = 5,
    /// The batch is appended; its fdatasync starts.
    SyncStart = 6,
    /// The fdatasync returned.
    SyncEnd = 7,
    /// Every request of the batch is reported (a follower's acks written).
    Reported = 8,
    /// An append answer was encoded (index: what it acknowledges).
    AckSent = 9,
    /// A leader read an append answer (index: what it acknowledges).
    AckRead = 10,
    /// Committed entries were queued for the FSM thread (index: the last).
    ApplyQueued = 11,
    /// The FSM thread took them.
    ApplyStart = 12,
    /// `on_apply` and the dones ran and their answers were written.
    ApplyEnd = 13,
    /// A client read an answer frame.
    ResponseRead = 14,
    /// A thread woke a pool thread (log writer or FSM) for queued work.
    PoolWake = 15,
    /// A log writer or driver wrote held Raft frames to a peer's socket.
    PeerWritten = 16,
}

impl Stage {
    /// Every stage, in the order of the path.
    pub const ALL: [Stage; 16] = [
        Stage::RequestSent,
        Stage::RequestRead,
        Stage::AppendSent,
        Stage::AppendRead,
        Stage::WriteStart,
        Stage::SyncStart,
        Stage::SyncEnd,
        Stage::Reported,
        Stage::AckSent,
        Stage::AckRead,
        Stage::ApplyQueued,
        Stage::ApplyStart,
        Stage::ApplyEnd,
        Stage::ResponseRead,
        Stage::PoolWake,
        Stage::PeerWritten,
    ];

    /// The stage written as `code` in a trace file.
    pub fn from_code(code: u8) -> Option<Stage> {
        Stage::ALL.iter().copied().find(|s| *s as u8 == code)
    }
}

/// 0: not decided yet, 1: off, 2: on.
static STATE: AtomicU8 = AtomicU8::new(0);
static RECORDS: Mutex<Vec<(u64, u8, u64)>> = Mutex::new(Vec::new());

/// Records that `stage` of the write at log `index` happens now.
#[inline]
pub fn record(stage: Stage, index: u64) {
    match STATE.load(Ordering::Relaxed) {
        1 => {}
        2 => push(stage, index),
        _ => {
            if start() {
                push(stage, index)
            }
        }
    }
}

/// Whether stages are recorded (for a caller that must compute an index).
#[inline]
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => start(),
    }
}

fn push(stage: Stage, index: u64) {
    let now = monotonic_ns();
    RECORDS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((now, stage as u8, index));
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Decides once whether to record (the first caller starts the flusher).
#[cold]
fn start() -> bool {
    static DECIDE: Mutex<()> = Mutex::new(());
    let _once = DECIDE.lock().unwrap_or_else(|p| p.into_inner());
    match STATE.load(Ordering::Relaxed) {
        1 => return false,
        2 => return true,
        _ => {}
    }
    let dir = std::env::var_os(ENV).filter(|d| !d.is_empty());
    let file = dir.and_then(|dir| {
        let path = std::path::Path::new(&dir).join(format!("stages.{}", std::process::id()));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    let Some(file) = file else {
        STATE.store(1, Ordering::Relaxed);
        return false;
    };
    let spawned = std::thread::Builder::new()
        .name("rraft-trace".into())
        .spawn(move || flush_forever(file));
    let on = spawned.is_ok();
    STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
    on
}

fn flush_forever(file: std::fs::File) {
    let mut out = std::io::BufWriter::new(file);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let taken = std::mem::take(&mut *RECORDS.lock().unwrap_or_else(|p| p.into_inner()));
        for (ns, stage, index) in taken {
            let _ = writeln!(out, "{ns} {stage} {index}");
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_reads_back_from_its_code() {
        for s in Stage::ALL {
            assert_eq!(Stage::from_code(s as u8), Some(s));
        }
        assert_eq!(Stage::from_code(0), None);
        assert_eq!(Stage::from_code(Stage::ALL.len() as u8 + 1), None);
    }

    #[test]
    fn the_clock_is_monotonic() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
    }
}
