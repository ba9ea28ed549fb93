//! RFC 6962 Merkle tree hashing, proof generation and proof verification.
//!
//! The log's entries are the leaves of one append-only Merkle tree. A
//! checkpoint commits to the tree's size and root; an inclusion proof shows an
//! entry is under a root, and a consistency proof shows a later root extends
//! an earlier one, so a client that keeps its last checkpoint notices any
//! rewrite of history.
//!
//! # Exact bytes
//!
//! - Leaf hash: `SHA-256(0x00 || leaf_bytes)` ([`leaf_hash`]).
//! - Interior node: `SHA-256(0x01 || left || right)` ([`node_hash`]). The two
//!   prefixes keep a leaf from ever being passed off as an interior node.
//! - Root of the empty tree: `SHA-256("")` ([`empty_root`]).
//! - Root of `n > 0` leaves: RFC 6962 `MTH`, which splits the leaves at the
//!   largest power of two `k < n` and hashes the two roots together. The same
//!   tree is the fold, right to left, of the perfect subtrees given by the set
//!   bits of `n`, which is how this module computes it.
//! - Proofs are lists of 32-byte hashes ordered from the leaf upwards, in the
//!   layout of RFC 6962 section 2.1 (`PATH` and `PROOF`), RFC 9162 and
//!   transparency-dev/merkle, whose test vectors the tests check.
//!
//! # Invariants
//!
//! - This module does no I/O. Storage is reached only through [`NodeSource`],
//!   which hands out hashes of perfect subtrees by [`NodeId`].
//! - Producing a proof or a root reads O(log n) nodes and never rehashes the
//!   log, so proofs stay cheap however long the log grows.
//! - Nothing here panics for any argument: sizes, indices and proofs arrive
//!   from the network, so the arithmetic is checked for sizes up to
//!   `u64::MAX`, and verification returns an error carrying its evidence.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;

use sha2::{Digest, Sha256};

/// A SHA-256 output: a leaf hash, an interior node hash or a root.
pub type Hash = [u8; 32];

/// Domain-separation prefix of leaf hashes (RFC 6962 section 2.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of interior node hashes (RFC 6962 section 2.1).
const NODE_PREFIX: u8 = 0x01;

/// Hashes one leaf as `SHA-256(0x00 || leaf)`, the RFC 6962 leaf hash, so a
/// leaf can never collide with an interior node.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// Hashes two children as `SHA-256(0x01 || left || right)`, the RFC 6962
/// interior node hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the tree with no leaves, `SHA-256("")`, as RFC 6962 defines it,
/// so that a brand-new log still has a checkpoint to sign.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// Formats a hash as lowercase hex, so error messages can be compared with
/// what other tools print.
struct Hex<'a>(&'a Hash);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

fn hex(hash: &Hash) -> Hex<'_> {
    Hex(hash)
}

/// The address of a perfect subtree: the node at `level` and `index` covers
/// leaves `[index * 2^level, (index + 1) * 2^level)`, and level 0 nodes are
/// leaf hashes.
///
/// Only perfect subtrees get an address because only they never change once
/// complete; the ragged right edge of a tree is recomputed from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves; a tree of at most `u64::MAX` leaves needs
    /// levels 0 to 63.
    pub level: u8,
    /// Position among the nodes of the same level, counted from the left.
    pub index: u64,
}

impl NodeId {
    /// The node at `level` and `index`.
    pub const fn new(level: u8, index: u64) -> Self {
        NodeId { level, index }
    }

    /// The level-0 node that holds the hash of leaf `index`.
    pub const fn leaf(index: u64) -> Self {
        NodeId { level: 0, index }
    }

    /// The leaves this node covers, or `None` when the range does not fit in
    /// `u64`, in which case no log can contain the node and a store can
    /// refuse it without looking.
    pub fn leaf_range(&self) -> Option<std::ops::Range<u64>> {
        let width = 1u64.checked_shl(u32::from(self.level))?;
        let start = self.index.checked_mul(width)?;
        let end = start.checked_add(width)?;
        Some(start..end)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node (level {}, index {})", self.level, self.index)
    }
}

/// Storage of perfect-subtree hashes, which is all proof generation needs.
///
/// The contract is deliberately one high-level read rather than the shape of
/// any backend: a store keeps every perfect node it was handed by
/// [`CompactRange::append`] and returns it by address. Asking for a node that
/// is not complete yet is an error of the source, never a wrong hash.
pub trait NodeSource {
    /// Why a node could not be read (missing, I/O failure, corruption).
    type Error;

    /// Returns the hash of the perfect subtree `id`.
    fn node(&self, id: NodeId) -> Result<Hash, Self::Error>;
}

/// Why a root, proof or compact range could not be produced from a
/// [`NodeSource`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError<E> {
    /// An inclusion proof was asked for a leaf the tree does not have yet.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizeOrder { old_size: u64, new_size: u64 },
    /// A consistency proof was asked from the empty tree. Every tree extends
    /// the empty one, so there is nothing to prove, and verifiers
    /// (transparency-dev/merkle's and [`verify_consistency`]) refuse any
    /// proof from size 0 to a larger size; returning one would only mislead.
    #[error("no consistency proof exists from the empty tree to size {new_size}")]
    EmptyOldTree { new_size: u64 },
    /// The node source could not hand out a node the computation needs.
    #[error("reading {id} from the node source failed")]
    Source {
        id: NodeId,
        #[source]
        source: E,
    },
}

/// Reads one perfect node, naming it in the error.
///
/// `level` is below 64 at every call site (it is a bit position of a `u64`),
/// so narrowing it to `u8` loses nothing.
fn read<S: NodeSource + ?Sized>(src: &S, level: u32, index: u64) -> Result<Hash, TreeError<S::Error>> {
    let id = NodeId::new(level as u8, index);
    src.node(id).map_err(|source| TreeError::Source { id, source })
}

/// The RFC 6962 hash of leaves `[start, end)`, read as the perfect subtrees
/// that tile the range and folded right to left.
///
/// Requires `start <= end` and `start` to be a multiple of the largest power
/// of two not above `end - start`, which holds for the whole tree (`start ==
/// 0`) and for the ragged right sibling in a proof; then every tile is an
/// aligned perfect node. Reads `popcount(end - start)` nodes.
fn range_root<S: NodeSource + ?Sized>(src: &S, start: u64, end: u64) -> Result<Hash, TreeError<S::Error>> {
    let mut rest = end.saturating_sub(start);
    let mut folded: Option<Hash> = None;
    // The smallest tile is the rightmost one, so taking set bits from the
    // lowest upwards visits tiles right to left, the order MTH folds them in.
    while rest != 0 {
        let level = rest.trailing_zeros();
        let offset = rest & (rest - 1);
        // start + offset < end, so the sum cannot overflow.
        let tile = read(src, level, (start + offset) >> level)?;
        folded = Some(match folded {
            None => tile,
            Some(right) => node_hash(&tile, &right),
        });
        rest = offset;
    }
    Ok(folded.unwrap_or_else(empty_root))
}

