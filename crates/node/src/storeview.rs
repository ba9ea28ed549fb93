//! The node's store as a [`View`] for traces, verdicts and bundles.
//!
//! A view is a snapshot at the latest signed checkpoint: records past it are
//! not visible, so every record the view hands out can be proven against
//! that one checkpoint.

use std::sync::RwLockReadGuard;

use qtrace_ledger::event::IndexKey;
use qtrace_ledger::hash::LogId;
use qtrace_ledger::ids::Date;
use qtrace_ledger::registry::Registry;
use qtrace_ledger::store::LogStore;
use qtrace_ledger::view::{Proven, Record, RecordId, View, ViewError};

/// The zone "today" is computed in: China Standard Time (UTC+08:00).
pub const LOCAL_OFFSET_MINUTES: i64 = 480;

pub struct StoreView<'a> {
    log: &'a LogStore,
    registry: RwLockReadGuard<'a, Registry>,
    size: u64,
    note: String,
    today: Date,
}

impl<'a> StoreView<'a> {
    pub fn new(log: &'a LogStore, registry: RwLockReadGuard<'a, Registry>) -> Result<Self, ViewError> {
        let (size, note) = log
            .latest_checkpoint()
            .map_err(|e| ViewError(e.to_string()))?
            .ok_or_else(|| ViewError("the log has no checkpoint yet".into()))?;
        let now_millis = crate::setup::now_micros() / 1_000;
        let today = Date::from_days_since_epoch((now_millis + LOCAL_OFFSET_MINUTES * 60_000).div_euclid(86_400_000));
        Ok(StoreView { log, registry, size, note, today })
    }
}

impl View for StoreView<'_> {
    fn record(&self, id: RecordId) -> Result<Option<Record>, ViewError> {
        if id.log != self.log.log_id() || id.seq >= self.size {
            return Ok(None);
        }
        let entry = self.log.entry(id.seq).map_err(|e| ViewError(e.to_string()))?;
        Ok(entry.map(|entry| Record::new(id.log, entry)))
    }

    fn lookup(&self, key: &IndexKey, limit: usize) -> Result<Vec<RecordId>, ViewError> {
        let log = self.log.log_id();
        let seqs = self.log.lookup(key, None, limit).map_err(|e| ViewError(e.to_string()))?;
        Ok(seqs.into_iter().filter(|seq| *seq < self.size).map(|seq| RecordId { log, seq }).collect())
    }

    fn proof(&self, id: RecordId) -> Result<Option<Proven>, ViewError> {
        if id.log != self.log.log_id() || id.seq >= self.size {
            return Ok(None);
        }
        let path = self.log.inclusion_proof(id.seq, self.size).map_err(|e| ViewError(e.to_string()))?;
        Ok(Some(Proven { checkpoint_note: self.note.clone(), tree_size: self.size, path }))
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn today(&self) -> Date {
        self.today
    }

    fn logs(&self) -> Vec<LogId> {
        vec![self.log.log_id()]
    }
}
