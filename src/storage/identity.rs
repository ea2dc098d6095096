//! Who owns a data directory: every store directory a node uses is locked
//! while the node runs and records, on first use, the group and peer it
//! belongs to. A node of another group or peer is refused, so one
//! directory never holds two nodes' logs.
//!
//! File `raft_identity`, text, replaced atomically like the meta file:
//!
//! ```text
//! rraft-identity 1
//! group <group id>
//! peer <peer id>
//! crc32c <CRC32C of the lines above, 8 hex digits>
//! ```
//!
//! Bytes outside printable ASCII (and `%`) in the ids are written `%XX`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::fs::{create_dir_durable, read_whole, write_atomic, DirLock, FileSystem};

/// Name of the identity file in each store directory.
pub const IDENTITY_FILE: &str = "raft_identity";

const HEADER: &str = "rraft-identity 1";

/// The owner of a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub group: String,
    pub peer: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group {:?} peer {:?}", self.group, self.peer)
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Identity {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let body = format!(
            "{HEADER}\ngroup {}\npeer {}\n",
            escape(&self.group),
            escape(&self.peer)
        );
        let crc = crc32c::crc32c(body.as_bytes());
        format!("{body}crc32c {crc:08x}\n").into_bytes()
    }

    /// Parses the file's bytes; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Identity, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let Some(at) = text.rfind("crc32c ") else {
            return Err("no checksum line".into());
        };
        let (body, crc_line) = text.split_at(at);
        let want = crc_line
            .trim_end()
            .strip_prefix("crc32c ")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| "bad checksum line".to_string())?;
        if crc32c::crc32c(body.as_bytes()) != want {
            return Err("checksum mismatch".into());
        }
        let mut lines = body.lines();
        if lines.next() != Some(HEADER) {
            return Err(format!("the first line is not {HEADER:?}"));
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|v| v.strip_prefix(' '))
                .and_then(unescape)
                .ok_or_else(|| format!("no valid {name} line"))
        };
        let group = field("group")?;
        let peer = field("peer")?;
        Ok(Identity { group, peer })
    }
}

/// Why [`claim`] refused.
#[derive(Debug)]
pub enum ClaimError {
    /// Another node (in this process or another) holds the directory's lock.
    Busy { dir: PathBuf, detail: String },
    /// The directory belongs to another group or peer.
    Foreign {
        dir: PathBuf,
        stored: Identity,
        requested: Identity,
    },
    /// The identity file is unreadable or damaged.
    Corrupt { path: PathBuf, detail: String },
    /// Creating, locking, reading or writing failed.
    Io { dir: PathBuf, error: io::Error },
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::Busy { dir, detail } => write!(
                f,
                "data directory {} is in use by another node ({detail})",
                dir.display()
            ),
            ClaimError::Foreign {
                dir,
                stored,
                requested,
            } => write!(
                f,
                "data directory {} belongs to {stored}, not to {requested}; \
                 give each node a directory of its own",
                dir.display()
            ),
            ClaimError::Corrupt { path, detail } => {
                write!(f, "corrupt identity file {}: {detail}", path.display())
            }
            ClaimError::Io { dir, error } => {
                write!(f, "data directory {}: {error}", dir.display())
            }
        }
    }
}

/// The store directories a node holds: each locked, each recording its
/// owner. Dropping it releases the locks.
#[derive(Debug)]
pub struct DirClaim {
    held: Vec<(PathBuf, DirLock)>,
}

impl DirClaim {
    /// The directories held (each once, however many stores share it).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.held.iter().map(|(d, _)| d.as_path())
    }
}

