//! [`Id`]: a peer's id, UTF-8 text in shared immutable bytes.
//!
//! Every message names its sender and receiver and the leader's progress
//! table is keyed by peer, so ids are copied and compared on every message
//! and tick. An `Id` is cheap at both: cloning it shares the bytes (a
//! reference count, nothing for a static id), and two ids sharing the same
//! bytes are equal without reading them (see [`Id::same_bytes`]). The core
//! swaps the sender named by a message for its own copy of that peer's id
//! (`Raft::step`), so that its lookups and comparisons mostly stop at the
//! pointer check; decoding reuses the copy a thread made the last time it
//! decoded the same id (see [`merge`]), so receiving a message allocates no
//! id.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType};
use prost::DecodeError;

/// A peer id: braft's `ip:port:idx` text, or any unique name in tests.
/// Compares, hashes and orders as its `str`; derefs to it.
#[derive(Clone, Default)]
pub struct Id(Bytes);

impl Id {
    /// An id of the program's text, without a copy.
    pub const fn from_static(s: &'static str) -> Id {
        Id(Bytes::from_static(s.as_bytes()))
    }

    /// `bytes` as an id, without a copy (the id keeps all of their buffer
    /// alive); fails when they are not UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Id, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Id(bytes))
    }

    /// The empty id (no peer).
    pub const fn empty() -> Id {
        Id(Bytes::new())
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor takes a `str`, a `String` or bytes
        // checked by `from_utf8`, and the bytes never change.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The bytes of the id (shared).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Whether both ids share the same bytes (then they are equal without
    /// comparing them).
    #[inline]
    pub fn same_bytes(&self, other: &Id) -> bool {
        self.0.as_ptr() == other.0.as_ptr() && self.0.len() == other.0.len()
    }

    /// Makes `self` share `own`'s bytes when the two are equal: an id named
    /// by a message swapped for the receiver's copy, so that later
    /// comparisons with it take the pointer check.
    #[inline]
    pub fn reuse(&mut self, own: &Id) {
        if !self.same_bytes(own) && *self == *own {
            *self = own.clone();
        }
    }
}

