//! Handles given to C: typed ids that are never reused, never addresses.
//!
//! A handle's pointer value is `(id << KIND_BITS) | kind`: `id` comes from
//! one process-wide 64-bit counter and is never handed out twice, `kind`
//! names the handle's type. C never sees a dereferenceable Rust pointer:
//! every call looks its handle up in the registry of its type first, so a
//! NULL, freed (stale), foreign or wrongly typed pointer is answered with
//! EINVAL instead of undefined behaviour, and a freed handle can never name
//! an object created later.
//!
//! Every handle type implements [`Handle`]; [`lookup`], [`register`] and
//! [`release`] are the one lookup path for all of them. A lookup hands out a
//! shared `Arc` of the object: const-ness of the C pointer is kept (a
//! `const` handle only ever yields shared access).

use std::collections::HashMap;

use foldhash::fast::FixedState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::node::errno::{self, Status};

/// Bits of a handle's value that carry its kind.
const KIND_BITS: u32 = 4;

/// The type a handle names (stored in its low bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Server = 1,
    Node = 2,
    Client = 3,
    Request = 4,
    SnapshotWriter = 5,
    SnapshotDone = 6,
}

impl Kind {
    fn from_bits(bits: usize) -> Option<Kind> {
        Some(match bits {
            1 => Kind::Server,
            2 => Kind::Node,
            3 => Kind::Client,
            4 => Kind::Request,
            5 => Kind::SnapshotWriter,
            6 => Kind::SnapshotDone,
            _ => return None,
        })
    }
}

/// The next id; starts at 1 so that no handle is NULL.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Shards of a registry: a request handle is registered on a transport
/// thread and looked up and released on an FSM thread, for every call of a
/// user method, so one lock per type would be taken by both threads tens of
/// thousands of times a second. Consecutive ids fall into different shards.
const SHARDS: usize = 16;

/// One shard: a hash map, which keeps its capacity as handles come and go
/// (a B-tree allocates and frees nodes as ever higher ids pass through it).
/// The ids are the process's own, so a fixed hash seed is safe.
type Shard<T> = HashMap<u64, Arc<T>, FixedState>;

/// The live handles of one type, keyed by their id.
pub(crate) struct Registry<T> {
    /// Each map is made by the first handle of its shard (a registry is a
    /// `static`).
    shards: [Mutex<Option<Shard<T>>>; SHARDS],
}

impl<T> Registry<T> {
    pub(crate) const fn new() -> Registry<T> {
        Registry {
            shards: [const { Mutex::new(None) }; SHARDS],
        }
    }

    /// Runs `f` on the shard that holds `id`, under its lock.
    fn shard<R>(&self, id: u64, f: impl FnOnce(&mut Shard<T>) -> R) -> R {
        // A panic while the lock was held cannot leave the map half-updated
        // (insert/remove are single calls), so a poisoned lock is still usable.
        let mut shard: MutexGuard<'_, Option<Shard<T>>> = self.shards[id as usize % SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(shard.get_or_insert_with(|| HashMap::with_hasher(FixedState::with_seed(0))))
    }

    /// Number of live handles of this type.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        (0..SHARDS as u64)
            .map(|shard| self.shard(shard, |m| m.len()))
            .sum()
    }
}

/// An opaque C handle type and the Rust object it names.
pub(crate) trait Handle: Sized + 'static {
    /// The object behind the handle.
    type Target: Send + Sync + 'static;
    /// The kind encoded in the handle's value.
    const KIND: Kind;
    /// The C name of the type, for error messages.
    const NAME: &'static str;
    /// The registry of live handles of this type.
    fn registry() -> &'static Registry<Self::Target>;
}

/// Declares a handle type's registry and its [`Handle`] impl:
/// `c_handle!(C type, target, Kind, "C name", REGISTRY)`.
macro_rules! c_handle {
    ($c:ty, $target:ty, $kind:expr, $name:expr, $registry:ident) => {
        static $registry: $crate::ffi::handles::Registry<$target> =
            $crate::ffi::handles::Registry::new();
        impl $crate::ffi::handles::Handle for $c {
            type Target = $target;
            const KIND: $crate::ffi::handles::Kind = $kind;
            const NAME: &'static str = $name;
            fn registry() -> &'static $crate::ffi::handles::Registry<$target> {
                &$registry
            }
        }
    };
}
pub(crate) use c_handle;