/// Creates (durably) each of `dirs`, locks it and checks or records its
/// owner: a directory without an identity file is adopted by `who`; one
/// recorded for another group or peer is refused. A directory named twice
/// (several stores in one directory) is claimed once. On an error nothing
/// stays locked.
pub fn claim(
    fs: &dyn FileSystem,
    dirs: &[PathBuf],
    who: &Identity,
) -> Result<DirClaim, ClaimError> {
    let mut held: Vec<(PathBuf, DirLock)> = Vec::new();
    for dir in dirs {
        let io = |error| ClaimError::Io {
            dir: dir.clone(),
            error,
        };
        create_dir_durable(fs, dir).map_err(io)?;
        let canonical = fs.canonical(dir).map_err(io)?;
        if held.iter().any(|(d, _)| *d == canonical) {
            continue;
        }
        let lock = fs.lock_dir(&canonical).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => ClaimError::Busy {
                dir: dir.clone(),
                detail: e.to_string(),
            },
            _ => io(e),
        })?;
        let path = canonical.join(IDENTITY_FILE);
        match read_whole(fs, &path).map_err(io)? {
            Some(bytes) => {
                let stored = Identity::decode(&bytes).map_err(|detail| ClaimError::Corrupt {
                    path: path.clone(),
                    detail,
                })?;
                if stored != *who {
                    return Err(ClaimError::Foreign {
                        dir: dir.clone(),
                        stored,
                        requested: who.clone(),
                    });
                }
            }
            None => write_atomic(fs, &canonical, IDENTITY_FILE, &who.encode()).map_err(io)?,
        }
        held.push((canonical, lock));
    }
    Ok(DirClaim { held })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{RealFs, SimFs};

    fn who(group: &str, peer: &str) -> Identity {
        Identity {
            group: group.into(),
            peer: peer.into(),
        }
    }

    #[test]
    fn identity_round_trips_with_any_bytes() {
        for id in [
            who("g", "127.0.0.1:8000:0"),
            who("with space %25\nnewline", "ünïcode"),
            who("", ""),
        ] {
            assert_eq!(Identity::decode(&id.encode()).unwrap(), id);
        }
    }

    #[test]
    fn a_damaged_identity_is_refused() {
        let mut b = who("g", "p").encode();
        b[20] ^= 1;
        assert!(Identity::decode(&b).unwrap_err().contains("checksum"));
        assert!(Identity::decode(b"").is_err());
    }

    #[test]
    fn a_directory_is_locked_once_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let dir = tmp.path().join("d");
        let first = claim(&fs, std::slice::from_ref(&dir), &who("g", "p")).unwrap();
        let e = claim(&fs, std::slice::from_ref(&dir), &who("g", "p")).unwrap_err();
        assert!(matches!(e, ClaimError::Busy { .. }), "{e}");
        assert!(e.to_string().contains("in use by another node"), "{e}");
        drop(first);
        claim(&fs, &[dir], &who("g", "p")).unwrap();
    }

    #[test]
    fn a_directory_named_twice_is_claimed_once() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("d");
        let b = tmp.path().join("./d/../d");
        let c = claim(&RealFs, &[a, b], &who("g", "p")).unwrap();
        assert_eq!(c.dirs().count(), 1);
    }

    #[test]
    fn a_directory_of_another_owner_is_refused_naming_both() {
        let fs = SimFs::new();
        let dir = PathBuf::from("/n/log");
        drop(claim(&fs, std::slice::from_ref(&dir), &who("a", "p1")).unwrap());
        for other in [who("b", "p1"), who("a", "p2")] {
            let e = claim(&fs, std::slice::from_ref(&dir), &other).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, ClaimError::Foreign { .. }), "{text}");
            assert!(text.contains("/n/log") && text.contains("\"a\""), "{text}");
            assert!(text.contains(&format!("{other}")), "{text}");
        }
        // The refused claim left nothing locked.
        claim(&fs, &[dir], &who("a", "p1")).unwrap();
    }

    #[test]
    fn a_simulated_crash_releases_the_locks() {
        let fs = SimFs::new();
        let dir = PathBuf::from("/n/log");
        let held = claim(&fs, std::slice::from_ref(&dir), &who("a", "p")).unwrap();
        fs.crash(7);
        let again = claim(&fs, std::slice::from_ref(&dir), &who("a", "p")).unwrap();
        // The lock from before the crash releases nothing it no longer holds.
        drop(held);
        let e = claim(&fs, &[dir], &who("a", "p")).unwrap_err();
        assert!(matches!(e, ClaimError::Busy { .. }), "{e}");
        drop(again);
    }
}
