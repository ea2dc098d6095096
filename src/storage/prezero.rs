//! Zeros kept ahead of a log file's append point, written and made durable
//! before entries overwrite them.
//!
//! On ext4 (and most journaling file systems) an fdatasync after an append
//! that grows the file also commits the inode (its new size, the new
//! blocks) through the journal and waits for it; an fdatasync after writes
//! inside blocks that already hold durable data writes those blocks alone.
//! Zeros written with `fallocate` do not help: its unwritten extents cost
//! the same metadata commit when first written. So a log that keeps a
//! window of real, synced zeros ahead of its last entry pays the metadata
//! commit once per window, in [`write_zeros`], instead of once per sync.
//!
//! The zeros go in only after a sync returned and its acknowledgements
//! left (the log writer calls its log's `prepare_ahead` then), so they
//! never lengthen a commit; a batch queued meanwhile waits for them. Large
//! batches skip it: their fdatasync is dominated by the data, and the
//! zeros would double the bytes written.
//!
//! Recovery reads a tail of zeros after the last whole entry as the end of
//! the log (see `segment::scan`): zeros are never a valid entry header.

use std::io;

use super::fs::File;

/// Zeros written per call.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// How far ahead of the append point zeros are kept, and for which
/// batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZeroAhead {
    /// Bytes of zeros wanted after the last entry (0: off).
    pub window: u64,
    /// Batches (bytes made durable by the last sync) at least this large
    /// skip the top-up.
    pub max_batch: u64,
}

impl ZeroAhead {
    /// The byte range `[from, to)` to fill with zeros, or None: when the
    /// file holds entries up to `size` and zeros (or entries) up to
    /// `allocated`, may not grow past `limit`, and the last sync made
    /// `batch` bytes durable. The window is topped up once less than half
    /// of it is left, so one metadata commit serves many syncs.
    pub fn wanted(&self, size: u64, allocated: u64, limit: u64, batch: u64) -> Option<(u64, u64)> {
        if self.window == 0 || batch == 0 || batch >= self.max_batch {
            return None;
        }
        let target = (size + self.window).min(limit);
        if allocated >= target || allocated >= size + self.window / 2 {
            return None;
        }
        Some((allocated.max(size), target))
    }
}

/// Writes zeros over `[from, to)` of `f`, then (with `sync`) makes them
/// and the file's new length durable.
pub fn write_zeros(f: &dyn File, from: u64, to: u64, sync: bool) -> io::Result<()> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        f.write_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    if sync && to > from {
        f.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: ZeroAhead = ZeroAhead {
        window: 1000,
        max_batch: 100,
    };

    #[test]
    fn tops_up_when_half_the_window_is_used() {
        // Fresh segment: the whole window.
        assert_eq!(Z.wanted(0, 0, 10_000, 10), Some((0, 1000)));
        // More than half left: nothing.
        assert_eq!(Z.wanted(400, 1000, 10_000, 10), None);
        // Less than half left: back to a full window after the last entry.
        assert_eq!(Z.wanted(600, 1000, 10_000, 10), Some((1000, 1600)));
        // Entries past the zeros: from the last entry.
        assert_eq!(Z.wanted(1200, 1000, 10_000, 10), Some((1200, 2200)));
        // Never past the segment's limit.
        assert_eq!(Z.wanted(9500, 9500, 10_000, 10), Some((9500, 10_000)));
        assert_eq!(Z.wanted(9800, 10_000, 10_000, 10), None);
    }

    #[test]
    fn off_for_large_or_empty_batches_and_a_zero_window() {
        assert_eq!(Z.wanted(0, 0, 10_000, 100), None);
        assert_eq!(Z.wanted(0, 0, 10_000, 0), None);
        let off = ZeroAhead {
            window: 0,
            max_batch: 100,
        };
        assert_eq!(off.wanted(0, 0, 10_000, 10), None);
    }
}
