//! The hash index (`H`: entry hash → seq) and the dedup index (`D`: dedup
//! key → seq) as sorted runs, not one sled key per entry.
//!
//! Both map a uniformly random 32-byte key to a sequence number, one record
//! per entry. As sled keys they were the bulk of the follower's cost: two
//! random keys per entry, each landing in a different leaf of a tree much
//! larger than the cache, so every follower batch rewrote thousands of
//! leaves (measured at 1,000,000 entries: the follower fell from 26,000 to
//! 16,000 entries/s as the log grew, 67 µs of CPU an entry, and the indexes
//! took 1,094 bytes of disk per entry, 1.9 × what the entries themselves
//! do).
//!
//! Here each follower step writes its records as one new *run*: the step's
//! records sorted by key, in blocks of [`BLOCK_RECORDS`] fixed-size records
//! (the key's first 8 bytes, big-endian, and the seq), one sled value per
//! block, plus one meta value (the range of sequence numbers the run
//! covers, its record count, the first key of each block, a Bloom filter of
//! its keys). When the oldest of the newest [`FAN_IN`] runs holds no more
//! records than the other seven together, and the eight hold at most
//! [`MAX_RUN`], they are merged into one. The rule counts records, not
//! merges, so the runs stay few however small or uneven the follower's
//! steps are (one entry each in a quiet node, a few thousand under load,
//! 8,192 in a catch-up): a merge at least doubles the oldest run it takes,
//! so a record is rewritten about log₂(MAX_RUN ÷ step) times (three times
//! with steps of 8,192 entries, about sixteen with steps of one), and a
//! log of `n` entries has about `n / 262,144` runs too big to merge
//! further plus a few dozen (tests bound them). Runs cover consecutive, disjoint ranges of
//! sequence numbers, together exactly `[0, watermark)`, with one record
//! per entry.
//!
//! A lookup asks each run's Bloom filter (in memory, about 1 % false
//! positives) and reads, in a run that may hold the key, the one block its
//! fences point to. Keys are stored by their first 8 bytes, so a lookup
//! returns candidates: the caller confirms each against the entry itself
//! (its hash, or its dedup key), so a false or corrupt candidate is never
//! an answer. A record that is damaged or missing is a miss (a duplicate not
//! found, a hash not located): loading checks each run's meta (one record
//! per entry covered, contiguous ranges), and the audit reads every record.
//!
//! Keys, in the index database's tree of the log:
//!
//! | key                                   | value                        |
//! |---------------------------------------|------------------------------|
//! | `M ‖ family ‖ run id (u64 BE)`         | the run's meta ([`Run`])     |
//! | `R ‖ family ‖ run id ‖ block (u32 BE)` | up to 256 records of 16 bytes |
//!
//! with family `h` (hashes) or `d` (dedup keys). A run is visible when its
//! meta is: a new run's blocks and meta go in one sled batch (a follower
//! step's batch, with its postings and watermark); a merge writes the new
//! run and removes the old runs' metas in one batch, then, once no reader
//! can still hold the old runs (readers hold the set's read lock for a
//! whole lookup, the swap takes the write lock), removes their blocks.
//! Blocks whose meta is gone (a crash between the two) are removed when the
//! log is opened.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use crate::{Result, StoreError};

pub(crate) const RUN_BLOCK: u8 = b'R';
pub(crate) const RUN_META: u8 = b'M';
/// Records per block.
pub(crate) const BLOCK_RECORDS: usize = 256;
/// Bytes of one record: the key's first 8 bytes and the seq, big-endian.
const RECORD: usize = 16;
/// Runs a merge takes: the newest eight.
pub(crate) const FAN_IN: usize = 8;
/// The most records a merge makes into one run (and a rebuild puts in
/// one), so one merge's sled batch stays under 9 MB.
pub(crate) const MAX_RUN: u64 = 524_288;
const BLOOM_BITS_PER_KEY: u64 = 10;
const BLOOM_PROBES: u64 = 7;
const META_VERSION: u8 = 1;