/// Bit length of `value`: the number of levels below the point where two
/// leaf paths whose indices differ by `value`'s set bits meet.
fn bit_len(value: u64) -> u32 {
    u64::BITS - value.leading_zeros()
}

/// Appends to `out` the hashes proving that the node at `from_level` above
/// leaf `leaf` is in the tree of `size` leaves: the RFC 6962 inclusion path of
/// `leaf` without its lowest `from_level` entries. Requires `leaf < size`.
///
/// Below the level where the paths to `leaf` and to `size - 1` fork, each
/// sibling is a stored perfect node, except the topmost, which holds leaf
/// `size - 1` and may be ragged, so it is rebuilt from its tiles. Above the
/// fork the path runs along the right border and only left siblings exist.
fn push_path<S: NodeSource + ?Sized>(
    src: &S,
    leaf: u64,
    size: u64,
    from_level: u32,
    out: &mut Vec<Hash>,
) -> Result<(), TreeError<S::Error>> {
    let last = size.saturating_sub(1);
    let inner = bit_len(leaf ^ last);
    for level in from_level..inner {
        let sibling = (leaf >> level) ^ 1;
        let hash = if level + 1 == inner {
            // Here leaf's bit is 0 and last's is 1, so sibling << level is at
            // most last and the shift drops no bits.
            range_root(src, sibling << level, size)?
        } else {
            read(src, level, sibling)?
        };
        out.push(hash);
    }
    for level in inner.max(from_level)..u64::BITS {
        let node = leaf >> level;
        if node & 1 == 1 {
            out.push(read(src, level, node - 1)?);
        }
    }
    Ok(())
}

/// The RFC 6962 root (`MTH`) of the first `size` leaves, from
/// `popcount(size)` node reads, so a store can answer for any earlier size.
pub fn root<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Hash, TreeError<S::Error>> {
    range_root(src, 0, size)
}

/// The RFC 6962 inclusion proof (`PATH`) of leaf `leaf_index` in the tree of
/// the first `size` leaves, reading at most `2 * log2(size)` nodes.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    leaf_index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    if leaf_index >= size {
        return Err(TreeError::IndexOutOfRange { index: leaf_index, size });
    }
    let mut proof = Vec::with_capacity(u64::BITS as usize);
    push_path(src, leaf_index, size, 0, &mut proof)?;
    Ok(proof)
}

/// The RFC 6962 consistency proof (`PROOF`) from the tree of `old_size`
/// leaves to the tree of `new_size` leaves, reading at most
/// `2 * log2(new_size) + 1` nodes.
///
/// Equal sizes give the empty proof, including `0 == 0`. From `old_size == 0`
/// to a larger size there is no proof, see [`TreeError::EmptyOldTree`].
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    if old_size > new_size {
        return Err(TreeError::SizeOrder { old_size, new_size });
    }
    if old_size == new_size {
        return Ok(Vec::new());
    }
    if old_size == 0 {
        return Err(TreeError::EmptyOldTree { new_size });
    }
    // The largest perfect subtree ending at old_size is where the old tree's
    // right border joins the new tree; proving it is inside both trees proves
    // consistency. When it is the whole old tree the verifier already has its
    // hash (the old root), so it is left out.
    let level = old_size.trailing_zeros();
    let node = (old_size - 1) >> level;
    let mut proof = Vec::with_capacity(u64::BITS as usize + 1);
    if node != 0 {
        proof.push(read(src, level, node)?);
    }
    push_path(src, old_size - 1, new_size, level, &mut proof)?;
    Ok(proof)
}

/// Why a proof did not verify. Each variant carries the evidence, so a client
/// can show what the log claimed and what the proof actually implies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The leaf index is not inside the tree the proof is for.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// The old tree of a consistency proof is larger than the new one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizeOrder { old_size: u64, new_size: u64 },
    /// A consistency proof from the empty tree was offered; such a proof says
    /// nothing, and accepting one would let any root pass.
    #[error("a consistency proof from the empty tree to size {new_size} proves nothing")]
    EmptyOldTree { new_size: u64 },
    /// The proof has the wrong number of hashes for the given sizes, which
    /// fixes the tree's shape and so the exact length of every proof.
    #[error("proof has {found} hashes but the tree shape needs {expected}")]
    WrongProofLength { expected: usize, found: usize },
    /// The consistency proof does not rebuild the old root it claims to
    /// extend.
    #[error("proof does not rebuild the old root: expected {}, computed {}", hex(.expected), hex(.computed))]
    OldRootMismatch { expected: Hash, computed: Hash },
    /// The proof rebuilds a root other than the one it was checked against.
    #[error("root mismatch: expected {}, computed {}", hex(.expected), hex(.computed))]
    RootMismatch { expected: Hash, computed: Hash },
}

/// Splits the inclusion proof of leaf `index` in a tree of `size` leaves into
/// the part below the fork with the path to `size - 1` (`inner`) and the
/// left siblings along the right border above it (`border`); their sum is
/// the proof's exact length. Requires `index < size`.
fn decomp_incl_proof(index: u64, size: u64) -> (usize, usize) {
    let inner = bit_len(index ^ size.saturating_sub(1));
    // inner can be 64, where a plain shift would overflow; nothing is left
    // above the top level then.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner as usize, border as usize)
}

/// Whether bit `bit` of `mask` is set; bits from 64 on count as clear.
fn bit_is_set(mask: u64, bit: usize) -> bool {
    u32::try_from(bit).ok().and_then(|bit| mask.checked_shr(bit)).is_some_and(|shifted| shifted & 1 == 1)
}

/// Hashes `seed` up through the siblings in `proof`, taking each sibling's
/// side from the bits of `index`, the seed's position on its level.
fn chain_inner(seed: Hash, proof: &[Hash], index: u64) -> Hash {
    proof.iter().enumerate().fold(seed, |acc, (bit, sibling)| {
        if bit_is_set(index, bit) { node_hash(sibling, &acc) } else { node_hash(&acc, sibling) }
    })
}

