//! qtrace → EPCIS: a product's records as an `EPCISDocument`, each event
//! carrying in the `qtrace` namespace what EPCIS has no field for, so that
//! importing an export rebuilds the same signed bytes.

use crate::ids::percent_encode;

use super::*;

/// The EPCIS eventID of a qtrace entry: its entry hash as a CBV 2.0 event
/// hash URI.
pub fn event_id_of(hash: &EntryHash) -> String {
    format!("ni:///sha-256;{}?ver=CBV2.0", hash.to_hex())
}

/// Writes items as an EPC list (items with a serial) and a quantity list
/// (lots and GTINs), the way [`read_items`] reads them back.
fn write_items(items: &[pb::LotQuantity]) -> (Vec<Value>, Vec<Value>) {
    let mut epcs: Vec<Value> = Vec::new();
    let mut quantities = Vec::new();
    for item in items {
        let product = item.product.clone().unwrap_or_default();
        let uri = product_uri(&product);
        if product.serial.is_empty() {
            let mut element = Map::new();
            element.insert("epcClass".into(), uri.into());
            // A unit the schema's uom pattern cannot hold is left to the
            // qtrace:items override rather than written as a count.
            if let Some(q) = &item.quantity
                && q.unit.len() <= 3
                && q.unit.len() >= 2
                && q.unit.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                element.insert("quantity".into(), json!(q.value));
                element.insert("uom".into(), q.unit.clone().into());
            }
            quantities.push(Value::Object(element));
        } else if !epcs.contains(&Value::from(uri.clone())) {
            epcs.push(uri.into());
        }
    }
    (epcs, quantities)
}

/// Puts items in the standard lists and, when reading those back would not
/// give the same items (a quantity on a serial item, a unit EPCIS cannot
/// write, an order the two lists lose), the exact items under `override_key`.
fn put_items(
    out: &mut Map<String, Value>,
    epc_key: &str,
    quantity_key: &str,
    override_key: &str,
    items: &[pb::LotQuantity],
) {
    let (epcs, quantities) = write_items(items);
    let probe = json!({epc_key: epcs, quantity_key: quantities});
    let read_back = Fields::of(&probe).and_then(|f| read_items(&f, epc_key, quantity_key, None));
    if !epcs.is_empty() {
        out.insert(epc_key.into(), epcs.into());
    }
    if !quantities.is_empty() {
        out.insert(quantity_key.into(), quantities.into());
    }
    if read_back.as_deref() != Ok(items) {
        out.insert(override_key.into(), items.iter().map(lot_json).collect());
    }
}

/// Puts a business step or disposition: the value itself when EPCIS can
/// hold it (a CBV name or another vocabulary's URI), else `default`; and the
/// exact value under `override_key` when reading back would differ.
fn put_vocabulary(
    out: &mut Map<String, Value>,
    key: &str,
    override_key: &str,
    actual: &str,
    default: &str,
    names: &[&str],
    vocabulary: &Vocabulary,
) {
    let short = cbv_short(actual, vocabulary);
    let standard = if names.contains(&short.as_str()) {
        short
    } else if other_vocabulary_uri(actual) {
        actual.to_owned()
    } else {
        default.to_owned()
    };
    if cbv_short(&standard, vocabulary) != actual {
        out.insert(override_key.into(), actual.into());
    }
    if !standard.is_empty() {
        out.insert(key.into(), standard.into());
    }
}

fn put_text(out: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        out.insert(key.into(), value.into());
    }
}

fn put_party(out: &mut Map<String, Value>, side: &str, party: Option<&pb::Party>) {
    let party = party.cloned().unwrap_or_default();
    if !party.location_gln.is_empty() {
        out.insert(format!("{side}List"), json!([{"type": "location", side: location_uri(&party.location_gln)}]));
    }
    out.insert(format!("qtrace:{side}USCC"), party.uscc.into());
}

fn put_ilmd(out: &mut Map<String, Value>, production_date: &str, expiry_date: &str) {
    let mut ilmd = Map::new();
    if !production_date.is_empty() {
        ilmd.insert("cbvmda:productionDate".into(), production_date.into());
    }
    if !expiry_date.is_empty() {
        ilmd.insert("cbvmda:itemExpirationDate".into(), expiry_date.into());
    }
    if !ilmd.is_empty() {
        out.insert("ilmd".into(), ilmd.into());
    }
}

