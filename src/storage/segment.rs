//! One segment file of the log and how it is scanned at recovery.
//!
//! Names (braft's): `log_inprogress_<first>` for the open segment, the one
//! being appended to, and `log_<first>_<last>` for a closed one; indexes are
//! 20-digit zero-padded decimals so names sort by index.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::entry_codec::{self, HEADER_LEN};
use super::fs::{File, FileSystem, OpenMode};
use crate::core::StorageError;
use crate::proto::Entry;

pub fn inprogress_name(first: u64) -> String {
    format!("log_inprogress_{first:020}")
}

pub fn closed_name(first: u64, last: u64) -> String {
    format!("log_{first:020}_{last:020}")
}

/// What a file name says about a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentName {
    Open { first: u64 },
    Closed { first: u64, last: u64 },
}

impl SegmentName {
    pub fn parse(name: &str) -> Option<SegmentName> {
        let digits = |s: &str| -> Option<u64> {
            if s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        };
        if let Some(rest) = name.strip_prefix("log_inprogress_") {
            return Some(SegmentName::Open {
                first: digits(rest)?,
            });
        }
        let rest = name.strip_prefix("log_")?;
        let (a, b) = rest.split_once('_')?;
        Some(SegmentName::Closed {
            first: digits(a)?,
            last: digits(b)?,
        })
    }

    pub fn first(&self) -> u64 {
        match *self {
            SegmentName::Open { first } | SegmentName::Closed { first, .. } => first,
        }
    }
}

/// The in-memory index of one segment: where each entry starts.
#[derive(Debug)]
pub struct Segment {
    /// Index of the first entry (the one in the file name).
    pub first: u64,
    /// Byte offset of each entry; entry `first + i` starts at `offsets[i]`.
    /// Segments roll before an offset could pass `u32::MAX`.
    pub offsets: Vec<u32>,
    /// Bytes of whole entries (where the next entry goes).
    pub size: u64,
    /// Length of the file when it holds preallocated zeros after `size`
    /// (only the open segment; see `LogOptions::preallocate_bytes`).
    pub allocated: u64,
    /// Full: no more appends. Renamed to its closed name at the next sync,
    /// once its data is durable.
    pub sealed: bool,
    /// Carries its closed name `log_<first>_<last>` (implies `sealed`).
    pub closed: bool,
    /// Opened on first use for closed segments (keeps few descriptors open).
    file: OnceLock<Arc<dyn File>>,
}

impl Segment {
    pub fn new(first: u64, closed: bool, file: Option<Arc<dyn File>>) -> Segment {
        let cell = OnceLock::new();
        if let Some(f) = file {
            let _ = cell.set(f);
        }
        Segment {
            first,
            offsets: Vec::new(),
            size: 0,
            allocated: 0,
            sealed: closed,
            closed,
            file: cell,
        }
    }

    pub fn len(&self) -> u64 {
        self.offsets.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Index of the last entry (`first - 1` when empty).
    pub fn last(&self) -> u64 {
        self.first + self.len() - 1
    }

    pub fn name(&self) -> String {
        if self.closed {
            closed_name(self.first, self.last())
        } else {
            inprogress_name(self.first)
        }
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.name())
    }

    /// Byte range `[start, end)` of entry `index` (header included).
    pub fn byte_range(&self, index: u64) -> (u64, u64) {
        let i = (index - self.first) as usize;
        let start = self.offsets[i] as u64;
        let end = self
            .offsets
            .get(i + 1)
            .map(|&o| o as u64)
            .unwrap_or(self.size);
        (start, end)
    }

    /// The file handle, opening the file (read only) on first use.
    pub fn file(&self, fs: &dyn FileSystem, dir: &Path) -> Result<Arc<dyn File>, StorageError> {
        if let Some(f) = self.file.get() {
            return Ok(f.clone());
        }
        let path = self.path(dir);
        let f = fs
            .open(&path, OpenMode::Read)
            .map_err(|e| StorageError::Io(format!("open log segment: {e}")))?;
        Ok(self.file.get_or_init(|| f).clone())
    }

    /// Replaces the cached handle (after reopening the file for writing).
    pub fn set_file(&mut self, f: Arc<dyn File>) {
        self.file = OnceLock::new();
        let _ = self.file.set(f);
    }

    /// Forgets the handle (a closed segment reopens lazily).
    pub fn drop_file(&mut self) {
        self.file = OnceLock::new();
    }

