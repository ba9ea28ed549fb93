//! A log's Merkle hashes as C2SP tlog-tiles under the `T` prefix.
//!
//! Key `T ‖ tile level (u8) ‖ tile index (u64 BE)`, value the tile's hashes
//! concatenated (see [`qtrace_ledger::tiles`]): the tiles of tile level `L`
//! hold the tree's nodes of level `8·L`, 256 to a tile, and the rightmost
//! tile of a level is rewritten, wider, as it fills. Every other node is
//! hashed up from a tile when a proof needs it, so a log of `n` entries
//! keeps about `n / 255` tile keys instead of `2·n` node keys, and an
//! append batch writes each tile it touched once.

use qtrace_ledger::hash::LogId;
use qtrace_ledger::merkle::{CompactRange, Hash, NodeId, NodeSource, TreeError};
use qtrace_ledger::tiles::{TileCache, TileError, TileId, TileNodes, TileSource, TileWriter};

use crate::{Result, StoreError};

pub(crate) const TILE: u8 = b'T';

pub(crate) fn tile_key(id: TileId) -> Vec<u8> {
    let mut k = Vec::with_capacity(10);
    k.push(TILE);
    k.push(id.level);
    k.extend_from_slice(&id.index.to_be_bytes());
    k
}

/// The tiles of one log's tree, read from sled.
#[derive(Clone, Copy)]
pub(crate) struct SledTiles<'a>(pub(crate) &'a sled::Tree);

impl TileSource for SledTiles<'_> {
    type Error = sled::Error;

    fn tile(&self, id: TileId) -> std::result::Result<Option<Vec<u8>>, sled::Error> {
        Ok(self.0.get(tile_key(id))?.map(|v| v.to_vec()))
    }
}

/// A node source over the log's tiles; make one per proof, it keeps the
/// tiles it reads.
pub(crate) fn nodes(tree: &sled::Tree) -> TileNodes<'static, SledTiles<'_>> {
    TileNodes::new(SledTiles(tree))
}

/// [`nodes`] sharing the inner nodes of tiles through the log's cache.
pub(crate) fn cached_nodes<'a>(tree: &'a sled::Tree, cache: &'a TileCache) -> TileNodes<'a, SledTiles<'a>> {
    TileNodes::cached(SledTiles(tree), cache)
}

/// A tile read that failed: sled's own error as it is, anything about the
/// tile's contents as corruption naming the tile.
pub(crate) fn tile_error(error: TileError<sled::Error>) -> StoreError {
    match error {
        TileError::Source { source, .. } => StoreError::Sled(source),
        other => StoreError::Corrupt(format!("merkle tiles: {other}")),
    }
}

/// A root or proof that could not be computed from the tiles.
pub(crate) fn tree_error(error: TreeError<TileError<sled::Error>>) -> StoreError {
    match error {
        TreeError::Source { source, .. } => tile_error(source),
        other => StoreError::Merkle(format!("{other}")),
    }
}

/// The writer's end of the tree: the compact range (for the root) and the
/// partial tiles (for the tile writes), advanced together.
#[derive(Clone, Debug, Default)]
pub(crate) struct Frontier {
    range: CompactRange,
    tiles: TileWriter,
}

impl Frontier {
    /// The frontier of the log's tree at `size` entries, from its tiles.
    pub(crate) fn load(tree: &sled::Tree, size: u64) -> Result<Self> {
        let tiles = TileWriter::from_tiles(size, &SledTiles(tree)).map_err(tile_error)?;
        let range = CompactRange::from_nodes(size, &nodes(tree)).map_err(tree_error)?;
        Ok(Frontier { range, tiles })
    }

