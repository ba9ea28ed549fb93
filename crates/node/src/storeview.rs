//! The node's logs (own and mirrored) as a [`View`] for traces, verdicts and
//! bundles.
//!
//! A view is a snapshot: for each log it fixes one signed checkpoint — the
//! newest one cosigned by at least the witness quorum, or the newest one if
//! none is — and records past it are not visible, so every record the view
//! hands out is proven against that checkpoint.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLockReadGuard};

use qtrace_ledger::event::IndexKey;
use qtrace_ledger::hash::LogId;
use qtrace_ledger::ids::Date;
use qtrace_ledger::note;
use qtrace_ledger::pb;
use qtrace_ledger::registry::Registry;
use qtrace_ledger::verdict::Trust;
use qtrace_ledger::view::{Proven, Record, RecordId, View, ViewError};
use qtrace_store::LogStore;

use crate::federation::Federation;

/// The zone "today" is computed in: China Standard Time (UTC+08:00).
pub const LOCAL_OFFSET_MINUTES: i64 = 480;
/// How many recent checkpoints are searched for one meeting the quorum.
const QUORUM_SEARCH: usize = 64;

struct Snapshot {
    log: Arc<LogStore>,
    size: u64,
    note: String,
}

pub struct StoreView<'a> {
    logs: BTreeMap<LogId, Snapshot>,
    registry: RwLockReadGuard<'a, Registry>,
    federation: &'a Federation,
    today: Date,
}

impl<'a> StoreView<'a> {
    pub fn new(federation: &'a Federation, trust: &Trust, quorum: usize) -> Result<Self, ViewError> {
        let mut logs = BTreeMap::new();
        for log in federation.logs.all() {
            if let Some((size, note)) = pick_checkpoint(&log, trust, quorum)? {
                logs.insert(log.log_id(), Snapshot { log, size, note });
            }
        }
        let now_millis = crate::setup::now_micros() / 1_000;
        let today = Date::from_days_since_epoch((now_millis + LOCAL_OFFSET_MINUTES * 60_000).div_euclid(86_400_000));
        let registry = federation.registry.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(StoreView { logs, registry, federation, today })
    }
}

/// The newest checkpoint with at least `quorum` trusted cosignatures, else
/// the newest.
fn pick_checkpoint(log: &LogStore, trust: &Trust, quorum: usize) -> Result<Option<(u64, String)>, ViewError> {
    let sizes = log.checkpoint_sizes().map_err(|e| ViewError(e.to_string()))?;
    let Some(&newest) = sizes.last() else { return Ok(None) };
    let newest_note = log.checkpoint(newest).map_err(|e| ViewError(e.to_string()))?.unwrap_or_default();
    if quorum == 0 {
        return Ok(Some((newest, newest_note)));
    }
    let verifier = trust.logs.iter().find(|v| LogId::of_key(&v.public_key().to_bytes()) == log.log_id());
    if let Some(verifier) = verifier {
        for size in sizes.iter().rev().take(QUORUM_SEARCH) {
            let Some(text) = log.checkpoint(*size).map_err(|e| ViewError(e.to_string()))? else { continue };
            if let Ok(opened) = note::open_checkpoint(&text, verifier, &trust.witnesses)
                && opened.cosigners.len() >= quorum
            {
                return Ok(Some((*size, text)));
            }
        }
    }
    Ok(Some((newest, newest_note)))
}

impl View for StoreView<'_> {
    fn record(&self, id: RecordId) -> Result<Option<Record>, ViewError> {
        let Some(snapshot) = self.logs.get(&id.log) else { return Ok(None) };
        if id.seq >= snapshot.size {
            return Ok(None);
        }
        let entry = snapshot.log.entry(id.seq).map_err(|e| ViewError(e.to_string()))?;
        Ok(entry.map(|entry| Record::new(id.log, entry)))
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
        &self.registry
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
