//! The gRPC plumbing node and client share, and nothing of the `qtrace`
//! CLI: the node builds on it without EPCIS, QR or PNG code.
//!
//! - [`rpc`]: the generated `qtrace.v1.Ledger` stubs (client and server),
//!   over the message types of `qtrace_ledger::pb`.
//! - [`connect`]: the gRPC connection (plain or TLS, mutual TLS) and how
//!   failures are classed.
//! - [`keyfile`]: secret key files on disk (mode 0600, never overwritten).
//!
//! `qtrace-client` re-exports these modules, so its paths
//! (`qtrace_client::rpc`, `qtrace_client::connect`, ...) stay as they were.

pub mod connect;
pub mod keyfile;

/// gRPC stubs of the `qtrace.v1.Ledger` service (client and server).
#[allow(clippy::all, missing_docs)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/qtrace.v1.rs"));
}
