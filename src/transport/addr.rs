//! braft peer ids (`host:port[:idx[:role]]`) and the addresses derived from
//! them. Host names are allowed (braft #18, #135); `[v6]:port:idx` too.

/// A parsed peer id. Equality ignores the role (braft: witness or replica
/// is not part of the identity).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerId {
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
    pub idx: u32,
}

impl PeerId {
    /// Parses `host:port[:idx[:role]]` or `[v6]:port[:idx[:role]]`.
    pub fn parse(s: &str) -> Option<PeerId> {
        let s = s.trim();
        let (host, rest) = if let Some(r) = s.strip_prefix('[') {
            let end = r.find(']')?;
            let rest = r[end + 1..].strip_prefix(':')?;
            (&r[..end], rest)
        } else {
            let (h, r) = s.split_once(':')?;
            (h, r)
        };
        if host.is_empty() {
            return None;
        }
        let mut parts = rest.split(':');
        let port: u16 = parts.next()?.parse().ok()?;
        let idx: u32 = match parts.next() {
            None => 0,
            Some(p) => p.parse().ok()?,
        };
        if let Some(role) = parts.next() {
            let _: u8 = role.parse().ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        Some(PeerId {
            host: host.to_string(),
            port,
            idx,
        })
    }

    /// `host:port` (brackets around an IPv6 literal), what `connect` takes.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The canonical text `host:port:idx` used as a routing key.
    pub fn key(&self) -> String {
        format!("{}:{}", self.addr(), self.idx)
    }
}

/// `ip:port:idx` → `ip:port`; `None` when the peer id is malformed.
pub fn peer_addr(peer_id: &str) -> Option<String> {
    PeerId::parse(peer_id).map(|p| p.addr())
}

/// The canonical routing key of a peer id (`host:port:idx`, role dropped).
pub fn peer_key(peer_id: &str) -> Option<String> {
    PeerId::parse(peer_id).map(|p| p.key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_braft_forms() {
        assert_eq!(
            peer_addr("127.0.0.1:8100:0").as_deref(),
            Some("127.0.0.1:8100")
        );
        assert_eq!(
            peer_key("127.0.0.1:8100").as_deref(),
            Some("127.0.0.1:8100:0")
        );
        assert_eq!(
            peer_key("127.0.0.1:8100:3:1").as_deref(),
            Some("127.0.0.1:8100:3")
        );
        assert_eq!(
            peer_addr("db-1.local:9000:2").as_deref(),
            Some("db-1.local:9000")
        );
        assert_eq!(peer_addr("[::1]:9000:2").as_deref(), Some("[::1]:9000"));
        assert_eq!(peer_addr("nohost"), None);
        assert_eq!(peer_addr(":80"), None);
        assert_eq!(peer_addr("h:notaport"), None);
        assert_eq!(peer_addr("h:1:2:3:4"), None);
        assert_eq!(peer_addr("h:70000"), None);
    }
}
