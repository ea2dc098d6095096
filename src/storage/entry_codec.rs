//! On-disk form of one log entry, braft's (`log.cpp`): a 24-byte header in
//! network byte order, then the data.
//!
//! ```text
//! offset size field
//!      0    8 term
//!      8    1 entry type         (braft's: 1 NO_OP, 2 DATA, 3 CONFIGURATION)
//!      9    1 checksum type      (0 murmurhash32, 1 crc32c)
//!     10    2 reserved           (rraft: bit 0 = starts a sync batch)
//!     12    4 data length        (bytes)
//!     16    4 checksum of the data
//!     20    4 checksum of bytes 0..20 of this header
//! ```
//!
//! Both checksums use the entry's checksum type: 0 is MurmurHash3 x86_32
//! with seed 0, 1 is CRC32C. Readers take the type from each entry; rraft
//! writes CRC32C, as braft does on any CPU with SSE4.2.
//!
//! A configuration entry's data is braft's `ConfigurationPBMeta` (peer ids
//! as braft writes them, learners in a field braft does not use; see
//! `braft_pb`); in memory rraft holds its own `Configuration`, so the codec
//! converts both ways. DATA and NO_OP data are stored as they are.
//!
//! The index is not stored: it follows from the entry's position in its
//! segment (the segment's file name holds the first index).
//!
//! Reserved bit 0, "starts a sync batch", is set on the first entry written
//! after the log was last made durable (a successful fdatasync of every
//! segment written to): every byte of the log before such an entry was
//! synced before the entry was written. Recovery uses it to tell a crash
//! inside an unsynced batch from damage to synced data (see
//! `SegmentLog::open`). braft reads the type and the checksum type from the
//! top bytes of that word and ignores the reserved bits (the header
//! checksum covers them), so entries carrying the flag open in braft;
//! braft writes zero there, which reads as "no flag".

use bytes::Bytes;

use super::braft_pb;
use crate::proto::{Entry, EntryType};

/// Size of the fixed header in front of every entry.
pub const HEADER_LEN: usize = 24;
/// Checksum type 0: MurmurHash3 x86_32, seed 0 (braft's default without SSE4.2).
pub const CHECKSUM_MURMURHASH32: u8 = 0;
/// Checksum type 1: CRC32C, the one rraft writes.
pub const CHECKSUM_CRC32C: u8 = 1;
/// Reserved-bits flag: the entry is the first one written after the log was synced.
pub const FLAG_BATCH_START: u16 = 1;

/// braft's entry type numbers (`enum.proto`).
pub const BRAFT_NO_OP: u8 = 1;
pub const BRAFT_DATA: u8 = 2;
pub const BRAFT_CONFIGURATION: u8 = 3;

/// A decoded, header-checksum-verified entry header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub term: u64,
    /// braft's entry type number (see [`BRAFT_DATA`] and its siblings).
    pub entry_type: u8,
    pub checksum_type: u8,
    pub data_len: u32,
    pub data_checksum: u32,
    /// See [`FLAG_BATCH_START`].
    pub batch_start: bool,
}

impl Header {
    pub fn is_configuration(&self) -> bool {
        self.entry_type == BRAFT_CONFIGURATION
    }
}

/// Why 24 bytes are not a valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The header checksum does not match.
    Checksum,
    /// A field holds a value no writer of this format writes.
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

/// MurmurHash3 x86_32 of `data` (blocks read little endian, as butil does
/// on x86).
pub fn murmurhash3_x86_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        h ^= mix(u32::from_le_bytes(b.try_into().unwrap()));
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let k = tail
            .iter()
            .enumerate()
            .fold(0u32, |k, (i, &b)| k | u32::from(b) << (8 * i));
        h ^= mix(k);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The checksum of `data` under `checksum_type` (`None`: a type no writer uses).
pub fn checksum(checksum_type: u8, data: &[u8]) -> Option<u32> {
    match checksum_type {
        CHECKSUM_MURMURHASH32 => Some(murmurhash3_x86_32(data, 0)),
        CHECKSUM_CRC32C => Some(crc32c::crc32c(data)),
        _ => None,
    }
}

fn braft_type(entry: &Entry) -> Result<u8, String> {
    match EntryType::try_from(entry.entry_type) {
        Ok(EntryType::Noop) => Ok(BRAFT_NO_OP),
        Ok(EntryType::Data) => Ok(BRAFT_DATA),
        Ok(EntryType::Configuration) => Ok(BRAFT_CONFIGURATION),
        Err(_) => Err(format!(
            "entry {} has type {}, which the log cannot store",
            entry.index, entry.entry_type
        )),
    }
}

