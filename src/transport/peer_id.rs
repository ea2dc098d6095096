//! braft's PeerId text form `host:port[:idx[:role]]` and configuration
//! strings `peer,peer,...` (a trailing comma is accepted).
//!
//! Beyond braft, `host` may be a DNS name (at most 253 bytes) or a bracketed
//! IPv6 address. The role field accepts only 0 (replica): witness replicas
//! are not implemented, so a peer id naming role 1 is refused.
//!
//! The one parser of peer ids: the transport routes and connects by it, the
//! node layer checks configurations with it (re-exported as
//! `node::peer_id`).

use std::fmt;
use std::str::FromStr;

/// The longest host accepted, in bytes: a DNS name's limit (RFC 1035).
pub const MAX_HOST_LEN: usize = 253;

/// A replica's address and index inside its process. Equality and ordering
/// ignore the role, as in braft.
#[derive(Clone, Debug, Eq)]
pub struct PeerId {
    pub host: String,
    pub port: u16,
    pub idx: u32,
    /// braft role: false = replica (0), true = witness (1).
    pub witness: bool,
}

impl PartialEq for PeerId {
    fn eq(&self, other: &PeerId) -> bool {
        self.host == other.host && self.port == other.port && self.idx == other.idx
    }
}

impl std::hash::Hash for PeerId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.host, self.port, self.idx).hash(state)
    }
}

/// Why a peer id or configuration string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

impl PeerId {
    /// `host:port`, the address a transport connects to.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The text braft's `PeerId::to_string` writes: `host:port:idx:role`.
    pub fn braft_string(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.host,
            self.port,
            self.idx,
            u8::from(self.witness)
        )
    }

    /// True when the host is the unspecified address, which no peer can
    /// reach (braft refuses it too).
    pub fn is_unspecified(&self) -> bool {
        matches!(self.host.as_str(), "0.0.0.0" | "[::]")
    }
}

impl FromStr for PeerId {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<PeerId, ParseError> {
        let bad = |why: &str| {
            ParseError(format!(
                "bad peer id {text:?}: {why} (expected host:port[:idx[:role]])"
            ))
        };
        let text_trimmed = text.trim();
        if text_trimmed.is_empty() {
            return Err(bad("empty"));
        }
        // A bracketed IPv6 host may contain ':'; everything else splits on ':'.
        let (host, rest) = if let Some(after) = text_trimmed.strip_prefix('[') {
            let close = after.find(']').ok_or_else(|| bad("unclosed '['"))?;
            let host = &text_trimmed[..close + 2];
            let rest = after[close + 1..]
                .strip_prefix(':')
                .ok_or_else(|| bad("missing port"))?;
            (host, rest)
        } else {
            text_trimmed
                .split_once(':')
                .ok_or_else(|| bad("missing port"))?
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if host.len() > MAX_HOST_LEN {
            return Err(bad(&format!(
                "host is {} bytes long, more than a DNS name may have ({MAX_HOST_LEN})",
                host.len()
            )));
        }
        if !host.starts_with('[')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(bad("host has characters a host name cannot have"));
        }
        let mut fields = rest.split(':');
        let port: u16 = fields
            .next()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("missing port"))?
            .parse()
            .map_err(|_| bad("port is not a number in 1..65535"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        let idx: u32 = match fields.next() {
            None | Some("") => 0,
            Some(i) => i
                .parse()
                .map_err(|_| bad("idx is not a non-negative number"))?,
        };
        let witness = match fields.next() {
            None | Some("") | Some("0") => false,
            Some("1") => {
                return Err(bad(
                    "role 1 (witness) is not supported: witness replicas are not implemented",
                ))
            }
            Some(_) => return Err(bad("role must be 0 (replica)")),
        };
        if fields.next().is_some() {
            return Err(bad("too many ':' fields"));
        }
        Ok(PeerId {
            host: host.to_string(),
            port,
            idx,
            witness,
        })
    }
}

impl fmt::Display for PeerId {
    /// The canonical form `host:port:idx` (`:1` appended for a witness): the
    /// string the core, the log and the wire use to name this peer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.port, self.idx)?;
        if self.witness {
            f.write_str(":1")?;
        }
        Ok(())
    }
}

/// Parses `peer,peer,...` (a trailing comma and spaces are accepted; an
/// empty string is the empty list). Duplicates are refused.
pub fn parse_peer_list(text: &str) -> Result<Vec<PeerId>, ParseError> {
    let mut peers: Vec<PeerId> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let peer: PeerId = part.parse()?;
        if peers.contains(&peer) {
            return Err(ParseError(format!(
                "peer {peer} is listed twice in {text:?}"
            )));
        }
        peers.push(peer);
    }
    Ok(peers)
}