/// Like [`chain_inner`] but keeps only the siblings to the left of the path,
/// which yields the hash of this subtree as it was in the older, smaller tree.
fn chain_inner_right(seed: Hash, proof: &[Hash], index: u64) -> Hash {
    proof.iter().enumerate().fold(
        seed,
        |acc, (bit, sibling)| {
            if bit_is_set(index, bit) { node_hash(sibling, &acc) } else { acc }
        },
    )
}

/// Hashes `seed` up the right border, where every proof hash is a left
/// sibling.
fn chain_border_right(seed: Hash, proof: &[Hash]) -> Hash {
    proof.iter().fold(seed, |acc, sibling| node_hash(sibling, &acc))
}

/// The root that an inclusion proof implies for leaf `leaf_index` with hash
/// `leaf_hash` in a tree of `size` leaves, for callers that look the root up
/// afterwards. Checks the index and the exact proof length first, since the
/// sizes alone fix which hash goes where.
pub fn root_from_inclusion(leaf_index: u64, size: u64, leaf_hash: &Hash, proof: &[Hash]) -> Result<Hash, VerifyError> {
    if leaf_index >= size {
        return Err(VerifyError::IndexOutOfRange { index: leaf_index, size });
    }
    let (inner, border) = decomp_incl_proof(leaf_index, size);
    let expected = inner + border;
    let wrong_length = VerifyError::WrongProofLength { expected, found: proof.len() };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    let Some((inner_part, border_part)) = proof.split_at_checked(inner) else {
        return Err(wrong_length);
    };
    let below_fork = chain_inner(*leaf_hash, inner_part, leaf_index);
    Ok(chain_border_right(below_fork, border_part))
}

/// Checks that `proof` shows leaf `leaf_index` with hash `leaf_hash` is in the
/// tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf_index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    let computed = root_from_inclusion(leaf_index, size, leaf_hash, proof)?;
    matches(root, computed)
}

fn matches(expected: &Hash, computed: Hash) -> Result<(), VerifyError> {
    if *expected == computed { Ok(()) } else { Err(VerifyError::RootMismatch { expected: *expected, computed }) }
}

/// The root of the tree of `new_size` leaves that a consistency proof implies,
/// after checking that the same proof rebuilds `old_root` for `old_size`.
///
/// Ported from transparency-dev/merkle `RootFromConsistencyProof`: equal sizes
/// need the empty proof and imply the old root (so `0 == 0` passes with equal
/// roots); from size 0 to a larger size every proof is refused; otherwise the
/// proof must have exactly the length the sizes fix. The empty proof between
/// different sizes fails that length check, because the length is always at
/// least one there.
pub fn root_from_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
) -> Result<Hash, VerifyError> {
    if new_size < old_size {
        return Err(VerifyError::SizeOrder { old_size, new_size });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(VerifyError::WrongProofLength { expected: 0, found: proof.len() });
        }
        return Ok(*old_root);
    }
    if old_size == 0 {
        return Err(VerifyError::EmptyOldTree { new_size });
    }

    // The proof is the inclusion proof of leaf old_size - 1 in the new tree
    // with its lowest `shift` levels replaced by one seed: the largest perfect
    // subtree ending at old_size.
    let (inner, border) = decomp_incl_proof(old_size - 1, new_size);
    let shift = old_size.trailing_zeros();
    // shift < inner whenever old_size < new_size: the low `shift` bits of
    // old_size - 1 are all ones, so it first differs from new_size - 1 higher.
    let inner = inner.saturating_sub(shift as usize);
    // When the seed is the whole old tree its hash is the old root, which the
    // verifier already has, so the proof leaves it out.
    let seed_is_old_root = old_size.is_power_of_two();
    let expected = usize::from(!seed_is_old_root) + inner + border;
    let wrong_length = VerifyError::WrongProofLength { expected, found: proof.len() };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    let (seed, rest) = if seed_is_old_root {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((seed, rest)) => (*seed, rest),
            None => return Err(wrong_length),
        }
    };
    let Some((inner_part, border_part)) = rest.split_at_checked(inner) else {
        return Err(wrong_length);
    };
    // The seed's position on its own level.
    let mask = (old_size - 1) >> shift;

    let old_computed = chain_border_right(chain_inner_right(seed, inner_part, mask), border_part);
    if old_computed != *old_root {
        return Err(VerifyError::OldRootMismatch { expected: *old_root, computed: old_computed });
    }
    Ok(chain_border_right(chain_inner(seed, inner_part, mask), border_part))
}

/// The roots of the old and the new tree that a consistency proof implies,
/// when the proof names its seed: the hash of the largest perfect subtree
/// ending at `old_size`, first in the proof even when `old_size` is a power
/// of two (where the RFC 6962 proof leaves it out, as the verifier's old
/// root). Such a proof commits to both roots, so one that rebuilds a log's
/// signed root for `new_size` shows what the same log's tree held at
/// `old_size`: whoever assembled the proof, a different old root than the
/// log signed is proof that the log forked (under SHA-256's collision
/// resistance).
pub fn roots_from_seeded_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
) -> Result<(Hash, Hash), VerifyError> {
    if new_size <= old_size {
        return Err(VerifyError::SizeOrder { old_size, new_size });
    }
    if old_size == 0 {
        return Err(VerifyError::EmptyOldTree { new_size });
    }
    let (inner, border) = decomp_incl_proof(old_size - 1, new_size);
    let shift = old_size.trailing_zeros();
    let inner = inner.saturating_sub(shift as usize);
    let wrong_length = VerifyError::WrongProofLength { expected: 1 + inner + border, found: proof.len() };
    let Some((seed, rest)) = proof.split_first() else { return Err(wrong_length) };
    if rest.len() != inner + border {
        return Err(wrong_length);
    }
    let (inner_part, border_part) = rest.split_at(inner);
    let mask = (old_size - 1) >> shift;
    let old_root = chain_border_right(chain_inner_right(*seed, inner_part, mask), border_part);
    let new_root = chain_border_right(chain_inner(*seed, inner_part, mask), border_part);
    Ok((old_root, new_root))
}

/// Turns an RFC 6962 consistency proof from `old_size` into the seeded form
/// [`roots_from_seeded_consistency`] reads: when `old_size` is a power of
/// two the seed is the old tree's root, `old_root`, put first.
pub fn seeded_consistency_proof(old_size: u64, proof: &[Hash], old_root: &Hash) -> Vec<Hash> {
    let mut seeded = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        seeded.push(*old_root);
    }
    seeded.extend_from_slice(proof);
    seeded
}

