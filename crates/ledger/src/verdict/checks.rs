//! The shared checks: integrity and accountability of every record used,
//! witnesses and equivocation, recalls and failed tests of lots, blacklist.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::event::{EventKind, IndexKey};
use crate::hash::LogId;
use crate::ids::{Gtin, Serial, Uscc};
use crate::merkle;
use crate::note;
use crate::pb::{self, event::Body};
use crate::registry::{self, event_date};
use crate::trace::{self, LotKey};
use crate::view::{Record, RecordId, View, ViewError};

use super::report::{Check, Report, Responsible, Severity, Step, describe};
use super::{Options, Trust, VerdictError};

/// A checkpoint opened with a trusted key, and its witnesses.
pub(super) type OpenedCheckpoint = (note::Checkpoint, Vec<String>);

/// Shared state of one verdict computation: the view, the trust roots, and
/// what has been checked already.
pub(super) struct Ctx<'a> {
    pub(super) view: &'a dyn View,
    pub(super) trust: &'a Trust,
    pub(super) options: Options,
    pub(super) checkpoints: RefCell<HashMap<LogId, Result<OpenedCheckpoint, String>>>,
    pub(super) integrity: RefCell<BTreeMap<RecordId, Result<(), String>>>,
    pub(super) accountability: RefCell<BTreeMap<RecordId, Result<Responsible, String>>>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(view: &'a dyn View, trust: &'a Trust, options: Options) -> Self {
        Ctx {
            view,
            trust,
            options,
            checkpoints: RefCell::new(HashMap::new()),
            integrity: RefCell::new(BTreeMap::new()),
            accountability: RefCell::new(BTreeMap::new()),
        }
    }

    /// Opens a log's checkpoint with the trusted key, once per log.
    pub(super) fn checkpoint(&self, log: &LogId, note_text: &str) -> Result<OpenedCheckpoint, String> {
        if let Some(done) = self.checkpoints.borrow().get(log) {
            return done.clone();
        }
        let result = match self.trust.verifier(log) {
            None => Err(format!("log {log} is not among the trusted logs (give its verifier key with --trust)")),
            Some(verifier) => note::open_checkpoint(note_text, verifier, &self.trust.witnesses)
                .map(|opened| {
                    // Distinct witness names: one witness cosigning twice is one witness.
                    // A log cannot witness itself: its own cosignature does not count.
                    let witnesses: BTreeSet<String> = opened
                        .cosigners
                        .iter()
                        .map(|(name, _)| name.as_str().to_string())
                        .filter(|name| *name != opened.checkpoint.origin && name != verifier.name().as_str())
                        .collect();
                    let witnesses = witnesses.into_iter().collect();
                    (opened.checkpoint, witnesses)
                })
                .map_err(|e| format!("checkpoint of log {log} does not verify: {e}")),
        };
        self.checkpoints.borrow_mut().insert(*log, result.clone());
        result
    }

    /// Entry hash, strict signature, and inclusion in a trusted checkpoint.
    pub(super) fn integrity(&self, record: &Record) -> Result<(), String> {
        if let Some(done) = self.integrity.borrow().get(&record.id) {
            return done.clone();
        }
        let result = self.integrity_uncached(record);
        self.integrity.borrow_mut().insert(record.id, result.clone());
        result
    }

    fn integrity_uncached(&self, record: &Record) -> Result<(), String> {
        let id = record.id;
        if let Err(e) = crate::event::decode_event(&record.entry.event) {
            return Err(format!("record {id}: the event bytes are not a valid record ({e})"));
        }
        if let Err(e) = record.entry.verify_signature() {
            return Err(format!("record {id}: the signature does not verify — the record was altered or forged ({e})"));
        }
        let proven = self.view.proof(id).map_err(|e| e.to_string())?;
        let Some(proven) = proven else {
            return Err(format!("record {id}: no inclusion proof is available"));
        };
        let (checkpoint, _) = self.checkpoint(&id.log, &proven.checkpoint_note)?;
        if checkpoint.size != proven.tree_size {
            return Err(format!(
                "record {id}: proof is for a tree of {} entries, the checkpoint has {}",
                proven.tree_size, checkpoint.size
            ));
        }
        merkle::verify_inclusion(id.seq, checkpoint.size, &record.hash.0, &proven.path, &checkpoint.root)
            .map_err(|e| format!("record {id}: not in the log's signed tree — the record was altered ({e})"))
    }

    /// Who signed, for which organisation, under which authority; and
    /// whether that authority covered this record.
    pub(super) fn accountability(&self, record: &Record) -> Result<Responsible, String> {
        if let Some(done) = self.accountability.borrow().get(&record.id) {
            return done.clone();
        }
        let result = self.accountability_uncached(record);
        self.accountability.borrow_mut().insert(record.id, result.clone());
        result
    }

    fn accountability_uncached(&self, record: &Record) -> Result<Responsible, String> {
        let id = record.id;
        let event = record.event.as_ref().ok_or_else(|| format!("record {id}: undecodable event"))?;
        let registry = self.view.registry();
        if event.kind == EventKind::Genesis {
            let log_key_id = LogId::of_key(&record.entry.signer);
            if id.seq == 0 && log_key_id == id.log {
                return Ok(Responsible {
                    record: record.cite(),
                    kind: event.kind,
                    uscc: String::new(),
                    organisation: "the log itself".into(),
                    person: "log key".into(),
                    title: String::new(),
                });
            }
            return Err(format!("record {id}: a genesis record that is not entry 0 signed by the log key"));
        }
        let key = registry.key(&record.entry.signer).ok_or_else(|| {
            format!(
                "record {id}: signed by key {} which is not registered to any organisation (unregistered key, 未登记密钥)",
                hex::encode(record.entry.signer)
            )
        })?;
        let revoked_before = match (key.revoked_at, key.revoked_in) {
            // Within one log, sequence numbers order the revocation and the
            // record; across logs nothing orders them, so a revocation on
            // another log counts against every record.
            (Some(at), Some(log)) if log == id.log => at <= id.seq,
            (Some(_), _) => true,
            (None, _) => false,
        };
        if let Some(revoked_at) = key.revoked_at
            && revoked_before
        {
            return Err(format!(
                "record {id}: signed by key {} of {} after it was revoked at entry {revoked_at} (密钥已撤销)",
                hex::encode(record.entry.signer),
                key.person
            ));
        }
        let org = registry
            .organisation(&key.uscc)
            .ok_or_else(|| format!("record {id}: signer's organisation {} is not registered", key.uscc))?;
        let allowed = registry::allowed_roles(event.kind);
        let admin_key_record = matches!(event.kind, EventKind::KeyRegistered | EventKind::KeyRevoked) && key.admin;
        if !(admin_key_record || event.kind == EventKind::Correction || org.roles.iter().any(|r| allowed.contains(r))) {
            return Err(format!(
                "record {id}: {} records may not be signed by {} ({}), whose roles are {}",
                event.kind,
                org.name,
                org.uscc,
                registry::roles_text(&org.roles)
            ));
        }
        let date = event_date(&event.event);
        let scope_check = match event.body() {
            Some(Body::Inspection(i)) => {
                let gtin = i.product.as_ref().map(|p| p.gtin.as_str());
                Some(registry::check_accreditation(org, date.as_ref(), gtin.into_iter(), &i.standards))
            }
            Some(Body::CertificateIssued(c)) => {
                let issuer_ok = c.certificate.as_ref().map(|k| k.issuer_uscc == org.uscc.as_str()).unwrap_or(false);
                if !issuer_ok {
                    return Err(format!(
                        "record {id}: certificate names issuer {} but was signed for {} (forged issuer)",
                        c.certificate.as_ref().map(|k| k.issuer_uscc.as_str()).unwrap_or("?"),
                        org.uscc
                    ));
                }
                Some(registry::check_accreditation(
                    org,
                    date.as_ref(),
                    c.products.iter().map(|p| p.gtin.as_str()),
                    &c.standards,
                ))
            }
            _ => None,
        };
        if let Some(Err(e)) = scope_check {
            return Err(format!("record {id}: {e} (unaccredited or out of scope, 无资质或超范围)"));
        }
        Ok(Responsible {
            record: record.cite(),
            kind: event.kind,
            uscc: org.uscc.to_string(),
            organisation: org.name.clone(),
            person: key.person.clone(),
            title: key.title.clone(),
        })
    }

    pub(super) fn record(&self, id: RecordId) -> Result<Option<Record>, ViewError> {
        self.view.record(id)
    }

    /// Drops records corrected away unless the caller asks to include them (the raw view, `--raw`).
    pub(super) fn corrected(&self, records: Vec<Record>) -> Result<(Vec<Record>, Vec<Record>), ViewError> {
        if self.options.include_corrected {
            return Ok((records, Vec::new()));
        }
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for record in records {
            if trace::corrections_of(self.view, &record)?.is_empty() {
                kept.push(record);
            } else {
                dropped.push(record);
            }
        }
        Ok((kept, dropped))
    }
}

