//! Packed postings: the sequence numbers of the entries under one index key,
//! a block of up to [`BLOCK`] of them per sled value instead of one sled key
//! per posting.
//!
//! Under `P ‖ index key` (the bytes of [`crate::index_prefix`] after its
//! first byte):
//!
//! | suffix            | value                                                    |
//! |-------------------|----------------------------------------------------------|
//! | `0xFFFF_FFFF`     | the open block: varint sealed-block count ‖ a run        |
//! | ordinal (u32 BE)  | a sealed block: a run of exactly [`BLOCK`] postings      |
//!
//! A run is a varint count, then the first sequence number and the
//! differences between neighbours (each at least 1), all varints. When the
//! open block reaches [`BLOCK`] postings it is sealed under the next
//! ordinal and a new, empty open block starts; so the layout depends only on
//! the list of postings, never on how appends or follower batches were cut,
//! and a rebuild from the entries gives the very same bytes.
//!
//! A key with no sealed block is one point read. Paging `after` a sequence
//! number over sealed blocks is a binary search over the ordinals (point
//! reads), then reads block by block.

use prost::bytes::Buf;
use prost::encoding::{decode_varint, encode_varint};

use crate::{Result, StoreError};

/// Postings per sealed block.
pub const BLOCK: usize = 1_024;
/// The suffix of the open block; ordinals of sealed blocks stay below it.
const OPEN: u32 = u32::MAX;
/// The first byte of every postings key.
pub(crate) const POSTINGS: u8 = b'P';

/// The key of block `ordinal` (or the open block) of the index key whose
/// postings prefix is `prefix` (`P ‖ index key`).
pub(crate) fn block_key(prefix: &[u8], ordinal: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 4);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&ordinal.to_be_bytes());
    k
}

pub(crate) fn open_key(prefix: &[u8]) -> Vec<u8> {
    block_key(prefix, OPEN)
}

/// Splits a postings key into its index-key prefix and its block ordinal
/// (`None` for the open block).
pub(crate) fn split_key(key: &[u8]) -> Option<(&[u8], Option<u32>)> {
    let (prefix, ordinal) = key.split_last_chunk::<4>()?;
    let ordinal = u32::from_be_bytes(*ordinal);
    Some((prefix, (ordinal != OPEN).then_some(ordinal)))
}

/// The open block of a key: how many blocks are sealed before it, and the
/// newest postings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OpenBlock {
    pub sealed: u32,
    pub seqs: Vec<u64>,
}

fn encode_run(seqs: &[u64], out: &mut Vec<u8>) {
    encode_varint(seqs.len() as u64, out);
    let mut prev = None;
    for &seq in seqs {
        encode_varint(prev.map_or(seq, |p| seq - p), out);
        prev = Some(seq);
    }
}

/// Decodes a run; `what` names the block in errors.
fn decode_run(buf: &mut &[u8], what: &dyn Fn() -> String) -> Result<Vec<u64>> {
    let corrupt = |rule: &str| StoreError::Corrupt(format!("{}: {rule}", what()));
    let count = decode_varint(buf).map_err(|_| corrupt("posting count is not a varint"))?;
    if count > BLOCK as u64 {
        return Err(corrupt(&format!("{count} postings, more than a block holds ({BLOCK})")));
    }
    let mut seqs = Vec::with_capacity(count as usize);
    let mut prev: Option<u64> = None;
    for _ in 0..count {
        let delta = decode_varint(buf).map_err(|_| corrupt("posting is not a varint"))?;
        let seq = match prev {
            None => delta,
            Some(_) if delta == 0 => return Err(corrupt("postings not strictly ascending")),
            Some(p) => p.checked_add(delta).ok_or_else(|| corrupt("posting beyond 2^64"))?,
        };
        seqs.push(seq);
        prev = Some(seq);
    }
    Ok(seqs)
}

pub(crate) fn encode_open(block: &OpenBlock) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + block.seqs.len() * 2);
    encode_varint(u64::from(block.sealed), &mut out);
    encode_run(&block.seqs, &mut out);
    out
}

pub(crate) fn encode_sealed(seqs: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + seqs.len() * 2);
    encode_run(seqs, &mut out);
    out
}

