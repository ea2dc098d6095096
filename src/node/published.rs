//! State the driver publishes after every turn that changed it, so that
//! frequent queries (`is_leader`, `leader_id`, the lease check, routing
//! hints) never wait for the driver task. Only the driver writes it, so
//! it skips a store that would change nothing (`Driver::publish`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;

use crate::core::{Role, SoftState};

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub role: Role,
    pub term: u64,
    pub leader: Option<String>,
    /// The lease holds until this reading of the node's clock (None: not
    /// valid).
    pub lease_until: Option<Duration>,
    /// The lease holds only once the state machine has applied this index
    /// (the commit index when the lease was published): a local read under
    /// it must not miss a committed entry.
    pub lease_needs_applied: u64,
    pub failed: bool,
    pub shut_down: bool,
}

pub struct Published {
    state: Mutex<Snapshot>,
    clock: Arc<dyn Clock>,
    /// The last index the node's state machine applied, stored by its FSM
    /// thread after each apply batch (`FsmCaller`), read by the lease check
    /// and by the driver at each turn: no wake-up of the driver per batch.
    applied: Arc<AtomicU64>,
}

impl Published {
    pub fn new(clock: Arc<dyn Clock>) -> Published {
        Published {
            clock,
            applied: Arc::new(AtomicU64::new(0)),
            state: Mutex::new(Snapshot {
                role: Role::Follower,
                term: 0,
                leader: None,
                lease_until: None,
                lease_needs_applied: 0,
                failed: false,
                shut_down: false,
            }),
        }
    }

    /// Reads the state without cloning it (no allocation on hot paths such
    /// as a request handler's `is_leader` check).
    fn with<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// `lease_until` is when the leader lease ends on the node's clock (the
    /// core's verdict turned into a deadline): a reader compares it with the
    /// clock, so a stalled driver cannot keep a lease alive.
    ///
    /// The lease also waits for the state machine to apply
    /// `lease_needs_applied`.
    pub fn update(
        &self,
        soft: &SoftState,
        lease_until: Option<Duration>,
        lease_needs_applied: u64,
        failed: bool,
    ) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // A term has at most one leader: a node that knew one and still
        // knows one in the same term knows the same one, and the name is
        // compared (and copied) only when the term or the knowing changed.
        let same_leader = s.term == soft.term && s.leader.is_some() == soft.leader.is_some();
        if !same_leader && s.leader.as_deref() != soft.leader.as_deref() {
            s.leader = soft.leader.as_deref().map(String::from);
        }
        s.role = soft.role;
        s.term = soft.term;
        s.lease_until = lease_until;
        s.lease_needs_applied = lease_needs_applied;
        s.failed = failed;
    }

    /// The cell the node's FSM thread stores its applied index in.
    pub(crate) fn applied_cell(&self) -> Arc<AtomicU64> {
        self.applied.clone()
    }

    /// The last index the node's state machine applied (0 before the first).
    pub(crate) fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub fn shut_down(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.shut_down = true;
        s.role = Role::Follower;
        s.leader = None;
        s.lease_until = None;
    }

    pub fn is_leader(&self) -> bool {
        self.with(|s| s.role == Role::Leader && !s.shut_down && !s.failed)
    }

    pub fn leader(&self) -> Option<String> {
        self.with(|s| s.leader.clone())
    }

    pub fn term(&self) -> u64 {
        self.with(|s| s.term)
    }

    pub fn failed(&self) -> bool {
        self.with(|s| s.failed)
    }

    pub fn lease_valid(&self) -> bool {
        let now = self.clock.now();
        let applied = self.applied_index();
        self.with(|s| {
            s.role == Role::Leader
                && !s.shut_down
                && s.lease_until.is_some_and(|until| now < until)
                && applied >= s.lease_needs_applied
        })
    }
}
