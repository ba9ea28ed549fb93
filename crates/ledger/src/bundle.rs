//! Offline evidence bundles.
//!
//! A bundle (`qtrace.v1.Bundle`, protobuf) holds, per log: the signed
//! checkpoint (with any cosignatures), and entries each with an inclusion
//! proof into that checkpoint. It carries every record a verdict looked at
//! plus every registry record of the log (genesis, organisations, keys,
//! blacklist), so that an offline verifier rebuilds the same registry and
//! sees the same records, and reaches the same verdict with nothing but the
//! trusted log keys.
//!
//! Opening a bundle trusts nothing in it: registry records are applied only
//! if they verify (signature, inclusion in a checkpoint signed by a trusted
//! log key) and pass the same authorisation rules the node applies; every
//! other record is verified again by the verdict itself.

use std::collections::BTreeSet;

use prost::Message;

use crate::entry::{Entry, MAX_EVENT_BYTES};
use crate::event::IndexKey;
use crate::hash::LogId;
use crate::ids::Date;
use crate::merkle::{self, Hash};
use crate::note;
use crate::pb;
use crate::registry::{RecordInfo, Records, RecordsError, Registry};
use crate::verdict::Trust;
use crate::view::{MemView, Proven, Record, RecordId, View, ViewError};

/// Current bundle format version.
pub const BUNDLE_VERSION: u32 = 1;
/// Largest bundle accepted (bytes).
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("bundle is {0} bytes; at most {MAX_BUNDLE_BYTES} are accepted")]
    TooLarge(usize),
    #[error("not a qtrace bundle: {0}")]
    Decode(String),
    #[error("bundle version {0} is not supported (this verifier reads version {BUNDLE_VERSION})")]
    Version(u32),
    #[error("bundle log section {index}: {detail}")]
    Log { index: usize, detail: String },
    #[error("{0}")]
    View(#[from] ViewError),
}

/// Builds a bundle from a view: the records in `touched`, every registry
/// record, and their proofs.
pub fn build(
    view: &dyn View,
    touched: &BTreeSet<RecordId>,
    subject: pb::VerdictSubject,
    created_at_micros: i64,
) -> Result<pb::Bundle, ViewError> {
    let mut ids: BTreeSet<RecordId> = touched.clone();
    ids.extend(view.lookup(&IndexKey::Registry, usize::MAX)?);
    let mut logs: Vec<pb::BundleLog> = Vec::new();
    for id in ids {
        let Some(record) = view.record(id)? else { continue };
        let Some(proven) = view.proof(id)? else {
            return Err(ViewError(format!("no inclusion proof for record {id}")));
        };
        let section = match logs.iter_mut().position(|l| l.log_id == id.log.0) {
            Some(i) => &mut logs[i],
            None => {
                logs.push(pb::BundleLog {
                    log_id: id.log.0.to_vec(),
                    checkpoint: Some(pb::Checkpoint {
                        note: proven.checkpoint_note.clone(),
                        origin: String::new(),
                        size: proven.tree_size,
                        root: Vec::new(),
                    }),
                    entries: Vec::new(),
                    equivocations: view.equivocations(&id.log),
                });
                let last = logs.len() - 1;
                &mut logs[last]
            }
        };
        if section.checkpoint.as_ref().map(|c| c.note.as_str()) != Some(proven.checkpoint_note.as_str()) {
            return Err(ViewError(format!(
                "record {id} is proven against a different checkpoint than its log section"
            )));
        }
        section.entries.push(pb::BundleEntry {
            entry: Some(record.entry.to_pb(&id.log)),
            inclusion_path: proven.path.iter().map(|h| h.to_vec()).collect(),
        });
    }
    Ok(pb::Bundle {
        version: BUNDLE_VERSION,
        subject: Some(subject),
        logs,
        created_at_micros,
        as_of: view.today().to_string(),
    })
}

/// Decodes bundle bytes.
pub fn decode(bytes: &[u8]) -> Result<pb::Bundle, BundleError> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooLarge(bytes.len()));
    }
    let bundle = pb::Bundle::decode(bytes).map_err(|e| BundleError::Decode(e.to_string()))?;
    if bundle.version != BUNDLE_VERSION {
        return Err(BundleError::Version(bundle.version));
    }
    Ok(bundle)
}

/// What opening a bundle found.
pub struct Opened {
    pub view: MemView,
    pub subject: Option<pb::VerdictSubject>,
    /// Registry records that were not applied, and why.
    pub rejected_registry: Vec<String>,
}

