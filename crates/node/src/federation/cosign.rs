//! Cosigning (见证): this node cosigns a peer's checkpoint once it holds the
//! entries and the peer proved it extends the last one cosigned, and takes
//! witnesses' cosignatures of its own checkpoints.

use qtrace_ledger::hash::LogId;
use qtrace_ledger::merkle::{self, Hash};
use qtrace_ledger::note::{self, Note};
use qtrace_ledger::pb;
use qtrace_rpc::rpc::ledger_client::LedgerClient;
use qtrace_store::{LogStore, StoreError};
use tonic::transport::Channel;

use super::evidence::evidence;
use super::{Federation, Peer, hashes};

/// Why a witness's cosignature of this node's checkpoint was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CosignatureError {
    #[error("no checkpoint was signed at size {0}")]
    NoCheckpoint(u64),
    #[error("cosignature: {0}")]
    Malformed(String),
    #[error("cosignature does not verify: {0}")]
    DoesNotVerify(String),
    #[error("cosignature by {0} is not from a known witness (a configured peer)")]
    UnknownWitness(String),
    /// Reading or writing the checkpoint failed: the node's failure, not
    /// the cosignature's.
    #[error("{0}")]
    Storage(#[from] StoreError),
}

const COSIGNED_PREFIX: &[u8] = b"cosigned/";

impl Federation {
    fn cosigned(&self, log: &LogId) -> Option<(u64, Hash)> {
        let mut key = COSIGNED_PREFIX.to_vec();
        key.extend_from_slice(&log.0);
        let value = self.meta.get(&key).ok()??;
        let size = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
        let root: Hash = value.get(8..40)?.try_into().ok()?;
        Some((size, root))
    }

    fn set_cosigned(&self, log: &LogId, size: u64, root: &Hash) -> anyhow::Result<()> {
        let mut key = COSIGNED_PREFIX.to_vec();
        key.extend_from_slice(&log.0);
        let mut value = size.to_be_bytes().to_vec();
        value.extend_from_slice(root);
        self.meta.put(&key, &value)?;
        Ok(())
    }

    /// Attaches a witness's cosignature to this node's checkpoint.
    pub fn add_cosignature(&self, size: u64, line: &str) -> Result<String, CosignatureError> {
        let _guard = self.cosign_lock.lock().unwrap_or_else(|p| p.into_inner());
        let own = &self.logs.own;
        let note_text = own.checkpoint(size)?.ok_or(CosignatureError::NoCheckpoint(size))?;
        let line = line.trim_end_matches('\n');
        let with = note::add_signature_lines(&note_text, &format!("{line}\n"))
            .map_err(|e| CosignatureError::Malformed(e.to_string()))?;
        let opened = note::open_checkpoint(&with, &self.own_vkey, &self.witnesses())
            .map_err(|e| CosignatureError::DoesNotVerify(e.to_string()))?;
        let signature =
            note::NoteSignature::parse_line(line).map_err(|e| CosignatureError::Malformed(e.to_string()))?;
        if !opened.cosigners.iter().any(|(name, _)| *name == signature.name) {
            return Err(CosignatureError::UnknownWitness(signature.name.as_str().to_string()));
        }
        own.put_checkpoint(size, &with)?;
        Ok(with)
    }
}

/// Cosigns the peer's checkpoint after checking it is consistent with the
/// last one this node cosigned, and hands the cosignature to the peer.
pub(super) async fn cosign(
    fed: &Federation,
    peer: &Peer,
    rpc: &mut LedgerClient<Channel>,
    local: &LogStore,
    target: &note::Checkpoint,
    served: &str,
) -> anyhow::Result<()> {
    if target.size == 0 || local.head().size < target.size {
        return Ok(());
    }
    if let Some((size, root)) = fed.cosigned(&peer.log_id) {
        if size == target.size && root == target.root {
            // Already cosigned: hand it in again if the peer lost it.
            let ours = format!("— {} ", fed.cosigner.name().as_str());
            if !served.contains(&ours)
                && let Some(note_text) = local.checkpoint(target.size)?
                && let Some(line) = note_text.lines().find(|l| l.starts_with(&ours))
            {
                let _ = rpc
                    .add_cosignature(pb::AddCosignatureRequest { size: target.size, cosignature: line.to_string() })
                    .await;
            }
            return Ok(());
        }
        if size > target.size {
            return Ok(());
        }
        if size > 0 {
            let proof = rpc
                .get_consistency_proof(pb::GetConsistencyProofRequest {
                    old_size: size,
                    new_size: target.size,
                    log_id: Vec::new(),
                })
                .await?
                .into_inner();
            let path = hashes(&proof.proof.map(|p| p.path).unwrap_or_default())?;
            let old = note::Checkpoint { origin: target.origin.clone(), size, root, extensions: Vec::new() };
            if let Err(conflict) = qtrace_ledger::equivocation::check_consistency(&old, target, &path) {
                // The log's own proof failed: it proves a fork if it rebuilds
                // the log's signed root (kept only then), else it is an alarm.
                let old_note = local.checkpoint(size)?.unwrap_or_default();
                let new_note = local.checkpoint(target.size)?.unwrap_or_default();
                let seeded = merkle::seeded_consistency_proof(size, &path, &root);
                fed.record_equivocation(evidence(&peer.log_id, old_note, new_note, seeded, conflict, &peer.name));
                return Ok(());
            }
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let line = fed.cosigner.cosign(target, now).map_err(|e| anyhow::anyhow!("cosigning: {e}"))?.to_string();
    let note_text = local.checkpoint(target.size)?.unwrap_or_default();
    if !note_text.is_empty() {
        let with = note::add_signature_lines(&note_text, &format!("{line}\n"))?;
        local.put_checkpoint(target.size, &with)?;
    }
    fed.set_cosigned(&peer.log_id, target.size, &target.root)?;
    if let Err(status) =
        rpc.add_cosignature(pb::AddCosignatureRequest { size: target.size, cosignature: line.clone() }).await
    {
        tracing::warn!(peer = %peer.name, error = %status.message(), "the peer did not take our cosignature");
    }
    tracing::debug!(peer = %peer.name, size = target.size, "cosigned");
    Ok(())
}

/// Adds the cosignatures in `served` to the stored note of the same size.
pub(super) fn merge_cosignatures(local: &LogStore, size: u64, served: &str) -> anyhow::Result<()> {
    let Some(ours) = local.checkpoint(size)? else { return Ok(()) };
    let theirs = Note::parse(served)?;
    let lines: String = theirs.signatures().iter().map(|s| format!("{s}\n")).collect();
    if lines.is_empty() {
        return Ok(());
    }
    let merged = note::add_signature_lines(&ours, &lines)?;
    if merged != ours {
        local.put_checkpoint(size, &merged)?;
    }
    Ok(())
}