/// Canonical text of `peers` joined with commas.
pub fn format_peer_list(peers: &[PeerId]) -> String {
    peers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `host:port[:idx]` → `host:port`, the address to connect to; `None`
/// when the peer id is refused.
pub fn peer_addr(peer_id: &str) -> Option<String> {
    peer_id.parse::<PeerId>().ok().map(|p| p.addr())
}

/// The canonical routing key of a peer id (`host:port:idx`); `None` when
/// the peer id is refused.
pub fn peer_key(peer_id: &str) -> Option<String> {
    canonical(peer_id).ok()
}

/// Canonicalises one peer id string (`"1.2.3.4:80"` → `"1.2.3.4:80:0"`).
pub fn canonical(text: &str) -> Result<String, ParseError> {
    text.parse::<PeerId>().map(|p| p.to_string())
}

/// A peer id as braft writes it in its files (configuration entries, the
/// vote, snapshot metas): the canonical `host:port:idx` gets braft's role
/// field, `:0`. Any other text (a name a simulation uses) is kept as is.
pub fn to_braft_form(id: &str) -> String {
    match id.parse::<PeerId>() {
        Ok(p) if p.to_string() == id => p.braft_string(),
        _ => id.to_string(),
    }
}

/// The inverse of [`to_braft_form`]: `host:port:idx:0` as braft writes it
/// becomes the canonical `host:port:idx`; any other text is kept as is.
pub fn from_braft_form(text: &str) -> String {
    match text.parse::<PeerId>() {
        Ok(p) if p.braft_string() == text => p.to_string(),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_braft_forms() {
        let p: PeerId = "127.0.0.1:8100".parse().unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.idx, p.witness),
            ("127.0.0.1", 8100, 0, false)
        );
        assert_eq!(p.to_string(), "127.0.0.1:8100:0");
        let p: PeerId = "127.0.0.1:8100:2:0".parse().unwrap();
        assert_eq!((p.idx, p.witness), (2, false));
        assert_eq!(p.to_string(), "127.0.0.1:8100:2");
        let p: PeerId = "db-1.example.com:9000:3".parse().unwrap();
        assert_eq!(p.addr(), "db-1.example.com:9000");
        let p: PeerId = "[::1]:8100:1".parse().unwrap();
        assert_eq!((p.host.as_str(), p.port, p.idx), ("[::1]", 8100, 1));
        assert_eq!(p.addr(), "[::1]:8100");
    }

    #[test]
    fn addresses_and_routing_keys_come_from_the_same_parse() {
        type Parse = fn(&str) -> Option<String>;
        let cases: [(Parse, &str, &str); 6] = [
            (peer_addr, "127.0.0.1:8100:0", "127.0.0.1:8100"),
            (peer_key, "127.0.0.1:8100", "127.0.0.1:8100:0"),
            (peer_key, " 127.0.0.1:8100:3:0 ", "127.0.0.1:8100:3"),
            (peer_addr, "db-1.local:9000:2", "db-1.local:9000"),
            (peer_addr, "[::1]:9000:2", "[::1]:9000"),
            (peer_key, "[::1]:9000:2", "[::1]:9000:2"),
        ];
        for (parse, id, want) in cases {
            assert_eq!(parse(id).as_deref(), Some(want), "{id:?}");
        }
        for refused in [
            "nohost",
            ":80",
            "h:notaport",
            "h:1:2:3:4",
            "h:70000",
            "h:0",
            "h:1:2:1",
            "a/b:1",
        ] {
            assert_eq!(peer_addr(refused), None, "{refused}");
            assert_eq!(peer_key(refused), None, "{refused}");
        }
    }

    #[test]
    fn refuses_malformed_ids_with_a_reason() {
        for bad in [
            "",
            ":8100",
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:x",
            "127.0.0.1:0",
            "127.0.0.1:70000",
            "127.0.0.1:1:-1",
            "127.0.0.1:1:0:2",
            "127.0.0.1:1:0:0:9",
            "a b:1",
            "[::1:8100",
        ] {
            let err = bad.parse::<PeerId>().unwrap_err();
            assert!(err.0.contains("bad peer id"), "{bad}: {err}");
        }
    }

    #[test]
    fn braft_file_form_adds_and_drops_the_role_field() {
        let p: PeerId = "127.0.0.1:8100:2".parse().unwrap();
        assert_eq!(p.braft_string(), "127.0.0.1:8100:2:0");
        assert_eq!(to_braft_form("127.0.0.1:8100:0"), "127.0.0.1:8100:0:0");
        assert_eq!(from_braft_form("127.0.0.1:8100:0:0"), "127.0.0.1:8100:0");
        for kept in ["n1", "127.0.0.1:8100", "", "0.0.0.0:0:0:0"] {
            assert_eq!(to_braft_form(kept), kept);
            assert_eq!(from_braft_form(kept), kept);
        }
        assert_eq!(from_braft_form("[::1]:80:1:0"), "[::1]:80:1");
        assert_eq!(to_braft_form("[::1]:80:1"), "[::1]:80:1:0");
    }

    #[test]
    fn refuses_the_witness_role_until_witnesses_exist() {
        let err = "127.0.0.1:8100:2:1".parse::<PeerId>().unwrap_err();
        assert!(err.0.contains("witness"), "{err}");
        assert!(parse_peer_list("127.0.0.1:1:0,127.0.0.1:1:1:1").is_err());
    }

    #[test]
    fn refuses_host_names_longer_than_dns_allows() {
        let longest = format!("{}:80", "a".repeat(MAX_HOST_LEN));
        assert!(longest.parse::<PeerId>().is_ok());
        let too_long = format!("{}:80", "a".repeat(MAX_HOST_LEN + 1));
        let err = too_long.parse::<PeerId>().unwrap_err();
        assert!(err.0.contains("253"), "{err}");
    }

    #[test]
    fn peer_lists_accept_trailing_commas_and_refuse_duplicates() {
        let peers = parse_peer_list("127.0.0.1:1:0, 127.0.0.1:1:1,").unwrap();
        assert_eq!(format_peer_list(&peers), "127.0.0.1:1:0,127.0.0.1:1:1");
        assert!(parse_peer_list("").unwrap().is_empty());
        assert!(parse_peer_list("127.0.0.1:1,127.0.0.1:1:0")
            .unwrap_err()
            .0
            .contains("twice"));
        assert!(parse_peer_list("127.0.0.1:1,oops").is_err());
    }
}
