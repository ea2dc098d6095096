//! On-disk form of one log entry: a 24-byte header, then the data.
//!
//! ```text
//! offset size field
//!      0    8 term               (little endian)
//!      8    1 entry type         (EntryType as u8)
//!      9    1 checksum type      (1 = CRC32C)
//!     10    2 reserved, zero
//!     12    4 data length        (bytes)
//!     16    4 CRC32C of the data
//!     20    4 CRC32C of bytes 0..20 of this header
//! ```
//!
//! The index is not stored: it follows from the entry's position in its
//! segment (the segment's file name holds the first index).

use bytes::Bytes;

use crate::proto::Entry;

/// Size of the fixed header in front of every entry.
pub const HEADER_LEN: usize = 24;
/// The only checksum type written: CRC32C.
pub const CHECKSUM_CRC32C: u8 = 1;

/// A decoded, header-checksum-verified entry header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub term: u64,
    pub entry_type: u8,
    pub data_len: u32,
    pub data_crc: u32,
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

/// Appends the encoded `entry` to `out`. Fails if the entry cannot be
/// represented (type outside 0..=255, data of 4 GiB or more).
pub fn encode(entry: &Entry, out: &mut Vec<u8>) -> Result<(), String> {
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
    if b[10] != 0 || b[11] != 0 {
        return Err(HeaderError::BadField("reserved bytes are not zero"));
    }
    Ok(Header {
        term: u64::from_le_bytes(b[0..8].try_into().unwrap()),
        entry_type: b[8],
        data_len: u32::from_le_bytes(b[12..16].try_into().unwrap()),
        data_crc: u32::from_le_bytes(b[16..20].try_into().unwrap()),
    })
}

/// A cheap test that 24 bytes could be a header written by this version,
/// used when scanning for valid entries after a damaged spot.
pub fn plausible_header(b: &[u8]) -> bool {
    b.len() >= HEADER_LEN && b[9] == CHECKSUM_CRC32C && b[10] == 0 && b[11] == 0
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
}
