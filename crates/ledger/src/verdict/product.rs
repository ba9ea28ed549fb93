//! The consumer's question about a product code (a lot, a serial, or a
//! whole product line).

use std::collections::BTreeSet;

use crate::event::{EventKind, IndexKey};
use crate::ids::{ProductCode, Uscc};
use crate::pb::event::Body;
use crate::trace::{self, Direction, LotKey, Trace};
use crate::view::{Record, RecordId, View};

use super::certificates::certificates_for_product;
use super::checks::{Ctx, blacklist_check, conclude, lot_status_checks, step};
use super::report::{Check, Report, Severity, describe};
use super::{Options, Trust, VerdictError};

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
        let upstream = trace::trace(view, &ids, Direction::Upstream, options.limits, options.include_corrected)?;
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
        trace::trace(view, &ids, Direction::Downstream, options.limits, options.include_corrected)?
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
    certificates_for_product(&ctx, &code.gtin, Some(&origins), &mut checks, &mut used, &mut certificate_views)?;

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

    let mut report = conclude(&ctx, subject, &mut used, checks);
    report.recalled = recalled;
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
    certificates_for_product(&ctx, &code.gtin, None, &mut checks, &mut used, &mut views)?;
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
    let mut report = conclude(&ctx, subject, &mut used, checks);
    report.certificates = views;
    report.recalled = recalled;
    Ok(report)
}
