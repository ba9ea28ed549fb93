//! A read-only view of logs, as trace and verdict code sees them.
//!
//! The same trace and verdict functions run on a node (over its store) and
//! offline (over an evidence bundle): both implement [`View`]. A
//! [`Recorder`] wraps a view and notes every record it hands out, which is
//! how a node knows what to put in a bundle so that the offline verdict sees
//! exactly what the online one saw.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Mutex, MutexGuard};

use crate::entry::Entry;
use crate::event::{self, IndexKey, ValidEvent};
use crate::hash::{EntryHash, LogId};
use crate::merkle::Hash;
use crate::pb;
use crate::registry::Registry;

/// Where a record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    pub log: LogId,
    pub seq: u64,
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.log, self.seq)
    }
}

/// A record: an entry, its hash and its decoded event.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: RecordId,
    pub entry: Entry,
    pub hash: EntryHash,
    /// `None` when the stored event bytes do not decode (a corrupt or forged
    /// entry); the verdict reports it.
    pub event: Option<ValidEvent>,
}

impl Record {
    pub fn new(log: LogId, entry: Entry) -> Record {
        let hash = entry.hash();
        Record::with_hash(log, entry, hash)
    }

    /// [`Record::new`] for an entry whose hash the caller has (a store
    /// hashes the bytes it read); `hash` must be the entry's.
    pub fn with_hash(log: LogId, entry: Entry, hash: EntryHash) -> Record {
        debug_assert!(entry.hash() == hash, "a record's hash is its entry's");
        let event = event::decode_stored(&entry.event);
        Record { id: RecordId { log, seq: entry.seq }, entry, hash, event }
    }

    /// The reference other records use to name this one.
    pub fn reference(&self) -> pb::RecordRef {
        pb::RecordRef { log_id: self.id.log.0.to_vec(), seq: self.id.seq, entry_hash: self.hash.0.to_vec() }
    }

    /// `<log id>/<seq>/<entry hash>`, the form evidence is cited in.
    pub fn cite(&self) -> String {
        format!("{}/{}/{}", self.id.log, self.id.seq, self.hash)
    }

    pub fn body(&self) -> Option<&pb::event::Body> {
        self.event.as_ref().and_then(|e| e.body())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ViewError(pub String);

/// The proof material for a record: the signed checkpoint of its log and an
/// inclusion proof of the record in it.
#[derive(Debug, Clone)]
pub struct Proven {
    pub checkpoint_note: String,
    pub tree_size: u64,
    pub path: Vec<Hash>,
}

/// `Sync`, so a trace can expand a level of records on several threads.
pub trait View: Sync {
    /// Record `id`, if the view has it.
    fn record(&self, id: RecordId) -> Result<Option<Record>, ViewError>;
    /// Records under an index key, across every log, ascending; at most
    /// `limit` (more are cut off, and the caller is told by getting `limit`).
    fn lookup(&self, key: &IndexKey, limit: usize) -> Result<Vec<RecordId>, ViewError>;
    /// The checkpoint and inclusion proof for a record.
    fn proof(&self, id: RecordId) -> Result<Option<Proven>, ViewError>;
    /// The registry (organisations, keys, blacklist) of the view's logs.
    fn registry(&self) -> &Registry;
    /// The date "now" is, for status checks ("YYYY-MM-DD").
    fn today(&self) -> crate::ids::Date;
    /// Logs in the view.
    fn logs(&self) -> Vec<LogId>;
    /// Evidence that `log` showed two histories.
    fn equivocations(&self, _log: &LogId) -> Vec<pb::Equivocation> {
        Vec::new()
    }
    /// Records some correction in the view names as its target, valid or
    /// not: a hint that lets a trace skip looking up the corrections of
    /// every other record. `None` (the default) when the view cannot tell
    /// or more than `limit` corrections would have to be listed.
    fn correction_targets(&self, _limit: usize) -> Result<Option<HashSet<RecordId>>, ViewError> {
        Ok(None)
    }
}

/// Wraps a view and remembers every record and lookup it served.
pub struct Recorder<'a, V: View + ?Sized> {
    inner: &'a V,
    touched: Mutex<BTreeSet<RecordId>>,
}

impl<'a, V: View + ?Sized> Recorder<'a, V> {
    pub fn new(inner: &'a V) -> Self {
        Recorder { inner, touched: Mutex::new(BTreeSet::new()) }
    }