/// The tail every subject's verdict shares: each record in `used` counted
/// once (in place, first occurrence kept, so callers can list `used` as the
/// report's path), the integrity, accountability, witness and equivocation
/// checks of those records ahead of the subject's own `checks`, then the
/// verdict, with the responsible parties filled in.
pub(super) fn conclude(ctx: &Ctx<'_>, subject: String, used: &mut Vec<Record>, checks: Vec<Check>) -> Report {
    let mut seen = BTreeSet::new();
    used.retain(|r| seen.insert(r.id));
    let refs: Vec<&Record> = used.iter().collect();
    let mut front = Vec::new();
    let responsible = integrity_checks(ctx, &refs, &mut front);
    front.extend(checks);
    let mut report = Report::finish(subject, front, ctx.view.today());
    report.responsible = responsible;
    report
}

/// Integrity and accountability over a set of records, as two checks.
fn integrity_checks(ctx: &Ctx<'_>, records: &[&Record], report: &mut Vec<Check>) -> Vec<Responsible> {
    let mut problems = Vec::new();
    let mut evidence = Vec::new();
    for record in records {
        match ctx.integrity(record) {
            Ok(()) => evidence.push(record.cite()),
            Err(e) => problems.push(e),
        }
    }
    let mut witnessed = Vec::new();
    let mut sizes = Vec::new();
    let mut short_of_quorum = Vec::new();
    let mut equivocations = Vec::new();
    let mut equivocation_evidence = Vec::new();
    let mut equivocation_proven = false;
    for (log, result) in ctx.checkpoints.borrow().iter() {
        if let Ok((checkpoint, cosigners)) = result {
            sizes.push(format!("checkpoint {} size {} root {}", log, checkpoint.size, hex::encode(checkpoint.root)));
            if !cosigners.is_empty() {
                witnessed.push(format!("{} by {}", checkpoint.origin, cosigners.join(", ")));
            }
            if cosigners.len() < ctx.options.witness_quorum {
                short_of_quorum.push(format!(
                    "the checkpoint of log {log} is cosigned by {} of the {} trusted witnesses; the policy asks for {}",
                    cosigners.len(),
                    ctx.trust.witnesses.len(),
                    ctx.options.witness_quorum
                ));
            }
        }
        if let Some(verifier) = ctx.trust.verifier(log) {
            for evidence in ctx.view.equivocations(log) {
                if let Some(finding) = crate::equivocation::assess(&evidence, verifier) {
                    // Reported evidence is an alarm; only proven evidence makes the verdict INVALID.
                    equivocation_proven |= finding.proven;
                    equivocations.push(format!("log {log} showed two histories (equivocation, 分叉): {finding}"));
                    equivocation_evidence.push(evidence.note_a.clone());
                    equivocation_evidence.push(evidence.note_b.clone());
                }
            }
        }
    }
    evidence.extend(sizes);
    if !equivocations.is_empty() {
        let severity = if equivocation_proven { Severity::Invalid } else { Severity::Warning };
        report.push(Check::new("equivocation", severity, equivocations.join("; "), equivocation_evidence));
    }
    if !short_of_quorum.is_empty() {
        report.push(Check::new("witnesses", Severity::Warning, short_of_quorum.join("; "), Vec::new()));
    }
    let witness_text = if witnessed.is_empty() {
        "no witness cosignatures".to_string()
    } else {
        format!("checkpoints cosigned (见证): {}", witnessed.join("; "))
    };
    if problems.is_empty() {
        report.push(Check::new(
            "integrity",
            Severity::Ok,
            format!(
                "all {} records are unaltered: signatures verify and each is in the log's signed checkpoint (未篡改); {witness_text}",
                records.len()
            ),
            evidence,
        ));
    } else {
        report.push(Check::new("integrity", Severity::Invalid, problems.join("; "), evidence));
    }

    let mut responsible = Vec::new();
    let mut problems = Vec::new();
    for record in records {
        match ctx.accountability(record) {
            Ok(r) => responsible.push(r),
            Err(e) => problems.push(e),
        }
    }
    let people: BTreeSet<String> = responsible
        .iter()
        .filter(|r| !r.uscc.is_empty())
        .map(|r| format!("{} {} ({}, {})", r.person, r.title, r.organisation, r.uscc))
        .collect();
    let evidence = responsible.iter().map(|r| format!("{} signed by {} for {}", r.record, r.person, r.uscc)).collect();
    if problems.is_empty() {
        report.push(Check::new(
            "accountability",
            Severity::Ok,
            format!(
                "every record is signed by a registered person authorised for it (责任可究): {}",
                people.into_iter().collect::<Vec<_>>().join("; ")
            ),
            evidence,
        ));
    } else {
        report.push(Check::new("accountability", Severity::Invalid, problems.join("; "), evidence));
    }
    responsible
}

