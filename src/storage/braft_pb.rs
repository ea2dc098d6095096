//! braft's on-disk protobuf messages (`local_storage.proto`, the
//! `SnapshotMeta` of `raft.proto`, `local_file_meta.proto`) and its
//! `ProtoBufFile` framing, with the conversions between them and rraft's
//! own types.
//!
//! The messages are hand-written prost derives; the field numbers and types
//! are braft's (proto2: `required` fields are always written, as braft's
//! serializer does). What rraft keeps beyond braft goes in field numbers
//! braft does not use ([`RRAFT_EXTRA_TAG`]): braft's parser keeps unknown
//! fields aside and reads the rest, so it reads these files unchanged.
//!
//! `ProtoBufFile`: a 4-byte big-endian length, then the message. There is
//! no checksum; the files are replaced by rename, so a crash leaves the old
//! or the new file, and a length that does not match the file is refused.

use prost::Message as _;

use crate::proto::{Configuration, HardState, SnapshotMeta};
use crate::transport::peer_id;

/// Field number of what rraft stores beyond braft in a braft message:
/// learners in a configuration, the commit index in `StablePBMeta`. braft's
/// messages number their fields from 1 up to 5.
pub const RRAFT_EXTRA_TAG: u32 = 100;

/// braft's text of "no vote" in `StablePBMeta.votedfor`: the empty
/// `PeerId` printed (braft's loader refuses an empty string).
pub const NO_VOTE: &str = "0.0.0.0:0:0:0";

/// `ConfigurationPBMeta`: the data of a configuration entry.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ConfigurationPbMeta {
    #[prost(string, repeated, tag = "1")]
    pub peers: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub old_peers: Vec<String>,
    /// rraft only (braft has no learners): read by rraft, kept aside by braft.
    #[prost(string, repeated, tag = "100")]
    pub learners: Vec<String>,
}

/// `LogPBMeta`: the content of `log_meta`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LogPbMeta {
    #[prost(int64, required, tag = "1")]
    pub first_log_index: i64,
}

/// `StablePBMeta`: the content of `raft_meta`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StablePbMeta {
    #[prost(int64, required, tag = "1")]
    pub term: i64,
    #[prost(string, required, tag = "2")]
    pub votedfor: String,
    /// rraft only: the commit index known when the vote was saved.
    #[prost(uint64, optional, tag = "100")]
    pub commit: Option<u64>,
}

/// braft's `SnapshotMeta` (raft.proto).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct BraftSnapshotMeta {
    #[prost(int64, required, tag = "1")]
    pub last_included_index: i64,
    #[prost(int64, required, tag = "2")]
    pub last_included_term: i64,
    #[prost(string, repeated, tag = "3")]
    pub peers: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub old_peers: Vec<String>,
    /// rraft only, as in [`ConfigurationPbMeta::learners`].
    #[prost(string, repeated, tag = "100")]
    pub learners: Vec<String>,
}

/// `LocalFileMeta`: what the snapshot manifest says of one file.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LocalFileMeta {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub user_meta: Option<Vec<u8>>,
    /// braft's `FileSource` (0 local, 1 reference).
    #[prost(int32, optional, tag = "2")]
    pub source: Option<i32>,
    /// Free text braft compares between leader and follower to reuse a file.
    #[prost(string, optional, tag = "3")]
    pub checksum: Option<String>,
}

/// `LocalSnapshotPbMeta.File`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LocalSnapshotFile {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub meta: Option<LocalFileMeta>,
}

/// `LocalSnapshotPbMeta`: the content of `__raft_snapshot_meta`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LocalSnapshotPbMeta {
    #[prost(message, optional, tag = "1")]
    pub meta: Option<BraftSnapshotMeta>,
    #[prost(message, repeated, tag = "2")]
    pub files: Vec<LocalSnapshotFile>,
}

/// Frames `msg` as braft's `ProtoBufFile` writes it.
pub fn frame<M: prost::Message>(msg: &M) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut b = Vec::with_capacity(4 + body.len());
    b.extend_from_slice(&(body.len() as u32).to_be_bytes());
    b.extend_from_slice(&body);
    b
}

/// The message of a `ProtoBufFile`, or why the bytes are refused.
pub fn unframe<M: prost::Message + Default>(b: &[u8]) -> Result<M, String> {
    if b.len() < 4 {
        return Err(format!("{} bytes, shorter than the length field", b.len()));
    }
    let len = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
    if b.len() - 4 != len {
        return Err(format!(
            "the length field says {len} bytes, the file holds {}",
            b.len() - 4
        ));
    }
    M::decode(&b[4..]).map_err(|e| format!("cannot decode: {e}"))
}

fn to_braft_ids(ids: &[String]) -> Vec<String> {
    ids.iter().map(|p| peer_id::to_braft_form(p)).collect()
}

fn from_braft_ids(ids: &[String]) -> Vec<String> {
    ids.iter().map(|p| peer_id::from_braft_form(p)).collect()
}

/// rraft's configuration as braft's configuration entry data.
pub fn conf_to_braft(c: &Configuration) -> ConfigurationPbMeta {
    ConfigurationPbMeta {
        peers: to_braft_ids(&c.voters),
        old_peers: to_braft_ids(&c.old_voters),
        learners: to_braft_ids(&c.learners),
    }
}

