//! The report a verdict produces: checks with severities, responsible
//! parties, the path, certificates; and its JSON and protobuf forms.

use crate::event::EventKind;
use crate::ids::Date;
use crate::pb::{self, event::Body};

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
    pub(super) fn new(
        name: &'static str,
        severity: Severity,
        detail: impl Into<String>,
        evidence: Vec<String>,
    ) -> Check {
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
    pub(super) fn finish(subject: String, checks: Vec<Check>, as_of: Date) -> Report {
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

    pub(super) fn not_found(subject: String, detail: String, as_of: Date) -> Report {
        let mut report =
            Report::finish(subject, vec![Check::new("found", Severity::Invalid, detail, Vec::new())], as_of);
        report.verdict = Overall::NotFound;
        report
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
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
