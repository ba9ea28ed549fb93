//! Merkle hashes stored as C2SP tlog-tiles: the arithmetic, no I/O.
//!
//! A tile holds up to 256 consecutive hashes of one tree level. A tile of
//! tile level `L` holds the perfect-subtree hashes of tree level `8·L`; tile
//! index `N` holds the nodes `256·N .. 256·N + 255` of that level. A tile
//! with fewer than 256 hashes is partial: it is the rightmost tile of its
//! level and grows (is rewritten wider) as the log grows; a full tile never
//! changes again. This is the arrangement of C2SP tlog-tiles
//! (<https://c2sp.org/tlog-tiles>), so the same tiles can later be served
//! over HTTP under [`TileId::path`].
//!
//! # Exact bytes
//!
//! A tile's value is its hashes concatenated, 32 bytes each, left to right;
//! its width is the value's length divided by 32.
//!
//! # How a node is found
//!
//! The node at tree level `l` and index `i` lies in tile level `l / 8`: its
//! leaves at tree level `8·(l / 8)` are the `2^(l % 8)` hashes starting at
//! `i · 2^(l % 8)`, which all fall in the tile with index
//! `(i · 2^(l % 8)) / 256` (they are aligned and at most 128 of them), and
//! hashing them up `l % 8` levels gives the node ([`TileId::of_node`],
//! [`hash_up`]). [`TileNodes`] serves [`NodeSource`] that way from any
//! [`TileSource`], reading each tile once per value of `TileNodes`, so a
//! proof over `n` leaves reads O(log n / 8) tiles.
//!
//! Writing: [`TileWriter`] keeps the partial tile of every level in memory
//! and takes the nodes [`CompactRange::append`](crate::merkle::CompactRange::append)
//! completes; after a batch of appends, [`TileWriter::drain`] hands out each
//! tile the batch touched once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::ops::Range;

use crate::merkle::{Hash, NodeId, NodeSource, node_hash};

/// Tree levels per tile level.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: usize = 256;
/// Bytes of one hash in a tile.
pub const HASH_BYTES: usize = 32;

/// The address of a tile: tile level and tile index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level `L`: the tile holds nodes of tree level `8·L`.
    pub level: u8,
    /// Tile index `N`: the tile holds nodes `256·N .. 256·N + 255`.
    pub index: u64,
}

impl TileId {
    pub const fn new(level: u8, index: u64) -> Self {
        TileId { level, index }
    }

    /// The tile holding the hashes node `id` is computed from, and their
    /// positions in it. `None` for a node no tree of at most `u64::MAX`
    /// leaves holds.
    pub fn of_node(id: NodeId) -> Option<(TileId, Range<usize>)> {
        let level = id.level / TILE_HEIGHT;
        let sub = u32::from(id.level % TILE_HEIGHT);
        // `id.level < 64` for any node of a real tree; the node's leaf range
        // must fit in u64, which also bounds the shift below.
        id.leaf_range()?;
        let first = id.index.checked_mul(1u64 << sub)?;
        let start = (first % TILE_WIDTH as u64) as usize;
        // first is a multiple of 2^sub and 2^sub divides 256, so the run of
        // 2^sub hashes ends inside the tile.
        Some((TileId { level, index: first / TILE_WIDTH as u64 }, start..start + (1usize << sub)))
    }

    /// The C2SP tlog-tiles path of this tile at `width` hashes:
    /// `tile/<L>/<N>` for a full tile, `tile/<L>/<N>.p/<W>` for a partial
    /// one, with `N` written in 3-digit path elements, all but the last
    /// prefixed with `x` (`1234067` → `x001/x234/067`).
    pub fn path(&self, width: usize) -> String {
        let mut groups = Vec::new();
        let mut rest = self.index;
        loop {
            groups.push(rest % 1000);
            rest /= 1000;
            if rest == 0 {
                break;
            }
        }
        let mut out = format!("tile/{}/", self.level);
        for (i, group) in groups.iter().rev().enumerate() {
            if i + 1 < groups.len() {
                out.push_str(&format!("x{group:03}/"));
            } else {
                out.push_str(&format!("{group:03}"));
            }
        }
        if width < TILE_WIDTH {
            out.push_str(&format!(".p/{width}"));
        }
        out
    }

