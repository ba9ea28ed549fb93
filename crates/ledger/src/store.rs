//! The sled store: one sled tree per log, written only through a few
//! high-level operations.
//!
//! A log's tree holds, under one-byte prefixes:
//!
//! | prefix | key                         | value                  | kind    |
//! |--------|-----------------------------|------------------------|---------|
//! | `E`    | seq (u64 BE)                | entry bytes            | primary |
//! | `C`    | tree size (u64 BE)          | signed checkpoint note | primary |
//! | `H`    | entry hash                  | seq                    | derived |
//! | `N`    | level (u8) ‖ index (u64 BE) | perfect subtree hash   | derived |
//! | `D`    | SHA-256(signer ‖ event)     | seq                    | derived |
//! | `I`    | index key ‖ seq             | (empty)                | derived |
//!
//! Every append goes through [`LogStore::append`], which writes the entries,
//! every derived key and the new signed checkpoint in one sled batch (sled
//! applies a batch atomically: after a crash the tree holds all of it or
//! none of it) and then flushes. Derived keys can be dropped and rebuilt
//! from the `E` entries alone ([`LogStore::rebuild_derived`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use crate::entry::{Entry, EntryError};
use crate::event::{self, IndexKey};
use crate::hash::{EntryHash, LogId, sha256};
use crate::merkle::{self, CompactRange, Hash, NodeId, NodeSource};

const ENTRY: u8 = b'E';
const CHECKPOINT: u8 = b'C';
const HASH: u8 = b'H';
const NODE: u8 = b'N';
const DEDUP: u8 = b'D';
const INDEX: u8 = b'I';
const DERIVED: [u8; 4] = [HASH, NODE, DEDUP, INDEX];

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
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The sled database holding every log this node keeps.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
}

impl SledStore {
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new().path(dir).mode(sled::Mode::HighThroughput).open()?;
        Ok(SledStore { db })
    }

    /// A temporary store, removed when dropped (tests and benchmarks).
    pub fn temporary() -> Result<Self> {
        Ok(SledStore { db: sled::Config::new().temporary(true).open()? })
    }

    /// Opens (or creates) the tree of one log and loads its head.
    pub fn log(&self, log_id: LogId) -> Result<LogStore> {
        let tree = self.db.open_tree(format!("log/{}", log_id.to_hex()))?;
        LogStore::load(self.db.clone(), tree, log_id)
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

    /// Flushes every write to disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// A small key-value space for node metadata (not part of any log).
    pub fn meta(&self) -> Result<sled::Tree> {
        Ok(self.db.open_tree("meta")?)
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

/// An entry ready to be appended: sequenced and linked by the caller.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub entry: Entry,
    pub hash: EntryHash,
    /// Index keys from [`event::index_keys`] of the entry's event.
    pub index_keys: Vec<IndexKey>,
}

/// The state at the end of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    /// Hash of the last entry; for an empty log, the log id.
    pub last_hash: EntryHash,
    pub root: Hash,
}

/// One log's tree. Reads may run concurrently; appends are serialised.
pub struct LogStore {
    db: sled::Db,
    tree: sled::Tree,
    log_id: LogId,
    head: Mutex<(Head, CompactRange)>,
}

impl LogStore {
    fn load(db: sled::Db, tree: sled::Tree, log_id: LogId) -> Result<Self> {
        let size = match tree.scan_prefix([ENTRY]).next_back() {
            None => 0,
            Some(kv) => {
                let (key, _) = kv?;
                seq_from_key(&key)? + 1
            }
        };
        let source = TreeNodes(&tree);
        let range = CompactRange::from_nodes(size, &source).map_err(|e| StoreError::Corrupt(format!("{e:?}")))?;
        let last_hash = if size == 0 {
            EntryHash(log_id.0)
        } else {
            EntryHash(
                source.node(NodeId { level: 0, index: size - 1 }).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )
        };
        let head = Head { size, last_hash, root: range.root() };
        Ok(LogStore { db, tree, log_id, head: Mutex::new((head, range)) })
    }

    pub fn log_id(&self) -> LogId {
        self.log_id
    }