/// Appends the encoded `entry` to `out` with no flag set. Fails if the
/// entry cannot be represented (an unknown type, configuration data that
/// does not decode, data of 4 GiB or more).
pub fn encode(entry: &Entry, out: &mut Vec<u8>) -> Result<(), String> {
    encode_flagged(entry, false, out)
}

/// As [`encode`], marking the entry as the start of a sync batch when
/// `batch_start` is set (see [`FLAG_BATCH_START`]).
pub fn encode_flagged(entry: &Entry, batch_start: bool, out: &mut Vec<u8>) -> Result<(), String> {
    let ty = braft_type(entry)?;
    let converted;
    let data: &[u8] = if ty == BRAFT_CONFIGURATION {
        converted = braft_pb::conf_entry_to_braft(&entry.data)
            .map_err(|e| format!("entry {}: {e}", entry.index))?;
        &converted
    } else {
        &entry.data
    };
    let len = u32::try_from(data.len()).map_err(|_| {
        format!(
            "entry {} has {} bytes of data (max 4 GiB - 1)",
            entry.index,
            data.len()
        )
    })?;
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&entry.term.to_be_bytes());
    h[8] = ty;
    h[9] = CHECKSUM_CRC32C;
    if batch_start {
        h[10..12].copy_from_slice(&FLAG_BATCH_START.to_be_bytes());
    }
    h[12..16].copy_from_slice(&len.to_be_bytes());
    h[16..20].copy_from_slice(&crc32c::crc32c(data).to_be_bytes());
    let hcrc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&hcrc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    Ok(())
}

fn reserved(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[10], b[11]])
}

/// Decodes and verifies a header (not the data).
pub fn decode_header(b: &[u8; HEADER_LEN]) -> Result<Header, HeaderError> {
    let stored = u32::from_be_bytes(b[20..24].try_into().unwrap());
    match checksum(b[9], &b[0..20]) {
        None => return Err(HeaderError::BadField("unknown checksum type")),
        Some(c) if c != stored => return Err(HeaderError::Checksum),
        Some(_) => {}
    }
    if !(BRAFT_NO_OP..=BRAFT_CONFIGURATION).contains(&b[8]) {
        return Err(HeaderError::BadField("unknown entry type"));
    }
    let flags = reserved(b);
    if flags & !FLAG_BATCH_START != 0 {
        return Err(HeaderError::BadField("unknown reserved bits"));
    }
    Ok(Header {
        term: u64::from_be_bytes(b[0..8].try_into().unwrap()),
        entry_type: b[8],
        checksum_type: b[9],
        data_len: u32::from_be_bytes(b[12..16].try_into().unwrap()),
        data_checksum: u32::from_be_bytes(b[16..20].try_into().unwrap()),
        batch_start: flags & FLAG_BATCH_START != 0,
    })
}

/// A cheap test that 24 bytes could be a header of this format, used when
/// scanning for valid entries after a damaged spot.
pub fn plausible_header(b: &[u8]) -> bool {
    b.len() >= HEADER_LEN
        && b[9] <= CHECKSUM_CRC32C
        && (BRAFT_NO_OP..=BRAFT_CONFIGURATION).contains(&b[8])
        && reserved(b) & !FLAG_BATCH_START == 0
}

/// Whether `data` matches the data checksum of `header`.
pub fn data_matches(header: &Header, data: &[u8]) -> bool {
    data.len() == header.data_len as usize
        && checksum(header.checksum_type, data) == Some(header.data_checksum)
}