/// Checks that `proof` shows the tree of `new_size` leaves with root
/// `new_root` extends the tree of `old_size` leaves with root `old_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), VerifyError> {
    let computed = root_from_consistency(old_size, new_size, proof, old_root)?;
    matches(new_root, computed)
}

/// The tree already holds `u64::MAX` leaves, the most a `u64` size can count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the tree already holds u64::MAX leaves and cannot grow")]
pub struct TreeFull;

/// The right border of a tree (its frontier): one perfect-subtree hash per set
/// bit of the size, largest first.
///
/// This is all the state appending needs, so the writer keeps O(log n) hashes
/// in memory and hands every newly completed perfect node to the store, which
/// then has what [`root`] and the proof functions read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// Border hashes from left (highest level) to right (lowest level);
    /// always `size.count_ones()` of them.
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads the frontier of the tree of `size` leaves from a store, with one
    /// read per set bit of `size`, so a writer can resume after a restart.
    pub fn from_nodes<S: NodeSource + ?Sized>(size: u64, src: &S) -> Result<Self, TreeError<S::Error>> {
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        let mut rest = size;
        while rest != 0 {
            let level = u64::BITS - 1 - rest.leading_zeros();
            // Bit `level` of size is set, so size >> level is at least 1.
            hashes.push(read(src, level, (size >> level) - 1)?);
            rest ^= 1 << level;
        }
        Ok(CompactRange { size, hashes })
    }

    /// The number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The border hashes, largest subtree first, for callers that persist
    /// the frontier itself.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends one leaf hash and calls `visit` for every perfect node this
    /// completes, bottom up: the leaf itself at level 0, then each parent that
    /// now has both children. A store that persists exactly these nodes has
    /// every perfect node of the tree. `visit` cannot fail, so a store should
    /// collect the nodes and write them in one batch with the entry.
    pub fn append(&mut self, leaf_hash: Hash, mut visit: impl FnMut(NodeId, Hash)) -> Result<(), TreeFull> {
        let Some(new_size) = self.size.checked_add(1) else {
            return Err(TreeFull);
        };
        let mut hash = leaf_hash;
        let mut index = self.size;
        let mut level = 0u8;
        visit(NodeId::new(level, index), hash);
        // Each set low bit of the old size is a completed left sibling on the
        // border that the new node now pairs with.
        while index & 1 == 1 {
            // hashes.len() == size.count_ones() and this bit of size is set,
            // so a left sibling is always there.
            let Some(left) = self.hashes.pop() else { break };
            hash = node_hash(&left, &hash);
            index >>= 1;
            level += 1;
            visit(NodeId::new(level, index), hash);
        }
        self.hashes.push(hash);
        self.size = new_size;
        Ok(())
    }

    /// The RFC 6962 root of the tree of [`size`](Self::size) leaves.
    pub fn root(&self) -> Hash {
        let mut border = self.hashes.iter().rev();
        match border.next() {
            None => empty_root(),
            Some(last) => border.fold(*last, |right, left| node_hash(left, &right)),
        }
    }
}

/// A node a [`MemTree`] or a `HashMap` store does not have: either beyond the
/// tree's size or not complete yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{id} is not stored")]
pub struct NodeNotFound {
    pub id: NodeId,
}

/// A map from address to hash is the simplest store, useful in tests and for
/// feeding [`CompactRange::append`]'s visitor straight into.
impl<S: BuildHasher> NodeSource for HashMap<NodeId, Hash, S> {
    type Error = NodeNotFound;

    fn node(&self, id: NodeId) -> Result<Hash, NodeNotFound> {
        self.get(&id).copied().ok_or(NodeNotFound { id })
    }
}

/// A whole tree in memory, every perfect node kept level by level, for tests
/// and for small trees that need proofs without a database.
#[derive(Clone, Debug, Default)]
pub struct MemTree {
    /// `levels[l][i]` is the perfect node at level `l`, index `i`; nodes are
    /// completed left to right, so each level is a plain vector.
    levels: Vec<Vec<Hash>>,
    frontier: CompactRange,
}

impl MemTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree with the given leaf hashes in order.
    pub fn from_leaf_hashes(leaf_hashes: impl IntoIterator<Item = Hash>) -> Result<Self, TreeFull> {
        let mut tree = Self::new();
        for hash in leaf_hashes {
            tree.append(hash)?;
        }
        Ok(tree)
    }

    /// Appends a leaf hash and returns its leaf index.
    pub fn append(&mut self, leaf_hash: Hash) -> Result<u64, TreeFull> {
        let index = self.frontier.size();
        let levels = &mut self.levels;
        self.frontier.append(leaf_hash, |id, hash| {
            let level = usize::from(id.level);
            if levels.len() <= level {
                levels.resize_with(level + 1, Vec::new);
            }
            if let Some(row) = levels.get_mut(level) {
                row.push(hash);
            }
        })?;
        Ok(index)
    }

    /// Hashes `leaf` as a leaf, appends it and returns its leaf index.
    pub fn append_leaf(&mut self, leaf: &[u8]) -> Result<u64, TreeFull> {
        self.append(leaf_hash(leaf))
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The root at the current size, from the frontier without reading nodes.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The frontier at the current size.
    pub fn frontier(&self) -> &CompactRange {
        &self.frontier
    }

    /// The root of the first `size` leaves; see [`root`].
    pub fn root_at(&self, size: u64) -> Result<Hash, TreeError<NodeNotFound>> {
        root(self, size)
    }

    /// See [`inclusion_proof`].
    pub fn inclusion_proof(&self, leaf_index: u64, size: u64) -> Result<Vec<Hash>, TreeError<NodeNotFound>> {
        inclusion_proof(self, leaf_index, size)
    }

    /// See [`consistency_proof`].
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, TreeError<NodeNotFound>> {
        consistency_proof(self, old_size, new_size)
    }
}

impl NodeSource for MemTree {
    type Error = NodeNotFound;