pub(crate) fn decode_open(value: &[u8], what: &dyn Fn() -> String) -> Result<OpenBlock> {
    let mut buf = value;
    let corrupt = |rule: &str| StoreError::Corrupt(format!("{}: {rule}", what()));
    let sealed = decode_varint(&mut buf).map_err(|_| corrupt("sealed-block count is not a varint"))?;
    let sealed = u32::try_from(sealed)
        .ok()
        .filter(|&s| s < OPEN)
        .ok_or_else(|| corrupt(&format!("sealed-block count {sealed} is out of range")))?;
    let seqs = decode_run(&mut buf, what)?;
    if buf.has_remaining() {
        return Err(corrupt("trailing bytes after the postings"));
    }
    if seqs.len() >= BLOCK {
        return Err(corrupt("a full open block (it should have been sealed)"));
    }
    Ok(OpenBlock { sealed, seqs })
}

pub(crate) fn decode_sealed(value: &[u8], what: &dyn Fn() -> String) -> Result<Vec<u64>> {
    let mut buf = value;
    let seqs = decode_run(&mut buf, what)?;
    if buf.has_remaining() {
        return Err(StoreError::Corrupt(format!("{}: trailing bytes after the postings", what())));
    }
    if seqs.len() != BLOCK {
        return Err(StoreError::Corrupt(format!("{}: a sealed block of {} postings, not {BLOCK}", what(), seqs.len())));
    }
    Ok(seqs)
}

/// Adds `new` (ascending, all above the open block's postings) to `open`,
/// and returns the blocks this seals as (ordinal, value). The caller writes
/// them and the open block.
pub(crate) fn push(open: &mut OpenBlock, new: &[u64]) -> Vec<(u32, Vec<u8>)> {
    let mut sealed = Vec::new();
    for &seq in new {
        open.seqs.push(seq);
        if open.seqs.len() == BLOCK {
            sealed.push((open.sealed, encode_sealed(&open.seqs)));
            open.sealed += 1;
            open.seqs.clear();
        }
    }
    sealed
}

/// Where the blocks of one key are read from.
pub(crate) trait Blocks {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
}

impl Blocks for sled::Tree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(sled::Tree::get(self, key)?.map(|v| v.to_vec()))
    }
}

/// Blocks held in memory (a derivation from the entries starts from none).
impl Blocks for std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(std::collections::BTreeMap::get(self, key).cloned())
    }
}

