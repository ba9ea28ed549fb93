//! How an entry's bytes are stored: as they are, or compressed with a
//! dictionary trained on the log's own entries.
//!
//! An entry's bytes are mostly structure its neighbours share: the magic,
//! the signer's key, field tags, the organisation codes, GTINs, locations
//! and words of its event. Compressed one at a time, a few hundred bytes
//! hardly shrink; compressed against a dictionary of what the log's entries
//! have in common, the structure all but vanishes and what stays is what
//! no dictionary can predict: the previous hash, the signature, document
//! hashes, numbers. (Measured on the benchmark workload: 565-byte entries
//! store in about 230 bytes; README "Performance".) Each value stays one
//! entry, read alone: a trace or a verdict still reads single records.
//!
//! A value under `E ‖ seq` is either
//! - the entry bytes (they start with the magic `qtrace/v1/entry\0`), or
//! - one zstd frame of the entry bytes, compressed with the log's
//!   dictionary (it starts with the zstd magic `28 B5 2F FD`, names the
//!   dictionary's id and records the entry's length).
//!
//! A log has at most one dictionary, under the key `Z` of its tree. Its
//! follower trains it once [`TRAIN_AT`] entries are durable, from up to
//! [`SAMPLES`] of them spread over the log, writes it and flushes the log
//! database, and only then lets appends use it: no value ever names a
//! dictionary a crash could lose. Entries written before it stay as they
//! are. The entry bytes, their hashes, proofs and everything served are
//! unchanged; only the form at rest differs, and it is undone on every
//! read. A value that is neither form, names another dictionary, or does
//! not decompress to a length the entry format allows is reported as
//! damage naming the entry.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use qtrace_ledger::entry::{ENTRY_HEADER_LEN, ENTRY_MAGIC, Entry, MAX_EVENT_BYTES};
use qtrace_ledger::hash::EntryHash;
use qtrace_ledger::merkle;
use zstd::zstd_safe::{self, CCtx, CDict, DCtx, DDict};

use crate::{ENTRY, Result, StoreError, key};

/// The key of a log's dictionary in its tree.
pub(crate) const DICTIONARY: &[u8] = b"Z";
/// Durable entries a log holds before its follower trains its dictionary
/// (fewer in this crate's tests, so that most of them store compressed
/// entries).
#[cfg(not(test))]
pub const TRAIN_AT: u64 = 4_096;
#[cfg(test)]
pub const TRAIN_AT: u64 = 256;
/// Most entries the dictionary is trained on, spread evenly over the log.
const SAMPLES: u64 = 4_096;
/// Most bytes of samples the dictionary is trained on (zstd's guidance is
/// about a hundred times the dictionary's size): events are up to 64 KiB,
/// and 4,096 of those would hold a quarter of a gigabyte while the
/// follower trains.
const SAMPLE_BYTES: usize = 100 * DICTIONARY_BYTES;
/// The dictionary's size. 32 KiB holds the shared structure of a few kinds
/// of record; the benchmark workload compressed no better with 64 KiB.
const DICTIONARY_BYTES: usize = 32 << 10;
/// zstd's level: 1, its fastest standard level, compresses an entry in
/// about 1.2 µs. Measured on the benchmark workload, level 3 (its default)
/// saved 3 more bytes an entry for a third more time, level 9 8 bytes for
/// five times the time.
const LEVEL: i32 = 1;
/// The first bytes of every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// The longest entry.
const MAX_ENTRY: u64 = (ENTRY_HEADER_LEN + MAX_EVENT_BYTES) as u64;

/// A trained dictionary, digested for both directions.
struct Dictionary {
    id: u32,
    compress: CDict<'static>,
    decompress: DDict<'static>,
}

