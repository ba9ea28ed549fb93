//! Verdicts: the answer a regulator or a consumer acts on, with evidence.
//!
//! A verdict is computed from a [`View`] and the verifier's trusted log keys,
//! and does no I/O, so a node computes it over its store and `qtrace verify
//! --offline` computes the same one over an evidence bundle. Each check is a
//! line with a severity, a detail in plain words and the evidence behind it
//! (record citations `<log id>/<seq>/<entry hash>`, checkpoints, proofs).
//!
//! The overall verdict is INVALID if any check is invalid, WARNING if any
//! check warns, VALID otherwise, and NOT_FOUND when the ledger holds nothing
//! about the subject.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::event::{EventKind, IndexKey};
use crate::hash::LogId;
use crate::ids::{Date, Gtin, Lot, ProductCode, Serial, Uscc};
use crate::merkle;
use crate::note::{self, CosignatureVerifier, Verifier};
use crate::pb::{self, event::Body};
use crate::registry::{self, event_date};
use crate::trace::{self, Direction, Limits, LotKey, Trace};
use crate::view::{Record, RecordId, View, ViewError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Ok,
    Warning,
    Invalid,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overall {
    Valid,
    Warning,
    Invalid,
    NotFound,
}

impl Overall {
    pub fn name(self) -> &'static str {
        match self {
            Overall::Valid => "VALID",
            Overall::Warning => "WARNING",
            Overall::Invalid => "INVALID",
            Overall::NotFound => "NOT_FOUND",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Overall::Valid => "有效",
            Overall::Warning => "警告",
            Overall::Invalid => "无效",
            Overall::NotFound => "未找到",
        }
    }
}

/// One line of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub severity: Severity,
    pub detail: String,
    pub evidence: Vec<String>,
}

impl Check {
    fn new(name: &'static str, severity: Severity, detail: impl Into<String>, evidence: Vec<String>) -> Check {
        Check { name, severity, detail: detail.into(), evidence }
    }
}

/// Someone accountable for a record (责任主体).
#[derive(Debug, Clone, PartialEq)]
pub struct Responsible {
    pub record: String,
    pub kind: EventKind,
    pub uscc: String,
    pub organisation: String,
    pub person: String,
    pub title: String,
}

/// A step on the traceability path, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub record: String,
    pub kind: EventKind,
    pub when: String,
    pub what: String,
    pub organisation: String,
}

/// A certificate as the report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateView {
    pub issuer: String,
    pub number: String,
    pub holder: String,
    pub status: String,
    pub valid_until: String,
    /// (date, record kind, reason) in order.
    pub history: Vec<(String, EventKind, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub verdict: Overall,
    pub subject: String,
    pub checks: Vec<Check>,
    pub responsible: Vec<Responsible>,
    pub path: Vec<Step>,
    pub certificates: Vec<CertificateView>,
    pub recalled: bool,
    pub as_of: String,
}

impl Report {
    fn finish(subject: String, checks: Vec<Check>, as_of: Date) -> Report {
        let worst = checks.iter().map(|c| c.severity).max().unwrap_or(Severity::Ok);
        let verdict = match worst {
            Severity::Ok => Overall::Valid,
            Severity::Warning => Overall::Warning,
            Severity::Invalid => Overall::Invalid,
        };
        Report {
            verdict,
            subject,
            checks,
            responsible: Vec::new(),
            path: Vec::new(),
            certificates: Vec::new(),
            recalled: false,
            as_of: as_of.to_string(),
        }
    }