/// The run id after `id`; ids near the end of `u64` are damage.
fn id_after(family: Family, id: u64) -> Result<u64> {
    id.checked_add(1)
        .filter(|next| *next < u64::MAX)
        .ok_or_else(|| StoreError::Corrupt(format!("{} run id {id} is out of range", family.name())))
}

/// A run's size class: ⌊log₈ records⌋ (0 for an empty run); the tests
/// bound the number of runs by it.
#[cfg(test)]
fn class(records: u64) -> u32 {
    records.checked_ilog2().map_or(0, |log| log / 3)
}

/// sled keys and values to write.
pub(crate) type Kvs = Vec<(Vec<u8>, Vec<u8>)>;

/// Which index a run belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Entry hash → seq.
    Hash,
    /// Dedup key → seq (own logs).
    Dedup,
}

impl Family {
    fn byte(self) -> u8 {
        match self {
            Family::Hash => b'h',
            Family::Dedup => b'd',
        }
    }

    /// The first byte of the family's records in a derived-state listing
    /// ([`crate::LogStore::live_derived`]): the old sled prefixes.
    pub(crate) fn listing_byte(self) -> u8 {
        match self {
            Family::Hash => crate::follower::HASH,
            Family::Dedup => crate::follower::DEDUP,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Hash => "hash index",
            Family::Dedup => "duplicate index",
        }
    }
}

/// The first 8 bytes of a key, as stored.
pub(crate) fn prefix_of(key: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key[..8]);
    u64::from_be_bytes(first)
}

