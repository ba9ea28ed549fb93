//! Checking what a node sends before believing it: an entry's hash is
//! recomputed from its fields and its signature verified; a checkpoint's
//! note is parsed (and, given the log's verifier key, its signature
//! checked); proofs are checked with the ledger's own Merkle code.
//!
//! Every error carries the evidence (what the node claimed and what was
//! computed), so a regulator can act on it.

use crate::entry::{Entry, EntryError};
use crate::event::{EventError, ValidEvent, decode_event};
use crate::hash::{EntryHash, HashLengthError, LogId};
use crate::input::RecordKey;
use crate::merkle::{self, VerifyError};
use crate::note::{self, NoteError, Verifier};
use crate::pb;
use crate::records::RecordRef;

/// Why something a node sent does not check out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    #[error("the node sent a malformed entry: {0}")]
    Entry(EntryError),
    #[error("the node sent a malformed {0}")]
    Length(HashLengthError),
    #[error("entry {seq}: the node claims entry hash {claimed}, but its fields hash to {computed}")]
    HashMismatch { seq: u64, claimed: String, computed: EntryHash },
    #[error("entry {seq}: the signature does not verify: {source}")]
    Signature { seq: u64, source: EntryError },
    #[error("entry {seq}: the signed event does not decode: {source}")]
    Event { seq: u64, source: EventError },
    #[error("asked for record {asked}, the node sent entry {seq} with hash {hash}")]
    WrongRecord { asked: RecordKey, seq: u64, hash: EntryHash },
    #[error("the node's checkpoint note does not parse: {0}")]
    NoteSyntax(NoteError),
    #[error("the checkpoint does not verify with the log's key: {0}")]
    NoteSignature(NoteError),
    #[error("the node says the checkpoint is {field} {claimed}, but its signed note says {signed}")]
    CheckpointMismatch { field: &'static str, claimed: String, signed: String },
    #[error("{what}: {source}")]
    Proof { what: &'static str, source: VerifyError },
    #[error("{0}")]
    Missing(String),
    #[error("{what} is {found}, expected {expected}")]
    Unexpected { what: &'static str, expected: String, found: String },
}

/// An entry whose hash was recomputed and whose signature and event verified.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedEntry {
    pub log_id: LogId,
    pub entry: Entry,
    /// Recomputed from the fields, equal to what the node claimed.
    pub hash: EntryHash,
    pub event: ValidEvent,
}

impl CheckedEntry {
    /// How another record names this one.
    pub fn reference(&self) -> RecordRef {
        RecordRef { log_id: self.log_id, seq: self.entry.seq, entry_hash: self.hash }
    }
}

/// Rebuilds the leaf bytes of an entry from its wire form, recomputes its
/// hash and refuses it if the node's claimed hash differs; then verifies the
/// signature and decodes the event.
pub fn check_entry(wire: &pb::Entry) -> Result<CheckedEntry, CheckError> {
    let entry = Entry::from_pb(wire).map_err(CheckError::Entry)?;
    let log_id = LogId::from_slice(&wire.log_id).map_err(CheckError::Length)?;
    let hash = entry.hash();
    if wire.entry_hash.as_slice() != hash.0.as_slice() {
        return Err(CheckError::HashMismatch {
            seq: entry.seq,
            claimed: hex::encode(&wire.entry_hash),
            computed: hash,
        });
    }
    entry.verify_signature().map_err(|source| CheckError::Signature { seq: entry.seq, source })?;
    let event = decode_event(&entry.event).map_err(|source| CheckError::Event { seq: entry.seq, source })?;
    Ok(CheckedEntry { log_id, entry, hash, event })
}

/// Checks that the entry is the one that was asked for.
pub fn check_answer(asked: RecordKey, entry: &CheckedEntry) -> Result<(), CheckError> {
    let matches = match asked {
        RecordKey::Seq(seq) => entry.entry.seq == seq,
        RecordKey::Hash(hash) => entry.hash == hash,
        RecordKey::InLog(log, seq) => entry.log_id == log && entry.entry.seq == seq,
    };
    if matches { Ok(()) } else { Err(CheckError::WrongRecord { asked, seq: entry.entry.seq, hash: entry.hash }) }
}

/// A checkpoint as the node sent it, with its note parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedCheckpoint {
    pub checkpoint: note::Checkpoint,
    /// The full signed note text.
    pub note: String,
    /// True when the log's signature was verified with a trusted key.
    pub signed: bool,
}

