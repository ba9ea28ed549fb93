//! Known-answer vectors for the exact bytes of ARCHITECTURE.md ("Exact
//! bytes"): a fixed key and event pin the event signature, the entry bytes,
//! the entry hash, the log id, the dedup key, the signed checkpoint and a
//! witness cosignature.
//!
//! Signing and verifying share one function for each layout, so a changed
//! constant (a domain prefix, a byte order, a key type) would still pass
//! every round-trip test. The expected values in `testdata/exact-bytes.txt`
//! were computed from the ARCHITECTURE.md text alone with Python's hashlib
//! and the `cryptography` package, never by this crate; each layout is
//! checked both ways: what qtrace writes equals the vector, and what qtrace
//! reads accepts the vector.

use std::collections::BTreeMap;

use prost::Message;

use crate::entry::Entry;
use crate::event;
use crate::hash::{EntryHash, LogId};
use crate::merkle;
use crate::note::{self, Checkpoint, CosignatureVerifier, Cosigner, Signer, Verifier};
use crate::pb::{self, event::Body};
use crate::signing::{PublicKey, SecretKey};

const VECTORS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/exact-bytes.txt"));

/// The vectors by name.
fn vectors() -> BTreeMap<&'static str, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (n, line) in VECTORS.lines().enumerate().filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty()) {
        let (name, value) = line.split_once(' ').unwrap_or_else(|| panic!("line {}: not `name hex`", n + 1));
        let bytes = hex::decode(value).unwrap_or_else(|e| panic!("line {} ({name}): {e}", n + 1));
        assert!(out.insert(name, bytes).is_none(), "line {}: {name} appears twice", n + 1);
    }
    out
}

