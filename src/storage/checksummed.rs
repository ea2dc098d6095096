//! The framing of the small checksummed files (`raft_meta`, the snapshot
//! manifest, `log_meta`): a payload and its CRC32C, so a torn or damaged
//! file is refused instead of read as data.
//!
//! Two layouts, both little-endian:
//! - [`seal`]: `crc32c(payload) u32, payload length u32, payload`, for a
//!   payload of any length (a prost message);
//! - [`seal_fixed`]: `payload, crc32c(payload) u32`, for a payload whose
//!   length the reader knows (`log_meta`'s first index).

/// Frames `payload` as `crc, length, payload`.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + payload.len());
    b.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    b
}

/// The payload of a [`seal`]ed file, or why the file is refused.
pub fn unseal(b: &[u8]) -> Result<&[u8], String> {
    if b.len() < 8 {
        return Err("file too short".into());
    }
    let crc = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let len = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    if b.len() != 8 + len {
        return Err(format!("length {} does not match {len}", b.len() - 8));
    }
    let payload = &b[8..];
    if crc32c::crc32c(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

/// Frames a fixed-size `payload` as `payload, crc`.
pub fn seal_fixed(payload: &[u8]) -> Vec<u8> {
    let mut b = payload.to_vec();
    b.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    b
}

/// The `len`-byte payload of a [`seal_fixed`] file, or why it is refused.
pub fn unseal_fixed(b: &[u8], len: usize) -> Result<&[u8], String> {
    if b.len() != len + 4 {
        return Err(format!("{} bytes, want {}", b.len(), len + 4));
    }
    let (payload, crc) = b.split_at(len);
    if crc32c::crc32c(payload).to_le_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_payloads_round_trip_and_damage_is_refused() {
        let b = seal(b"hello");
        assert_eq!(b.len(), 13);
        assert_eq!(unseal(&b).unwrap(), b"hello");
        assert_eq!(unseal(&seal(b"")).unwrap(), b"");
        let mut flipped = b.clone();
        flipped[10] ^= 1;
        assert_eq!(unseal(&flipped).unwrap_err(), "checksum mismatch");
        assert!(unseal(&b[..12]).unwrap_err().contains("does not match"));
        assert_eq!(unseal(&b[..7]).unwrap_err(), "file too short");
    }

    #[test]
    fn fixed_payloads_round_trip_and_damage_is_refused() {
        let b = seal_fixed(&7u64.to_le_bytes());
        assert_eq!(b.len(), 12);
        assert_eq!(unseal_fixed(&b, 8).unwrap(), 7u64.to_le_bytes());
        let mut flipped = b.clone();
        flipped[0] ^= 1;
        assert_eq!(unseal_fixed(&flipped, 8).unwrap_err(), "checksum mismatch");
        assert!(unseal_fixed(&b[..11], 8).is_err());
    }
}
