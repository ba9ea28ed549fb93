//! The layout-1 writer, kept only to build old stores for the migration's
//! tests (feature `legacy-fixture`, and this crate's unit tests).
//!
//! A frozen, minimal copy of the append of layout 1: per entry, in one sled
//! batch with the checkpoint, `E` seq → entry, `H` hash → seq, `N` one key
//! per perfect Merkle node (`N ‖ level ‖ index BE` → hash), `D` dedup key →
//! seq and `I ‖ index key ‖ seq` → empty for every index key and the signer;
//! then a flush. It writes no layout marker. Its index-key bytes are copied
//! here, not shared with the current code, so the fixture stays layout 1
//! whatever the current layout becomes.

use std::path::Path;

use qtrace_ledger::event::IndexKey;
use qtrace_ledger::hash::{EntryHash, LogId, dedup_key};
use qtrace_ledger::merkle::{CompactRange, Hash, NodeId, NodeSource};

use crate::{NewEntry, Result, StoreError, seq_from_key};

/// A store written in layout 1.
pub struct LegacyStore {
    db: sled::Db,
}

impl LegacyStore {
    /// Opens (or creates) a sled database in `dir` without a layout marker.
    pub fn create(dir: &Path) -> Result<Self> {
        Ok(LegacyStore { db: crate::open_db(dir, crate::DEFAULT_CACHE_BYTES)? })
    }

    /// Writes a `meta` value, as the node's federation code did.
    pub fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.open_tree("meta")?.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    /// Appends sequenced entries to the log `log_id` in layout 1, with the
    /// checkpoint `sign` makes for the new size and root (when it gives
    /// one).
    pub fn append<E: std::fmt::Display>(
        &self,
        log_id: LogId,
        entries: &[NewEntry],
        sign: impl FnOnce(u64, &Hash) -> std::result::Result<Option<String>, E>,
    ) -> Result<()> {
        let tree = self.db.open_tree(format!("log/{}", log_id.to_hex()))?;
        let size = match tree.scan_prefix([b'E']).next_back() {
            None => 0,
            Some(kv) => seq_from_key(&kv?.0)? + 1,
        };
        let mut range = CompactRange::from_nodes(size, &OldNodes(&tree))
            .map_err(|e| StoreError::Corrupt(format!("layout-1 Merkle nodes: {e}")))?;
        let mut prev = match size.checked_sub(1) {
            None => EntryHash(log_id.0),
            Some(last) => EntryHash(OldNodes(&tree).node(NodeId::leaf(last))?),
        };
        let mut batch = sled::Batch::default();
        let mut expected = size;
        for new in entries {
            let entry = &new.entry;
            if entry.seq != expected {
                return Err(StoreError::Sequence { expected, found: entry.seq });
            }
            if entry.prev_hash != prev {
                return Err(StoreError::Chain { seq: entry.seq });
            }
            let seq = entry.seq.to_be_bytes();
            batch.insert(key(b'E', &seq), entry.encode());
            batch.insert(key(b'H', &new.hash.0), seq.to_vec());
            batch.insert(key(b'D', &dedup_key(&entry.signer, &entry.event)), seq.to_vec());
            let signer = IndexKey::Signer(entry.signer);
            for index in crate::follower::index_keys_of(&new.entry, None).iter().chain(std::iter::once(&signer)) {
                let mut k = index_prefix(index);
                k.extend_from_slice(&seq);
                batch.insert(k, Vec::new());
            }
            range
                .append(new.hash.0, |id, hash| {
                    let mut k = vec![b'N', id.level];
                    k.extend_from_slice(&id.index.to_be_bytes());
                    batch.insert(k, hash.to_vec());
                })
                .map_err(|_| StoreError::Merkle("the log is full".into()))?;
            prev = new.hash;
            expected += 1;
        }
        let signed = sign(expected, &range.root())
            .map_err(|e| StoreError::Checkpoint { size: expected, reason: e.to_string() })?;
        if let Some(note) = signed {
            batch.insert(key(b'C', &expected.to_be_bytes()), note.into_bytes());
        }
        tree.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

/// Layout 1's `N` keys as a node source.
struct OldNodes<'a>(&'a sled::Tree);

impl NodeSource for OldNodes<'_> {
    type Error = StoreError;

    fn node(&self, id: NodeId) -> Result<Hash> {
        let mut k = vec![b'N', id.level];
        k.extend_from_slice(&id.index.to_be_bytes());
        let value = self.0.get(k)?.ok_or_else(|| StoreError::Corrupt(format!("layout-1 {id} is missing")))?;
        <[u8; 32]>::try_from(&value[..]).map_err(|_| StoreError::Corrupt(format!("layout-1 {id} is not 32 bytes")))
    }
}

/// Layout 1's index key bytes (`I` and a kind byte, then the key's parts;
/// variable parts end in 0x00).
fn index_prefix(index: &IndexKey) -> Vec<u8> {
    let mut k = vec![b'I'];
    let mut text = |kind: u8, parts: &[&[u8]], terminated: bool| {
        k.push(kind);
        for part in parts {
            k.extend_from_slice(part);
        }
        if terminated {
            k.push(0);
        }
    };
    match index {
        IndexKey::Gtin(g) => text(b'g', &[g.as_str().as_bytes()], false),
        IndexKey::Lot(g, lot) => text(b'l', &[g.as_str().as_bytes(), lot.as_str().as_bytes()], true),
        IndexKey::Serial(g, serial) => text(b's', &[g.as_str().as_bytes(), serial.as_str().as_bytes()], true),
        IndexKey::Certificate(issuer, number) => text(b'c', &[issuer.as_str().as_bytes(), number.as_bytes()], true),
        IndexKey::Organisation(u) => text(b'o', &[u.as_str().as_bytes()], false),
        IndexKey::Parent(log, seq) => text(b'p', &[&log.0, &seq.to_be_bytes()], false),
        IndexKey::Signer(signer) => text(b'k', &[signer], false),
        IndexKey::Registry => text(b'r', &[], false),
        IndexKey::Creates(g, lot) => text(b'C', &[g.as_str().as_bytes(), lot.as_str().as_bytes()], true),
        IndexKey::Tests(g, lot) => text(b'T', &[g.as_str().as_bytes(), lot.as_str().as_bytes()], true),
        IndexKey::RecallOf(g) => text(b'R', &[g.as_str().as_bytes()], false),
        IndexKey::CertifiedFor(digits) => text(b'F', &[digits.as_bytes()], true),
        IndexKey::Corrects(log, seq) => text(b'X', &[&log.0, &seq.to_be_bytes()], false),
    }
    k
}