fn product_item(product: Option<&pb::ProductKey>) -> Vec<pb::LotQuantity> {
    vec![pb::LotQuantity { product: product.cloned(), quantity: None }]
}

/// Documents as EPCIS can say them: certificates as `certificationInfo`,
/// others with a URI id in `bizTransactionList`. The exact list is in
/// `qtrace:documents` as well.
fn put_documents(out: &mut Map<String, Value>, documents: &[pb::Document]) {
    if documents.is_empty() {
        return;
    }
    let mut transactions = Vec::new();
    let mut certificates = Vec::new();
    for d in documents {
        if d.kind == "certificate" {
            certificates.push(if is_uri(&d.id) {
                d.id.clone()
            } else {
                format!("{CERTIFICATE_IRI}{}", percent_encode(&d.id))
            });
        } else if is_uri(&d.id) {
            let mut bt = Map::new();
            if BIZ_TRANSACTION_TYPES.contains(&d.kind.as_str()) || other_vocabulary_uri(&d.kind) {
                bt.insert("type".into(), d.kind.clone().into());
            }
            bt.insert("bizTransaction".into(), d.id.clone().into());
            transactions.push(Value::Object(bt));
        }
    }
    if !transactions.is_empty() {
        out.insert("bizTransactionList".into(), transactions.into());
    }
    if !certificates.is_empty() {
        out.insert("certificationInfo".into(), certificates.into());
    }
    out.insert("qtrace:documents".into(), documents_json(documents));
}

