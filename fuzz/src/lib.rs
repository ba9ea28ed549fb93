//! The bodies of the qtrace fuzz targets, one function per target, shared
//! by the libFuzzer harnesses in `fuzz_targets/` and by the `replay`
//! binary that runs them over the committed corpus on a stable compiler.
//!
//! Each target feeds untrusted bytes to a decoder of `qtrace-ledger` and,
//! where the format is canonical, checks that whatever decodes encodes back
//! to the same bytes (or value). A panic is a finding.

use std::sync::OnceLock;

use prost::Message;
use qtrace_ledger::bundle;
use qtrace_ledger::entry::Entry;
use qtrace_ledger::event;
use qtrace_ledger::hash::LogId;
use qtrace_ledger::ids::{Date, Gln, Gtin, Lot, ProductCode, Serial, Uscc};
use qtrace_ledger::merkle::{self, Hash, MemTree};
use qtrace_ledger::note::{self, Checkpoint, CosignatureVerifier, Cosigner, Note, Signer, Verifier};
use qtrace_ledger::signing::SecretKey;
use qtrace_ledger::verdict::{self, Trust};

pub mod accept;

/// A fuzz target: it panics on a finding.
pub type Target = fn(&[u8]);

/// The fuzz targets by name; the corpus of each is `corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("event_decode", event_decode),
    ("entry_decode", entry_decode),
    ("note_parse", note_parse),
    ("proof_verify", proof_verify),
    ("product_code", product_code),
    ("bundle_open", bundle_open),
];

/// Origin of the fixed log whose key signs the seed checkpoints and bundles.
pub const LOG_ORIGIN: &str = "qtrace.fuzz/log";
/// Name of the fixed witness that cosigns seed checkpoints.
pub const WITNESS_NAME: &str = "qtrace.fuzz/witness";
/// The C2SP signed-note example key (testdata/signed-note.txt).
pub const EXAMPLE_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";

/// The fixed log key (a constant seed: these are test keys).
pub fn log_key() -> SecretKey {
    SecretKey::from_seed(&[7; 32])
}

pub fn log_signer() -> Signer {
    // The origin is a valid key name, so this cannot fail.
    Signer::new(LOG_ORIGIN, log_key().signing_key().clone()).expect("fixed log origin")
}

pub fn witness() -> Cosigner {
    Cosigner::new(WITNESS_NAME, SecretKey::from_seed(&[8; 32]).signing_key().clone()).expect("fixed witness name")
}

struct Fixtures {
    log: Verifier,
    witness: CosignatureVerifier,
    example: Verifier,
    trust: Trust,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let log = log_signer().verifier();
        let witness = witness().verifier();
        Fixtures {
            trust: Trust { logs: vec![log.clone()], witnesses: vec![witness.clone()] },
            example: Verifier::parse(EXAMPLE_VKEY).expect("the C2SP example key parses"),
            log,
            witness,
        }
    })
}

/// `event::decode_event`: canonical protobuf events.
pub fn event_decode(data: &[u8]) {
    let Ok(valid) = event::decode_event(data) else { return };
    // One event has one byte form: the decoder refuses every other.
    assert_eq!(valid.event.encode_to_vec(), data, "a decoded event re-encodes to other bytes");
    assert_eq!(event::validate(&valid.event), Ok(valid.kind));
    let _ = event::index_keys(&valid.event);
}

/// `entry::Entry::decode`: the fixed entry layout.
pub fn entry_decode(data: &[u8]) {
    let Ok(entry) = Entry::decode(data) else { return };
    assert_eq!(entry.encode(), data, "a decoded entry re-encodes to other bytes");
    let wire = entry.to_pb(&LogId([3; 32]));
    assert_eq!(Entry::from_pb(&wire).as_ref(), Ok(&entry), "the wire form round-trips");
    let _ = entry.verify_signature();
    let _ = entry.check_link(&LogId([3; 32]), Some(&entry.prev_hash));
    if let Ok(valid) = event::decode_event(&entry.event) {
        let _ = event::index_keys(&valid.event);
    }
}

/// `note::Note::parse`, `note::Verifier::parse`, `note::Checkpoint::parse_body`
/// and `note::open_checkpoint` with a fixed log key and witness.
pub fn note_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    if let Ok(note) = Note::parse(text) {
        assert_eq!(note.to_string(), text, "a parsed note prints back to other text");
    }
    if let Ok(verifier) = Verifier::parse(text) {
        let printed = verifier.to_string();
        assert_eq!(Verifier::parse(&printed).map(|v| v.to_string()), Ok(printed), "a verifier key round-trips");
    }
    let _ = CosignatureVerifier::parse(text);
    if let Ok(checkpoint) = Checkpoint::parse_body(text) {
        assert_eq!(checkpoint.to_body(), text, "a parsed checkpoint body prints back to other text");
    }
    let fixtures = fixtures();
    let _ = Note::open(text, std::slice::from_ref(&fixtures.example));
    if let Ok(opened) = note::open_checkpoint(text, &fixtures.log, std::slice::from_ref(&fixtures.witness)) {
        assert!(opened.log_signed);
        assert_eq!(Checkpoint::parse_body(&opened.checkpoint.to_body()), Ok(opened.checkpoint.clone()));
        for (name, _) in &opened.cosigners {
            assert_eq!(name.as_str(), WITNESS_NAME);
        }
    }
}

/// Reads a big-endian u64 and 32-byte hashes off the front of the input.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        first
    }

    fn u64(&mut self) -> u64 {
        let mut out = [0u8; 8];
        let n = self.0.len().min(8);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        u64::from_be_bytes(out)
    }

    fn hash(&mut self) -> Hash {
        let mut out = [0u8; 32];
        let n = self.0.len().min(32);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }

    /// The rest as whole hashes.
    fn hashes(self) -> Vec<Hash> {
        self.0.chunks_exact(32).map(|c| c.try_into().unwrap_or([0; 32])).collect()
    }
}