impl Dictionary {
    fn new(bytes: &[u8]) -> Result<Dictionary> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("the log's compression dictionary {why}"));
        let id = zstd_safe::get_dict_id(bytes).ok_or_else(|| corrupt("is not a zstd dictionary"))?.get();
        let compress = CDict::try_create(bytes, LEVEL).ok_or_else(|| corrupt("does not load for compression"))?;
        let decompress = DDict::try_create(bytes).ok_or_else(|| corrupt("does not load for decompression"))?;
        Ok(Dictionary { id, compress, decompress })
    }
}

/// One log's entry codec: its dictionary once there is one.
pub(crate) struct Codec {
    dictionary: OnceLock<Dictionary>,
    /// The log's size at the last training that failed (zstd finds no
    /// dictionary in samples too few or too alike); the next try waits
    /// until the log has doubled.
    failed_at: AtomicU64,
}

thread_local! {
    /// zstd contexts are a few hundred KiB each: one per thread, reused.
    static COMPRESS: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    static DECOMPRESS: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

impl Codec {
    /// The codec of a log whose tree is `tree`: its stored dictionary, if
    /// any.
    pub fn load(tree: &sled::Tree) -> Result<Codec> {
        let codec = Codec::none();
        if let Some(bytes) = tree.get(DICTIONARY)? {
            let _ = codec.dictionary.set(Dictionary::new(&bytes)?);
        }
        Ok(codec)
    }

    /// A codec without a dictionary (reads raw entries; a compressed one is
    /// damage).
    pub fn none() -> Codec {
        Codec { dictionary: OnceLock::new(), failed_at: AtomicU64::new(0) }
    }

    /// Whether the log has a dictionary.
    pub fn has_dictionary(&self) -> bool {
        self.dictionary.get().is_some()
    }

    /// The value to store for an entry whose bytes are `bytes`: compressed
    /// with the log's dictionary, or the bytes themselves when there is
    /// none (or compression would not make them smaller).
    pub fn encode(&self, bytes: Vec<u8>) -> Vec<u8> {
        let Some(dictionary) = self.dictionary.get() else { return bytes };
        let compressed = COMPRESS.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = CCtx::try_create();
            }
            let cctx = cell.as_mut()?;
            let mut out = Vec::with_capacity(zstd_safe::compress_bound(bytes.len()));
            cctx.compress_using_cdict(&mut out, &bytes, &dictionary.compress).ok()?;
            Some(out)
        });
        // Without a context (out of memory) or a gain, the bytes as they are.
        match compressed {
            Some(out) if out.len() < bytes.len() => out,
            _ => bytes,
        }
    }

    /// The entry stored as `value` under sequence number `seq`.
    pub fn decode(&self, seq: u64, value: &[u8]) -> Result<Entry> {
        Ok(Entry::decode(&self.entry_bytes(seq, value)?)?)
    }

    /// [`Codec::decode`] with the entry's hash, taken from the bytes read
    /// (an entry decodes only from the one layout it encodes to, so they are
    /// the bytes its hash is of) instead of encoding the entry again.
    pub fn decode_hashed(&self, seq: u64, value: &[u8]) -> Result<(Entry, EntryHash)> {
        let bytes = self.entry_bytes(seq, value)?;
        Ok((Entry::decode(&bytes)?, EntryHash(merkle::leaf_hash(&bytes))))
    }

    /// The entry's bytes from its stored value: the value itself, or the
    /// value decompressed.
    fn entry_bytes<'a>(&self, seq: u64, value: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        if value.starts_with(ENTRY_MAGIC) {
            return Ok(Cow::Borrowed(value));
        }
        Ok(Cow::Owned(self.decompress(seq, value)?))
    }

    fn decompress(&self, seq: u64, value: &[u8]) -> Result<Vec<u8>> {
        let corrupt = |why: String| StoreError::Corrupt(format!("stored entry {seq} {why}"));
        if !value.starts_with(&ZSTD_MAGIC) {
            return Err(corrupt("is neither an entry nor a compressed entry (unknown first bytes)".into()));
        }
        let named = zstd_safe::get_dict_id_from_frame(value).map(|id| id.get());
        let dictionary = match (self.dictionary.get(), named) {
            (Some(d), Some(id)) if d.id == id => d,
            (Some(d), Some(id)) => {
                return Err(corrupt(format!("is compressed with dictionary {id}; the log's is {}", d.id)));
            }
            (None, Some(id)) => {
                return Err(corrupt(format!("is compressed with dictionary {id}, and the log has no dictionary")));
            }
            (_, None) => return Err(corrupt("is a compressed frame that names no dictionary".into())),
        };
        let len = match zstd_safe::get_frame_content_size(value) {
            Ok(Some(len)) if (ENTRY_HEADER_LEN as u64..=MAX_ENTRY).contains(&len) => len as usize,
            Ok(Some(len)) => return Err(corrupt(format!("decompresses to {len} bytes, not an entry's length"))),
            Ok(None) | Err(_) => return Err(corrupt("is a compressed frame without a readable length".into())),
        };
        DECOMPRESS.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = DCtx::try_create();
            }
            let dctx = cell.as_mut().ok_or_else(|| corrupt("cannot be decompressed: no zstd context".into()))?;
            let mut out = Vec::with_capacity(len);
            match dctx.decompress_using_ddict(&mut out, value, &dictionary.decompress) {
                Ok(n) if n == len => Ok(out),
                Ok(n) => Err(corrupt(format!("decompresses to {n} bytes, its frame says {len}"))),
                Err(code) => Err(corrupt(format!("does not decompress: {}", zstd_safe::get_error_name(code)))),
            }
        })
    }

    /// Whether the follower should train the dictionary now that `durable`
    /// entries are durable.
    pub fn wants_training(&self, durable: u64) -> bool {
        !self.has_dictionary() && durable >= TRAIN_AT && durable >= 2 * self.failed_at.load(Ordering::Relaxed)
    }

    /// Up to [`SAMPLES`] entries spread evenly over the first `durable`, in
    /// all at most [`SAMPLE_BYTES`]; an entry that cannot be read is left
    /// out and logged.
    fn samples(&self, tree: &sled::Tree, durable: u64) -> Vec<Vec<u8>> {
        let step = durable.div_ceil(SAMPLES).max(1);
        let mut samples = Vec::with_capacity(durable.min(SAMPLES) as usize);
        let mut sampled = 0;
        for seq in (0..durable).step_by(step as usize) {
            let read = tree.get(key(ENTRY, &seq.to_be_bytes())).map_err(StoreError::from).and_then(|value| {
                let value = value.ok_or_else(|| StoreError::Corrupt(format!("entry {seq} is not stored")))?;
                self.decode(seq, &value)
            });
            match read {
                Ok(entry) => {
                    let bytes = entry.encode();
                    if sampled + bytes.len() > SAMPLE_BYTES {
                        break;
                    }
                    sampled += bytes.len();
                    samples.push(bytes);
                }
                Err(e) => tracing::warn!(seq, "entry left out of the compression dictionary's samples: {e}"),
            }
        }
        samples
    }

    /// Trains the log's dictionary on entries spread over the first
    /// `durable` (all durable; at most [`SAMPLE_BYTES`] of them), stores it
    /// and flushes the log database, then uses it. Returns whether a
    /// dictionary was installed; a training that finds none is remembered
    /// and tried again when the log has doubled. A sampled entry that
    /// cannot be read only leaves it out (and is logged): training must
    /// never stop the follower, which reports a damaged entry itself when
    /// it indexes it. Only writing the dictionary can fail the call.
    pub fn train(&self, tree: &sled::Tree, db: &sled::Db, durable: u64) -> Result<bool> {
        let samples = self.samples(tree, durable);
        let trained = zstd::dict::from_samples(&samples, DICTIONARY_BYTES)
            .map_err(|e| e.to_string())
            .and_then(|bytes| Dictionary::new(&bytes).map(|dictionary| (bytes, dictionary)).map_err(|e| e.to_string()));
        let (bytes, dictionary) = match trained {
            Ok(trained) => trained,
            Err(e) => {
                self.failed_at.store(durable, Ordering::Relaxed);
                tracing::info!(entries = durable, "no compression dictionary found in the log's entries yet: {e}");
                return Ok(false);
            }
        };
        // Durable before any entry names it.
        tree.insert(DICTIONARY, bytes)?;
        db.flush()?;
        let _ = self.dictionary.set(dictionary);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, event: Vec<u8>) -> Entry {
        Entry {
            seq,
            prev_hash: EntryHash([seq as u8; 32]),
            logged_at_micros: 1_793_491_200_000_000 + seq as i64,
            signer: [7; 32],
            signature: [seq as u8 ^ 0x5a; 64],
            event,
        }
    }

    /// A store's tree holding `n` entries with events that share structure.
    fn tree_with(n: u64) -> (sled::Db, sled::Tree) {
        let db = sled::Config::new().temporary(true).open().unwrap_or_else(|e| panic!("{e}"));
        let tree = db.open_tree("log").unwrap_or_else(|e| panic!("{e}"));
        for seq in 0..n {
            let e = entry(seq, event(seq));
            tree.insert(key(ENTRY, &seq.to_be_bytes()), e.encode()).unwrap_or_else(|e| panic!("{e}"));
        }
        (db, tree)
    }

    fn event(seq: u64) -> Vec<u8> {
        format!(
            "production of lot L{seq:08} of GTIN 06901234567892 by 91320982MA1XYZ1234 at line {} shift {}",
            seq % 7,
            seq % 3
        )
        .into_bytes()
    }

    fn trained(n: u64) -> (sled::Db, sled::Tree, Codec) {
        let (db, tree) = tree_with(n);
        let codec = Codec::none();
        assert!(codec.wants_training(n));
        assert_eq!(codec.train(&tree, &db, n).ok(), Some(true));
        (db, tree, codec)
    }

    #[test]
    fn entries_round_trip_raw_and_compressed() {
        let (_db, tree, codec) = trained(TRAIN_AT);
        let raw = Codec::none();
        for seq in [0, 1, 4_095, 10_000, 123_456_789] {
            let e = entry(seq, event(seq));
            let plain = raw.encode(e.encode());
            assert_eq!(plain, e.encode(), "without a dictionary the bytes as they are");
            let packed = codec.encode(e.encode());
            assert!(packed.starts_with(&ZSTD_MAGIC), "compressed once the log has a dictionary");
            assert!(packed.len() * 2 < plain.len(), "{} of {} bytes", packed.len(), plain.len());
            for (value, c) in [(&plain, &codec), (&plain, &raw), (&packed, &codec)] {
                assert_eq!(c.decode(seq, value).ok(), Some(e.clone()));
                assert_eq!(c.decode_hashed(seq, value).ok(), Some((e.clone(), e.hash())));
            }
        }
        // The dictionary is durable and a reopened log reads with it.
        let reloaded = Codec::load(&tree).unwrap_or_else(|e| panic!("{e}"));
        let e = entry(9, event(9));
        assert_eq!(reloaded.decode(9, &codec.encode(e.encode())).ok(), Some(e));
        assert!(!reloaded.wants_training(u64::MAX));
    }

    #[test]
    fn damaged_values_are_reported_naming_the_entry() {
        let (_db, _tree, codec) = trained(TRAIN_AT);
        let (_db2, _tree2, other) = trained(TRAIN_AT + 64);
        let e = entry(42, event(42));
        let packed = codec.encode(e.encode());
        let mut header_only = packed.clone();
        // The magic and the frame header's first byte only.
        header_only.truncate(5);
        let none = Codec::none();
        let cases: Vec<(&str, Vec<u8>, &Codec, &str)> = vec![
            ("unknown first bytes", b"not an entry".to_vec(), &codec, "neither an entry"),
            ("no dictionary", packed.clone(), &none, "the log has no dictionary"),
            ("truncated frame", packed[..packed.len() / 2].to_vec(), &codec, "entry 42"),
            ("header only", header_only, &codec, "entry 42"),
        ];
        for (name, value, c, expected) in cases {
            match c.decode(42, &value) {
                Err(StoreError::Corrupt(msg)) => assert!(msg.contains(expected), "{name}: {msg}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        // Another log's dictionary (trained on other samples) has another id.
        if other.dictionary.get().map(|d| d.id) != codec.dictionary.get().map(|d| d.id) {
            match other.decode(42, &packed) {
                Err(StoreError::Corrupt(msg)) => assert!(msg.contains("is compressed with dictionary"), "{msg}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_failed_training_waits_for_the_log_to_double() {
        // Too few samples for zstd to find a dictionary in.
        let (db, tree) = tree_with(2);
        let codec = Codec::none();
        assert!(!codec.wants_training(2), "not before TRAIN_AT");
        assert_eq!(codec.train(&tree, &db, 2).ok(), Some(false));
        assert!(!codec.has_dictionary());
        assert!(tree.get(DICTIONARY).ok().flatten().is_none(), "nothing stored");
        assert!(codec.wants_training(TRAIN_AT), "a failure far below TRAIN_AT does not delay it");
        // A failure at a size the log may train at waits until it doubles.
        codec.failed_at.store(TRAIN_AT * 3, Ordering::Relaxed);
        assert!(!codec.wants_training(TRAIN_AT * 6 - 1));
        assert!(codec.wants_training(TRAIN_AT * 6));
    }

    /// Training never fails the follower over a sample: a damaged or
    /// missing entry among the samples is left out, the rest train.
    #[test]
    fn unreadable_samples_are_left_out_of_training() {
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("a damaged value", Some(b"not an entry at all")),
            ("a zstd frame naming no dictionary of this log", Some(&[0x28, 0xB5, 0x2F, 0xFD, 0, 0, 0])),
            ("a missing entry", None),
        ];
        for (case, value) in cases {
            let (db, tree) = tree_with(TRAIN_AT);
            let first = key(ENTRY, &0u64.to_be_bytes());
            match value {
                Some(bytes) => tree.insert(first, *bytes).map(drop),
                None => tree.remove(first).map(drop),
            }
            .unwrap_or_else(|e| panic!("{case}: {e}"));
            let codec = Codec::none();
            assert_eq!(codec.train(&tree, &db, TRAIN_AT).ok(), Some(true), "{case}");
            assert!(codec.has_dictionary(), "{case}");
        }
    }

    /// Large events are sampled only up to [`SAMPLE_BYTES`] in all.
    #[test]
    fn samples_are_bounded_in_bytes() {
        let (db, tree) = tree_with(0);
        // 200 of them fill the bound; the log holds more.
        let big = SAMPLE_BYTES as u64 / 200;
        for seq in 0..TRAIN_AT {
            let mut event = event(seq);
            event.resize(big as usize, b' ');
            tree.insert(key(ENTRY, &seq.to_be_bytes()), entry(seq, event).encode()).unwrap_or_else(|e| panic!("{e}"));
        }
        let codec = Codec::none();
        let samples = codec.samples(&tree, TRAIN_AT);
        let bytes: usize = samples.iter().map(Vec::len).sum();
        assert!(bytes <= SAMPLE_BYTES, "{bytes} bytes sampled");
        assert!(samples.len() < TRAIN_AT as usize, "the bound stopped the sampling");
        assert!(samples.len() >= 150, "only {} samples", samples.len());
        // Training still succeeds on them.
        assert_eq!(codec.train(&tree, &db, TRAIN_AT).ok(), Some(true));
    }
}
