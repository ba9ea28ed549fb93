//! The index follower: the derived keys of a log written behind the log.
//!
//! An append writes only the log part (entries, Merkle hashes, checkpoint).
//! Everything a lookup needs — `H` entry hash → seq, `D` dedup key → seq
//! (own logs only), both as sorted runs ([`crate::runs`]), and the packed
//! postings `P` ([`crate::postings`]) — is derived from the entries by one
//! background thread per log, woken by appends, which reads the entries from
//! its watermark in batches of up to [`BATCH`], decodes their events and
//! writes the step's hash and dedup runs, its postings and the new watermark
//! `W` (the next sequence number to index) in ONE sled batch, then merges
//! runs when enough have gathered.
//!
//! The index keys live in their own sled database (the store's `DIR.index`,
//! one tree per log), so that an append's flush writes the log part only:
//! sled flushes a whole database, and with one database every append's
//! flush also wrote the follower's index pages (measured: durable appends
//! of 64 entries ran at 26,000 entries/s while the follower ran, 90,000
//! with it paused).
//!
//! Durability: the follower never flushes its index database. sled applies a
//! batch atomically (every key of it or none is visible, also after a
//! crash), and its log recovers writes in the order they were made: after a
//! crash the index tree holds the state of some prefix of the applied
//! batches. The index keys of a batch and its watermark therefore survive
//! or vanish together, and the follower resumes from the durable
//! watermark, re-deriving what was lost. The follower indexes only entries
//! already durable in the log database ([`Shared::durable`]; when the log
//! holds entries appended without a flush, the follower flushes the log
//! first), so a surviving watermark never covers a lost entry even though
//! the two databases recover independently. (sled 0.34 documents atomic
//! batches and flush-for-durability; the in-order recovery is how its
//! log-structured pagecache recovers, and the crash integration test kills a
//! node during indexing to check the result against a rebuild.) An index
//! database that is lost or deleted is rebuilt from the log: its watermark
//! reads as 0.
//!
//! Exact deduplication without a synchronous dedup record: entries at or
//! above the watermark (the not-yet-indexed tail) have their dedup key in
//! the in-memory [`Shared::tail`] map, and entries below it have their
//! record in a dedup run ([`crate::runs`]). The append inserts the tail
//! items after its batch is applied and before the follower may see the new
//! head; the follower removes tail items only after the sled batch holding
//! their run is applied AND the run is installed in the in-memory run set.
//! [`Shared::duplicate_of`] looks in the tail FIRST and in the runs second:
//! if the lookup in the tail misses an entry, the entry was removed from the
//! tail before that lookup, so its run was installed before it too, and the
//! run lookup that follows finds it. (Looking in the runs first would race:
//! they could miss it just before the follower's install, and the tail miss
//! it just after.) A merge replaces runs under the set's write lock, and a
//! lookup holds the read lock throughout, so a lookup sees the old runs or
//! the new, never neither. At load the tail is rebuilt from the entries
//! `[watermark, head)`. Mirrored logs have no dedup: no dedup runs, no
//! tail.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qtrace_ledger::entry::Entry;
use qtrace_ledger::event::{self, IndexKey};
use qtrace_ledger::hash::{EntryHash, LogId, dedup_key};
use rayon::prelude::*;

use crate::codec::Codec;
use crate::postings::{self, Blocks, OpenBlock};
use crate::runs::{self, Family, Runs};
use crate::{ENTRY, Result, Sink, StoreError, Trees, key, reclaim, seq_from_value};

pub(crate) const HASH: u8 = b'H';
pub(crate) const DEDUP: u8 = b'D';
/// The watermark: the next sequence number the follower indexes.
pub(crate) const WATERMARK: u8 = b'W';

/// Most entries the follower indexes in one sled batch.
pub const BATCH: u64 = 8_192;
/// Steps of at least this many entries decode their events on every core.
const PARALLEL_DECODE: u64 = 4_096;
/// Default for [`Limits::max_lag`]: entries appended and not yet indexed
/// beyond which appends are refused ([`StoreError::IndexBehind`]). At the
/// follower's rate (README "Performance") this is a few seconds of work, and
/// it bounds the memory of the dedup tail (about 100 bytes an entry; a log
/// opened further behind is indexed before it opens, [`Shared::load`]).
pub const MAX_INDEX_LAG: u64 = 262_144;
/// A log opened with more entries than this past its watermark is indexed
/// before it opens (the dedup tail would hold them all); small in tests so
/// they reach it.
#[cfg(not(test))]
const LOAD_CATCH_UP: u64 = MAX_INDEX_LAG;
#[cfg(test)]
const LOAD_CATCH_UP: u64 = 16;
/// Default for [`Limits::read_wait`]: how long an index read waits for the
/// follower before it answers [`StoreError::IndexLag`].
pub const INDEX_WAIT: Duration = Duration::from_secs(10);

/// The follower's bounds, settable per log ([`crate::LogStore::set_limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_lag: u64,
    pub read_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_lag: MAX_INDEX_LAG, read_wait: INDEX_WAIT }
    }
}

/// What the follower thread is asked to do.
#[derive(Default)]
struct Wake {
    pending: bool,
    paused: bool,
    stop: bool,
}