    /// Decodes the entries `[lo, lo + n)` of this segment from `buf`, which
    /// holds the file's bytes starting at the offset of `lo`.
    pub fn decode_range(
        &self,
        dir: &Path,
        lo: u64,
        n: u64,
        buf: Bytes,
        out: &mut Vec<Entry>,
    ) -> Result<(), StorageError> {
        let base = self.byte_range(lo).0;
        for index in lo..lo + n {
            let (s, e) = self.byte_range(index);
            let (s, e) = ((s - base) as usize, (e - base) as usize);
            let corrupt = |what: String| {
                StorageError::Io(format!(
                    "log corruption in {} at byte offset {}: {what}",
                    self.path(dir).display(),
                    s as u64 + base
                ))
            };
            let h: &[u8; HEADER_LEN] = buf[s..s + HEADER_LEN].try_into().unwrap();
            let h = entry_codec::decode_header(h).map_err(|e| corrupt(e.to_string()))?;
            let entry = entry_codec::make_entry(index, &h, buf.slice(s + HEADER_LEN..e))
                .map_err(corrupt)?;
            out.push(entry);
        }
        Ok(())
    }
}

/// Term of each entry, stored as runs (terms change rarely): `(first index
/// of the run, term)`, ascending.
#[derive(Debug, Default)]
pub struct TermRuns(Vec<(u64, u64)>);

impl TermRuns {
    /// Records that `index` (the next index after the last pushed) has `term`.
    pub fn push(&mut self, index: u64, term: u64) {
        match self.0.last() {
            Some(&(_, t)) if t == term => {}
            _ => self.0.push((index, term)),
        }
    }

    /// Term of `index`, which must be within the indexes pushed.
    pub fn get(&self, index: u64) -> Option<u64> {
        let i = self.0.partition_point(|r| r.0 <= index);
        i.checked_sub(1).map(|i| self.0[i].1)
    }

    /// Forgets every index after `last_kept`.
    pub fn truncate_after(&mut self, last_kept: u64) {
        while matches!(self.0.last(), Some(&(start, _)) if start > last_kept) {
            self.0.pop();
        }
    }

