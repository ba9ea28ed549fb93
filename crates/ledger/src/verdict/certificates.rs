//! Certificates: their history and status on a date, the checks of one
//! certificate, and which certificates a product claims or is covered by.

use std::collections::{BTreeMap, BTreeSet};

use crate::event::IndexKey;
use crate::hash::LogId;
use crate::ids::{Date, Gtin, Uscc};
use crate::pb::{self, event::Body};
use crate::registry::{self, event_date};
use crate::trace;
use crate::view::{Record, RecordId, View, ViewError};

use super::checks::{Ctx, blacklist_check, conclude, step};
use super::report::{CertificateView, Check, Report, Severity, describe};
use super::{Options, Trust, VerdictError};

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

    pub(super) fn view(&self, today: Date) -> CertificateView {
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
pub(super) fn certificate_history(
    ctx: &Ctx<'_>,
    issuer: &Uscc,
    number: &str,
) -> Result<Option<CertificateHistory>, ViewError> {
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
pub(super) fn certificate_checks(
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

/// Who made a lot, by one of its origin records: the signer's organisation
/// and the factory GLN the record names (empty when it names none).
struct Maker {
    uscc: Uscc,
    factory_gln: String,
}

impl Maker {
    fn of(ctx: &Ctx<'_>, origin: &Record) -> Option<Maker> {
        let uscc = ctx.view.registry().key(&origin.entry.signer)?.uscc.clone();
        let factory_gln = match origin.body() {
            Some(Body::Production(p)) => p.factory_gln.clone(),
            Some(Body::Transformation(t)) => t.factory_gln.clone(),
            _ => String::new(),
        };
        Some(Maker { uscc, factory_gln })
    }

    /// A certificate applies to lots its holder made, or its named
    /// manufacturer made in its named factory (when both name one).
    fn covered_by(&self, issued: &pb::CertificateIssued) -> bool {
        let organisation = self.uscc.as_str() == issued.holder_uscc || self.uscc.as_str() == issued.manufacturer_uscc;
        let factory =
            issued.factory_gln.is_empty() || self.factory_gln.is_empty() || self.factory_gln == issued.factory_gln;
        organisation && factory
    }
}

/// "Name (USCC)" of a registered organisation, or the bare code.
fn organisation_text(ctx: &Ctx<'_>, uscc: &str) -> String {
    let name = Uscc::parse(uscc).ok().and_then(|u| ctx.view.registry().organisation(&u).map(|o| o.name.clone()));
    match name {
        Some(name) => format!("{name} ({uscc})"),
        None => uscc.to_string(),
    }
}

/// The certificate check of a product: the certificates its lot's origin
/// records claim, and those issued for its GTIN. `origins` is `None` for a
/// whole product line (no lot), where a certificate for the GTIN counts;
/// for a lot, a certificate counts only if the lot's maker is its holder
/// (or its manufacturer and factory), and a lot claiming someone else's
/// certificate is INVALID (冒用).
pub(super) fn certificates_for_product(
    ctx: &Ctx<'_>,
    gtin: &Gtin,
    origins: Option<&[Record]>,
    checks: &mut Vec<Check>,
    used: &mut Vec<Record>,
    views: &mut Vec<CertificateView>,
) -> Result<(), VerdictError> {
    let today = ctx.view.today();
    let makers: Option<Vec<Maker>> = origins.map(|o| o.iter().filter_map(|r| Maker::of(ctx, r)).collect());
    // Claimed: documents of kind "certificate" with id "ISSUER/NUMBER", and
    // who claims each (the makers of the origin records naming it).
    let mut claimed: BTreeMap<(String, String), Vec<Maker>> = BTreeMap::new();
    for origin in origins.unwrap_or_default() {
        if let Some(event) = &origin.event {
            for doc in &event.event.documents {
                if doc.kind == "certificate"
                    && let Some((issuer, number)) = doc.id.split_once('/')
                {
                    let claimants = claimed.entry((issuer.to_string(), number.to_string())).or_default();
                    claimants.extend(Maker::of(ctx, origin));
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
    let mut others = Vec::new();
    let keys: BTreeSet<&(String, String)> = claimed.keys().chain(covering.iter()).collect();
    for key in keys {
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
        if let Some(Body::CertificateIssued(issued)) = history.issued.body() {
            let holder = organisation_text(ctx, &issued.holder_uscc);
            let misused: Vec<String> = claimed
                .get(key)
                .into_iter()
                .flatten()
                .filter(|m| !m.covered_by(issued))
                .map(|m| organisation_text(ctx, m.uscc.as_str()))
                .collect();
            if !misused.is_empty() {
                problems.push(format!(
                    "{} claims certificate {}/{}, which is held by {holder} — a certificate used by another \
                     organisation (冒用)",
                    misused.join(", "),
                    key.0,
                    key.1
                ));
                continue;
            }
            if !claimed.contains_key(key)
                && let Some(makers) = &makers
                && !makers.iter().any(|m| m.covered_by(issued))
            {
                // Issued for this GTIN to someone else: not about this lot.
                others.push(format!("{}/{} is held by {holder}", key.0, key.1));
                continue;
            }
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
    } else if good.is_empty() && others.is_empty() {
        checks.push(Check::new(
            "certificate",
            Severity::Ok,
            "no certificate is recorded for this product (未见认证记录; not every product needs one)",
            evidence,
        ));
    } else if good.is_empty() {
        checks.push(Check::new(
            "certificate",
            Severity::Ok,
            format!(
                "not certified (未认证): no certificate covers this lot's maker; certificates for this GTIN belong \
                 to other organisations: {} (not every product needs one)",
                others.join("; ")
            ),
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
    let mut report = conclude(&ctx, subject, &mut used, checks);
    report.certificates = vec![history.view(today)];
    report.path = used.iter().map(|r| step(&ctx, r)).collect();
    let _ = status;
    Ok(report)
}