/// The EPCIS event of a qtrace record, or `None` for a record kind that is
/// not an EPCIS event (certificates, recall progress, corrections, registry
/// records).
pub fn export_event(record: &CheckedEntry) -> Option<Value> {
    let event = &record.event.event;
    let body = event.body.as_ref()?;
    let mut out = Map::new();
    let (epcis_type, action, step, disposition) = match body {
        Body::Production(p) => {
            put_items(&mut out, "epcList", "quantityList", "qtrace:items", p.output.as_slice());
            put_ilmd(&mut out, &p.production_date, &p.expiry_date);
            put_text(&mut out, "qtrace:factoryGLN", &p.factory_gln);
            ("ObjectEvent", Some("ADD"), "commissioning", "active")
        }
        Body::Transformation(t) => {
            put_items(&mut out, "inputEPCList", "inputQuantityList", "qtrace:inputs", &t.inputs);
            put_items(&mut out, "outputEPCList", "outputQuantityList", "qtrace:outputs", &t.outputs);
            put_ilmd(&mut out, &t.production_date, &t.expiry_date);
            put_text(&mut out, "qtrace:factoryGLN", &t.factory_gln);
            ("TransformationEvent", None, "commissioning", "active")
        }
        Body::Shipment(s) => {
            put_items(&mut out, "epcList", "quantityList", "qtrace:items", &s.items);
            put_party(&mut out, "source", s.source.as_ref());
            put_party(&mut out, "destination", s.destination.as_ref());
            put_text(&mut out, "qtrace:shipmentNumber", &s.shipment_number);
            ("ObjectEvent", Some("OBSERVE"), "shipping", "in_transit")
        }
        Body::Receipt(r) => {
            put_items(&mut out, "epcList", "quantityList", "qtrace:items", &r.items);
            put_party(&mut out, "source", r.source.as_ref());
            put_party(&mut out, "destination", r.destination.as_ref());
            put_text(&mut out, "qtrace:shipmentNumber", &r.shipment_number);
            ("ObjectEvent", Some("OBSERVE"), "receiving", "in_progress")
        }
        Body::Sale(s) => {
            put_items(&mut out, "epcList", "quantityList", "qtrace:items", &s.items);
            put_text(&mut out, "qtrace:storeGLN", &s.store_gln);
            ("ObjectEvent", Some("OBSERVE"), "retail_selling", "retail_sold")
        }
        Body::Inspection(i) => {
            put_items(&mut out, "epcList", "quantityList", "qtrace:items", &product_item(i.product.as_ref()));
            put_text(&mut out, "qtrace:reportNumber", &i.report_number);
            if !i.standards.is_empty() {
                out.insert("qtrace:standards".into(), i.standards.clone().into());
            }
            if !i.items.is_empty() {
                out.insert("qtrace:testItems".into(), test_items_json(&i.items));
            }
            if i.conclusion != 0 {
                out.insert("qtrace:conclusion".into(), conclusion_name(i.conclusion));
            }
            if i.destructive {
                out.insert("qtrace:destructive".into(), true.into());
            }
            put_text(&mut out, "qtrace:clientUSCC", &i.client_uscc);
            let step = if i.destructive { "sampling" } else { "inspecting" };
            let disposition =
                if i.conclusion == pb::Conclusion::NonConformant as i32 { "non_conformant" } else { "conformant" };
            ("ObjectEvent", Some("OBSERVE"), step, disposition)
        }
        Body::SpotCheck(s) => {
            put_items(&mut out, "epcList", "quantityList", "qtrace:items", &product_item(s.product.as_ref()));
            out.insert(
                "qtrace:spotCheck".into(),
                json!({
                    "planNumber": s.plan_number,
                    "inspectedUSCC": s.inspected_uscc,
                    "labUSCC": s.lab_uscc,
                    "standards": s.standards,
                    "result": conclusion_name(s.result),
                    "publishedOn": s.published_on,
                }),
            );
            if !s.items.is_empty() {
                out.insert("qtrace:testItems".into(), test_items_json(&s.items));
            }
            let disposition =
                if s.result == pb::Conclusion::NonConformant as i32 { "non_conformant" } else { "conformant" };
            ("ObjectEvent", Some("OBSERVE"), "inspecting", disposition)
        }
        Body::Recall(r) => {
            let lots: Vec<pb::LotQuantity> = if r.lots.is_empty() {
                vec![pb::LotQuantity {
                    product: Some(pb::ProductKey { gtin: r.gtin.clone(), ..Default::default() }),
                    quantity: None,
                }]
            } else {
                r.lots
                    .iter()
                    .map(|lot| pb::LotQuantity {
                        product: Some(pb::ProductKey { gtin: r.gtin.clone(), lot: lot.clone(), serial: String::new() }),
                        quantity: None,
                    })
                    .collect()
            };
            put_items(&mut out, "epcList", "quantityList", "qtrace:items", &lots);
            let initiator = match pb::RecallInitiator::try_from(r.initiator) {
                Ok(pb::RecallInitiator::Voluntary) => "voluntary",
                Ok(pb::RecallInitiator::Ordered) => "ordered",
                _ => "",
            };
            let mut recall = json!({
                "recallNumber": r.recall_number,
                "riskClass": r.risk_class,
                "reason": r.reason,
                "initiator": initiator,
                "manufacturerUSCC": r.manufacturer_uscc,
                "remedy": r.remedy,
                "serialFrom": r.serial_from,
                "serialTo": r.serial_to,
                "regions": r.regions,
            });
            if let (Some(d), Some(o)) = (&r.dates, recall.as_object_mut()) {
                let kind = match pb::DateKind::try_from(d.kind) {
                    Ok(pb::DateKind::Production) => "production",
                    Ok(pb::DateKind::Expiry) => "expiry",
                    _ => "",
                };
                o.insert("dates".into(), json!({"kind": kind, "from": d.from, "to": d.to}));
            }
            out.insert("qtrace:recall".into(), recall);
            ("ObjectEvent", Some("OBSERVE"), "", "recalled")
        }
        _ => return None,
    };
    let kind = record.event.kind;
    out.insert("type".into(), epcis_type.into());
    if let Some(action) = action {
        out.insert("action".into(), action.into());
    }
    let time = event.event_time.unwrap_or_default();
    out.insert("eventTime".into(), format_event_time(&time).into());
    out.insert("eventTimeZoneOffset".into(), format_offset(time.offset_minutes).into());
    out.insert("recordTime".into(), format_micros_utc(record.entry.logged_at_micros).into());
    out.insert("eventID".into(), event_id_of(&record.hash).into());
    put_vocabulary(&mut out, "bizStep", "qtrace:bizStep", &event.biz_step, step, BIZ_STEPS, &BIZ_STEP);
    put_vocabulary(
        &mut out,
        "disposition",
        "qtrace:disposition",
        &event.disposition,
        disposition,
        DISPOSITIONS,
        &DISPOSITION,
    );
    if let Some(location) = &event.location {
        if !location.read_point_gln.is_empty() {
            out.insert("readPoint".into(), json!({"id": location_uri(&location.read_point_gln)}));
        }
        if !location.business_location_gln.is_empty() {
            out.insert("bizLocation".into(), json!({"id": location_uri(&location.business_location_gln)}));
        }
        put_text(&mut out, "qtrace:region", &location.region);
    }
    put_documents(&mut out, &event.documents);
    if !event.attributes.is_empty() {
        let attributes: Vec<Value> =
            event.attributes.iter().map(|a| json!({"name": a.name, "value": a.value})).collect();
        out.insert("qtrace:attributes".into(), attributes.into());
    }
    out.insert("qtrace:kind".into(), kind.name().into());
    if event.subject != derived_subject(body) {
        out.insert("qtrace:subject".into(), event.subject.as_ref().map_or(json!({}), subject_json));
    }
    if !event.parents.is_empty() {
        out.insert("qtrace:parents".into(), refs_json(&event.parents));
    }
    if event.nonce != 0 {
        out.insert("qtrace:nonce".into(), event.nonce.to_string().into());
    }
    out.insert("qtrace:signer".into(), hex::encode(record.entry.signer).into());
    out.insert("qtrace:signature".into(), hex::encode(record.entry.signature).into());
    Some(Value::Object(out))
}

