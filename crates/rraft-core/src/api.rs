//! The types through which a runtime talks to the core. This file is the
//! contract between `core` and everything that drives it (node runtime,
//! simulator): change it only with care.

use bytes::Bytes;

pub use crate::proto::{
    Configuration, Entry, EntryType, HardState, Message, MessageType, SnapshotMeta,
};

/// A peer of a group: braft's `ip:port:idx` text, or any unique name in tests.
pub type PeerId = crate::id::Id;

/// Static settings of one core. Durations are in ticks; the runtime decides
/// how long a tick is (rraft's node runtime: election_timeout_ms / election_ticks).
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id.
    pub id: PeerId,
    /// Election timeout T in ticks; each timer draw is uniform in [T, 2T).
    pub election_ticks: u32,
    /// Leader heartbeat period in ticks (braft: election / 10).
    pub heartbeat_ticks: u32,
    /// Max entries in one Append message (braft raft_max_entries_size 1024).
    pub max_entries_per_msg: usize,
    /// Max payload bytes in one Append message (braft raft_max_body_size 512 KiB);
    /// at least one entry is always sent.
    pub max_bytes_per_msg: u64,
    /// Append messages in flight to one follower in replicate state
    /// (pipelining window).
    pub max_inflight_msgs: usize,
    /// A catching-up peer is promoted once it is within this many entries of
    /// the leader's last index (braft catchup_margin 1000).
    pub catchup_margin: u64,
    /// A membership change fails with `Error::CatchupTimeout` if new peers are
    /// not caught up within this many ticks (braft: catchup_timeout_ms, 0 =
    /// the election timeout).
    pub catchup_ticks: u32,
    /// Clock drift allowance in ticks: a follower that heard from its leader
    /// within election_ticks + this refuses votes; the leader lease is
    /// election_ticks - this (braft max_clock_drift_ms).
    pub max_clock_drift_ticks: u32,
    /// Seed of the core's deterministic RNG (election jitter).
    pub seed: u64,
    /// A leader whose group has been idle and fully replicated for this
    /// many ticks quiesces: a last heartbeat round, then no ticks' work
    /// until something wakes the group (see `quiesce.rs`). 0 = never.
    pub quiesce_ticks: u32,
    /// Whether a leader may hold a lease (`lease_expiry`, lease reads).
    /// Off for a group whose other members may vote for a candidate while
    /// a leader is alive (braft replicas without `raft_enable_leader_lease`):
    /// reads then take a ReadIndex round.
    pub leader_lease: bool,
    /// The same on every replica of a group (rraft's node runtime hashes
    /// the group's name): orders the followers that campaign after their
    /// leader is suspected (`Raft::peer_suspected`), so that they do not
    /// split the vote and the groups two servers share spread their new
    /// leaders over both.
    pub group_seed: u64,
}

impl Config {
    /// A `group_seed` from a group's name, the same in every process and
    /// version.
    pub fn group_seed_of(group: &str) -> u64 {
        super::raft::hash_id(group)
    }

    /// braft's defaults, expressed with `election_ticks` = 10.
    pub fn new(id: impl Into<PeerId>) -> Config {
        Config {
            id: id.into(),
            election_ticks: 10,
            heartbeat_ticks: 1,
            max_entries_per_msg: 1024,
            max_bytes_per_msg: 512 * 1024,
            max_inflight_msgs: 256,
            catchup_margin: 1000,
            catchup_ticks: 10,
            max_clock_drift_ticks: 0,
            seed: 0,
            quiesce_ticks: 0,
            leader_lease: true,
            group_seed: 0,
        }
    }
}

/// Role of a node in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
    /// A non-voting member: receives the log, never campaigns or votes.
    Learner,
}

/// Volatile state the runtime may want to react to (callbacks, routing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoftState {
    pub role: Role,
    pub term: u64,
    /// The leader this node currently follows (itself when leader).
    pub leader: Option<PeerId>,
}

/// A ReadIndex request that is confirmed: serve the read once the state
/// machine has applied `index`. `context` is what was passed to `read_index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub index: u64,
    pub context: Bytes,
}

/// Events the runtime reports to the user (done callbacks).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The membership change started by `propose_conf_change` has finished:
    /// `Ok(conf)` once the final (non-joint) configuration is committed, or
    /// the reason it was abandoned.
    ConfChangeDone(Result<Configuration, Error>),
    /// A leadership transfer started by `transfer_leader` failed or timed out
    /// (success shows up as a role change to follower).
    TransferFailed(Error),
}