pub(super) fn step(ctx: &Ctx<'_>, record: &Record) -> Step {
    let kind = record.event.as_ref().map(|e| e.kind).unwrap_or(EventKind::Genesis);
    let when = record.event.as_ref().and_then(|e| event_date(&e.event)).map(|d| d.to_string()).unwrap_or_default();
    let organisation = ctx
        .view
        .registry()
        .key(&record.entry.signer)
        .and_then(|k| ctx.view.registry().organisation(&k.uscc))
        .map(|o| o.name.clone())
        .unwrap_or_default();
    let what = record.body().map(describe).unwrap_or_default();
    Step { record: record.cite(), kind, when, what, organisation }
}

pub(super) fn blacklist_check(ctx: &Ctx<'_>, orgs: &[Uscc], checks: &mut Vec<Check>) {
    let registry = ctx.view.registry();
    let mut listed = Vec::new();
    for org in orgs {
        if let Some(period) = registry.blacklisting(org, Some(&ctx.view.today())) {
            let name = registry.organisation(org).map(|o| o.name.clone()).unwrap_or_default();
            listed.push(format!(
                "{name} ({org}) is on the quality blacklist (质量失信黑名单) since {}: {} — {}",
                period.listed_on, period.reason, period.legal_basis
            ));
        }
    }
    if listed.is_empty() {
        checks.push(Check::new(
            "blacklist",
            Severity::Ok,
            "no responsible organisation is on the quality blacklist (未列入黑名单)",
            orgs.iter().map(|o| o.to_string()).collect(),
        ));
    } else {
        checks.push(Check::new("blacklist", Severity::Warning, listed.join("; "), Vec::new()));
    }
}

