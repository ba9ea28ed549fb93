//! Readable renderings of records: JSON for programs and indented text for
//! people.
//!
//! [`event_json`] renders a decoded [`pb::Event`] field by field, every body
//! included: enums by their snake_case names (unknown numbers as numbers),
//! bytes as lowercase hex, times both as numbers and as RFC 3339 text. The
//! JSON is a view, not a serialisation: what was signed are the exact event
//! bytes, which [`entry_json`] gives in base64 beside it.
//!
//! [`text`] turns any such JSON value into indented `key: value` lines,
//! adding the Chinese term beside the English for enum values users know
//! by it ("conformant 合格").

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::event::EventKind;
use crate::pb::{self, event::Body};
use crate::registry;
use crate::time::{format_event_time, format_micros_utc};
use crate::verify::CheckedEntry;

/// The name of a prost enum value without its type prefix, lower case:
/// `CONCLUSION_NON_CONFORMANT` → `non_conformant`.
fn enum_name(full: &str, prefix: &str) -> Value {
    full.strip_prefix(prefix).unwrap_or(full).to_ascii_lowercase().into()
}

fn role(value: i32) -> Value {
    pb::Role::try_from(value).map_or(Value::from(value), |r| registry::role_name(r).into())
}

fn conclusion(value: i32) -> Value {
    pb::Conclusion::try_from(value).map_or(Value::from(value), |c| enum_name(c.as_str_name(), "CONCLUSION_"))
}

fn initiator(value: i32) -> Value {
    pb::RecallInitiator::try_from(value).map_or(Value::from(value), |i| enum_name(i.as_str_name(), "RECALL_INITIATOR_"))
}

fn date_kind(value: i32) -> Value {
    pb::DateKind::try_from(value).map_or(Value::from(value), |k| enum_name(k.as_str_name(), "DATE_KIND_"))
}

fn correction_kind(value: i32) -> Value {
    pb::CorrectionKind::try_from(value).map_or(Value::from(value), |k| enum_name(k.as_str_name(), "CORRECTION_KIND_"))
}

fn opt<T>(value: Option<&T>, render: impl FnOnce(&T) -> Value) -> Value {
    value.map_or(Value::Null, render)
}

fn time(t: &pb::EventTime) -> Value {
    json!({"unix_millis": t.unix_millis, "offset_minutes": t.offset_minutes, "rfc3339": format_event_time(t)})
}

fn record_ref(r: &pb::RecordRef) -> Value {
    json!({"log_id": hex::encode(&r.log_id), "seq": r.seq, "entry_hash": hex::encode(&r.entry_hash)})
}

fn record_refs(refs: &[pb::RecordRef]) -> Value {
    refs.iter().map(record_ref).collect()
}

fn product(p: &pb::ProductKey) -> Value {
    json!({"gtin": p.gtin, "lot": p.lot, "serial": p.serial})
}

fn certificate(c: &pb::CertificateKey) -> Value {
    json!({"issuer_uscc": c.issuer_uscc, "number": c.number})
}

fn quantity(q: &pb::Quantity) -> Value {
    json!({"value": q.value, "unit": q.unit})
}

fn lots(items: &[pb::LotQuantity]) -> Value {
    items
        .iter()
        .map(|i| json!({"product": opt(i.product.as_ref(), product), "quantity": opt(i.quantity.as_ref(), quantity)}))
        .collect()
}

fn party(p: &pb::Party) -> Value {
    json!({"uscc": p.uscc, "location_gln": p.location_gln})
}

fn test_items(items: &[pb::TestItem]) -> Value {
    items
        .iter()
        .map(|i| {
            json!({"name": i.name, "value": i.value, "unit": i.unit, "limit": i.limit, "result": conclusion(i.result)})
        })
        .collect()
}

fn subject(s: &pb::Subject) -> Value {
    use pb::subject::Kind;
    match s.kind.as_ref() {
        None => Value::Null,
        Some(Kind::Product(p)) => json!({"product": product(p)}),
        Some(Kind::Certificate(c)) => json!({"certificate": certificate(c)}),
        Some(Kind::OrganisationUscc(u)) => json!({"organisation_uscc": u}),
    }
}

fn location(l: &pb::Location) -> Value {
    json!({"read_point_gln": l.read_point_gln, "business_location_gln": l.business_location_gln, "region": l.region})
}