/// Postings of the key under `prefix` above `after`, ascending, at most
/// `limit`.
pub(crate) fn read(blocks: &impl Blocks, prefix: &[u8], after: Option<u64>, limit: usize) -> Result<Vec<u64>> {
    // Named only when something is wrong: a lookup must not pay for it.
    let what = |ordinal: u32| {
        move || {
            let text = String::from_utf8_lossy(&prefix[1..]);
            let block = if ordinal == OPEN { "open block".to_string() } else { format!("block {ordinal}") };
            format!("postings {block} of index key {text:?}")
        }
    };
    if limit == 0 || after == Some(u64::MAX) {
        return Ok(Vec::new());
    }
    let Some(value) = blocks.get(&open_key(prefix))? else { return Ok(Vec::new()) };
    let open = decode_open(&value, &what(OPEN))?;
    let above = |seq: &u64| after.is_none_or(|a| *seq > a);
    // Sealed blocks hold only postings below the open block's first one.
    let first_block = match (after, open.seqs.first()) {
        _ if open.sealed == 0 => open.sealed,
        (Some(a), Some(&first)) if first <= a => open.sealed,
        (None, _) => 0,
        (Some(a), _) => {
            // The first sealed block whose last posting is above `after`.
            let (mut low, mut high) = (0u32, open.sealed);
            while low < high {
                let mid = low + (high - low) / 2;
                let value = blocks
                    .get(&block_key(prefix, mid))?
                    .ok_or_else(|| StoreError::Corrupt(format!("{} is missing", what(mid)())))?;
                let seqs = decode_sealed(&value, &what(mid))?;
                if seqs.last().is_some_and(|&last| last > a) {
                    high = mid;
                } else {
                    low = mid + 1;
                }
            }
            low
        }
    };
    let mut out = Vec::new();
    for ordinal in first_block..open.sealed {
        let value = blocks
            .get(&block_key(prefix, ordinal))?
            .ok_or_else(|| StoreError::Corrupt(format!("{} is missing", what(ordinal)())))?;
        for seq in decode_sealed(&value, &what(ordinal))?.into_iter().filter(above) {
            if out.len() >= limit {
                return Ok(out);
            }
            out.push(seq);
        }
    }
    out.extend(open.seqs.into_iter().filter(above).take(limit - out.len()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const PREFIX: &[u8] = b"Pgabc";

    /// Writes `batches` one after another as the follower does.
    fn written(batches: &[Vec<u64>]) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut blocks = BTreeMap::new();
        for batch in batches {
            let mut open = match Blocks::get(&blocks, &open_key(PREFIX)).unwrap_or_else(|e| panic!("{e}")) {
                Some(v) => decode_open(&v, &|| "open".into()).unwrap_or_else(|e| panic!("{e}")),
                None => OpenBlock::default(),
            };
            for (ordinal, value) in push(&mut open, batch) {
                blocks.insert(block_key(PREFIX, ordinal), value);
            }
            blocks.insert(open_key(PREFIX), encode_open(&open));
        }
        blocks
    }

    #[test]
    fn pages_over_sealed_blocks() {
        // (postings, after, limit): every case is checked against a filter
        // of the plain list.
        let evens: Vec<u64> = (0..5_000u64).map(|i| i * 2).collect();
        let one = vec![7u64];
        let exactly_a_block: Vec<u64> = (100..100 + BLOCK as u64).collect();
        let lists: [&[u64]; 4] = [&evens, &one, &exactly_a_block, &[]];
        for list in lists {
            for cut in [1usize, 3, 1_000, 5_000] {
                let batches: Vec<Vec<u64>> = list.chunks(cut).map(<[u64]>::to_vec).collect();
                let blocks = written(&batches);
                let afters = [None, Some(0), Some(1), Some(7), Some(2_047), Some(2_048), Some(9_997), Some(u64::MAX)];
                for after in afters {
                    for limit in [0usize, 1, 5, 1_024, 1_025, usize::MAX] {
                        let want: Vec<u64> =
                            list.iter().copied().filter(|&s| after.is_none_or(|a| s > a)).take(limit).collect();
                        let got = read(&blocks, PREFIX, after, limit).unwrap_or_else(|e| panic!("{e}"));
                        assert_eq!(got, want, "{} postings cut by {cut}, after {after:?}, limit {limit}", list.len());
                    }
                }
            }
        }
    }

    #[test]
    fn the_layout_depends_only_on_the_postings() {
        let list: Vec<u64> = (0..3_000u64).map(|i| i * 3 + 1).collect();
        let whole = written(std::slice::from_ref(&list));
        assert_eq!(whole.len(), 3, "two sealed blocks and the open one");
        for cut in [1usize, 2, 1_023, 1_024, 1_025] {
            let batches: Vec<Vec<u64>> = list.chunks(cut).map(<[u64]>::to_vec).collect();
            assert_eq!(written(&batches), whole, "cut by {cut}");
        }
    }

    #[test]
    fn corrupt_blocks_are_refused_naming_the_rule() {
        let open = |sealed: u64, run: &[u64]| {
            let mut v = Vec::new();
            encode_varint(sealed, &mut v);
            run.iter().for_each(|x| encode_varint(*x, &mut v));
            v
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "sealed-block count is not a varint"),
            ("no count", open(0, &[]), "posting count is not a varint"),
            ("short", open(0, &[2, 5]), "posting is not a varint"),
            ("repeat", open(0, &[2, 5, 0]), "not strictly ascending"),
            ("overflow", open(0, &[2, u64::MAX, 1]), "beyond 2^64"),
            ("too many", open(0, &[BLOCK as u64 + 1]), "more than a block holds"),
            ("trailing", open(0, &[1, 5, 9]), "trailing bytes"),
            ("sealed count", open(u64::from(u32::MAX), &[0]), "out of range"),
        ];
        for (name, value, rule) in cases {
            match decode_open(&value, &|| "the block".into()) {
                Err(StoreError::Corrupt(message)) => assert!(message.contains(rule), "{name}: {message}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        match decode_sealed(&encode_sealed(&[1, 2, 3]), &|| "sealed".into()) {
            Err(StoreError::Corrupt(message)) => assert!(message.contains("not 1024"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn blocks_round_trip(gaps in proptest::collection::vec(1u64..100_000, 0..3_000), cut in 1usize..2_000) {
            let mut list = Vec::with_capacity(gaps.len());
            let mut seq = 0u64;
            for gap in gaps {
                seq += gap;
                list.push(seq);
            }
            let batches: Vec<Vec<u64>> = list.chunks(cut).map(<[u64]>::to_vec).collect();
            let blocks = written(&batches);
            prop_assert_eq!(read(&blocks, PREFIX, None, usize::MAX).unwrap_or_else(|e| panic!("{e}")), list.clone());
            if let Some(&mid) = list.get(list.len() / 2) {
                let want: Vec<u64> = list.iter().copied().filter(|&s| s > mid).take(10).collect();
                prop_assert_eq!(read(&blocks, PREFIX, Some(mid), 10).unwrap_or_else(|e| panic!("{e}")), want);
            }
        }
    }
}