    /// The width of this tile in the tree of `size` leaves: 256 when full,
    /// 1..=255 when partial, 0 when the tree has none of its nodes yet.
    pub fn width_at(&self, size: u64) -> usize {
        let nodes = nodes_at(self.level, size);
        let before = self.index.saturating_mul(TILE_WIDTH as u64);
        nodes.saturating_sub(before).min(TILE_WIDTH as u64) as usize
    }
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tile (level {}, index {})", self.level, self.index)
    }
}

/// Complete nodes of tree level `8·tile_level` in a tree of `size` leaves.
fn nodes_at(tile_level: u8, size: u64) -> u64 {
    size.checked_shr(u32::from(tile_level) * u32::from(TILE_HEIGHT)).unwrap_or(0)
}

/// The partial tiles of a tree of `size` leaves, lowest level first: for
/// every tile level with a partial tile, its id and width.
pub fn partial_tiles(size: u64) -> impl Iterator<Item = (TileId, usize)> {
    (0..u64::BITS as u8 / TILE_HEIGHT).filter_map(move |level| {
        let nodes = nodes_at(level, size);
        let width = (nodes % TILE_WIDTH as u64) as usize;
        (width > 0).then(|| (TileId::new(level, nodes / TILE_WIDTH as u64), width))
    })
}

/// The root of the perfect subtree whose bottom row is `hashes` (a power of
/// two of them, at most 256): `hashes` hashed up `log2(len)` levels. `None`
/// for an empty slice or one whose length is not a power of two.
pub fn hash_up(hashes: &[Hash]) -> Option<Hash> {
    if !hashes.len().is_power_of_two() || hashes.len() > TILE_WIDTH {
        return None;
    }
    let mut row: Vec<Hash> = hashes.to_vec();
    while row.len() > 1 {
        row = row.chunks_exact(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
    }
    row.first().copied()
}

/// Storage of tiles: one read by address. `Ok(None)` is a tile the store
/// does not have.
pub trait TileSource {
    type Error;

    /// The stored bytes of tile `id`.
    fn tile(&self, id: TileId) -> Result<Option<Vec<u8>>, Self::Error>;
}

impl<T: TileSource + ?Sized> TileSource for &T {
    type Error = T::Error;

    fn tile(&self, id: TileId) -> Result<Option<Vec<u8>>, Self::Error> {
        (**self).tile(id)
    }
}

/// Tiles in a map, for tests and for collecting what a [`TileWriter`]
/// drains.
impl<S: BuildHasher> TileSource for HashMap<TileId, Vec<u8>, S> {
    type Error = std::convert::Infallible;

    fn tile(&self, id: TileId) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.get(&id).cloned())
    }
}

/// Why a node could not be read from tiles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TileError<E> {
    #[error("reading {tile} failed")]
    Source {
        tile: TileId,
        #[source]
        source: E,
    },
    #[error("{node} needs {tile}, which is not stored")]
    Missing { tile: TileId, node: NodeId },
    #[error("{node} needs hashes {} to {} of {tile}, which holds {width}", .needed.start, .needed.end - 1)]
    Short { tile: TileId, node: NodeId, width: usize, needed: Range<usize> },
    #[error("{tile} is {len} bytes, not a multiple of 32 up to 8192")]
    Length { tile: TileId, len: usize },
    #[error("{node} is in no tree")]
    NoSuchNode { node: NodeId },
    #[error("{tile} arrived out of order: expected node {expected} of its level, got {found}")]
    Order { tile: TileId, expected: u64, found: u64 },
}

