//! The node's logs (own and mirrored) as a [`View`] for traces, verdicts and
//! bundles.
//!
//! A view is a snapshot: it takes one published registry snapshot (see
//! [`crate::snapshot`]) and reads each log at exactly that snapshot's cut,
//! proven by the signed checkpoint stored at that size; records past it are
//! not visible. So the records a view hands out, their proofs and its
//! registry describe one state of the ledger, and an online verdict equals
//! the offline verdict of the evidence bundle built from the same view.
//! Taking a view costs cloning one `Arc`: it never waits for the writer,
//! and the writer never waits for it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use qtrace_ledger::event::IndexKey;
use qtrace_ledger::hash::LogId;
use qtrace_ledger::ids::Date;
use qtrace_ledger::pb;
use qtrace_ledger::registry::Registry;
use qtrace_ledger::view::{Proven, Record, RecordId, View, ViewError};
use qtrace_store::LogStore;

use crate::federation::Federation;
use crate::snapshot::Snapshot;

/// The zone "today" is computed in: China Standard Time (UTC+08:00).
pub const LOCAL_OFFSET_MINUTES: i64 = 480;

struct Fixed {
    log: Arc<LogStore>,
    size: u64,
    note: String,
}

pub struct StoreView<'a> {
    logs: BTreeMap<LogId, Fixed>,
    snapshot: Arc<Snapshot>,
    federation: &'a Federation,
    today: Date,
}

impl<'a> StoreView<'a> {
    /// A view at the latest published snapshot. The witness policy does not
    /// pick the checkpoint: the snapshot's cut does (the registry is the
    /// registry at that cut); a checkpoint short of the quorum is a warning
    /// of the verdict's witness check.
    pub fn new(federation: &'a Federation) -> Result<Self, ViewError> {
        let snapshot = federation.registry.latest();
        let mut logs = BTreeMap::new();
        for log in federation.logs.all() {
            let log_id = log.log_id();
            let Some(size) = snapshot.cut.size(&log_id).filter(|size| *size > 0) else { continue };
            let note = log.checkpoint(size).map_err(|e| ViewError(e.to_string()))?.ok_or_else(|| {
                ViewError(format!(
                    "log {log_id}: no signed checkpoint of size {size} is stored, but the registry is at it"
                ))
            })?;
            logs.insert(log_id, Fixed { log, size, note });
        }
        let now_millis = crate::setup::now_micros() / 1_000;
        let today = Date::from_days_since_epoch((now_millis + LOCAL_OFFSET_MINUTES * 60_000).div_euclid(86_400_000));
        Ok(StoreView { logs, snapshot, federation, today })
    }
}

impl View for StoreView<'_> {
    fn record(&self, id: RecordId) -> Result<Option<Record>, ViewError> {
        let Some(snapshot) = self.logs.get(&id.log) else { return Ok(None) };
        if id.seq >= snapshot.size {
            return Ok(None);
        }
        let entry = snapshot.log.entry_hashed(id.seq).map_err(|e| ViewError(e.to_string()))?;
        Ok(entry.map(|(entry, hash)| Record::with_hash(id.log, entry, hash)))
    }

    fn lookup(&self, key: &IndexKey, limit: usize) -> Result<Vec<RecordId>, ViewError> {
        let mut out = Vec::new();
        for (log, snapshot) in &self.logs {
            if out.len() >= limit {
                break;
            }
            // Waits (bounded) until the follower has indexed the snapshot.
            let seqs = snapshot
                .log
                .lookup_at(snapshot.size, key, None, limit - out.len())
                .map_err(|e| ViewError(e.to_string()))?;
            out.extend(seqs.into_iter().map(|seq| RecordId { log: *log, seq }));
        }
        Ok(out)
    }

    fn proof(&self, id: RecordId) -> Result<Option<Proven>, ViewError> {
        let Some(snapshot) = self.logs.get(&id.log) else { return Ok(None) };
        if id.seq >= snapshot.size {
            return Ok(None);
        }
        let path = snapshot.log.inclusion_proof(id.seq, snapshot.size).map_err(|e| ViewError(e.to_string()))?;
        Ok(Some(Proven { checkpoint_note: snapshot.note.clone(), tree_size: snapshot.size, path }))
    }

    fn registry(&self) -> &Registry {
        &self.snapshot.registry
    }

    fn today(&self) -> Date {
        self.today
    }

    fn logs(&self) -> Vec<LogId> {
        self.logs.keys().copied().collect()
    }

    fn equivocations(&self, log: &LogId) -> Vec<pb::Equivocation> {
        self.federation.equivocations_of(log)
    }

    fn correction_targets(&self, limit: usize) -> Result<Option<HashSet<RecordId>>, ViewError> {
        let mut out = HashSet::new();
        for snapshot in self.logs.values() {
            let left = limit.saturating_sub(out.len());
            let listed = snapshot.log.correction_targets(snapshot.size, left).map_err(|e| ViewError(e.to_string()))?;
            let Some(targets) = listed else { return Ok(None) };
            out.extend(targets.into_iter().map(|(log, seq)| RecordId { log, seq }));
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests;