/// The state a log and its follower thread share.
pub(crate) struct Shared {
    /// The log's tree (entries), read by the follower.
    pub tree: sled::Tree,
    /// How the log's entries are stored ([`crate::codec`]); its follower
    /// trains the dictionary.
    pub codec: Codec,
    /// The log database, flushed before entries not yet durable are indexed.
    log_db: sled::Db,
    /// The log's index tree (`H`, `D`, `P`, `W`), in the index database.
    pub index: sled::Tree,
    pub log_id: LogId,
    /// Own log: dedup keys are kept (tail and `D`).
    pub own: bool,
    /// Entries in the tree the follower may index (the head's size, set
    /// after the append's batch is applied and its tail items inserted).
    published: AtomicU64,
    /// Entries known to be durable in the log database (flushed); the
    /// follower indexes none beyond it.
    durable: AtomicU64,
    /// The watermark: the first `indexed` entries are indexed. Read without
    /// a lock (a read of an indexed snapshot, nearly every read, learns so
    /// for free); moved only under `indexed_lock`, which waiters on
    /// `indexed_changed` hold, so none misses a move.
    indexed: AtomicU64,
    indexed_lock: Mutex<()>,
    indexed_changed: Condvar,
    wake: Mutex<Wake>,
    woken: Condvar,
    /// Dedup key → seq of the entries at or above the watermark.
    tail: Mutex<HashMap<[u8; 32], u64>>,
    /// Entry hash → seq of the entries below the watermark ([`runs`]).
    pub hashes: Runs,
    /// Dedup key → seq of the entries below the watermark (own log; a
    /// mirror's stays empty).
    pub dedups: Runs,
    /// Held while index keys are written (a follower step, a rebuild), so
    /// only one writer of derived keys runs at a time.
    work: Mutex<()>,
    limits: Mutex<Limits>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every value behind these locks is replaced whole, never left half
    // updated by a panic.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The stored watermark of a tree (0 when none was written).
pub(crate) fn stored_watermark(tree: &sled::Tree) -> Result<u64> {
    tree.get([WATERMARK])?.map(|v| seq_from_value(&v)).transpose().map(|w| w.unwrap_or(0))
}

impl Shared {
    /// The follower state of a log whose head is `size`: the watermark from
    /// the tree and, for an own log, the dedup tail rebuilt from the entries
    /// `[watermark, size)`.
    pub fn load(trees: &Trees, log_id: LogId, own: bool, size: u64) -> Result<Arc<Shared>> {
        let tree = trees.log.clone();
        // What the log database recovered at open may include writes no
        // flush made durable (a process that died between an append's
        // batch and its flush); flushed now, everything up to `size` is.
        trees.db.flush()?;
        let watermark = stored_watermark(&trees.index)?;
        if watermark > size {
            // Entries are never removed and the watermark only moves past
            // stored ones: the log lost its end (or the watermark is damaged).
            let lost = if watermark - size == 1 {
                format!("entry {size} was indexed but is")
            } else {
                format!("entries {size} to {} were indexed but are", watermark - 1)
            };
            return Err(StoreError::Corrupt(format!(
                "{lost} missing from the log, which holds {size} entries (the log was cut short, or its \
                 index watermark {watermark} is damaged)"
            )));
        }
        let hashes = Runs::load(&trees.index, Family::Hash, watermark)?;
        let dedups = if own { Runs::load(&trees.index, Family::Dedup, watermark)? } else { Runs::empty(Family::Dedup) };
        let shared = Arc::new(Shared {
            codec: Codec::load(&tree)?,
            tree,
            log_db: trees.db.clone(),
            index: trees.index.clone(),
            hashes,
            dedups,
            log_id,
            own,
            published: AtomicU64::new(size),
            // Flushed above: everything the log holds is durable.
            durable: AtomicU64::new(size),
            indexed: AtomicU64::new(watermark),
            indexed_lock: Mutex::new(()),
            indexed_changed: Condvar::new(),
            wake: Mutex::new(Wake { pending: watermark < size, ..Wake::default() }),
            woken: Condvar::new(),
            tail: Mutex::new(HashMap::new()),
            work: Mutex::new(()),
            limits: Mutex::new(Limits::default()),
        });
        // The dedup tail holds the entries past the watermark, about 100
        // bytes each. After a migration or a lost index database that is
        // the whole log, so a lag beyond the appends' bound is indexed
        // here, before the log is handed out (nothing can append or ask
        // for a duplicate yet), and the tail stays within the bound.
        if own && size - watermark > LOAD_CATCH_UP {
            tracing::info!(log = %log_id, entries = size - watermark, "indexing the log before opening it");
            shared.catch_up()?;
        }
        if own {
            let from = key(ENTRY, &shared.indexed().to_be_bytes());
            let to = key(ENTRY, &size.to_be_bytes());
            let mut tail = lock(&shared.tail);
            for kv in shared.tree.range(from..to) {
                let (k, v) = kv?;
                let entry = shared.codec.decode(crate::seq_from_key(&k)?, &v)?;
                tail.insert(dedup_key(&entry.signer, &entry.event), entry.seq);
            }
        }
        Ok(shared)
    }

    /// The state of a log whose follower state is not read (a rebuild that
    /// writes it afresh).
    pub fn new_empty(trees: &Trees, log_id: LogId, own: bool) -> Result<Arc<Shared>> {
        Ok(Arc::new(Shared {
            codec: Codec::load(&trees.log)?,
            tree: trees.log.clone(),
            log_db: trees.db.clone(),
            index: trees.index.clone(),
            hashes: Runs::empty(Family::Hash),
            dedups: Runs::empty(Family::Dedup),
            log_id,
            own,
            published: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            indexed: AtomicU64::new(0),
            indexed_lock: Mutex::new(()),
            indexed_changed: Condvar::new(),
            wake: Mutex::new(Wake::default()),
            woken: Condvar::new(),
            tail: Mutex::new(HashMap::new()),
            work: Mutex::new(()),
            limits: Mutex::new(Limits::default()),
        }))
    }