/// Recalls and failed checks affecting any of `lots` (the lot and its
/// upstream lots), with the production records giving each lot's dates.
pub(super) fn lot_status_checks(
    ctx: &Ctx<'_>,
    lots: &[LotKey],
    serial: Option<&Serial>,
    checks: &mut Vec<Check>,
    records_used: &mut Vec<Record>,
) -> Result<bool, VerdictError> {
    let mut recalls = Vec::new();
    let mut recall_evidence = Vec::new();
    let mut failures = Vec::new();
    let mut failure_evidence = Vec::new();
    let mut gtins_done = BTreeSet::new();
    let mut recall_records: Vec<Record> = Vec::new();
    for (gtin, _) in lots {
        if !gtins_done.insert(gtin.clone()) {
            continue;
        }
        for id in ctx.view.lookup(&IndexKey::RecallOf(gtin.clone()), trace::MAX_PER_KEY)? {
            if let Some(record) = ctx.record(id)?
                && matches!(record.body(), Some(Body::Recall(_)))
            {
                recall_records.push(record);
            }
        }
    }
    let (recall_records, _) = ctx.corrected(recall_records)?;
    for (index, lot) in lots.iter().enumerate() {
        let origins = trace::lot_origins(ctx.view, lot)?;
        let dates = origins.iter().find_map(|o| match o.body() {
            Some(Body::Production(p)) => Some((p.production_date.clone(), p.expiry_date.clone())),
            Some(Body::Transformation(t)) => Some((t.production_date.clone(), t.expiry_date.clone())),
            _ => None,
        });
        for record in &recall_records {
            let Some(Body::Recall(r)) = record.body() else { continue };
            if r.gtin != lot.0.as_str() && Gtin::parse(&r.gtin).ok().as_ref() != Some(&lot.0) {
                continue;
            }
            let by_lot = r.lots.iter().any(|l| l == lot.1.as_str());
            let unrestricted = r.lots.is_empty() && r.serial_from.is_empty() && r.dates.is_none();
            let by_serial = index == 0
                && !r.serial_from.is_empty()
                && serial.is_some_and(|s| s.as_str() >= r.serial_from.as_str() && s.as_str() <= r.serial_to.as_str());
            let by_date = r.dates.as_ref().is_some_and(|range| {
                let date = match (pb::DateKind::try_from(range.kind), &dates) {
                    (Ok(pb::DateKind::Production), Some((produced, _))) => produced.as_str(),
                    (Ok(pb::DateKind::Expiry), Some((_, expires))) => expires.as_str(),
                    _ => "",
                };
                !date.is_empty() && range.from.as_str() <= date && date <= range.to.as_str()
            });
            if by_lot || unrestricted || by_serial || by_date {
                let closed = ctx
                    .view
                    .lookup(&IndexKey::Parent(record.id.log, record.id.seq), trace::MAX_PER_KEY)?
                    .into_iter()
                    .filter_map(|id| ctx.record(id).ok().flatten())
                    .any(|r| matches!(r.body(), Some(Body::RecallClosed(_))));
                let initiator = match pb::RecallInitiator::try_from(r.initiator) {
                    Ok(pb::RecallInitiator::Ordered) => "ordered by a regulator (责令召回)",
                    _ => "voluntary (主动召回)",
                };
                let via = if index == 0 {
                    String::new()
                } else {
                    format!(" — it affects input lot {} {} used to make this product", lot.0, lot.1)
                };
                recalls.push(format!(
                    "RECALLED (已召回): recall {} of {} , risk class {}, {initiator}: {}{}{via}",
                    r.recall_number,
                    r.gtin,
                    r.risk_class,
                    r.reason,
                    if closed { " (recall closed)" } else { "" }
                ));
                recall_evidence.push(record.cite());
                records_used.push(record.clone());
            }
        }
        // Failed inspections and spot checks of this lot.
        let mut tests = Vec::new();
        for id in ctx.view.lookup(&IndexKey::Tests(lot.0.clone(), lot.1.clone()), trace::MAX_PER_KEY)? {
            if let Some(record) = ctx.record(id)? {
                tests.push(record);
            }
        }
        let (tests, _) = ctx.corrected(tests)?;
        for record in tests {
            let failed = match record.body() {
                Some(Body::Inspection(i)) => (i.conclusion == pb::Conclusion::NonConformant as i32)
                    .then(|| format!("inspection report {} (检验报告)", i.report_number)),
                Some(Body::SpotCheck(s)) => (s.result == pb::Conclusion::NonConformant as i32)
                    .then(|| format!("supervision spot check {} (监督抽查)", s.plan_number)),
                _ => None,
            };
            if let Some(what) = failed {
                let via = if index == 0 { String::new() } else { format!(" of input lot {} {}", lot.0, lot.1) };
                failures.push(format!("{what}{via} found it NON-CONFORMANT (不合格)"));
                failure_evidence.push(record.cite());
                records_used.push(record);
            }
        }
    }
    let recalled = !recalls.is_empty();
    if recalled {
        checks.push(Check::new("recall", Severity::Invalid, recalls.join("; "), recall_evidence));
    } else {
        checks.push(Check::new(
            "recall",
            Severity::Ok,
            format!(
                "no recall covers this product or any of its {} input lot(s) (未召回)",
                lots.len().saturating_sub(1)
            ),
            Vec::new(),
        ));
    }
    if failures.is_empty() {
        checks.push(Check::new(
            "spot_check",
            Severity::Ok,
            "no inspection or supervision spot check found this lot or its inputs non-conformant",
            Vec::new(),
        ));
    } else {
        checks.push(Check::new("spot_check", Severity::Invalid, failures.join("; "), failure_evidence));
    }
    Ok(recalled)
}
