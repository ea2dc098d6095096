//! Answer deadlines of one method's requests (`raft_server_add_method_with_timeout`).
//!
//! Every request of a method gets the same timeout, so deadlines arrive in
//! order: a FIFO of (deadline, request key) and one sweeper task per method
//! replace a timer task per request (which at tens of thousands of requests
//! a second kept a 30 s backlog of sleeping tasks, hundreds of MiB, alive).
//! Answered requests are dropped from the front when the next one is
//! queued, so a method answered in time keeps only its requests in flight.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long the sweeper of an idle method waits before it checks whether
/// the method still exists (it then ends).
const IDLE_CHECK: Duration = Duration::from_secs(1);

type KeyFn = Box<dyn Fn(usize) + Send + Sync>;
type LiveFn = Box<dyn Fn(usize) -> bool + Send + Sync>;

pub(crate) struct RequestDeadlines {
    timeout: Duration,
    queue: Mutex<VecDeque<(Instant, usize)>>,
    wake: Notify,
    /// Answers a request that is still unanswered at its deadline.
    expire: KeyFn,
    /// Whether a request is still unanswered.
    is_live: LiveFn,
}

impl RequestDeadlines {
    /// Deadlines `timeout` after each [`RequestDeadlines::push`]; `expire`
    /// runs on a tokio worker for each request still unanswered by then.
    /// The sweeper ends (within [`IDLE_CHECK`]) once the returned value is
    /// dropped.
    pub(crate) fn start(
        timeout: Duration,
        expire: impl Fn(usize) + Send + Sync + 'static,
        is_live: impl Fn(usize) -> bool + Send + Sync + 'static,
    ) -> Arc<RequestDeadlines> {
        let deadlines = Arc::new(RequestDeadlines {
            timeout,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            expire: Box::new(expire),
            is_live: Box::new(is_live),
        });
        crate::node::runtime::handle().spawn(sweep(Arc::downgrade(&deadlines)));
        deadlines
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, usize)>> {
        // Single push/pop calls cannot leave the queue half-updated.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the deadline of the request `key`.
    pub(crate) fn push(&self, key: usize) {
        let mut q = self.queue();
        while q.front().is_some_and(|&(_, k)| !(self.is_live)(k)) {
            q.pop_front();
        }
        let was_empty = q.is_empty();
        // Taken under the lock: the queue stays ordered by deadline.
        q.push_back((Instant::now() + self.timeout, key));
        drop(q);
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// The requests whose deadline passed, removed; or the next deadline.
    fn due(&self, now: Instant) -> Result<Vec<usize>, Option<Instant>> {
        let mut q = self.queue();
        let mut due = Vec::new();
        while let Some(&(deadline, key)) = q.front() {
            if deadline > now {
                break;
            }
            q.pop_front();
            due.push(key);
        }
        if due.is_empty() {
            Err(q.front().map(|&(deadline, _)| deadline))
        } else {
            Ok(due)
        }
    }
}

async fn sweep(deadlines: Weak<RequestDeadlines>) {
    loop {
        let Some(d) = deadlines.upgrade() else {
            return;
        };
        match d.due(Instant::now()) {
            Ok(keys) => keys.into_iter().for_each(|k| (d.expire)(k)),
            Err(Some(next)) => {
                // Later pushes have later deadlines: nothing to wake for.
                drop(d);
                tokio::time::sleep_until(next).await;
            }
            Err(None) => {
                let _ = tokio::time::timeout(IDLE_CHECK, d.wake.notified()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::mpsc;

    #[test]
    fn answered_requests_leave_the_queue_when_the_next_one_comes() {
        let live: Arc<Mutex<HashSet<usize>>> = Arc::default();
        let l = live.clone();
        let d = RequestDeadlines::start(
            Duration::from_secs(30),
            |_| {},
            move |k| l.lock().unwrap().contains(&k),
        );
        for key in 0..10_000 {
            live.lock().unwrap().insert(key);
            d.push(key);
            // Answered at once, as a healthy method does.
            live.lock().unwrap().remove(&key);
        }
        assert_eq!(d.queue().len(), 1, "only the last request may remain");
    }

    #[test]
    fn unanswered_requests_expire_in_order_after_the_timeout() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let d = RequestDeadlines::start(
            Duration::from_millis(50),
            move |k| tx.lock().unwrap().send(k).unwrap(),
            |_| true,
        );
        let start = std::time::Instant::now();
        for key in 0..5 {
            d.push(key);
        }
        let expired: Vec<usize> = (0..5)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(expired, vec![0, 1, 2, 3, 4]);
        assert!(start.elapsed() >= Duration::from_millis(50));
    }
}