/// Checks a tile's bytes: a whole number of hashes, at most 256.
fn check_tile<E>(tile: TileId, bytes: &[u8]) -> Result<usize, TileError<E>> {
    if !bytes.len().is_multiple_of(HASH_BYTES) || bytes.len() > TILE_WIDTH * HASH_BYTES {
        return Err(TileError::Length { tile, len: bytes.len() });
    }
    Ok(bytes.len() / HASH_BYTES)
}

/// Every node inside one tile: its hashes (row 0) and each row hashed up
/// from the one below, as far as whole pairs go. Built once per tile read,
/// so any node a proof needs from the tile is a lookup: at most 255 node
/// hashes for a full tile, where hashing each needed node up from the tile's
/// row on demand costs up to 127 for one node and about 250 for one proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileTree {
    rows: Vec<Vec<Hash>>,
}

impl TileTree {
    /// The tree of a tile's bytes (checked: whole hashes, at most 256).
    fn of_bytes<E>(tile: TileId, bytes: &[u8]) -> Result<Self, TileError<E>> {
        check_tile::<E>(tile, bytes)?;
        let row: Vec<Hash> =
            bytes.chunks_exact(HASH_BYTES).filter_map(|chunk| <[u8; 32]>::try_from(chunk).ok()).collect();
        let mut rows = vec![row];
        while let Some(last) = rows.last()
            && last.len() >= 2
        {
            let up: Vec<Hash> = last.chunks_exact(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
            rows.push(up);
        }
        Ok(TileTree { rows })
    }

    /// Hashes in the tile's bottom row.
    pub fn width(&self) -> usize {
        self.rows.first().map_or(0, Vec::len)
    }

    /// The node over the tile hashes `needed` (a power of two of them,
    /// aligned, as [`TileId::of_node`] gives), if the tile holds them all.
    fn node(&self, needed: &Range<usize>) -> Option<Hash> {
        let span = needed.end.checked_sub(needed.start)?;
        if !span.is_power_of_two() || !needed.start.is_multiple_of(span) || needed.end > self.width() {
            return None;
        }
        let row = span.trailing_zeros() as usize;
        self.rows.get(row)?.get(needed.start >> row).copied()
    }

    /// Whether this tree was built from exactly these tile bytes.
    fn is_of(&self, bytes: &[u8]) -> bool {
        let row = self.rows.first().map_or(&[][..], Vec::as_slice);
        row.len() * HASH_BYTES == bytes.len() && row.iter().flatten().eq(bytes.iter())
    }
}

/// Tile trees shared by every proof of one log, so that proofs over the
/// same tiles (the receipts of one append group, checks of recent records)
/// hash each tile's inner nodes once instead of once per proof. A cached
/// tree is used only for a tile read with exactly the bytes it was built
/// from, so a tile that grew, or was rewritten by a repair, is never served
/// stale. Holds at most [`TileCache::CAPACITY`] trees (about 16 KiB each)
/// and starts over when full.
#[derive(Debug, Default)]
pub struct TileCache {
    trees: std::sync::Mutex<HashMap<TileId, std::sync::Arc<TileTree>>>,
}

impl TileCache {
    /// Trees kept at most: the tiles of a few thousand recent leaves on
    /// every level, about 4 MiB.
    pub const CAPACITY: usize = 256;

    pub fn new() -> Self {
        Self::default()
    }

    fn tree_of<E>(&self, tile: TileId, bytes: &[u8]) -> Result<std::sync::Arc<TileTree>, TileError<E>> {
        let mut trees = self.trees.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(tree) = trees.get(&tile)
            && tree.is_of(bytes)
        {
            return Ok(tree.clone());
        }
        drop(trees);
        let tree = std::sync::Arc::new(TileTree::of_bytes(tile, bytes)?);
        trees = self.trees.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if trees.len() >= Self::CAPACITY {
            trees.clear();
        }
        trees.insert(tile, tree.clone());
        Ok(tree)
    }