/// `merkle::verify_inclusion` and `merkle::verify_consistency`. The first
/// byte picks the mode:
///
/// - even: arbitrary sizes and hashes, `[0, index or old size (u64 BE),
///   size or new size (u64 BE), leaf, root, old root, proof hashes…]`;
///   nothing may panic, and a proof that verifies must have the length the
///   sizes fix.
/// - odd: a real tree of up to 64 leaves made from the input; its real
///   proofs must verify and a proof with one bit flipped must not.
pub fn proof_verify(data: &[u8]) {
    let mut bytes = Bytes(data);
    if bytes.u8() % 2 == 0 {
        let (a, b) = (bytes.u64(), bytes.u64());
        let (leaf, root, old_root) = (bytes.hash(), bytes.hash(), bytes.hash());
        let proof = bytes.hashes();
        if merkle::verify_inclusion(a, b, &leaf, &proof, &root).is_ok() {
            assert_eq!(merkle::root_from_inclusion(a, b, &leaf, &proof), Ok(root));
        }
        if merkle::verify_consistency(a, b, &proof, &old_root, &root).is_ok() {
            assert!(a <= b, "a consistency proof verified from a larger tree");
            assert!(a > 0 || a == b, "a consistency proof from the empty tree verified");
        }
        return;
    }
    let n = u64::from(bytes.u8() % 64) + 1;
    let (x, y, flip) = (bytes.u64(), bytes.u64(), bytes.u64());
    let seed = bytes.hash();
    let leaves: Vec<Hash> = (0..n)
        .map(|i| {
            let mut leaf = seed.to_vec();
            leaf.extend_from_slice(&i.to_be_bytes());
            merkle::leaf_hash(&leaf)
        })
        .collect();
    let tree = MemTree::from_leaf_hashes(leaves.iter().copied()).expect("a small tree");
    let size = x % n + 1;
    let index = y % size;
    let root = tree.root_at(size).expect("root of a prefix");
    let mut proof = tree.inclusion_proof(index, size).expect("inclusion proof");
    let leaf_hash = leaves[index as usize];
    assert_eq!(merkle::verify_inclusion(index, size, &leaf_hash, &proof, &root), Ok(()), "a real inclusion proof");
    if !proof.is_empty() {
        let i = (flip % proof.len() as u64) as usize;
        proof[i][(flip >> 8) as usize % 32] ^= 1 << ((flip >> 16) % 8);
        assert!(merkle::verify_inclusion(index, size, &leaf_hash, &proof, &root).is_err(), "a tampered proof verified");
    }
    let old_size = y % size + 1;
    let old_root = tree.root_at(old_size).expect("old root");
    let mut proof = tree.consistency_proof(old_size, size).expect("consistency proof");
    assert_eq!(
        merkle::verify_consistency(old_size, size, &proof, &old_root, &root),
        Ok(()),
        "a real consistency proof"
    );
    if !proof.is_empty() {
        let i = (flip % proof.len() as u64) as usize;
        proof[i][(flip >> 8) as usize % 32] ^= 1 << ((flip >> 16) % 8);
        assert!(
            merkle::verify_consistency(old_size, size, &proof, &old_root, &root).is_err(),
            "a tampered consistency proof verified"
        );
    }
}

/// `ids::ProductCode::parse`, `Uscc::parse`, `Gtin::parse` and the other
/// identifier parsers: whatever parses writes out and parses back equal.
pub fn product_code(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    if let Ok(code) = ProductCode::parse(text) {
        assert_eq!(ProductCode::parse(&code.to_element_string()), Ok(code.clone()), "element string round trip");
        assert_eq!(
            ProductCode::parse(&code.to_digital_link("https://id.gs1.org")),
            Ok(code),
            "Digital Link round trip"
        );
    }
    if let Ok(uscc) = Uscc::parse(text) {
        assert_eq!(Uscc::parse(uscc.as_str()), Ok(uscc));
    }
    if let Ok(gtin) = Gtin::parse(text) {
        assert_eq!(Gtin::parse(gtin.as_str()), Ok(gtin));
    }
    if let Ok(gln) = Gln::parse(text) {
        assert_eq!(Gln::parse(gln.as_str()), Ok(gln));
    }
    if let Ok(lot) = Lot::parse(text) {
        assert_eq!(Lot::parse(lot.as_str()), Ok(lot));
    }
    if let Ok(serial) = Serial::parse(text) {
        assert_eq!(Serial::parse(serial.as_str()), Ok(serial));
    }
    if let Ok(date) = Date::parse_iso(text) {
        assert_eq!(Date::parse_iso(&date.to_string()), Ok(date));
    }
    let _ = Date::parse(text);
    let _ = Date::from_yymmdd(text);
    let _ = verdict::product_code(text);
}

/// `bundle::decode` and `bundle::open` with a fixed trust (the fixed log
/// key and witness), then the verdict on the bundle's subject, as
/// `qtrace verify --offline` computes it.
pub fn bundle_open(data: &[u8]) {
    let Ok(decoded) = bundle::decode(data) else { return };
    assert_eq!(bundle::decode(&decoded.encode_to_vec()), Ok(decoded.clone()), "a decoded bundle round-trips");
    let fixtures = fixtures();
    let Ok(opened) = bundle::open(&decoded, &fixtures.trust, None) else { return };
    let _ =
        verdict::verify_subject(&opened.view, &fixtures.trust, opened.subject.as_ref(), None, None, Default::default());
}