    pub fn indexed(&self) -> u64 {
        self.indexed.load(Ordering::Acquire)
    }

    /// Moves the watermark readers wait on (the caller then notifies).
    fn set_indexed(&self, to: u64) {
        let _moving = lock(&self.indexed_lock);
        self.indexed.store(to, Ordering::Release);
    }

    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    pub fn limits(&self) -> Limits {
        *lock(&self.limits)
    }

    pub fn set_limits(&self, limits: Limits) {
        *lock(&self.limits) = limits;
    }

    /// Entries appended and not yet indexed.
    pub fn lag(&self) -> u64 {
        self.published().saturating_sub(self.indexed())
    }

    /// Called by an append after its batch is applied: remembers the new
    /// entries' dedup keys (own log: each with its sequence number), then
    /// lets the follower see them.
    pub fn appended(&self, dedups: Vec<([u8; 32], u64)>, size: u64) {
        if !dedups.is_empty() {
            lock(&self.tail).extend(dedups);
        }
        self.published.store(size, Ordering::Release);
        let mut wake = lock(&self.wake);
        wake.pending = true;
        self.woken.notify_all();
    }

    /// After a flush of the log database that followed the append of the
    /// first `size` entries: they are durable.
    pub fn made_durable(&self, size: u64) {
        self.durable.fetch_max(size, Ordering::AcqRel);
    }

    /// Entries durable in the log database, flushing it first when entries
    /// below `needed` are not known to be.
    fn durable(&self, needed: u64) -> Result<u64> {
        let known = self.durable.load(Ordering::Acquire);
        if known >= needed {
            return Ok(known);
        }
        let published = self.published();
        self.log_db.flush()?;
        self.made_durable(published);
        Ok(self.durable.load(Ordering::Acquire))
    }