/// Everything the core wants done. Take it with `Raft::ready()`.
///
/// The runtime must:
/// 1. persist, in this order, `snapshot` (reset the log to start after it),
///    `entries` (truncating any stored suffix from `entries[0].index`) and
///    `hard_state`; then call `on_persisted(last index, its term)` (the
///    snapshot's index/term when there are no entries);
/// 2. send `messages` at once, and `persisted_messages` only after step 1 is
///    durable (votes and append acknowledgements must not outrun the disk);
/// 3. apply `committed_entries` in order (they are already durable locally)
///    and call `on_applied(index)` as it goes;
/// 4. serve each `read_states` entry once applied ≥ its index.
///
/// Several Readys may be in flight: persistence must complete in the order
/// the Readys were taken.
#[derive(Debug, Default)]
pub struct Ready {
    pub soft_state: Option<SoftState>,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<SnapshotMeta>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub persisted_messages: Vec<Message>,
    pub committed_entries: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    pub events: Vec<Event>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.events.is_empty()
    }
}

/// What the runtime recovered from disk, handed to `Raft::new`.
#[derive(Clone, Debug, Default)]
pub struct InitialState {
    pub hard_state: HardState,
    /// The latest snapshot, if any (its configuration applies at its index).
    pub snapshot: Option<SnapshotMeta>,
    /// Every configuration entry in the log after the snapshot, ascending.
    /// The last one is the configuration in force (Raft thesis §4.1: a
    /// configuration takes effect when appended, not when committed).
    pub configurations: Vec<Entry>,
    /// braft's `initial_conf`: used only when there is no snapshot, no log
    /// and no configuration entry (a brand new node). Empty = wait to be added.
    pub initial_conf: Configuration,
    /// Index the state machine has applied (the snapshot's, after a restart).
    pub applied: u64,
    /// Recovery cut log entries that this node may have acknowledged (data
    /// of the last write batch was damaged, and nothing proves it was never
    /// synced). Until it holds the log up to a leader's commit index again,
    /// the node neither votes nor campaigns: its vote could elect a leader
    /// that lacks a committed entry that only it had counted for
    /// (protocol-aware recovery, Alagappan et al., FAST '18). Its append
    /// acknowledgements still count: each covers entries durable again.
    pub lost_acknowledged: bool,
}

/// Why the core refused or abandoned something. The FFI maps these to braft
/// error codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// EPERM: this node is not the leader; `leader` is the one it knows of.
    NotLeader { leader: Option<PeerId> },
    /// EBUSY: a leadership transfer or a membership change is in progress.
    Busy(&'static str),
    /// EINVAL: the request makes no sense (empty configuration, unknown peer, ...).
    Invalid(String),
    /// ECATCHUP: a new peer did not catch up in time.
    CatchupTimeout(PeerId),
    /// ELEADERREMOVED / EPERM: leadership was lost before the request finished.
    LeadershipLost,
    /// ETRANSFERLEADERSHIP: the transfer target did not take over in time.
    TransferTimeout(PeerId),
    /// The log storage failed or the entry was compacted away.
    Storage(StorageError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotLeader { leader: Some(l) } => write!(f, "not the leader; the leader is {l}"),
            Error::NotLeader { leader: None } => write!(f, "not the leader; no leader is known"),
            Error::Busy(why) => write!(f, "busy: {why}"),
            Error::Invalid(why) => write!(f, "invalid argument: {why}"),
            Error::CatchupTimeout(p) => write!(f, "peer {p} did not catch up in time"),
            Error::LeadershipLost => write!(f, "leadership lost before the request finished"),
            Error::TransferTimeout(p) => write!(f, "leadership transfer to {p} timed out"),
            Error::Storage(e) => write!(f, "log storage: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Errors of a [`crate::LogStorage`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The index is before the first entry (compacted into a snapshot).
    Compacted,
    /// The index is after the last entry.
    Unavailable,
    /// An IO or corruption error, with its description.
    Io(String),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Compacted => write!(f, "entry compacted"),
            StorageError::Unavailable => write!(f, "entry not yet available"),
            StorageError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Replication state of one peer, as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    Probe,
    Replicate,
    Snapshot,
}

/// One peer's line in [`Status`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: PeerId,
    pub is_learner: bool,
    pub match_index: u64,
    pub next_index: u64,
    pub state: ProgressState,
    /// Ticks since the leader last heard from this peer.
    pub ticks_since_contact: u32,
}

/// A point-in-time view of the core, for `get_status` and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: PeerId,
    pub role: Role,
    pub term: u64,
    pub vote: Option<PeerId>,
    pub leader: Option<PeerId>,
    pub commit: u64,
    pub applied: u64,
    /// Highest index durable on this node.
    pub persisted: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    pub configuration: Configuration,
    /// Leader only: every other member's replication progress.
    pub peers: Vec<PeerStatus>,
    pub transferring_to: Option<PeerId>,
    /// The group sleeps on this node: no election timer (follower), no
    /// heartbeats (leader) until it wakes.
    pub quiescent: bool,
}
