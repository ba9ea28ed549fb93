//! Equivocation: two signed checkpoints of one log that cannot both be true.
//!
//! A log that shows one history to some and another to others signs two
//! checkpoints that conflict. The same tree size with two roots is proof on
//! its face: anyone with the log's key checks both signatures and compares.
//! A smaller and a larger tree conflict when the log cannot prove the larger
//! extends the smaller; then the evidence is the two notes and the failed
//! proof, and anyone can ask the log for the consistency proof it owes.

use crate::hash::LogId;
use crate::merkle::{self, Hash};
use crate::note::{self, Verifier};
use crate::pb;

/// Compares two checkpoint notes of one log. Returns a description of the
/// conflict, if the notes are both validly signed and conflict on their
/// face (same size, different roots). Different sizes need a consistency
/// proof: see [`check_consistency`].
pub fn same_size_conflict(note_a: &str, note_b: &str, log: &Verifier) -> Option<String> {
    let a = note::open_checkpoint(note_a, log, &[]).ok()?.checkpoint;
    let b = note::open_checkpoint(note_b, log, &[]).ok()?.checkpoint;
    if a.size == b.size && a.root != b.root {
        return Some(format!(
            "two checkpoints of size {} with different roots {} and {}",
            a.size,
            hex::encode(a.root),
            hex::encode(b.root)
        ));
    }
    None
}

/// Checks a consistency proof between two signed checkpoints; on failure,
/// describes the conflict.
pub fn check_consistency(old: &note::Checkpoint, new: &note::Checkpoint, proof: &[Hash]) -> Result<(), String> {
    if old.size > new.size {
        return check_consistency(new, old, proof);
    }
    if old.size == new.size {
        return if old.root == new.root {
            Ok(())
        } else {
            Err(format!("two checkpoints of size {} with different roots", old.size))
        };
    }
    if old.size == 0 {
        return Ok(());
    }
    merkle::verify_consistency(old.size, new.size, proof, &old.root, &new.root).map_err(|e| {
        format!("the log cannot prove its checkpoint of size {} extends the one of size {}: {e}", new.size, old.size)
    })
}

/// Validates evidence given by someone else: both notes must be signed by
/// the log. Returns the conflict in words, marked "proven" when it is the
/// same-size kind.
pub fn validate(evidence: &pb::Equivocation, log: &Verifier) -> Option<String> {
    if LogId::from_slice(&evidence.log_id).ok()? != LogId::of_key(&log.public_key().to_bytes()) {
        return None;
    }
    if let Some(conflict) = same_size_conflict(&evidence.note_a, &evidence.note_b, log) {
        return Some(format!("proven: {conflict}"));
    }
    let a = note::open_checkpoint(&evidence.note_a, log, &[]).ok()?;
    let b = note::open_checkpoint(&evidence.note_b, log, &[]).ok()?;
    if a.checkpoint.root == b.checkpoint.root && a.checkpoint.size == b.checkpoint.size {
        return None;
    }
    Some(format!(
        "reported: checkpoints of sizes {} and {} could not be proven consistent ({})",
        a.checkpoint.size, b.checkpoint.size, evidence.detail
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Checkpoint, Signer};
    use ed25519_dalek::SigningKey;

    fn signed(signer: &Signer, size: u64, root: [u8; 32]) -> String {
        note::sign_checkpoint(&Checkpoint { origin: "qtrace.test/a".into(), size, root, extensions: vec![] }, signer)
            .unwrap()
    }

    #[test]
    fn conflicts_are_recognised_and_bogus_evidence_is_not() {
        let signer = Signer::new("qtrace.test/a", SigningKey::from_bytes(&[4; 32])).unwrap();
        let other = Signer::new("qtrace.test/a", SigningKey::from_bytes(&[5; 32])).unwrap();
        let log = signer.verifier();
        let a = signed(&signer, 10, [1; 32]);
        let b = signed(&signer, 10, [2; 32]);
        let same = signed(&signer, 10, [1; 32]);
        let forged = signed(&other, 10, [2; 32]);
        let cases: &[(&str, &str, bool)] = &[(&a, &b, true), (&a, &same, false), (&a, &forged, false)];
        for (x, y, conflict) in cases {
            assert_eq!(same_size_conflict(x, y, &log).is_some(), *conflict);
        }
        let log_id = LogId::of_key(&log.public_key().to_bytes()).0.to_vec();
        let evidence = pb::Equivocation {
            log_id: log_id.clone(),
            note_a: a.clone(),
            note_b: b,
            detail: String::new(),
            detected_at_micros: 0,
            source: String::new(),
        };
        assert!(validate(&evidence, &log).is_some_and(|d| d.starts_with("proven")));
        let bogus = pb::Equivocation { note_b: forged, ..evidence.clone() };
        assert_eq!(validate(&bogus, &log), None);
        let not_a_conflict = pb::Equivocation { note_b: same, ..evidence };
        assert_eq!(validate(&not_a_conflict, &log), None);
    }

    #[test]
    fn consistency_failures_are_described() {
        let mut tree = merkle::MemTree::new();
        for i in 0..8u8 {
            tree.append_leaf(&[i]).unwrap();
        }
        let small = Checkpoint { origin: "o".into(), size: 3, root: tree.root_at(3).unwrap(), extensions: vec![] };
        let big = Checkpoint { origin: "o".into(), size: 8, root: tree.root_at(8).unwrap(), extensions: vec![] };
        let proof = tree.consistency_proof(3, 8).unwrap();
        assert_eq!(check_consistency(&small, &big, &proof), Ok(()));
        assert_eq!(check_consistency(&big, &small, &proof), Ok(()));
        let forked = Checkpoint { root: [9; 32], ..big.clone() };
        assert!(check_consistency(&small, &forked, &proof).is_err());
        assert!(check_consistency(&big, &forked, &[]).is_err());
    }
}