/// A derived-state listing key of one record: the family's byte, the key
/// prefix and the seq (value empty).
pub(crate) fn listing_key(family: Family, prefix: u64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(family.listing_byte());
    k.extend_from_slice(&prefix.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The (key prefix, seq) of a listing key.
pub(crate) fn parse_listing_key(key: &[u8]) -> Result<(u64, u64)> {
    let bad = || StoreError::Corrupt("an index listing key of the wrong length".into());
    let prefix = key.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(bad)?;
    let seq = key.get(9..17).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(bad)?;
    Ok((prefix, seq))
}

fn meta_key(family: Family, id: u64) -> Vec<u8> {
    let mut k = vec![RUN_META, family.byte()];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn block_key(family: Family, id: u64, block: u32) -> Vec<u8> {
    let mut k = vec![RUN_BLOCK, family.byte()];
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&block.to_be_bytes());
    k
}

/// A Bloom filter over key prefixes. The prefixes are the leading bytes of
/// SHA-256 outputs, uniform already, so the probe positions come from the
/// prefix itself (double hashing of its two halves).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    fn with_keys(count: usize) -> Bloom {
        let bits = (count as u64 * BLOOM_BITS_PER_KEY).max(64);
        Bloom { words: vec![0; bits.div_ceil(64) as usize] }
    }

    fn positions(&self, prefix: u64) -> impl Iterator<Item = u64> + use<> {
        let bits = self.words.len() as u64 * 64;
        let (h1, h2) = (prefix & 0xFFFF_FFFF, (prefix >> 32) | 1);
        (0..BLOOM_PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
    }

    fn insert(&mut self, prefix: u64) {
        for bit in self.positions(prefix) {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    fn may_contain(&self, prefix: u64) -> bool {
        self.positions(prefix).all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

/// One run: what its meta value holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    id: u64,
    /// The sequence numbers the run covers: `[lo, hi)`.
    lo: u64,
    hi: u64,
    records: u64,
    /// The first key prefix of each block.
    fences: Vec<u64>,
    bloom: Bloom,
}

impl Run {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(34 + self.fences.len() * 8 + self.bloom.words.len() * 8);
        out.push(META_VERSION);
        out.extend_from_slice(&self.lo.to_be_bytes());
        out.extend_from_slice(&self.hi.to_be_bytes());
        out.extend_from_slice(&self.records.to_be_bytes());
        out.extend_from_slice(&(self.fences.len() as u32).to_be_bytes());
        for fence in &self.fences {
            out.extend_from_slice(&fence.to_be_bytes());
        }
        out.extend_from_slice(&(self.bloom.words.len() as u32).to_be_bytes());
        for word in &self.bloom.words {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn decode(id: u64, family: Family, bytes: &[u8]) -> Result<Run> {
        let corrupt = |rule: &str| StoreError::Corrupt(format!("{} run {id}: meta {rule}", family.name()));
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8]> {
            if rest.len() < n {
                return Err(corrupt("is cut short"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let u64_at = |b: &[u8]| b.try_into().map(u64::from_be_bytes).map_err(|_| corrupt("is cut short"));
        let u32_at = |b: &[u8]| b.try_into().map(u32::from_be_bytes).map_err(|_| corrupt("is cut short"));
        if take(1)? != [META_VERSION] {
            return Err(corrupt("has an unknown version"));
        }
        let lo = u64_at(take(8)?)?;
        let hi = u64_at(take(8)?)?;
        let records = u64_at(take(8)?)?;
        let blocks = u32_at(take(4)?)? as usize;
        let fences = take(blocks.checked_mul(8).ok_or_else(|| corrupt("counts too many blocks"))?)?
            .chunks_exact(8)
            .map(u64_at)
            .collect::<Result<Vec<u64>>>()?;
        let words = u32_at(take(4)?)? as usize;
        let bloom = take(words.checked_mul(8).ok_or_else(|| corrupt("has too long a filter"))?)?
            .chunks_exact(8)
            .map(u64_at)
            .collect::<Result<Vec<u64>>>()?;
        if !rest.is_empty() {
            return Err(corrupt("has bytes past its end"));
        }
        // One record per entry covered.
        if lo > hi || records != hi - lo || records.div_ceil(BLOCK_RECORDS as u64) != blocks as u64 || bloom.is_empty()
        {
            return Err(corrupt("is inconsistent (range, record count, blocks or filter)"));
        }
        if !fences.is_sorted() {
            return Err(corrupt("has block fences out of order"));
        }
        Ok(Run { id, lo, hi, records, fences, bloom: Bloom { words: bloom } })
    }

    /// The run of `records` (sorted by key prefix, then seq) covering the
    /// sequence numbers `[lo, hi)`, and its sled keys and values.
    fn build(family: Family, id: u64, lo: u64, hi: u64, records: &[(u64, u64)]) -> (Run, Kvs) {
        let mut bloom = Bloom::with_keys(records.len());
        let mut fences = Vec::with_capacity(records.len().div_ceil(BLOCK_RECORDS));
        let mut kvs = Vec::with_capacity(fences.capacity() + 1);
        for (n, block) in records.chunks(BLOCK_RECORDS).enumerate() {
            let mut value = Vec::with_capacity(block.len() * RECORD);
            for &(prefix, seq) in block {
                value.extend_from_slice(&prefix.to_be_bytes());
                value.extend_from_slice(&seq.to_be_bytes());
                bloom.insert(prefix);
            }
            fences.push(block[0].0);
            kvs.push((block_key(family, id, n as u32), value));
        }
        let run = Run { id, lo, hi, records: records.len() as u64, fences, bloom };
        kvs.push((meta_key(family, id), run.encode()));
        (run, kvs)
    }

    fn decode_block(&self, family: Family, block: u32, bytes: &[u8]) -> Result<Vec<(u64, u64)>> {
        let expected = (self.records - u64::from(block) * BLOCK_RECORDS as u64).min(BLOCK_RECORDS as u64) as usize;
        if bytes.len() != expected * RECORD {
            return Err(StoreError::Corrupt(format!(
                "{} run {} block {block}: {} bytes, expected {} records of {RECORD}",
                family.name(),
                self.id,
                bytes.len(),
                expected
            )));
        }
        Ok(bytes
            .chunks_exact(RECORD)
            .map(|r| {
                let (p, s) = r.split_at(8);
                (
                    u64::from_be_bytes(p.try_into().unwrap_or_default()),
                    u64::from_be_bytes(s.try_into().unwrap_or_default()),
                )
            })
            .collect())
    }

    fn read_block(&self, tree: &sled::Tree, family: Family, block: u32) -> Result<Vec<(u64, u64)>> {
        let bytes = tree.get(block_key(family, self.id, block))?.ok_or_else(|| {
            StoreError::Corrupt(format!("{} run {} block {block} is missing", family.name(), self.id))
        })?;
        self.decode_block(family, block, &bytes)
    }

    /// Every record, in order, checked: sorted, within the run's range, in
    /// its filter and under its block's fence.
    fn all_records(&self, tree: &sled::Tree, family: Family) -> Result<Vec<(u64, u64)>> {
        let mut out = Vec::with_capacity(self.records as usize);
        for (block, fence) in self.fences.iter().enumerate() {
            let records = self.read_block(tree, family, block as u32)?;
            let bad =
                |rule: &str| StoreError::Corrupt(format!("{} run {} block {block}: {rule}", family.name(), self.id));
            if records.first().map(|r| r.0) != Some(*fence) {
                return Err(bad("its first key is not the block's fence"));
            }
            for &(prefix, seq) in &records {
                if out.last().is_some_and(|last| *last >= (prefix, seq)) {
                    return Err(bad("records out of order"));
                }
                if seq < self.lo || seq >= self.hi {
                    return Err(bad(&format!("entry {seq} is outside the run's range {}..{}", self.lo, self.hi)));
                }
                if !self.bloom.may_contain(prefix) {
                    return Err(bad("a key the run's filter does not hold"));
                }
                out.push((prefix, seq));
            }
        }
        Ok(out)
    }

    /// The seqs under `prefix` in this run.
    fn lookup(&self, tree: &sled::Tree, family: Family, prefix: u64) -> Result<Vec<u64>> {
        if !self.bloom.may_contain(prefix) {
            return Ok(Vec::new());
        }
        // The first block that can hold the prefix: the last one starting
        // below it (equal keys may continue from there), else the first one
        // starting at it.
        let first = self.fences.partition_point(|&f| f < prefix).saturating_sub(1);
        let mut out = Vec::new();
        for block in first..self.fences.len() {
            if self.fences[block] > prefix {
                break;
            }
            let records = self.read_block(tree, family, block as u32)?;
            out.extend(records.iter().filter(|r| r.0 == prefix).map(|r| r.1));
            if records.last().is_some_and(|r| r.0 > prefix) {
                break;
            }
        }
        Ok(out)
    }
}

/// The runs of one family, ordered by the sequence numbers they cover.
#[derive(Debug, Default)]
struct Set {
    runs: Vec<Arc<Run>>,
    next_id: u64,
}

/// One index family of one log: its runs in memory (metas: fences and
/// filters), its blocks in the index tree.
pub(crate) struct Runs {
    family: Family,
    set: RwLock<Set>,
}

impl Runs {
    pub fn empty(family: Family) -> Runs {
        Runs { family, set: RwLock::new(Set::default()) }
    }

    fn read(&self) -> RwLockReadGuard<'_, Set> {
        self.set.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Set> {
        self.set.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Loads the runs of `family` from the index tree, checks that they
    /// cover exactly `[0, watermark)`, and removes blocks of runs whose
    /// meta is gone (a merge cut short).
    pub fn load(tree: &sled::Tree, family: Family, watermark: u64) -> Result<Runs> {
        let mut runs = Vec::new();
        let mut next_id = 0u64;
        for kv in tree.scan_prefix([RUN_META, family.byte()]) {
            let (k, v) = kv?;
            let id =
                k.get(2..10).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(|| {
                    StoreError::Corrupt(format!("{} run meta key of the wrong length", family.name()))
                })?;
            runs.push(Arc::new(Run::decode(id, family, &v)?));
            next_id = next_id.max(id_after(family, id)?);
        }
        runs.sort_by_key(|r| r.lo);
        let mut covered = 0u64;
        for run in &runs {
            if run.lo != covered {
                return Err(StoreError::Corrupt(format!(
                    "{}: run {} covers entries {}..{}, but the runs before it end at {covered}",
                    family.name(),
                    run.id,
                    run.lo,
                    run.hi
                )));
            }
            covered = run.hi;
        }
        if covered != watermark {
            return Err(StoreError::Corrupt(format!(
                "{}: the runs cover the first {covered} entries, the index watermark says {watermark}",
                family.name()
            )));
        }
        // Orphaned blocks: step from one run id to the next.
        let live: std::collections::HashSet<u64> = runs.iter().map(|r| r.id).collect();
        let mut from = block_key(family, 0, 0);
        let end = [RUN_BLOCK, family.byte() + 1];
        let mut orphans = sled::Batch::default();
        let mut orphan_keys = 0usize;
        while let Some(kv) = tree.range(from.clone()..end.to_vec()).next() {
            let (k, _) = kv?;
            let id =
                k.get(2..10).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(|| {
                    StoreError::Corrupt(format!("{} run block key of the wrong length", family.name()))
                })?;
            if !live.contains(&id) {
                for key in tree.scan_prefix(&k[..10]).keys() {
                    orphans.remove(key?);
                    orphan_keys += 1;
                }
            }
            next_id = next_id.max(id_after(family, id)?);
            from = block_key(family, id_after(family, id)?, 0);
        }
        if orphan_keys > 0 {
            tracing::info!(family = family.name(), blocks = orphan_keys, "removing index run blocks a merge left");
            let applied = tree.apply_batch(orphans);
            crate::reclaim(orphan_keys);
            applied?;
        }
        Ok(Runs { family, set: RwLock::new(Set { runs, next_id }) })
    }

    /// The sequence numbers whose key starts as `key` does, ascending:
    /// candidates the caller confirms against the entries.
    pub fn candidates(&self, tree: &sled::Tree, key: &[u8; 32]) -> Result<Vec<u64>> {
        let prefix = prefix_of(key);
        let set = self.read();
        let mut out = Vec::new();
        for run in &set.runs {
            out.extend(run.lookup(tree, self.family, prefix)?);
        }
        Ok(out)
    }

    /// The run a follower step writes for the entries `[lo, hi)`: its keys
    /// go into the step's sled batch; [`Runs::install`] makes it visible
    /// once the batch is applied.
    pub fn prepare(&self, lo: u64, hi: u64, mut records: Vec<(u64, u64)>) -> Result<(Run, Kvs)> {
        records.sort_unstable();
        let mut set = self.write();
        let id = set.next_id;
        set.next_id = id_after(self.family, id)?;
        drop(set);
        Ok(Run::build(self.family, id, lo, hi, &records))
    }

    pub fn install(&self, run: Run) {
        self.write().runs.push(Arc::new(run));
    }

    /// Merges the newest [`FAN_IN`] runs while the oldest of them holds no
    /// more records than the other seven together and all eight at most
    /// [`MAX_RUN`]. The caller holds the
    /// follower's work lock (no other writer of runs).
    pub fn merge(&self, tree: &sled::Tree) -> Result<()> {
        loop {
            let (old, id) = {
                let mut set = self.write();
                let n = set.runs.len();
                if n < FAN_IN {
                    return Ok(());
                }
                // The oldest of the newest FAN_IN runs must hold no more
                // records than the other seven together: runs of mixed
                // sizes (a node's steps vary) still merge, and a big run is
                // not rewritten for a few small ones.
                let tail = &set.runs[n - FAN_IN..];
                let newer: u64 = tail[1..].iter().map(|r| r.records).sum();
                if tail[0].records + newer > MAX_RUN || tail[0].records > newer {
                    return Ok(());
                }
                let old: Vec<Arc<Run>> = tail.to_vec();
                let id = set.next_id;
                set.next_id = id_after(self.family, id)?;
                (old, id)
            };
            let mut records = Vec::new();
            for run in &old {
                records.extend(run.all_records(tree, self.family)?);
            }
            records.sort_unstable();
            let (lo, hi) = (old[0].lo, old[old.len() - 1].hi);
            let (run, kvs) = Run::build(self.family, id, lo, hi, &records);
            // 1. The new run appears and the old ones disappear, atomically.
            let mut batch = sled::Batch::default();
            let keys = kvs.len() + old.len();
            for (k, v) in kvs {
                batch.insert(k, v);
            }
            for run in &old {
                batch.remove(meta_key(self.family, run.id));
            }
            let applied = tree.apply_batch(batch);
            crate::reclaim(keys);
            applied?;
            // 2. Readers see the new set from here on; none still reads the
            //    old runs once the write lock is ours.
            {
                let mut set = self.write();
                let keep = set.runs.len() - old.len();
                set.runs.truncate(keep);
                set.runs.push(Arc::new(run));
            }
            // 3. The old runs' blocks go.
            let mut batch = sled::Batch::default();
            let mut keys = 0;
            for run in &old {
                for block in 0..run.fences.len() {
                    batch.remove(block_key(self.family, run.id, block as u32));
                    keys += 1;
                }
            }
            let applied = tree.apply_batch(batch);
            crate::reclaim(keys);
            applied?;
        }
    }

    /// Every record of every run, checked ([`Run`]'s rules), as listing
    /// keys.
    pub fn listing(&self, tree: &sled::Tree) -> Result<Vec<Vec<u8>>> {
        let set = self.read();
        let mut out = Vec::new();
        for run in &set.runs {
            for (prefix, seq) in run.all_records(tree, self.family)? {
                out.push(listing_key(self.family, prefix, seq));
            }
        }
        Ok(out)
    }

    /// Runs built from `records` (one per entry `[0, size)`, in any
    /// order), [`MAX_RUN`] entries' worth each, with ids past every run key
    /// stored now (read here, not from the set: a rebuild may start from an
    /// empty set over a damaged tree), so the caller can write them before
    /// it removes the stored runs. Returns the new runs and their keys;
    /// [`Runs::install_all`] swaps the set once they are written.
    pub fn rebuild(&self, tree: &sled::Tree, size: u64, mut records: Vec<(u64, u64)>) -> Result<(Vec<Run>, Kvs)> {
        let mut next_id = self.read().next_id;
        for prefix in [RUN_META, RUN_BLOCK] {
            for k in tree.scan_prefix([prefix, self.family.byte()]).keys() {
                let k = k?;
                // An id out of range is damage the rebuild removes; it
                // does not stop the rebuild.
                if let Some(next) = k
                    .get(2..10)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .and_then(|id| id_after(self.family, id).ok())
                {
                    next_id = next_id.max(next);
                }
            }
        }
        records.sort_unstable_by_key(|r| r.1);
        if records.len() as u64 != size || records.iter().zip(0u64..).any(|(r, seq)| r.1 != seq) {
            return Err(StoreError::Corrupt(format!(
                "{}: a rebuild needs one record per entry of {size}, got {}",
                self.family.name(),
                records.len()
            )));
        }
        let mut runs = Vec::new();
        let mut keys = Vec::new();
        let mut rest = &records[..];
        let mut lo = 0u64;
        while lo < size {
            let hi = (lo + MAX_RUN).min(size);
            let (part, after) = rest.split_at(rest.partition_point(|r| r.1 < hi));
            rest = after;
            let mut part = part.to_vec();
            part.sort_unstable();
            let id = next_id;
            next_id = id_after(self.family, id)?;
            let (run, kvs) = Run::build(self.family, id, lo, hi, &part);
            keys.extend(kvs);
            runs.push(run);
            lo = hi;
        }
        self.write().next_id = next_id;
        Ok((runs, keys))
    }

    pub fn install_all(&self, runs: Vec<Run>) {
        self.write().runs = runs.into_iter().map(Arc::new).collect();
    }

    /// Runs held now.
    pub fn run_count(&self) -> usize {
        self.read().runs.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ok<T>(r: Result<T>) -> T {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    fn key(n: u64) -> [u8; 32] {
        qtrace_ledger::merkle::leaf_hash(&n.to_be_bytes())
    }

    fn tree() -> sled::Tree {
        ok(sled::Config::new().temporary(true).open().and_then(|db| db.open_tree("t")).map_err(StoreError::from))
    }

    /// Follower steps of the given sizes over entries whose key is
    /// `key(seq % modulo)`: every lookup finds exactly the entries with
    /// that key, across merges, a reload and a rebuild.
    fn steps(sizes: &[u64], modulo: u64) {
        let tree = tree();
        let runs = Runs::empty(Family::Hash);
        let mut lo = 0u64;
        for &size in sizes {
            let hi = lo + size;
            let records = (lo..hi).map(|seq| (prefix_of(&key(seq % modulo)), seq)).collect();
            let (run, kvs) = ok(runs.prepare(lo, hi, records));
            for (k, v) in kvs {
                ok(tree.insert(k, v).map_err(StoreError::from));
            }
            runs.install(run);
            ok(runs.merge(&tree));
            lo = hi;
        }
        let check = |runs: &Runs, what: &str| {
            for k in 0..modulo.min(lo) {
                let want: Vec<u64> = (0..lo).filter(|seq| seq % modulo == k).collect();
                assert_eq!(ok(runs.candidates(&tree, &key(k))), want, "{what}: key {k}");
            }
            assert_eq!(ok(runs.candidates(&tree, &key(modulo + 7))), Vec::<u64>::new(), "{what}: absent key");
            assert_eq!(ok(runs.listing(&tree)).len() as u64, lo, "{what}: one record per entry");
        };
        check(&runs, "after the steps");
        let reloaded = ok(Runs::load(&tree, Family::Hash, lo));
        assert_eq!(reloaded.run_count(), runs.run_count());
        check(&reloaded, "reloaded");
        assert!(Runs::load(&tree, Family::Hash, lo + 1).is_err(), "a watermark past the runs is refused");
        let records = (0..lo).map(|seq| (prefix_of(&key(seq % modulo)), seq)).collect();
        let old: Vec<sled::IVec> = tree.iter().keys().collect::<std::result::Result<_, _>>().unwrap_or_default();
        let (fresh, kvs) = ok(reloaded.rebuild(&tree, lo, records));
        for (k, v) in kvs {
            assert!(!old.iter().any(|o| o.as_ref() == k.as_slice()), "a rebuilt run overwrites a stored key");
            ok(tree.insert(k, v).map_err(StoreError::from));
        }
        reloaded.install_all(fresh);
        for k in old {
            ok(tree.remove(k).map_err(StoreError::from));
        }
        check(&reloaded, "rebuilt");
        check(&ok(Runs::load(&tree, Family::Hash, lo)), "rebuilt and reloaded");
    }

    #[test]
    fn lookups_hold_across_merges_reloads_and_rebuilds() {
        // (step sizes, distinct keys): unique keys; keys repeated across
        // runs; many equal keys spanning blocks; a merge of each level.
        let cases: &[(&[u64], u64)] =
            &[(&[1], 1_000), (&[300, 1, 5, 700], 10_000), (&[100; 9], 13), (&[600, 600], 2), (&[50; 70], 1_000_000)];
        for (sizes, modulo) in cases {
            steps(sizes, *modulo);
        }
    }

    #[test]
    fn merges_keep_runs_few_whatever_the_step_size() {
        let tree = tree();
        let runs = Runs::empty(Family::Dedup);
        for step in 0..(FAN_IN * FAN_IN * 2 + 3) as u64 {
            let (run, kvs) = ok(runs.prepare(step, step + 1, vec![(prefix_of(&key(step)), step)]));
            for (k, v) in kvs {
                ok(tree.insert(k, v).map_err(StoreError::from));
            }
            runs.install(run);
            ok(runs.merge(&tree));
        }
        // 131 one-entry steps: each run holds more than the seven after it
        // together (else they would have merged), and three are still
        // single entries.
        let sizes: Vec<u64> = runs.read().runs.iter().map(|r| r.records).collect();
        assert_eq!(sizes, [106, 22, 1, 1, 1]);
        // The merged runs' blocks are gone: only the live runs' remain.
        let blocks = tree.scan_prefix([RUN_BLOCK]).count();
        assert_eq!(blocks, 5, "one block per live run");
        // A quiet node indexes an entry a step: after 5,000 such steps, at
        // most seven runs of each of the five size classes below 8^4, and
        // every entry still found.
        for step in 131..5_000u64 {
            let (run, kvs) = ok(runs.prepare(step, step + 1, vec![(prefix_of(&key(step)), step)]));
            for (k, v) in kvs {
                ok(tree.insert(k, v).map_err(StoreError::from));
            }
            runs.install(run);
            ok(runs.merge(&tree));
        }
        assert!(runs.run_count() <= 7 * 5, "{} runs", runs.run_count());
        // Steps whose sizes straddle a class boundary (7 and 9 entries,
        // classes 0 and 1) or vary at random still merge.
        for sizes in [vec![7u64, 9], vec![1, 13, 2, 40, 5, 8, 3, 100, 64, 63]] {
            let tree = self::tree();
            let runs = Runs::empty(Family::Hash);
            let mut lo = 0;
            for size in sizes.iter().cycle().take(1_500) {
                let records = (lo..lo + size).map(|seq| (prefix_of(&key(seq)), seq)).collect();
                let (run, kvs) = ok(runs.prepare(lo, lo + size, records));
                for (k, v) in kvs {
                    ok(tree.insert(k, v).map_err(StoreError::from));
                }
                runs.install(run);
                ok(runs.merge(&tree));
                lo += size;
            }
            assert!(runs.run_count() <= 7 * (class(lo) as usize + 1), "{} runs for {lo} entries", runs.run_count());
            for seq in (0..lo).step_by(101) {
                assert_eq!(ok(runs.candidates(&tree, &key(seq))), [seq]);
            }
        }
        for step in (0..5_000u64).step_by(37) {
            assert_eq!(ok(runs.candidates(&tree, &key(step))), [step]);
        }
    }

    #[test]
    fn orphaned_blocks_are_removed_and_damage_is_named() {
        let tree = self::tree();
        let runs = Runs::empty(Family::Hash);
        let (run, kvs) = ok(runs.prepare(0, 300, (0..300).map(|s| (prefix_of(&key(s)), s)).collect()));
        for (k, v) in kvs {
            ok(tree.insert(k, v).map_err(StoreError::from));
        }
        runs.install(run);
        // A merge cut short between its two batches left these.
        ok(tree.insert(block_key(Family::Hash, 9, 0), vec![0; 16]).map_err(StoreError::from));
        ok(tree.insert(block_key(Family::Hash, 9, 1), vec![0; 16]).map_err(StoreError::from));
        let loaded = ok(Runs::load(&tree, Family::Hash, 300));
        assert_eq!(tree.scan_prefix(&block_key(Family::Hash, 9, 0)[..10]).count(), 0);
        assert_eq!(ok(loaded.candidates(&tree, &key(17))), [17]);
        // (damage, what the error names)
        type Damage = fn(&sled::Tree);
        let cases: Vec<(Damage, &str)> = vec![
            (|t| drop(t.remove(block_key(Family::Hash, 0, 1))), "block 1 is missing"),
            (|t| drop(t.insert(block_key(Family::Hash, 0, 0), vec![1; 15])), "15 bytes"),
            (|t| drop(t.insert(meta_key(Family::Hash, 0), vec![1, 0])), "cut short"),
        ];
        for (damage, says) in cases {
            let copy = self::tree();
            for kv in tree.iter() {
                let (k, v) = ok(kv.map_err(StoreError::from));
                ok(copy.insert(k, v).map_err(StoreError::from));
            }
            damage(&copy);
            let error = Runs::load(&copy, Family::Hash, 300).and_then(|r| r.listing(&copy).map(drop));
            match error {
                Err(e) => assert!(e.to_string().contains(says), "{e}"),
                Ok(()) => panic!("damage not found: {says}"),
            }
        }
    }

    #[test]
    fn size_classes_are_powers_of_eight() {
        for (records, want) in
            [(0u64, 0u32), (1, 0), (7, 0), (8, 1), (63, 1), (64, 2), (8_192, 4), (65_536, 5), (MAX_RUN, 6)]
        {
            assert_eq!(class(records), want, "{records} records");
        }
    }

    proptest! {
        #[test]
        fn bloom_holds_every_key_it_was_given(keys in proptest::collection::vec(any::<u64>(), 1..500)) {
            let mut bloom = Bloom::with_keys(keys.len());
            for k in &keys {
                bloom.insert(*k);
            }
            for k in &keys {
                prop_assert!(bloom.may_contain(*k));
            }
        }
    }
}
