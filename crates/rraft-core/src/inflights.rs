//! The pipelining window of one follower: the last index of each Append in
//! flight, oldest first, in a fixed-capacity ring, with the bytes of entry
//! data each carries.

#[derive(Clone, Debug)]
pub struct Inflights {
    /// (last index, bytes) of each Append in flight.
    buf: Vec<(u64, u64)>,
    start: usize,
    count: usize,
    cap: usize,
    bytes: u64,
}

impl Inflights {
    pub fn new(cap: usize) -> Inflights {
        Inflights {
            buf: Vec::new(),
            start: 0,
            count: 0,
            // The ring is allocated at full size: bound it.
            cap: cap.clamp(1, 1 << 16),
            bytes: 0,
        }
    }

    /// Appends in flight.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Bytes of entry data the Appends in flight carry.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends the window holds at most.
    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn full(&self) -> bool {
        self.count >= self.cap
    }

    /// Records an Append whose last entry is `last`, carrying `bytes` of
    /// entry data. Ignored when full.
    pub fn add(&mut self, last: u64, bytes: u64) {
        if self.full() {
            return;
        }
        if self.buf.len() < self.cap {
            // Grow lazily up to the capacity.
            self.buf.resize(self.cap, (0, 0));
        }
        let slot = (self.start + self.count) % self.cap;
        self.buf[slot] = (last, bytes);
        self.count += 1;
        self.bytes += bytes;
    }

    /// Frees every Append whose last index is <= `to`.
    pub fn free_le(&mut self, to: u64) {
        while self.count > 0 && self.buf[self.start].0 <= to {
            self.free_first();
        }
        if self.count == 0 {
            self.start = 0;
        }
    }

    /// Frees the oldest Append (used when a heartbeat answer shows the peer is
    /// alive but the window is stuck full).
    pub fn free_first(&mut self) {
        if self.count > 0 {
            self.bytes -= self.buf[self.start].1;
            self.start = (self.start + 1) % self.cap;
            self.count -= 1;
        }
    }

    pub fn reset(&mut self) {
        self.start = 0;
        self.count = 0;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Inflights;

    #[test]
    fn window_fills_and_frees_in_order() {
        let mut w = Inflights::new(3);
        w.add(1, 10);
        w.add(3, 20);
        w.add(7, 40);
        assert!(w.full());
        w.add(9, 80); // ignored
        assert_eq!(w.bytes(), 70);
        w.free_le(3);
        assert_eq!((w.count(), w.bytes()), (1, 40));
        w.add(9, 1);
        w.add(12, 2);
        assert!(w.full());
        w.free_le(8);
        assert_eq!((w.count(), w.bytes()), (2, 3));
        w.free_first();
        assert_eq!((w.count(), w.bytes()), (1, 2));
        w.free_le(100);
        assert_eq!((w.count(), w.bytes()), (0, 0));
    }
}
