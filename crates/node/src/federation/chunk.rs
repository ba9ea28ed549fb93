//! Chunk verification and storage: a chunk of a peer's entries is checked
//! (sequence, chain, record format, signatures, rebuilt root against the
//! signed checkpoint) before a single entry is stored.

use qtrace_ledger::entry::Entry;
use qtrace_ledger::event::{self, IndexKey};
use qtrace_ledger::hash::{EntryHash, LogId};
use qtrace_ledger::merkle::{self, CompactRange, Hash};
use qtrace_ledger::note;
use qtrace_ledger::pb;
use qtrace_ledger::signing::{self, BatchItem};
use qtrace_rpc::rpc::ledger_client::LedgerClient;
use qtrace_store::{LogStore, NewEntry};
use tonic::transport::Channel;

use super::{Peer, hashes};

/// Most mirrored entries written in one sled batch. A chunk is stored in
/// parts this size: sled keeps every page version a batch replaces until
/// the batch ends, so one batch of a whole chunk (8,192 entries, ~75,000
/// keys) would hold about a gigabyte at its peak.
pub(super) const STORE_PART: usize = 1_024;

/// Stores verified entries of a chunk in parts of [`STORE_PART`], in order;
/// the peer's checkpoint note, if the chunk ends at it, goes with the last.
pub(super) fn store_verified(
    store: &LogStore,
    entries: &[NewEntry],
    mut note: Option<String>,
) -> Result<qtrace_store::Head, qtrace_store::StoreError> {
    let parts = entries.len().div_ceil(STORE_PART);
    let mut head = store.head();
    for (i, part) in entries.chunks(STORE_PART).enumerate() {
        let last = i + 1 == parts;
        head = store.append_mirrored(part, if last { note.take() } else { None })?;
    }
    Ok(head)
}

/// Checks that entries `from..end` of the peer's log, whose tree has root
/// `root_end`, lead to the signed `target`: equal roots when they end at
/// it, else a consistency proof from `end` to the target's size.
pub(super) async fn check_against_target(
    rpc: &mut LedgerClient<Channel>,
    peer: &Peer,
    target: &note::Checkpoint,
    from: u64,
    end: u64,
    root_end: &Hash,
) -> anyhow::Result<()> {
    if end < target.size {
        let proof = rpc
            .get_consistency_proof(pb::GetConsistencyProofRequest {
                old_size: end,
                new_size: target.size,
                log_id: Vec::new(),
            })
            .await?
            .into_inner();
        let path = hashes(&proof.proof.map(|p| p.path).unwrap_or_default())?;
        merkle::verify_consistency(end, target.size, &path, root_end, &target.root).map_err(|e| {
            anyhow::anyhow!(
                "entries {from}..{end} from {} are not a prefix of its signed checkpoint of size {}: {e}",
                peer.name,
                target.size
            )
        })?;
    } else if *root_end != target.root {
        anyhow::bail!(
            "entries from {} rebuild root {} but its signed checkpoint says {}",
            peer.name,
            hex::encode(root_end),
            hex::encode(target.root)
        );
    }
    Ok(())
}

/// Verifies a chunk of a peer's entries: sequence, chain, record format and
/// signatures (batch-verified on every core). Nothing is stored here.
/// Returns the entries, the positions among them of registry records (which
/// the registry takes once the chunk is stored) and the new frontier.
pub(super) fn verify_chunk(
    log_id: LogId,
    first: u64,
    mut prev: EntryHash,
    mut frontier: CompactRange,
    wire: Vec<pb::Entry>,
) -> anyhow::Result<(Vec<NewEntry>, Vec<usize>, CompactRange)> {
    let mut entries = Vec::with_capacity(wire.len());
    let mut registry = Vec::new();
    for (i, w) in wire.iter().enumerate() {
        let entry = Entry::from_pb(w)?;
        let expected = first + i as u64;
        if entry.seq != expected {
            anyhow::bail!("entry {expected}: the peer sent entry {} instead", entry.seq);
        }
        entry.check_link(&log_id, if expected == 0 { None } else { Some(&prev) })?;
        let valid = event::decode_event(&entry.event).map_err(|e| anyhow::anyhow!("entry {expected}: {e}"))?;
        let hash = entry.hash();
        prev = hash;
        if event::index_keys(&valid.event).contains(&IndexKey::Registry) {
            registry.push(i);
        }
        entries.push(NewEntry { entry, hash });
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let items: Vec<BatchItem<'_>> = entries
        .iter()
        .map(|n| BatchItem { event: &n.entry.event, signer: &n.entry.signer, signature: &n.entry.signature })
        .collect();
    if let Err((i, e)) = signing::verify_batch_parallel(&items, threads) {
        anyhow::bail!("entry {}: signature: {e}", first + i as u64);
    }
    for new in &entries {
        frontier.append(new.hash.0, |_, _| {}).map_err(|_| anyhow::anyhow!("the mirrored tree is full"))?;
    }
    Ok((entries, registry, frontier))
}

/// A log store as a Merkle node source.
pub(super) struct StoreNodes<'a>(pub(super) &'a LogStore);

impl merkle::NodeSource for StoreNodes<'_> {
    type Error = qtrace_store::StoreError;

    fn node(&self, id: merkle::NodeId) -> Result<Hash, Self::Error> {
        self.0.node(id)
    }
}
