//! The sled store: one sled tree per log, written only through a few
//! high-level operations.
//!
//! A log's tree in the store's database holds the log part, and a tree of
//! the same name in the index database beside it (`DIR.index`) holds the
//! indexes, under one-byte prefixes:
//!
//! | prefix | key                         | value                  | kind    | database |
//! |--------|-----------------------------|------------------------|---------|----------|
//! | `E`    | seq (u64 BE)                | entry bytes, or one zstd frame of them ([`codec`]) | primary | log |
//! | `C`    | tree size (u64 BE)          | signed checkpoint note | primary | log      |
//! | `Z`    | (none)                      | the log's zstd dictionary ([`codec`]) | primary | log |
//! | `T`    | tile level (u8) ‖ index (u64 BE) | up to 256 hashes (C2SP tile) | derived | log |
//! | `M`,`R`| family ‖ run id (‖ block)  | runs of `H` entry hash → seq and `D` SHA-256(signer ‖ event) → seq (own log only), see [`runs`] | index | index |
//! | `P`    | index key ‖ block (u32 BE)  | packed postings        | index   | index    |
//! | `W`    | (none)                      | next seq to index      | index   | index    |
//!
//! Every append goes through [`LogStore::append`], which writes the entries,
//! the Merkle hashes and the new signed checkpoint in one sled batch (sled
//! applies a batch atomically: after a crash the tree holds all of it or
//! none of it) and then flushes. The Merkle hashes are C2SP tlog-tiles
//! ([`tiles`](crate::tiles)); the `meta` tree's `layout` key says which
//! layout the store has ([`migrate`](crate::migrate)). The index keys
//! follow: the log's follower thread ([`follower`]) derives them from the
//! entries in large batches, each with its watermark `W`, into the index
//! database, which an append's flush does not write; index reads wait
//! for it ([`LogStore::wait_indexed`]). Postings are packed, up to 1,024
//! sequence numbers per sled value ([`postings`]). Derived keys can be
//! dropped and rebuilt from the `E` entries alone
//! ([`LogStore::rebuild_derived`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use qtrace_ledger::entry::{Entry, EntryError};
use qtrace_ledger::event::IndexKey;
pub use qtrace_ledger::hash::dedup_key;
use qtrace_ledger::hash::{EntryHash, LogId};
use qtrace_ledger::merkle::{self, Hash, NodeId, NodeSource};
use qtrace_ledger::tiles::TileCache;
use rayon::prelude::*;

#[cfg(any(test, feature = "legacy-fixture"))]
pub mod legacy;
pub mod migrate;
mod tiles;
pub use migrate::{LAYOUT, MigrateProgress, MigrateStep, MigrateSummary};
use tiles::{Frontier, TILE};

mod codec;
mod follower;
mod postings;
mod runs;

pub use codec::TRAIN_AT as DICTIONARY_TRAIN_AT;
pub use follower::{BATCH as INDEX_BATCH, INDEX_WAIT, Limits, MAX_INDEX_LAG};
use follower::{DEDUP, Follower, HASH, IndexBatch, Shared, WATERMARK};

const ENTRY: u8 = b'E';
/// Appends of at least this many entries make their stored values on
/// every core.
const PARALLEL_ENCODE: usize = 32;
const CHECKPOINT: u8 = b'C';
/// The first byte of [`index_prefix`]; stored postings keys start with `P`
/// instead.
const INDEX: u8 = b'I';

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("append out of order: expected sequence {expected}, got {found}")]
    Sequence { expected: u64, found: u64 },
    #[error("append breaks the chain at sequence {seq}")]
    Chain { seq: u64 },
    #[error("{0}")]
    Entry(#[from] EntryError),
    #[error("tree size {requested} is larger than the log ({size} entries)")]
    BeyondLog { requested: u64, size: u64 },
    #[error("merkle: {0}")]
    Merkle(String),
    #[error("signing the checkpoint for {size} entries: {reason}")]
    Checkpoint { size: u64, reason: String },
    /// The store was written by an earlier layout (per-node Merkle keys and
    /// synchronous indexes) and has no `layout` marker.
    #[error(
        "the store in {store} has an old layout (layout {layout}, this build reads layout {LAYOUT}); \
         upgrade it in place with `qtrace-node migrate --data {data}`",
        store = .store.display(), data = .data_dir.display()
    )]
    OldLayout { store: std::path::PathBuf, layout: u8, data_dir: std::path::PathBuf },
    /// The `layout` marker names a layout this build does not read.
    #[error("the store's layout marker is {found:?}; this build reads layout {LAYOUT} only")]
    UnknownLayout { found: Vec<u8> },
    /// An index read waited its bound for the follower and gave up.
    #[error(
        "indexing lags (索引滞后): {indexed} of the {size} entries this read must cover are indexed, \
         {} behind; retry shortly",
        size - indexed
    )]
    IndexLag { indexed: u64, size: u64 },
    /// An append was refused because the follower lags beyond the bound.
    #[error("indexing lags {lag} entries behind the log (索引滞后), beyond the bound; retry shortly")]
    IndexBehind { lag: u64 },
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// sled's page cache when none is given: 512 MiB (sled's own default is
/// 1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 512 << 20;

/// The index database gets this fraction (1 / divisor) of the page cache,
/// the log database the rest: half each. Measured in one session with a
/// 64 MiB cache at 1,000,000 entries, giving the indexes a quarter raised
/// the resolver's rate (16 clients: 3,790–4,014 → 4,414–5,121 verdicts/s)
/// but slowed the follower (47,300–50,800 → 34,900–45,100 entries/s,
/// below its 40,000 target in one run); a third fell between, within the
/// machine's run-to-run spread.
pub const INDEX_CACHE_DIVISOR: u64 = 2;

/// The sled databases holding every log this node keeps: the logs
/// (entries, tiles, checkpoints, and the `meta` tree) in one, their
/// indexes in another beside it, so that an append's flush writes the log
/// part only and never waits for index pages (see [`follower`]).
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    index_db: sled::Db,
}

/// The index database's directory beside the store's: `DIR.index`.
pub fn index_dir(dir: &Path) -> std::path::PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".index");
    std::path::PathBuf::from(name)
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// sled takes an exclusive advisory lock on the directory. When a
    /// handle on the same directory was dropped a moment ago in this
    /// process, sled's background threads may still hold that lock
    /// (spacejam/sled#1234, #1289), so a lock conflict is retried for up to
    /// two seconds before it is reported; any other error is reported at
    /// once. Another process holding the store still gets the error.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`SledStore::open`] with sled's page cache set to `cache_bytes`, for
    /// reads and not yet flushed writes. sled treats it as a target, not a
    /// cap, and keeps bookkeeping for every page of the store besides
    /// (about 100 bytes per entry held, README "Memory").
    ///
    /// A store with logs but no layout marker has the old layout and is
    /// refused ([`StoreError::OldLayout`], naming `qtrace-node migrate`); a
    /// store without logs gets the marker of the current layout.
    /// The cache is shared half and half between the log database and the
    /// index database (`DIR.index`, [`index_dir`]; see
    /// [`INDEX_CACHE_DIVISOR`]).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self> {
        let index_cache = cache_bytes / INDEX_CACHE_DIVISOR;
        let db = open_db(dir, cache_bytes - index_cache)?;
        migrate::check_or_mark(&db, dir)?;
        let index_db = open_db(&index_dir(dir), index_cache)?;
        Ok(SledStore { db, index_db })
    }

    /// A temporary store, removed when dropped (tests and benchmarks).
    pub fn temporary() -> Result<Self> {
        let db = sled::Config::new().temporary(true).open()?;
        migrate::check_or_mark(&db, Path::new("(temporary)"))?;
        let index_db = sled::Config::new().temporary(true).open()?;
        Ok(SledStore { db, index_db })
    }

    /// Opens (or creates) the tree of this node's own log, loads its head
    /// and starts its index follower. Own logs keep dedup keys.
    pub fn log(&self, log_id: LogId) -> Result<LogStore> {
        LogStore::load(self.trees(log_id)?, log_id, true)
    }

    /// The log's tree and its index tree.
    fn trees(&self, log_id: LogId) -> Result<Trees> {
        let name = format!("log/{}", log_id.to_hex());
        Ok(Trees { db: self.db.clone(), log: self.db.open_tree(&name)?, index: self.index_db.open_tree(&name)? })
    }

    /// [`SledStore::log`] for a log mirrored from a peer: no dedup keys
    /// (nothing is submitted to a mirror).
    pub fn mirror(&self, log_id: LogId) -> Result<LogStore> {
        LogStore::load(self.trees(log_id)?, log_id, false)
    }

    /// Drops and rebuilds the derived keys of this node's own log from its
    /// entries, without loading the log's head (which reads derived Merkle
    /// nodes).
    pub fn rebuild_derived(&self, log_id: LogId) -> Result<()> {
        let trees = self.trees(log_id)?;
        let head = Head { size: 0, last_hash: EntryHash(log_id.0), root: merkle::empty_root() };
        // The follower state is not loaded either: its watermark may be
        // what is damaged. The rebuild writes a fresh one.
        let shared = Shared::new_empty(&trees, log_id, true)?;
        let log = LogStore {
            db: trees.db,
            tree: trees.log,
            index: trees.index,
            log_id,
            head: Mutex::new((head, Frontier::default())),
            follower: Follower::idle(shared),
            tile_trees: TileCache::new(),
        };
        log.rebuild_derived()
    }

    /// The ids of every log in the store.
    pub fn logs(&self) -> Result<Vec<LogId>> {
        let mut logs = Vec::new();
        for name in self.db.tree_names() {
            if let Some(hex) = name.strip_prefix(b"log/")
                && let Ok(text) = std::str::from_utf8(hex)
                && let Ok(id) = LogId::from_hex(text)
            {
                logs.push(id);
            }
        }
        Ok(logs)
    }

    /// Flushes every write to disk (logs first, then indexes).
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        self.index_db.flush()?;
        Ok(())
    }

    /// A small key-value space for node state that is not part of any log
    /// (federation bookkeeping, equivocation evidence).
    pub fn meta(&self) -> Result<Meta> {
        Ok(Meta(self.db.open_tree("meta")?))
    }

    /// Bytes the store occupies on disk, logs and indexes.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()? + self.index_db.size_on_disk()?)
    }
}

