//! Every log this node keeps: its own and the mirrors of its peers' logs,
//! opened once and shared by the writer, the mirror tasks, the services and
//! the metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use qtrace_ledger::hash::LogId;
use qtrace_store::{LogStore, SledStore};

/// Every log this node keeps: its own and its mirrors.
pub struct Logs {
    pub own: Arc<LogStore>,
    store: SledStore,
    mirrors: RwLock<BTreeMap<LogId, Arc<LogStore>>>,
}

impl Logs {
    pub fn new(own: Arc<LogStore>, store: SledStore) -> Self {
        Logs { own, store, mirrors: RwLock::new(BTreeMap::new()) }
    }

    /// The log `id`, own or mirrored, if this node keeps it.
    pub fn get(&self, id: &LogId) -> Option<Arc<LogStore>> {
        if *id == self.own.log_id() {
            return Some(self.own.clone());
        }
        self.mirrors.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Opens (creating if new) the mirror of a peer's log. Two callers
    /// asking at once get the same store: a log opened twice would have two
    /// followers and two sets of index runs handing out the same run ids.
    pub fn mirror(&self, id: LogId) -> anyhow::Result<Arc<LogStore>> {
        if let Some(log) = self.get(&id) {
            return Ok(log);
        }
        let mut mirrors = self.mirrors.write().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = mirrors.get(&id) {
            return Ok(log.clone());
        }
        let log = Arc::new(self.store.mirror(id)?);
        mirrors.insert(id, log.clone());
        Ok(log)
    }

    /// The mirrors, by log id.
    pub fn mirrors(&self) -> Vec<Arc<LogStore>> {
        self.mirrors.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Own log first, then mirrors by log id.
    pub fn all(&self) -> Vec<Arc<LogStore>> {
        let mut all = vec![self.own.clone()];
        all.extend(self.mirrors.read().unwrap_or_else(|p| p.into_inner()).values().cloned());
        all
    }
}