    /// Adds one leaf; the tiles it changes are kept until [`Frontier::drain`].
    pub(crate) fn append(&mut self, leaf: Hash) -> Result<()> {
        let tiles = &mut self.tiles;
        let mut order = Ok(());
        self.range
            .append(leaf, |id: NodeId, hash: Hash| {
                if let Err(e) = tiles.add(id, hash)
                    && order.is_ok()
                {
                    order = Err(StoreError::Corrupt(format!("merkle tiles: {e}")));
                }
            })
            .map_err(|_| StoreError::Merkle("the log is full (2^64 - 1 entries)".into()))?;
        order
    }

    pub(crate) fn root(&self) -> Hash {
        self.range.root()
    }

    /// Every tile changed since the last drain, as sled keys and values.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + use<> {
        self.tiles.drain().into_iter().map(|(id, bytes)| (tile_key(id), bytes))
    }
}

/// The hash of the last entry of a log of `size` entries: the log id for
/// an empty log.
pub(crate) fn last_leaf(tree: &sled::Tree, log_id: LogId, size: u64) -> Result<[u8; 32]> {
    match size.checked_sub(1) {
        None => Ok(log_id.0),
        Some(last) => nodes(tree).node(NodeId::leaf(last)).map_err(tile_error),
    }
}

#[cfg(test)]
mod tests {
    use qtrace_ledger::merkle::{self, MemTree, leaf_hash};
    use qtrace_ledger::tiles::partial_tiles;

    use super::*;

