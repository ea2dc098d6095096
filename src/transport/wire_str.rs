//! [`WireStr`]: UTF-8 text held in shared bytes. A request's method and
//! group name decoded from a frame are slices of the frame's buffer (which
//! the request's payload keeps alive anyway), not copies: decoding a
//! request allocates nothing, and the thread that answers it frees nothing
//! the reading thread allocated.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType};
use prost::DecodeError;

/// UTF-8 text in [`Bytes`]: cloning it shares the bytes. Compares, hashes
/// and orders as its `str`.
#[derive(Clone, Default)]
pub struct WireStr(Bytes);

impl WireStr {
    /// Text of the program's, without a copy.
    pub const fn from_static(s: &'static str) -> WireStr {
        WireStr(Bytes::from_static(s.as_bytes()))
    }

    /// `bytes` as text, without a copy; fails when they are not UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<WireStr, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(WireStr(bytes))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor takes a `str`, a `String` or bytes
        // checked by `from_utf8`, and the bytes never change.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The bytes of the text (shared).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl Deref for WireStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for WireStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for WireStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for WireStr {
    fn from(s: &str) -> WireStr {
        WireStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for WireStr {
    fn from(s: &String) -> WireStr {
        WireStr::from(s.as_str())
    }
}

impl From<String> for WireStr {
    fn from(s: String) -> WireStr {
        WireStr(Bytes::from(s.into_bytes()))
    }
}

impl From<WireStr> for String {
    fn from(s: WireStr) -> String {
        s.as_str().to_string()
    }
}

impl PartialEq for WireStr {
    fn eq(&self, other: &WireStr) -> bool {
        self.0 == other.0
    }
}

impl Eq for WireStr {}

impl PartialEq<str> for WireStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for WireStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for WireStr {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialOrd for WireStr {
    fn partial_cmp(&self, other: &WireStr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WireStr {
    fn cmp(&self, other: &WireStr) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for WireStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As the `str` hashes: `Borrow<str>` lookups find it.
        self.as_str().hash(state)
    }
}

impl fmt::Debug for WireStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for WireStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

/// A protobuf `string` field's encoding (identical to `prost`'s for a
/// `String`).
pub(crate) fn encode(tag: u32, value: &WireStr, buf: &mut impl BufMut) {
    prost::encoding::bytes::encode(tag, &value.0, buf);
}

/// The encoded length of a `string` field holding `value`.
pub(crate) fn encoded_len(tag: u32, value: &WireStr) -> usize {
    prost::encoding::bytes::encoded_len(tag, &value.0)
}

/// Decodes a `string` field into `value`: a slice of `buf` when `buf` is
/// [`Bytes`] (as a frame body is), refused like `prost`'s `String` when the
/// bytes are not UTF-8 (`value` is then left empty).
pub(crate) fn merge(
    wire_type: WireType,
    value: &mut WireStr,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    let mut raw = Bytes::new();
    let merged = prost::encoding::bytes::merge(wire_type, &mut raw, buf, ctx.clone());
    *value = WireStr::default();
    merged?;
    match WireStr::from_utf8(raw) {
        Ok(text) => {
            *value = text;
            Ok(())
        }
        Err(_) => Err(not_utf8(ctx)),
    }
}

/// prost's own error for a `string` field that is not UTF-8.
fn not_utf8(ctx: DecodeContext) -> DecodeError {
    let mut field = Vec::new();
    prost::encoding::bytes::encode(1, &Bytes::from_static(b"\xff"), &mut field);
    let mut buf = &field[1..];
    match prost::encoding::string::merge(
        WireType::LengthDelimited,
        &mut String::new(),
        &mut buf,
        ctx,
    ) {
        Err(e) => e,
        Ok(()) => unreachable!("0xff is not UTF-8"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn compares_and_hashes_as_its_text() {
        let mut map: HashMap<WireStr, u32> = HashMap::new();
        map.insert(WireStr::from("example.Counter.add"), 1);
        assert_eq!(map.get("example.Counter.add"), Some(&1));
        let mut by_string: HashMap<String, u32> = HashMap::new();
        by_string.insert("g".to_string(), 2);
        assert_eq!(by_string.get(WireStr::from_static("g").as_str()), Some(&2));
        assert_eq!(WireStr::from("a".to_string()), "a");
        let (a, b) = (WireStr::from("a"), WireStr::from("b"));
        assert!(a < b);
        assert_eq!(format!("{:?}", WireStr::from("x\"")), "\"x\\\"\"");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused() {
        assert!(WireStr::from_utf8(Bytes::from_static(b"\xff\xfe")).is_err());
        let mut field = Vec::new();
        prost::encoding::bytes::encode(2, &Bytes::from_static(b"\xc3"), &mut field);
        let mut buf = Bytes::from(field);
        let (tag, wire_type) = prost::encoding::decode_key(&mut buf).unwrap();
        assert_eq!(tag, 2);
        let mut value = WireStr::from("old");
        assert!(merge(wire_type, &mut value, &mut buf, DecodeContext::default()).is_err());
        assert_eq!(value, "");
    }
}