    pub fn head(&self) -> Head {
        self.lock().0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Head, CompactRange)> {
        // A panic while holding the lock cannot leave the head half-updated:
        // it is replaced only after the batch is applied.
        self.head.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends sequenced entries and the checkpoint `sign` makes for the new
    /// head, in one atomic batch, then flushes when `durable`. `sign` gets
    /// the new size and root and returns the signed checkpoint note.
    pub fn append(&self, entries: &[NewEntry], durable: bool, sign: impl FnOnce(u64, &Hash) -> String) -> Result<Head> {
        let mut guard = self.lock();
        let (head, range) = &mut *guard;
        let mut new_range = range.clone();
        let mut batch = sled::Batch::default();
        let mut expected_seq = head.size;
        let mut prev = head.last_hash;
        for new in entries {
            let entry = &new.entry;
            if entry.seq != expected_seq {
                return Err(StoreError::Sequence { expected: expected_seq, found: entry.seq });
            }
            if entry.prev_hash != prev {
                return Err(StoreError::Chain { seq: entry.seq });
            }
            let seq_key = entry.seq.to_be_bytes();
            batch.insert(key(ENTRY, &seq_key), entry.encode());
            write_derived(&mut batch, entry, &new.hash, &new.index_keys);
            new_range
                .append(new.hash.0, |id: NodeId, hash: Hash| {
                    batch.insert(node_key(id), hash.to_vec());
                })
                .map_err(|_| StoreError::Merkle("the log is full (2^64 - 1 entries)".into()))?;
            prev = new.hash;
            expected_seq += 1;
        }
        let new_head = Head { size: expected_seq, last_hash: prev, root: new_range.root() };
        let note = sign(new_head.size, &new_head.root);
        batch.insert(key(CHECKPOINT, &new_head.size.to_be_bytes()), note.into_bytes());
        self.tree.apply_batch(batch)?;
        if durable {
            self.db.flush()?;
        }
        *head = new_head;
        *range = new_range;
        Ok(new_head)
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

    pub fn entry(&self, seq: u64) -> Result<Option<Entry>> {
        match self.tree.get(key(ENTRY, &seq.to_be_bytes()))? {
            None => Ok(None),
            Some(bytes) => Ok(Some(Entry::decode(&bytes)?)),
        }
    }

    pub fn seq_of(&self, hash: &EntryHash) -> Result<Option<u64>> {
        self.tree.get(key(HASH, &hash.0))?.map(|v| seq_from_value(&v)).transpose()
    }

    /// The sequence of an earlier entry with the same signer and event bytes.
    pub fn duplicate_of(&self, signer: &[u8; 32], event: &[u8]) -> Result<Option<u64>> {
        self.tree.get(key(DEDUP, &dedup_key(signer, event)))?.map(|v| seq_from_value(&v)).transpose()
    }

    /// Entries `from .. to` in order.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = Result<Entry>> + '_ {
        self.tree
            .range(key(ENTRY, &from.to_be_bytes())..key(ENTRY, &to.to_be_bytes()))
            .map(|kv| Ok(Entry::decode(&kv?.1)?))
    }

    /// Sequence numbers of entries under an index key, ascending, starting
    /// after `after` (exclusive) when given, at most `limit`.
    pub fn lookup(&self, index: &IndexKey, after: Option<u64>, limit: usize) -> Result<Vec<u64>> {
        let prefix = index_prefix(index);
        let start = match after {
            Some(seq) => {
                let mut k = prefix.clone();
                k.extend_from_slice(&(seq.saturating_add(1)).to_be_bytes());
                if seq == u64::MAX {
                    return Ok(Vec::new());
                }
                k
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for kv in self.tree.range(start..) {
            let (k, _) = kv?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let tail = &k[prefix.len()..];
            let seq = <[u8; 8]>::try_from(tail)
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("index key with a bad sequence suffix".into()))?;
            out.push(seq);
        }
        Ok(out)
    }

    /// RFC 6962 root of the first `size` entries.
    pub fn root(&self, size: u64) -> Result<Hash> {
        self.within(size)?;
        merkle::root(&TreeNodes(&self.tree), size).map_err(|e| StoreError::Merkle(format!("{e}")))
    }

    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>> {
        self.within(size)?;
        merkle::inclusion_proof(&TreeNodes(&self.tree), seq, size).map_err(|e| StoreError::Merkle(format!("{e}")))
    }

    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
        self.within(new_size)?;
        merkle::consistency_proof(&TreeNodes(&self.tree), old_size, new_size)
            .map_err(|e| StoreError::Merkle(format!("{e}")))
    }

    fn within(&self, size: u64) -> Result<()> {
        let head = self.head();
        if size > head.size {
            return Err(StoreError::BeyondLog { requested: size, size: head.size });
        }
        Ok(())
    }

    /// Every derived key as it is stored now, for comparison with
    /// [`LogStore::derived_from_entries`].
    pub fn live_derived(&self) -> Result<BTreeSet<(Vec<u8>, Vec<u8>)>> {
        let mut out = BTreeSet::new();
        for prefix in DERIVED {
            for kv in self.tree.scan_prefix([prefix]) {
                let (k, v) = kv?;
                out.insert((k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Every derived key recomputed from the stored entries alone.
    pub fn derived_from_entries(&self) -> Result<BTreeSet<(Vec<u8>, Vec<u8>)>> {
        let mut batch = Derived::default();
        let mut range = CompactRange::new();
        for entry in self.range(0, u64::MAX) {
            let entry = entry?;
            let hash = entry.hash();
            let keys = event::decode_event(&entry.event).map(|e| event::index_keys(&e.event)).unwrap_or_default();
            write_derived(&mut batch, &entry, &hash, &keys);
            range
                .append(hash.0, |id: NodeId, h: Hash| {
                    batch.insert(node_key(id), h.to_vec());
                })
                .map_err(|_| StoreError::Merkle("the log is full (2^64 - 1 entries)".into()))?;
        }
        Ok(batch.0)
    }

    /// Drops every derived key and rebuilds it from the entries. The entries
    /// and checkpoints are not touched.
    pub fn rebuild_derived(&self) -> Result<()> {
        let fresh = self.derived_from_entries()?;
        let mut batch = sled::Batch::default();
        for (k, _) in self.live_derived()? {
            batch.remove(k);
        }
        for (k, v) in fresh {
            batch.insert(k, v);
        }
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }
}

/// Where derived keys are written: a sled batch on append, a set on rebuild.
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

fn write_derived(sink: &mut impl Sink, entry: &Entry, hash: &EntryHash, index_keys: &[IndexKey]) {
    let seq = entry.seq.to_be_bytes();
    sink.insert(key(HASH, &hash.0), seq.to_vec());
    sink.insert(key(DEDUP, &dedup_key(&entry.signer, &entry.event)), seq.to_vec());
    let mut keys: Vec<&IndexKey> = index_keys.iter().collect();
    let signer = IndexKey::Signer(entry.signer);
    keys.push(&signer);
    for index in keys {
        let mut k = index_prefix(index);
        k.extend_from_slice(&seq);
        sink.insert(k, Vec::new());
    }
}

/// Identity of a submission for idempotency: the same signer submitting the
/// same event bytes is the same record, whatever the signature bytes.
pub fn dedup_key(signer: &[u8; 32], event: &[u8]) -> [u8; 32] {
    let mut data = Vec::with_capacity(32 + event.len());
    data.extend_from_slice(signer);
    data.extend_from_slice(event);
    sha256(&data)
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

fn node_key(id: NodeId) -> Vec<u8> {
    let mut k = Vec::with_capacity(10);
    k.push(NODE);
    k.push(id.level);
    k.extend_from_slice(&id.index.to_be_bytes());
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
    }
    k
}

fn seq_from_key(k: &[u8]) -> Result<u64> {
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

/// The stored perfect-subtree hashes of one log, as a Merkle node source.
struct TreeNodes<'a>(&'a sled::Tree);

impl NodeSource for TreeNodes<'_> {
    type Error = StoreError;

    fn node(&self, id: NodeId) -> Result<Hash> {
        let value = self.0.get(node_key(id))?.ok_or_else(|| {
            StoreError::Corrupt(format!("merkle node level {} index {} is missing", id.level, id.index))
        })?;
        <[u8; 32]>::try_from(&value[..]).map_err(|_| {
            StoreError::Corrupt(format!("merkle node level {} index {} is not 32 bytes", id.level, id.index))
        })
    }
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogStore({})", self.log_id)
    }
}
