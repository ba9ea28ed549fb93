//! Equivocation evidence: building it from what a node verified, keeping
//! only evidence that proves a fork, and loading it at start.

use prost::Message;
use qtrace_ledger::hash::LogId;
use qtrace_ledger::merkle::{self, Hash};
use qtrace_ledger::{note, pb};
use qtrace_rpc::rpc::ledger_client::LedgerClient;
use qtrace_store::{LogStore, Meta};
use tonic::transport::Channel;

use super::{Federation, hashes};

const EQUIVOCATION_PREFIX: &[u8] = b"equivocation/";

/// The store key of the evidence numbered `number`.
fn evidence_key(number: u64) -> Vec<u8> {
    let mut key = EQUIVOCATION_PREFIX.to_vec();
    key.extend_from_slice(&number.to_be_bytes());
    key
}

/// The stored equivocation evidence, in the order it was found, and the
/// number the next evidence gets. Evidence is the most valuable thing a
/// node keeps: a record that does not decode stops the start, named, rather
/// than being skipped (and later overwritten).
pub(super) fn load_evidence(meta: &Meta) -> anyhow::Result<(Vec<pb::Equivocation>, u64)> {
    let mut stored = Vec::new();
    let mut next = 0u64;
    for (key, value) in meta.scan(EQUIVOCATION_PREFIX)? {
        let name = String::from_utf8_lossy(&key).into_owned();
        let number = key
            .get(EQUIVOCATION_PREFIX.len()..)
            .and_then(|n| <[u8; 8]>::try_from(n).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| anyhow::anyhow!("stored equivocation evidence under a malformed key {name:?}"))?;
        let evidence = pb::Equivocation::decode(value.as_slice()).map_err(|e| {
            anyhow::anyhow!(
                "stored equivocation evidence number {number} ({} bytes) does not decode: {e}; refusing to start rather \
                 than lose it or store new evidence over it",
                value.len()
            )
        })?;
        stored.push(evidence);
        next = next.max(number.saturating_add(1));
    }
    Ok((stored, next))
}

impl Federation {
    /// Keeps evidence of equivocation (once) and raises the alarm. Only
    /// evidence that proves the fork is kept (see
    /// [`qtrace_ledger::equivocation::assess`]): a conflict that is only
    /// reported (a peer's proof about a third log failed) is logged as an
    /// alarm and changes no verdict, so no peer can make an honest log look
    /// forked.
    pub fn record_equivocation(&self, evidence: pb::Equivocation) {
        let log = LogId::from_slice(&evidence.log_id).map(|l| l.to_hex()).unwrap_or_default();
        let finding = LogId::from_slice(&evidence.log_id)
            .ok()
            .and_then(|id| self.vkey_of(&id))
            .and_then(|vkey| qtrace_ledger::equivocation::assess(&evidence, vkey));
        match finding {
            Some(finding) if finding.proven => {}
            Some(finding) => {
                tracing::warn!(
                    %log,
                    source = %evidence.source,
                    detail = %evidence.detail,
                    %finding,
                    "ALARM: a log may have shown two histories (可能分叉), but nothing proves it yet; not kept as evidence"
                );
                return;
            }
            None => {
                tracing::warn!(
                    %log,
                    source = %evidence.source,
                    detail = %evidence.detail,
                    "a reported conflict does not hold up (the notes are consistent or not signed by the log)"
                );
                return;
            }
        }
        let mut all = self.equivocations.write().unwrap_or_else(|p| p.into_inner());
        // The same conflict seen again (with other cosignatures on the
        // notes) is not new evidence: compare the signed bodies.
        fn pair(e: &pb::Equivocation) -> [&str; 2] {
            let mut bodies = [body_of(&e.note_a), body_of(&e.note_b)];
            bodies.sort();
            bodies
        }
        let new_pair = pair(&evidence);
        let known = all.iter().any(|e| e.log_id == evidence.log_id && pair(e) == new_pair);
        if known {
            return;
        }
        crate::metrics::get().equivocations.inc();
        tracing::error!(
            log = %hex::encode(&evidence.log_id),
            source = %evidence.source,
            detail = %evidence.detail,
            "EQUIVOCATION: a log showed two histories (分叉); evidence stored, verdicts on it are INVALID"
        );
        // Taken under the write lock on `all`, so two records never share one.
        let number = self.next_evidence.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if let Err(e) = self.meta.put(&evidence_key(number), &evidence.encode_to_vec()) {
            tracing::error!(error = %e, "could not store equivocation evidence");
        }
        all.push(evidence);
    }
}