    /// The sequence of an earlier entry with this dedup key: the tail first,
    /// then sled (the order matters, see the module documentation).
    pub fn duplicate_of(&self, dedup: &[u8; 32]) -> Result<Option<u64>> {
        if !self.own {
            return Ok(None);
        }
        if let Some(seq) = lock(&self.tail).get(dedup) {
            return Ok(Some(*seq));
        }
        for seq in self.dedups.candidates(&self.index, dedup)? {
            let entry = self.entry(seq)?;
            if dedup_key(&entry.signer, &entry.event) == *dedup {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// The sequence number of the indexed entry with this hash: the hash
    /// runs' candidates, confirmed against the entries.
    pub fn seq_of(&self, hash: &EntryHash) -> Result<Option<u64>> {
        for seq in self.hashes.candidates(&self.index, &hash.0)? {
            if self.entry(seq)?.hash() == *hash {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// A stored entry an index names; its absence is damage.
    fn entry(&self, seq: u64) -> Result<Entry> {
        let bytes = self
            .tree
            .get(key(ENTRY, &seq.to_be_bytes()))?
            .ok_or_else(|| StoreError::Corrupt(format!("the indexes name entry {seq}, which is not stored")))?;
        self.codec.decode(seq, &bytes)
    }

    /// Waits until the first `size` entries (at most the head) are indexed,
    /// for at most `timeout`.
    pub fn wait_indexed(&self, size: u64, timeout: Duration) -> Result<()> {
        let size = size.min(self.published());
        if self.indexed() >= size {
            return Ok(());
        }
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = lock(&self.indexed_lock);
        while self.indexed() < size {
            let left = deadline.map_or(Duration::from_secs(3_600), |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Err(StoreError::IndexLag { indexed: self.indexed(), size });
            }
            guard = self.indexed_changed.wait_timeout(guard, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        Ok(())
    }

    /// [`Shared::wait_indexed`] with the log's read bound.
    pub fn wait_for_read(&self, size: u64) -> Result<()> {
        if self.indexed() >= size.min(self.published()) {
            return Ok(());
        }
        self.wait_indexed(size, self.limits().read_wait)
    }

    /// Refuses an append while the follower lags more than the bound.
    pub fn check_lag(&self) -> Result<()> {
        let lag = self.lag();
        if lag > self.limits().max_lag {
            return Err(StoreError::IndexBehind { lag });
        }
        Ok(())
    }

    /// Waits (up to the read bound) until the lag is within the bound: the
    /// push-back for mirrored logs, whose writer is a background task.
    pub fn wait_lag(&self) -> Result<()> {
        let limits = self.limits();
        let published = self.published();
        match self.wait_indexed(published.saturating_sub(limits.max_lag), limits.read_wait) {
            Err(StoreError::IndexLag { indexed, .. }) => Err(StoreError::IndexBehind { lag: published - indexed }),
            other => other,
        }
    }

    /// Indexes every entry appended before the call, in this thread.
    pub fn catch_up(&self) -> Result<()> {
        let target = self.published();
        while self.indexed() < target {
            self.step(BATCH)?;
        }
        Ok(())
    }

    /// Indexes up to `max` entries from the watermark in one sled batch.
    /// Returns how many it indexed.
    pub fn step(&self, max: u64) -> Result<u64> {
        let _work = lock(&self.work);
        let from = self.indexed();
        let to = self.published().min(from.saturating_add(max));
        if to <= from {
            return Ok(0);
        }
        // Never index an entry a crash could still take from the log.
        let to = to.min(self.durable(to)?);
        if to <= from {
            return Ok(0);
        }
        if self.codec.wants_training(to) {
            self.codec.train(&self.tree, &self.log_db, to)?;
        }
        let mut raw = Vec::with_capacity((to - from) as usize);
        for kv in self.tree.range(key(ENTRY, &from.to_be_bytes())..key(ENTRY, &to.to_be_bytes())) {
            let (k, v) = kv?;
            raw.push((crate::seq_from_key(&k)?, v));
        }
        // A catch-up (a long lag: after a restart, a migration, a mirror's
        // first sync) decodes on every core; in step with the appends it
        // decodes in this thread, leaving the other cores to the request
        // path (measured: durable appends of 64 entries ran at 25,000
        // entries/s beside a follower decoding on rayon, 35,600 beside one
        // decoding alone).
        let derive_one =
            |(seq, bytes): &(u64, sled::IVec)| derive(&self.codec, *seq, bytes, self.own, Some(&self.log_id));
        let derived: Vec<Derived> = if to - from >= PARALLEL_DECODE {
            raw.par_iter().map(derive_one).collect::<Result<Vec<_>>>()?
        } else {
            raw.iter().map(derive_one).collect::<Result<Vec<_>>>()?
        };
        let mut batch = IndexBatch::new(self.own);
        for (expected, d) in (from..).zip(derived) {
            if d.seq != expected {
                return Err(StoreError::Corrupt(format!("entry {expected} is missing (found {})", d.seq)));
            }
            batch.add(d);
        }
        if batch.len() as u64 != to - from {
            return Err(StoreError::Corrupt(format!("entries {from}..{to} are not all stored")));
        }
        // The hash and dedup records go into runs; the batch writes the rest.
        let dedups = std::mem::take(&mut batch.dedups);
        let mut sled_batch = sled::Batch::default();
        let hash_records =
            std::mem::take(&mut batch.hashes).iter().map(|(h, seq)| (runs::prefix_of(&h.0), *seq)).collect();
        let (hash_run, hash_keys) = self.hashes.prepare(from, to, hash_records)?;
        let mut keys = hash_keys.len();
        for (k, v) in hash_keys {
            sled_batch.insert(k, v);
        }
        let dedup_run = if self.own {
            let records = dedups.iter().map(|(d, seq)| (runs::prefix_of(d), *seq)).collect();
            let (run, dedup_keys) = self.dedups.prepare(from, to, records)?;
            keys += dedup_keys.len();
            for (k, v) in dedup_keys {
                sled_batch.insert(k, v);
            }
            Some(run)
        } else {
            None
        };
        keys += batch.write(&self.index, &mut sled_batch, to)?;
        let applied = self.index.apply_batch(sled_batch);
        reclaim(keys);
        applied?;
        // The runs become visible before the tail lets go of the entries.
        self.hashes.install(hash_run);
        if let Some(run) = dedup_run {
            self.dedups.install(run);
        }
        if self.own {
            let mut tail = lock(&self.tail);
            for (dedup, seq) in &dedups {
                if tail.get(dedup) == Some(seq) {
                    tail.remove(dedup);
                }
            }
        }
        self.set_indexed(to);
        self.indexed_changed.notify_all();
        self.hashes.merge(&self.index)?;
        if self.own {
            self.dedups.merge(&self.index)?;
        }
        Ok(to - from)
    }

    /// After a rebuild wrote every index key of the first `indexed`
    /// entries (the caller holds [`Shared::work_lock`] and the append lock):
    /// no entry is in the tail any more.
    pub fn rebuilt(&self, indexed: u64) {
        lock(&self.tail).clear();
        self.set_indexed(indexed);
        self.indexed_changed.notify_all();
    }

    pub fn work_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.work)
    }

    /// The thread's loop: index while there is work, sleep when there is
    /// none. A failed step is logged and retried with backoff; the lag (and
    /// so the readers' IndexLag and the appends' IndexBehind) tells the
    /// operator that indexing is stuck.
    fn run(&self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            {
                let mut wake = lock(&self.wake);
                while !wake.stop && (wake.paused || !wake.pending) {
                    wake = self.woken.wait(wake).unwrap_or_else(|p| p.into_inner());
                }
                if wake.stop {
                    return;
                }
                wake.pending = false;
            }
            loop {
                if lock(&self.wake).stop || lock(&self.wake).paused {
                    break;
                }
                match self.step(BATCH) {
                    Ok(0) => break,
                    Ok(_) => backoff = Duration::from_millis(100),
                    Err(error) => {
                        tracing::error!(log = %self.log_id, %error, indexed = self.indexed(),
                            "indexing failed; retrying in {backoff:?}");
                        let wake = lock(&self.wake);
                        if wake.stop {
                            return;
                        }
                        drop(self.woken.wait_timeout(wake, backoff).unwrap_or_else(|p| p.into_inner()));
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    pub fn set_paused(&self, paused: bool) {
        let mut wake = lock(&self.wake);
        wake.paused = paused;
        wake.pending = true;
        self.woken.notify_all();
    }
}

/// The follower thread of one log, stopped and joined when dropped.
pub(crate) struct Follower {
    pub shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    pub fn start(shared: Arc<Shared>) -> Result<Follower> {
        let runner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("qtrace-follower".into())
            .spawn(move || runner.run())
            .map_err(|e| StoreError::Corrupt(format!("starting the index follower: {e}")))?;
        Ok(Follower { shared, thread: Some(thread) })
    }

    /// No thread: the log is opened only to be rebuilt.
    pub fn idle(shared: Arc<Shared>) -> Follower {
        Follower { shared, thread: None }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        {
            let mut wake = lock(&self.shared.wake);
            wake.stop = true;
            self.shared.woken.notify_all();
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(log = %self.shared.log_id, "the index follower panicked");
        }
    }
}

/// What one entry contributes to the indexes.
pub(crate) struct Derived {
    seq: u64,
    hash: EntryHash,
    dedup: Option<[u8; 32]>,
    /// Postings prefixes (`P ‖ index key`) of its index keys and signer.
    postings: Vec<Vec<u8>>,
}

/// Derives one stored entry's index contributions. An entry whose bytes do
/// not decode is an error (the log is damaged); an entry whose event does
/// not decode gets its hash and dedup keys but no index keys, and is
/// reported when `report` names the log.
pub(crate) fn derive(codec: &Codec, seq: u64, bytes: &[u8], own: bool, report: Option<&LogId>) -> Result<Derived> {
    let entry = codec.decode(seq, bytes)?;
    let keys = index_keys_of(&entry, report);
    Ok(derived_of(&entry, &entry.hash(), &keys, own))
}

/// The index keys of a stored entry. An entry whose event does not decode
/// is listed under [`IndexKey::Registry`] only, so the registry rebuild,
/// which reads every registry record, meets it and fails loudly naming it
/// instead of building a registry without it.
pub(crate) fn index_keys_of(entry: &Entry, report: Option<&LogId>) -> Vec<IndexKey> {
    match event::decode_event(&entry.event) {
        Ok(valid) => event::index_keys(&valid.event),
        Err(error) => {
            if let Some(log) = report {
                tracing::error!(%log, seq = entry.seq, %error,
                    "a stored entry's event does not decode; indexed by hash and as a registry record only");
            }
            vec![IndexKey::Registry]
        }
    }
}

pub(crate) fn derived_of(entry: &Entry, hash: &EntryHash, index_keys: &[IndexKey], own: bool) -> Derived {
    let signer = IndexKey::Signer(entry.signer);
    let postings = index_keys.iter().chain([&signer]).map(postings_prefix).collect();
    Derived { seq: entry.seq, hash: *hash, dedup: own.then(|| dedup_key(&entry.signer, &entry.event)), postings }
}

/// `P ‖ index key`: the postings prefix of an index key.
pub(crate) fn postings_prefix(index: &IndexKey) -> Vec<u8> {
    let mut k = crate::index_prefix(index);
    k[0] = postings::POSTINGS;
    k
}

/// The index keys of a run of consecutive entries, written at once.
pub(crate) struct IndexBatch {
    own: bool,
    hashes: Vec<(EntryHash, u64)>,
    dedups: Vec<([u8; 32], u64)>,
    postings: BTreeMap<Vec<u8>, Vec<u64>>,
}

impl IndexBatch {
    pub fn new(own: bool) -> Self {
        IndexBatch { own, hashes: Vec::new(), dedups: Vec::new(), postings: BTreeMap::new() }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn add(&mut self, derived: Derived) {
        self.hashes.push((derived.hash, derived.seq));
        if let Some(dedup) = derived.dedup.filter(|_| self.own) {
            self.dedups.push((dedup, derived.seq));
        }
        for prefix in derived.postings {
            let seqs = self.postings.entry(prefix).or_default();
            // An event naming the same key twice is posted once.
            if seqs.last() != Some(&derived.seq) {
                seqs.push(derived.seq);
            }
        }
    }

    /// The hash and dedup records as derived-state listing keys
    /// ([`runs::listing_key`]).
    pub fn run_listing(&self) -> Vec<Vec<u8>> {
        let hashes = self.hashes.iter().map(|(h, seq)| runs::listing_key(Family::Hash, runs::prefix_of(&h.0), *seq));
        let dedups = self.dedups.iter().map(|(d, seq)| runs::listing_key(Family::Dedup, runs::prefix_of(d), *seq));
        hashes.chain(dedups).collect()
    }

    /// Writes the batch's postings and the watermark `watermark` to `sink`,
    /// extending the open blocks found in `blocks`; returns the number of
    /// keys written. (Its hash and dedup records go into runs.)
    pub fn write(self, blocks: &impl Blocks, sink: &mut impl Sink, watermark: u64) -> Result<usize> {
        let mut keys = 0;
        for (prefix, seqs) in self.postings {
            let open_key = postings::open_key(&prefix);
            let mut open = match blocks.get(&open_key)? {
                Some(value) => postings::decode_open(&value, &|| {
                    format!("open postings block of index key {:?}", String::from_utf8_lossy(&prefix[1..]))
                })?,
                None => OpenBlock::default(),
            };
            if let (Some(&last), Some(&first)) = (open.seqs.last(), seqs.first())
                && first <= last
            {
                return Err(StoreError::Corrupt(format!(
                    "index key {:?} already holds entry {last}, at or past {first} which is being indexed",
                    String::from_utf8_lossy(&prefix[1..])
                )));
            }
            for (ordinal, value) in postings::push(&mut open, &seqs) {
                sink.insert(postings::block_key(&prefix, ordinal), value);
                keys += 1;
            }
            sink.insert(open_key, postings::encode_open(&open));
            keys += 1;
        }
        sink.insert(vec![WATERMARK], watermark.to_be_bytes().to_vec());
        Ok(keys + 1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;

    use qtrace_ledger::ids::Gtin;
    use qtrace_ledger::testkit::{GTIN_FORMULA, Who};
    use tempfile::TempDir;

    use super::*;
    use crate::tests::{appended, new_entries, ok, sample_log, sign};
    use crate::{LogStore, NewEntry, SledStore};

    /// Every index key of `new` with its entries, from the events.
    fn expected_postings(new: &[NewEntry]) -> BTreeMap<IndexKey, Vec<u64>> {
        let mut expected: BTreeMap<IndexKey, Vec<u64>> = BTreeMap::new();
        for n in new {
            for key in index_keys_of(&n.entry, None).into_iter().chain([IndexKey::Signer(n.entry.signer)]) {
                let seqs = expected.entry(key).or_default();
                if seqs.last() != Some(&n.entry.seq) {
                    seqs.push(n.entry.seq);
                }
            }
        }
        expected
    }

    fn paused(store: &SledStore, new: &[NewEntry]) -> LogStore {
        let logs = ok(store.log(crate::tests::log_id_of(new)));
        logs.set_follower_paused(true);
        logs
    }

    fn dup(logs: &LogStore, n: &NewEntry) -> Option<u64> {
        ok(logs.duplicate_of(&n.entry.signer, &n.entry.event))
    }

    #[test]
    fn entries_are_stored_compressed_once_the_follower_has_trained_a_dictionary() {
        let at = crate::codec::TRAIN_AT as usize;
        let new = new_entries(&sample_log(at + 300).entries);
        let dir = ok(TempDir::new().map_err(|e| StoreError::Corrupt(e.to_string())));
        let store = ok(SledStore::open(dir.path()));
        let logs = paused(&store, &new);
        ok(logs.append(&new[..at - 1], true, sign));
        ok(logs.catch_up());
        assert!(!logs.follower.shared.codec.has_dictionary(), "not before TRAIN_AT entries");
        ok(logs.append(&new[at - 1..at + 100], true, sign));
        ok(logs.catch_up());
        assert!(logs.follower.shared.codec.has_dictionary(), "trained once TRAIN_AT entries are durable");
        ok(logs.append(&new[at + 100..], true, sign));
        let stored = |seq: u64| ok(logs.tree.get(key(ENTRY, &seq.to_be_bytes())).map_err(StoreError::from));
        let (mut raw_bytes, mut stored_bytes) = (0, 0);
        for n in &new {
            let value = stored(n.entry.seq).unwrap_or_else(|| panic!("entry {} stored", n.entry.seq));
            let bytes = n.entry.encode();
            if n.entry.seq < at as u64 + 100 {
                assert_eq!(value.as_ref(), &bytes[..], "entry {} written before the dictionary", n.entry.seq);
            } else {
                assert_ne!(value.as_ref(), &bytes[..], "entry {} written after it", n.entry.seq);
                raw_bytes += bytes.len();
                stored_bytes += value.len();
            }
            assert_eq!(ok(logs.entry(n.entry.seq)).as_ref(), Some(&n.entry));
        }
        assert!(stored_bytes * 2 < raw_bytes, "{stored_bytes} bytes stored for {raw_bytes}");
        ok(logs.catch_up());
        // Indexes and lookups read the compressed entries as any other.
        assert!(ok(logs.live_derived()) == ok(logs.derived_from_entries()));
        let last = &new[new.len() - 1];
        assert_eq!(ok(logs.seq_of(&last.hash)), Some(last.entry.seq));
        assert_eq!(dup(&logs, last), Some(last.entry.seq));
        drop(logs);
        drop(store);
        // Reopened: the dictionary is durable, every entry reads back.
        let store = ok(SledStore::open(dir.path()));
        let logs = ok(store.log(crate::tests::log_id_of(&new)));
        let read: Vec<Entry> = ok(logs.range(0, u64::MAX).collect::<Result<Vec<_>>>());
        assert!(read.iter().eq(new.iter().map(|n| &n.entry)));
        ok(logs.rebuild_derived());
        assert!(ok(logs.live_derived()) == ok(logs.derived_from_entries()));
    }

    #[test]
    fn duplicates_are_found_in_the_tail_and_after_indexing() {
        let new = new_entries(&sample_log(50).entries);
        let store = ok(SledStore::temporary());
        let logs = paused(&store, &new);
        ok(logs.append(&new[..30], true, sign));
        // (state, entries indexed, tail size)
        let check = |state: &str, indexed: u64, tail: usize| {
            assert_eq!(logs.indexed(), indexed, "{state}");
            assert_eq!(lock(&logs.follower.shared.tail).len(), tail, "{state}");
            for n in &new[..30] {
                assert_eq!(dup(&logs, n), Some(n.entry.seq), "{state}: entry {}", n.entry.seq);
            }
            for n in &new[30..] {
                assert_eq!(dup(&logs, n), None, "{state}: entry {} is not appended", n.entry.seq);
            }
        };
        check("all in the tail", 0, 30);
        assert_eq!(ok(logs.follower.shared.step(12)), 12);
        check("partly indexed", 12, 18);
        ok(logs.catch_up());
        check("all indexed", 30, 0);
        assert!(ok(logs.live_derived()) == ok(logs.derived_from_entries()));
    }

    #[test]
    fn duplicates_stay_findable_while_the_follower_runs() {
        // One writer appends in small batches while the follower indexes
        // and a reader keeps asking for every entry appended so far: each
        // must be found, in the tail or in sled, at every moment.
        let new = new_entries(&sample_log(600).entries);
        let store = ok(SledStore::temporary());
        let logs = ok(store.log(crate::tests::log_id_of(&new)));
        let done = AtomicBool::new(false);
        let checks = std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut checks = 0u64;
                while !done.load(Ordering::Acquire) {
                    let size = logs.head().size as usize;
                    for n in new[..size].iter().rev().take(64) {
                        assert_eq!(dup(&logs, n), Some(n.entry.seq), "entry {} of {size}", n.entry.seq);
                        checks += 1;
                    }
                }
                checks
            });
            let mut start = 0;
            for size in [1usize, 2, 5, 1, 7, 3].into_iter().cycle() {
                if start >= new.len() {
                    break;
                }
                let end = (start + size).min(new.len());
                ok(logs.append(&new[start..end], false, sign));
                start = end;
            }
            done.store(true, Ordering::Release);
            reader.join().unwrap_or_else(|_| panic!("the reader failed"))
        });
        assert!(checks > 0);
        ok(logs.wait_indexed(600, INDEX_WAIT));
        assert_eq!(lock(&logs.follower.shared.tail).len(), 0);
        for n in &new {
            assert_eq!(dup(&logs, n), Some(n.entry.seq));
        }
        assert!(ok(logs.live_derived()) == ok(logs.derived_from_entries()));
    }

    #[test]
    fn the_follower_resumes_from_its_watermark_after_a_crash() {
        let new = new_entries(&sample_log(70).entries);
        let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
        {
            let store = ok(SledStore::open(dir.path()));
            let logs = paused(&store, &new);
            ok(logs.append(&new[..40], true, sign));
            assert_eq!(ok(logs.follower.shared.step(25)), 25);
            ok(store.flush());
            // Dropped here with 15 entries not indexed: what a crash leaves.
        }
        let store = ok(SledStore::open(dir.path()));
        let index = ok(store
            .index_db
            .open_tree(format!("log/{}", crate::tests::log_id_of(&new).to_hex()))
            .map_err(StoreError::from));
        assert_eq!(ok(stored_watermark(&index)), 25, "the durable watermark");
        let logs = paused(&store, &new);
        assert_eq!(logs.indexed(), 25);
        // The tail is rebuilt from the entries past the watermark.
        assert_eq!(lock(&logs.follower.shared.tail).len(), 15);
        for n in &new[..40] {
            assert_eq!(dup(&logs, n), Some(n.entry.seq), "entry {}", n.entry.seq);
        }
        logs.set_follower_paused(false);
        ok(logs.append(&new[40..], true, sign));
        ok(logs.wait_indexed(70, INDEX_WAIT));
        // Nothing indexed twice, nothing missed.
        assert!(ok(logs.live_derived()) == ok(logs.derived_from_entries()));
        for (key, seqs) in expected_postings(&new) {
            assert_eq!(ok(logs.lookup(&key, None, usize::MAX)), seqs, "{key:?}");
        }
    }

    #[test]
    fn the_follower_indexes_only_durable_entries_and_a_lost_index_is_rebuilt() {
        let new = new_entries(&sample_log(50).entries);
        let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
        {
            let store = ok(SledStore::open(dir.path()));
            let logs = paused(&store, &new);
            ok(logs.append(&new[..10], true, sign));
            assert_eq!(logs.follower.shared.durable.load(Ordering::Acquire), 10, "a durable append");
            ok(logs.append(&new[10..30], false, sign));
            assert_eq!(logs.follower.shared.durable.load(Ordering::Acquire), 10, "not flushed yet");
            // Indexing entries 10..30 first makes them durable in the log.
            assert_eq!(ok(logs.follower.shared.step(100)), 30);
            assert_eq!(logs.follower.shared.durable.load(Ordering::Acquire), 30);
            ok(store.flush());
        }
        // The index database is lost: the log rebuilds it from the entries.
        ok(std::fs::remove_dir_all(crate::index_dir(dir.path())).map_err(|e| StoreError::Corrupt(e.to_string())));
        let store = ok(SledStore::open(dir.path()));
        let logs = ok(store.log(crate::tests::log_id_of(&new)));
        // 30 entries past a watermark of 0, more than LOAD_CATCH_UP: indexed
        // while opening, so the dedup tail holds none of them.
        assert_eq!((logs.indexed(), lock(&logs.follower.shared.tail).len()), (30, 0));
        for n in &new[..30] {
            assert_eq!(dup(&logs, n), Some(n.entry.seq), "entry {} from the rebuilt indexes", n.entry.seq);
        }
        ok(logs.append(&new[30..], true, sign));
        ok(logs.wait_indexed(50, INDEX_WAIT));
        assert!(ok(logs.live_derived()) == ok(logs.derived_from_entries()));
        for (key, seqs) in expected_postings(&new) {
            assert_eq!(ok(logs.lookup(&key, None, usize::MAX)), seqs, "{key:?}");
        }
    }

    #[test]
    fn appends_are_refused_while_indexing_lags_and_reads_wait() {
        let new = new_entries(&sample_log(40).entries);
        let store = ok(SledStore::temporary());
        let logs = paused(&store, &new);
        logs.set_limits(Limits { max_lag: 10, read_wait: Duration::from_millis(30) });
        // Within the bound before the append: accepted, even past it after.
        ok(logs.append(&new[..12], true, sign));
        let before = logs.head();
        match logs.append(&new[12..13], true, sign) {
            Err(StoreError::IndexBehind { lag: 12 }) => {}
            other => panic!("an append past the lag bound: {other:?}"),
        }
        assert_eq!((logs.head(), ok(logs.entry(12))), (before, None), "the refused append wrote nothing");
        let gtin = IndexKey::Gtin(Gtin::parse(GTIN_FORMULA).unwrap_or_else(|e| panic!("{e}")));
        type Read<'a> = Box<dyn Fn() -> Result<()> + 'a>;
        let reads: Vec<(&str, Read)> = vec![
            ("lookup", Box::new(|| logs.lookup(&gtin, None, 10).map(drop))),
            ("seq_of", Box::new(|| logs.seq_of(&new[3].hash).map(drop))),
            ("correction_targets", Box::new(|| logs.correction_targets(12, 10).map(drop))),
            ("wait_indexed", Box::new(|| logs.wait_indexed(5, Duration::from_millis(1)))),
        ];
        for (name, read) in &reads {
            match read() {
                Err(StoreError::IndexLag { indexed: 0, size }) => {
                    assert!(size == 12 || size == 5, "{name}: {size}");
                }
                other => panic!("{name} with the follower stopped: {other:?}"),
            }
        }
        // A read of a snapshot the follower has covered does not wait.
        assert_eq!(ok(logs.follower.shared.step(4)), 4);
        assert_eq!(
            ok(logs.lookup_at(4, &gtin, None, 10)),
            expected_postings(&new[..4]).remove(&gtin).unwrap_or_default()
        );
        assert!(matches!(logs.lookup_at(5, &gtin, None, 10), Err(StoreError::IndexLag { indexed: 4, size: 5 })));
        logs.set_follower_paused(false);
        ok(logs.wait_indexed(12, INDEX_WAIT));
        for (name, read) in &reads {
            assert!(read().is_ok(), "{name} once indexed");
        }
        ok(logs.append(&new[12..], true, sign));
    }

    #[test]
    fn mirrored_logs_keep_no_dedup_keys() {
        let new = new_entries(&sample_log(30).entries);
        let store = ok(SledStore::temporary());
        let mirror = ok(store.mirror(crate::tests::log_id_of(&new)));
        ok(mirror.append_mirrored(&new[..20], None));
        ok(mirror.append_mirrored(&new[20..], Some("note".into())));
        ok(mirror.wait_indexed(30, INDEX_WAIT));
        for n in &new {
            assert_eq!(dup(&mirror, n), None, "entry {}", n.entry.seq);
            assert_eq!(ok(mirror.seq_of(&n.hash)), Some(n.entry.seq));
        }
        let live = ok(mirror.live_derived());
        assert!(!live.iter().any(|(k, _)| k[0] == DEDUP), "a mirror lists dedup records");
        for prefix in [runs::RUN_META, runs::RUN_BLOCK] {
            assert_eq!(mirror.follower.shared.index.scan_prefix([prefix, b'd']).count(), 0, "a mirror has dedup runs");
            assert!(mirror.follower.shared.index.scan_prefix([prefix, b'h']).count() > 0, "a mirror has hash runs");
        }
        assert!(live == ok(mirror.derived_from_entries()));
        for (key, seqs) in expected_postings(&new) {
            assert_eq!(ok(mirror.lookup(&key, None, usize::MAX)), seqs, "{key:?}");
        }
    }

    #[test]
    fn lookups_page_over_many_sealed_blocks() {
        let (_store, logs, new) = appended(2_600);
        ok(logs.wait_indexed(2_600, INDEX_WAIT));
        let expected = expected_postings(&new);
        let gtin = IndexKey::Gtin(Gtin::parse(GTIN_FORMULA).unwrap_or_else(|e| panic!("{e}")));
        let all = &expected[&gtin];
        assert!(all.len() > 2 * postings::BLOCK, "{} postings: fewer than two sealed blocks", all.len());
        let sealed = logs.index.scan_prefix(follower_key(&gtin)).count() - 1;
        assert_eq!(sealed, all.len() / postings::BLOCK);
        for (key, seqs) in &expected {
            assert_eq!(&ok(logs.lookup(key, None, usize::MAX)), seqs, "{key:?}");
        }
        for limit in [1usize, 100, 1_023, 1_024, 1_025, 5_000] {
            let mut pages = Vec::new();
            let mut after = None;
            loop {
                let page = ok(logs.lookup(&gtin, after, limit));
                assert!(page.len() <= limit);
                let Some(&last) = page.last() else { break };
                pages.extend_from_slice(&page);
                after = Some(last);
            }
            assert_eq!(&pages, all, "pages of {limit}");
        }
        for after in [all[1_023], all[1_024], all[2_047] + 1, all[all.len() - 1]] {
            let want: Vec<u64> = all.iter().copied().filter(|&s| s > after).take(7).collect();
            assert_eq!(ok(logs.lookup(&gtin, Some(after), 7)), want, "after {after}");
        }
        // A snapshot below the head lists nothing past it.
        let cut = all[1_500];
        let want: Vec<u64> = all.iter().copied().filter(|&s| s < cut).collect();
        assert_eq!(ok(logs.lookup_at(cut, &gtin, None, usize::MAX)), want);
        let fresh = ok(logs.derived_from_entries());
        assert!(ok(logs.live_derived()) == fresh, "the follower's blocks equal a derivation in one go");
    }

    fn follower_key(index: &IndexKey) -> Vec<u8> {
        postings_prefix(index)
    }

    #[test]
    fn a_rebuild_while_nothing_is_indexed_restores_everything() {
        let new = new_entries(&sample_log(20).entries);
        let store = ok(SledStore::temporary());
        let logs = paused(&store, &new);
        ok(logs.append(&new, true, sign));
        ok(logs.rebuild_derived());
        assert_eq!((logs.indexed(), lock(&logs.follower.shared.tail).len()), (20, 0));
        for n in &new {
            assert_eq!(dup(&logs, n), Some(n.entry.seq));
            assert_eq!(ok(logs.seq_of(&n.hash)), Some(n.entry.seq));
        }
        assert_eq!(Who::Log.public(), new[0].entry.signer);
    }
}