    fn node(&self, id: NodeId) -> Result<Hash, NodeNotFound> {
        usize::try_from(id.index)
            .ok()
            .and_then(|index| self.levels.get(usize::from(id.level))?.get(index))
            .copied()
            .ok_or(NodeNotFound { id })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::path::{Path, PathBuf};

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/rfc6962");

    /// The leaves of transparency-dev/merkle's test tree, whose roots and
    /// proofs the vectors use.
    const REFERENCE_LEAVES: [&[u8]; 8] = [
        b"",
        &[0x00],
        &[0x10],
        &[0x20, 0x21],
        &[0x30, 0x31],
        &[0x40, 0x41, 0x42, 0x43],
        &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        &[0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f],
    ];

    fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                json_files(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                out.push(path);
            }
        }
        out.sort();
    }

    /// A vector's hash made to fit in a `Hash`: values that are not 32 bytes
    /// (the vectors' "garbage" and "wrong" cases) are zero-padded or cut, and
    /// `exact` records that a wire decoder would have refused them already.
    struct Fitted {
        hash: Hash,
        exact: bool,
    }

    fn fit(text: &str) -> Fitted {
        let bytes = STANDARD.decode(text).unwrap_or_else(|e| panic!("base64 {text:?}: {e}"));
        let mut hash = [0u8; 32];
        let kept = bytes.len().min(32);
        hash[..kept].copy_from_slice(&bytes[..kept]);
        Fitted { hash, exact: bytes.len() == 32 }
    }

    fn hash_field(case: &Value, name: &str) -> Fitted {
        fit(case[name].as_str().unwrap_or_else(|| panic!("{name} is not a string")))
    }

    /// The proof's hashes, and whether all of them were exactly 32 bytes.
    fn proof_field(case: &Value) -> (Vec<Hash>, bool) {
        let items = match &case["proof"] {
            Value::Null => return (Vec::new(), true),
            Value::Array(items) => items,
            other => panic!("proof is {other}"),
        };
        let fitted: Vec<Fitted> =
            items.iter().map(|item| fit(item.as_str().expect("proof item is a string"))).collect();
        let exact = fitted.iter().all(|f| f.exact);
        (fitted.into_iter().map(|f| f.hash).collect(), exact)
    }

    fn u64_field(case: &Value, name: &str) -> u64 {
        case[name].as_u64().unwrap_or_else(|| panic!("{name} is not a u64"))
    }

    #[derive(Default, Debug)]
    struct VectorTally {
        inclusion: usize,
        consistency: usize,
        /// Cases with a value that is not 32 bytes, which the `Hash` type
        /// refuses before verification.
        not_32_bytes: usize,
        /// Of those, the ones whose fitted form the verifier refuses too.
        fitted_refused: usize,
        /// Happy paths whose proof was regenerated from the reference tree.
        proofs_regenerated: usize,
    }

    /// Runs one vector file and returns the verdict: refused at decoding when
    /// a value is not 32 bytes (as the `Hash` type forces any decoder to),
    /// else the verifier's. Happy paths over the reference tree are also
    /// regenerated and compared, and the fitted form of a refused case still
    /// goes through the verifier so that path is exercised too.
    fn run_vector(path: &Path, case: &Value, reference: &MemTree, tally: &mut VectorTally) -> Result<(), String> {
        let is_inclusion = path.components().any(|c| c.as_os_str() == "inclusion");
        let (proof, proof_exact) = proof_field(case);
        let want_err = case["wantErr"].as_bool().expect("wantErr is a bool");
        let (first, second) = if is_inclusion {
            (hash_field(case, "leafHash"), hash_field(case, "root"))
        } else {
            (hash_field(case, "root1"), hash_field(case, "root2"))
        };
        let verdict = if is_inclusion {
            tally.inclusion += 1;
            let (index, size) = (u64_field(case, "leafIdx"), u64_field(case, "treeSize"));
            let (leaf, tree_root) = (first.hash, second.hash);
            if !want_err && reference.root_at(size) == Ok(tree_root) {
                assert_eq!(reference.inclusion_proof(index, size), Ok(proof.clone()), "{}", path.display());
                tally.proofs_regenerated += 1;
            }
            verify_inclusion(index, size, &leaf, &proof, &tree_root)
        } else {
            tally.consistency += 1;
            let (old_size, new_size) = (u64_field(case, "size1"), u64_field(case, "size2"));
            let (old_root, new_root) = (first.hash, second.hash);
            if !want_err && reference.root_at(new_size) == Ok(new_root) {
                let regenerated = reference.consistency_proof(old_size, new_size);
                assert_eq!(regenerated, Ok(proof.clone()), "{}", path.display());
                tally.proofs_regenerated += 1;
            }
            verify_consistency(old_size, new_size, &proof, &old_root, &new_root)
        };
        if proof_exact && first.exact && second.exact {
            return verdict.map_err(|e| e.to_string());
        }
        tally.not_32_bytes += 1;
        if verdict.is_err() {
            tally.fitted_refused += 1;
        }
        Err("a value is not 32 bytes".to_owned())
    }

    #[test]
    fn rfc6962_vectors() {
        let reference =
            MemTree::from_leaf_hashes(REFERENCE_LEAVES.iter().map(|leaf| leaf_hash(leaf))).expect("8 leaves");
        let mut files = Vec::new();
        json_files(Path::new(VECTORS), &mut files);
        let mut tally = VectorTally::default();
        for path in &files {
            let text = std::fs::read_to_string(path).expect("vector file");
            let case: Value = serde_json::from_str(&text).expect("vector JSON");
            let want_err = case["wantErr"].as_bool().expect("wantErr is a bool");
            let outcome = run_vector(path, &case, &reference, &mut tally);
            assert_eq!(outcome.is_err(), want_err, "{} ({}): {outcome:?}", path.display(), case["desc"]);
        }
        eprintln!("{} vector files: {tally:?}", files.len());
        assert_eq!(files.len(), 131, "the vector set changed; update the counts below");
        assert_eq!(tally.inclusion + tally.consistency, files.len());
        assert_eq!((tally.inclusion, tally.consistency), (68, 63));
        assert_eq!(tally.not_32_bytes, 27);
        // The one exception is "empty root and leaf": both fit to the same
        // zero hash, and a one-leaf tree's root is its leaf hash, so only the
        // length check can refuse it.
        assert_eq!(tally.fitted_refused, 26);
        // Every happy path over the reference tree is regenerated bit for
        // bit; only single-entry's happy path uses another leaf.
        assert_eq!(tally.proofs_regenerated, 8);
    }

    /// RFC 6962 section 2.1, written as directly as the text reads.
    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves {
            [] => empty_root(),
            [leaf] => *leaf,
            _ => {
                let k = split_point(leaves.len());
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    /// The largest power of two below `n`, for `n >= 2`.
    fn split_point(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        if leaves.len() <= 1 {
            return Vec::new();
        }
        let k = split_point(leaves.len());
        let (mut path, sibling) = if m < k {
            (naive_path(m, &leaves[..k]), naive_root(&leaves[k..]))
        } else {
            (naive_path(m - k, &leaves[k..]), naive_root(&leaves[..k]))
        };
        path.push(sibling);
        path
    }

    fn naive_subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if complete { Vec::new() } else { vec![naive_root(leaves)] };
        }
        let k = split_point(n);
        let (mut proof, sibling) = if m <= k {
            (naive_subproof(m, &leaves[..k], complete), naive_root(&leaves[k..]))
        } else {
            (naive_subproof(m - k, &leaves[k..], false), naive_root(&leaves[..k]))
        };
        proof.push(sibling);
        proof
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        let table = [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (64, 32), (65, 64)];
        for (n, k) in table {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    fn test_leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn matches_naive_rfc6962_up_to_64_leaves() {
        for n in 1..=64u64 {
            let leaves = test_leaves(n);
            let tree = MemTree::from_leaf_hashes(leaves.iter().copied()).expect("small tree");
            let expected_root = naive_root(&leaves);
            assert_eq!(tree.root(), expected_root, "frontier root, n = {n}");
            assert_eq!(tree.root_at(n), Ok(expected_root), "stored root, n = {n}");
            assert_eq!(CompactRange::from_nodes(n, &tree).as_ref(), Ok(tree.frontier()), "n = {n}");
            for index in 0..n {
                let proof = tree.inclusion_proof(index, n).expect("inclusion proof");
                assert_eq!(proof, naive_path(index as usize, &leaves), "inclusion {index} in {n}");
                assert_eq!(verify_inclusion(index, n, &leaves[index as usize], &proof, &expected_root), Ok(()));
            }
            for old in 1..=n {
                let proof = tree.consistency_proof(old, n).expect("consistency proof");
                let naive = naive_subproof(old as usize, &leaves, true);
                assert_eq!(proof, naive, "consistency {old} -> {n}");
                let old_root = naive_root(&leaves[..old as usize]);
                assert_eq!(verify_consistency(old, n, &proof, &old_root, &expected_root), Ok(()));
            }
        }
    }

    #[test]
    fn append_visits_every_perfect_node_once() {
        let leaves = test_leaves(64);
        let mut frontier = CompactRange::new();
        let mut store: HashMap<NodeId, Hash> = HashMap::new();
        for (n, leaf) in (1u64..).zip(&leaves) {
            frontier
                .append(*leaf, |id, hash| assert!(store.insert(id, hash).is_none(), "{id} visited twice"))
                .expect("small tree");
            // A tree of n leaves has n - popcount(n) complete interior nodes.
            assert_eq!(store.len() as u64, 2 * n - u64::from(n.count_ones()), "n = {n}");
            assert_eq!(frontier.size(), n);
            assert_eq!(frontier.root(), naive_root(&leaves[..n as usize]));
        }
        for (id, hash) in &store {
            let range = id.leaf_range().expect("small node");
            let expected = naive_root(&leaves[range.start as usize..range.end as usize]);
            assert_eq!(*hash, expected, "{id}");
        }
    }

    #[test]
    fn argument_errors() {
        let tree = MemTree::from_leaf_hashes(test_leaves(5)).expect("small tree");
        assert_eq!(tree.inclusion_proof(5, 5), Err(TreeError::IndexOutOfRange { index: 5, size: 5 }));
        assert_eq!(tree.inclusion_proof(0, 0), Err(TreeError::IndexOutOfRange { index: 0, size: 0 }));
        assert_eq!(tree.consistency_proof(4, 3), Err(TreeError::SizeOrder { old_size: 4, new_size: 3 }));
        assert_eq!(tree.consistency_proof(0, 3), Err(TreeError::EmptyOldTree { new_size: 3 }));
        assert_eq!(tree.consistency_proof(0, 0), Ok(Vec::new()));
        assert_eq!(tree.consistency_proof(3, 3), Ok(Vec::new()));
        assert_eq!(tree.root_at(0), Ok(empty_root()));
        // Beyond the tree's size the store has no nodes to give; the root
        // of 6 leaves reads its rightmost tile, leaves 4 and 5, first.
        let missing = NodeId::new(1, 2);
        assert_eq!(tree.root_at(6), Err(TreeError::Source { id: missing, source: NodeNotFound { id: missing } }));
        assert!(tree.inclusion_proof(0, 6).is_err());
        assert!(tree.consistency_proof(2, 6).is_err());
        assert_eq!(
            CompactRange::from_nodes(7, &tree),
            Err(TreeError::Source { id: NodeId::new(1, 2), source: NodeNotFound { id: NodeId::new(1, 2) } })
        );
    }

    #[test]
    fn verify_error_evidence() {
        let leaves = test_leaves(6);
        let tree = MemTree::from_leaf_hashes(leaves.iter().copied()).expect("small tree");
        let root = tree.root();
        let proof = tree.inclusion_proof(2, 6).expect("proof");
        let wrong = [0xab; 32];
        let computed = root_from_inclusion(2, 6, &leaves[2], &proof).expect("rebuilds");
        assert_eq!(computed, root);
        let err = verify_inclusion(2, 6, &leaves[2], &proof, &wrong).expect_err("wrong root");
        assert_eq!(err, VerifyError::RootMismatch { expected: wrong, computed: root });
        let shown = err.to_string();
        assert!(shown.contains(&"ab".repeat(32)), "{shown}");
        assert!(shown.contains(&hex(&root).to_string()), "{shown}");

        let table: [(Result<(), VerifyError>, VerifyError); 6] = [
            (verify_inclusion(6, 6, &leaves[2], &proof, &root), VerifyError::IndexOutOfRange { index: 6, size: 6 }),
            (
                verify_inclusion(2, 6, &leaves[2], &proof[..2], &root),
                VerifyError::WrongProofLength { expected: 3, found: 2 },
            ),
            (verify_consistency(3, 2, &[], &root, &root), VerifyError::SizeOrder { old_size: 3, new_size: 2 }),
            (verify_consistency(0, 2, &[], &root, &root), VerifyError::EmptyOldTree { new_size: 2 }),
            (verify_consistency(2, 2, &proof, &root, &root), VerifyError::WrongProofLength { expected: 0, found: 3 }),
            (
                verify_consistency(3, 6, &tree.consistency_proof(3, 6).expect("proof"), &wrong, &root),
                VerifyError::OldRootMismatch { expected: wrong, computed: tree.root_at(3).expect("root") },
            ),
        ];
        for (index, (got, want)) in table.into_iter().enumerate() {
            assert_eq!(got, Err(want), "row {index}");
        }
        assert_eq!(verify_consistency(0, 0, &[], &empty_root(), &empty_root()), Ok(()));
    }

    /// A consistent tree of any size without storing it: every leaf has the
    /// same hash, so every perfect node of a level has the same hash too. It
    /// refuses nodes beyond `size`, checking that the generators ask only for
    /// nodes that exist, and counts reads.
    struct UniformTree {
        by_level: [Hash; 64],
        size: u64,
        reads: Cell<usize>,
    }

    impl UniformTree {
        fn new(size: u64) -> Self {
            let mut by_level = [leaf_hash(b"uniform"); 64];
            for level in 1..64 {
                by_level[level] = node_hash(&by_level[level - 1], &by_level[level - 1]);
            }
            UniformTree { by_level, size, reads: Cell::new(0) }
        }
    }

    impl NodeSource for UniformTree {
        type Error = NodeNotFound;

        fn node(&self, id: NodeId) -> Result<Hash, NodeNotFound> {
            self.reads.set(self.reads.get() + 1);
            match id.leaf_range() {
                Some(range) if range.end <= self.size => Ok(self.by_level[usize::from(id.level)]),
                _ => Err(NodeNotFound { id }),
            }
        }
    }

    /// Wraps a store and counts reads.
    struct Counting<'a, S> {
        inner: &'a S,
        reads: Cell<usize>,
    }

    impl<S: NodeSource> NodeSource for Counting<'_, S> {
        type Error = S::Error;

        fn node(&self, id: NodeId) -> Result<Hash, S::Error> {
            self.reads.set(self.reads.get() + 1);
            self.inner.node(id)
        }
    }

    fn ceil_log2(n: u64) -> usize {
        bit_len(n.saturating_sub(1)) as usize
    }

    /// Checks the tight read bounds: `popcount` for a root, `2 * ceil(log2
    /// n)` for an inclusion proof and one more for a consistency proof's
    /// seed. These are well inside the `4 * log2(n) + 4` budget.
    fn check_reads<S: NodeSource>(store: &S, size: u64, index: u64, old: u64)
    where
        S::Error: fmt::Debug,
    {
        let counting = Counting { inner: store, reads: Cell::new(0) };
        let tree_root = root(&counting, size).expect("root");
        assert_eq!(counting.reads.replace(0), size.count_ones() as usize);

        let bound = 2 * ceil_log2(size);
        let proof = inclusion_proof(&counting, index, size).expect("inclusion proof");
        let reads = counting.reads.replace(0);
        assert!(reads <= bound.max(1), "{reads} reads for inclusion of {index} in {size}");
        let leaf = counting.inner.node(NodeId::leaf(index)).expect("leaf");
        assert_eq!(verify_inclusion(index, size, &leaf, &proof, &tree_root), Ok(()));

        let proof = consistency_proof(&counting, old, size).expect("consistency proof");
        let reads = counting.reads.replace(0);
        assert!(reads <= bound + 1, "{reads} reads for consistency {old} -> {size}");
        let old_root = root(counting.inner, old).expect("old root");
        assert_eq!(verify_consistency(old, size, &proof, &old_root, &tree_root), Ok(()));
    }

    #[test]
    fn proofs_read_logarithmically_many_nodes() {
        const N_LEAVES: u64 = 1_000_000;
        let mut frontier = CompactRange::new();
        let mut store: HashMap<NodeId, Hash> = HashMap::with_capacity(2 * N_LEAVES as usize);
        for i in 0..N_LEAVES {
            frontier
                .append(leaf_hash(&i.to_le_bytes()), |id, hash| {
                    store.insert(id, hash);
                })
                .expect("in range");
        }
        assert_eq!(store.len() as u64, 2 * N_LEAVES - u64::from(N_LEAVES.count_ones()));
        assert_eq!(root(&store, N_LEAVES), Ok(frontier.root()));
        assert_eq!(CompactRange::from_nodes(N_LEAVES, &store), Ok(frontier));

        let sizes = [N_LEAVES, N_LEAVES - 1, 777_777, 524_289, 524_288, 2, 1];
        for size in sizes {
            let mut indices: Vec<u64> = (0..size).step_by(9_973).collect();
            indices.extend([size - 1, size.saturating_sub(2), size / 2]);
            for (step, index) in indices.into_iter().enumerate() {
                // Pair each index with an old size that varies as much.
                let old = 1 + (index + step as u64 * 7_919) % size;
                check_reads(&store, size, index, old);
            }
        }
    }

    #[test]
    fn huge_trees_do_not_overflow() {
        let table = [
            (u64::MAX, u64::MAX - 1, u64::MAX - 1),
            (u64::MAX, 0, 1),
            (u64::MAX, 1 << 63, 1 << 63),
            (u64::MAX, (1 << 63) - 1, (1 << 63) + 1),
            (u64::MAX - 1, u64::MAX - 2, 3),
            (1 << 63, (1 << 63) - 1, (1 << 63) - 1),
            ((1 << 63) + 1, 1 << 63, 1 << 63),
        ];
        for (size, index, old) in table {
            check_reads(&UniformTree::new(size), size, index, old);
        }

        let full = UniformTree::new(u64::MAX);
        let mut frontier = CompactRange::from_nodes(u64::MAX - 1, &full).expect("frontier");
        let mut visited = Vec::new();
        assert_eq!(frontier.append(full.by_level[0], |id, _| visited.push(id)), Ok(()));
        assert_eq!(visited, [NodeId::leaf(u64::MAX - 1)]);
        assert_eq!(Ok(frontier.root()), root(&full, u64::MAX));
        assert_eq!(frontier.append(full.by_level[0], |_, _| {}), Err(TreeFull));
        assert_eq!(frontier.size(), u64::MAX);
        assert_eq!(NodeId::new(64, 0).leaf_range(), None);
        assert_eq!(NodeId::new(63, 2).leaf_range(), None);
        // Leaf u64::MAX cannot exist, so neither can the pair above it.
        assert_eq!(NodeId::new(1, u64::MAX / 2).leaf_range(), None);
        assert_eq!(NodeId::new(1, u64::MAX / 2 - 1).leaf_range(), Some(u64::MAX - 3..u64::MAX - 1));
        assert_eq!(NodeId::leaf(u64::MAX - 1).leaf_range(), Some(u64::MAX - 1..u64::MAX));
    }

    fn flip(hash: &Hash, bit: usize) -> Hash {
        let mut flipped = *hash;
        flipped[bit / 8 % 32] ^= 1 << (bit % 8);
        flipped
    }

    /// A tree size, an older size at most as large, and a leaf below that.
    fn sizes() -> impl Strategy<Value = (u64, u64, u64)> {
        (1u64..=2000).prop_flat_map(|n| (Just(n), 1..=n)).prop_flat_map(|(n, m)| (Just(n), Just(m), 0..m))
    }

    /// Sizes and indices that sit on the edges of the `u64` range.
    fn wide_u64() -> impl Strategy<Value = u64> {
        prop_oneof![any::<u64>(), 0u64..8, Just(u64::MAX), Just(u64::MAX - 1), Just(1 << 63), Just((1 << 63) - 1)]
    }

    proptest! {
        #[test]
        fn generated_proofs_verify_and_tampering_fails(
            (n, m, index) in sizes(),
            bit in 0usize..256,
            extra in any::<[u8; 32]>(),
        ) {
            let leaves = test_leaves(n);
            let tree = MemTree::from_leaf_hashes(leaves.iter().copied()).expect("small tree");
            let new_root = tree.root();
            prop_assert_eq!(tree.root_at(n), Ok(new_root));
            let old_root = tree.root_at(m).expect("old root");
            let leaf = leaves[index as usize];

            let proof = tree.inclusion_proof(index, m).expect("inclusion proof");
            prop_assert_eq!(verify_inclusion(index, m, &leaf, &proof, &old_root), Ok(()));
            for at in 0..proof.len() {
                let mut tampered = proof.clone();
                tampered[at] = flip(&tampered[at], bit);
                prop_assert!(verify_inclusion(index, m, &leaf, &tampered, &old_root).is_err(), "element {}", at);
            }
            prop_assert!(verify_inclusion(index, m, &flip(&leaf, bit), &proof, &old_root).is_err());
            prop_assert!(verify_inclusion(index, m, &leaf, &proof, &flip(&old_root, bit)).is_err());
            if let Some((_, shorter)) = proof.split_last() {
                prop_assert!(verify_inclusion(index, m, &leaf, shorter, &old_root).is_err());
            }
            let mut longer = proof.clone();
            longer.push(extra);
            prop_assert!(verify_inclusion(index, m, &leaf, &longer, &old_root).is_err());
            longer.rotate_right(1);
            prop_assert!(verify_inclusion(index, m, &leaf, &longer, &old_root).is_err());

            let proof = tree.consistency_proof(m, n).expect("consistency proof");
            prop_assert_eq!(verify_consistency(m, n, &proof, &old_root, &new_root), Ok(()));
            for at in 0..proof.len() {
                let mut tampered = proof.clone();
                tampered[at] = flip(&tampered[at], bit);
                prop_assert!(verify_consistency(m, n, &tampered, &old_root, &new_root).is_err(), "element {}", at);
            }
            prop_assert!(verify_consistency(m, n, &proof, &flip(&old_root, bit), &new_root).is_err());
            prop_assert!(verify_consistency(m, n, &proof, &old_root, &flip(&new_root, bit)).is_err());
            if let Some((_, shorter)) = proof.split_last() {
                prop_assert!(verify_consistency(m, n, shorter, &old_root, &new_root).is_err());
            }
            let mut longer = proof.clone();
            longer.push(extra);
            prop_assert!(verify_consistency(m, n, &longer, &old_root, &new_root).is_err());
            longer.rotate_right(1);
            prop_assert!(verify_consistency(m, n, &longer, &old_root, &new_root).is_err());
        }

        #[test]
        fn uniform_huge_trees_prove_and_verify(size in wide_u64(), index in any::<u64>(), old in any::<u64>()) {
            let size = size.max(1);
            let src = UniformTree::new(size);
            check_reads(&src, size, index % size, 1 + old % size);
            prop_assert_eq!(CompactRange::from_nodes(size, &src).map(|range| range.root()), root(&src, size));
        }

        #[test]
        fn verifiers_never_panic(
            index in wide_u64(),
            size in wide_u64(),
            old in wide_u64(),
            proof in proptest::collection::vec(any::<[u8; 32]>(), 0..130),
            first in any::<[u8; 32]>(),
            second in any::<[u8; 32]>(),
        ) {
            let _ = verify_inclusion(index, size, &first, &proof, &second);
            let _ = verify_consistency(old, size, &proof, &first, &second);
            let _ = verify_consistency(index, old, &proof, &first, &second);
        }
    }

    #[test]
    fn a_seeded_consistency_proof_commits_to_both_roots() {
        let honest = MemTree::from_leaf_hashes((0..20u8).map(|i| leaf_hash(&[i]))).unwrap();
        // The same log after rewriting its entry 1: another history.
        let forked = MemTree::from_leaf_hashes(
            (0..20u8).map(|i| leaf_hash(if i == 1 { &[1, 1] } else { std::slice::from_ref(&i) })),
        )
        .unwrap();
        for old in 1..20u64 {
            for new in old + 1..=20 {
                let seeded = |tree: &MemTree| {
                    let proof = tree.consistency_proof(old, new).unwrap();
                    seeded_consistency_proof(old, &proof, &tree.root_at(old).unwrap())
                };
                let want = (honest.root_at(old).unwrap(), honest.root_at(new).unwrap());
                assert_eq!(roots_from_seeded_consistency(old, new, &seeded(&honest)), Ok(want), "{old}->{new}");
                let (old_root, new_root) = roots_from_seeded_consistency(old, new, &seeded(&forked)).unwrap();
                assert_eq!(new_root, forked.root_at(new).unwrap(), "{old}->{new}");
                assert_eq!(old_root == want.0, old < 2, "{old}->{new}: the old roots differ once entry 1 is in");
                let mut short = seeded(&honest);
                short.pop();
                assert!(
                    matches!(
                        roots_from_seeded_consistency(old, new, &short),
                        Err(VerifyError::WrongProofLength { .. })
                    ),
                    "{old}->{new}"
                );
            }
        }
        assert!(roots_from_seeded_consistency(5, 5, &[]).is_err());
        assert!(roots_from_seeded_consistency(0, 5, &[[0; 32]]).is_err());
    }
}