fn accreditations(list: &[pb::Accreditation]) -> Value {
    list.iter()
        .map(|a| {
            json!({
                "number": a.number,
                "gtin_prefixes": a.gtin_prefixes,
                "standards": a.standards,
                "valid_from": a.valid_from,
                "valid_until": a.valid_until,
            })
        })
        .collect()
}

fn certified_products(products: &[pb::CertifiedProduct]) -> Value {
    products.iter().map(|p| json!({"gtin": p.gtin, "name": p.name, "model": p.model})).collect()
}

fn org(uscc: &str, name: &str, roles: &[i32], accr: &[pb::Accreditation], address: &str, region: &str) -> Value {
    json!({
        "uscc": uscc,
        "name": name,
        "roles": roles.iter().copied().map(role).collect::<Value>(),
        "accreditations": accreditations(accr),
        "address": address,
        "region": region,
    })
}

fn cert_change(c: &Option<pb::CertificateKey>, extra: Value) -> Value {
    let mut object = Map::new();
    object.insert("certificate".into(), opt(c.as_ref(), certificate));
    if let Value::Object(fields) = extra {
        object.extend(fields);
    }
    Value::Object(object)
}

/// The body of an event as JSON, under its kind's name.
pub fn body_json(body: &Body) -> Value {
    match body {
        Body::Genesis(g) => json!({
            "origin": g.origin,
            "operator_uscc": g.operator_uscc,
            "operator_name": g.operator_name,
            "root_authority_keys": g.root_authority_keys.iter().map(hex::encode).collect::<Vec<_>>(),
        }),
        Body::OrgRegistered(o) => org(&o.uscc, &o.name, &o.roles, &o.accreditations, &o.address, &o.region),
        Body::OrgUpdated(o) => org(&o.uscc, &o.name, &o.roles, &o.accreditations, &o.address, &o.region),
        Body::KeyRegistered(k) => json!({
            "uscc": k.uscc,
            "public_key": hex::encode(&k.public_key),
            "person": k.person,
            "title": k.title,
            "admin": k.admin,
        }),
        Body::KeyRevoked(k) => json!({"public_key": hex::encode(&k.public_key), "reason": k.reason}),
        Body::Production(p) => json!({
            "output": lots(p.output.as_slice()),
            "production_date": p.production_date,
            "expiry_date": p.expiry_date,
            "factory_gln": p.factory_gln,
        }),
        Body::Transformation(t) => json!({
            "inputs": lots(&t.inputs),
            "outputs": lots(&t.outputs),
            "production_date": t.production_date,
            "expiry_date": t.expiry_date,
            "factory_gln": t.factory_gln,
        }),
        Body::Shipment(s) => json!({
            "items": lots(&s.items),
            "source": opt(s.source.as_ref(), party),
            "destination": opt(s.destination.as_ref(), party),
            "shipment_number": s.shipment_number,
        }),
        Body::Receipt(r) => json!({
            "items": lots(&r.items),
            "source": opt(r.source.as_ref(), party),
            "destination": opt(r.destination.as_ref(), party),
            "shipment_number": r.shipment_number,
        }),
        Body::Sale(s) => json!({"items": lots(&s.items), "store_gln": s.store_gln}),
        Body::Inspection(i) => json!({
            "report_number": i.report_number,
            "product": opt(i.product.as_ref(), product),
            "standards": i.standards,
            "items": test_items(&i.items),
            "conclusion": conclusion(i.conclusion),
            "destructive": i.destructive,
            "client_uscc": i.client_uscc,
        }),
        Body::SpotCheck(s) => json!({
            "plan_number": s.plan_number,
            "product": opt(s.product.as_ref(), product),
            "inspected_uscc": s.inspected_uscc,
            "lab_uscc": s.lab_uscc,
            "standards": s.standards,
            "items": test_items(&s.items),
            "result": conclusion(s.result),
            "published_on": s.published_on,
        }),
        Body::CertificateIssued(c) => json!({
            "certificate": opt(c.certificate.as_ref(), certificate),
            "holder_uscc": c.holder_uscc,
            "manufacturer_uscc": c.manufacturer_uscc,
            "factory_name": c.factory_name,
            "factory_gln": c.factory_gln,
            "products": certified_products(&c.products),
            "standards": c.standards,
            "certification_mode": c.certification_mode,
            "issued_on": c.issued_on,
            "valid_until": c.valid_until,
            "scope": c.scope,
        }),
        Body::CertificateSuspended(c) => cert_change(&c.certificate, json!({"reason": c.reason, "until": c.until})),
        Body::CertificateRestored(c) => cert_change(&c.certificate, json!({"reason": c.reason})),
        Body::CertificateScopeReduced(c) => {
            cert_change(&c.certificate, json!({"removed_gtins": c.removed_gtins, "reason": c.reason}))
        }
        Body::CertificateWithdrawn(c) => cert_change(&c.certificate, json!({"reason": c.reason})),
        Body::CertificateCancelled(c) => cert_change(&c.certificate, json!({"reason": c.reason})),
        Body::CertificateRenewed(c) => {
            cert_change(&c.certificate, json!({"valid_until": c.valid_until, "reason": c.reason}))
        }
        Body::Recall(r) => json!({
            "recall_number": r.recall_number,
            "gtin": r.gtin,
            "lots": r.lots,
            "serial_from": r.serial_from,
            "serial_to": r.serial_to,
            "dates": opt(r.dates.as_ref(), |d| json!({"kind": date_kind(d.kind), "from": d.from, "to": d.to})),
            "regions": r.regions,
            "risk_class": r.risk_class,
            "reason": r.reason,
            "initiator": initiator(r.initiator),
            "manufacturer_uscc": r.manufacturer_uscc,
            "remedy": r.remedy,
        }),
        Body::RecallProgress(p) => json!({
            "recall": opt(p.recall.as_ref(), record_ref),
            "parties_notified": p.parties_notified,
            "quantity_recovered": opt(p.quantity_recovered.as_ref(), quantity),
            "quantity_sold": opt(p.quantity_sold.as_ref(), quantity),
            "note": p.note,
        }),
        Body::RecallClosed(c) => json!({
            "recall": opt(c.recall.as_ref(), record_ref),
            "closeout": c.closeout,
            "quantity_recovered": opt(c.quantity_recovered.as_ref(), quantity),
        }),
        Body::Blacklisted(b) => json!({
            "uscc": b.uscc,
            "reason": b.reason,
            "legal_basis": b.legal_basis,
            "authority_uscc": b.authority_uscc,
            "listed_on": b.listed_on,
            "until": b.until,
        }),
        Body::Delisted(d) => json!({"uscc": d.uscc, "reason": d.reason, "delisted_on": d.delisted_on}),
        Body::Correction(c) => json!({
            "target": opt(c.target.as_ref(), record_ref),
            "kind": correction_kind(c.kind),
            "reason": c.reason,
            "corrective": record_refs(&c.corrective),
        }),
    }
}

