//! braft's counter example messages (`example/counter/counter.proto`), as
//! the tests of `examples-c/counter` and of braft's own binaries encode and
//! decode them.

/// `example.FetchAddRequest`, with the payload of braft's benchmark client
/// (`--payload_size`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FetchAddRequest {
    #[prost(int64, required, tag = "1")]
    pub value: i64,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub payload: Option<Vec<u8>>,
}

/// `example.CounterResponse`: success=false is not applied, and names the
/// leader in `redirect` (braft's PeerId form `ip:port:idx:role`) when one
/// is known.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CounterResponse {
    #[prost(bool, required, tag = "1")]
    pub success: bool,
    #[prost(int64, optional, tag = "2")]
    pub value: Option<i64>,
    #[prost(string, optional, tag = "3")]
    pub redirect: Option<String>,
}