/// The signed text of a note: everything before the blank line.
fn body_of(note_text: &str) -> &str {
    note_text.split_once("\n\n").map(|(body, _)| body).unwrap_or(note_text)
}

/// Evidence that `log` signed `note_a` and `note_b`; `proof` is the seeded
/// consistency proof between them when their sizes differ.
pub(super) fn evidence(
    log: &LogId,
    note_a: String,
    note_b: String,
    proof: Vec<Hash>,
    detail: String,
    source: &str,
) -> pb::Equivocation {
    pb::Equivocation {
        log_id: log.0.to_vec(),
        note_a,
        note_b,
        detail,
        detected_at_micros: crate::setup::now_micros(),
        source: source.to_string(),
        proof: proof.iter().map(|h| h.to_vec()).collect(),
    }
}

/// Evidence that the log whose mirror is `local` signed `their_note` (of
/// `their_size`), which the mirror's verified entries contradict: the
/// mirror's own note of that size if it holds one (two roots for one size),
/// else its latest note with a seeded consistency proof from `their_size`
/// built from the mirror's tree, which rebuilds the latest note's root and
/// the mirror's root at `their_size`.
pub(super) fn mirror_evidence(
    local: &LogStore,
    their_note: String,
    their_size: u64,
    detail: String,
    source: &str,
) -> anyhow::Result<pb::Equivocation> {
    let log = local.log_id();
    if let Some(ours) = local.checkpoint(their_size)? {
        return Ok(evidence(&log, ours, their_note, Vec::new(), detail, source));
    }
    let (size, ours) = local.latest_checkpoint()?.unwrap_or_default();
    let proof = if size > their_size && their_size > 0 {
        let path = local.consistency_proof(their_size, size)?;
        merkle::seeded_consistency_proof(their_size, &path, &local.root(their_size)?)
    } else {
        Vec::new()
    };
    Ok(evidence(&log, ours, their_note, proof, detail, source))
}

