//! The pipelining window of one follower: the last index of each Append in
//! flight, oldest first, in a fixed-capacity ring.

#[derive(Clone, Debug)]
pub struct Inflights {
    buf: Vec<u64>,
    start: usize,
    count: usize,
    cap: usize,
}

impl Inflights {
    pub fn new(cap: usize) -> Inflights {
        Inflights {
            buf: Vec::new(),
            start: 0,
            count: 0,
            // The ring is allocated at full size: bound it.
            cap: cap.clamp(1, 1 << 16),
        }
    }

    pub fn full(&self) -> bool {
        self.count >= self.cap
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Records an Append whose last entry is `last`. Ignored when full.
    pub fn add(&mut self, last: u64) {
        if self.full() {
            return;
        }
        if self.buf.len() < self.cap {
            // Grow lazily up to the capacity.
            self.buf.resize(self.cap, 0);
        }
        let slot = (self.start + self.count) % self.cap;
        self.buf[slot] = last;
        self.count += 1;
    }

    /// Frees every Append whose last index is <= `to`.
    pub fn free_le(&mut self, to: u64) {
        while self.count > 0 && self.buf[self.start] <= to {
            self.start = (self.start + 1) % self.cap;
            self.count -= 1;
        }
        if self.count == 0 {
            self.start = 0;
        }
    }

    /// Frees the oldest Append (used when a heartbeat answer shows the peer is
    /// alive but the window is stuck full).
    pub fn free_first(&mut self) {
        if self.count > 0 {
            self.start = (self.start + 1) % self.cap;
            self.count -= 1;
        }
    }

    pub fn reset(&mut self) {
        self.start = 0;
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Inflights;

    #[test]
    fn window_fills_and_frees_in_order() {
        let mut w = Inflights::new(3);
        w.add(1);
        w.add(3);
        w.add(7);
        assert!(w.full());
        w.add(9); // ignored
        w.free_le(3);
        assert_eq!(w.len(), 1);
        w.add(9);
        w.add(12);
        assert!(w.full());
        w.free_le(8);
        assert_eq!(w.len(), 2);
        w.free_first();
        assert_eq!(w.len(), 1);
        w.free_le(100);
        assert_eq!(w.len(), 0);
    }
}