/// A readable rendering of a whole event: `kind`, the common fields, and the
/// body under its kind's name (e.g. `"shipment": {…}`).
pub fn event_json(event: &pb::Event) -> Value {
    let kind = event.body.as_ref().map(EventKind::of);
    let mut object = Map::new();
    object.insert("kind".into(), kind.map_or(Value::Null, |k| k.name().into()));
    object.insert("event_time".into(), opt(event.event_time.as_ref(), time));
    object.insert("subject".into(), opt(event.subject.as_ref(), subject));
    object.insert("parents".into(), record_refs(&event.parents));
    object.insert("location".into(), opt(event.location.as_ref(), location));
    object.insert("biz_step".into(), event.biz_step.clone().into());
    object.insert("disposition".into(), event.disposition.clone().into());
    let documents =
        event.documents.iter().map(|d| json!({"kind": d.kind, "id": d.id, "sha256": hex::encode(&d.sha256)})).collect();
    object.insert("documents".into(), documents);
    let attributes = event.attributes.iter().map(|a| json!({"name": a.name, "value": a.value})).collect();
    object.insert("attributes".into(), attributes);
    object.insert("nonce".into(), event.nonce.into());
    if let (Some(kind), Some(body)) = (kind, event.body.as_ref()) {
        object.insert(kind.name().into(), body_json(body));
    }
    Value::Object(object)
}

/// An entry as `qtrace get --json` prints it: the fields of the log entry
/// (hashes and keys in hex), the exact signed event bytes and leaf bytes in
/// base64, and the decoded event.
pub fn entry_json(checked: &CheckedEntry) -> Value {
    let entry = &checked.entry;
    json!({
        "log_id": checked.log_id.to_hex(),
        "seq": entry.seq,
        "entry_hash": checked.hash.to_hex(),
        "prev_hash": entry.prev_hash.to_hex(),
        "logged_at": format_micros_utc(entry.logged_at_micros),
        "logged_at_micros": entry.logged_at_micros,
        "signer": hex::encode(entry.signer),
        "signature": hex::encode(entry.signature),
        "kind": checked.event.kind.name(),
        "event_b64": BASE64.encode(&entry.event),
        "entry_b64": BASE64.encode(entry.encode()),
        "event": event_json(&checked.event.event),
    })
}