/// Parses a checkpoint's note and checks that the node's convenience fields
/// say what the note says. With the log's verifier key the note's signature
/// must verify (C2SP `open`); without one the note is only parsed, and
/// `signed` is false.
pub fn check_checkpoint(wire: &pb::Checkpoint, log_key: Option<&Verifier>) -> Result<CheckedCheckpoint, CheckError> {
    let (checkpoint, signed) = match log_key {
        Some(verifier) => {
            let opened = note::open_checkpoint(&wire.note, verifier, &[]).map_err(CheckError::NoteSignature)?;
            (opened.checkpoint, true)
        }
        None => {
            let parsed = note::Note::parse(&wire.note).map_err(CheckError::NoteSyntax)?;
            (note::Checkpoint::parse_body(parsed.text()).map_err(CheckError::NoteSyntax)?, false)
        }
    };
    let mismatch = |field, claimed: String, signed: String| CheckError::CheckpointMismatch { field, claimed, signed };
    if wire.origin != checkpoint.origin {
        return Err(mismatch("origin", wire.origin.clone(), checkpoint.origin));
    }
    if wire.size != checkpoint.size {
        return Err(mismatch("size", wire.size.to_string(), checkpoint.size.to_string()));
    }
    if wire.root.as_slice() != checkpoint.root.as_slice() {
        return Err(mismatch("root", hex::encode(&wire.root), hex::encode(checkpoint.root)));
    }
    Ok(CheckedCheckpoint { checkpoint, note: wire.note.clone(), signed })
}

/// Converts a proof path from the wire, refusing hashes that are not 32 bytes.
pub fn proof_path(path: &[Vec<u8>]) -> Result<Vec<merkle::Hash>, CheckError> {
    path.iter()
        .map(|h| {
            <[u8; 32]>::try_from(h.as_slice()).map_err(|_| CheckError::Unexpected {
                what: "a proof hash's length",
                expected: "32 bytes".into(),
                found: format!("{} bytes", h.len()),
            })
        })
        .collect()
}

/// Converts a root hash from the wire.
pub fn root_hash(what: &'static str, bytes: &[u8]) -> Result<merkle::Hash, CheckError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| CheckError::Unexpected {
        what,
        expected: "32 bytes".into(),
        found: format!("{} bytes", bytes.len()),
    })
}

/// A verified inclusion of an entry in a checkpoint's tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Inclusion {
    pub seq: u64,
    pub entry_hash: EntryHash,
    pub tree_size: u64,
    pub root: merkle::Hash,
    pub path: Vec<merkle::Hash>,
}

