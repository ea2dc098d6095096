//! braft storage URIs: `local://PATH` (relative or absolute) and `memory://`
//! (log only), and rraft's `local-prealloc://PATH`: for a log, zeros kept
//! ahead of the open segment's last entry whatever the node's options say
//! (`LogOptions::preallocate_bytes`, which a node sets for `local://` too
//! unless it runs with `braft_compat`; braft opens such a log only once
//! the zeros are cut, at a clean shutdown or when rraft opens it); for a
//! meta or snapshot store it is `local://PATH`. rraft's `shared://PATH` names a log shared by every
//! node of the process that names the same directory (see
//! `storage::shared_log`); it is valid for the log only.

use std::fmt;
use std::path::PathBuf;

/// The scheme of a local log with preallocated segment space.
const PREALLOCATED_SCHEME: &str = "local-prealloc";
/// The scheme of the process's shared log.
const SHARED_SCHEME: &str = "shared";

/// A parsed storage URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageUri {
    /// `local://PATH` or `local-prealloc://PATH`: files under PATH
    /// (relative to the working directory unless it starts with `/`).
    Local(PathBuf),
    /// `memory://`: an in-memory log (lost at exit). Valid for the log only.
    Memory,
    /// `shared://PATH`: the process's shared log in PATH. Valid for the log
    /// only.
    Shared(PathBuf),
}

/// Why a URI was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriError(pub String);

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UriError {}

impl StorageUri {
    /// Parses `local://PATH` or `memory://` (leading and trailing blanks are
    /// ignored; the scheme is case-insensitive).
    pub fn parse(uri: &str) -> Result<StorageUri, UriError> {
        let s = uri.trim();
        if s.is_empty() {
            return Err(UriError(
                "empty storage URI; expected local://PATH or memory://".into(),
            ));
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(UriError(format!(
                "storage URI {uri:?} has no scheme; expected local://PATH or memory://"
            )));
        };
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "local" | PREALLOCATED_SCHEME | SHARED_SCHEME => {
                if rest.is_empty() {
                    return Err(UriError(format!(
                        "storage URI {uri:?} has an empty path; expected {scheme}://PATH"
                    )));
                }
                let path = PathBuf::from(rest);
                Ok(if scheme == SHARED_SCHEME {
                    StorageUri::Shared(path)
                } else {
                    StorageUri::Local(path)
                })
            }
            "memory" => Ok(StorageUri::Memory),
            other => Err(UriError(format!(
                "storage URI {uri:?} has the unknown scheme {other:?}; expected local://, shared:// or memory://"
            ))),
        }
    }

    /// Whether `uri` is a `local-prealloc://` URI (see the module
    /// documentation).
    pub fn is_preallocated(uri: &str) -> bool {
        uri.trim()
            .split_once("://")
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case(PREALLOCATED_SCHEME))
    }

    /// Parses a URI that must name a directory (meta and snapshot storage):
    /// `memory://` is refused.
    pub fn parse_local(uri: &str) -> Result<PathBuf, UriError> {
        match StorageUri::parse(uri)? {
            StorageUri::Local(p) => Ok(p),
            StorageUri::Memory | StorageUri::Shared(_) => Err(UriError(format!(
                "storage URI {uri:?}: memory:// and shared:// are only supported for the log; \
                 use local://PATH"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_and_memory() {
        assert_eq!(
            StorageUri::parse("local://./data/log").unwrap(),
            StorageUri::Local("./data/log".into())
        );
        assert_eq!(
            StorageUri::parse("local:///var/raft").unwrap(),
            StorageUri::Local("/var/raft".into())
        );
        assert_eq!(
            StorageUri::parse("local://data").unwrap(),
            StorageUri::Local("data".into())
        );
        assert_eq!(StorageUri::parse("memory://").unwrap(), StorageUri::Memory);
        assert_eq!(
            StorageUri::parse("local-prealloc://data/log").unwrap(),
            StorageUri::Local("data/log".into())
        );
        assert!(StorageUri::is_preallocated(" Local-Prealloc://x"));
        assert_eq!(
            StorageUri::parse("Shared:///var/wal").unwrap(),
            StorageUri::Shared("/var/wal".into())
        );
        assert!(!StorageUri::is_preallocated("shared://x"));
        assert!(!StorageUri::is_preallocated("local://x"));
        assert_eq!(
            StorageUri::parse_local("local://m").unwrap(),
            PathBuf::from("m")
        );
    }

    #[test]
    fn refuses_bad_uris_clearly() {
        for (uri, needle) in [
            ("", "empty"),
            ("   ", "empty"),
            ("data/log", "no scheme"),
            ("local://", "empty path"),
            ("shared://", "empty path"),
            ("file:///x", "unknown scheme"),
        ] {
            let e = StorageUri::parse(uri).unwrap_err();
            assert!(e.0.contains(needle), "{uri:?}: {e}");
        }
        assert!(StorageUri::parse_local("memory://")
            .unwrap_err()
            .0
            .contains("only supported for the log"));
        assert!(StorageUri::parse_local("shared://w")
            .unwrap_err()
            .0
            .contains("only supported for the log"));
    }
}