    /// Trees held now.
    pub fn len(&self) -> usize {
        self.trees.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every tree (after the tiles were rebuilt).
    pub fn clear(&self) {
        self.trees.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

/// A [`NodeSource`] over tiles. Every tile it reads is kept for the life of
/// the value, so make one per proof (or per batch of proofs at one size):
/// then a proof reads each tile it needs once. With a [`TileCache`], the
/// nodes inside a tile are hashed once for every proof that shares it.
///
/// A partial tile read earlier may have grown since; that never matters for
/// a proof at a size the log had when the proof started, whose nodes were all
/// in the tile already.
pub struct TileNodes<'c, S> {
    source: S,
    shared: Option<&'c TileCache>,
    trees: RefCell<HashMap<TileId, std::sync::Arc<TileTree>>>,
}

impl<S: TileSource> TileNodes<'static, S> {
    pub fn new(source: S) -> Self {
        TileNodes { source, shared: None, trees: RefCell::new(HashMap::new()) }
    }
}

impl<'c, S: TileSource> TileNodes<'c, S> {
    /// Nodes over `source` that share tile trees through `cache`.
    pub fn cached(source: S, cache: &'c TileCache) -> Self {
        TileNodes { source, shared: Some(cache), trees: RefCell::new(HashMap::new()) }
    }

    /// Tiles read so far.
    pub fn tiles_read(&self) -> usize {
        self.trees.borrow().len()
    }
}

impl<S: TileSource> NodeSource for TileNodes<'_, S> {
    type Error = TileError<S::Error>;

    fn node(&self, id: NodeId) -> Result<Hash, Self::Error> {
        let (tile, needed) = TileId::of_node(id).ok_or(TileError::NoSuchNode { node: id })?;
        let mut trees = self.trees.borrow_mut();
        let tree = match trees.get(&tile) {
            Some(tree) => tree,
            None => {
                let bytes = self
                    .source
                    .tile(tile)
                    .map_err(|source| TileError::Source { tile, source })?
                    .ok_or(TileError::Missing { tile, node: id })?;
                let tree = match self.shared {
                    Some(cache) => cache.tree_of(tile, &bytes)?,
                    None => std::sync::Arc::new(TileTree::of_bytes(tile, &bytes)?),
                };
                trees.entry(tile).or_insert(tree)
            }
        };
        tree.node(&needed).ok_or_else(|| TileError::Short { tile, node: id, width: tree.width(), needed })
    }
}

/// One level's partial tile while it fills.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Partial {
    index: u64,
    hashes: Vec<Hash>,
    touched: bool,
}

/// The writer's side of the tiles: the partial tile of every level in
/// memory, fed with the nodes [`CompactRange::append`](crate::merkle::CompactRange::append)
/// completes, so a batch of appends writes each tile it touched once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TileWriter {
    /// Indexed by tile level; a level the tree has not reached is empty.
    levels: Vec<Partial>,
    /// Tiles filled since the last [`TileWriter::drain`].
    filled: Vec<(TileId, Vec<u8>)>,
}

impl TileWriter {
    /// The writer of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The writer of the tree of `size` leaves, from its stored partial
    /// tiles (one read per tile level), so appends resume after a restart.
    /// A partial tile must be stored at least at its width.
    pub fn from_tiles<S: TileSource>(size: u64, source: &S) -> Result<Self, TileError<S::Error>> {
        let mut writer = TileWriter::new();
        for level in 0..u64::BITS as u8 / TILE_HEIGHT {
            let nodes = nodes_at(level, size);
            if nodes == 0 {
                break;
            }
            let index = nodes / TILE_WIDTH as u64;
            let width = (nodes % TILE_WIDTH as u64) as usize;
            let tile = TileId::new(level, index);
            let mut hashes = Vec::with_capacity(TILE_WIDTH);
            if width > 0 {
                let node = NodeId::new(level * TILE_HEIGHT, nodes - 1);
                let bytes = source
                    .tile(tile)
                    .map_err(|source| TileError::Source { tile, source })?
                    .ok_or(TileError::Missing { tile, node })?;
                let stored = check_tile::<S::Error>(tile, &bytes)?;
                if stored < width {
                    return Err(TileError::Short { tile, node, width: stored, needed: 0..width });
                }
                // A wider tile holds hashes of entries beyond `size` (a log
                // cut short by damage): the writer keeps the first `width`
                // and its next append rewrites the tile; `qtrace-node audit`
                // reports the difference.
                hashes.extend(
                    bytes.chunks_exact(HASH_BYTES).take(width).filter_map(|chunk| <[u8; 32]>::try_from(chunk).ok()),
                );
            }
            writer.levels.push(Partial { index, hashes, touched: false });
        }
        Ok(writer)
    }