    fn not_found(subject: String, detail: String, as_of: Date) -> Report {
        let mut report =
            Report::finish(subject, vec![Check::new("found", Severity::Invalid, detail, Vec::new())], as_of);
        report.verdict = Overall::NotFound;
        report
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Which logs (and witnesses) the verifier trusts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub logs: Vec<Verifier>,
    pub witnesses: Vec<CosignatureVerifier>,
}

impl Trust {
    fn verifier(&self, log: &LogId) -> Option<&Verifier> {
        self.logs.iter().find(|v| LogId::of_key(&v.public_key().to_bytes()) == *log)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub limits: Limits,
    /// Include records that were corrected away.
    pub raw: bool,
    /// Witness policy: how many trusted witnesses must cosign the checkpoint
    /// that proves a record (k of the n in [`Trust::witnesses`]); fewer is
    /// a warning. 0 asks for none.
    pub witness_quorum: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerdictError {
    #[error("{0}")]
    View(#[from] ViewError),
    #[error("{0}")]
    Trace(#[from] trace::TraceError),
}

/// A checkpoint opened with a trusted key, and its witnesses.
type OpenedCheckpoint = (note::Checkpoint, Vec<String>);

/// Shared state of one verdict computation: the view, the trust roots, and
/// what has been checked already.
struct Ctx<'a> {
    view: &'a dyn View,
    trust: &'a Trust,
    options: Options,
    checkpoints: RefCell<HashMap<LogId, Result<OpenedCheckpoint, String>>>,
    integrity: RefCell<BTreeMap<RecordId, Result<(), String>>>,
    accountability: RefCell<BTreeMap<RecordId, Result<Responsible, String>>>,
}

impl<'a> Ctx<'a> {
    fn new(view: &'a dyn View, trust: &'a Trust, options: Options) -> Self {
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
    fn checkpoint(&self, log: &LogId, note_text: &str) -> Result<OpenedCheckpoint, String> {
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
    fn integrity(&self, record: &Record) -> Result<(), String> {
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
    fn accountability(&self, record: &Record) -> Result<Responsible, String> {
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

    fn record(&self, id: RecordId) -> Result<Option<Record>, ViewError> {
        self.view.record(id)
    }

    /// Drops records corrected away unless the raw view is asked for.
    fn corrected(&self, records: Vec<Record>) -> Result<(Vec<Record>, Vec<Record>), ViewError> {
        if self.options.raw {
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

fn step(ctx: &Ctx<'_>, record: &Record) -> Step {
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

/// A short description of a record body for paths and histories.
pub fn describe(body: &Body) -> String {
    let lot = |p: Option<&pb::ProductKey>| {
        p.map(|p| if p.lot.is_empty() { p.gtin.clone() } else { format!("{} lot {}", p.gtin, p.lot) })
            .unwrap_or_default()
    };
    let items =
        |items: &[pb::LotQuantity]| items.iter().map(|i| lot(i.product.as_ref())).collect::<Vec<_>>().join(", ");
    match body {
        Body::Genesis(g) => format!("log {} opened by {}", g.origin, g.operator_name),
        Body::OrgRegistered(o) => format!("registered {} ({})", o.name, o.uscc),
        Body::OrgUpdated(o) => format!("updated {} ({})", o.name, o.uscc),
        Body::KeyRegistered(k) => format!("key for {} {} of {}", k.person, k.title, k.uscc),
        Body::KeyRevoked(k) => format!("key {} revoked: {}", hex::encode(&k.public_key), k.reason),
        Body::Production(p) => format!("produced {} (生产)", lot(p.output.as_ref().and_then(|o| o.product.as_ref()))),
        Body::Transformation(t) => format!("made {} from {} (加工)", items(&t.outputs), items(&t.inputs)),
        Body::Shipment(s) => format!(
            "shipped {} from {} to {} (发货)",
            items(&s.items),
            s.source.as_ref().map(|p| p.uscc.as_str()).unwrap_or("?"),
            s.destination.as_ref().map(|p| p.uscc.as_str()).unwrap_or("?")
        ),
        Body::Receipt(r) => format!(
            "received {} at {} (收货)",
            items(&r.items),
            r.destination.as_ref().map(|p| p.uscc.as_str()).unwrap_or("?")
        ),
        Body::Sale(s) => format!("sold {} (销售)", items(&s.items)),
        Body::Inspection(i) => format!(
            "inspection report {} on {}: {} (检验)",
            i.report_number,
            lot(i.product.as_ref()),
            conclusion_text(i.conclusion)
        ),
        Body::SpotCheck(s) => {
            format!(
                "spot check {} on {}: {} (监督抽查)",
                s.plan_number,
                lot(s.product.as_ref()),
                conclusion_text(s.result)
            )
        }
        Body::CertificateIssued(c) => format!(
            "certificate {} issued to {} until {} (发证)",
            c.certificate.as_ref().map(|k| k.number.as_str()).unwrap_or("?"),
            c.holder_uscc,
            c.valid_until
        ),
        Body::CertificateSuspended(c) => format!("suspended: {} (暂停)", c.reason),
        Body::CertificateRestored(c) => format!("restored: {} (恢复)", c.reason),
        Body::CertificateScopeReduced(c) => format!("scope reduced by {}: {}", c.removed_gtins.join(", "), c.reason),
        Body::CertificateWithdrawn(c) => format!("withdrawn: {} (撤销)", c.reason),
        Body::CertificateCancelled(c) => format!("cancelled: {} (注销)", c.reason),
        Body::CertificateRenewed(c) => format!("renewed until {} (延续)", c.valid_until),
        Body::Recall(r) => format!(
            "recall {} of {} lots [{}], risk class {}: {} (召回)",
            r.recall_number,
            r.gtin,
            r.lots.join(", "),
            r.risk_class,
            r.reason
        ),
        Body::RecallProgress(p) => format!("recall progress: {} parties notified", p.parties_notified),
        Body::RecallClosed(c) => format!("recall closed: {}", c.closeout),
        Body::Blacklisted(b) => format!("{} blacklisted: {} ({})", b.uscc, b.reason, b.legal_basis),
        Body::Delisted(d) => format!("{} delisted: {}", d.uscc, d.reason),
        Body::Correction(c) => format!("correction: {}", c.reason),
    }
}

fn conclusion_text(value: i32) -> &'static str {
    match pb::Conclusion::try_from(value) {
        Ok(pb::Conclusion::Conformant) => "conformant (合格)",
        Ok(pb::Conclusion::NonConformant) => "NON-CONFORMANT (不合格)",
        _ => "no conclusion",
    }
}

/// The status of a certificate from its own records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    Active,
    Suspended,
    Withdrawn,
    Cancelled,
    Expired,
}

impl CertStatus {
    pub fn name(self) -> &'static str {
        match self {
            CertStatus::Active => "valid (有效)",
            CertStatus::Suspended => "suspended (暂停)",
            CertStatus::Withdrawn => "withdrawn (撤销)",
            CertStatus::Cancelled => "cancelled (注销)",
            CertStatus::Expired => "expired (过期)",
        }
    }
}

/// A certificate's records in log order, and its status on a date.
pub struct CertificateHistory {
    pub issued: Record,
    pub records: Vec<Record>,
}

impl CertificateHistory {
    /// Status on `date`: the last transition dated on or before it, and
    /// expiry past the (renewed) validity.
    pub fn status_on(&self, date: Date) -> CertStatus {
        let mut status = CertStatus::Active;
        let mut valid_until = match self.issued.body() {
            Some(Body::CertificateIssued(c)) => Date::parse_iso(&c.valid_until).ok(),
            _ => None,
        };
        for record in &self.records {
            let Some(event) = &record.event else { continue };
            if event_date(&event.event).is_some_and(|d| d > date) {
                continue;
            }
            match event.body() {
                Some(Body::CertificateSuspended(_)) => status = CertStatus::Suspended,
                Some(Body::CertificateRestored(_)) => status = CertStatus::Active,
                Some(Body::CertificateWithdrawn(_)) => status = CertStatus::Withdrawn,
                Some(Body::CertificateCancelled(_)) => status = CertStatus::Cancelled,
                Some(Body::CertificateRenewed(r)) => valid_until = Date::parse_iso(&r.valid_until).ok().or(valid_until),
                _ => {}
            }
        }
        let issued_on = match self.issued.body() {
            Some(Body::CertificateIssued(c)) => Date::parse_iso(&c.issued_on).ok(),
            _ => None,
        };
        if matches!(status, CertStatus::Active | CertStatus::Suspended) {
            if valid_until.is_some_and(|until| date > until) {
                return CertStatus::Expired;
            }
            if issued_on.is_some_and(|on| date < on) {
                // Not yet issued on that date: report as not valid then.
                return CertStatus::Expired;
            }
        }
        status
    }

    /// GTINs (or prefixes) the certificate covers now, after scope reductions.
    pub fn covered(&self) -> Vec<String> {
        let mut covered: Vec<String> = match self.issued.body() {
            Some(Body::CertificateIssued(c)) => c.products.iter().map(|p| p.gtin.clone()).collect(),
            _ => Vec::new(),
        };
        for record in &self.records {
            if let Some(Body::CertificateScopeReduced(r)) = record.body() {
                covered.retain(|g| !r.removed_gtins.iter().any(|removed| g.starts_with(removed.as_str())));
            }
        }
        covered
    }

    pub fn covers(&self, gtin: &Gtin) -> bool {
        self.covered().iter().any(|g| gtin.as_str().starts_with(g.as_str()))
    }

    fn view(&self, today: Date) -> CertificateView {
        let (issuer, number, holder, valid_until) = match self.issued.body() {
            Some(Body::CertificateIssued(c)) => (
                c.certificate.as_ref().map(|k| k.issuer_uscc.clone()).unwrap_or_default(),
                c.certificate.as_ref().map(|k| k.number.clone()).unwrap_or_default(),
                c.holder_uscc.clone(),
                c.valid_until.clone(),
            ),
            _ => Default::default(),
        };
        let mut valid_until = valid_until;
        let history = self
            .records
            .iter()
            .filter_map(|r| {
                let event = r.event.as_ref()?;
                if let Some(Body::CertificateRenewed(renewed)) = event.body() {
                    valid_until = renewed.valid_until.clone();
                }
                let reason = r.body().map(describe).unwrap_or_default();
                Some((event_date(&event.event).map(|d| d.to_string()).unwrap_or_default(), event.kind, reason))
            })
            .collect();
        CertificateView {
            issuer,
            number,
            holder,
            status: self.status_on(today).name().to_string(),
            valid_until,
            history,
        }
    }
}

/// Loads a certificate's history (corrected view); `None` if never issued.
fn certificate_history(ctx: &Ctx<'_>, issuer: &Uscc, number: &str) -> Result<Option<CertificateHistory>, ViewError> {
    let ids = ctx.view.lookup(&IndexKey::Certificate(issuer.clone(), number.to_string()), trace::MAX_PER_KEY)?;
    let mut records = Vec::new();
    for id in ids {
        if let Some(record) = ctx.record(id)? {
            records.push(record);
        }
    }
    let (records, _) = ctx.corrected(records)?;
    let records: Vec<Record> = records
        .into_iter()
        .filter(|r| {
            let key = r.body().and_then(registry::certificate_key);
            key.is_some_and(|k| k.issuer_uscc == issuer.as_str() && k.number == number)
        })
        .collect();
    let Some(issued) = records.iter().find(|r| matches!(r.body(), Some(Body::CertificateIssued(_)))).cloned() else {
        return Ok(None);
    };
    Ok(Some(CertificateHistory { issued, records }))
}

/// A certificate's checks: integrity/accountability of its records, its
/// basis, its status now (and on `at`), and its holder's standing.
fn certificate_checks(
    ctx: &Ctx<'_>,
    history: &CertificateHistory,
    at: Option<Date>,
    checks: &mut Vec<Check>,
    records_used: &mut Vec<Record>,
) -> Result<CertStatus, VerdictError> {
    let today = ctx.view.today();
    let cite = history.issued.cite();
    records_used.extend(history.records.iter().cloned());
    // Basis: the inspection reports the certificate rests on.
    let mut basis_problems = Vec::new();
    let mut basis_evidence = Vec::new();
    if let Some(event) = &history.issued.event {
        for parent in &event.event.parents {
            let Ok(log) = LogId::from_slice(&parent.log_id) else { continue };
            let id = RecordId { log, seq: parent.seq };
            match ctx.record(id)? {
                None => basis_problems.push(format!("basis record {id} is not available")),
                Some(record) => {
                    if record.hash.0.as_slice() != parent.entry_hash.as_slice() {
                        basis_problems
                            .push(format!("basis record {id} has a different hash than the certificate names"));
                    }
                    if let Some(Body::Inspection(i)) = record.body()
                        && i.conclusion != pb::Conclusion::Conformant as i32
                    {
                        basis_problems.push(format!("basis report {} is non-conformant (不合格)", i.report_number));
                    }
                    basis_evidence.push(record.cite());
                    records_used.push(record);
                }
            }
        }
    }
    if basis_problems.is_empty() {
        let detail = if basis_evidence.is_empty() {
            "the certificate names no inspection reports as its basis".to_string()
        } else {
            format!("rests on {} verified record(s) (检验依据)", basis_evidence.len())
        };
        checks.push(Check::new("basis", Severity::Ok, detail, basis_evidence));
    } else {
        checks.push(Check::new("basis", Severity::Warning, basis_problems.join("; "), basis_evidence));
    }
    let status = history.status_on(today);
    let view = history.view(today);
    let mut detail = format!(
        "certificate {}/{} is {} (valid until {}); history: {}",
        view.issuer,
        view.number,
        status.name(),
        view.valid_until,
        view.history.iter().map(|(d, k, _)| format!("{d} {k}")).collect::<Vec<_>>().join(", ")
    );
    if let Some(at) = at {
        detail.push_str(&format!("; on {at} it was {}", history.status_on(at).name()));
    }
    let severity = match status {
        CertStatus::Active => Severity::Ok,
        CertStatus::Suspended => Severity::Warning,
        CertStatus::Withdrawn | CertStatus::Cancelled | CertStatus::Expired => Severity::Invalid,
    };
    checks.push(Check::new("certificate", severity, detail, vec![cite]));
    // The holder's standing.
    if let Ok(holder) = Uscc::parse(&view.holder) {
        blacklist_check(ctx, &[holder], checks);
    }
    Ok(status)
}

fn blacklist_check(ctx: &Ctx<'_>, orgs: &[Uscc], checks: &mut Vec<Check>) {
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
fn lot_status_checks(
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

/// The consumer's question about a product code.
pub fn verify_product(
    view: &dyn View,
    trust: &Trust,
    code: &ProductCode,
    options: Options,
) -> Result<Report, VerdictError> {
    let ctx = Ctx::new(view, trust, options);
    let today = view.today();
    let mut subject = format!("product {}", code.gtin);
    // Which lot: the code's, or the lot a serial was recorded in.
    let mut lot = code.lot.clone();
    if lot.is_none()
        && let Some(serial) = &code.serial
    {
        for id in view.lookup(&IndexKey::Serial(code.gtin.clone(), serial.clone()), trace::MAX_PER_KEY)? {
            if let Some(record) = ctx.record(id)?
                && let Some(body) = record.body()
            {
                let (uses, creates) = trace::lots_of(body);
                if let Some(found) = creates.into_iter().chain(uses).find(|(g, _)| *g == code.gtin) {
                    lot = Some(found.1);
                    break;
                }
            }
        }
    }
    if let Some(lot) = &lot {
        subject.push_str(&format!(" lot {lot}"));
    }
    if let Some(serial) = &code.serial {
        subject.push_str(&format!(" serial {serial}"));
    }
    let Some(lot) = lot else {
        return product_line(ctx, code, subject);
    };
    let lot_key: LotKey = (code.gtin.clone(), lot);
    let (records, corrected) = ctx.corrected(trace::lot_records(view, &lot_key)?)?;
    if records.is_empty() {
        return Ok(Report::not_found(
            subject,
            format!("the ledger has no record of {} lot {} (查无此产品)", lot_key.0, lot_key.1),
            today,
        ));
    }
    let mut checks = Vec::new();
    let mut used: Vec<Record> = records.clone();
    let origins = trace::lot_origins(view, &lot_key)?;
    let origins: Vec<Record> = origins.into_iter().filter(|o| records.iter().any(|r| r.id == o.id)).collect();
    // Source: upstream from the lot's origin.
    let upstream = if origins.is_empty() {
        checks.push(Check::new(
            "source",
            Severity::Warning,
            format!("no production record creates lot {} — its source is not on record (来源不明)", lot_key.1),
            Vec::new(),
        ));
        Trace::default()
    } else {
        let ids: Vec<RecordId> = origins.iter().map(|o| o.id).collect();
        let upstream = trace::trace(view, &ids, Direction::Upstream, options.limits, options.raw)?;
        let lots_text: Vec<String> = upstream.lots.iter().map(|(g, l)| format!("{g} lot {l}")).collect();
        checks.push(Check::new(
            "source",
            Severity::Ok,
            format!(
                "source traceable (来源可查): {} upstream record(s) across lot(s) {}",
                upstream.nodes.len(),
                lots_text.join(", ")
            ),
            upstream.nodes.iter().map(|n| n.record.cite()).collect(),
        ));
        used.extend(upstream.nodes.iter().map(|n| Record::clone(&n.record)));
        upstream
    };
    // Destination: downstream from the lot's origin.
    let downstream = if origins.is_empty() {
        Trace::default()
    } else {
        let ids: Vec<RecordId> = origins.iter().map(|o| o.id).collect();
        trace::trace(view, &ids, Direction::Downstream, options.limits, options.raw)?
    };
    let count = |kind: EventKind| {
        downstream.nodes.iter().filter(|n| n.record.event.as_ref().is_some_and(|e| e.kind == kind)).count()
    };
    checks.push(Check::new(
        "destination",
        Severity::Ok,
        format!(
            "destination trackable (去向可追): {} shipment(s), {} receipt(s), {} sale(s), {} downstream lot(s)",
            count(EventKind::Shipment),
            count(EventKind::Receipt),
            count(EventKind::Sale),
            downstream.lots.len().saturating_sub(1)
        ),
        downstream.nodes.iter().map(|n| n.record.cite()).collect(),
    ));
    used.extend(downstream.nodes.iter().map(|n| Record::clone(&n.record)));

    // Lots whose status matters: this lot first, then its upstream lots.
    let mut status_lots = vec![lot_key.clone()];
    for l in &upstream.lots {
        if *l != lot_key {
            status_lots.push(l.clone());
        }
    }
    let recalled = lot_status_checks(&ctx, &status_lots, code.serial.as_ref(), &mut checks, &mut used)?;

    // Certificates: those the producer claims for the lot, and those that
    // cover the GTIN.
    let mut certificate_views = Vec::new();
    certificates_for_product(&ctx, &code.gtin, &origins, &mut checks, &mut used, &mut certificate_views)?;

    // Blacklist: the producers of this lot.
    let producers: BTreeSet<Uscc> =
        origins.iter().filter_map(|o| view.registry().key(&o.entry.signer).map(|k| k.uscc.clone())).collect();
    blacklist_check(&ctx, &producers.into_iter().collect::<Vec<_>>(), &mut checks);
    if !corrected.is_empty() {
        checks.push(Check::new(
            "correction",
            Severity::Ok,
            format!(
                "{} record(s) about this lot were corrected by their signers and are left out (更正)",
                corrected.len()
            ),
            corrected.iter().map(|r| r.cite()).collect(),
        ));
    }

    let mut seen = BTreeSet::new();
    used.retain(|r| seen.insert(r.id));
    let refs: Vec<&Record> = used.iter().collect();
    let mut front = Vec::new();
    let responsible = integrity_checks(&ctx, &refs, &mut front);
    front.extend(checks);
    let mut report = Report::finish(subject, front, today);
    report.recalled = recalled;
    report.responsible = responsible;
    report.certificates = certificate_views;
    let mut path: Vec<&Record> = upstream.nodes.iter().map(|n| &*n.record).collect();
    path.extend(records.iter());
    path.extend(downstream.nodes.iter().map(|n| &*n.record));
    let mut seen = BTreeSet::new();
    path.retain(|r| seen.insert(r.id));
    path.sort_by_key(|r| (r.event.as_ref().and_then(|e| e.event.event_time.as_ref()).map(|t| t.unix_millis), r.id));
    report.path = path.into_iter().map(|r| step(&ctx, r)).collect();
    Ok(report)
}

fn certificates_for_product(
    ctx: &Ctx<'_>,
    gtin: &Gtin,
    origins: &[Record],
    checks: &mut Vec<Check>,
    used: &mut Vec<Record>,
    views: &mut Vec<CertificateView>,
) -> Result<(), VerdictError> {
    let today = ctx.view.today();
    // Claimed: documents of kind "certificate" with id "ISSUER/NUMBER".
    let mut claimed: BTreeSet<(String, String)> = BTreeSet::new();
    for origin in origins {
        if let Some(event) = &origin.event {
            for doc in &event.event.documents {
                if doc.kind == "certificate"
                    && let Some((issuer, number)) = doc.id.split_once('/')
                {
                    claimed.insert((issuer.to_string(), number.to_string()));
                }
            }
        }
    }
    // Covering: certificates issued for this GTIN or a prefix of it.
    let mut covering: BTreeSet<(String, String)> = BTreeSet::new();
    let digits = gtin.as_str();
    for len in 1..=digits.len() {
        for id in ctx.view.lookup(&IndexKey::CertifiedFor(digits[..len].to_string()), trace::MAX_PER_KEY)? {
            if let Some(record) = ctx.record(id)?
                && let Some(Body::CertificateIssued(c)) = record.body()
                && let Some(key) = &c.certificate
            {
                covering.insert((key.issuer_uscc.clone(), key.number.clone()));
            }
        }
    }
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut good = Vec::new();
    let mut evidence = Vec::new();
    for key in claimed.union(&covering) {
        let Ok(issuer) = Uscc::parse(&key.0) else {
            problems.push(format!("claims certificate {}/{} with an invalid issuer code", key.0, key.1));
            continue;
        };
        let Some(history) = certificate_history(ctx, &issuer, &key.1)? else {
            problems.push(format!(
                "claims certificate {}/{} which is not in the ledger (forged certificate, 伪造证书)",
                key.0, key.1
            ));
            continue;
        };
        used.extend(history.records.iter().cloned());
        evidence.push(history.issued.cite());
        if let Err(e) = ctx.integrity(&history.issued) {
            problems.push(e);
            continue;
        }
        if let Err(e) = ctx.accountability(&history.issued) {
            problems.push(e);
            continue;
        }
        if !history.covers(gtin) {
            problems.push(format!(
                "certificate {}/{} does not cover GTIN {gtin} (it covers {}) — a certificate used for another product (冒用)",
                key.0,
                key.1,
                history.covered().join(", ")
            ));
            continue;
        }
        let status = history.status_on(today);
        let view = history.view(today);
        match status {
            CertStatus::Active => {
                good.push(format!("{}/{} {} until {}", key.0, key.1, status.name(), view.valid_until))
            }
            _ => warnings.push(format!(
                "certificate {}/{} is {}: {}",
                key.0,
                key.1,
                status.name(),
                view.history.iter().map(|(d, k, _)| format!("{d} {k}")).collect::<Vec<_>>().join(", ")
            )),
        }
        views.push(view);
    }
    if !problems.is_empty() {
        checks.push(Check::new("certificate", Severity::Invalid, problems.join("; "), evidence));
    } else if !warnings.is_empty() {
        checks.push(Check::new("certificate", Severity::Warning, warnings.join("; "), evidence));
    } else if good.is_empty() {
        checks.push(Check::new(
            "certificate",
            Severity::Ok,
            "no certificate is recorded for this product (未见认证记录; not every product needs one)",
            evidence,
        ));
    } else {
        checks.push(Check::new(
            "certificate",
            Severity::Ok,
            format!("certified (已认证): {}", good.join("; ")),
            evidence,
        ));
    }
    Ok(())
}

/// A GTIN with no lot: the product line's certificates and recalls.
fn product_line(ctx: Ctx<'_>, code: &ProductCode, subject: String) -> Result<Report, VerdictError> {
    let today = ctx.view.today();
    let known = ctx.view.lookup(&IndexKey::Gtin(code.gtin.clone()), 1)?;
    if known.is_empty() {
        return Ok(Report::not_found(
            subject,
            format!("the ledger has no record of GTIN {} (查无此产品)", code.gtin),
            today,
        ));
    }
    let mut used = Vec::new();
    let mut checks = vec![Check::new(
        "source",
        Severity::Warning,
        "no lot given: give the lot (批号) printed on the package for a full check of its source",
        Vec::new(),
    )];
    let mut views = Vec::new();
    certificates_for_product(&ctx, &code.gtin, &[], &mut checks, &mut used, &mut views)?;
    // Recalls of the whole GTIN (no lot restriction).
    let mut recalls = Vec::new();
    for id in ctx.view.lookup(&IndexKey::RecallOf(code.gtin.clone()), trace::MAX_PER_KEY)? {
        if let Some(record) = ctx.record(id)?
            && let Some(Body::Recall(r)) = record.body()
            && r.lots.is_empty()
            && r.dates.is_none()
            && r.serial_from.is_empty()
        {
            recalls.push(record);
        }
    }
    let (recalls, _) = ctx.corrected(recalls)?;
    if recalls.is_empty() {
        checks.push(Check::new("recall", Severity::Ok, "no recall covers every lot of this product", Vec::new()));
    } else {
        checks.push(Check::new(
            "recall",
            Severity::Invalid,
            recalls.iter().filter_map(|r| r.body().map(describe)).collect::<Vec<_>>().join("; "),
            recalls.iter().map(|r| r.cite()).collect(),
        ));
        used.extend(recalls.iter().cloned());
    }
    let recalled = !recalls.is_empty();
    let refs: Vec<&Record> = used.iter().collect();
    let mut front = Vec::new();
    let responsible = integrity_checks(&ctx, &refs, &mut front);
    front.extend(checks);
    let mut report = Report::finish(subject, front, today);
    report.responsible = responsible;
    report.certificates = views;
    report.recalled = recalled;
    Ok(report)
}

/// The regulator's question about a certificate: is it genuine, issued by
/// an accredited body within its scope, resting on real reports, and valid
/// now (and on `at`)? With `product`, also: does it cover that product?
pub fn verify_certificate(
    view: &dyn View,
    trust: &Trust,
    issuer: &Uscc,
    number: &str,
    product: Option<&Gtin>,
    at: Option<Date>,
    options: Options,
) -> Result<Report, VerdictError> {
    let ctx = Ctx::new(view, trust, options);
    let today = view.today();
    let subject = format!("certificate {issuer}/{number}");
    let Some(history) = certificate_history(&ctx, issuer, number)? else {
        return Ok(Report::not_found(
            subject,
            format!("no certificate {number} issued by {issuer} is in the ledger (查无此证书)"),
            today,
        ));
    };
    let mut checks = Vec::new();
    let mut used = Vec::new();
    let status = certificate_checks(&ctx, &history, at, &mut checks, &mut used)?;
    if let Some(gtin) = product {
        if history.covers(gtin) {
            checks.push(Check::new("scope", Severity::Ok, format!("covers GTIN {gtin}"), Vec::new()));
        } else {
            checks.push(Check::new(
                "scope",
                Severity::Invalid,
                format!(
                    "does not cover GTIN {gtin} (it covers {}) — a certificate used for another product (冒用)",
                    history.covered().join(", ")
                ),
                Vec::new(),
            ));
        }
    }
    let mut seen = BTreeSet::new();
    used.retain(|r| seen.insert(r.id));
    let refs: Vec<&Record> = used.iter().collect();
    let mut front = Vec::new();
    let responsible = integrity_checks(&ctx, &refs, &mut front);
    front.extend(checks);
    let mut report = Report::finish(subject, front, today);
    report.responsible = responsible;
    report.certificates = vec![history.view(today)];
    report.path = used.iter().map(|r| step(&ctx, r)).collect();
    let _ = status;
    Ok(report)
}

/// The regulator's question about one record: genuine, accountable, its
/// upstream and downstream, and the status of what it is about.
pub fn verify_record(view: &dyn View, trust: &Trust, id: RecordId, options: Options) -> Result<Report, VerdictError> {
    let ctx = Ctx::new(view, trust, options);
    let today = view.today();
    let subject = format!("record {id}");
    let Some(record) = ctx.record(id)? else {
        return Ok(Report::not_found(subject, format!("record {id} is not in the ledger"), today));
    };
    let mut checks = Vec::new();
    let mut used = vec![record.clone()];
    let corrections = trace::corrections_of(view, &record)?;
    if !corrections.is_empty() {
        checks.push(Check::new(
            "correction",
            Severity::Warning,
            format!(
                "the signer corrected this record: {}",
                corrections.iter().filter_map(|c| c.body().map(describe)).collect::<Vec<_>>().join("; ")
            ),
            corrections.iter().map(|c| c.cite()).collect(),
        ));
        used.extend(corrections);
    }
    let upstream = trace::trace(view, &[id], Direction::Upstream, options.limits, options.raw)?;
    checks.push(Check::new(
        "source",
        Severity::Ok,
        format!("source traceable (来源可查): {} upstream record(s)", upstream.nodes.len().saturating_sub(1)),
        upstream.nodes.iter().skip(1).map(|n| n.record.cite()).collect(),
    ));
    let downstream = trace::trace(view, &[id], Direction::Downstream, options.limits, options.raw)?;
    checks.push(Check::new(
        "destination",
        Severity::Ok,
        format!("destination trackable (去向可追): {} downstream record(s)", downstream.nodes.len().saturating_sub(1)),
        downstream.nodes.iter().skip(1).map(|n| n.record.cite()).collect(),
    ));
    used.extend(upstream.nodes.iter().map(|n| Record::clone(&n.record)));
    used.extend(downstream.nodes.iter().map(|n| Record::clone(&n.record)));
    let mut certificate_views = Vec::new();
    if let Some(body) = record.body() {
        let (uses, creates) = trace::lots_of(body);
        let mut lots: Vec<LotKey> = creates.into_iter().chain(uses).collect();
        for l in &upstream.lots {
            if !lots.contains(l) {
                lots.push(l.clone());
            }
        }
        if !lots.is_empty() {
            lot_status_checks(&ctx, &lots, None, &mut checks, &mut used)?;
        }
        let cert_key = registry::certificate_key(body);
        if let Some(key) = cert_key
            && let Ok(issuer) = Uscc::parse(&key.issuer_uscc)
            && let Some(history) = certificate_history(&ctx, &issuer, &key.number)?
        {
            certificate_checks(&ctx, &history, None, &mut checks, &mut used)?;
            certificate_views.push(history.view(today));
        }
    }
    let mut seen = BTreeSet::new();
    used.retain(|r| seen.insert(r.id));
    let refs: Vec<&Record> = used.iter().collect();
    let mut front = Vec::new();
    let responsible = integrity_checks(&ctx, &refs, &mut front);
    front.extend(checks);
    let mut report = Report::finish(subject, front, today);
    report.recalled = report.check("recall").is_some_and(|c| c.severity == Severity::Invalid);
    report.responsible = responsible;
    report.certificates = certificate_views;
    report.path =
        upstream.nodes.iter().rev().chain(downstream.nodes.iter().skip(1)).map(|n| step(&ctx, &n.record)).collect();
    Ok(report)
}

/// The report as the documented JSON object:
/// `{"verdict", "subject", "as_of", "recalled", "checks": [{"name", "ok",
/// "severity", "detail", "evidence"}], "responsible", "path", "certificates"}`.
pub fn to_json_value(report: &Report) -> serde_json::Value {
    use serde_json::json;
    json!({
        "verdict": report.verdict.name(),
        "subject": report.subject,
        "as_of": report.as_of,
        "recalled": report.recalled,
        "checks": report.checks.iter().map(|c| json!({
            "name": c.name,
            "ok": c.severity == Severity::Ok,
            "severity": c.severity.name(),
            "detail": c.detail,
            "evidence": c.evidence,
        })).collect::<Vec<_>>(),
        "responsible": report.responsible.iter().map(|r| json!({
            "record": r.record,
            "kind": r.kind.name(),
            "uscc": r.uscc,
            "organisation": r.organisation,
            "person": r.person,
            "title": r.title,
        })).collect::<Vec<_>>(),
        "path": report.path.iter().map(|s| json!({
            "record": s.record,
            "kind": s.kind.name(),
            "when": s.when,
            "what": s.what,
            "organisation": s.organisation,
        })).collect::<Vec<_>>(),
        "certificates": report.certificates.iter().map(|c| json!({
            "issuer": c.issuer,
            "number": c.number,
            "holder": c.holder,
            "status": c.status,
            "valid_until": c.valid_until,
            "history": c.history.iter().map(|(date, kind, detail)| json!({
                "date": date, "kind": kind.name(), "detail": detail,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

pub fn to_json(report: &Report) -> String {
    to_json_value(report).to_string()
}

/// The report as its protobuf message.
pub fn to_pb(report: &Report) -> pb::VerdictReport {
    pb::VerdictReport {
        verdict: report.verdict.name().to_string(),
        subject: report.subject.clone(),
        checks: report
            .checks
            .iter()
            .map(|c| pb::VerdictCheck {
                name: c.name.to_string(),
                ok: c.severity == Severity::Ok,
                severity: c.severity.name().to_string(),
                detail: c.detail.clone(),
                evidence: c.evidence.clone(),
            })
            .collect(),
        json: to_json(report),
    }
}

/// Parses a verdict subject given on a command line or in a request.
pub fn product_code(text: &str) -> Result<ProductCode, crate::ids::IdError> {
    // "GTIN/LOT" is accepted as a short form.
    if let Some((gtin, lot)) = text.split_once('/')
        && !text.contains(':')
        && !text.starts_with('(')
    {
        let gtin = Gtin::parse(gtin)?;
        let lot = Lot::parse(lot)?;
        return Ok(ProductCode { gtin, lot: Some(lot), serial: None, expiry: None });
    }
    ProductCode::parse(text)
}