/// Opens a bundle into a view for offline verdicts. `today` overrides the
/// bundle's own date (to ask about another day).
pub fn open(bundle: &pb::Bundle, trust: &Trust, today: Option<Date>) -> Result<Opened, BundleError> {
    let as_of = match today {
        Some(date) => date,
        None => Date::parse_iso(&bundle.as_of).map_err(|e| BundleError::Decode(format!("as_of: {e}")))?,
    };
    let mut records: Vec<(Record, Proven)> = Vec::new();
    for (index, log) in bundle.logs.iter().enumerate() {
        let log_id = LogId::from_slice(&log.log_id).map_err(|e| BundleError::Log { index, detail: e.to_string() })?;
        let checkpoint =
            log.checkpoint.as_ref().ok_or_else(|| BundleError::Log { index, detail: "no checkpoint".into() })?;
        for (i, bundled) in log.entries.iter().enumerate() {
            let wire = bundled
                .entry
                .as_ref()
                .ok_or_else(|| BundleError::Log { index, detail: format!("entry {i} is empty") })?;
            if wire.log_id != log.log_id {
                return Err(BundleError::Log { index, detail: format!("entry {i} belongs to another log") });
            }
            let entry =
                Entry::from_pb(wire).map_err(|e| BundleError::Log { index, detail: format!("entry {i}: {e}") })?;
            if entry.event.len() > MAX_EVENT_BYTES {
                return Err(BundleError::Log { index, detail: format!("entry {i}: event too large") });
            }
            let path: Vec<Hash> = bundled
                .inclusion_path
                .iter()
                .map(|h| <[u8; 32]>::try_from(h.as_slice()))
                .collect::<Result<_, _>>()
                .map_err(|_| BundleError::Log { index, detail: format!("entry {i}: proof hash is not 32 bytes") })?;
            let proven = Proven { checkpoint_note: checkpoint.note.clone(), tree_size: checkpoint.size, path };
            records.push((Record::new(log_id, entry), proven));
        }
    }
    records.sort_by_key(|(r, _)| r.id);

    // Rebuild the registry from verified registry records only.
    let mut registry = Registry::default();
    let mut rejected = Vec::new();
    let verified_logs: Vec<(LogId, note::Checkpoint)> = bundle
        .logs
        .iter()
        .filter_map(|log| {
            let log_id = LogId::from_slice(&log.log_id).ok()?;
            let verifier = trust.logs.iter().find(|v| LogId::of_key(&v.public_key().to_bytes()) == log_id)?;
            let opened = note::open_checkpoint(&log.checkpoint.as_ref()?.note, verifier, &trust.witnesses).ok()?;
            Some((log_id, opened.checkpoint))
        })
        .collect();
    let snapshot: Vec<(RecordId, RecordInfo)> = records
        .iter()
        .map(|(r, _)| {
            (r.id, RecordInfo { hash: r.hash, signer: r.entry.signer, kind: r.event.as_ref().map(|e| e.kind) })
        })
        .collect();
    let known = BundleRecords(&snapshot);
    for (record, proven) in &records {
        let Some(event) = &record.event else { continue };
        let is_registry = crate::event::index_keys(&event.event).contains(&IndexKey::Registry);
        if !is_registry {
            continue;
        }
        if !trust.logs.iter().any(|v| LogId::of_key(&v.public_key().to_bytes()) == record.id.log) {
            rejected.push(format!(
                "registry record {} was not applied: its log {} is not among the trusted logs (pin that log's \
                 verifier key, its agency's DATA/log.vkey, with --trust VKEY)",
                record.id, record.id.log
            ));
            continue;
        }
        let verified = verified_logs.iter().find(|(id, _)| *id == record.id.log).is_some_and(|(_, checkpoint)| {
            record.entry.verify_signature().is_ok()
                && checkpoint.size == proven.tree_size
                && merkle::verify_inclusion(
                    record.id.seq,
                    checkpoint.size,
                    &record.hash.0,
                    &proven.path,
                    &checkpoint.root,
                )
                .is_ok()
        });
        if !verified {
            rejected.push(format!("registry record {} does not verify against a trusted checkpoint", record.id));
            continue;
        }
        // The first log's genesis makes it the registry's own log; its
        // registry records are authorised record by record.
        if record.id.seq == 0 && LogId::of_key(&record.entry.signer) == record.id.log && registry.log_key().is_none() {
            let peers: Vec<[u8; 32]> = trust.logs.iter().map(|v| v.public_key().to_bytes()).collect();
            registry = Registry::new(record.entry.signer);
            for key in peers {
                registry.trust_log(key);
            }
        }
        if Some(record.id.log) == registry.log_id() {
            match registry.authorize(record.id.seq, &record.entry.signer, event, &known) {
                Ok(_) => registry.apply(record.id.seq, &record.entry.signer, event),
                Err(e) => rejected.push(format!("registry record {} is not authorised: {e}", record.id)),
            }
        } else {
            // Registry records of the other trusted logs were authorised by
            // their own log; they are honoured as a federation peer's are.
            registry.apply_in(record.id.log, record.id.seq, &record.entry.signer, event);
        }
    }
    let mut view = MemView::new(registry, as_of);
    for (record, proven) in records {
        view.insert(record, Some(proven));
    }
    for log in &bundle.logs {
        for evidence in &log.equivocations {
            view.add_equivocation(evidence.clone());
        }
    }
    Ok(Opened { view, subject: bundle.subject.clone(), rejected_registry: rejected })
}

struct BundleRecords<'a>(&'a [(RecordId, RecordInfo)]);

impl Records for BundleRecords<'_> {
    fn record(&self, log: &LogId, seq: u64) -> Result<Option<RecordInfo>, RecordsError> {
        Ok(self.0.iter().find(|(id, _)| id.log == *log && id.seq == seq).map(|(_, info)| *info))
    }
}
