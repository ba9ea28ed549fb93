//! The regulator's question about one record.

use crate::ids::Uscc;
use crate::registry;
use crate::trace::{self, Direction, LotKey};
use crate::view::{Record, RecordId, View};

use super::certificates::{certificate_checks, certificate_history};
use super::checks::{Ctx, conclude, lot_status_checks, step};
use super::report::{Check, Report, Severity, describe};
use super::{Options, Trust, VerdictError};

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
    let upstream = trace::trace(view, &[id], Direction::Upstream, options.limits, options.include_corrected)?;
    checks.push(Check::new(
        "source",
        Severity::Ok,
        format!("source traceable (来源可查): {} upstream record(s)", upstream.nodes.len().saturating_sub(1)),
        upstream.nodes.iter().skip(1).map(|n| n.record.cite()).collect(),
    ));
    let downstream = trace::trace(view, &[id], Direction::Downstream, options.limits, options.include_corrected)?;
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
    let mut report = conclude(&ctx, subject, &mut used, checks);
    report.recalled = report.check("recall").is_some_and(|c| c.severity == Severity::Invalid);
    report.certificates = certificate_views;
    report.path =
        upstream.nodes.iter().rev().chain(downstream.nodes.iter().skip(1)).map(|n| step(&ctx, &n.record)).collect();
    Ok(report)
}