/// Verifies that the entry whose hash was recomputed as `entry_hash` is leaf
/// `seq` of the tree of the checkpoint, with the node's inclusion proof.
pub fn check_inclusion(
    seq: u64,
    entry_hash: EntryHash,
    proof: &pb::InclusionProof,
    checkpoint: &note::Checkpoint,
) -> Result<Inclusion, CheckError> {
    if proof.leaf_index != seq {
        return Err(CheckError::Unexpected {
            what: "the inclusion proof's leaf index",
            expected: seq.to_string(),
            found: proof.leaf_index.to_string(),
        });
    }
    if proof.tree_size != checkpoint.size {
        return Err(CheckError::Unexpected {
            what: "the inclusion proof's tree size",
            expected: format!("{} (the checkpoint's size)", checkpoint.size),
            found: proof.tree_size.to_string(),
        });
    }
    let path = proof_path(&proof.path)?;
    merkle::verify_inclusion(seq, proof.tree_size, &entry_hash.0, &path, &checkpoint.root)
        .map_err(|source| CheckError::Proof { what: "the inclusion proof does not verify", source })?;
    Ok(Inclusion { seq, entry_hash, tree_size: proof.tree_size, root: checkpoint.root, path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{fixtures, seal};
    use crate::signing::SecretKey;

    fn wire_entry(seq: u64) -> (pb::Entry, LogId) {
        let key = SecretKey::from_seed(&[1; 32]);
        let (_, event) = fixtures::every_kind().swap_remove(5);
        let sealed = seal(&event, &key).expect("valid fixture");
        let log = LogId([3; 32]);
        let entry = Entry {
            seq,
            prev_hash: EntryHash([4; 32]),
            logged_at_micros: 1_795_226_400_000_000,
            signer: key.public_key().to_bytes(),
            signature: sealed.signed.signature.clone().try_into().expect("64 bytes"),
            event: sealed.signed.event,
        };
        (entry.to_pb(&log), log)
    }

    #[test]
    fn entries_are_rechecked() {
        let (good, log) = wire_entry(5);
        let checked = check_entry(&good).expect("good entry");
        assert_eq!(checked.log_id, log);
        assert_eq!(checked.reference().seq, 5);
        assert_eq!(check_answer(RecordKey::Seq(5), &checked), Ok(()));
        assert_eq!(check_answer(RecordKey::Hash(checked.hash), &checked), Ok(()));
        assert!(matches!(check_answer(RecordKey::Seq(6), &checked), Err(CheckError::WrongRecord { .. })));

        let mut lying_hash = good.clone();
        lying_hash.entry_hash[0] ^= 1;
        let mut other_time = good.clone();
        other_time.logged_at_micros += 1;
        let mut bad_sig = good.clone();
        if let Some(s) = bad_sig.signed.as_mut() {
            s.signature[0] ^= 1;
        }
        let mut short_log = good.clone();
        short_log.log_id.pop();
        let cases: Vec<(&str, pb::Entry, &str)> = vec![
            ("claimed hash", lying_hash, "entry 5: the node claims entry hash"),
            ("field changed", other_time, "entry 5: the node claims entry hash"),
            ("signature", bad_sig.clone(), "entry 5: the node claims entry hash"),
            ("log id", short_log, "the node sent a malformed log_id must be 32 bytes, found 31"),
        ];
        for (name, wire, want) in cases {
            let got = check_entry(&wire).map(drop).map_err(|e| e.to_string());
            assert!(got.as_ref().is_err_and(|e| e.starts_with(want)), "{name}: {got:?}");
        }
        // With the hash recomputed honestly, a bad signature is still caught.
        let mut resigned = bad_sig;
        if let Ok(entry) = Entry::from_pb(&resigned) {
            resigned.entry_hash = entry.hash().0.to_vec();
        }
        assert!(matches!(check_entry(&resigned), Err(CheckError::Signature { seq: 5, .. })));
    }

    #[test]
    fn checkpoints_and_inclusion() {
        let signer = note::Signer::new("qtrace.example/sh-amr", SecretKey::from_seed(&[7; 32]).signing_key().clone())
            .expect("signer");
        let leaves: Vec<merkle::Hash> = (0u8..5).map(|i| merkle::leaf_hash(&[i])).collect();
        let tree = merkle::MemTree::from_leaf_hashes(leaves.clone()).expect("tree");
        let cp =
            note::Checkpoint { origin: "qtrace.example/sh-amr".into(), size: 5, root: tree.root(), extensions: vec![] };
        let text = note::sign_checkpoint(&cp, &signer).expect("signed");
        let wire = pb::Checkpoint { note: text, origin: cp.origin.clone(), size: 5, root: cp.root.to_vec() };
        let verifier = signer.verifier();
        let other = note::Signer::new("qtrace.example/sh-amr", SecretKey::from_seed(&[8; 32]).signing_key().clone())
            .expect("signer")
            .verifier();

        let unsigned = check_checkpoint(&wire, None).expect("parses");
        assert!(!unsigned.signed);
        assert!(check_checkpoint(&wire, Some(&verifier)).expect("verifies").signed);
        assert!(matches!(check_checkpoint(&wire, Some(&other)), Err(CheckError::NoteSignature(_))));
        let lying = pb::Checkpoint { size: 6, ..wire.clone() };
        assert!(matches!(check_checkpoint(&lying, None), Err(CheckError::CheckpointMismatch { field: "size", .. })));

        let path: Vec<Vec<u8>> = tree.inclusion_proof(3, 5).expect("proof").into_iter().map(|h| h.to_vec()).collect();
        let proof = pb::InclusionProof { leaf_index: 3, tree_size: 5, path };
        let hash = EntryHash(leaves[3]);
        assert!(check_inclusion(3, hash, &proof, &unsigned.checkpoint).is_ok());
        let wrong_leaf = check_inclusion(3, EntryHash(leaves[2]), &proof, &unsigned.checkpoint);
        assert!(matches!(wrong_leaf, Err(CheckError::Proof { .. })));
        let wrong_index = check_inclusion(2, hash, &proof, &unsigned.checkpoint);
        assert!(matches!(wrong_index, Err(CheckError::Unexpected { .. })));
        let mut truncated = proof.clone();
        truncated.path[0].pop();
        assert!(check_inclusion(3, hash, &truncated, &unsigned.checkpoint).is_err());
    }
}