impl Deref for Id {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Id {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Id {
        Id(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for Id {
    fn from(s: &String) -> Id {
        Id::from(s.as_str())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Id {
        Id(Bytes::from(s.into_bytes()))
    }
}

impl From<&Id> for Id {
    fn from(s: &Id) -> Id {
        s.clone()
    }
}

impl From<Id> for String {
    fn from(s: Id) -> String {
        s.as_str().to_string()
    }
}

/// Whether two ids' texts are equal. The ids of a group's peers usually
/// share a long prefix (the host) and differ near the end (port, index):
/// the last eight bytes are compared first, inline.
#[inline]
pub(crate) fn same_text(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if let (Some(ta), Some(tb)) = (a.last_chunk::<8>(), b.last_chunk::<8>()) {
        if ta != tb {
            return false;
        }
    }
    a == b
}

impl PartialEq for Id {
    #[inline]
    fn eq(&self, other: &Id) -> bool {
        self.same_bytes(other) || same_text(&self.0, &other.0)
    }
}

impl Eq for Id {}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        same_text(&self.0, other.as_bytes())
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        same_text(&self.0, other.as_bytes())
    }
}

impl PartialEq<String> for Id {
    fn eq(&self, other: &String) -> bool {
        same_text(&self.0, other.as_bytes())
    }
}

impl PartialEq<Id> for str {
    fn eq(&self, other: &Id) -> bool {
        other == self
    }
}

impl PartialEq<Id> for &str {
    fn eq(&self, other: &Id) -> bool {
        other == *self
    }
}

impl PartialEq<Id> for String {
    fn eq(&self, other: &Id) -> bool {
        other == self
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Id) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Id {
    #[inline]
    fn cmp(&self, other: &Id) -> Ordering {
        if self.same_bytes(other) {
            return Ordering::Equal;
        }
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As the `str` hashes: `Borrow<str>` lookups find it.
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

/// Encodes a protobuf `string` field holding `value` (the bytes prost
/// writes for a `String`).
pub fn encode(tag: u32, value: &Id, buf: &mut impl BufMut) {
    prost::encoding::bytes::encode(tag, &value.0, buf);
}

/// The encoded length of a `string` field holding `value`.
pub fn encoded_len(tag: u32, value: &Id) -> usize {
    prost::encoding::bytes::encoded_len(tag, &value.0)
}

/// How many ids a thread's decoder remembers (see [`merge`]): more than
/// the peers a process's groups usually have between them.
const RECENT_IDS: usize = 32;

thread_local! {
    /// The ids this thread decoded last, each in bytes of its own.
    static RECENT: RefCell<Vec<Id>> = const { RefCell::new(Vec::new()) };
}

/// The id `raw` as this thread decoded it before, or a copy of `raw` (kept
/// for the next time); None when `raw` is not UTF-8.
fn interned(raw: &[u8]) -> Option<Id> {
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        if let Some(at) = recent.iter().position(|id| same_text(&id.0, raw)) {
            let id = recent[at].clone();
            if at > 0 {
                // The most used stay at the front.
                recent.swap(at, at - 1);
            }
            return Some(id);
        }
        std::str::from_utf8(raw).ok()?;
        let id = Id(Bytes::copy_from_slice(raw));
        if recent.len() >= RECENT_IDS {
            recent.pop();
        }
        recent.push(id.clone());
        Some(id)
    })
}

/// Decodes a `string` field into `value`, refused like `prost`'s `String`
/// when the bytes are not UTF-8 (`value` is then left empty).
///
/// The id is the copy this thread decoded last time it met the same text
/// (a thread remembers its last [`RECENT_IDS`] ids): decoding a peer's
/// messages allocates nothing once its id is known, the ids of messages
/// from one peer share their bytes, and a decoded id never keeps the
/// buffer it came in alive.
pub fn merge(
    wire_type: WireType,
    value: &mut Id,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    let mut raw = Bytes::new();
    let merged = prost::encoding::bytes::merge(wire_type, &mut raw, buf, ctx.clone());
    *value = Id::empty();
    merged?;
    if raw.is_empty() {
        return Ok(());
    }
    match interned(&raw) {
        Some(id) => {
            *value = id;
            Ok(())
        }
        None => Err(not_utf8(ctx)),
    }
}

/// prost's own error for a `string` field that is not UTF-8.
fn not_utf8(ctx: DecodeContext) -> DecodeError {
    let mut buf: &[u8] = &[1, 0xff];
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
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn compares_hashes_and_orders_as_its_text() {
        let mut map: HashMap<Id, u32> = HashMap::new();
        map.insert(Id::from("10.0.0.1:8100:0"), 1);
        assert_eq!(map.get("10.0.0.1:8100:0"), Some(&1));
        let mut tree: BTreeMap<Id, u32> = BTreeMap::new();
        for (i, s) in ["b", "a:1", "a", "c:12345678", "c:12345679"]
            .iter()
            .enumerate()
        {
            tree.insert(Id::from(*s), i as u32);
        }
        let keys: Vec<&str> = tree.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["a", "a:1", "b", "c:12345678", "c:12345679"]);
        assert_eq!(tree.get("a:1"), Some(&1));
        assert_eq!(Id::from("a".to_string()), "a");
        assert_eq!(
            format!("{:?} {}", Id::from("x\""), Id::from("y")),
            "\"x\\\"\" y"
        );
        let ids = [
            "",
            "a",
            "12345678",
            "12345679",
            "x12345678",
            "y12345678",
            "a:1:0",
            "a:2:0",
        ];
        for a in ids {
            for b in ids {
                let (ia, ib) = (Id::from(a), Id::from(b));
                assert_eq!(ia == ib, a == b, "{a:?} {b:?}");
                assert_eq!(ia.cmp(&ib), a.cmp(b), "{a:?} {b:?}");
                assert_eq!(ia == *b, a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn clones_share_the_bytes_and_reuse_swaps_in_the_own_copy() {
        let own = Id::from("10.0.0.1:8100:0");
        let copy = own.clone();
        assert!(copy.same_bytes(&own));
        let mut decoded = Id::from("10.0.0.1:8100:0");
        assert!(!decoded.same_bytes(&own));
        decoded.reuse(&own);
        assert!(decoded.same_bytes(&own));
        let mut other = Id::from("10.0.0.2:8100:0");
        other.reuse(&own);
        assert_eq!(other, "10.0.0.2:8100:0");
        let text_copy = Id::from(own.as_str());
        assert!(!text_copy.same_bytes(&own));
        assert_eq!(text_copy, own);
    }

    #[test]
    fn decoding_reuses_the_threads_copy_and_refuses_what_is_not_utf8() {
        let mut field = Vec::new();
        encode(3, &Id::from("a:1:0"), &mut field);
        let mut by_prost = Vec::new();
        prost::encoding::string::encode(3, &"a:1:0".to_string(), &mut by_prost);
        assert_eq!(field, by_prost);
        assert_eq!(encoded_len(3, &Id::from("a:1:0")), field.len());
        let frame = Bytes::from(field);
        let mut buf = frame.clone();
        let (tag, wire_type) = prost::encoding::decode_key(&mut buf).unwrap();
        assert_eq!(tag, 3);
        let mut id = Id::empty();
        merge(wire_type, &mut id, &mut buf, DecodeContext::default()).unwrap();
        assert_eq!(id, "a:1:0");
        // A copy, not a slice of the frame; the same copy the next time.
        assert_ne!(id.as_bytes().as_ptr(), frame[2..].as_ptr());
        let mut again = Id::empty();
        let mut buf = frame.clone();
        let (_, wire_type) = prost::encoding::decode_key(&mut buf).unwrap();
        merge(wire_type, &mut again, &mut buf, DecodeContext::default()).unwrap();
        assert!(again.same_bytes(&id));
        // Other ids, more than a thread remembers, are each decoded right.
        for i in 0..3 * RECENT_IDS {
            let text = format!("10.0.0.{i}:8100:0");
            let mut field = Vec::new();
            encode(1, &Id::from(text.as_str()), &mut field);
            let mut buf = Bytes::from(field);
            let (_, wire_type) = prost::encoding::decode_key(&mut buf).unwrap();
            let mut id = Id::empty();
            merge(wire_type, &mut id, &mut buf, DecodeContext::default()).unwrap();
            assert_eq!(id, text.as_str());
        }

        let mut bad = Vec::new();
        prost::encoding::bytes::encode(2, &Bytes::from_static(b"\xc3"), &mut bad);
        let mut buf = Bytes::from(bad);
        let (_, wire_type) = prost::encoding::decode_key(&mut buf).unwrap();
        let mut id = Id::from("old");
        assert!(merge(wire_type, &mut id, &mut buf, DecodeContext::default()).is_err());
        assert_eq!(id, "");
    }
}
