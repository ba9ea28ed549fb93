//! qtrace-ledger: the core of the qtrace traceability ledger.
//!
//! Everything a verifier needs lives here and does no I/O: identifiers
//! ([`ids`]), the record format ([`pb`], [`event`]), signing ([`signing`]),
//! the entry layout and hash chain ([`entry`]), RFC 6962 Merkle proofs
//! ([`merkle`]), the C2SP tlog-tiles arithmetic the store keeps its Merkle
//! hashes in ([`tiles`]) and C2SP signed checkpoints ([`note`]). The sled
//! store is the `qtrace-store` crate; this one does no I/O.
//!
//! # Exact bytes
//!
//! - An event is signed as `"qtrace/v1/event\0" || event_bytes`, where
//!   `event_bytes` is the canonical protobuf encoding of [`pb::Event`].
//! - An entry's leaf bytes are the fixed layout described in [`entry`]; the
//!   entry hash is `SHA-256(0x00 || entry_bytes)`, the RFC 6962 leaf hash, so
//!   the same 32 bytes link the hash chain, key the index and form the tree.
//! - Interior Merkle nodes are `SHA-256(0x01 || left || right)`.
//! - Checkpoints are C2SP tlog-checkpoint bodies inside C2SP signed notes,
//!   signed by the log's Ed25519 key; witnesses add C2SP tlog-cosignatures.

#[cfg(feature = "bench")]
pub mod benchkit;
pub mod bundle;
pub mod entry;
pub mod equivocation;
pub mod event;
pub mod hash;
pub mod ids;
#[cfg(test)]
mod kat;
pub mod merkle;
pub mod note;
pub mod registry;
pub mod signing;
/// Builders for tests (this crate's and the store's): example events, the
/// cast of organisations, an in-memory signed log.
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod tiles;
pub mod trace;
pub mod verdict;
pub mod view;

/// Generated protobuf types of package `qtrace.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/qtrace.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every qtrace .proto file, for gRPC
/// server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/qtrace_descriptor.bin"));
