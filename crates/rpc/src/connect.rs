//! Connecting to a node over gRPC, and naming gRPC status codes the way
//! the gRPC specification and `grpcurl` spell them (`PERMISSION_DENIED`).

use std::error::Error as _;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::rpc::ledger_client::LedgerClient;

/// Where `qtrace` looks for a node unless told otherwise.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:7700";

/// Largest gRPC message the client sends or accepts: a full batch of large
/// events, or a page of entries, fits comfortably.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How long to wait for a TCP connection before calling the node unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address is not a URL a plain-text gRPC channel can use.
    #[error("{url:?} is not a node address such as http://127.0.0.1:7700: {detail}")]
    BadUrl { url: String, detail: String },
    /// A TLS file could not be read or used.
    #[error("TLS: {detail}")]
    Tls { detail: String },
    /// Nothing answered at the address.
    #[error("cannot reach the node at {url}: {detail}")]
    Unreachable { url: String, detail: String },
}

/// Adds `http://` to a bare `host:port`, since that is how people write a
/// node's address.
pub fn node_url(address: &str) -> String {
    if address.contains("://") { address.to_owned() } else { format!("http://{address}") }
}

/// Opens a channel to the node at `address` and returns a client for the
/// `qtrace.v1.Ledger` service. Connects eagerly, so an unreachable node is
/// reported here rather than at the first call.
pub async fn connect(address: &str) -> Result<LedgerClient<Channel>, ConnectError> {
    connect_with(address, None).await
}

/// TLS settings for `https://` nodes: the CA that signed the node's
/// certificate, and for mutual TLS this side's certificate and key (PEM).
#[derive(Debug, Clone, Default)]
pub struct Tls {
    pub ca_pem: Vec<u8>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    /// Reads the PEM files.
    pub fn from_files(
        ca: &std::path::Path,
        identity: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<Tls, ConnectError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| ConnectError::Tls { detail: format!("{}: {e}", path.display()) })
        };
        let identity = match identity {
            Some((cert, key)) => Some((read(cert)?, read(key)?)),
            None => None,
        };
        Ok(Tls { ca_pem: read(ca)?, identity })
    }
}

/// Like [`connect`], with TLS for `https://` addresses.
pub async fn connect_with(address: &str, tls: Option<&Tls>) -> Result<LedgerClient<Channel>, ConnectError> {
    let channel = channel(address, tls).await?;
    Ok(LedgerClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Opens a gRPC channel: plain text for `http://`, TLS (verified against
/// the given CA) for `https://`.
pub async fn channel(address: &str, tls: Option<&Tls>) -> Result<Channel, ConnectError> {
    let url = node_url(address);
    let bad = |detail: String| ConnectError::BadUrl { url: url.clone(), detail };
    let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| bad(e.to_string()))?;
    match (url.starts_with("https://"), tls) {
        (false, _) if !url.starts_with("http://") => {
            return Err(bad("use http:// or https://".to_owned()));
        }
        (false, _) => {}
        (true, None) => {
            return Err(bad("an https:// node needs the CA that signed its certificate (--ca FILE)".to_owned()));
        }
        (true, Some(tls)) => {
            let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(config).map_err(|e| ConnectError::Tls { detail: error_chain(&e) })?;
        }
    }
    let channel = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| ConnectError::Unreachable { url: url.clone(), detail: error_chain(&e) })?;
    Ok(channel)
}

/// An error with its causes, "outer: inner: innermost", because transport
/// errors hide the useful part ("Connection refused") in their sources.
fn error_chain(error: &tonic::transport::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The canonical name of a gRPC status code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The name of a status code carried as a number (as in a batch refusal).
pub fn code_name_of(code: i32) -> &'static str {
    code_name(tonic::Code::from_i32(code))
}

/// Whether a failed call means the node could not be reached (rather than
/// that it answered with a refusal).
pub fn is_unreachable(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names() {
        let cases = [
            (tonic::Code::PermissionDenied, "PERMISSION_DENIED"),
            (tonic::Code::FailedPrecondition, "FAILED_PRECONDITION"),
            (tonic::Code::Unavailable, "UNAVAILABLE"),
        ];
        for (code, name) in cases {
            assert_eq!(code_name(code), name);
            assert_eq!(code_name_of(code as i32), name);
        }
        assert_eq!(code_name_of(99), "UNKNOWN");
    }

    #[test]
    fn addresses() {
        assert_eq!(node_url("127.0.0.1:7700"), "http://127.0.0.1:7700");
        assert_eq!(node_url("http://node:7700"), "http://node:7700");
    }

    #[tokio::test]
    async fn refused_connections_are_unreachable() {
        let cases = [
            ("http://127.0.0.1:1", "cannot reach the node at http://127.0.0.1:1"),
            ("https://127.0.0.1:7700", "needs the CA that signed its certificate"),
            ("http://[", "is not a node address"),
        ];
        for (address, want) in cases {
            let got = connect(address).await.map(drop).map_err(|e| e.to_string());
            assert!(got.as_ref().is_err_and(|e| e.contains(want)), "{address}: {got:?}");
        }
    }
}