    /// Every record served so far, by `record` or among `lookup` results.
    pub fn touched(&self) -> BTreeSet<RecordId> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeSet<RecordId>> {
        // Inserting ids cannot leave the set half-updated.
        self.touched.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<V: View + ?Sized> View for Recorder<'_, V> {
    fn record(&self, id: RecordId) -> Result<Option<Record>, ViewError> {
        let record = self.inner.record(id)?;
        if record.is_some() {
            self.lock().insert(id);
        }
        Ok(record)
    }

    fn lookup(&self, key: &IndexKey, limit: usize) -> Result<Vec<RecordId>, ViewError> {
        let ids = self.inner.lookup(key, limit)?;
        self.lock().extend(ids.iter().copied());
        Ok(ids)
    }

    fn proof(&self, id: RecordId) -> Result<Option<Proven>, ViewError> {
        self.inner.proof(id)
    }

    fn registry(&self) -> &Registry {
        self.inner.registry()
    }

    fn today(&self) -> crate::ids::Date {
        self.inner.today()
    }

    fn logs(&self) -> Vec<LogId> {
        self.inner.logs()
    }

    fn equivocations(&self, log: &LogId) -> Vec<pb::Equivocation> {
        self.inner.equivocations(log)
    }

    fn correction_targets(&self, limit: usize) -> Result<Option<HashSet<RecordId>>, ViewError> {
        self.inner.correction_targets(limit)
    }
}

/// A view over records held in memory: what an evidence bundle opens into.
/// Lookups are answered from the index keys of the records it holds.
pub struct MemView {
    records: BTreeMap<RecordId, Record>,
    equivocations: BTreeMap<LogId, Vec<pb::Equivocation>>,
    index: BTreeMap<Vec<u8>, BTreeSet<RecordId>>,
    /// Records a held correction names as its target.
    correction_targets: HashSet<RecordId>,
    proofs: BTreeMap<RecordId, Proven>,
    registry: Registry,
    today: crate::ids::Date,
}

impl MemView {
    pub fn new(registry: Registry, today: crate::ids::Date) -> Self {
        MemView {
            records: BTreeMap::new(),
            equivocations: BTreeMap::new(),
            index: BTreeMap::new(),
            correction_targets: HashSet::new(),
            proofs: BTreeMap::new(),
            registry,
            today,
        }
    }

    pub fn insert(&mut self, record: Record, proof: Option<Proven>) {
        let id = record.id;
        if let Some(event) = &record.event {
            let mut keys = event::index_keys(&event.event);
            keys.push(IndexKey::Signer(record.entry.signer));
            for key in keys {
                if let IndexKey::Corrects(log, seq) = key {
                    self.correction_targets.insert(RecordId { log, seq });
                }
                self.index.entry(index_bytes(&key)).or_default().insert(id);
            }
        }
        if let Some(proof) = proof {
            self.proofs.insert(id, proof);
        }
        self.records.insert(id, record);
    }

    pub fn add_equivocation(&mut self, evidence: pb::Equivocation) {
        if let Ok(log) = LogId::from_slice(&evidence.log_id) {
            self.equivocations.entry(log).or_default().push(evidence);
        }
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

/// A total order on index keys for the in-memory index.
fn index_bytes(key: &IndexKey) -> Vec<u8> {
    format!("{key:?}").into_bytes()
}

impl View for MemView {
    fn record(&self, id: RecordId) -> Result<Option<Record>, ViewError> {
        Ok(self.records.get(&id).cloned())
    }

    fn lookup(&self, key: &IndexKey, limit: usize) -> Result<Vec<RecordId>, ViewError> {
        Ok(self.index.get(&index_bytes(key)).map(|ids| ids.iter().take(limit).copied().collect()).unwrap_or_default())
    }

    fn proof(&self, id: RecordId) -> Result<Option<Proven>, ViewError> {
        Ok(self.proofs.get(&id).cloned())
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn today(&self) -> crate::ids::Date {
        self.today
    }

    fn logs(&self) -> Vec<LogId> {
        let logs: BTreeSet<LogId> = self.records.keys().map(|id| id.log).collect();
        logs.into_iter().collect()
    }

    fn equivocations(&self, log: &LogId) -> Vec<pb::Equivocation> {
        self.equivocations.get(log).cloned().unwrap_or_default()
    }

    fn correction_targets(&self, limit: usize) -> Result<Option<HashSet<RecordId>>, ViewError> {
        Ok((self.correction_targets.len() <= limit).then(|| self.correction_targets.clone()))
    }
}
