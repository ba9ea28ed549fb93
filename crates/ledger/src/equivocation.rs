//! Equivocation: two signed checkpoints of one log that cannot both be true.
//!
//! A log that shows one history to some and another to others signs two
//! checkpoints that conflict. The same tree size with two roots is proof on
//! its face: anyone with the log's key checks both signatures and compares.
//! A smaller and a larger tree conflict when the log's own tree cannot
//! extend the smaller: the evidence then carries a consistency proof that
//! rebuilds the larger note's root but not the smaller's (see
//! [`merkle::roots_from_seeded_consistency`]), which proves the fork
//! whoever assembled it. Anything less (a peer that served a bad proof, or
//! none) is only reported: an alarm, never proof, since anyone can claim a
//! proof failed about an honest log.

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

/// What a piece of evidence shows about a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Proven by the log's own signatures (and, for different sizes, a proof
    /// that rebuilds its signed root): the log showed two histories. When
    /// false, the evidence is only reported: two signed checkpoints that
    /// nobody has shown consistent, nor shown to conflict.
    pub proven: bool,
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.proven { "proven" } else { "reported" };
        write!(f, "{kind}: {}", self.detail)
    }
}

/// Assesses evidence given by someone else: both notes must be signed by
/// the log, else it shows nothing. Two roots for one size are proven on
/// their face. Different sizes are proven only by the evidence's seeded
/// consistency proof: one that rebuilds the larger note's root and another
/// root for the smaller size. A proof that rebuilds both roots shows the
/// notes consistent (nothing to report); no proof, or one that rebuilds
/// neither, leaves the conflict reported.
pub fn assess(evidence: &pb::Equivocation, log: &Verifier) -> Option<Finding> {
    if LogId::from_slice(&evidence.log_id).ok()? != LogId::of_key(&log.public_key().to_bytes()) {
        return None;
    }
    let a = note::open_checkpoint(&evidence.note_a, log, &[]).ok()?.checkpoint;
    let b = note::open_checkpoint(&evidence.note_b, log, &[]).ok()?.checkpoint;
    if a.size == b.size {
        return (a.root != b.root).then(|| Finding {
            proven: true,
            detail: format!(
                "two checkpoints of size {} with different roots {} and {}",
                a.size,
                hex::encode(a.root),
                hex::encode(b.root)
            ),
        });
    }
    let (small, large) = if a.size < b.size { (&a, &b) } else { (&b, &a) };
    let proof: Option<Vec<Hash>> = evidence.proof.iter().map(|h| Hash::try_from(h.as_slice()).ok()).collect();
    let roots = proof.and_then(|p| merkle::roots_from_seeded_consistency(small.size, large.size, &p).ok());
    match roots {
        Some((old, new)) if new == large.root && old == small.root => None,
        Some((old, new)) if new == large.root => Some(Finding {
            proven: true,
            detail: format!(
                "the log's own tree of size {} (root {}) held root {} at size {}, but the log signed {} for that size",
                large.size,
                hex::encode(large.root),
                hex::encode(old),
                small.size,
                hex::encode(small.root)
            ),
        }),
        _ => Some(Finding {
            proven: false,
            detail: format!(
                "checkpoints of sizes {} and {} have not been proven consistent, nor shown to conflict ({})",
                small.size, large.size, evidence.detail
            ),
        }),
    }
}

/// [`assess`] in words, marked "proven" or "reported".
pub fn validate(evidence: &pb::Equivocation, log: &Verifier) -> Option<String> {
    assess(evidence, log).map(|finding| finding.to_string())
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
            proof: Vec::new(),
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

    #[test]
    fn different_sizes_are_proven_only_by_the_logs_own_tree() {
        let signer = Signer::new("qtrace.test/a", SigningKey::from_bytes(&[4; 32])).unwrap();
        let log = signer.verifier();
        let log_id = LogId::of_key(&log.public_key().to_bytes()).0.to_vec();
        let honest = merkle::MemTree::from_leaf_hashes((0..8u8).map(|i| merkle::leaf_hash(&[i]))).unwrap();
        // The same log rewrote entry 1 for someone else.
        let forked = merkle::MemTree::from_leaf_hashes(
            (0..8u8).map(|i| merkle::leaf_hash(if i == 1 { &[1, 1] } else { std::slice::from_ref(&i) })),
        )
        .unwrap();
        let note_at = |tree: &merkle::MemTree, size: u64| signed(&signer, size, tree.root_at(size).unwrap());
        let seeded = |tree: &merkle::MemTree, old: u64, new: u64| -> Vec<Vec<u8>> {
            let proof = tree.consistency_proof(old, new).unwrap();
            merkle::seeded_consistency_proof(old, &proof, &tree.root_at(old).unwrap())
                .iter()
                .map(|h| h.to_vec())
                .collect()
        };
        let garbage: Vec<Vec<u8>> = vec![vec![7; 32]; seeded(&honest, 3, 8).len()];
        // (case, smaller note, larger note, proof, expected: None, or Some(proven))
        type Case = (&'static str, String, String, Vec<Vec<u8>>, Option<bool>);
        let cases: Vec<Case> = vec![
            (
                "consistent 3 and 8, with the log's proof",
                note_at(&honest, 3),
                note_at(&honest, 8),
                seeded(&honest, 3, 8),
                None,
            ),
            (
                "consistent 4 and 8 (a power of two), with the log's proof",
                note_at(&honest, 4),
                note_at(&honest, 8),
                seeded(&honest, 4, 8),
                None,
            ),
            (
                "consistent 3 and 8, a peer's bad proof",
                note_at(&honest, 3),
                note_at(&honest, 8),
                garbage.clone(),
                Some(false),
            ),
            (
                "consistent 3 and 8, a proof of the wrong length",
                note_at(&honest, 3),
                note_at(&honest, 8),
                vec![vec![7; 32]],
                Some(false),
            ),
            ("consistent 3 and 8, no proof", note_at(&honest, 3), note_at(&honest, 8), Vec::new(), Some(false)),
            (
                "forked 3 and 8, the larger tree's proof",
                note_at(&forked, 3),
                note_at(&honest, 8),
                seeded(&honest, 3, 8),
                Some(true),
            ),
            (
                "forked 4 and 8, the larger tree's proof",
                note_at(&honest, 4),
                note_at(&forked, 8),
                seeded(&forked, 4, 8),
                Some(true),
            ),
            ("forked 3 and 8, a bad proof", note_at(&forked, 3), note_at(&honest, 8), garbage, Some(false)),
        ];
        for (name, small, large, proof, want) in cases {
            for (note_a, note_b) in [(small.clone(), large.clone()), (large, small)] {
                let evidence = pb::Equivocation {
                    log_id: log_id.clone(),
                    note_a,
                    note_b,
                    detail: "test".into(),
                    detected_at_micros: 0,
                    source: "peer".into(),
                    proof: proof.clone(),
                };
                let got = assess(&evidence, &log);
                assert_eq!(got.as_ref().map(|f| f.proven), want, "{name}: {got:?}");
                assert_eq!(validate(&evidence, &log), got.map(|f| f.to_string()), "{name}");
            }
        }
    }
}