/// Splits a handle's value into (id, kind), or says why it is no handle.
fn decode<H: Handle>(ptr: *const H) -> Result<u64, Status> {
    if ptr.is_null() {
        return Err(Status::new(errno::EINVAL, format!("NULL {}", H::NAME)));
    }
    let value = ptr as usize;
    let kind_bits = value & ((1 << KIND_BITS) - 1);
    match Kind::from_bits(kind_bits) {
        Some(kind) if kind == H::KIND => Ok((value >> KIND_BITS) as u64),
        Some(kind) => Err(Status::new(
            errno::EINVAL,
            format!("a {kind:?} handle was passed as {}", H::NAME),
        )),
        None => Err(Status::new(
            errno::EINVAL,
            format!("not a {} handle (no rraft handle has this value)", H::NAME),
        )),
    }
}

/// Registers `value` and returns its new handle (never NULL, never an
/// address, never a value handed out before).
pub(crate) fn register<H: Handle>(value: Arc<H::Target>) -> *mut H {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    H::registry().shard(id, |m| m.insert(id, value));
    let encoded = ((id as usize) << KIND_BITS) | H::KIND as usize;
    encoded as *mut H
}

/// The object behind a live handle; EINVAL for NULL, stale, foreign or
/// wrongly typed handles.
pub(crate) fn lookup<H: Handle>(ptr: *const H) -> Result<Arc<H::Target>, Status> {
    let id = decode(ptr)?;
    H::registry()
        .shard(id, |m| m.get(&id).cloned())
        .ok_or_else(|| {
            Status::new(
                errno::EINVAL,
                format!("unknown or freed {} handle", H::NAME),
            )
        })
}

/// Whether a handle is live (as [`lookup`] succeeding, without taking a
/// reference to its object).
pub(crate) fn is_live<H: Handle>(ptr: *const H) -> bool {
    decode(ptr).is_ok_and(|id| H::registry().shard(id, |m| m.contains_key(&id)))
}

/// Unregisters a handle and returns its object; later lookups of it fail.
/// EINVAL as [`lookup`].
pub(crate) fn release<H: Handle>(ptr: *const H) -> Result<Arc<H::Target>, Status> {
    let id = decode(ptr)?;
    H::registry().shard(id, |m| m.remove(&id)).ok_or_else(|| {
        Status::new(
            errno::EINVAL,
            format!("unknown or freed {} handle", H::NAME),
        )
    })
}

/// A handle's `*_free`: NULL is ignored; a freed, foreign or wrongly typed
/// handle is ignored too and the last error says EINVAL; otherwise the
/// handle is released and `finish` gets its object.
pub(crate) fn free<H: Handle>(ptr: *const H, finish: impl FnOnce(Arc<H::Target>)) {
    if ptr.is_null() {
        return;
    }
    match release(ptr) {
        Ok(value) => finish(value),
        Err(status) => {
            super::boundary::fail(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Apple {
        _private: [u8; 0],
    }
    struct Pear {
        _private: [u8; 0],
    }
    c_handle!(Apple, u32, Kind::Server, "apple", APPLES);
    c_handle!(Pear, u32, Kind::Node, "pear", PEARS);

    #[test]
    fn a_freed_handle_never_names_a_later_object() {
        let mut freed = Vec::new();
        for i in 0..1000 {
            let h = register::<Apple>(Arc::new(i));
            assert_eq!(*lookup(h).unwrap(), i);
            assert!(is_live(h));
            assert!(release(h).is_ok());
            assert!(!is_live(h));
            freed.push(h);
        }
        let live = register::<Apple>(Arc::new(7));
        for h in &freed {
            assert_ne!(*h, live);
            assert_eq!(lookup(*h).unwrap_err().code, errno::EINVAL);
            assert_eq!(release(*h).unwrap_err().code, errno::EINVAL);
        }
        assert_eq!(*lookup(live).unwrap(), 7);
        release(live).unwrap();
    }

    #[test]
    fn a_handle_of_another_type_or_no_handle_at_all_is_refused() {
        let apple = register::<Apple>(Arc::new(1));
        let as_pear = apple as *const Pear;
        assert!(!is_live(as_pear));
        let err = lookup(as_pear).unwrap_err();
        assert_eq!(err.code, errno::EINVAL);
        assert!(err.message.contains("pear"), "{err}");
        let stack = 0u64;
        let foreign = (&stack as *const u64).cast::<Apple>();
        assert_eq!(lookup(foreign).unwrap_err().code, errno::EINVAL);
        assert_eq!(
            lookup(std::ptr::null::<Apple>()).unwrap_err().code,
            errno::EINVAL
        );
        release(apple).unwrap();
        assert_eq!(PEARS.len(), 0);
    }
}