/// Node state outside the logs: durable small values under byte keys.
#[derive(Clone)]
pub struct Meta(sled::Tree);

impl Meta {
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(key)?.map(|v| v.to_vec()))
    }

    /// Stores a value durably (flushed before returning).
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.0.insert(key, value)?;
        self.0.flush()?;
        Ok(())
    }

    /// Every key and value under `prefix`, in key order.
    pub fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.0
            .scan_prefix(prefix)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(StoreError::from))
            .collect()
    }
}

/// See [`LogStore::index_footprint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexFootprint {
    pub sled_keys: u64,
    /// Bytes of the index tree's keys and values: what sled holds live,
    /// before its own overhead and the garbage it has not yet reclaimed.
    pub live_bytes: u64,
    pub hash_runs: usize,
    pub dedup_runs: usize,
}

/// An entry ready to be appended: sequenced and linked by the caller.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub entry: Entry,
    pub hash: EntryHash,
}

/// The state at the end of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    /// Hash of the last entry; for an empty log, the log id.
    pub last_hash: EntryHash,
    pub root: Hash,
}

/// A log's tree in the log database and its index tree (same name) in the
/// index database.
pub(crate) struct Trees {
    pub db: sled::Db,
    pub log: sled::Tree,
    pub index: sled::Tree,
}

/// One log's tree. Reads may run concurrently; appends are serialised.
pub struct LogStore {
    db: sled::Db,
    tree: sled::Tree,
    /// The log's indexes (hash and dedup runs, `P`, `W`), in the index
    /// database.
    index: sled::Tree,
    log_id: LogId,
    head: Mutex<(Head, Frontier)>,
    follower: Follower,
    /// The inner nodes of recently read tiles, shared by every proof.
    tile_trees: TileCache,
}

impl LogStore {
    fn load(trees: Trees, log_id: LogId, own: bool) -> Result<Self> {
        let tree = trees.log.clone();
        let size = match tree.scan_prefix([ENTRY]).next_back() {
            None => 0,
            Some(kv) => {
                let (key, _) = kv?;
                seq_from_key(&key)? + 1
            }
        };
        let range = Frontier::load(&tree, size)?;
        let last_hash = EntryHash(tiles::last_leaf(&tree, log_id, size)?);
        let head = Head { size, last_hash, root: range.root() };
        let follower = Follower::start(Shared::load(&trees, log_id, own, size)?)?;
        Ok(LogStore {
            db: trees.db,
            tree,
            index: trees.index,
            log_id,
            head: Mutex::new((head, range)),
            follower,
            tile_trees: TileCache::new(),
        })
    }

    pub fn log_id(&self) -> LogId {
        self.log_id
    }

    pub fn head(&self) -> Head {
        self.lock().0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Head, Frontier)> {
        // A panic while holding the lock cannot leave the head half-updated:
        // it is replaced only after the batch is applied.
        self.head.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends sequenced entries and the checkpoint `sign` makes for the new
    /// head, in one atomic batch, then flushes when `durable`. `sign` gets
    /// the new size and root and returns the signed checkpoint note; if it
    /// fails, nothing is written ([`StoreError::Checkpoint`]). While the
    /// follower lags more than [`Limits::max_lag`] entries, the append is
    /// refused and nothing is written ([`StoreError::IndexBehind`]).
    pub fn append<E: std::fmt::Display>(
        &self,
        entries: &[NewEntry],
        durable: bool,
        sign: impl FnOnce(u64, &Hash) -> std::result::Result<String, E>,
    ) -> Result<Head> {
        self.follower.shared.check_lag()?;
        self.append_inner(entries, durable, |size, root| {
            sign(size, root).map(Some).map_err(|e| StoreError::Checkpoint { size, reason: e.to_string() })
        })
    }

    /// Appends entries of a log mirrored from a peer. `checkpoint` is the
    /// peer's signed note for the new size, when the batch ends at one; the
    /// caller has verified the entries and the root. While the follower lags
    /// more than [`Limits::max_lag`] entries, waits for it (up to
    /// [`Limits::read_wait`], then [`StoreError::IndexBehind`]).
    pub fn append_mirrored(&self, entries: &[NewEntry], checkpoint: Option<String>) -> Result<Head> {
        self.follower.shared.wait_lag()?;
        self.append_inner(entries, true, |_, _| Ok(checkpoint))
    }

    fn append_inner(
        &self,
        entries: &[NewEntry],
        durable: bool,
        sign: impl FnOnce(u64, &Hash) -> Result<Option<String>>,
    ) -> Result<Head> {
        // Each entry's hash checked and its stored value made (compressed
        // once the log has a dictionary, about 1.5 µs an entry) before the
        // head is locked, on every core for a batch of some size.
        // The dedup keys of an own log's entries are made there too.
        let shared = &self.follower.shared;
        let value = |new: &NewEntry| {
            let bytes = new.entry.encode();
            if merkle::leaf_hash(&bytes) != new.hash.0 {
                return Err(StoreError::Corrupt(format!(
                    "entry {} was given a hash that is not its own",
                    new.entry.seq
                )));
            }
            let dedup = shared.own.then(|| dedup_key(&new.entry.signer, &new.entry.event));
            Ok((shared.codec.encode(bytes), dedup))
        };
        let values: Vec<(Vec<u8>, Option<[u8; 32]>)> = if entries.len() >= PARALLEL_ENCODE {
            entries.par_iter().map(value).collect::<Result<_>>()?
        } else {
            entries.iter().map(value).collect::<Result<_>>()?
        };
        let mut dedups = Vec::with_capacity(if shared.own { entries.len() } else { 0 });
        let mut guard = self.lock();
        let (head, range) = &mut *guard;
        let mut new_range = range.clone();
        let mut batch = sled::Batch::default();
        let mut expected_seq = head.size;
        let mut prev = head.last_hash;
        for (new, (value, dedup)) in entries.iter().zip(values) {
            let entry = &new.entry;
            if entry.seq != expected_seq {
                return Err(StoreError::Sequence { expected: expected_seq, found: entry.seq });
            }
            if entry.prev_hash != prev {
                return Err(StoreError::Chain { seq: entry.seq });
            }
            let seq_key = entry.seq.to_be_bytes();
            batch.insert(key(ENTRY, &seq_key), value);
            dedups.extend(dedup.map(|d| (d, entry.seq)));
            new_range.append(new.hash.0)?;
            prev = new.hash;
            expected_seq += 1;
        }
        let new_head = Head { size: expected_seq, last_hash: prev, root: new_range.root() };
        // Each tile the batch touched, once.
        for (k, v) in new_range.drain() {
            batch.insert(k, v);
        }
        if let Some(note) = sign(new_head.size, &new_head.root)? {
            batch.insert(key(CHECKPOINT, &new_head.size.to_be_bytes()), note.into_bytes());
        }
        let keys = batch_len(entries);
        let applied = self.tree.apply_batch(batch);
        reclaim(keys);
        applied?;
        // The batch is in the tree now, durable or not: the head moves with
        // it, so a failed flush followed by a retry cannot reuse sequence
        // numbers.
        *head = new_head;
        *range = new_range;
        shared.appended(dedups, new_head.size);
        if durable {
            self.db.flush()?;
            self.follower.shared.made_durable(new_head.size);
        }
        Ok(new_head)
    }

    /// Flushes every write of the store to disk (after a failed flush, to
    /// make what reached the tree durable before anything is acknowledged).
    pub fn flush(&self) -> Result<()> {
        let size = self.head().size;
        self.db.flush()?;
        self.follower.shared.made_durable(size);
        Ok(())
    }

    /// Stores a checkpoint note for `size` (a re-signed or cosigned one).
    pub fn put_checkpoint(&self, size: u64, note: &str) -> Result<()> {
        self.tree.insert(key(CHECKPOINT, &size.to_be_bytes()), note.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    pub fn checkpoint(&self, size: u64) -> Result<Option<String>> {
        self.tree
            .get(key(CHECKPOINT, &size.to_be_bytes()))?
            .map(|v| {
                String::from_utf8(v.to_vec())
                    .map_err(|_| StoreError::Corrupt(format!("checkpoint {size} is not UTF-8")))
            })
            .transpose()
    }

    /// The newest stored checkpoint and its size.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>> {
        match self.tree.scan_prefix([CHECKPOINT]).next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                let size = seq_from_key(&k)?;
                let note = String::from_utf8(v.to_vec())
                    .map_err(|_| StoreError::Corrupt(format!("checkpoint {size} is not UTF-8")))?;
                Ok(Some((size, note)))
            }
        }
    }

