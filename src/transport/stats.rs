//! Transport counters. Every component of one [`super::Server`] (its
//! listener, its [`super::Transport`] and its [`super::RpcClient`]) shares one
//! set; [`Stats`] is a plain snapshot for the node status JSON.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the transport counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames read (any kind) and their bytes including headers.
    pub frames_in: u64,
    pub bytes_in: u64,
    /// Frames written (any kind) and their bytes including headers.
    pub frames_out: u64,
    pub bytes_out: u64,
    /// Write system calls batches (one flush may carry many frames).
    pub flushes: u64,
    /// Raft messages received and handed to a node.
    pub messages_in: u64,
    /// Raft messages written to a socket.
    pub messages_out: u64,
    /// Raft messages dropped because the per-peer queue was full.
    pub dropped_queue_full: u64,
    /// Raft messages dropped because the peer was unreachable.
    pub dropped_peer_down: u64,
    /// Raft messages received for a group / peer not registered here.
    pub dropped_unknown_target: u64,
    /// Messages dropped because one alone exceeds the maximum frame size, or
    /// because the transport was stopped, or `to` did not parse.
    pub dropped_other: u64,
    /// Coalesced heartbeat frames written, and the heartbeats and answers
    /// (of any group) they carried: their ratio is the coalescing rate.
    pub heartbeat_frames_out: u64,
    pub beats_out: u64,
    /// Keepalive frames (an empty batch on an idle peer connection).
    pub keepalives_out: u64,
    pub keepalives_in: u64,
    /// Peer connections lost or refused: each told the nodes that the
    /// server at that address may have failed.
    pub servers_lost: u64,
    /// Successful connects after a previous connection to the same address.
    pub reconnects: u64,
    /// Failed connection attempts (peer sender and RPC client).
    pub connect_failures: u64,
    /// Inbound connections accepted by the server.
    pub connections_accepted: u64,
    /// Gauges: inbound connections open now, outbound peer-sender and RPC
    /// connections open now.
    pub connections_open: u64,
    pub peer_connections_open: u64,
    pub rpc_connections_open: u64,
    /// Connections closed because of a malformed, truncated or oversized frame.
    pub bad_frames: u64,
    /// Requests received by the server.
    pub requests_in: u64,
    /// RPC calls started / timed out / failed on connection errors.
    pub rpc_calls: u64,
    pub rpc_timeouts: u64,
    pub rpc_conn_failures: u64,
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Shared atomic counters behind [`Stats`].
        #[derive(Debug, Default)]
        pub struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Counters {
            /// A consistent-enough snapshot (each counter read once, relaxed).
            pub fn snapshot(&self) -> Stats {
                Stats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters!(
    frames_in,
    bytes_in,
    frames_out,
    bytes_out,
    flushes,
    messages_in,
    messages_out,
    dropped_queue_full,
    dropped_peer_down,
    dropped_unknown_target,
    dropped_other,
    heartbeat_frames_out,
    beats_out,
    keepalives_out,
    keepalives_in,
    servers_lost,
    reconnects,
    connect_failures,
    connections_accepted,
    connections_open,
    peer_connections_open,
    rpc_connections_open,
    bad_frames,
    requests_in,
    rpc_calls,
    rpc_timeouts,
    rpc_conn_failures,
);

/// Adds `n` to a counter.
#[inline]
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Adds one to a counter.
#[inline]
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Holds a gauge up (+1) for its lifetime.
pub(crate) struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    pub(crate) fn up(c: &'a AtomicU64) -> Gauge<'a> {
        c.fetch_add(1, Ordering::Relaxed);
        Gauge(c)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
