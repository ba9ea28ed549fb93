//! The registry as readers see it: immutable published snapshots, each with
//! the cut of the logs it reflects.
//!
//! Writers (the append writer and the mirror tasks) build the next registry
//! on their own copy — a clone costs O(1), the registry's maps are
//! persistent and share structure — and publish it only once the entries it
//! reflects are durable and end, in every log, at a stored signed
//! checkpoint. Readers take the published snapshot by cloning one `Arc`
//! under a lock held for nothing longer, so a long trace never holds an
//! append up and a batch's flush never holds a verdict up. A view reads each
//! log at exactly its snapshot's cut (see [`crate::storeview`]), so its
//! records, their proofs and its registry describe one state of the ledger.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use qtrace_ledger::hash::LogId;
use qtrace_ledger::registry::Registry;

/// For each log, how many of its entries a registry reflects. For the own
/// log and for every mirror the size is one at which a signed checkpoint
/// of that log is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cut(BTreeMap<LogId, u64>);

impl Cut {
    /// The size of `log` at this cut; `None` for a log not yet in it.
    pub fn size(&self, log: &LogId) -> Option<u64> {
        self.0.get(log).copied()
    }

    /// This cut with `log` at `size`.
    pub fn with(&self, log: LogId, size: u64) -> Cut {
        let mut next = self.clone();
        next.0.insert(log, size);
        next
    }
}

/// A registry and the cut of the logs it was built from.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub registry: Registry,
    pub cut: Cut,
}

/// The node's registry: the published snapshot readers take, and the lock
/// that serialises its writers (the append writer and the mirror tasks)
/// with each other, never with readers.
pub struct Registries {
    published: RwLock<Arc<Snapshot>>,
    writers: Mutex<()>,
}

/// Proof that the caller is the one writer building the next snapshot.
pub struct Writing<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl Registries {
    pub fn new(first: Snapshot) -> Self {
        Registries { published: RwLock::new(Arc::new(first)), writers: Mutex::new(()) }
    }

    /// The latest published snapshot. The lock is held only to clone the
    /// pointer.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.published.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Becomes the one writer until the guard is dropped. Readers are not
    /// affected; another writer waits.
    pub fn write(&self) -> Writing<'_> {
        // The guarded value is `()`: a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is as good as a clean one.
        Writing(self.writers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Publishes `next`: readers that take a snapshot from now on see it.
    /// The lock is held only to swap the pointer.
    pub fn publish(&self, _writing: &Writing<'_>, next: Snapshot) {
        let next = Arc::new(next);
        let old = std::mem::replace(&mut *self.published.write().unwrap_or_else(|p| p.into_inner()), next);
        // The old snapshot is freed, if no reader holds it, after the lock
        // is released.
        drop(old);
    }
}