    /// Sizes of all stored checkpoints, ascending.
    pub fn checkpoint_sizes(&self) -> Result<Vec<u64>> {
        self.tree.scan_prefix([CHECKPOINT]).keys().map(|k| seq_from_key(&k?)).collect()
    }

    /// [`LogStore::entry`] with the entry's hash, taken from the bytes
    /// read rather than by encoding the entry again.
    pub fn entry_hashed(&self, seq: u64) -> Result<Option<(Entry, EntryHash)>> {
        match self.tree.get(key(ENTRY, &seq.to_be_bytes()))? {
            None => Ok(None),
            Some(bytes) => Ok(Some(self.follower.shared.codec.decode_hashed(seq, &bytes)?)),
        }
    }

    pub fn entry(&self, seq: u64) -> Result<Option<Entry>> {
        match self.tree.get(key(ENTRY, &seq.to_be_bytes()))? {
            None => Ok(None),
            Some(bytes) => Ok(Some(self.follower.shared.codec.decode(seq, &bytes)?)),
        }
    }

    /// The sequence number of the entry with this hash, among the entries
    /// appended before the call (waits for the follower to index them).
    pub fn seq_of(&self, hash: &EntryHash) -> Result<Option<u64>> {
        self.follower.shared.wait_for_read(self.head().size)?;
        self.follower.shared.seq_of(hash)
    }

    /// The sequence of an earlier entry with the same signer and event bytes
    /// (own log; a mirrored log keeps no dedup keys and answers `None`).
    /// Exact without waiting: the not-yet-indexed tail is kept in memory.
    pub fn duplicate_of(&self, signer: &[u8; 32], event: &[u8]) -> Result<Option<u64>> {
        self.follower.shared.duplicate_of(&dedup_key(signer, event))
    }

    /// The index watermark: the first `indexed()` entries are indexed.
    pub fn indexed(&self) -> u64 {
        self.follower.shared.indexed()
    }

    /// How the log's indexes are held: sled keys in the index tree
    /// (postings blocks, run blocks and metas, the watermark) and runs of
    /// the hash and dedup indexes. Counts every key: for benchmarks and
    /// audits, not for a hot path.
    pub fn index_footprint(&self) -> IndexFootprint {
        let shared = &self.follower.shared;
        let live_bytes = self.index.iter().flatten().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        IndexFootprint {
            sled_keys: self.index.len() as u64,
            live_bytes,
            hash_runs: shared.hashes.run_count(),
            dedup_runs: shared.dedups.run_count(),
        }
    }

    /// Keys in the log tree (entries, tiles, checkpoints, the dictionary).
    /// Counts every key: for benchmarks and audits.
    pub fn log_keys(&self) -> u64 {
        self.tree.len() as u64
    }

    /// Bytes of the log tree's keys and values (entries as stored, tiles,
    /// checkpoints, the dictionary): what sled holds live for the log part.
    /// Reads every key: for benchmarks and audits.
    pub fn log_live_bytes(&self) -> u64 {
        self.tree.iter().flatten().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }

    /// Entries appended and not yet indexed.
    pub fn index_lag(&self) -> u64 {
        self.follower.shared.lag()
    }

    /// Waits until the first `size` entries (at most the head) are indexed,
    /// for at most `timeout`; past it, [`StoreError::IndexLag`].
    pub fn wait_indexed(&self, size: u64, timeout: Duration) -> Result<()> {
        self.follower.shared.wait_indexed(size, timeout)
    }

    /// Indexes, in the calling thread, every entry appended before the call
    /// (at start, before the registry is read from a mirror's index).
    pub fn catch_up(&self) -> Result<()> {
        self.follower.shared.catch_up()
    }

    pub fn limits(&self) -> Limits {
        self.follower.shared.limits()
    }

    pub fn set_limits(&self, limits: Limits) {
        self.follower.shared.set_limits(limits);
    }

    /// Stops (or resumes) the follower thread, for benchmarks and tests that
    /// measure or provoke a lag. Reads still wait, and [`LogStore::catch_up`]
    /// still indexes.
    pub fn set_follower_paused(&self, paused: bool) {
        self.follower.shared.set_paused(paused);
    }

    /// Trains the log's compression dictionary now, when it has none and
    /// holds at least [`DICTIONARY_TRAIN_AT`] durable entries; whether it
    /// has one afterwards. The follower does this on its own; this is for
    /// benchmarks that build a log with the follower paused.
    pub fn train_dictionary(&self) -> Result<bool> {
        let shared = &self.follower.shared;
        // The head before the work lock, as everywhere else (the rebuild
        // takes them in that order); entries appended meanwhile are only
        // left out of the samples.
        let size = self.head().size;
        let _work = shared.work_lock();
        self.db.flush()?;
        if shared.codec.wants_training(size) {
            shared.codec.train(&self.tree, &self.db, size)?;
        }
        Ok(shared.codec.has_dictionary())
    }

