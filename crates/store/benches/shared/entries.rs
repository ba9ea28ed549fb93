//! What the store's benchmarks (`store`, `follower`) share: the workload's
//! events signed on every core and chained into entries as the node's
//! writer would (all untimed: the benchmarks measure the store).

use std::ops::Range;

use prost::Message;
use qtrace_ledger::benchkit::{across_cores, workload::event_at};
use qtrace_ledger::entry::Entry;
use qtrace_ledger::event::{self, IndexKey};
use qtrace_ledger::hash::EntryHash;
use qtrace_ledger::signing::SecretKey;
use qtrace_store::NewEntry;

/// 2026-11-01T00:00:00Z: the event times of the workload.
pub const BASE_MILLIS: i64 = 1_793_491_200_000;

/// A signed event with its index keys, not yet sequenced.
pub struct Signed {
    pub event: Vec<u8>,
    pub signer: [u8; 32],
    pub signature: [u8; 64],
    /// Read by the store benchmark's statistics, not by the follower's.
    #[allow(dead_code)]
    pub index_keys: Vec<IndexKey>,
}

/// Workload event `i`, signed by the lab for inspections (2 in 10) and by
/// the factory otherwise.
pub fn sign_one(factory: &SecretKey, lab: &SecretKey, i: u64) -> Signed {
    let event = event_at(i, BASE_MILLIS + i as i64);
    let bytes = event.encode_to_vec();
    let key = if i % 10 >= 8 { lab } else { factory };
    Signed {
        signature: key.sign_event(&bytes),
        signer: key.public_key().to_bytes(),
        index_keys: event::index_keys(&event),
        event: bytes,
    }
}

/// Workload events `range`, signed on every core.
pub fn sign_range(factory: &SecretKey, lab: &SecretKey, range: Range<u64>) -> Vec<Signed> {
    across_cores(range, |i| sign_one(factory, lab, i))
}

/// Sequences and chains signed events after `prev`, as the node's writer
/// does.
pub fn chain(signed: Vec<Signed>, first_seq: u64, prev: &mut EntryHash) -> Vec<NewEntry> {
    let mut out = Vec::with_capacity(signed.len());
    for (seq, s) in (first_seq..).zip(signed) {
        let entry = Entry {
            seq,
            prev_hash: *prev,
            logged_at_micros: BASE_MILLIS * 1_000 + seq as i64,
            signer: s.signer,
            signature: s.signature,
            event: s.event,
        };
        let hash = entry.hash();
        *prev = hash;
        out.push(NewEntry { entry, hash });
    }
    out
}
