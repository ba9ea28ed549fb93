//! qtrace client library: the gRPC stubs, key files, record builders and
//! the verification core re-exported from `qtrace-ledger` (a light client
//! verifies with the same code the node uses).
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

pub mod connect;
pub mod epcis;
pub mod input;
pub mod keyfile;
pub mod qr;
pub mod records;
pub mod render;
pub mod subject;
pub mod time;
pub mod verify;

pub use qtrace_ledger::{bundle, entry, event, hash, ids, merkle, note, pb, registry, signing, trace, verdict, view};

/// gRPC stubs of the `qtrace.v1.Ledger` service (client and server).
#[allow(clippy::all, missing_docs)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/qtrace.v1.rs"));
}