    /// Entries `from .. to` in order.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = Result<Entry>> + '_ {
        self.tree.range(key(ENTRY, &from.to_be_bytes())..key(ENTRY, &to.to_be_bytes())).map(|kv| {
            let (k, v) = kv?;
            self.follower.shared.codec.decode(seq_from_key(&k)?, &v)
        })
    }

    /// Sequence numbers of entries under an index key, ascending, starting
    /// after `after` (exclusive) when given, at most `limit`, among the
    /// entries appended before the call (waits for the follower to index
    /// them).
    pub fn lookup(&self, index: &IndexKey, after: Option<u64>, limit: usize) -> Result<Vec<u64>> {
        self.lookup_at(self.head().size, index, after, limit)
    }

    /// [`LogStore::lookup`] among the first `size` entries: waits until the
    /// follower has indexed them (bounded, [`StoreError::IndexLag`]) and
    /// lists none at or past `size`.
    pub fn lookup_at(&self, size: u64, index: &IndexKey, after: Option<u64>, limit: usize) -> Result<Vec<u64>> {
        self.follower.shared.wait_for_read(size)?;
        let prefix = follower::postings_prefix(index);
        let mut found = postings::read(&self.index, &prefix, after, limit)?;
        if let Some(cut) = found.iter().position(|&seq| seq >= size) {
            found.truncate(cut);
        }
        Ok(found)
    }

    /// Targets of the correction records in the first `size` entries, as
    /// (target log, target seq): every `Corrects` index key of the log, at
    /// most `limit`. `None` when there are more: the caller then looks
    /// corrections up record by record. A target is listed once per
    /// correction naming it, valid or not; [`qtrace_ledger::trace::corrections_of`]
    /// decides which count. Waits until the follower has indexed `size`
    /// entries (bounded, [`StoreError::IndexLag`]).
    pub fn correction_targets(&self, size: u64, limit: usize) -> Result<Option<Vec<(LogId, u64)>>> {
        self.follower.shared.wait_for_read(size)?;
        let prefix = follower::postings_prefix(&IndexKey::Corrects(LogId([0; 32]), 0));
        let prefix = &prefix[..2];
        let mut out = Vec::new();
        for kv in self.index.scan_prefix(prefix) {
            let (k, v) = kv?;
            // A log id, the target's sequence, then the block ordinal.
            let parts = postings::split_key(&k).and_then(|(index_key, ordinal)| {
                let (log, seq) = index_key[prefix.len()..].split_first_chunk::<32>()?;
                let seq = u64::from_be_bytes(<[u8; 8]>::try_from(seq).ok()?);
                Some((*log, seq, ordinal))
            });
            let Some((log, seq, ordinal)) = parts else {
                return Err(StoreError::Corrupt("correction postings key of the wrong length".into()));
            };
            let what = || format!("correction postings of entry {seq} of log {}", LogId(log));
            let corrections = match ordinal {
                None => postings::decode_open(&v, &what)?.seqs,
                Some(_) => postings::decode_sealed(&v, &what)?,
            };
            for child in corrections {
                if child >= size {
                    continue;
                }
                if out.len() >= limit {
                    return Ok(None);
                }
                out.push((LogId(log), seq));
            }
        }
        Ok(Some(out))
    }

    /// A perfect-subtree hash, from the tile that holds it.
    pub fn node(&self, id: NodeId) -> Result<Hash> {
        tiles::cached_nodes(&self.tree, &self.tile_trees).node(id).map_err(tiles::tile_error)
    }

    /// RFC 6962 root of the first `size` entries.
    pub fn root(&self, size: u64) -> Result<Hash> {
        self.within(size)?;
        merkle::root(&tiles::cached_nodes(&self.tree, &self.tile_trees), size).map_err(tiles::tree_error)
    }

    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>> {
        self.within(size)?;
        merkle::inclusion_proof(&tiles::cached_nodes(&self.tree, &self.tile_trees), seq, size)
            .map_err(tiles::tree_error)
    }

    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
        self.within(new_size)?;
        merkle::consistency_proof(&tiles::cached_nodes(&self.tree, &self.tile_trees), old_size, new_size)
            .map_err(tiles::tree_error)
    }

    fn within(&self, size: u64) -> Result<()> {
        let head = self.head();
        if size > head.size {
            return Err(StoreError::BeyondLog { requested: size, size: head.size });
        }
        Ok(())
    }

    /// Every derived key as it is stored now, once the follower has indexed
    /// every entry appended before the call, for comparison with
    /// [`LogStore::derived_from_entries`].
    pub fn live_derived(&self) -> Result<BTreeSet<(Vec<u8>, Vec<u8>)>> {
        self.catch_up()?;
        let _work = self.follower.shared.work_lock();
        self.stored_derived()
    }

    /// The derived keys stored as sled keys, and the records of the hash
    /// and dedup runs as listing keys (each run checked as it is read).
    fn stored_derived(&self) -> Result<BTreeSet<(Vec<u8>, Vec<u8>)>> {
        let mut out = self.stored_keys()?;
        let shared = &self.follower.shared;
        for listed in shared.hashes.listing(&self.index)?.into_iter().chain(shared.dedups.listing(&self.index)?) {
            out.insert((listed, Vec::new()));
        }
        Ok(out)
    }

    /// The derived keys stored as plain sled keys: the log's tiles, and
    /// every key of its index tree but the runs' (postings, the watermark,
    /// and anything else, which nothing derives: a stray).
    fn stored_keys(&self) -> Result<BTreeSet<(Vec<u8>, Vec<u8>)>> {
        let mut out = self.stored_tiles()?;
        for kv in self.index.iter() {
            let (k, v) = kv?;
            if !matches!(k.first(), Some(&runs::RUN_BLOCK | &runs::RUN_META)) {
                out.insert((k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    fn stored_tiles(&self) -> Result<BTreeSet<(Vec<u8>, Vec<u8>)>> {
        let mut out = BTreeSet::new();
        for kv in self.tree.scan_prefix([TILE]) {
            let (k, v) = kv?;
            out.insert((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Every derived key recomputed from the stored entries alone: what the
    /// follower writes once it has indexed them all, and the Merkle hashes.
    pub fn derived_from_entries(&self) -> Result<BTreeSet<(Vec<u8>, Vec<u8>)>> {
        let mut batch = Derived::default();
        let mut range = Frontier::default();
        let own = self.follower.shared.own;
        let mut index = IndexBatch::new(own);
        for (expected, entry) in (0u64..).zip(self.range(0, u64::MAX)) {
            let entry = entry?;
            // Derived state is only ever rebuilt from a whole log: a gap is
            // damage to the log itself, which nothing may paper over.
            if entry.seq != expected {
                return Err(StoreError::Corrupt(format!("entry {expected} is missing")));
            }
            let hash = entry.hash();
            let keys = follower::index_keys_of(&entry, None);
            index.add(follower::derived_of(&entry, &hash, &keys, own));
            range.append(hash.0)?;
        }
        // Drained once at the end, so each partial tile appears at its
        // final width only.
        for (k, v) in range.drain() {
            batch.insert(k, v);
        }
        let size = index.len() as u64;
        for listed in index.run_listing() {
            batch.insert(listed, Vec::new());
        }
        let no_blocks: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
        index.write(&no_blocks, &mut batch, size)?;
        Ok(batch.0)
    }

    /// Drops every derived key and rebuilds it from the entries. The entries
    /// and checkpoints are not touched.
    pub fn rebuild_derived(&self) -> Result<()> {
        // Hold the append lock so no append interleaves with the rebuild,
        // and the follower's, so no index batch does.
        let mut guard = self.lock();
        let _work = self.follower.shared.work_lock();
        let fresh = self.derived_from_entries()?;
        let indexed =
            fresh.iter().find(|(k, _)| k[..] == [WATERMARK]).map(|(_, v)| seq_from_value(v)).transpose()?.unwrap_or(0);
        // Tiles go to the log's tree, the rest to its index tree: each in
        // one batch, the log's first (the entries are durable already).
        let mut tiles = sled::Batch::default();
        for (k, _) in self.stored_tiles()? {
            tiles.remove(k);
        }
        // Everything in the index tree is derived: it is replaced whole,
        // strays included. Stored runs are not read (they may be what is
        // damaged); the new runs get ids past theirs, are written with the
        // rest, and the old run blocks go only after the new set is in
        // place, so no reader holding the old set meets a missing block.
        let mut indexes = sled::Batch::default();
        let mut old_blocks = Vec::new();
        for k in self.index.iter().keys() {
            let k = k?;
            if k.first() == Some(&runs::RUN_BLOCK) { old_blocks.push(k) } else { indexes.remove(k) }
        }
        let mut keys = fresh.len();
        let (mut hash_records, mut dedup_records) = (Vec::new(), Vec::new());
        for (k, v) in fresh {
            match k.first() {
                Some(&TILE) => tiles.insert(k, v),
                Some(&HASH) => hash_records.push(runs::parse_listing_key(&k)?),
                Some(&DEDUP) => dedup_records.push(runs::parse_listing_key(&k)?),
                _ => indexes.insert(k, v),
            }
        }
        let shared = &self.follower.shared;
        let (hash_runs, hash_keys) = shared.hashes.rebuild(&self.index, indexed, hash_records)?;
        let (dedup_runs, dedup_keys) =
            if shared.own { shared.dedups.rebuild(&self.index, indexed, dedup_records)? } else { Default::default() };
        keys += hash_keys.len() + dedup_keys.len();
        for (k, v) in hash_keys.into_iter().chain(dedup_keys) {
            indexes.insert(k, v);
        }
        let applied = self.tree.apply_batch(tiles);
        reclaim(keys);
        applied?;
        self.db.flush()?;
        let applied = self.index.apply_batch(indexes);
        reclaim(keys);
        applied?;
        shared.hashes.install_all(hash_runs);
        shared.dedups.install_all(dedup_runs);
        let mut blocks = sled::Batch::default();
        let removed = old_blocks.len();
        for k in old_blocks {
            blocks.remove(k);
        }
        let applied = self.index.apply_batch(blocks);
        reclaim(removed);
        applied?;
        self.index.flush()?;
        // The writer's partial tiles may have been loaded from damaged ones.
        guard.1 = Frontier::load(&self.tree, guard.0.size)?;
        self.tile_trees.clear();
        // Every entry is indexed now, so the dedup tail is empty.
        self.follower.shared.rebuilt(indexed);
        Ok(())
    }
}

/// Where derived keys are written: a sled batch, or a set on rebuild.
trait Sink {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>);
}

impl Sink for sled::Batch {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        sled::Batch::insert(self, key, value);
    }
}

#[derive(Default)]
struct Derived(BTreeSet<(Vec<u8>, Vec<u8>)>);

impl Sink for Derived {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.0.insert((key, value));
    }
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

/// The byte prefix of an index key; entries under it follow as seq suffixes.
/// Variable parts (lot, serial, certificate number) end in 0x00, which none
/// of them may contain, so one key is never a prefix of another.
pub fn index_prefix(index: &IndexKey) -> Vec<u8> {
    let mut k = vec![INDEX];
    match index {
        IndexKey::Gtin(g) => {
            k.push(b'g');
            k.extend_from_slice(g.as_str().as_bytes());
        }
        IndexKey::Lot(g, lot) => {
            k.push(b'l');
            k.extend_from_slice(g.as_str().as_bytes());
            k.extend_from_slice(lot.as_str().as_bytes());
            k.push(0);
        }
        IndexKey::Serial(g, serial) => {
            k.push(b's');
            k.extend_from_slice(g.as_str().as_bytes());
            k.extend_from_slice(serial.as_str().as_bytes());
            k.push(0);
        }
        IndexKey::Certificate(issuer, number) => {
            k.push(b'c');
            k.extend_from_slice(issuer.as_str().as_bytes());
            k.extend_from_slice(number.as_bytes());
            k.push(0);
        }
        IndexKey::Organisation(u) => {
            k.push(b'o');
            k.extend_from_slice(u.as_str().as_bytes());
        }
        IndexKey::Parent(log, seq) => {
            k.push(b'p');
            k.extend_from_slice(&log.0);
            k.extend_from_slice(&seq.to_be_bytes());
        }
        IndexKey::Signer(key) => {
            k.push(b'k');
            k.extend_from_slice(key);
        }
        IndexKey::Registry => k.push(b'r'),
        IndexKey::Creates(g, lot) => {
            k.push(b'C');
            k.extend_from_slice(g.as_str().as_bytes());
            k.extend_from_slice(lot.as_str().as_bytes());
            k.push(0);
        }
        IndexKey::Tests(g, lot) => {
            k.push(b'T');
            k.extend_from_slice(g.as_str().as_bytes());
            k.extend_from_slice(lot.as_str().as_bytes());
            k.push(0);
        }
        IndexKey::RecallOf(g) => {
            k.push(b'R');
            k.extend_from_slice(g.as_str().as_bytes());
        }
        IndexKey::CertifiedFor(digits) => {
            k.push(b'F');
            k.extend_from_slice(digits.as_bytes());
            k.push(0);
        }
        IndexKey::Corrects(log, seq) => {
            k.push(b'X');
            k.extend_from_slice(&log.0);
            k.extend_from_slice(&seq.to_be_bytes());
        }
    }
    k
}

pub(crate) fn seq_from_key(k: &[u8]) -> Result<u64> {
    k.get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt("key without an 8-byte number".into()))
}

fn seq_from_value(v: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("sequence value is not 8 bytes".into()))
}

/// Sled keys an append of `entries` writes, about: the entry, and per batch
/// a few tiles and the checkpoint.
fn batch_len(entries: &[NewEntry]) -> usize {
    entries.len() * 3
}

/// Lets sled's replaced pages be freed after a batch of `keys` writes.
///
/// sled hands every page version it replaces to crossbeam-epoch's global
/// collector, which frees a little of that garbage on each pin. A batch
/// holds one pin while it writes thousands of keys, and the collector's
/// pace (a few bags per 128 pins) never catches up with what batches of a
/// thousand entries leave behind: measured with sled 0.34.7 alone, 300,000
/// entries of 10 keys in batches of 1,024 grew the process to 13 GB, and to
/// 0.4 GB when each batch is followed by this. Each round pins, flushes the
/// thread's deferred garbage and advances the collector. One round per key
/// written (at least 64) costs about 30 ns a key when there is nothing left to free
/// (measured), under 1 % of what sled spends writing the key.
fn reclaim(keys: usize) {
    for _ in 0..keys.max(64) {
        crossbeam_epoch::pin().flush();
    }
}

/// Opens the sled database in `dir` without looking at its layout,
/// retrying a lock conflict for up to two seconds (see [`SledStore::open`]).
fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db> {
    const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
    let config =
        sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).cache_capacity(cache_bytes.max(1 << 20));
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_conflict(&e) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether sled refused to open because another handle holds the
/// directory's lock. sled 0.34 reports it as `ErrorKind::Other` with this
/// message (config.rs), so the message is what identifies it.
fn is_lock_conflict(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(e) if e.to_string().starts_with("could not acquire lock on"))
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogStore({})", self.log_id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tempfile::TempDir;

    use super::*;
    use qtrace_ledger::event::EventKind as K;
    use qtrace_ledger::ids::{Gtin, Lot, Serial, Uscc};
    use qtrace_ledger::merkle::MemTree;
    use qtrace_ledger::note::{self, Checkpoint, Signer};
    use qtrace_ledger::pb::{self, event::Body};
    use qtrace_ledger::testkit::{self, GTIN_FORMULA, TestLog, Who, example, with_refs};
    use qtrace_ledger::tiles::TileId;

    const ORIGIN: &str = "qtrace.example/sh-amr";

    #[track_caller]
    pub(crate) fn ok<T>(result: Result<T>) -> T {
        result.unwrap_or_else(|e| panic!("store error: {e}"))
    }

    fn note_signer() -> Signer {
        Signer::new(ORIGIN, Who::Log.secret().signing_key().clone()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Signs the checkpoint as the node does: a C2SP checkpoint in a note
    /// signed by the log key. Ed25519 is deterministic, so the same head
    /// always gives the same note.
    pub(crate) fn sign(size: u64, root: &Hash) -> Result<String, note::NoteError> {
        let checkpoint = Checkpoint { origin: ORIGIN.into(), size, root: *root, extensions: Vec::new() };
        note::sign_checkpoint(&checkpoint, &note_signer())
    }

    fn signed(size: u64, root: &Hash) -> String {
        sign(size, root).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The size and root a stored note commits to, after checking its
    /// signature.
    fn opened(note: &str) -> (u64, Hash) {
        let opened = note::open_checkpoint(note, &note_signer().verifier(), &[]).unwrap_or_else(|e| panic!("{e}"));
        (opened.checkpoint.size, opened.checkpoint.root)
    }

    /// `event` about lot `lot` of the formula, wherever it names that lot.
    fn with_lot(mut event: pb::Event, lot: &str) -> pb::Event {
        let set = |p: Option<&mut pb::ProductKey>| {
            if let Some(p) = p
                && p.gtin == GTIN_FORMULA
            {
                p.lot = lot.into();
            }
        };
        if let Some(pb::Subject { kind: Some(pb::subject::Kind::Product(p)) }) = event.subject.as_mut() {
            set(Some(p));
        }
        match event.body.as_mut() {
            Some(Body::Production(b)) => set(b.output.as_mut().and_then(|o| o.product.as_mut())),
            Some(Body::Shipment(b)) => b.items.iter_mut().for_each(|i| set(i.product.as_mut())),
            Some(Body::Sale(b)) => b.items.iter_mut().for_each(|i| set(i.product.as_mut())),
            Some(Body::Inspection(b)) => set(b.product.as_mut()),
            _ => {}
        }
        event
    }

    /// A log of `n` entries (at least the standard registrations), each
    /// authorised: a cycle of production, shipment, sale, inspection,
    /// certificate and correction. Lots ("L1", "L10", "L100"), serials ("S1",
    /// "S10") and certificate numbers ("CQC4", "CQC40") share prefixes, so
    /// the index must keep them apart.
    pub(crate) fn sample_log(n: usize) -> TestLog {
        let mut log = TestLog::standard();
        let (mut production, mut shipment, mut report) = (None, None, None);
        for i in 0u64.. {
            if log.entries.len() >= n {
                break;
            }
            let lot = ["L1", "L10", "L100"][(i / 6 % 3) as usize];
            let serial = ["S1", "S10"][(i / 6 % 2) as usize];
            let placeholder = testkit::placeholder_ref();
            let (who, mut event) = match i % 6 {
                0 => (Who::Manufacturer, with_lot(example(K::Production), lot)),
                1 => (
                    Who::Manufacturer,
                    with_lot(with_refs(example(K::Shipment), production.as_ref().unwrap_or(&placeholder)), lot),
                ),
                2 => {
                    let mut sale = with_lot(example(K::Sale), lot);
                    if let Some(pb::Subject { kind: Some(pb::subject::Kind::Product(p)) }) = sale.subject.as_mut() {
                        p.serial = serial.into();
                    }
                    if let Some(Body::Sale(s)) = sale.body.as_mut() {
                        s.items
                            .iter_mut()
                            .filter_map(|item| item.product.as_mut())
                            .for_each(|p| p.serial = serial.into());
                    }
                    (Who::Retailer, sale)
                }
                3 => (Who::Lab, with_lot(example(K::Inspection), lot)),
                4 => {
                    let number = format!("CQC{i}");
                    let mut issued = with_refs(example(K::CertificateIssued), report.as_ref().unwrap_or(&placeholder));
                    let key = testkit::cert_key(testkit::CERT_BODY, &number);
                    issued.subject = Some(pb::Subject { kind: Some(pb::subject::Kind::Certificate(key.clone())) });
                    if let Some(Body::CertificateIssued(c)) = issued.body.as_mut() {
                        c.certificate = Some(key);
                    }
                    (Who::CertBody, issued)
                }
                _ => (Who::Staff, with_refs(example(K::Correction), shipment.as_ref().unwrap_or(&placeholder))),
            };
            event.nonce = i;
            let record = log.accept(who, &event);
            match i % 6 {
                0 => production = Some(record),
                1 => shipment = Some(record),
                3 => report = Some(record),
                _ => {}
            }
        }
        log
    }

    pub(crate) fn new_entries(entries: &[Entry]) -> Vec<NewEntry> {
        entries.iter().map(|entry| NewEntry { entry: entry.clone(), hash: entry.hash() }).collect()
    }

    pub(crate) fn tree_of(entries: &[NewEntry]) -> MemTree {
        MemTree::from_leaf_hashes(entries.iter().map(|e| e.hash.0)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same tests run against a temporary store and one in a directory.
    fn stores() -> Vec<(&'static str, SledStore, Option<TempDir>)> {
        let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
        let on_disk = ok(SledStore::open(dir.path()));
        vec![("temporary", ok(SledStore::temporary()), None), ("directory", on_disk, Some(dir))]
    }

    pub(crate) fn log_id_of(new: &[NewEntry]) -> LogId {
        LogId(new[0].entry.prev_hash.0)
    }

    pub(crate) fn appended(n: usize) -> (SledStore, LogStore, Vec<NewEntry>) {
        let log = sample_log(n);
        let new = new_entries(&log.entries);
        let store = ok(SledStore::temporary());
        let logs = ok(store.log(log.log_id));
        ok(logs.append(&new, true, sign));
        (store, logs, new)
    }

    #[test]
    fn append_batches_of_1_3_and_100() {
        let log = sample_log(104);
        let new = new_entries(&log.entries);
        for (name, store, _dir) in stores() {
            let logs = ok(store.log(log.log_id));
            assert_eq!(
                logs.head(),
                Head { size: 0, last_hash: EntryHash(log.log_id.0), root: merkle::empty_root() },
                "{name}"
            );
            assert_eq!(ok(logs.latest_checkpoint()), None, "{name}");
            let mut start = 0;
            for batch in [1, 3, 100] {
                let chunk = &new[start..start + batch];
                let head = ok(logs.append(chunk, true, sign));
                start += batch;
                let tree = tree_of(&new[..start]);
                let want = Head { size: start as u64, last_hash: chunk[batch - 1].hash, root: tree.root() };
                assert_eq!((head, logs.head()), (want, want), "{name}: batch of {batch}");
                let note = signed(head.size, &head.root);
                assert_eq!(ok(logs.checkpoint(head.size)).as_deref(), Some(note.as_str()), "{name}");
                assert_eq!(ok(logs.latest_checkpoint()), Some((head.size, note.clone())), "{name}");
                assert_eq!(opened(&note), (head.size, head.root), "{name}");
            }
            assert_eq!(ok(logs.checkpoint_sizes()), [1, 4, 104], "{name}");
            assert_eq!(ok(logs.checkpoint(2)), None, "{name}");
            for (seq, new_entry) in (0u64..).zip(&new) {
                assert_eq!(ok(logs.entry(seq)).as_ref(), Some(&new_entry.entry), "{name}: entry {seq}");
                assert_eq!(ok(logs.seq_of(&new_entry.hash)), Some(seq), "{name}: seq of {seq}");
            }
            assert_eq!(ok(logs.entry(104)), None, "{name}");
            assert_eq!(ok(logs.seq_of(&EntryHash([0xee; 32]))), None, "{name}");
            let range = |from, to| ok(logs.range(from, to).collect::<Result<Vec<Entry>>>());
            let entries: Vec<Entry> = new.iter().map(|n| n.entry.clone()).collect();
            assert_eq!(range(10, 20), entries[10..20], "{name}");
            assert_eq!(range(100, 200), entries[100..], "{name}");
            assert_eq!(range(0, u64::MAX), entries, "{name}");
            assert!(range(7, 7).is_empty() && range(20, 10).is_empty(), "{name}");
            assert_eq!(ok(store.logs()), [log.log_id], "{name}");
            assert_eq!(ok(logs.live_derived()), ok(logs.derived_from_entries()), "{name}");
        }
    }

    #[test]
    fn correction_targets_within_a_snapshot_and_a_limit() {
        let (_store, logs, new) = appended(104);
        // (entry seq of the correction, its target) from the events.
        let corrections: Vec<(u64, (LogId, u64))> = new
            .iter()
            .flat_map(|n| {
                follower::index_keys_of(&n.entry, None).into_iter().filter_map(|k| match k {
                    IndexKey::Corrects(log, seq) => Some((n.entry.seq, (log, seq))),
                    _ => None,
                })
            })
            .collect();
        assert!(corrections.len() >= 10, "the sample log has corrections: {}", corrections.len());
        let all = corrections.len();
        let size_after = |i: usize| corrections[i].0 + 1;
        let sorted = |mut v: Vec<(LogId, u64)>| {
            v.sort();
            v
        };
        let upto = |size: u64| sorted(corrections.iter().filter(|(s, _)| *s < size).map(|(_, t)| *t).collect());
        // (snapshot size, limit, expected)
        type Case = (u64, usize, Option<Vec<(LogId, u64)>>);
        let cases: Vec<Case> = vec![
            (new.len() as u64, all, Some(upto(new.len() as u64))),
            (new.len() as u64, all + 5, Some(upto(new.len() as u64))),
            (new.len() as u64, all - 1, None),
            (size_after(2), 3, Some(upto(size_after(2)))),
            (size_after(2) - 1, 2, Some(upto(size_after(2) - 1))),
            (size_after(2), 2, None),
            (0, 0, Some(Vec::new())),
        ];
        for (size, limit, want) in cases {
            let got = ok(logs.correction_targets(size, limit)).map(sorted);
            assert_eq!(got, want, "snapshot of {size} entries, limit {limit}");
        }
    }

    #[test]
    fn lookup_by_every_index_key_with_pagination() {
        let (_store, logs, new) = appended(104);
        // Every key, with the entries under it, worked out from the events.
        let mut expected: BTreeMap<IndexKey, Vec<u64>> = BTreeMap::new();
        for n in &new {
            for key in follower::index_keys_of(&n.entry, None).into_iter().chain([IndexKey::Signer(n.entry.signer)]) {
                expected.entry(key).or_default().push(n.entry.seq);
            }
        }
        let kinds: BTreeSet<&str> = expected
            .keys()
            .map(|key| match key {
                IndexKey::Gtin(_) => "gtin",
                IndexKey::Lot(..) => "lot",
                IndexKey::Serial(..) => "serial",
                IndexKey::Certificate(..) => "certificate",
                IndexKey::Organisation(_) => "organisation",
                IndexKey::Parent(..) => "parent",
                IndexKey::Signer(_) => "signer",
                IndexKey::Registry => "registry",
                IndexKey::Creates(..) => "creates",
                IndexKey::Tests(..) => "tests",
                IndexKey::RecallOf(_) => "recall",
                IndexKey::CertifiedFor(_) => "certified",
                IndexKey::Corrects(..) => "corrects",
            })
            .collect();
        assert!(kinds.len() >= 8, "the sample log has keys of most kinds, not just {kinds:?}");
        for (key, seqs) in &expected {
            assert_eq!(&ok(logs.lookup(key, None, usize::MAX)), seqs, "{key:?}");
        }

        let formula = Gtin::parse(GTIN_FORMULA).unwrap_or_else(|e| panic!("{e}"));
        let lot = |l: &str| IndexKey::Lot(formula.clone(), Lot::parse(l).unwrap_or_else(|e| panic!("{e}")));
        let serial = |s: &str| IndexKey::Serial(formula.clone(), Serial::parse(s).unwrap_or_else(|e| panic!("{e}")));
        let issuer = Uscc::parse(testkit::CERT_BODY).unwrap_or_else(|e| panic!("{e}"));
        let cert = |n: &str| IndexKey::Certificate(issuer.clone(), n.into());
        // Keys whose text is a prefix of another's find only their own entries.
        for (short, long) in [
            (lot("L1"), lot("L10")),
            (lot("L10"), lot("L100")),
            (serial("S1"), serial("S10")),
            (cert("CQC4"), cert("CQC40")),
        ] {
            let (a, b) = (ok(logs.lookup(&short, None, usize::MAX)), ok(logs.lookup(&long, None, usize::MAX)));
            assert!(!a.is_empty() && !b.is_empty(), "{short:?} / {long:?}");
            assert!(a.iter().all(|seq| !b.contains(seq)), "{short:?} and {long:?} share entries: {a:?} {b:?}");
        }
        let nothing = [
            lot("L2"),
            IndexKey::Gtin(Gtin::parse(testkit::GTIN_OUT_OF_SCOPE).unwrap_or_else(|e| panic!("{e}"))),
            IndexKey::Signer(Who::Newcomer.public()),
            IndexKey::Parent(LogId([1; 32]), 3),
        ];
        for key in &nothing {
            assert_eq!(ok(logs.lookup(key, None, 10)), Vec::<u64>::new(), "{key:?}");
        }

        // Pages of every size reassemble the whole list, each page starting
        // after the last seq of the one before.
        let paged = [
            IndexKey::Registry,
            IndexKey::Signer(Who::Manufacturer.public()),
            IndexKey::Gtin(formula.clone()),
            lot("L1"),
            IndexKey::Organisation(Uscc::parse(testkit::MANUFACTURER).unwrap_or_else(|e| panic!("{e}"))),
        ];
        for key in &paged {
            let all = &expected[key];
            assert!(all.len() > 5, "{key:?}");
            for limit in [1, 2, 5, all.len(), all.len() + 1] {
                let mut pages = Vec::new();
                let mut after = None;
                loop {
                    let page = ok(logs.lookup(key, after, limit));
                    assert!(page.len() <= limit, "{key:?}: page of {} over limit {limit}", page.len());
                    let Some(&last) = page.last() else { break };
                    pages.extend_from_slice(&page);
                    after = Some(last);
                }
                assert_eq!(&pages, all, "{key:?} in pages of {limit}");
            }
            // `after` need not be one of the key's own entries.
            for after in [0, all[2] - 1, all[2], all[2] + 1, u64::MAX - 1, u64::MAX] {
                let want: Vec<u64> = all.iter().copied().filter(|&s| s > after).collect();
                assert_eq!(ok(logs.lookup(key, Some(after), usize::MAX)), want, "{key:?} after {after}");
            }
            assert_eq!(ok(logs.lookup(key, None, 0)), Vec::<u64>::new(), "{key:?} limit 0");
        }
    }

    #[test]
    fn duplicates_are_found_by_signer_and_event_bytes() {
        let (_store, logs, new) = appended(40);
        for n in &new {
            let entry = &n.entry;
            assert_eq!(ok(logs.duplicate_of(&entry.signer, &entry.event)), Some(entry.seq), "entry {}", entry.seq);
            assert_eq!(ok(logs.duplicate_of(&Who::Newcomer.public(), &entry.event)), None, "another signer");
            let mut other = entry.event.clone();
            other.push(0);
            assert_eq!(ok(logs.duplicate_of(&entry.signer, &other)), None, "other bytes");
        }
    }

    #[test]
    fn proofs_verify_against_stored_roots() {
        let (_store, logs, new) = appended(104);
        let tree = tree_of(&new);
        let sizes = [1u64, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 103, 104];
        assert_eq!(ok(logs.root(0)), merkle::empty_root());
        for size in sizes {
            let root = ok(logs.root(size));
            assert_eq!(Ok(root), tree.root_at(size), "root of {size}");
            for leaf in [0, size / 2, size - 1] {
                let proof = ok(logs.inclusion_proof(leaf, size));
                let hash = new[leaf as usize].hash.0;
                assert_eq!(merkle::verify_inclusion(leaf, size, &hash, &proof, &root), Ok(()), "leaf {leaf} in {size}");
                if size > 1 {
                    // The same proof does not hold for another leaf.
                    let other = new[((leaf + 1) % size) as usize].hash.0;
                    assert!(
                        merkle::verify_inclusion(leaf, size, &other, &proof, &root).is_err(),
                        "leaf {leaf} in {size}"
                    );
                }
            }
            for old in sizes.into_iter().filter(|&old| old <= size) {
                let old_root = ok(logs.root(old));
                let proof = ok(logs.consistency_proof(old, size));
                assert_eq!(merkle::verify_consistency(old, size, &proof, &old_root, &root), Ok(()), "{old} -> {size}");
                if old < size {
                    assert!(
                        merkle::verify_consistency(old, size, &proof, &root, &old_root).is_err(),
                        "{old} -> {size} with the roots swapped"
                    );
                }
            }
        }
        let beyond =
            |result: Result<Vec<Hash>>| matches!(result, Err(StoreError::BeyondLog { requested: 105, size: 104 }));
        assert!(matches!(logs.root(105), Err(StoreError::BeyondLog { requested: 105, size: 104 })));
        assert!(beyond(logs.inclusion_proof(0, 105)));
        assert!(beyond(logs.consistency_proof(1, 105)));
        assert!(matches!(logs.inclusion_proof(104, 104), Err(StoreError::Merkle(_))));
        assert!(matches!(logs.consistency_proof(0, 10), Err(StoreError::Merkle(_))));
    }

    /// Everything a refused append could have touched: head, latest
    /// checkpoint, checkpoint sizes, entry count and derived keys.
    type Snapshot = (Head, Option<(u64, String)>, Vec<u64>, usize, BTreeSet<(Vec<u8>, Vec<u8>)>);

    fn snapshot(logs: &LogStore) -> Snapshot {
        (
            logs.head(),
            ok(logs.latest_checkpoint()),
            ok(logs.checkpoint_sizes()),
            logs.range(0, u64::MAX).count(),
            ok(logs.live_derived()),
        )
    }

    #[test]
    fn refused_appends_write_nothing() {
        let log = sample_log(30);
        let new = new_entries(&log.entries);
        let store = ok(SledStore::temporary());
        let logs = ok(store.log(log.log_id));
        ok(logs.append(&new[..20], true, sign));
        let before = snapshot(&logs);
        let relinked = |n: &NewEntry, prev: EntryHash| {
            let entry = Entry { prev_hash: prev, ..n.entry.clone() };
            NewEntry { hash: entry.hash(), entry }
        };
        type Refusal = fn(&StoreError) -> bool;
        let cases: Vec<(&str, Vec<NewEntry>, Refusal)> = vec![
            ("skips a sequence number", vec![new[21].clone()], |e| {
                matches!(e, StoreError::Sequence { expected: 20, found: 21 })
            }),
            ("repeats the last sequence number", vec![new[19].clone()], |e| {
                matches!(e, StoreError::Sequence { expected: 20, found: 19 })
            }),
            ("links to nothing", vec![relinked(&new[20], EntryHash([0; 32]))], |e| {
                matches!(e, StoreError::Chain { seq: 20 })
            }),
            ("links to the log id as if it were entry 0", vec![relinked(&new[20], EntryHash(log.log_id.0))], |e| {
                matches!(e, StoreError::Chain { seq: 20 })
            }),
            ("second of the batch out of order", vec![new[20].clone(), new[22].clone()], |e| {
                matches!(e, StoreError::Sequence { expected: 21, found: 22 })
            }),
            (
                "third of the batch links to the first",
                vec![new[20].clone(), new[21].clone(), relinked(&new[22], new[20].hash)],
                |e| matches!(e, StoreError::Chain { seq: 22 }),
            ),
        ];
        for (name, batch, refusal) in &cases {
            let mut signed = false;
            let result = logs.append(batch, true, |size, root| {
                signed = true;
                sign(size, root)
            });
            match result {
                Err(e) => assert!(refusal(&e), "{name}: {e}"),
                Ok(head) => panic!("{name}: accepted, head {head:?}"),
            }
            assert!(!signed, "{name}: a checkpoint was signed");
            assert!(snapshot(&logs) == before, "{name}: the store changed");
            assert_eq!(ok(logs.entry(20)), None, "{name}");
            assert_eq!(ok(logs.seq_of(&new[20].hash)), None, "{name}");
        }
        // A checkpoint that cannot be signed: the right entries, nothing written.
        let result = logs.append(&new[20..22], true, |_, _| Err("the log key is unreadable"));
        match result {
            Err(StoreError::Checkpoint { size: 22, reason }) => assert_eq!(reason, "the log key is unreadable"),
            other => panic!("unsigned checkpoint: {other:?}"),
        }
        assert!(snapshot(&logs) == before, "unsigned checkpoint: the store changed");
        assert_eq!((ok(logs.entry(20)), logs.head().size), (None, 20), "unsigned checkpoint");
        // The right continuation is still accepted.
        let head = ok(logs.append(&new[20..], true, sign));
        assert_eq!((head.size, head.root), (30, tree_of(&new).root()));
    }

    #[test]
    fn a_held_store_is_refused_and_a_dropped_one_reopens() {
        let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
        let held = ok(SledStore::open(dir.path()));
        match SledStore::open(dir.path()) {
            Err(StoreError::Sled(e)) => assert!(is_lock_conflict(&e), "{e}"),
            Err(other) => panic!("a second open of a held store must fail on the lock, got {other}"),
            Ok(_) => panic!("a second open of a held store must fail on the lock"),
        }
        drop(held);
        // Dropping and reopening at once is what restarts and tests do;
        // sled's threads may hold the lock a moment after the drop.
        for _ in 0..20 {
            let store = ok(SledStore::open(dir.path()));
            ok(store.flush());
        }
    }

    #[test]
    fn reopening_restores_the_head() {
        let log = sample_log(60);
        let new = new_entries(&log.entries);
        let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
        let (head, derived) = {
            let store = ok(SledStore::open(dir.path()));
            let logs = ok(store.log(log.log_id));
            ok(logs.append(&new[..17], true, sign));
            let head = ok(logs.append(&new[17..50], true, sign));
            (head, ok(logs.live_derived()))
        };
        let store = ok(SledStore::open(dir.path()));
        assert_eq!(ok(store.logs()), [log.log_id]);
        let logs = ok(store.log(log.log_id));
        assert_eq!(logs.head(), head);
        assert_eq!(ok(logs.latest_checkpoint()), Some((50, signed(50, &head.root))));
        assert_eq!(ok(logs.checkpoint_sizes()), [17, 50]);
        assert_eq!(ok(logs.entry(49)).as_ref(), Some(&new[49].entry));
        assert_eq!(ok(logs.live_derived()), derived);
        assert_eq!(derived, ok(logs.derived_from_entries()));
        // The reloaded frontier carries on where the old one stopped.
        let head = ok(logs.append(&new[50..], true, sign));
        assert_eq!(head, Head { size: 60, last_hash: new[59].hash, root: tree_of(&new).root() });
        assert_eq!(ok(logs.root(60)), head.root);
    }

    /// The key and bytes of the first run block of a family (`h`, `d`).
    fn first_run_block(logs: &LogStore, family: u8) -> (Vec<u8>, Vec<u8>) {
        let first = logs.index.scan_prefix([runs::RUN_BLOCK, family]).next();
        let (k, v) = ok(first.unwrap_or_else(|| panic!("no run block")).map_err(StoreError::from));
        (k.to_vec(), v.to_vec())
    }

    #[test]
    fn rebuild_restores_tampered_derived_keys() {
        let (_store, logs, new) = appended(60);
        let tree = tree_of(&new);
        let original = ok(logs.live_derived());
        assert_eq!(original, ok(logs.derived_from_entries()));
        for prefix in [HASH, TILE, DEDUP, postings::POSTINGS, WATERMARK] {
            assert!(original.iter().any(|(k, _)| k[0] == prefix), "no {} keys", prefix as char);
        }
        let manufacturer = IndexKey::Signer(Who::Manufacturer.public());
        let first_by_manufacturer = ok(logs.lookup(&manufacturer, None, 1))[0];
        // The manufacturer's postings (all in one open block).
        let index_entry = postings::open_key(&follower::postings_prefix(&manufacturer));
        let primary = (ok(logs.checkpoint_sizes()), logs.range(0, u64::MAX).count());

        // The test module can reach the sled tree that the store keeps
        // private, which is how a disk fault or a careless tool would change
        // it.
        type Tamper = fn(&LogStore, &[NewEntry], &[u8]);
        let cases: Vec<(&str, Tamper)> = vec![
            ("an index key removed", |logs, _, index_entry| {
                ok(logs.index.remove(index_entry).map_err(StoreError::from));
            }),
            ("a stray index key added", |logs, _, _| {
                let k = postings::open_key(&follower::postings_prefix(&IndexKey::Parent(LogId([3; 32]), 9)));
                let block = postings::OpenBlock { sealed: 0, seqs: vec![7] };
                ok(logs.index.insert(k, postings::encode_open(&block)).map_err(StoreError::from));
            }),
            ("a posting dropped from a block", |logs, _, index_entry| {
                let value = ok(logs.index.get(index_entry).map_err(StoreError::from)).unwrap_or_default();
                let mut block = ok(postings::decode_open(&value, &|| "block".into()));
                block.seqs.remove(1);
                ok(logs.index.insert(index_entry, postings::encode_open(&block)).map_err(StoreError::from));
            }),
            ("the watermark moved back", |logs, _, _| {
                ok(logs.index.insert([WATERMARK], 5u64.to_be_bytes().to_vec()).map_err(StoreError::from));
            }),
            ("a hash in a tile changed", |logs, _, _| {
                let k = tiles::tile_key(TileId::new(0, 0));
                let mut tile = ok(logs.tree.get(&k).map_err(StoreError::from)).map(|v| v.to_vec()).unwrap_or_default();
                tile[5 * 32] ^= 1;
                ok(logs.tree.insert(k, tile).map_err(StoreError::from));
            }),
            ("a tile cut short", |logs, _, _| {
                let k = tiles::tile_key(TileId::new(0, 0));
                let tile = ok(logs.tree.get(&k).map_err(StoreError::from)).map(|v| v.to_vec()).unwrap_or_default();
                ok(logs.tree.insert(k, &tile[..59 * 32]).map_err(StoreError::from));
            }),
            ("a stray tile added", |logs, _, _| {
                ok(logs.tree.insert(tiles::tile_key(TileId::new(1, 0)), vec![7; 32]).map_err(StoreError::from));
            }),
            ("a hash index record pointing elsewhere", |logs, _, _| {
                // The first block of the hashes' first run: its first
                // record's seq.
                let (k, block) = first_run_block(logs, b'h');
                let mut block = block;
                block[15] ^= 1;
                ok(logs.index.insert(k, block).map_err(StoreError::from));
            }),
            ("a dedup run's block removed", |logs, _, _| {
                let (k, _) = first_run_block(logs, b'd');
                ok(logs.index.remove(k).map_err(StoreError::from));
            }),
            ("every derived key dropped", |logs, _, _| {
                for (k, _) in ok(logs.stored_keys()) {
                    let tree = if k[0] == TILE { &logs.tree } else { &logs.index };
                    ok(tree.remove(k).map_err(StoreError::from));
                }
                for prefix in [runs::RUN_BLOCK, runs::RUN_META] {
                    for k in logs.index.scan_prefix([prefix]).keys() {
                        ok(logs.index.remove(ok(k.map_err(StoreError::from))).map_err(StoreError::from));
                    }
                }
            }),
        ];
        for (name, tamper) in &cases {
            tamper(&logs, &new, &index_entry);
            // Sets of hundreds of keys: compared without printing them. A
            // run read as damaged is an error, also a finding.
            match logs.live_derived() {
                Ok(live) => assert!(live != original, "{name}: tampering changed nothing"),
                // A damaged run is refused naming the index and the run.
                Err(StoreError::Corrupt(why)) => assert!(why.contains(" run "), "{name}: {why}"),
                Err(other) => panic!("{name}: {other}"),
            }
            assert!(ok(logs.derived_from_entries()) == original, "{name}: recomputed from the entries");
            ok(logs.rebuild_derived());
            assert!(ok(logs.live_derived()) == original, "{name}: rebuilt");
            assert_eq!(logs.indexed(), 60, "{name}: the watermark after a rebuild");
            assert_eq!((ok(logs.checkpoint_sizes()), logs.range(0, u64::MAX).count()), primary, "{name}");
            assert_eq!(ok(logs.root(60)), tree.root(), "{name}");
            assert_eq!(ok(logs.seq_of(&new[7].hash)), Some(7), "{name}");
            assert_eq!(ok(logs.lookup(&manufacturer, None, 1)), [first_by_manufacturer], "{name}");
        }

        // What tampering looks like from outside, before a rebuild.
        ok(logs.tree.insert(tiles::tile_key(TileId::new(0, 0)), vec![0xee; 60 * 32]).map_err(StoreError::from));
        let proof_of_first = |logs: &LogStore| {
            merkle::verify_inclusion(0, 60, &new[0].hash.0, &ok(logs.inclusion_proof(0, 60)), &tree.root())
        };
        assert!(proof_of_first(&logs).is_err());
        ok(logs.index.remove(&index_entry[..]).map_err(StoreError::from));
        assert_ne!(ok(logs.lookup(&manufacturer, None, 1)), [first_by_manufacturer]);
        ok(logs.rebuild_derived());
        assert_eq!(proof_of_first(&logs), Ok(()));
        assert_eq!(ok(logs.lookup(&manufacturer, None, 1)), [first_by_manufacturer]);
    }
}