/// A record kind in both languages, e.g. "shipment 发货".
pub fn kind_label(kind: EventKind) -> String {
    format!("{} {}", kind.name(), kind.name_zh())
}

/// The Chinese term for an enum value users know by it, looked up only
/// under the keys that hold such values.
fn chinese_term(key: &str, value: &str) -> Option<&'static str> {
    match (key, value) {
        ("conclusion" | "result", "conformant") => Some("合格"),
        ("conclusion" | "result", "non_conformant") => Some("不合格"),
        ("initiator", "voluntary") => Some("主动召回"),
        ("initiator", "ordered") => Some("责令召回"),
        ("roles", "regulator") => Some("市场监管部门"),
        ("roles", "certification_body") => Some("认证机构"),
        ("roles", "testing_lab") => Some("检验检测机构"),
        ("roles", "manufacturer") => Some("生产企业"),
        ("roles", "distributor") => Some("经销商"),
        ("roles", "retailer") => Some("零售商"),
        ("kind", "did_not_occur") => Some("未发生"),
        ("kind", "incorrect_data") => Some("数据有误"),
        ("kind", name) => EventKind::ALL.into_iter().find(|k| k.name() == name).map(EventKind::name_zh),
        _ => None,
    }
}

fn scalar(key: &str, value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(match chinese_term(key, s) {
            Some(zh) => format!("{s} {zh}"),
            None => s.clone(),
        }),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "yes".to_owned() } else { "no".to_owned() }),
        _ => None,
    }
}

/// Whether a value says nothing worth a line (empty text, null, empty
/// lists and objects), so that text output shows only what was recorded.
fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.iter().all(is_blank),
        Value::Object(o) => o.values().all(is_blank),
        _ => false,
    }
}

fn text_lines(key: &str, value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter().filter(|(_, f)| !is_blank(f)) {
                match scalar(name, field) {
                    Some(s) => out.push_str(&format!("{pad}{name}: {s}\n")),
                    None => {
                        out.push_str(&format!("{pad}{name}:\n"));
                        text_lines(name, field, indent + 2, out);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items.iter().filter(|i| !is_blank(i)) {
                match scalar(key, item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        out.push_str(&format!("{pad}-\n"));
                        text_lines(key, item, indent + 2, out);
                    }
                }
            }
        }
        other => {
            if let Some(s) = scalar(key, other) {
                out.push_str(&format!("{pad}{s}\n"));
            }
        }
    }
}

/// An event as indented text for people: the body first, under its kind in
/// both languages, then the common fields that were recorded. The event
/// time is left to the caller, which prints it with the entry.
pub fn event_text(event: &pb::Event, indent: usize) -> String {
    let value = event_json(event);
    let mut out = String::new();
    if let Some(kind) = event.body.as_ref().map(EventKind::of) {
        out.push_str(&format!("{}{}:\n", " ".repeat(indent), kind_label(kind)));
        out.push_str(&text(&value[kind.name()], indent + 2));
    }
    for key in ["subject", "parents", "location", "biz_step", "disposition", "documents", "attributes"] {
        out.push_str(&text(&json!({ key: value[key] }), indent));
    }
    if event.nonce != 0 {
        out.push_str(&format!("{}nonce: {}\n", " ".repeat(indent), event.nonce));
    }
    out
}