/// What [`export_document`] made.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub document: Value,
    /// Records exported as EPCIS events.
    pub events: usize,
    /// Records listed in `qtrace:otherRecords` instead.
    pub other: usize,
}

/// An `EPCISDocument` of records (in the order given), made at
/// `creation_date` (RFC 3339): an EPCIS event per record that has one, the
/// others listed under `qtrace:otherRecords` with their eventIDs.
pub fn export_document(records: &[CheckedEntry], creation_date: &str, product: &str) -> Exported {
    let mut events = Vec::new();
    let mut other = Vec::new();
    for record in records {
        match export_event(record) {
            Some(event) => events.push(event),
            None => other.push(json!({
                "eventID": event_id_of(&record.hash),
                "kind": record.event.kind.name(),
                "logID": record.log_id.to_hex(),
                "seq": record.entry.seq,
                "what": record.event.body().map(crate::verdict::describe).unwrap_or_default(),
            })),
        }
    }
    let (n_events, n_other) = (events.len(), other.len());
    let mut document = json!({
        "@context": [EPCIS_CONTEXT, {"qtrace": QTRACE_NAMESPACE}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": creation_date,
        "epcisBody": {"eventList": events},
        "qtrace:product": product,
    });
    if let (false, Some(o)) = (other.is_empty(), document.as_object_mut()) {
        o.insert("qtrace:otherRecords".into(), other.into());
    }
    Exported { document, events: n_events, other: n_other }
}

// The exact qtrace fields of an export, read back by `import`.

fn lot_json(item: &pb::LotQuantity) -> Value {
    let product = item.product.clone().unwrap_or_default();
    let mut out = json!({"gtin": product.gtin, "lot": product.lot, "serial": product.serial});
    if let (Some(q), Some(object)) = (&item.quantity, out.as_object_mut()) {
        object.insert("quantity".into(), json!({"value": q.value, "unit": q.unit}));
    }
    out
}

fn documents_json(documents: &[pb::Document]) -> Value {
    documents
        .iter()
        .map(|d| {
            let mut doc = json!({"kind": d.kind, "id": d.id});
            if let (false, Some(o)) = (d.sha256.is_empty(), doc.as_object_mut()) {
                o.insert("sha256".into(), hex::encode(&d.sha256).into());
            }
            doc
        })
        .collect()
}

fn conclusion_name(value: i32) -> Value {
    match pb::Conclusion::try_from(value) {
        Ok(pb::Conclusion::Conformant) => "conformant".into(),
        Ok(pb::Conclusion::NonConformant) => "non_conformant".into(),
        Ok(pb::Conclusion::Unspecified) => "unspecified".into(),
        Err(_) => value.into(),
    }
}

fn test_items_json(items: &[pb::TestItem]) -> Value {
    items
        .iter()
        .map(|t| {
            let mut item = json!({"name": t.name, "value": t.value, "unit": t.unit, "limit": t.limit});
            if let (true, Some(o)) = (t.result != 0, item.as_object_mut()) {
                o.insert("result".into(), conclusion_name(t.result));
            }
            item
        })
        .collect()
}

fn subject_json(subject: &pb::Subject) -> Value {
    match subject.kind.as_ref() {
        Some(Kind::Product(p)) => json!({"product": {"gtin": p.gtin, "lot": p.lot, "serial": p.serial}}),
        Some(Kind::Certificate(c)) => json!({"certificate": {"issuerUSCC": c.issuer_uscc, "number": c.number}}),
        Some(Kind::OrganisationUscc(u)) => json!({"organisationUSCC": u}),
        None => json!({}),
    }
}

fn refs_json(refs: &[pb::RecordRef]) -> Value {
    refs.iter()
        .map(|r| json!({"logID": hex::encode(&r.log_id), "seq": r.seq, "entryHash": hex::encode(&r.entry_hash)}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    /// Every kind of record EPCIS has an event for, plus variants that need
    /// the qtrace fields: exported and read back, it is the same event, and
    /// imported with another key it is submitted under its own signature.
    #[test]
    fn exports_read_back_to_the_same_records() {
        let maker = key(13);
        let importer_key = key(21);
        let parties = PartyMap::default();
        let mut events: Vec<(String, pb::Event)> = every_kind().into_iter().map(|(n, e)| (n.to_owned(), e)).collect();
        let variant = |name: &str, edit: &dyn Fn(&mut pb::Event)| {
            let mut event = every_kind().into_iter().find(|(n, _)| *n == name).map(|(_, e)| e).unwrap_or_default();
            edit(&mut event);
            (format!("{name} (variant)"), event)
        };
        events.push(variant("shipment", &|e| {
            e.biz_step = "my own step".into();
            e.disposition = String::new();
            e.nonce = 42;
            e.location = Some(pb::Location {
                read_point_gln: GLN.into(),
                business_location_gln: String::new(),
                region: "310000".into(),
            });
            e.documents = vec![
                pb::Document { kind: "desadv".into(), id: "DESADV-1".into(), sha256: vec![9; 32] },
                pb::Document {
                    kind: "po".into(),
                    id: "urn:epcglobal:cbv:bt:0614141000012:PO-1".into(),
                    sha256: vec![],
                },
                pb::Document { kind: "certificate".into(), id: "9144030071526726XG/CQC 1".into(), sha256: vec![] },
            ];
            e.attributes = vec![attribute("epcis:eventID", "urn:uuid:1"), attribute("备注", "")];
            if let Some(Body::Shipment(s)) = e.body.as_mut() {
                s.items = vec![
                    lot(GTIN, "L1", "", Some((120.0, "kg"))),
                    lot(GTIN, "L1", "7", Some((1.0, "EA"))),
                    lot(GTIN, "L2", "", None),
                    lot(GTIN, "L1", "7", None),
                ];
            }
        }));
        events.push(variant("sale", &|e| {
            e.subject = Some(pb::Subject {
                kind: Some(Kind::Product(pb::ProductKey { gtin: GTIN.into(), ..Default::default() })),
            });
            e.biz_step = "urn:epcglobal:cbv:bizstep:retail_selling".into();
            e.disposition = "https://ns.example.com/disp/sold-out".into();
        }));
        events.push(variant("recall", &|e| {
            if let Some(Body::Recall(r)) = e.body.as_mut() {
                r.lots.clear();
                r.serial_from = "0001".into();
                r.serial_to = "0999".into();
                r.dates = Some(pb::DateRange {
                    kind: pb::DateKind::Expiry as i32,
                    from: "2027-01-01".into(),
                    to: "2027-06-30".into(),
                });
            }
        }));
        let mut exported_kinds = Vec::new();
        for (seq, (name, event)) in events.iter().enumerate() {
            let record = checked(event, &maker, seq as u64);
            let Some(epcis) = export_event(&record) else {
                continue;
            };
            exported_kinds.push(record.event.kind);
            assert_eq!(epcis["eventID"], event_id_of(&record.hash), "{name}");
            assert_eq!(epcis["qtrace:kind"], record.event.kind.name(), "{name}");
            let back = map_event(&epcis, &parties).unwrap_or_else(|e| panic!("{name}: {e}\n{epcis:#}"));
            assert_eq!(&back, event, "{name}: read back differently from\n{epcis:#}");
            // Another key imports the original signed record.
            let importer = Importer { key: &importer_key, parties: &parties, signer_is_lab: false };
            let prepared = importer.prepare(&epcis).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(prepared.presigned, "{name}");
            assert_eq!(prepared.signed.event, record.entry.event, "{name}");
            assert_eq!(prepared.signed.signature, record.entry.signature.to_vec(), "{name}");
            // The signer imports it as the same signed record too.
            let own = Importer { key: &maker, parties: &parties, signer_is_lab: true };
            let again = own.prepare(&epcis).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((again.presigned, &again.signed.event), (false, &record.entry.event), "{name}");
            // An edit after export breaks the signature.
            let mut edited = epcis.clone();
            edited["eventTime"] = "2026-11-21T10:00:01+08:00".into();
            assert!(
                matches!(importer.prepare(&edited), Err(Refusal::Signature { .. })),
                "{name}: an edited export was accepted"
            );
        }
        use EventKind as K;
        for kind in
            [K::Production, K::Transformation, K::Shipment, K::Receipt, K::Sale, K::Inspection, K::SpotCheck, K::Recall]
        {
            assert!(exported_kinds.contains(&kind), "{kind} was not exported");
        }
        // Records that are not EPCIS events are not exported as events.
        for (name, event) in every_kind() {
            let kind = records::seal(&event, &maker).map(|s| s.event.kind).ok();
            if matches!(kind, Some(K::CertificateIssued | K::Correction | K::RecallProgress | K::Genesis)) {
                assert_eq!(export_event(&checked(&event, &maker, 0)), None, "{name}");
            }
        }
    }

    #[test]
    fn documents_are_epcis_documents() {
        let maker = key(13);
        let records: Vec<CheckedEntry> =
            every_kind().iter().enumerate().map(|(seq, (_, event))| checked(event, &maker, seq as u64)).collect();
        let exported = export_document(&records, "2026-11-21T02:00:00.000000Z", "(01)09520123456788");
        assert_eq!((exported.events, exported.other, records.len()), (8, 17, exported.events + exported.other));
        let document = &exported.document;
        assert_eq!(document["@context"], json!([EPCIS_CONTEXT, {"qtrace": QTRACE_NAMESPACE}]));
        assert_eq!(
            (document["type"].as_str(), document["schemaVersion"].as_str()),
            (Some("EPCISDocument"), Some("2.0"))
        );
        let events = events_of(document).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(events.len(), 8);
        let types: Vec<&str> = events.iter().map(|e| event_type(e)).collect();
        assert_eq!(types.iter().filter(|t| **t == "TransformationEvent").count(), 1);
        assert_eq!(document["qtrace:otherRecords"][0]["kind"], "genesis");
        // A query document and a single event are read too.
        let query = json!({"type": "EPCISQueryDocument", "epcisBody": {"queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": [events[0]]}}}});
        assert_eq!(events_of(&query).map(|e| e.len()), Ok(1));
        assert_eq!(events_of(events[0]).map(|e| e.len()), Ok(1));
        assert_eq!(
            events_of(&json!({"type": "EPCISMasterDataDocument"})).map(|e| e.len()),
            Err(DocumentError::UnknownType("EPCISMasterDataDocument".into()))
        );
        assert_eq!(
            events_of(&json!({"type": "EPCISDocument"})).map(|e| e.len()),
            Err(DocumentError::NoEventList("epcisBody.eventList"))
        );
        assert_eq!(events_of(&json!([1])).map(|e| e.len()), Err(DocumentError::NotAnObject));
    }
}