/// Verifies `data` against `header` and builds the entry at `index` in
/// rraft's form.
pub fn make_entry(index: u64, header: &Header, data: Bytes) -> Result<Entry, String> {
    if data.len() != header.data_len as usize {
        return Err(format!(
            "entry {index}: {} data bytes, header says {}",
            data.len(),
            header.data_len
        ));
    }
    if !data_matches(header, &data) {
        return Err(format!("entry {index}: data checksum mismatch"));
    }
    let (entry_type, data) = match header.entry_type {
        BRAFT_NO_OP => (EntryType::Noop, data),
        BRAFT_DATA => (EntryType::Data, data),
        BRAFT_CONFIGURATION => (
            EntryType::Configuration,
            Bytes::from(
                braft_pb::conf_entry_from_braft(&data)
                    .map_err(|e| format!("entry {index}: {e}"))?,
            ),
        ),
        other => return Err(format!("entry {index}: unknown entry type {other}")),
    };
    Ok(Entry {
        term: header.term,
        index,
        entry_type: entry_type as i32,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn data_entry() -> Entry {
        Entry {
            term: 7,
            index: 42,
            entry_type: EntryType::Data as i32,
            data: Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn round_trip_and_detects_damage() {
        let e = data_entry();
        let mut buf = Vec::new();
        encode(&e, &mut buf).unwrap();
        assert_eq!(buf.len(), HEADER_LEN + e.data.len());
        // braft's layout: big-endian term, type 2 (DATA), checksum type 1.
        assert_eq!(&buf[0..12], &[0, 0, 0, 0, 0, 0, 0, 7, 2, 1, 0, 0]);
        assert_eq!(&buf[12..16], &5u32.to_be_bytes());
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
    fn murmurhash_matches_reference_values() {
        // MurmurHash3_x86_32 test vectors (seed 0).
        assert_eq!(murmurhash3_x86_32(b"", 0), 0);
        assert_eq!(murmurhash3_x86_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(murmurhash3_x86_32(b"hello, world", 0), 0x149b_bb7f);
        assert_eq!(
            murmurhash3_x86_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
    }

    #[test]
    fn reads_murmurhash_entries_as_braft_writes_them() {
        let data = [0x08u8, 0x01];
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&2u64.to_be_bytes());
        h[8] = BRAFT_DATA;
        h[9] = CHECKSUM_MURMURHASH32;
        h[12..16].copy_from_slice(&2u32.to_be_bytes());
        h[16..20].copy_from_slice(&murmurhash3_x86_32(&data, 0).to_be_bytes());
        let hc = murmurhash3_x86_32(&h[0..20], 0);
        h[20..24].copy_from_slice(&hc.to_be_bytes());
        let header = decode_header(&h).unwrap();
        assert_eq!(header.checksum_type, CHECKSUM_MURMURHASH32);
        let e = make_entry(5, &header, Bytes::copy_from_slice(&data)).unwrap();
        assert_eq!(e.entry_type, EntryType::Data as i32);
        assert_eq!(&e.data[..], &data);
    }

    #[test]
    fn configuration_entries_are_stored_as_braft_encodes_them() {
        let conf = crate::proto::Configuration {
            voters: vec!["127.0.0.1:8100:0".into(), "127.0.0.1:8101:0".into()],
            learners: vec![],
            old_voters: vec![],
        };
        let e = Entry {
            term: 2,
            index: 1,
            entry_type: EntryType::Configuration as i32,
            data: Bytes::from(conf.encode_to_vec()),
        };
        let mut buf = Vec::new();
        encode(&e, &mut buf).unwrap();
        assert_eq!(buf[8], BRAFT_CONFIGURATION);
        let body = &buf[HEADER_LEN..];
        let pb = braft_pb::ConfigurationPbMeta::decode(body).unwrap();
        assert_eq!(pb.peers, ["127.0.0.1:8100:0:0", "127.0.0.1:8101:0:0"]);
        let h = decode_header(buf[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(make_entry(1, &h, Bytes::copy_from_slice(body)).unwrap(), e);
        let bad = Entry {
            entry_type: 9,
            ..e.clone()
        };
        assert!(encode(&bad, &mut Vec::new()).is_err());
    }

    #[test]
    fn the_batch_start_flag_round_trips_and_unknown_reserved_bits_are_refused() {
        let e = Entry {
            term: 3,
            index: 9,
            entry_type: EntryType::Noop as i32,
            data: Bytes::new(),
        };
        for flag in [false, true] {
            let mut buf = Vec::new();
            encode_flagged(&e, flag, &mut buf).unwrap();
            assert!(plausible_header(&buf));
            let h = decode_header(buf[..HEADER_LEN].try_into().unwrap()).unwrap();
            assert_eq!(h.batch_start, flag);
            // braft reads the type from the top byte of the word, whatever
            // the reserved bits hold.
            let word = u32::from_be_bytes(buf[8..12].try_into().unwrap());
            assert_eq!(word >> 24, u32::from(BRAFT_NO_OP));
            assert_eq!((word << 8) >> 24, u32::from(CHECKSUM_CRC32C));
        }
        let mut buf = Vec::new();
        encode(&e, &mut buf).unwrap();
        buf[10] = 2;
        let hcrc = crc32c::crc32c(&buf[0..20]);
        buf[20..24].copy_from_slice(&hcrc.to_be_bytes());
        assert!(!plausible_header(&buf));
        assert_eq!(
            decode_header(buf[..HEADER_LEN].try_into().unwrap()),
            Err(HeaderError::BadField("unknown reserved bits"))
        );
    }
}