/// Indented `key: value` lines for a JSON value, leaving out empty fields
/// and adding Chinese terms beside known enum values.
pub fn text(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    text_lines("", value, indent, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::fixtures;

    #[test]
    fn every_body_kind_is_rendered() {
        for (name, event) in fixtures::every_kind() {
            let value = event_json(&event);
            assert_eq!(value["kind"], name, "{name}");
            let body = &value[name];
            assert!(body.is_object(), "{name}: {value}");
            // Every field of the body message appears in the rendering.
            let n_fields = match event.body.as_ref() {
                Some(b) => field_count(b),
                None => 0,
            };
            assert_eq!(body.as_object().map(Map::len), Some(n_fields), "{name}: {body}");
            assert!(!text(&value, 0).is_empty());
        }
    }

    /// The number of fields of each body message, from the .proto file.
    fn field_count(body: &Body) -> usize {
        match body {
            Body::Genesis(_) => 4,
            Body::OrgRegistered(_) | Body::OrgUpdated(_) => 6,
            Body::KeyRegistered(_) => 5,
            Body::KeyRevoked(_) => 2,
            Body::Production(_) => 4,
            Body::Transformation(_) => 5,
            Body::Shipment(_) | Body::Receipt(_) => 4,
            Body::Sale(_) => 2,
            Body::Inspection(_) => 7,
            Body::SpotCheck(_) => 8,
            Body::CertificateIssued(_) => 11,
            Body::CertificateSuspended(_) => 3,
            Body::CertificateRestored(_) => 2,
            Body::CertificateScopeReduced(_) => 3,
            Body::CertificateWithdrawn(_) => 2,
            Body::CertificateCancelled(_) => 2,
            Body::CertificateRenewed(_) => 3,
            Body::Recall(_) => 12,
            Body::RecallProgress(_) => 5,
            Body::RecallClosed(_) => 3,
            Body::Blacklisted(_) => 6,
            Body::Delisted(_) => 3,
            Body::Correction(_) => 4,
        }
    }

    #[test]
    fn values_are_rendered_by_name_and_hex() {
        let events: std::collections::HashMap<_, _> = fixtures::every_kind().into_iter().collect();
        let cases: Vec<(&str, &str, Value)> = vec![
            ("inspection", "/inspection/conclusion", json!("conformant")),
            ("inspection", "/inspection/items/0/result", json!("conformant")),
            ("inspection", "/inspection/items/1/result", json!("unspecified")),
            ("spot_check", "/spot_check/result", json!("non_conformant")),
            ("org_registered", "/org_registered/roles/0", json!("testing_lab")),
            ("recall", "/recall/initiator", json!("ordered")),
            ("recall", "/recall/dates", Value::Null),
            ("correction", "/correction/kind", json!("incorrect_data")),
            ("correction", "/correction/target/log_id", json!("aa".repeat(32))),
            ("correction", "/correction/target/entry_hash", json!("06".repeat(32))),
            ("recall_closed", "/documents/0/sha256", json!("09".repeat(32))),
            ("recall_closed", "/location/region", json!("310000")),
            ("shipment", "/event_time/rfc3339", json!("2026-11-21T10:00:00+08:00")),
            ("shipment", "/event_time/offset_minutes", json!(480)),
            ("shipment", "/shipment/items/0/quantity/unit", json!("KGM")),
            ("shipment", "/subject/product/lot", json!("L2026-11")),
            ("certificate_issued", "/subject/certificate/number", json!("CQC2026010001")),
            ("blacklisted", "/subject/organisation_uscc", json!(fixtures::MAKER)),
            ("genesis", "/subject", Value::Null),
            ("shipment", "/nonce", json!(7)),
        ];
        for (kind, pointer, want) in cases {
            let value = event_json(&events[kind]);
            assert_eq!(value.pointer(pointer), Some(&want), "{kind} {pointer}");
        }
        let unknown = pb::Event {
            body: Some(Body::Inspection(pb::Inspection { conclusion: 9, ..Default::default() })),
            ..Default::default()
        };
        assert_eq!(event_json(&unknown).pointer("/inspection/conclusion"), Some(&json!(9)));
    }

    #[test]
    fn text_adds_chinese_terms_and_skips_blanks() {
        let events: std::collections::HashMap<_, _> = fixtures::every_kind().into_iter().collect();
        let spot = text(&event_json(&events["spot_check"]), 0);
        assert!(spot.contains("kind: spot_check 监督抽查\n"), "{spot}");
        assert!(spot.contains("  result: non_conformant 不合格\n"), "{spot}");
        assert!(!spot.contains("serial"), "empty fields are left out: {spot}");
        let org = text(&event_json(&events["org_registered"]), 0);
        assert!(org.contains("  roles:\n    - testing_lab 检验检测机构\n"), "{org}");
        assert_eq!(
            text(&json!({"a": {"b": [1, 2]}, "c": "", "d": true}), 2),
            "  a:\n    b:\n      - 1\n      - 2\n  d: yes\n"
        );
        let shipment = event_text(&events["shipment"], 0);
        assert!(shipment.starts_with("shipment 发货:\n  destination:\n"), "{shipment}");
        assert!(shipment.contains("\nsubject:\n  product:\n"), "{shipment}");
        assert!(shipment.ends_with("nonce: 7\n"), "{shipment}");
    }
}
