//! On-disk form of one log entry: a 24-byte header, then the data.
//!
//! ```text
//! offset size field
//!      0    8 term               (little endian)
//!      8    1 entry type         (EntryType as u8)
//!      9    1 checksum type      (1 = CRC32C)
//!     10    2 flags              (bit 0: starts a sync batch; others zero)
//!     12    4 data length        (bytes)
//!     16    4 CRC32C of the data
//!     20    4 CRC32C of bytes 0..20 of this header
//! ```
//!
//! The index is not stored: it follows from the entry's position in its
//! segment (the segment's file name holds the first index).
//!
//! Flag bit 0, "starts a sync batch", is set on the first entry written
//! after the log was last made durable (a successful fdatasync of every
//! segment written to): every byte of the log before such an entry was
//! synced before the entry was written. Recovery uses it to tell a crash
//! inside an unsynced batch from damage to synced data (see
//! `SegmentLog::open`). Files whose flags field is zero stay valid.

use bytes::Bytes;

use crate::proto::Entry;

/// Size of the fixed header in front of every entry.
pub const HEADER_LEN: usize = 24;
/// The only checksum type written: CRC32C.
pub const CHECKSUM_CRC32C: u8 = 1;
/// Flag: the entry is the first one written after the log was synced.
pub const FLAG_BATCH_START: u16 = 1;

/// A decoded, header-checksum-verified entry header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub term: u64,
    pub entry_type: u8,
    pub data_len: u32,
    pub data_crc: u32,
    /// See [`FLAG_BATCH_START`].
    pub batch_start: bool,
}

/// Why 24 bytes are not a valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The header checksum does not match.
    Checksum,
    /// The checksum matches but a field holds a value this version never writes.
    BadField(&'static str),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Checksum => write!(f, "entry header checksum mismatch"),
            HeaderError::BadField(what) => write!(f, "bad entry header: {what}"),
        }
    }
}

/// Bytes `entry` takes on disk.
pub fn encoded_len(entry: &Entry) -> usize {
    HEADER_LEN + entry.data.len()
}

/// Appends the encoded `entry` to `out` with no flags set. Fails if the
/// entry cannot be represented (type outside 0..=255, data of 4 GiB or more).
pub fn encode(entry: &Entry, out: &mut Vec<u8>) -> Result<(), String> {
    encode_flagged(entry, false, out)
}

/// As [`encode`], marking the entry as the start of a sync batch when
/// `batch_start` is set (see [`FLAG_BATCH_START`]).
pub fn encode_flagged(entry: &Entry, batch_start: bool, out: &mut Vec<u8>) -> Result<(), String> {
    let ty = u8::try_from(entry.entry_type).map_err(|_| {
        format!(
            "entry {} has type {} (not 0..=255)",
            entry.index, entry.entry_type
        )
    })?;
    let len = u32::try_from(entry.data.len()).map_err(|_| {
        format!(
            "entry {} has {} bytes of data (max 4 GiB - 1)",
            entry.index,
            entry.data.len()
        )
    })?;
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&entry.term.to_le_bytes());
    h[8] = ty;
    h[9] = CHECKSUM_CRC32C;
    if batch_start {
        h[10..12].copy_from_slice(&FLAG_BATCH_START.to_le_bytes());
    }
    h[12..16].copy_from_slice(&len.to_le_bytes());
    h[16..20].copy_from_slice(&crc32c::crc32c(&entry.data).to_le_bytes());
    let hcrc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&entry.data);
    Ok(())
}

/// Decodes and verifies a header (not the data).
pub fn decode_header(b: &[u8; HEADER_LEN]) -> Result<Header, HeaderError> {
    let stored = u32::from_le_bytes(b[20..24].try_into().unwrap());
    if crc32c::crc32c(&b[0..20]) != stored {
        return Err(HeaderError::Checksum);
    }
    if b[9] != CHECKSUM_CRC32C {
        return Err(HeaderError::BadField("unknown checksum type"));
    }
    let flags = u16::from_le_bytes([b[10], b[11]]);
    if flags & !FLAG_BATCH_START != 0 {
        return Err(HeaderError::BadField("unknown flags"));
    }
    Ok(Header {
        term: u64::from_le_bytes(b[0..8].try_into().unwrap()),
        entry_type: b[8],
        data_len: u32::from_le_bytes(b[12..16].try_into().unwrap()),
        data_crc: u32::from_le_bytes(b[16..20].try_into().unwrap()),
        batch_start: flags & FLAG_BATCH_START != 0,
    })
}

/// A cheap test that 24 bytes could be a header written by this version,
/// used when scanning for valid entries after a damaged spot.
pub fn plausible_header(b: &[u8]) -> bool {
    b.len() >= HEADER_LEN
        && b[9] == CHECKSUM_CRC32C
        && u16::from_le_bytes([b[10], b[11]]) & !FLAG_BATCH_START == 0
}

/// Verifies `data` against `header` and builds the entry at `index`.
pub fn make_entry(index: u64, header: &Header, data: Bytes) -> Result<Entry, String> {
    if data.len() != header.data_len as usize {
        return Err(format!(
            "entry {index}: {} data bytes, header says {}",
            data.len(),
            header.data_len
        ));
    }
    if crc32c::crc32c(&data) != header.data_crc {
        return Err(format!("entry {index}: data checksum mismatch"));
    }
    Ok(Entry {
        term: header.term,
        index,
        entry_type: header.entry_type as i32,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detects_damage() {
        let e = Entry {
            term: 7,
            index: 42,
            entry_type: 2,
            data: Bytes::from_static(b"hello"),
        };
        let mut buf = Vec::new();
        encode(&e, &mut buf).unwrap();
        assert_eq!(buf.len(), encoded_len(&e));
        let h = decode_header(buf[..HEADER_LEN].try_into().unwrap()).unwrap();
        let back = make_entry(42, &h, Bytes::copy_from_slice(&buf[HEADER_LEN..])).unwrap();
        assert_eq!(back, e);
        for i in 0..HEADER_LEN {
            let mut b = buf.clone();
            b[i] ^= 0x40;
            assert!(
                decode_header(b[..HEADER_LEN].try_into().unwrap()).is_err(),
                "byte {i}"
            );
        }
        let mut b = buf.clone();
        b[HEADER_LEN + 1] ^= 1;
        assert!(make_entry(42, &h, Bytes::copy_from_slice(&b[HEADER_LEN..])).is_err());
        assert!(decode_header(&[0u8; HEADER_LEN]).is_err());
    }

    #[test]
    fn the_batch_start_flag_round_trips_and_unknown_flags_are_refused() {
        let e = Entry {
            term: 3,
            index: 9,
            entry_type: 0,
            data: Bytes::from_static(b"x"),
        };
        for flag in [false, true] {
            let mut buf = Vec::new();
            encode_flagged(&e, flag, &mut buf).unwrap();
            assert!(plausible_header(&buf));
            let h = decode_header(buf[..HEADER_LEN].try_into().unwrap()).unwrap();
            assert_eq!(h.batch_start, flag);
        }
        let mut buf = Vec::new();
        encode(&e, &mut buf).unwrap();
        buf[10] = 2;
        let hcrc = crc32c::crc32c(&buf[0..20]);
        buf[20..24].copy_from_slice(&hcrc.to_le_bytes());
        assert!(!plausible_header(&buf));
        assert_eq!(
            decode_header(buf[..HEADER_LEN].try_into().unwrap()),
            Err(HeaderError::BadField("unknown flags"))
        );
    }
}
