//! `qtrace-node audit`: re-verify a store from its entries up.
//!
//! The audit trusts nothing derived. It decodes every entry, checks its
//! sequence number, its link to the previous entry and its signature,
//! recomputes every Merkle node and compares it with the stored one, checks
//! every stored checkpoint's signature and root, and recomputes every index
//! key from the entries and compares the sets. It stops at the first
//! inconsistency and says where it is.

use std::collections::BTreeSet;

use indicatif::{ProgressBar, ProgressStyle};
use qtrace_ledger::event;
use qtrace_ledger::hash::EntryHash;
use qtrace_ledger::merkle::{CompactRange, Hash};
use qtrace_ledger::note::{self, Verifier};
use qtrace_store::LogStore;

/// The first inconsistency found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("entry {seq}: {detail}")]
    Entry { seq: u64, detail: String },
    #[error("entries end at {found} but the log's head says {expected}")]
    Missing { expected: u64, found: u64 },
    #[error("checkpoint at size {size}: {detail}")]
    Checkpoint { size: u64, detail: String },
    #[error("derived state: {detail}")]
    Derived { detail: String },
    #[error("storage: {0}")]
    Storage(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    pub entries: u64,
    pub checkpoints: usize,
    pub derived_keys: usize,
}

/// Audits one log. `progress` shows a bar on a terminal.
pub fn audit(log: &LogStore, verifier: &Verifier, progress: bool) -> Result<AuditSummary, AuditError> {
    let head = log.head();
    let bar = if progress { ProgressBar::new(head.size) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} entries ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("auditing entries, chain and tree");
    let checkpoint_sizes: BTreeSet<u64> =
        log.checkpoint_sizes().map_err(|e| AuditError::Storage(e.to_string()))?.into_iter().collect();
    let mut range = CompactRange::new();
    let mut prev: Option<EntryHash> = None;
    let mut expected_seq = 0u64;
    let mut checkpoints_checked = 0usize;
    let log_id = log.log_id();
    let check_checkpoint = |size: u64, root: Hash| -> Result<(), AuditError> {
        let Some(text) = log.checkpoint(size).map_err(|e| AuditError::Storage(e.to_string()))? else {
            return Ok(());
        };
        let opened = note::open_checkpoint(&text, verifier, &[])
            .map_err(|e| AuditError::Checkpoint { size, detail: format!("signature does not verify: {e}") })?;
        if opened.checkpoint.size != size {
            return Err(AuditError::Checkpoint { size, detail: format!("note says size {}", opened.checkpoint.size) });
        }
        if opened.checkpoint.root != root {
            return Err(AuditError::Checkpoint {
                size,
                detail: format!(
                    "signed root {} differs from the root of the stored entries {}",
                    hex::encode(opened.checkpoint.root),
                    hex::encode(root)
                ),
            });
        }
        Ok(())
    };
    for entry in log.range(0, u64::MAX) {
        let entry = entry.map_err(|e| AuditError::Entry { seq: expected_seq, detail: e.to_string() })?;
        let seq = entry.seq;
        if seq != expected_seq {
            return Err(AuditError::Entry {
                seq: expected_seq,
                detail: format!("is missing (the next stored entry says it is entry {seq})"),
            });
        }
        entry.check_link(&log_id, prev.as_ref()).map_err(|e| AuditError::Entry { seq, detail: e.to_string() })?;
        entry.verify_signature().map_err(|e| AuditError::Entry { seq, detail: e.to_string() })?;
        if let Err(e) = event::decode_event(&entry.event) {
            return Err(AuditError::Entry { seq, detail: format!("event does not decode: {e}") });
        }
        let hash = entry.hash();
        let mut mismatch = None;
        range
            .append(hash.0, |id, computed| {
                if mismatch.is_none() {
                    match log.node(id) {
                        Ok(stored) if stored == computed => {}
                        Ok(stored) => {
                            mismatch = Some(format!(
                                "Merkle node level {} index {} is {} but the entries give {}",
                                id.level,
                                id.index,
                                hex::encode(stored),
                                hex::encode(computed)
                            ))
                        }
                        Err(e) => mismatch = Some(e.to_string()),
                    }
                }
            })
            .map_err(|_| AuditError::Entry { seq, detail: "the tree is full".into() })?;
        if let Some(detail) = mismatch {
            return Err(AuditError::Entry { seq, detail });
        }
        prev = Some(hash);
        expected_seq += 1;
        if checkpoint_sizes.contains(&expected_seq) {
            check_checkpoint(expected_seq, range.root())?;
            checkpoints_checked += 1;
        }
        if expected_seq.is_multiple_of(4096) {
            bar.set_position(expected_seq);
        }
    }
    bar.set_position(expected_seq);
    if expected_seq != head.size {
        return Err(AuditError::Missing { expected: head.size, found: expected_seq });
    }
    if let Some(beyond) = checkpoint_sizes.iter().find(|s| **s > expected_seq) {
        return Err(AuditError::Checkpoint {
            size: *beyond,
            detail: "is signed for more entries than are stored".into(),
        });
    }
    bar.set_message("auditing indexes");
    let live = log.live_derived().map_err(|e| AuditError::Storage(e.to_string()))?;
    let fresh = log.derived_from_entries().map_err(|e| AuditError::Storage(e.to_string()))?;
    if live != fresh {
        let extra = live.difference(&fresh).next();
        let missing = fresh.difference(&live).next();
        let detail = match (extra, missing) {
            (Some((k, _)), _) => format!("stored key {} is not derived from any entry", describe_key(k)),
            (None, Some((k, _))) => format!("key {} derived from the entries is missing", describe_key(k)),
            (None, None) => "differs".into(),
        };
        return Err(AuditError::Derived { detail });
    }
    bar.finish_and_clear();
    Ok(AuditSummary { entries: expected_seq, checkpoints: checkpoints_checked, derived_keys: live.len() })
}

fn describe_key(key: &[u8]) -> String {
    let kind = match key.first() {
        Some(b'H') => "hash index",
        Some(b'T') => "Merkle tile",
        Some(b'D') => "duplicate index",
        Some(b'P') => "lookup index (packed postings)",
        Some(b'W') => "index watermark",
        _ => "unknown",
    };
    format!("{kind} {}", hex::encode(key))
}
