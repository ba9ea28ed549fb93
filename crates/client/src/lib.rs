//! qtrace client library: the gRPC stubs, connection and key files
//! re-exported from `qtrace-rpc` (where the node finds them too), record
//! builders, and the verification core re-exported from `qtrace-ledger` (a
//! light client verifies with the same code the node uses).
//!
//! - [`records`]: one builder per `qtrace` command, and [`records::seal`],
//!   which validates an event with the ledger's own decoder and signs it.
//! - [`connect`]: the gRPC connection and how failures are classed.
//! - [`verify`]: rechecking what a node sends (entry hashes, signatures,
//!   checkpoints, proofs).
//! - [`render`]: JSON and text renderings of records.
//! - [`keyfile`], [`time`], [`input`], [`subject`]: key files, RFC 3339 event
//!   times, what a verdict is about, and the other values a person types.
//! - [`qr`]: QR codes of GS1 Digital Links (SVG, PNG, terminal).
//! - [`epcis`]: GS1 EPCIS 2.0 JSON(-LD) documents to qtrace records and back.

pub mod epcis;
pub mod input;
pub mod qr;
pub mod records;
pub mod render;
pub mod subject;
pub mod time;
pub mod verify;

/// Every environment variable the `qtrace` CLI reads, one per option that
/// has one. The CLI's unit tests check this list against its arguments;
/// test runners clear these so that a caller's settings cannot leak in.
pub const ENVIRONMENT: [&str; 7] =
    ["QTRACE_NODE", "QTRACE_KEY", "QTRACE_ORG", "QTRACE_CA", "QTRACE_VKEY", "QTRACE_TRUST", "QTRACE_RESOLVER"];

pub use qtrace_ledger::{bundle, entry, event, hash, ids, merkle, note, pb, registry, signing, trace, verdict, view};
pub use qtrace_rpc::{connect, keyfile, rpc};
