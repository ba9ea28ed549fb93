//! qtrace client library: the gRPC stubs, key files, and the verification
//! core re-exported from `qtrace-ledger` (a light client verifies with the
//! same code the node uses).

pub mod keyfile;

pub use qtrace_ledger::{entry, event, hash, ids, merkle, note, pb, registry, signing};

/// gRPC stubs of the `qtrace.v1.Ledger` service (client and server).
#[allow(clippy::all, missing_docs)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/qtrace.v1.rs"));
}