/// Asks the peer behind `rpc` to prove that `theirs`, a checkpoint the log
/// signed that is larger than this node's latest signed checkpoint of it
/// (in `local`), extends that one; `log` names the log to the peer (empty:
/// the peer's own log, when the peer is the log being mirrored). When the
/// proof does not hold, both notes and the peer's proof, seeded with this
/// node's root, go to [`Federation::record_equivocation`], which keeps them
/// only if they prove a fork (the proof rebuilds the larger signed root and
/// another root for this node's size) and otherwise logs an alarm. Returns
/// what did not hold, if anything. A peer that does not serve the proof at
/// all (it may not hold the entries) shows nothing.
pub(super) async fn check_larger(
    fed: &Federation,
    rpc: &mut LedgerClient<Channel>,
    local: &LogStore,
    log: Vec<u8>,
    theirs: &note::Checkpoint,
    their_note: &str,
    source: &str,
) -> anyhow::Result<Option<String>> {
    let Some((our_size, our_note)) = local.latest_checkpoint()? else { return Ok(None) };
    if our_size == 0 || our_size >= theirs.size {
        return Ok(None);
    }
    let our_root = local.root(our_size)?;
    let request = pb::GetConsistencyProofRequest { old_size: our_size, new_size: theirs.size, log_id: log };
    let Ok(proof) = rpc.get_consistency_proof(request).await else { return Ok(None) };
    let path = hashes(&proof.into_inner().proof.map(|p| p.path).unwrap_or_default())?;
    let ours =
        note::Checkpoint { origin: theirs.origin.clone(), size: our_size, root: our_root, extensions: Vec::new() };
    let Err(detail) = qtrace_ledger::equivocation::check_consistency(&ours, theirs, &path) else { return Ok(None) };
    let seeded = merkle::seeded_consistency_proof(our_size, &path, &our_root);
    let log_id = local.log_id();
    fed.record_equivocation(evidence(&log_id, our_note, their_note.to_string(), seeded, detail.clone(), source));
    Ok(Some(detail))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use qtrace_ledger::note::{self, Cosigner};
    use qtrace_ledger::registry::Registry;
    use qtrace_store::SledStore;

    use super::super::Settings;
    use super::*;
    use crate::logs::Logs;
    use crate::snapshot::{Cut, Registries, Snapshot};

    const ORIGIN: &str = "qtrace.test/own";

    fn own_signer() -> note::Signer {
        note::Signer::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[9; 32])).unwrap()
    }

    fn federation_over(store: &SledStore) -> anyhow::Result<Federation> {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let own = Arc::new(store.log(LogId::of_key(&key.verifying_key().to_bytes()))?);
        let logs = Arc::new(Logs::new(own, store.clone()));
        let registry = Registry::new(key.verifying_key().to_bytes());
        let registry = Arc::new(Registries::new(Snapshot { registry, cut: Cut::default() }));
        let settings = Settings { peers: Vec::new(), interval: Duration::from_secs(1), chunk: 16, tls: None };
        Federation::new(settings, logs, registry, Cosigner::new(ORIGIN, key)?, own_signer().verifier(), store.meta()?)
    }

    fn note_of(size: u64, root: Hash) -> String {
        let checkpoint = note::Checkpoint { origin: ORIGIN.into(), size, root, extensions: Vec::new() };
        note::sign_checkpoint(&checkpoint, &own_signer()).unwrap()
    }

    fn own_log() -> LogId {
        LogId::of_key(&own_signer().verifier().public_key().to_bytes())
    }

    /// Proven evidence: two roots the own log signed for size `i + 1`.
    fn evidence_numbered(i: u8) -> pb::Equivocation {
        let size = u64::from(i) + 1;
        evidence(
            &own_log(),
            note_of(size, [i; 32]),
            note_of(size, [i ^ 0xff; 32]),
            Vec::new(),
            format!("conflict {i}"),
            "test",
        )
    }

    #[test]
    fn evidence_is_never_overwritten_nor_skipped() {
        // Evidence stored under key 1 only (key 0 is gone): the next record
        // must not take key 1, as a count of records would.
        let store = SledStore::temporary().unwrap();
        store.meta().unwrap().put(&evidence_key(1), &evidence_numbered(1).encode_to_vec()).unwrap();
        let fed = federation_over(&store).unwrap();
        fed.record_equivocation(evidence_numbered(2));
        drop(fed);
        let fed = federation_over(&store).unwrap();
        let details: Vec<String> = fed.equivocations.read().unwrap().iter().map(|e| e.detail.clone()).collect();
        assert_eq!(details, ["conflict 1", "conflict 2"]);

        // A record that does not decode stops the start, named.
        let store = SledStore::temporary().unwrap();
        let meta = store.meta().unwrap();
        meta.put(&evidence_key(0), &evidence_numbered(0).encode_to_vec()).unwrap();
        meta.put(&evidence_key(1), b"\xff\xff not evidence").unwrap();
        let Err(error) = federation_over(&store) else { panic!("started over undecodable evidence") };
        assert!(error.to_string().contains("evidence number 1"), "{error}");
        // Nothing was dropped or replaced.
        assert_eq!(store.meta().unwrap().scan(EQUIVOCATION_PREFIX).unwrap().len(), 2);
    }

    #[test]
    fn only_proven_forks_are_kept_as_evidence() {
        let honest = merkle::MemTree::from_leaf_hashes((0..8u8).map(|i| merkle::leaf_hash(&[i]))).unwrap();
        let forked = merkle::MemTree::from_leaf_hashes(
            (0..8u8).map(|i| merkle::leaf_hash(if i == 1 { &[1, 1] } else { std::slice::from_ref(&i) })),
        )
        .unwrap();
        let at = |tree: &merkle::MemTree, size: u64| note_of(size, tree.root_at(size).unwrap());
        let seeded = |tree: &merkle::MemTree| {
            merkle::seeded_consistency_proof(3, &tree.consistency_proof(3, 8).unwrap(), &tree.root_at(3).unwrap())
        };
        let bad_proof = vec![[7; 32]; seeded(&honest).len()];
        let cases: Vec<(&str, pb::Equivocation, bool)> = vec![
            (
                "a peer's bad proof about an honest log",
                evidence(&own_log(), at(&honest, 3), at(&honest, 8), bad_proof, "proof failed".into(), "peer"),
                false,
            ),
            (
                "an honest log's own consistent proof",
                evidence(&own_log(), at(&honest, 3), at(&honest, 8), seeded(&honest), "?".into(), "peer"),
                false,
            ),
            (
                "a fork the larger tree's own proof shows",
                evidence(&own_log(), at(&forked, 3), at(&honest, 8), seeded(&honest), "proof failed".into(), "peer"),
                true,
            ),
            ("two roots for one size", evidence_numbered(4), true),
        ];
        for (name, evidence, kept) in cases {
            let fed = federation_over(&SledStore::temporary().unwrap()).unwrap();
            fed.record_equivocation(evidence);
            assert_eq!(fed.equivocations_of(&own_log()).len(), usize::from(kept), "{name}");
        }
    }
}