    /// Forgets runs that end before `first` (the run holding `first` stays).
    pub fn drop_before(&mut self, first: u64) {
        let i = self.0.partition_point(|r| r.0 <= first);
        if i > 1 {
            self.0.drain(..i - 1);
        }
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Whether the scanned segment is a closed one or an open one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanKind {
    /// Closed segment `first..=last`: must hold exactly those entries, whole.
    Closed { last: u64 },
    /// An open segment (`log_inprogress_*`): scanning stops at the first
    /// spot that is not a whole, valid entry and reports what follows it;
    /// the caller decides whether that is a torn tail or damage.
    Open,
}

/// What follows the last whole entry of an open segment.
#[derive(Debug)]
pub struct Tail {
    /// Why scanning stopped there.
    pub what: String,
    /// Every byte after the last whole entry is zero (preallocated space,
    /// or writes that never reached the disk).
    pub zeros: bool,
}

/// What scanning a segment found.
#[derive(Debug)]
pub struct ScanResult {
    pub offsets: Vec<u32>,
    /// End of the last whole entry.
    pub size: u64,
    /// Bytes after `size` (only for an open segment).
    pub tail: Option<Tail>,
    /// Term of the last entry (`prev_term` if none).
    pub last_term: u64,
}

/// The error for damage at byte `off` of `path`.
pub fn corruption(path: &Path, off: u64, what: &str) -> StorageError {
    StorageError::Io(format!(
        "log corruption in {} at byte offset {off}: {what}",
        path.display()
    ))
}

/// Scans the segment file `path` whose bytes are `buf` (the whole file):
/// verifies every header and data checksum, builds the offsets, records
/// terms (from `first_index` on) into `terms` and configuration entries into
/// `configs`. `prev_term` is the term of the entry before this segment.
#[allow(clippy::too_many_arguments)]
pub fn scan(
    path: &Path,
    buf: &[u8],
    first: u64,
    kind: ScanKind,
    first_index: u64,
    prev_term: u64,
    terms: &mut TermRuns,
    configs: &mut Vec<Entry>,
) -> Result<ScanResult, StorageError> {
    let corrupt = |off: usize, what: &str| corruption(path, off as u64, what);
    let mut offsets = Vec::new();
    let mut pos = 0usize;
    let mut last_term = prev_term;
    let mut index = first;
    // Where scanning stopped and why, if before the end of the file.
    let mut problem: Option<(usize, String)> = None;
    while pos < buf.len() {
        if let ScanKind::Closed { last } = kind {
            if index > last {
                problem = Some((pos, format!("bytes after the last entry {last}")));
                break;
            }
        }
        if buf.len() - pos < HEADER_LEN {
            problem = Some((pos, "incomplete entry header".into()));
            break;
        }
        let h: &[u8; HEADER_LEN] = buf[pos..pos + HEADER_LEN].try_into().unwrap();
        let h = match entry_codec::decode_header(h) {
            Ok(h) => h,
            Err(e) => {
                problem = Some((pos, e.to_string()));
                break;
            }
        };
        let data_start = pos + HEADER_LEN;
        let data_end = data_start + h.data_len as usize;
        if data_end > buf.len() {
            problem = Some((
                pos,
                format!("entry {index} data runs past the end of the file"),
            ));
            break;
        }
        let data = &buf[data_start..data_end];
        if !entry_codec::data_matches(&h, data) {
            problem = Some((pos, format!("entry {index} data checksum mismatch")));
            break;
        }
        if h.term < last_term {
            // A term never goes down along a log: this is damage, not a tear.
            return Err(corrupt(
                pos,
                &format!("entry {index} has term {} after term {last_term}", h.term),
            ));
        }
        if pos > u32::MAX as usize {
            return Err(corrupt(pos, "segment larger than 4 GiB"));
        }
        offsets.push(pos as u32);
        last_term = h.term;
        if index >= first_index {
            terms.push(index, h.term);
            if h.is_configuration() {
                // Whole and checksum-valid, yet not a configuration braft or
                // rraft could have written: damage braft refuses too.
                let conf = entry_codec::make_entry(index, &h, Bytes::copy_from_slice(data))
                    .map_err(|e| corrupt(pos, &e))?;
                configs.push(conf);
            }
        }
        index += 1;
        pos = data_end;
    }
    let size = pos as u64;
    let tail = match (kind, problem) {
        (ScanKind::Closed { last }, None) => {
            if index != last + 1 {
                return Err(corrupt(
                    pos,
                    &format!(
                        "closed segment ends at entry {} but its name says {last}",
                        index.wrapping_sub(1)
                    ),
                ));
            }
            None
        }
        (ScanKind::Closed { .. }, Some((off, what))) => return Err(corrupt(off, &what)),
        (ScanKind::Open, None) => None,
        (ScanKind::Open, Some((off, what))) => Some(Tail {
            what,
            zeros: buf[off..].iter().all(|&b| b == 0),
        }),
    };
    Ok(ScanResult {
        offsets,
        size,
        tail,
        last_term,
    })
}

/// Offset of the first whole, checksum-valid entry starting at or after
/// `from` (only one flagged as starting a sync batch, with
/// `batch_start_only`). Every byte offset is tried: the entry before it
/// may be damaged anywhere, its header included.
pub fn valid_entry_after(buf: &[u8], from: usize, batch_start_only: bool) -> Option<usize> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    (from..=buf.len() - HEADER_LEN).find(|&q| {
        if !entry_codec::plausible_header(&buf[q..]) {
            return false;
        }
        let h: &[u8; HEADER_LEN] = buf[q..q + HEADER_LEN].try_into().unwrap();
        match entry_codec::decode_header(h) {
            Ok(h) => {
                let end = q + HEADER_LEN + h.data_len as usize;
                (h.batch_start || !batch_start_only)
                    && end <= buf.len()
                    && entry_codec::data_matches(&h, &buf[q + HEADER_LEN..end])
            }
            Err(_) => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(inprogress_name(5), "log_inprogress_00000000000000000005");
        assert_eq!(
            SegmentName::parse(&closed_name(1, 99)),
            Some(SegmentName::Closed { first: 1, last: 99 })
        );
        assert_eq!(
            SegmentName::parse(&inprogress_name(7)),
            Some(SegmentName::Open { first: 7 })
        );
        assert_eq!(SegmentName::parse("log_meta"), None);
        assert_eq!(SegmentName::parse("log_1_2"), None);
    }

    #[test]
    fn term_runs() {
        let mut t = TermRuns::default();
        for (i, term) in [(1, 1), (2, 1), (3, 2), (4, 2), (5, 5)] {
            t.push(i, term);
        }
        assert_eq!(t.get(2), Some(1));
        assert_eq!(t.get(4), Some(2));
        assert_eq!(t.get(9), Some(5));
        t.truncate_after(3);
        assert_eq!(t.get(3), Some(2));
        t.push(4, 3);
        assert_eq!(t.get(4), Some(3));
        t.drop_before(3);
        assert_eq!(t.get(3), Some(2));
        assert_eq!(t.0.len(), 2);
    }
}