struct Vectors(BTreeMap<&'static str, Vec<u8>>);

impl Vectors {
    fn bytes(&self, name: &str) -> &[u8] {
        self.0.get(name).unwrap_or_else(|| panic!("testdata/exact-bytes.txt has no {name}"))
    }

    fn array<const N: usize>(&self, name: &str) -> [u8; N] {
        self.bytes(name).try_into().unwrap_or_else(|_| panic!("{name} is not {N} bytes"))
    }

    fn text(&self, name: &str) -> String {
        String::from_utf8(self.bytes(name).to_vec()).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn u64(&self, name: &str) -> u64 {
        u64::from_be_bytes(self.array(name))
    }
}

/// The fixed event of the vectors, built field by field as a client would.
fn fixed_event() -> pb::Event {
    let product = pb::ProductKey { gtin: "09520123456788".into(), lot: "KAT-LOT-1".into(), serial: String::new() };
    pb::Event {
        event_time: Some(pb::EventTime { unix_millis: 1_790_000_000_000, offset_minutes: 480 }),
        subject: Some(pb::Subject { kind: Some(pb::subject::Kind::Product(product.clone())) }),
        body: Some(Body::Production(pb::Production {
            output: Some(pb::LotQuantity {
                product: Some(product),
                quantity: Some(pb::Quantity { value: 1000.0, unit: "EA".into() }),
            }),
            production_date: "2026-09-01".into(),
            expiry_date: "2028-09-01".into(),
            factory_gln: "6931234000013".into(),
        })),
        ..Default::default()
    }
}

fn hexes(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[test]
fn exact_bytes_match_the_independent_vectors() {
    let v = Vectors(vectors());
    let signer = SecretKey::from_seed(&v.array("signer_seed"));
    let log_key = SecretKey::from_seed(&v.array("log_seed"));
    let witness_key = SecretKey::from_seed(&v.array("witness_seed"));

    let event_bytes = fixed_event().encode_to_vec();
    let signature = signer.sign_event(&event_bytes);
    let entry = Entry {
        seq: v.u64("entry_seq"),
        prev_hash: EntryHash(v.array("entry_prev_hash")),
        logged_at_micros: i64::from_be_bytes(v.array("entry_logged_at_micros")),
        signer: signer.public_key().to_bytes(),
        signature,
        event: event_bytes.clone(),
    };
    let entry_hash = entry.hash();
    let log_id = LogId::of_key(&log_key.public_key().to_bytes());
    let root = merkle::node_hash(&entry_hash.0, &merkle::leaf_hash(&[]));

    let origin = v.text("checkpoint_origin");
    let log_signer = Signer::new(&origin, log_key.signing_key().clone()).expect("the origin is a valid key name");
    let checkpoint = Checkpoint { origin: origin.clone(), size: 2, root, extensions: Vec::new() };
    let note_text = note::sign_checkpoint(&checkpoint, &log_signer).expect("signs");
    let witness = Cosigner::new(&v.text("witness_name"), witness_key.signing_key().clone()).expect("witness name");
    let cosignature = witness.cosign(&checkpoint, v.u64("cosignature_timestamp")).expect("cosigns");

    // What qtrace writes, name by name.
    let mut computed: Vec<(&str, Vec<u8>)> = vec![
        ("signer_public_key", signer.public_key().to_bytes().to_vec()),
        ("log_public_key", log_key.public_key().to_bytes().to_vec()),
        ("witness_public_key", witness_key.public_key().to_bytes().to_vec()),
        ("event_bytes", event_bytes.clone()),
        ("event_signature", signature.to_vec()),
        ("entry_bytes", entry.encode()),
        ("entry_hash", entry_hash.0.to_vec()),
        ("log_id", log_id.0.to_vec()),
        ("second_leaf_hash", merkle::leaf_hash(&[]).to_vec()),
        ("tree_root_2", root.to_vec()),
        ("empty_tree_root", merkle::empty_root().to_vec()),
        ("checkpoint_body", checkpoint.to_body().into_bytes()),
        ("checkpoint_note", note_text.clone().into_bytes()),
        ("log_vkey", log_signer.verifier().to_string().into_bytes()),
        ("cosignature_line", format!("{cosignature}\n").into_bytes()),
        ("witness_vkey", witness.verifier().to_string().into_bytes()),
    ];
    computed.push(("dedup_key", crate::hash::dedup_key(&signer.public_key().to_bytes(), &event_bytes).to_vec()));
    let mut wrong = Vec::new();
    for (name, got) in &computed {
        if got.as_slice() != v.bytes(name) {
            wrong.push(format!("{name}:\n  qtrace:  {}\n  vector:  {}", hexes(got), hexes(v.bytes(name))));
        }
    }
    assert!(wrong.is_empty(), "qtrace's bytes differ from testdata/exact-bytes.txt:\n{}", wrong.join("\n"));

    // What qtrace reads accepts the vectors' bytes.
    let valid = event::decode_event(v.bytes("event_bytes")).expect("the vector event is canonical and valid");
    assert_eq!(valid.event, fixed_event());
    let signer_key = PublicKey::from_slice(v.bytes("signer_public_key")).expect("signer key");
    signer_key.verify_event(v.bytes("event_bytes"), v.bytes("event_signature")).expect("the vector signature verifies");
    let decoded = Entry::decode(v.bytes("entry_bytes")).expect("the vector entry decodes");
    assert_eq!(decoded, entry);
    assert_eq!(decoded.verify_signature().map(|k| k.to_bytes()), Ok(signer.public_key().to_bytes()));
    let log_verifier = Verifier::parse(&v.text("log_vkey")).expect("the vector vkey parses");
    let witness_verifier = CosignatureVerifier::parse(&v.text("witness_vkey")).expect("the vector witness vkey parses");
    let cosigned = format!("{}{}", v.text("checkpoint_note"), v.text("cosignature_line"));
    let opened = note::open_checkpoint(&cosigned, &log_verifier, &[witness_verifier]).expect("the vectors open");
    assert_eq!(opened.checkpoint, checkpoint);
    assert_eq!(opened.cosigners.len(), 1, "the witness cosignature verifies");
    assert_eq!(opened.cosigners[0].1, v.u64("cosignature_timestamp"));
}
