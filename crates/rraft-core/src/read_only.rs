//! The leader's queue of ReadIndex requests waiting for a quorum of
//! heartbeat acknowledgements.

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;

use crate::api::PeerId;

#[derive(Clone, Debug)]
pub struct ReadRequest {
    /// Sequence number carried in the heartbeat context.
    pub seq: u64,
    /// Commit index when the request was received.
    pub index: u64,
    pub context: Bytes,
    /// None: asked locally; Some(peer): forwarded by a follower.
    pub from: Option<PeerId>,
    pub acks: BTreeSet<PeerId>,
}

#[derive(Debug, Default)]
pub struct ReadOnly {
    queue: VecDeque<ReadRequest>,
    next_seq: u64,
    /// Requests held until the leader has committed an entry of its term.
    pub waiting: Vec<(Bytes, Option<PeerId>)>,
}

pub fn encode_seq(seq: u64) -> Bytes {
    Bytes::copy_from_slice(&seq.to_be_bytes())
}

pub fn decode_seq(ctx: &[u8]) -> Option<u64> {
    let arr: [u8; 8] = ctx.try_into().ok()?;
    Some(u64::from_be_bytes(arr))
}

impl ReadOnly {
    /// Queues a request; returns its heartbeat context.
    pub fn add(&mut self, index: u64, context: Bytes, from: Option<PeerId>) -> Bytes {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.queue.push_back(ReadRequest {
            seq,
            index,
            context,
            from,
            acks: BTreeSet::new(),
        });
        encode_seq(seq)
    }

    /// Context of the newest pending request (re-sent with each heartbeat).
    pub fn last_context(&self) -> Bytes {
        self.queue
            .back()
            .map(|r| encode_seq(r.seq))
            .unwrap_or_default()
    }

    /// Records `peer`'s acknowledgement of request `seq` (which acknowledges
    /// every older request too). Returns the acknowledged request.
    pub fn ack(&mut self, seq: u64, peer: &PeerId) -> Option<&ReadRequest> {
        let pos = self.queue.iter().position(|r| r.seq == seq)?;
        for r in self.queue.iter_mut().take(pos + 1) {
            if !r.acks.contains(peer) {
                r.acks.insert(peer.clone());
            }
        }
        self.queue.get(pos)
    }

    /// Removes and returns every request up to and including `seq`.
    pub fn advance(&mut self, seq: u64) -> Vec<ReadRequest> {
        let mut out = Vec::new();
        while matches!(self.queue.front(), Some(r) if r.seq <= seq) {
            if let Some(r) = self.queue.pop_front() {
                out.push(r);
            }
        }
        out
    }

    /// No read is queued or held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.waiting.is_empty()
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.waiting.clear();
    }
}