    /// Takes one node completed by an append. Nodes of tree levels that are
    /// not a multiple of 8 are not stored and are ignored. Nodes of one
    /// level must come left to right, as [`CompactRange::append`](crate::merkle::CompactRange::append)
    /// hands them out.
    pub fn add(&mut self, id: NodeId, hash: Hash) -> Result<(), TileError<std::convert::Infallible>> {
        if !id.level.is_multiple_of(TILE_HEIGHT) {
            return Ok(());
        }
        let level = usize::from(id.level / TILE_HEIGHT);
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Partial::default);
        }
        let partial = &mut self.levels[level];
        let tile = TileId::new(id.level / TILE_HEIGHT, partial.index);
        let expected = partial.index.saturating_mul(TILE_WIDTH as u64).saturating_add(partial.hashes.len() as u64);
        if id.index != expected {
            return Err(TileError::Order { tile, expected, found: id.index });
        }
        partial.hashes.push(hash);
        partial.touched = true;
        if partial.hashes.len() == TILE_WIDTH {
            self.filled.push((tile, partial.hashes.concat()));
            partial.hashes.clear();
            partial.index += 1;
            partial.touched = false;
        }
        Ok(())
    }

    /// Every tile touched since the last call, with its bytes: the tiles
    /// that filled up, then the partial tiles that grew.
    pub fn drain(&mut self) -> Vec<(TileId, Vec<u8>)> {
        let mut out = std::mem::take(&mut self.filled);
        for (level, partial) in self.levels.iter_mut().enumerate() {
            if partial.touched {
                partial.touched = false;
                // At most 8 levels, so the level fits in u8.
                out.push((TileId::new(level as u8, partial.index), partial.hashes.concat()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::merkle::{CompactRange, MemTree, TreeError, leaf_hash};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// Appends `leaves` in batches of the given sizes (the rest in one
    /// batch), collecting drained tiles after each batch into a map.
    fn tiled(leaves: &[Hash], batches: &[usize]) -> (HashMap<TileId, Vec<u8>>, TileWriter, CompactRange) {
        let mut tiles = HashMap::new();
        let mut writer = TileWriter::new();
        let mut range = CompactRange::new();
        let mut sizes = batches.iter().copied().chain(std::iter::repeat(usize::MAX));
        let mut rest = leaves;
        while !rest.is_empty() {
            let take = sizes.next().unwrap_or(usize::MAX).clamp(1, rest.len());
            let (batch, after) = rest.split_at(take);
            for hash in batch {
                range
                    .append(*hash, |id, h| writer.add(id, h).unwrap_or_else(|e| panic!("{e}")))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let drained = writer.drain();
            let ids: Vec<TileId> = drained.iter().map(|(id, _)| *id).collect();
            let mut unique = ids.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), ids.len(), "a batch writes each tile once: {ids:?}");
            tiles.extend(drained);
            rest = after;
        }
        (tiles, writer, range)
    }

    #[test]
    fn of_node_places_nodes_as_c2sp_does() {
        // (node level, node index) -> (tile level, tile index, hashes)
        type Case = ((u8, u64), (u8, u64, Range<usize>));
        let cases: &[Case] = &[
            ((0, 0), (0, 0, 0..1)),
            ((0, 255), (0, 0, 255..256)),
            ((0, 256), (0, 1, 0..1)),
            ((0, 1_000_000), (0, 3906, 64..65)),
            ((1, 0), (0, 0, 0..2)),
            ((1, 127), (0, 0, 254..256)),
            ((1, 128), (0, 1, 0..2)),
            ((7, 0), (0, 0, 0..128)),
            ((7, 1), (0, 0, 128..256)),
            ((7, 2), (0, 1, 0..128)),
            ((8, 0), (1, 0, 0..1)),
            ((8, 300), (1, 1, 44..45)),
            ((9, 3), (1, 0, 6..8)),
            ((16, 1), (2, 0, 1..2)),
            ((63, 0), (7, 0, 0..128)),
        ];
        for ((level, index), (tile_level, tile_index, range)) in cases {
            assert_eq!(
                TileId::of_node(NodeId::new(*level, *index)),
                Some((TileId::new(*tile_level, *tile_index), range.clone())),
                "node ({level}, {index})"
            );
        }
        for node in [NodeId::new(64, 0), NodeId::new(63, 2), NodeId::new(0, u64::MAX), NodeId::new(1, 1 << 63)] {
            assert_eq!(TileId::of_node(node), None, "{node}");
        }
    }

    #[test]
    fn paths_follow_c2sp() {
        let cases = [
            ((0, 0), 256, "tile/0/000"),
            ((0, 0), 1, "tile/0/000.p/1"),
            ((1, 7), 255, "tile/1/007.p/255"),
            ((0, 1234067), 8, "tile/0/x001/x234/067.p/8"),
            ((1, 1234067), 256, "tile/1/x001/x234/067"),
            ((0, 1000), 256, "tile/0/x001/000"),
            ((2, 999), 256, "tile/2/999"),
        ];
        for ((level, index), width, path) in cases {
            assert_eq!(TileId::new(level, index).path(width), path);
        }
    }

    #[test]
    fn widths_and_partials_at_sizes() {
        let cases: &[(u64, &[(TileId, usize)])] = &[
            (0, &[]),
            (1, &[(TileId::new(0, 0), 1)]),
            (255, &[(TileId::new(0, 0), 255)]),
            (256, &[(TileId::new(1, 0), 1)]),
            (257, &[(TileId::new(0, 1), 1), (TileId::new(1, 0), 1)]),
            (65536, &[(TileId::new(2, 0), 1)]),
            (65536 + 512 + 3, &[(TileId::new(0, 258), 3), (TileId::new(1, 1), 2), (TileId::new(2, 0), 1)]),
        ];
        for (size, want) in cases {
            assert_eq!(partial_tiles(*size).collect::<Vec<_>>(), *want, "size {size}");
            for (tile, width) in *want {
                assert_eq!(tile.width_at(*size), *width, "{tile} at {size}");
            }
        }
        assert_eq!(TileId::new(0, 0).width_at(300), 256);
        assert_eq!(TileId::new(0, 2).width_at(300), 0);
        assert_eq!(partial_tiles(u64::MAX).count(), 8);
    }

    #[test]
    fn hash_up_needs_a_power_of_two() {
        let h = leaves(4);
        assert_eq!(hash_up(&h[..1]), Some(h[0]));
        assert_eq!(hash_up(&h[..2]), Some(node_hash(&h[0], &h[1])));
        assert_eq!(hash_up(&h), Some(node_hash(&node_hash(&h[0], &h[1]), &node_hash(&h[2], &h[3]))));
        assert_eq!(hash_up(&h[..3]), None);
        assert_eq!(hash_up(&[]), None);
    }

    #[test]
    fn tiles_hold_every_perfect_node_of_a_three_level_tree() {
        // 2^16 + 2^9 + 5 leaves: full tiles at levels 0 and 1, partial ones
        // at all three levels.
        let n = 65536 + 512 + 5;
        let hashes = leaves(n);
        let (tiles, writer, range) = tiled(&hashes, &[1, 3, 100, 1000, 64]);
        let mem = MemTree::from_leaf_hashes(hashes.iter().copied()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(range.root(), mem.root());
        for (tile, width) in partial_tiles(n) {
            assert_eq!(tiles.get(&tile).map(|b| b.len() / 32), Some(width), "{tile}");
        }
        assert_eq!(tiles.len(), (258 + 1) + (1 + 1) + 1, "every tile of the tree, no more");
        let nodes = TileNodes::new(&tiles);
        for (level, index) in [(0u8, 0u64), (0, n - 1), (3, 5), (7, 511), (8, 0), (8, 257), (12, 16), (16, 0)] {
            assert_eq!(nodes.node(NodeId::new(level, index)).ok(), mem.node(NodeId::new(level, index)).ok());
        }
        // A proof reads a few tiles, not a node per level.
        let nodes = TileNodes::new(&tiles);
        let proof = crate::merkle::inclusion_proof(&nodes, 1234, n).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(proof, mem.inclusion_proof(1234, n).unwrap_or_else(|e| panic!("{e}")));
        assert!(nodes.tiles_read() <= 6, "{} tiles read", nodes.tiles_read());
        // The writer reloaded from its tiles is the one that wrote them.
        assert_eq!(TileWriter::from_tiles(n, &tiles), Ok(writer));
    }

    #[test]
    fn refusals_name_the_tile() {
        let hashes = leaves(300);
        let (mut tiles, _, _) = tiled(&hashes, &[]);
        type Check = fn(&TileError<std::convert::Infallible>) -> bool;
        type Case = (&'static str, TileId, Option<Vec<u8>>, NodeId, Check);
        let cases: Vec<Case> = vec![
            (
                "missing",
                TileId::new(0, 1),
                None,
                NodeId::new(0, 260),
                |e| matches!(e, TileError::Missing { tile, .. } if *tile == TileId::new(0, 1)),
            ),
            ("short", TileId::new(0, 1), Some(vec![0; 64]), NodeId::new(0, 260), |e| {
                matches!(e, TileError::Short { width: 2, .. })
            }),
            ("ragged length", TileId::new(0, 0), Some(vec![0; 33]), NodeId::new(0, 1), |e| {
                matches!(e, TileError::Length { len: 33, .. })
            }),
            ("too wide", TileId::new(0, 0), Some(vec![0; 257 * 32]), NodeId::new(0, 1), |e| {
                matches!(e, TileError::Length { len: 8224, .. })
            }),
        ];
        for (name, tile, bytes, node, check) in cases {
            let saved = tiles.remove(&tile);
            if let Some(bytes) = bytes {
                tiles.insert(tile, bytes);
            }
            match TileNodes::new(&tiles).node(node) {
                Err(e) => assert!(check(&e), "{name}: {e}"),
                Ok(_) => panic!("{name}: accepted"),
            }
            tiles.remove(&tile);
            if let Some(saved) = saved {
                tiles.insert(tile, saved);
            }
        }
        // A reload finds a partial tile of the wrong width.
        // A log cut short by one entry: its partial tile still holds the
        // lost entry's hash, and the writer takes the hashes it has.
        let (_, cut_short, _) = tiled(&hashes[..299], &[]);
        assert_eq!(TileWriter::from_tiles(299, &tiles), Ok(cut_short));
        tiles.insert(TileId::new(0, 1), vec![0; 32 * 43]);
        assert!(matches!(TileWriter::from_tiles(300, &tiles), Err(TileError::Short { width: 43, .. })));
        // Nodes out of order are refused, not stored at the wrong place.
        let mut writer = TileWriter::new();
        assert_eq!(writer.add(NodeId::new(0, 0), [0; 32]), Ok(()));
        assert!(matches!(writer.add(NodeId::new(0, 2), [0; 32]), Err(TileError::Order { expected: 1, found: 2, .. })));
        assert_eq!(writer.add(NodeId::new(1, 0), [0; 32]), Ok(()), "level 1 is not stored");
    }

    #[test]
    fn a_shared_cache_serves_only_the_bytes_it_was_built_from() {
        let n = 700;
        let hashes = leaves(n);
        let mem = MemTree::from_leaf_hashes(hashes.iter().copied()).unwrap_or_else(|e| panic!("{e}"));
        let cache = TileCache::new();
        // (tree size the tiles are written at, leaf, proof size): the
        // partial tile 0/2 grows between the rows, and is read each time.
        let cases = [(520u64, 515u64, 520u64), (600, 515, 600), (600, 599, 600), (700, 3, 700), (700, 699, 650)];
        for (written, leaf, size) in cases {
            let (tiles, _, _) = tiled(&hashes[..written as usize], &[]);
            let nodes = TileNodes::cached(&tiles, &cache);
            assert_eq!(
                crate::merkle::inclusion_proof(&nodes, leaf, size).ok(),
                mem.inclusion_proof(leaf, size).ok(),
                "leaf {leaf} at {size}, tiles written at {written}"
            );
            assert_eq!(crate::merkle::root(&nodes, size).ok(), mem.root_at(size).ok(), "root at {size}");
        }
        assert!(!cache.is_empty());
        // A tile rewritten with other bytes (a repair) is built afresh.
        let (mut tiles, _, _) = tiled(&hashes, &[]);
        tiles.insert(TileId::new(0, 0), vec![7; 256 * 32]);
        let damaged = TileNodes::cached(&tiles, &cache).node(NodeId::new(7, 0));
        assert_ne!(damaged.ok(), mem.node(NodeId::new(7, 0)).ok());
        let (tiles, _, _) = tiled(&hashes, &[]);
        assert_eq!(TileNodes::cached(&tiles, &cache).node(NodeId::new(7, 0)).ok(), mem.node(NodeId::new(7, 0)).ok());
        cache.clear();
        assert!(cache.is_empty());
    }

    proptest! {
        /// Random batch sizes: proofs from the tiles equal MemTree's, and
        /// the writer reloaded from the tiles carries on identically.
        #[test]
        fn proofs_from_tiles_equal_memtree(
            n in 1u64..1500,
            batches in proptest::collection::vec(1usize..300, 0..12),
            picks in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 8),
        ) {
            let hashes = leaves(n);
            let (tiles, writer, range) = tiled(&hashes, &batches);
            let mem = MemTree::from_leaf_hashes(hashes.iter().copied()).expect("small tree");
            prop_assert_eq!(range.root(), mem.root());
            prop_assert_eq!(TileWriter::from_tiles(n, &tiles), Ok(writer));
            prop_assert_eq!(
                CompactRange::from_nodes(n, &TileNodes::new(&tiles)).ok(),
                Some(range)
            );
            // Half the picks share one cache of tile trees, as a log's
            // proofs do.
            let cache = TileCache::new();
            for (i, (a, b, c)) in picks.into_iter().enumerate() {
                let size = 1 + a % n;
                let leaf = b % size;
                let old = 1 + c % size;
                let nodes = if i % 2 == 0 { TileNodes::new(&tiles) } else { TileNodes::cached(&tiles, &cache) };
                prop_assert_eq!(crate::merkle::root(&nodes, size).ok(), mem.root_at(size).ok());
                prop_assert_eq!(
                    crate::merkle::inclusion_proof(&nodes, leaf, size).ok(),
                    mem.inclusion_proof(leaf, size).ok()
                );
                prop_assert_eq!(
                    crate::merkle::consistency_proof(&nodes, old, size).ok(),
                    mem.consistency_proof(old, size).ok()
                );
            }
            // Nothing beyond the tree is served.
            let beyond = crate::merkle::root(&TileNodes::new(&tiles), n + 1);
            let missing = matches!(beyond, Err(TreeError::Source { .. }));
            prop_assert!(missing);
        }
    }
}