/// braft's configuration entry data as rraft's configuration.
pub fn conf_from_braft(c: &ConfigurationPbMeta) -> Configuration {
    Configuration {
        voters: from_braft_ids(&c.peers),
        learners: from_braft_ids(&c.learners),
        old_voters: from_braft_ids(&c.old_peers),
    }
}

fn to_i64(v: u64, what: &str) -> Result<i64, String> {
    i64::try_from(v).map_err(|_| format!("{what} {v} does not fit braft's int64"))
}

fn to_u64(v: i64, what: &str) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("negative {what} {v}"))
}

/// rraft's term, vote and commit as braft's `StablePBMeta`.
pub fn hard_state_to_braft(hs: &HardState) -> Result<StablePbMeta, String> {
    Ok(StablePbMeta {
        term: to_i64(hs.term, "term")?,
        votedfor: if hs.vote.is_empty() {
            NO_VOTE.to_string()
        } else {
            peer_id::to_braft_form(&hs.vote)
        },
        commit: (hs.commit > 0).then_some(hs.commit),
    })
}

/// braft's `StablePBMeta` as rraft's term, vote and commit (0 when braft
/// wrote it: braft does not record one).
pub fn hard_state_from_braft(m: &StablePbMeta) -> Result<HardState, String> {
    let vote = match m.votedfor.as_str() {
        "" | NO_VOTE => String::new(),
        v => peer_id::from_braft_form(v),
    };
    Ok(HardState {
        term: to_u64(m.term, "term")?,
        vote: vote.into(),
        commit: m.commit.unwrap_or(0),
    })
}

/// rraft's snapshot meta as braft's.
pub fn snapshot_meta_to_braft(m: &SnapshotMeta) -> Result<BraftSnapshotMeta, String> {
    let c = conf_to_braft(&m.configuration.clone().unwrap_or_default());
    Ok(BraftSnapshotMeta {
        last_included_index: to_i64(m.last_index, "snapshot index")?,
        last_included_term: to_i64(m.last_term, "snapshot term")?,
        peers: c.peers,
        old_peers: c.old_peers,
        learners: c.learners,
    })
}

/// braft's snapshot meta as rraft's.
pub fn snapshot_meta_from_braft(m: &BraftSnapshotMeta) -> Result<SnapshotMeta, String> {
    Ok(SnapshotMeta {
        last_index: to_u64(m.last_included_index, "snapshot index")?,
        last_term: to_u64(m.last_included_term, "snapshot term")?,
        configuration: Some(conf_from_braft(&ConfigurationPbMeta {
            peers: m.peers.clone(),
            old_peers: m.old_peers.clone(),
            learners: m.learners.clone(),
        })),
    })
}

/// Encodes rraft's configuration entry data (a prost [`Configuration`]) as
/// braft's.
pub fn conf_entry_to_braft(data: &[u8]) -> Result<Vec<u8>, String> {
    let c = Configuration::decode(data)
        .map_err(|e| format!("configuration entry does not decode: {e}"))?;
    Ok(conf_to_braft(&c).encode_to_vec())
}

/// Decodes braft's configuration entry data into rraft's.
pub fn conf_entry_from_braft(data: &[u8]) -> Result<Vec<u8>, String> {
    let c = ConfigurationPbMeta::decode(data)
        .map_err(|e| format!("ConfigurationPBMeta does not decode: {e}"))?;
    Ok(conf_from_braft(&c).encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braft_files_frame_and_decode_like_braft_wrote_them() {
        // Bytes of a raft_meta written by braft (term 2, vote for 8101).
        let mut b = vec![0, 0, 0, 0x16, 0x08, 0x02, 0x12, 0x12];
        b.extend_from_slice(b"127.0.0.1:8101:0:0");
        let m: StablePbMeta = unframe(&b).unwrap();
        let hs = hard_state_from_braft(&m).unwrap();
        assert_eq!(
            (hs.term, hs.vote.as_str(), hs.commit),
            (2, "127.0.0.1:8101:0", 0)
        );
        assert_eq!(frame(&hard_state_to_braft(&hs).unwrap()), b);
        let none = hard_state_to_braft(&HardState::default()).unwrap();
        assert_eq!(none.votedfor, NO_VOTE);
        assert_eq!(hard_state_from_braft(&none).unwrap(), HardState::default());
        let log_meta = frame(&LogPbMeta { first_log_index: 1 });
        assert_eq!(log_meta, [0, 0, 0, 2, 0x08, 0x01]);
        assert!(unframe::<LogPbMeta>(&log_meta[..5]).is_err());
        assert!(unframe::<LogPbMeta>(&log_meta[..3]).is_err());
    }

    #[test]
    fn configurations_round_trip_with_learners_beyond_braft() {
        let c = Configuration {
            voters: vec!["127.0.0.1:1:0".into(), "n2".into()],
            learners: vec!["127.0.0.1:3:0".into()],
            old_voters: vec!["127.0.0.1:1:0".into()],
        };
        let b = conf_to_braft(&c);
        assert_eq!(b.peers, ["127.0.0.1:1:0:0", "n2"]);
        assert_eq!(conf_from_braft(&b), c);
        let data = conf_entry_to_braft(&c.encode_to_vec()).unwrap();
        let back = conf_entry_from_braft(&data).unwrap();
        assert_eq!(Configuration::decode(back.as_slice()).unwrap(), c);
    }
}