    fn ok<T>(r: Result<T>) -> T {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Writes `n` leaves in batches of `batch` through a frontier into a
    /// sled tree, as appends do, reloading the frontier from sled between
    /// batches when `reload`.
    fn written(n: u64, batch: usize, reload: bool) -> (sled::Db, sled::Tree, MemTree) {
        let db = ok(sled::Config::new().temporary(true).open().map_err(StoreError::from));
        let tree = ok(db.open_tree("log").map_err(StoreError::from));
        let mut frontier = Frontier::default();
        let mut mem = MemTree::new();
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        for chunk in leaves.chunks(batch) {
            if reload {
                frontier = ok(Frontier::load(&tree, mem.size()));
            }
            let mut writes = sled::Batch::default();
            for leaf in chunk {
                ok(frontier.append(*leaf));
                mem.append(*leaf).unwrap_or_else(|e| panic!("{e}"));
            }
            for (k, v) in frontier.drain() {
                writes.insert(k, v);
            }
            ok(tree.apply_batch(writes).map_err(StoreError::from));
            assert_eq!(frontier.root(), mem.root());
        }
        (db, tree, mem)
    }

    #[test]
    fn sled_tiles_serve_proofs_at_every_size() {
        for (n, batch, reload) in [(1u64, 1, false), (3, 1, true), (300, 3, true), (700, 100, false), (600, 64, true)] {
            let (_db, tree, mem) = written(n, batch, reload);
            let keys = tree.scan_prefix([TILE]).count();
            let want = n.div_ceil(256) as usize + usize::from(n >= 256) * ((n >> 8) as usize).div_ceil(256);
            assert_eq!(keys, want, "{n} leaves in batches of {batch}: tile keys");
            for (tile, width) in partial_tiles(n) {
                let stored = ok(tree.get(tile_key(tile)).map_err(StoreError::from)).map(|v| v.len() / 32);
                assert_eq!(stored, Some(width), "{tile} at {n}");
            }
            for size in 1..=n {
                let nodes = nodes(&tree);
                assert_eq!(ok(merkle::root(&nodes, size).map_err(tree_error)), ok_mem(mem.root_at(size)));
                let leaf = size / 3;
                assert_eq!(
                    ok(merkle::inclusion_proof(&nodes, leaf, size).map_err(tree_error)),
                    ok_mem(mem.inclusion_proof(leaf, size)),
                    "{leaf} in {size}"
                );
                let old = 1 + size / 2;
                assert_eq!(
                    ok(merkle::consistency_proof(&nodes, old, size).map_err(tree_error)),
                    ok_mem(mem.consistency_proof(old, size)),
                    "{old} -> {size}"
                );
                assert!(nodes.tiles_read() <= 4, "{} tiles for one size of {n}", nodes.tiles_read());
            }
            assert_eq!(ok(last_leaf(&tree, LogId([9; 32]), n)), leaf_hash(&(n - 1).to_le_bytes()));
        }
    }

    fn ok_mem<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> T {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn damaged_tiles_are_named() {
        type Damage = fn(&sled::Tree);
        let cases: [(&str, Damage, &str); 3] = [
            (
                "a partial tile cut short",
                |t| {
                    ok(t.insert(tile_key(TileId::new(0, 1)), vec![0; 32]).map_err(StoreError::from));
                },
                "tile (level 0, index 1)",
            ),
            (
                "a tile removed",
                |t| {
                    ok(t.remove(tile_key(TileId::new(1, 0))).map_err(StoreError::from));
                },
                "tile (level 1, index 0)",
            ),
            (
                "a tile of a ragged length",
                |t| {
                    ok(t.insert(tile_key(TileId::new(0, 0)), vec![0; 100]).map_err(StoreError::from));
                },
                "is 100 bytes",
            ),
        ];
        for (name, damage, says) in cases {
            let (_db, tree, _) = written(300, 300, false);
            damage(&tree);
            // Loading reads the partial tiles and the frontier; a proof of
            // the first leaf reads the first full tile.
            let read = Frontier::load(&tree, 300)
                .and_then(|_| merkle::inclusion_proof(&nodes(&tree), 0, 300).map_err(tree_error).map(|_| ()));
            match read {
                Err(StoreError::Corrupt(message)) => assert!(message.contains(says), "{name}: {message}"),
                Err(other) => panic!("{name}: {other}"),
                Ok(()) => panic!("{name}: read"),
            }
        }
    }
}

/// Appends through [`crate::LogStore`] in random batch sizes; the proofs the
/// store serves from its tiles equal MemTree's at every size.
#[cfg(test)]
mod appends {
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use qtrace_ledger::merkle::{self, MemTree};

    use crate::tests::{new_entries, sample_log, sign, tree_of};
    use crate::{NewEntry, SledStore};

    fn log() -> &'static (qtrace_ledger::hash::LogId, Vec<NewEntry>, MemTree) {
        static LOG: OnceLock<(qtrace_ledger::hash::LogId, Vec<NewEntry>, MemTree)> = OnceLock::new();
        LOG.get_or_init(|| {
            let log = sample_log(300);
            let new = new_entries(&log.entries);
            let tree = tree_of(&new);
            (log.log_id, new, tree)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn proofs_from_appended_tiles_equal_memtree(
            batches in proptest::collection::vec(1usize..90, 1..12),
            picks in proptest::collection::vec(any::<(u64, u64)>(), 6),
        ) {
            let (log_id, new, tree) = log();
            let store = SledStore::temporary().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let logs = store.log(*log_id).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut at = 0;
            for size in batches.iter().copied().chain(std::iter::once(new.len())) {
                let end = (at + size).min(new.len());
                if end == at {
                    break;
                }
                let head = logs.append(&new[at..end], false, sign).map_err(|e| TestCaseError::fail(e.to_string()))?;
                at = end;
                let size = at as u64;
                prop_assert_eq!(Ok(head.root), tree.root_at(size));
                prop_assert_eq!(logs.root(size).ok(), tree.root_at(size).ok());
                for (a, b) in &picks {
                    let leaf = a % size;
                    let old = 1 + b % size;
                    prop_assert_eq!(logs.inclusion_proof(leaf, size).ok(), tree.inclusion_proof(leaf, size).ok());
                    prop_assert_eq!(logs.consistency_proof(old, size).ok(), tree.consistency_proof(old, size).ok());
                }
            }
            prop_assert_eq!(logs.root(300).ok(), Some(merkle::root(tree, 300).map_err(|e| TestCaseError::fail(e.to_string()))?));
        }
    }
}
