//! EPCIS → qtrace: reading EPCIS documents and events, the party map, and
//! mapping each event to the qtrace record it means ([`map_event`]), checked
//! and signed by the [`Importer`]. See the module docs of [`super`] for the
//! mapping table.

use super::uri::decode_component;
use super::*;

// ---------------------------------------------------------------------------
// Party map
// ---------------------------------------------------------------------------

/// The USCC of each party GLN: EPCIS names parties by GS1 keys, qtrace by
/// unified social credit code, and only the importer knows which is which.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartyMap(BTreeMap<Gln, Uscc>);

impl PartyMap {
    /// Reads a TOML file of `"<party>" = "<USCC>"` lines, where a party is a
    /// 13-digit GLN, `urn:epc:id:pgln:…`, `urn:epc:id:sgln:…` or a Digital
    /// Link with AI 417 or 414.
    pub fn parse_toml(text: &str) -> Result<Self, String> {
        let entries: BTreeMap<String, String> =
            toml::from_str(text).map_err(|e| format!("not a party map (\"<GLN or PGLN>\" = \"<USCC>\" lines): {e}"))?;
        let mut map = PartyMap::default();
        for (party, uscc) in entries {
            let gln = parse_party(&party).map_err(|e| format!("key {party:?}: {e}"))?;
            let uscc = Uscc::parse(&uscc).map_err(|e| format!("{party:?} = {uscc:?}: {e}"))?;
            map.insert(gln, uscc);
        }
        Ok(map)
    }

    pub fn insert(&mut self, gln: Gln, uscc: Uscc) {
        self.0.insert(gln, uscc);
    }

    pub fn get(&self, gln: &Gln) -> Option<&Uscc> {
        self.0.get(gln)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---------------------------------------------------------------------------
// Reading documents
// ---------------------------------------------------------------------------

const EVENT_TYPES: [&str; 5] =
    ["ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent"];

/// The events of an `EPCISDocument` (`epcisBody.eventList`), an
/// `EPCISQueryDocument` (`epcisBody.queryResults.resultsBody.eventList`) or a
/// single event, in document order.
pub fn events_of(document: &Value) -> Result<Vec<&Value>, DocumentError> {
    let object = document.as_object().ok_or(DocumentError::NotAnObject)?;
    let doc_type = object.get("type").and_then(Value::as_str).unwrap_or_default();
    let list = match doc_type {
        "EPCISDocument" => document
            .pointer("/epcisBody/eventList")
            .and_then(Value::as_array)
            .ok_or(DocumentError::NoEventList("epcisBody.eventList"))?,
        "EPCISQueryDocument" => document
            .pointer("/epcisBody/queryResults/resultsBody/eventList")
            .and_then(Value::as_array)
            .ok_or(DocumentError::NoEventList("epcisBody.queryResults.resultsBody.eventList"))?,
        t if EVENT_TYPES.contains(&t) => return Ok(vec![document]),
        other => return Err(DocumentError::UnknownType(other.to_owned())),
    };
    Ok(list.iter().collect())
}

/// The event's `type`, as given (empty when missing).
pub fn event_type(event: &Value) -> &str {
    event.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// The event's `eventID`, if it has one.
pub fn event_id(event: &Value) -> Option<&str> {
    event.get("eventID").and_then(Value::as_str)
}

/// Typed access to one event object's fields, refusing fields of the wrong
/// JSON type with their name.
pub(super) struct Fields<'a> {
    object: &'a Map<String, Value>,
    /// Exported by qtrace (`qtrace:kind`): read back exactly, derive nothing.
    exported: bool,
}

impl<'a> Fields<'a> {
    pub(super) fn of(event: &'a Value) -> Result<Self, Refusal> {
        let object = event.as_object().ok_or(Refusal::NotAnObject)?;
        Ok(Fields { object, exported: object.contains_key("qtrace:kind") })
    }

    fn has(&self, key: &str) -> bool {
        self.object.contains_key(key)
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>, Refusal> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(field_error(key, "must be a string")),
        }
    }

    /// A string field, empty when absent.
    fn text(&self, key: &str) -> Result<String, Refusal> {
        Ok(self.str(key)?.unwrap_or_default().to_owned())
    }

    fn array(&self, key: &str) -> Result<&'a [Value], Refusal> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(field_error(key, "must be an array")),
        }
    }

    fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, Refusal> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(field_error(key, "must be an object")),
        }
    }
}

fn as_str<'v>(value: &'v Value, path: &str) -> Result<&'v str, Refusal> {
    value.as_str().ok_or_else(|| field_error(path, "must be a string"))
}

fn get_str<'v>(object: &'v Map<String, Value>, key: &str, path: &str) -> Result<&'v str, Refusal> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(field_error(format!("{path}.{key}"), "must be a string")),
    }
}

/// The qtrace record kind an EPCIS event maps to, or why it maps to none.
pub fn classify(event: &Value) -> Result<EventKind, Refusal> {
    let fields = Fields::of(event)?;
    if fields.has("errorDeclaration") {
        return Err(Refusal::ErrorDeclaration);
    }
    if let Some(kind) = fields.str("qtrace:kind")? {
        return match kind {
            "production" => Ok(EventKind::Production),
            "transformation" => Ok(EventKind::Transformation),
            "shipment" => Ok(EventKind::Shipment),
            "receipt" => Ok(EventKind::Receipt),
            "sale" => Ok(EventKind::Sale),
            "inspection" => Ok(EventKind::Inspection),
            "spot_check" => Ok(EventKind::SpotCheck),
            "recall" => Ok(EventKind::Recall),
            other => Err(Refusal::UnknownQtraceKind(other.to_owned())),
        };
    }
    match event_type(event) {
        "ObjectEvent" => {}
        "TransformationEvent" => return Ok(EventKind::Transformation),
        "AggregationEvent" => return Err(Refusal::Aggregation),
        "TransactionEvent" => return Err(Refusal::Transaction),
        "AssociationEvent" => return Err(Refusal::Association),
        other => return Err(Refusal::UnknownType(other.to_owned())),
    }
    let action = fields.text("action")?;
    let biz_step = cbv_short(&fields.text("bizStep")?, &BIZ_STEP);
    let disposition = cbv_short(&fields.text("disposition")?, &DISPOSITION);
    if action == "DELETE" {
        return Err(Refusal::Delete);
    }
    match biz_step.as_str() {
        "shipping" => return Ok(EventKind::Shipment),
        "receiving" => return Ok(EventKind::Receipt),
        "retail_selling" => return Ok(EventKind::Sale),
        "inspecting" | "sampling" => return Ok(EventKind::Inspection),
        "commissioning" | "creating_class_instance" => return Ok(EventKind::Production),
        "sensor_reporting" => return Err(Refusal::SensorReporting),
        "" if action == "ADD" => return Ok(EventKind::Production),
        _ => {}
    }
    match disposition.as_str() {
        "retail_sold" => Ok(EventKind::Sale),
        "recalled" => Ok(EventKind::Recall),
        _ => Err(Refusal::NoRecordKind { biz_step, disposition }),
    }
}

// ---------------------------------------------------------------------------
// EPCIS → qtrace
// ---------------------------------------------------------------------------

/// The event time: `eventTime` (RFC 3339) as milliseconds, with the offset
/// of `eventTimeZoneOffset` (or of `eventTime` itself when that is missing).
pub fn read_event_time(event: &Value) -> Result<pb::EventTime, Refusal> {
    let fields = Fields::of(event)?;
    let text = fields.str("eventTime")?.ok_or_else(|| field_error("eventTime", "is required"))?;
    let time = parse_rfc3339(text).map_err(|e| field_error("eventTime", e.to_string()))?;
    let offset_minutes = match fields.str("eventTimeZoneOffset")? {
        Some(offset) => parse_offset(offset).map_err(|e| field_error("eventTimeZoneOffset", e.to_string()))?,
        None => time.offset_minutes,
    };
    Ok(pb::EventTime { unix_millis: time.unix_millis, offset_minutes })
}

/// The lot ILMD gives the objects an event creates (`cbvmda:lotNumber`).
fn ilmd_lot(fields: &Fields<'_>) -> Result<Option<Lot>, Refusal> {
    let Some(ilmd) = fields.object("ilmd")? else { return Ok(None) };
    for key in ["cbvmda:lotNumber", "urn:epcglobal:cbv:mda:lotNumber"] {
        if let Some(value) = ilmd.get(key) {
            let text = as_str(value, &format!("ilmd.{key}"))?;
            return Lot::parse(text).map(Some).map_err(|e| field_error(format!("ilmd.{key}"), e.to_string()));
        }
    }
    Ok(None)
}

/// An ILMD date (`YYYY-MM-DD`, or the date part of a date-time), checked.
fn ilmd_date(fields: &Fields<'_>, name: &str) -> Result<String, Refusal> {
    let Some(ilmd) = fields.object("ilmd")? else { return Ok(String::new()) };
    for key in [format!("cbvmda:{name}"), format!("urn:epcglobal:cbv:mda:{name}")] {
        if let Some(value) = ilmd.get(&key) {
            let path = format!("ilmd.{key}");
            let text = as_str(value, &path)?;
            let day = text.get(..10).unwrap_or(text);
            return Date::parse_iso(day).map(|d| d.to_string()).map_err(|e| field_error(path, e.to_string()));
        }
    }
    Ok(String::new())
}

/// One item of an EPC list or quantity list as a qtrace lot quantity. A
/// quantity without `uom` is a count of instances (unit `EA`).
fn quantity_of(element: &Map<String, Value>, path: &str) -> Result<Option<pb::Quantity>, Refusal> {
    let Some(quantity) = element.get("quantity") else { return Ok(None) };
    let value = quantity.as_f64().ok_or_else(|| field_error(format!("{path}.quantity"), "must be a number"))?;
    let unit = match get_str(element, "uom", path)? {
        "" => "EA".to_owned(),
        uom => uom.to_owned(),
    };
    Ok(Some(pb::Quantity { value, unit }))
}

fn product_key(code: &ProductCode, lot: Option<&Lot>) -> pb::ProductKey {
    let mut key = records::product_key(code);
    if key.lot.is_empty()
        && let Some(lot) = lot
    {
        key.lot = lot.to_string();
    }
    key
}

/// The items of an EPC list and a quantity list, in that order; `lot` (from
/// ILMD) fills in items that name no lot.
pub(super) fn read_items(
    fields: &Fields<'_>,
    epc_key: &str,
    quantity_key: &str,
    lot: Option<&Lot>,
) -> Result<Vec<pb::LotQuantity>, Refusal> {
    let mut items = Vec::new();
    for (i, epc) in fields.array(epc_key)?.iter().enumerate() {
        let path = format!("{epc_key}[{i}]");
        let code = parse_product(as_str(epc, &path)?).map_err(|e| field_error(&path, e.to_string()))?;
        items.push(pb::LotQuantity { product: Some(product_key(&code, lot)), quantity: None });
    }
    for (i, element) in fields.array(quantity_key)?.iter().enumerate() {
        let path = format!("{quantity_key}[{i}]");
        let element = element.as_object().ok_or_else(|| field_error(&path, "must be an object"))?;
        let class = get_str(element, "epcClass", &path)?;
        let code = parse_product(class).map_err(|e| field_error(format!("{path}.epcClass"), e.to_string()))?;
        items.push(pb::LotQuantity { product: Some(product_key(&code, lot)), quantity: quantity_of(element, &path)? });
    }
    Ok(items)
}

fn lot_from_json(value: &Value, path: &str) -> Result<pb::LotQuantity, Refusal> {
    let object = value.as_object().ok_or_else(|| field_error(path, "must be an object"))?;
    let product = pb::ProductKey {
        gtin: get_str(object, "gtin", path)?.to_owned(),
        lot: get_str(object, "lot", path)?.to_owned(),
        serial: get_str(object, "serial", path)?.to_owned(),
    };
    let quantity = match object.get("quantity") {
        None | Some(Value::Null) => None,
        Some(Value::Object(q)) => {
            let qpath = format!("{path}.quantity");
            let value =
                q.get("value").and_then(Value::as_f64).ok_or_else(|| field_error(&qpath, "value must be a number"))?;
            Some(pb::Quantity { value, unit: get_str(q, "unit", &qpath)?.to_owned() })
        }
        Some(_) => return Err(field_error(format!("{path}.quantity"), "must be an object")),
    };
    Ok(pb::LotQuantity { product: Some(product), quantity })
}

/// The items of a list, from the `override_key` field when there is one
/// (an export that the standard fields could not carry exactly).
fn item_list(
    fields: &Fields<'_>,
    epc_key: &str,
    quantity_key: &str,
    override_key: &str,
    lot: Option<&Lot>,
) -> Result<Vec<pb::LotQuantity>, Refusal> {
    if fields.has(override_key) {
        return fields
            .array(override_key)?
            .iter()
            .enumerate()
            .map(|(i, v)| lot_from_json(v, &format!("{override_key}[{i}]")))
            .collect();
    }
    read_items(fields, epc_key, quantity_key, lot)
}

/// Where: read point and business location GLNs; places that are not plain
/// GLNs are kept as attributes (for events not exported by qtrace).
fn read_location(fields: &Fields<'_>, derived: &mut Vec<pb::Attribute>) -> Result<pb::Location, Refusal> {
    let mut location = pb::Location { region: fields.text("qtrace:region")?, ..Default::default() };
    for (key, slot) in
        [("readPoint", &mut location.read_point_gln), ("bizLocation", &mut location.business_location_gln)]
    {
        let Some(place) = fields.object(key)? else { continue };
        let id = get_str(place, "id", key)?;
        match parse_location(id) {
            Ok(Place { gln, extension }) => {
                *slot = gln.to_string();
                if extension.is_some() && !fields.exported {
                    derived.push(pb::Attribute { name: format!("epcis:{key}"), value: id.to_owned() });
                }
            }
            Err(UriError::Unsupported { .. }) if !fields.exported => {
                derived.push(pb::Attribute { name: format!("epcis:{key}"), value: id.to_owned() });
            }
            Err(e) => return Err(field_error(format!("{key}.id"), e.to_string())),
        }
    }
    Ok(location)
}

/// A business step or disposition: the `qtrace:` override when present,
/// else the standard field's short CBV name.
fn vocabulary_value(
    fields: &Fields<'_>,
    key: &str,
    override_key: &str,
    vocabulary: &Vocabulary,
) -> Result<String, Refusal> {
    if fields.has(override_key) {
        return fields.text(override_key);
    }
    Ok(cbv_short(&fields.text(key)?, vocabulary))
}

/// `qtrace:certificate/<percent-encoded id>`, the compact IRI a certificate
/// document without a URI of its own is exported as.
pub(super) const CERTIFICATE_IRI: &str = "qtrace:certificate/";

fn read_documents(fields: &Fields<'_>) -> Result<Vec<pb::Document>, Refusal> {
    let mut documents = Vec::new();
    for (i, bt) in fields.array("bizTransactionList")?.iter().enumerate() {
        let path = format!("bizTransactionList[{i}]");
        let bt = bt.as_object().ok_or_else(|| field_error(&path, "must be an object"))?;
        let kind = match cbv_short(get_str(bt, "type", &path)?, &BTT) {
            k if k.is_empty() => "bizTransaction".to_owned(),
            k => k,
        };
        let id = get_str(bt, "bizTransaction", &path)?.to_owned();
        documents.push(pb::Document { kind, id, sha256: Vec::new() });
    }
    let certificates: Vec<&Value> = match fields.object.get("certificationInfo") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.iter().collect(),
        Some(single) => vec![single],
    };
    for cert in certificates {
        let uri = as_str(cert, "certificationInfo")?;
        let id = match uri.strip_prefix(CERTIFICATE_IRI) {
            Some(encoded) => {
                decode_component(uri, encoded).map_err(|e| field_error("certificationInfo", e.to_string()))?
            }
            None => uri.to_owned(),
        };
        documents.push(pb::Document { kind: "certificate".into(), id, sha256: Vec::new() });
    }
    Ok(documents)
}

fn documents_from_json(fields: &Fields<'_>) -> Result<Vec<pb::Document>, Refusal> {
    let mut documents = Vec::new();
    for (i, d) in fields.array("qtrace:documents")?.iter().enumerate() {
        let path = format!("qtrace:documents[{i}]");
        let d = d.as_object().ok_or_else(|| field_error(&path, "must be an object"))?;
        let sha256 = hex::decode(get_str(d, "sha256", &path)?)
            .map_err(|e| field_error(format!("{path}.sha256"), format!("not hex: {e}")))?;
        documents.push(pb::Document {
            kind: get_str(d, "kind", &path)?.to_owned(),
            id: get_str(d, "id", &path)?.to_owned(),
            sha256,
        });
    }
    Ok(documents)
}

fn attributes_from_json(fields: &Fields<'_>) -> Result<Vec<pb::Attribute>, Refusal> {
    let mut attributes = Vec::new();
    for (i, a) in fields.array("qtrace:attributes")?.iter().enumerate() {
        let path = format!("qtrace:attributes[{i}]");
        let a = a.as_object().ok_or_else(|| field_error(&path, "must be an object"))?;
        attributes.push(pb::Attribute {
            name: get_str(a, "name", &path)?.to_owned(),
            value: get_str(a, "value", &path)?.to_owned(),
        });
    }
    Ok(attributes)
}

/// One sensor reading in words: what was measured (type, component, what
/// of, when), the value and the unit.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    name: String,
    value: String,
    unit: String,
}

fn number_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every `sensorReport` of every `sensorElementList` element, in order.
fn sensor_readings(fields: &Fields<'_>) -> Result<Vec<Reading>, Refusal> {
    let mut readings = Vec::new();
    for (i, element) in fields.array("sensorElementList")?.iter().enumerate() {
        let path = format!("sensorElementList[{i}]");
        let element = element.as_object().ok_or_else(|| field_error(&path, "must be an object"))?;
        let metadata = element.get("sensorMetadata").and_then(Value::as_object);
        let meta_str = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or_default();
        let reports = match element.get("sensorReport") {
            Some(Value::Array(reports)) => reports.as_slice(),
            _ => return Err(field_error(format!("{path}.sensorReport"), "must be an array")),
        };
        for (j, report) in reports.iter().enumerate() {
            let rpath = format!("{path}.sensorReport[{j}]");
            let report = report.as_object().ok_or_else(|| field_error(&rpath, "must be an object"))?;
            let text = |key: &str| report.get(key).and_then(Value::as_str).unwrap_or_default();
            let mut name = match text("type") {
                "" => "reading".to_owned(),
                t => t.to_owned(),
            };
            for key in ["component", "chemicalSubstance", "microorganism"] {
                if !text(key).is_empty() {
                    name.push(' ');
                    name.push_str(text(key));
                }
            }
            let time = match (text("time"), meta_str("time"), meta_str("startTime"), meta_str("endTime")) {
                (t, _, _, _) if !t.is_empty() => t.to_owned(),
                (_, t, _, _) if !t.is_empty() => t.to_owned(),
                (_, _, start, end) if !start.is_empty() || !end.is_empty() => format!("{start}/{end}"),
                _ => String::new(),
            };
            if !time.is_empty() {
                name.push_str(" @");
                name.push_str(&time);
            }
            let mut parts = Vec::new();
            if let Some(exception) = report.get("exception").and_then(Value::as_str) {
                parts.push(format!("{exception}:"));
            }
            for key in ["value", "stringValue", "booleanValue", "hexBinaryValue", "uriValue"] {
                if let Some(v) = report.get(key) {
                    parts.push(number_text(v));
                }
            }
            for (key, label) in [
                ("minValue", "min"),
                ("maxValue", "max"),
                ("meanValue", "mean"),
                ("sDev", "sDev"),
                ("percRank", "percRank"),
                ("percValue", "percValue"),
            ] {
                if let Some(v) = report.get(key) {
                    parts.push(format!("{label} {}", number_text(v)));
                }
            }
            readings.push(Reading { name, value: parts.join(" "), unit: text("uom").to_owned() });
        }
    }
    Ok(readings)
}

fn conclusion_value(value: Option<&Value>, path: &str) -> Result<i32, Refusal> {
    match value {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => match s.as_str() {
            "conformant" => Ok(pb::Conclusion::Conformant as i32),
            "non_conformant" => Ok(pb::Conclusion::NonConformant as i32),
            "unspecified" | "" => Ok(0),
            other => Err(field_error(path, format!("{other:?} is not conformant or non_conformant"))),
        },
        Some(v) => v
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| field_error(path, "must be conformant or non_conformant")),
    }
}

fn test_items_from_json(fields: &Fields<'_>) -> Result<Vec<pb::TestItem>, Refusal> {
    let mut items = Vec::new();
    for (i, t) in fields.array("qtrace:testItems")?.iter().enumerate() {
        let path = format!("qtrace:testItems[{i}]");
        let t = t.as_object().ok_or_else(|| field_error(&path, "must be an object"))?;
        items.push(pb::TestItem {
            name: get_str(t, "name", &path)?.to_owned(),
            value: get_str(t, "value", &path)?.to_owned(),
            unit: get_str(t, "unit", &path)?.to_owned(),
            limit: get_str(t, "limit", &path)?.to_owned(),
            result: conclusion_value(t.get("result"), &format!("{path}.result"))?,
        });
    }
    Ok(items)
}

fn strings(fields: &Fields<'_>, key: &str) -> Result<Vec<String>, Refusal> {
    fields.array(key)?.iter().enumerate().map(|(i, v)| as_str(v, &format!("{key}[{i}]")).map(str::to_owned)).collect()
}

/// One side of a movement. The location GLN is the `location` entry; the
/// USCC is `qtrace:<side>USCC`, else the party map's answer for the GLN of
/// the `owning_party`, `possessing_party` or `location` entry, in that order.
fn read_party(
    fields: &Fields<'_>,
    side: &'static str,
    kind: &'static str,
    parties: &PartyMap,
) -> Result<pb::Party, Refusal> {
    let list_key = format!("{side}List");
    let mut by_type: BTreeMap<String, (String, Gln)> = BTreeMap::new();
    let mut location_gln = String::new();
    for (i, entry) in fields.array(&list_key)?.iter().enumerate() {
        let path = format!("{list_key}[{i}]");
        let entry = entry.as_object().ok_or_else(|| field_error(&path, "must be an object"))?;
        let entry_type = cbv_short(get_str(entry, "type", &path)?, &SDT);
        let id = get_str(entry, side, &path)?;
        let gln = match entry_type.as_str() {
            "location" => parse_location(id).map(|p| p.gln),
            "owning_party" | "possessing_party" => parse_party(id),
            // Other source/destination types say nothing qtrace records.
            _ => continue,
        }
        .map_err(|e| field_error(format!("{path}.{side}"), e.to_string()))?;
        if entry_type == "location" && location_gln.is_empty() {
            location_gln = gln.to_string();
        }
        by_type.entry(entry_type).or_insert_with(|| (id.to_owned(), gln));
    }
    let uscc_key = format!("qtrace:{side}USCC");
    if let Some(uscc) = fields.str(&uscc_key)? {
        return Ok(pb::Party { uscc: uscc.to_owned(), location_gln });
    }
    let candidates: Vec<&(String, Gln)> =
        ["owning_party", "possessing_party", "location"].iter().filter_map(|t| by_type.get(*t)).collect();
    let Some((first_id, first_gln)) = candidates.first() else {
        return Err(Refusal::NoParty { side, kind });
    };
    match candidates.iter().find_map(|(_, gln)| parties.get(gln)) {
        Some(uscc) => Ok(pb::Party { uscc: uscc.to_string(), location_gln }),
        None => Err(Refusal::NoUscc { side, party: format!("{first_id} (GLN {first_gln})") }),
    }
}

fn subject_from_json(fields: &Fields<'_>) -> Result<Option<pb::Subject>, Refusal> {
    const PATH: &str = "qtrace:subject";
    let Some(object) = fields.object(PATH)? else { return Ok(None) };
    let kind = if let Some(p) = object.get("product").and_then(Value::as_object) {
        let path = format!("{PATH}.product");
        Kind::Product(pb::ProductKey {
            gtin: get_str(p, "gtin", &path)?.to_owned(),
            lot: get_str(p, "lot", &path)?.to_owned(),
            serial: get_str(p, "serial", &path)?.to_owned(),
        })
    } else if let Some(c) = object.get("certificate").and_then(Value::as_object) {
        let path = format!("{PATH}.certificate");
        Kind::Certificate(pb::CertificateKey {
            issuer_uscc: get_str(c, "issuerUSCC", &path)?.to_owned(),
            number: get_str(c, "number", &path)?.to_owned(),
        })
    } else if let Some(u) = object.get("organisationUSCC") {
        Kind::OrganisationUscc(as_str(u, &format!("{PATH}.organisationUSCC"))?.to_owned())
    } else {
        return Ok(Some(pb::Subject { kind: None }));
    };
    Ok(Some(pb::Subject { kind: Some(kind) }))
}

/// The subject a record of this body has unless it says otherwise: the
/// (first) product it makes, moves, sells or tests; a recall's GTIN.
pub fn derived_subject(body: &Body) -> Option<pb::Subject> {
    let first = |items: &[pb::LotQuantity]| items.first().and_then(|i| i.product.clone());
    let product = match body {
        Body::Production(p) => p.output.as_ref().and_then(|o| o.product.clone()),
        Body::Transformation(t) => first(&t.outputs),
        Body::Shipment(s) => first(&s.items),
        Body::Receipt(r) => first(&r.items),
        Body::Sale(s) => first(&s.items),
        Body::Inspection(i) => i.product.clone(),
        Body::SpotCheck(s) => s.product.clone(),
        Body::Recall(r) => Some(pb::ProductKey { gtin: r.gtin.clone(), ..Default::default() }),
        _ => None,
    }?;
    Some(pb::Subject { kind: Some(Kind::Product(product)) })
}

fn refs_from_json(fields: &Fields<'_>) -> Result<Vec<pb::RecordRef>, Refusal> {
    let mut refs = Vec::new();
    for (i, r) in fields.array("qtrace:parents")?.iter().enumerate() {
        let path = format!("qtrace:parents[{i}]");
        let r = r.as_object().ok_or_else(|| field_error(&path, "must be an object"))?;
        let bytes = |key: &str| {
            hex::decode(get_str(r, key, &path)?)
                .map_err(|e| field_error(format!("{path}.{key}"), format!("not hex: {e}")))
        };
        let seq = r
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| field_error(format!("{path}.seq"), "must be a number"))?;
        refs.push(pb::RecordRef { log_id: bytes("logID")?, seq, entry_hash: bytes("entryHash")? });
    }
    Ok(refs)
}

/// The one product of a list that must name exactly one (an inspection's
/// sample).
fn single_product(items: Vec<pb::LotQuantity>, what: &str) -> Result<pb::ProductKey, Refusal> {
    let mut products: Vec<pb::ProductKey> = Vec::new();
    for product in items.into_iter().filter_map(|i| i.product) {
        if !products.contains(&product) {
            products.push(product);
        }
    }
    match <[pb::ProductKey; 1]>::try_from(products) {
        Ok([product]) => Ok(product),
        Err(products) if products.is_empty() => Err(field_error(
            "epcList/quantityList",
            format!("{what} is about one product; this event names none (readings of the read point alone)"),
        )),
        Err(products) => Err(field_error(
            "epcList/quantityList",
            format!("{what} is about one product; this event names {}", products.len()),
        )),
    }
}

/// Maps one EPCIS event to the qtrace event it means, unsigned.
pub fn map_event(event: &Value, parties: &PartyMap) -> Result<pb::Event, Refusal> {
    let kind = classify(event)?;
    let fields = Fields::of(event)?;
    let exported = fields.exported;
    let mut derived_attributes = Vec::new();
    if !exported && let Some(id) = fields.str("eventID")? {
        derived_attributes.push(pb::Attribute { name: "epcis:eventID".into(), value: id.to_owned() });
    }
    let event_time = read_event_time(event)?;
    let location = read_location(&fields, &mut derived_attributes)?;
    let biz_step = vocabulary_value(&fields, "bizStep", "qtrace:bizStep", &BIZ_STEP)?;
    let disposition = vocabulary_value(&fields, "disposition", "qtrace:disposition", &DISPOSITION)?;
    let ilmd_lot = ilmd_lot(&fields)?;
    let production_date = ilmd_date(&fields, "productionDate")?;
    let expiry_date = ilmd_date(&fields, "itemExpirationDate")?;
    let mut readings_to_attributes = !exported;
    let factory_or_store = |key: &str| -> Result<String, Refusal> {
        if exported { fields.text(key) } else { Ok(location.business_location_gln.clone()) }
    };
    let body = match kind {
        EventKind::Production => {
            let items = item_list(&fields, "epcList", "quantityList", "qtrace:items", ilmd_lot.as_ref())?;
            let n_items = items.len();
            let Ok([output]) = <[pb::LotQuantity; 1]>::try_from(items) else {
                return Err(field_error(
                    "epcList/quantityList",
                    format!(
                        "a qtrace production record creates one lot; this event names {n_items} items (give the lot \
                         once, as a quantityList entry with its quantity, or send one event per lot)"
                    ),
                ));
            };
            Body::Production(pb::Production {
                output: Some(output),
                production_date,
                expiry_date,
                factory_gln: factory_or_store("qtrace:factoryGLN")?,
            })
        }
        EventKind::Transformation => Body::Transformation(pb::Transformation {
            inputs: item_list(&fields, "inputEPCList", "inputQuantityList", "qtrace:inputs", None)?,
            outputs: item_list(&fields, "outputEPCList", "outputQuantityList", "qtrace:outputs", ilmd_lot.as_ref())?,
            production_date,
            expiry_date,
            factory_gln: factory_or_store("qtrace:factoryGLN")?,
        }),
        EventKind::Shipment | EventKind::Receipt => {
            let name = if kind == EventKind::Shipment { "shipment" } else { "receipt" };
            let items = item_list(&fields, "epcList", "quantityList", "qtrace:items", None)?;
            let source = Some(read_party(&fields, "source", name, parties)?);
            let destination = Some(read_party(&fields, "destination", name, parties)?);
            let shipment_number = fields.text("qtrace:shipmentNumber")?;
            if kind == EventKind::Shipment {
                Body::Shipment(pb::Shipment { items, source, destination, shipment_number })
            } else {
                Body::Receipt(pb::Receipt { items, source, destination, shipment_number })
            }
        }
        EventKind::Sale => Body::Sale(pb::Sale {
            items: item_list(&fields, "epcList", "quantityList", "qtrace:items", None)?,
            store_gln: factory_or_store("qtrace:storeGLN")?,
        }),
        EventKind::Inspection => {
            readings_to_attributes = false;
            let product =
                single_product(item_list(&fields, "epcList", "quantityList", "qtrace:items", None)?, "an inspection")?;
            let inspection = if exported {
                pb::Inspection {
                    report_number: fields.text("qtrace:reportNumber")?,
                    product: Some(product),
                    standards: strings(&fields, "qtrace:standards")?,
                    items: test_items_from_json(&fields)?,
                    conclusion: conclusion_value(fields.object.get("qtrace:conclusion"), "qtrace:conclusion")?,
                    destructive: fields.object.get("qtrace:destructive").and_then(Value::as_bool).unwrap_or(false),
                    client_uscc: fields.text("qtrace:clientUSCC")?,
                }
            } else {
                let report_number = match fields.str("qtrace:reportNumber")? {
                    Some(number) => number.to_owned(),
                    None => read_documents(&fields)?
                        .into_iter()
                        .find(|d| d.kind == "testres")
                        .map(|d| d.id)
                        .unwrap_or_default(),
                };
                let items = sensor_readings(&fields)?
                    .into_iter()
                    .map(|r| pb::TestItem { name: r.name, value: r.value, unit: r.unit, ..Default::default() })
                    .collect();
                let conclusion = match disposition.as_str() {
                    "conformant" => pb::Conclusion::Conformant as i32,
                    "non_conformant" => pb::Conclusion::NonConformant as i32,
                    _ => 0,
                };
                pb::Inspection {
                    report_number,
                    product: Some(product),
                    standards: strings(&fields, "qtrace:standards")?,
                    items,
                    conclusion,
                    destructive: biz_step == "sampling",
                    client_uscc: fields.text("qtrace:clientUSCC")?,
                }
            };
            Body::Inspection(inspection)
        }
        EventKind::SpotCheck => {
            let product =
                single_product(item_list(&fields, "epcList", "quantityList", "qtrace:items", None)?, "a spot check")?;
            let spot = fields.object("qtrace:spotCheck")?.cloned().unwrap_or_default();
            let path = "qtrace:spotCheck";
            let standards = match spot.get("standards") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(list)) => list
                    .iter()
                    .enumerate()
                    .map(|(i, v)| as_str(v, &format!("{path}.standards[{i}]")).map(str::to_owned))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(field_error(format!("{path}.standards"), "must be an array")),
            };
            Body::SpotCheck(pb::SpotCheck {
                plan_number: get_str(&spot, "planNumber", path)?.to_owned(),
                product: Some(product),
                inspected_uscc: get_str(&spot, "inspectedUSCC", path)?.to_owned(),
                lab_uscc: get_str(&spot, "labUSCC", path)?.to_owned(),
                standards,
                items: test_items_from_json(&fields)?,
                result: conclusion_value(spot.get("result"), &format!("{path}.result"))?,
                published_on: get_str(&spot, "publishedOn", path)?.to_owned(),
            })
        }
        EventKind::Recall => Body::Recall(read_recall(&fields)?),
        // `classify` returns only the kinds above.
        other => return Err(Refusal::UnknownQtraceKind(other.name().to_owned())),
    };
    let documents = if exported { documents_from_json(&fields)? } else { read_documents(&fields)? };
    let mut attributes = if exported { attributes_from_json(&fields)? } else { derived_attributes };
    if readings_to_attributes {
        for reading in sensor_readings(&fields)? {
            let value =
                if reading.unit.is_empty() { reading.value } else { format!("{} {}", reading.value, reading.unit) };
            attributes.push(pb::Attribute { name: format!("epcis:sensor {}", reading.name), value });
        }
    }
    let subject = match subject_from_json(&fields)? {
        Some(subject) => Some(subject),
        None => derived_subject(&body),
    };
    let nonce = match fields.object.get("qtrace:nonce") {
        None | Some(Value::Null) => 0,
        Some(v) => number_text(v).parse::<u64>().map_err(|_| field_error("qtrace:nonce", "must be a whole number"))?,
    };
    let location = (location != pb::Location::default()).then_some(location);
    Ok(pb::Event {
        event_time: Some(event_time),
        subject,
        parents: refs_from_json(&fields)?,
        location,
        biz_step,
        disposition,
        documents,
        attributes,
        nonce,
        body: Some(body),
    })
}

fn read_recall(fields: &Fields<'_>) -> Result<pb::Recall, Refusal> {
    let items = item_list(fields, "epcList", "quantityList", "qtrace:items", None)?;
    let mut gtin = String::new();
    let mut lots = Vec::new();
    for product in items.iter().filter_map(|i| i.product.as_ref()) {
        if gtin.is_empty() {
            gtin = product.gtin.clone();
        } else if gtin != product.gtin {
            return Err(field_error(
                "epcList/quantityList",
                format!("a qtrace recall names one GTIN; this event names {gtin} and {}", product.gtin),
            ));
        }
        if !product.lot.is_empty() {
            lots.push(product.lot.clone());
        }
    }
    let recall = fields.object("qtrace:recall")?.cloned().unwrap_or_default();
    let path = "qtrace:recall";
    let text = |key: &str| get_str(&recall, key, path).map(str::to_owned);
    let dates = match recall.get("dates") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => {
            let dpath = format!("{path}.dates");
            let kind = match get_str(d, "kind", &dpath)? {
                "production" => pb::DateKind::Production as i32,
                "expiry" => pb::DateKind::Expiry as i32,
                _ => 0,
            };
            Some(pb::DateRange {
                kind,
                from: get_str(d, "from", &dpath)?.to_owned(),
                to: get_str(d, "to", &dpath)?.to_owned(),
            })
        }
        Some(_) => return Err(field_error(format!("{path}.dates"), "must be an object")),
    };
    let regions = match recall.get("regions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| as_str(v, &format!("{path}.regions[{i}]")).map(str::to_owned))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(field_error(format!("{path}.regions"), "must be an array")),
    };
    let risk_class = match recall.get("riskClass") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| field_error(format!("{path}.riskClass"), "must be 1, 2 or 3"))?,
    };
    let initiator = match get_str(&recall, "initiator", path)? {
        "voluntary" => pb::RecallInitiator::Voluntary as i32,
        "ordered" => pb::RecallInitiator::Ordered as i32,
        _ => 0,
    };
    Ok(pb::Recall {
        recall_number: text("recallNumber")?,
        gtin,
        lots,
        serial_from: text("serialFrom")?,
        serial_to: text("serialTo")?,
        dates,
        regions,
        risk_class,
        reason: text("reason")?,
        initiator,
        manufacturer_uscc: text("manufacturerUSCC")?,
        remedy: text("remedy")?,
    })
}

/// A mapped EPCIS event, signed and ready to submit.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub signed: pb::SignedEvent,
    pub kind: EventKind,
    /// True when the event is submitted under the qtrace signature an
    /// export carried (another key signed it), not signed here.
    pub presigned: bool,
}

/// Turns EPCIS events into signed qtrace events for one importing key.
pub struct Importer<'a> {
    pub key: &'a SecretKey,
    pub parties: &'a PartyMap,
    /// Whether the importing key acts for a testing lab (from the log's
    /// registry); inspections are refused otherwise.
    pub signer_is_lab: bool,
}

/// The other key an exported event names as its signer, if any.
fn foreign_signer(event: &Value, own: &PublicKey) -> Result<Option<(PublicKey, Vec<u8>)>, Refusal> {
    let fields = Fields::of(event)?;
    let Some(signer) = fields.str("qtrace:signer")? else { return Ok(None) };
    let signer = PublicKey::from_hex(signer).map_err(|e| field_error("qtrace:signer", e.to_string()))?;
    if signer == *own {
        return Ok(None);
    }
    let signature = hex::decode(fields.text("qtrace:signature")?)
        .map_err(|e| field_error("qtrace:signature", format!("not hex: {e}")))?;
    Ok(Some((signer, signature)))
}

/// Whether an event will be signed by the importing key and maps to an
/// inspection: the case that needs to know whether the key is a lab's.
pub fn needs_lab_check(event: &Value, own: &PublicKey) -> bool {
    matches!(classify(event), Ok(EventKind::Inspection)) && matches!(foreign_signer(event, own), Ok(None))
}

impl Importer<'_> {
    /// Maps, checks and signs one EPCIS event.
    pub fn prepare(&self, event: &Value) -> Result<Prepared, Refusal> {
        let kind = classify(event)?;
        let own = self.key.public_key();
        let foreign = foreign_signer(event, &own)?;
        if kind == EventKind::Inspection && foreign.is_none() && !self.signer_is_lab {
            return Err(Refusal::NeedsLab);
        }
        let mapped = map_event(event, self.parties)?;
        match foreign {
            None => {
                let sealed = records::seal(&mapped, self.key).map_err(Refusal::Ledger)?;
                Ok(Prepared { signed: sealed.signed, kind, presigned: false })
            }
            Some((signer, signature)) => {
                let bytes = mapped.encode_to_vec();
                decode_event(&bytes).map_err(Refusal::Ledger)?;
                signer.verify_event(&bytes, &signature).map_err(|_| Refusal::Signature { signer: signer.to_hex() })?;
                let signed = pb::SignedEvent { event: bytes, signer: signer.to_bytes().to_vec(), signature };
                Ok(Prepared { signed, kind, presigned: true })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn party_maps() {
        let map = party_map();
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(&gln("0614141000012")), Some(&uscc(SHOP)));
        assert_eq!(map.get(&gln("4012345000016")), Some(&uscc(MAKER)));
        let bad = [
            ("\"4012345000016\" = 7", "not a party map"),
            ("\"4012345000017\" = \"914403007152672A21\"", "GLN check digit is 7, expected 6"),
            ("\"urn:epc:id:sscc:0614141.1234567890\" = \"914403007152672A21\"", "is not a party"),
            ("\"4012345000016\" = \"914403007152672A22\"", "USCC"),
            ("not toml", "not a party map"),
        ];
        for (text, fragment) in bad {
            match PartyMap::parse_toml(text) {
                Err(e) => assert!(e.contains(fragment), "{text}: {e}"),
                Ok(map) => panic!("{text}: accepted {map:?}"),
            }
        }
    }

    /// An event's time fields and `Ok((unix millis, offset minutes))` or `Err(fragment)`.
    type TimeCase = (Value, Result<(i64, i32), &'static str>);

    #[test]
    fn event_times_and_zone_offsets() {
        let cases: &[TimeCase] = &[
            (
                json!({"eventTime": "2005-04-03T20:33:31.116000-06:00", "eventTimeZoneOffset": "-06:00"}),
                Ok((1_112_582_011_116, -360)),
            ),
            (
                json!({"eventTime": "2013-06-08T14:58:56.591Z", "eventTimeZoneOffset": "+02:00"}),
                Ok((1_370_703_536_591, 120)),
            ),
            (
                json!({"eventTime": "2026-11-21T10:00:00+08:00", "eventTimeZoneOffset": "+08:00"}),
                Ok((1_795_226_400_000, 480)),
            ),
            (
                json!({"eventTime": "2026-11-21T02:00:00Z", "eventTimeZoneOffset": "+14:00"}),
                Ok((1_795_226_400_000, 840)),
            ),
            (json!({"eventTime": "2026-11-21T02:00:00Z", "eventTimeZoneOffset": "-00:00"}), Ok((1_795_226_400_000, 0))),
            // No offset field: the event time's own offset.
            (json!({"eventTime": "2019-04-02T15:00:00.000+01:00"}), Ok((1_554_213_600_000, 60))),
            (
                json!({"eventTime": "2026-11-21T02:00:00Z", "eventTimeZoneOffset": "+14:30"}),
                Err("offsets range from -14:00 to +14:00"),
            ),
            (
                json!({"eventTime": "2026-11-21T02:00:00Z", "eventTimeZoneOffset": "08:00"}),
                Err("must start with '+' or '-'"),
            ),
            (json!({"eventTime": "2026-11-21 02:00:00Z"}), Err("eventTime")),
            (json!({"eventTimeZoneOffset": "+08:00"}), Err("eventTime: is required")),
            (json!({"eventTime": 1_795_226_400_000i64}), Err("eventTime: must be a string")),
        ];
        for (event, want) in cases {
            let got = read_event_time(event).map(|t| (t.unix_millis, t.offset_minutes));
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{event}"),
                (Err(fragment), Err(e)) => assert!(e.to_string().contains(fragment), "{event}: {e}"),
                _ => panic!("{event}: expected {want:?}, got {got:?}"),
            }
        }
        for (minutes, text) in [(480, "+08:00"), (-360, "-06:00"), (0, "+00:00"), (-30, "-00:30"), (840, "+14:00")] {
            assert_eq!(format_offset(minutes), text);
            assert_eq!(parse_offset(text).ok(), Some(minutes), "{text}");
        }
    }

    #[test]
    fn event_types_and_steps_choose_the_record_kind() {
        let object = |action: &str, step: &str, disposition: &str| json!({"type": "ObjectEvent", "action": action, "bizStep": step, "disposition": disposition});
        use EventKind as K;
        let cases: Vec<(Value, Result<EventKind, &str>)> = vec![
            (object("ADD", "commissioning", "active"), Ok(K::Production)),
            (object("ADD", "urn:epcglobal:cbv:bizstep:commissioning", ""), Ok(K::Production)),
            (object("ADD", "https://ref.gs1.org/cbv/BizStep-creating_class_instance", ""), Ok(K::Production)),
            (object("ADD", "", ""), Ok(K::Production)),
            (object("OBSERVE", "shipping", "in_transit"), Ok(K::Shipment)),
            (object("OBSERVE", "receiving", "in_progress"), Ok(K::Receipt)),
            (object("OBSERVE", "retail_selling", ""), Ok(K::Sale)),
            (object("OBSERVE", "", "urn:epcglobal:cbv:disp:retail_sold"), Ok(K::Sale)),
            (object("OBSERVE", "inspecting", ""), Ok(K::Inspection)),
            (object("OBSERVE", "sampling", "non_conformant"), Ok(K::Inspection)),
            (object("OBSERVE", "holding", "recalled"), Ok(K::Recall)),
            (object("OBSERVE", "shipping", "recalled"), Ok(K::Shipment)),
            (json!({"type": "TransformationEvent"}), Ok(K::Transformation)),
            (object("OBSERVE", "sensor_reporting", ""), Err("monitoring readings")),
            (object("DELETE", "decommissioning", ""), Err("action DELETE")),
            (
                object("OBSERVE", "storing", "sellable_accessible"),
                Err("bizStep \"storing\" with disposition \"sellable_accessible\" has no qtrace record kind"),
            ),
            (
                json!({"type": "AggregationEvent", "action": "ADD", "bizStep": "packing"}),
                Err("aggregation has no qtrace record kind (packing is not a quality event)"),
            ),
            (
                json!({"type": "TransactionEvent", "bizStep": "inspecting"}),
                Err("a TransactionEvent has no qtrace record kind"),
            ),
            (json!({"type": "AssociationEvent"}), Err("association")),
            (json!({"type": "ex:OtherEvent"}), Err("\"ex:OtherEvent\" is not an EPCIS 2.0 event type")),
            (
                json!({"type": "TransformationEvent", "errorDeclaration": {"declarationTime": "2020-09-29T13:00:00.000Z"}}),
                Err("errorDeclaration"),
            ),
            (json!({"type": "ObjectEvent", "qtrace:kind": "spot_check"}), Ok(K::SpotCheck)),
            (
                json!({"type": "ObjectEvent", "qtrace:kind": "certificate_issued"}),
                Err("qtrace:kind \"certificate_issued\""),
            ),
            (json!(["ObjectEvent"]), Err("must be a JSON object")),
        ];
        for (event, want) in cases {
            let got = classify(&event);
            match (want, &got) {
                (Ok(kind), Ok(g)) => assert_eq!(g, &kind, "{event}"),
                (Err(fragment), Err(e)) => assert!(e.to_string().contains(fragment), "{event}: {e}"),
                _ => panic!("{event}: expected {want:?}, got {got:?}"),
            }
        }
    }

    fn base(kind: &str) -> Value {
        json!({
            "type": kind,
            "eventTime": "2026-11-21T10:00:00+08:00",
            "eventTimeZoneOffset": "+08:00",
            "eventID": "ni:///sha-256;00e1e6eba3a7cc6125be4793a631f0af50f8322e0ab5f2c0bab994a11cec1d79?ver=CBV2.0",
        })
    }

    fn with(mut event: Value, fields: Value) -> Value {
        if let (Some(target), Value::Object(source)) = (event.as_object_mut(), fields) {
            target.extend(source);
        }
        event
    }

    fn map(event: &Value) -> pb::Event {
        map_event(event, &party_map()).unwrap_or_else(|e| panic!("{event}: {e}"))
    }

    fn event_id_attribute() -> pb::Attribute {
        attribute(
            "epcis:eventID",
            "ni:///sha-256;00e1e6eba3a7cc6125be4793a631f0af50f8322e0ab5f2c0bab994a11cec1d79?ver=CBV2.0",
        )
    }

    #[test]
    fn commissioning_becomes_production() {
        let event = with(
            base("ObjectEvent"),
            json!({
                "action": "ADD",
                "bizStep": "urn:epcglobal:cbv:bizstep:commissioning",
                "disposition": "active",
                "quantityList": [{"epcClass": "urn:epc:class:lgtin:4012345.012345.998877", "quantity": 200, "uom": "KGM"}],
                "readPoint": {"id": "urn:epc:id:sgln:4012345.00001.0"},
                "bizLocation": {"id": "https://id.gs1.org/414/4012345002256"},
                "ilmd": {"cbvmda:productionDate": "2026-11-20", "cbvmda:itemExpirationDate": "2028-11-19T00:00:00Z"},
                "bizTransactionList": [{"type": "urn:epcglobal:cbv:btt:prodorder", "bizTransaction": "urn:epcglobal:cbv:bt:4012345000016:PO-7"}],
                "certificationInfo": "https://cert.example/cqc/1",
                "example:myField": "ignored",
            }),
        );
        let mapped = map(&event);
        let output = lot("04012345123456", "998877", "", Some((200.0, "KGM")));
        assert_eq!(
            mapped.body,
            Some(Body::Production(pb::Production {
                output: Some(output.clone()),
                production_date: "2026-11-20".into(),
                expiry_date: "2028-11-19".into(),
                factory_gln: "4012345002256".into(),
            }))
        );
        assert_eq!(mapped.subject, Some(pb::Subject { kind: Some(Kind::Product(output.product.unwrap_or_default())) }));
        assert_eq!(mapped.event_time, Some(pb::EventTime { unix_millis: 1_795_226_400_000, offset_minutes: 480 }));
        assert_eq!(
            mapped.location,
            Some(pb::Location {
                read_point_gln: "4012345000016".into(),
                business_location_gln: "4012345002256".into(),
                region: String::new()
            })
        );
        assert_eq!((mapped.biz_step.as_str(), mapped.disposition.as_str()), ("commissioning", "active"));
        assert_eq!(
            mapped.documents,
            vec![
                pb::Document {
                    kind: "prodorder".into(),
                    id: "urn:epcglobal:cbv:bt:4012345000016:PO-7".into(),
                    sha256: vec![]
                },
                pb::Document { kind: "certificate".into(), id: "https://cert.example/cqc/1".into(), sha256: vec![] },
            ]
        );
        assert_eq!(mapped.attributes, vec![event_id_attribute()]);
        assert_eq!(mapped.nonce, 0);

        // SGTINs take their lot from ILMD; a production creates one lot.
        let serialised = with(
            base("ObjectEvent"),
            json!({"action": "ADD", "bizStep": "commissioning", "epcList": ["urn:epc:id:sgtin:4012345.011111.9876"],
                   "ilmd": {"cbvmda:lotNumber": "LOTABC"}}),
        );
        match map(&serialised).body {
            Some(Body::Production(p)) => assert_eq!(p.output, Some(lot("04012345111118", "LOTABC", "9876", None))),
            other => panic!("{other:?}"),
        }
        let two = with(
            base("ObjectEvent"),
            json!({"action": "ADD", "epcList": ["urn:epc:id:sgtin:4012345.011111.1", "urn:epc:id:sgtin:4012345.011111.2"]}),
        );
        let refusal = map_event(&two, &party_map()).map(drop).map_err(|e| e.to_string());
        assert!(matches!(&refusal, Err(m) if m.contains("creates one lot; this event names 2 items")), "{refusal:?}");
    }

    #[test]
    fn transformation_inputs_and_outputs() {
        let event = with(
            base("TransformationEvent"),
            json!({
                "inputEPCList": ["urn:epc:id:sgtin:4012345.011122.25"],
                "inputQuantityList": [
                    {"epcClass": "urn:epc:class:lgtin:4012345.011111.4444", "quantity": 10, "uom": "KGM"},
                    {"epcClass": "urn:epc:idpat:sgtin:4012345.066666.*", "quantity": 220},
                ],
                "outputEPCList": ["urn:epc:id:sgtin:4012345.077889.25"],
                "outputQuantityList": [{"epcClass": "https://id.gs1.org/01/09520123456788/10/OUT-1", "quantity": 1.5, "uom": "LTR"}],
                "bizStep": "commissioning",
                "ilmd": {"cbvmda:lotNumber": "LOT-9"},
            }),
        );
        match map(&event).body {
            Some(Body::Transformation(t)) => {
                assert_eq!(
                    t.inputs,
                    vec![
                        lot("04012345111224", "", "25", None),
                        lot("04012345111118", "4444", "", Some((10.0, "KGM"))),
                        lot("04012345666663", "", "", Some((220.0, "EA"))),
                    ]
                );
                assert_eq!(
                    t.outputs,
                    vec![lot("04012345778892", "LOT-9", "25", None), lot(GTIN, "OUT-1", "", Some((1.5, "LTR")))]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shipping_and_receiving_name_parties_by_uscc() {
        let lists = json!({
            "quantityList": [{"epcClass": "urn:epc:class:lgtin:4012345.012345.998877", "quantity": 200, "uom": "KGM"}],
            "sourceList": [
                {"type": "possessing_party", "source": "urn:epc:id:sgln:4012345.00001.0"},
                {"type": "location", "source": "urn:epc:id:sgln:4012345.00225.0"},
            ],
            "destinationList": [
                {"type": "urn:epcglobal:cbv:sdt:owning_party", "destination": "https://id.gs1.org/417/0614141000012"},
                {"type": "location", "destination": "urn:epc:id:sgln:0614141.00777.0"},
            ],
        });
        let shipping =
            with(with(base("ObjectEvent"), json!({"action": "OBSERVE", "bizStep": "shipping"})), lists.clone());
        let source = pb::Party { uscc: MAKER.into(), location_gln: "4012345002256".into() };
        let destination = pb::Party { uscc: SHOP.into(), location_gln: "0614141007776".into() };
        let items = vec![lot("04012345123456", "998877", "", Some((200.0, "KGM")))];
        assert_eq!(
            map(&shipping).body,
            Some(Body::Shipment(pb::Shipment {
                items: items.clone(),
                source: Some(source.clone()),
                destination: Some(destination.clone()),
                shipment_number: String::new(),
            }))
        );
        let receiving = with(with(base("ObjectEvent"), json!({"action": "OBSERVE", "bizStep": "receiving"})), lists);
        assert_eq!(
            map(&receiving).body,
            Some(Body::Receipt(pb::Receipt {
                items,
                source: Some(source),
                destination: Some(destination),
                shipment_number: String::new()
            }))
        );
        // A qtrace extension field names a USCC the party map lacks.
        let own = with(
            receiving.clone(),
            json!({"destinationList": [{"type": "owning_party", "destination": "urn:epc:id:pgln:9520123.00000"}],
                   "qtrace:destinationUSCC": LAB}),
        );
        match map(&own).body {
            Some(Body::Receipt(r)) => {
                assert_eq!(r.destination, Some(pb::Party { uscc: LAB.into(), location_gln: String::new() }))
            }
            other => panic!("{other:?}"),
        }
        let refusals = [
            (
                with(
                    receiving.clone(),
                    json!({"destinationList": [{"type": "owning_party", "destination": "urn:epc:id:pgln:9520123.00000"}]}),
                ),
                "the destination party urn:epc:id:pgln:9520123.00000 (GLN 9520123000004) has no USCC",
            ),
            (with(receiving.clone(), json!({"sourceList": []})), "the source party is missing: a qtrace receipt names"),
            (
                with(receiving, json!({"sourceList": [{"type": "location", "source": "geo:1,2"}]})),
                "sourceList[0].source: \"geo:1,2\" is not a location",
            ),
        ];
        for (event, fragment) in refusals {
            let got = map_event(&event, &party_map()).map(drop).map_err(|e| e.to_string());
            assert!(matches!(&got, Err(m) if m.contains(fragment)), "{fragment}: {got:?}");
        }
    }

    #[test]
    fn retail_selling_becomes_a_sale() {
        let event = with(
            base("ObjectEvent"),
            json!({"action": "OBSERVE", "bizStep": "retail_selling", "disposition": "retail_sold",
                   "epcList": ["https://id.gs1.org/01/09520123456788/10/P-1/21/0001"],
                   "bizLocation": {"id": "urn:epc:id:sgln:0614141.00888.0"},
                   "readPoint": {"id": "urn:epc:id:sgln:0614141.00888.7"}}),
        );
        let mapped = map(&event);
        assert_eq!(
            mapped.body,
            Some(Body::Sale(pb::Sale {
                items: vec![lot(GTIN, "P-1", "0001", None)],
                store_gln: "0614141008889".into()
            }))
        );
        // The read point's sub-location is kept as an attribute.
        assert_eq!(
            mapped.attributes,
            vec![event_id_attribute(), attribute("epcis:readPoint", "urn:epc:id:sgln:0614141.00888.7")]
        );
    }

    #[test]
    fn inspections_need_a_lab_key_and_read_sensors_as_test_items() {
        let event = with(
            base("ObjectEvent"),
            json!({
                "action": "OBSERVE",
                "bizStep": "sampling",
                "disposition": "non_conformant",
                "epcList": ["urn:epc:id:sgtin:4012345.011111.9876"],
                "bizTransactionList": [{"type": "testres", "bizTransaction": "urn:epcglobal:cbv:bt:4012345000016:R-1"}],
                "qtrace:standards": ["GB 19644-2010"],
                "sensorElementList": [{
                    "sensorMetadata": {"time": "2019-04-02T14:05:00.000+01:00"},
                    "sensorReport": [
                        {"type": "Temperature", "value": 26.0, "uom": "CEL"},
                        {"type": "AmountOfSubstancePerUnitVolume", "chemicalSubstance": "https://identifiers.org/inchikey:X", "value": 0.18, "uom": "C35"},
                    ],
                }, {
                    "sensorMetadata": {"startTime": "2019-04-01T15:00:00Z", "endTime": "2019-04-02T15:00:00Z"},
                    "sensorReport": [{"type": "Temperature", "minValue": 12.4, "maxValue": 13.8, "uom": "CEL"},
                                     {"type": "AbsoluteHumidity", "exception": "ALARM_CONDITION", "booleanValue": true}],
                }],
            }),
        );
        let (lab_key, factory_key, parties) = (key(1), key(2), party_map());
        let lab = Importer { key: &lab_key, parties: &parties, signer_is_lab: true };
        let factory = Importer { key: &factory_key, parties: &parties, signer_is_lab: false };
        assert_eq!(factory.prepare(&event).map(drop), Err(Refusal::NeedsLab));
        assert_eq!(Refusal::NeedsLab.to_string(), "inspection needs a testing lab's key");
        let prepared = lab.prepare(&event).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((prepared.kind, prepared.presigned), (EventKind::Inspection, false));
        let mapped = map(&event);
        let item = |name: &str, value: &str, unit: &str| pb::TestItem {
            name: name.into(),
            value: value.into(),
            unit: unit.into(),
            ..Default::default()
        };
        assert_eq!(
            mapped.body,
            Some(Body::Inspection(pb::Inspection {
                report_number: "urn:epcglobal:cbv:bt:4012345000016:R-1".into(),
                product: Some(pb::ProductKey {
                    gtin: "04012345111118".into(),
                    lot: String::new(),
                    serial: "9876".into()
                }),
                standards: vec!["GB 19644-2010".into()],
                items: vec![
                    item("Temperature @2019-04-02T14:05:00.000+01:00", "26.0", "CEL"),
                    item(
                        "AmountOfSubstancePerUnitVolume https://identifiers.org/inchikey:X @2019-04-02T14:05:00.000+01:00",
                        "0.18",
                        "C35"
                    ),
                    item("Temperature @2019-04-01T15:00:00Z/2019-04-02T15:00:00Z", "min 12.4 max 13.8", "CEL"),
                    item("AbsoluteHumidity @2019-04-01T15:00:00Z/2019-04-02T15:00:00Z", "ALARM_CONDITION: true", ""),
                ],
                conclusion: pb::Conclusion::NonConformant as i32,
                destructive: true,
                client_uscc: String::new(),
            }))
        );
        // Sensor readings on other records become attributes.
        let shipping = with(
            event.clone(),
            json!({"bizStep": "shipping", "disposition": "in_transit", "qtrace:sourceUSCC": MAKER, "qtrace:destinationUSCC": SHOP,
                   "bizTransactionList": []}),
        );
        let attributes = map(&shipping).attributes;
        assert_eq!(attributes.first(), Some(&event_id_attribute()));
        assert_eq!(
            attributes.get(1),
            Some(&attribute("epcis:sensor Temperature @2019-04-02T14:05:00.000+01:00", "26.0 CEL"))
        );
        assert_eq!(attributes.len(), 5);
        // No conclusion, no report: the ledger's own words.
        let bare = with(event, json!({"disposition": "", "bizTransactionList": []}));
        assert_eq!(
            lab.prepare(&bare).map(drop).map_err(|e| e.to_string()),
            Err("inspection.report_number: is required".to_owned())
        );
        let no_product =
            with(base("ObjectEvent"), json!({"action": "OBSERVE", "bizStep": "inspecting", "epcList": []}));
        let got = lab.prepare(&no_product).map(drop).map_err(|e| e.to_string());
        assert!(
            matches!(&got, Err(m) if m.contains("an inspection is about one product; this event names none")),
            "{got:?}"
        );
    }

    #[test]
    fn recalls_take_their_terms_from_the_qtrace_namespace() {
        let event = with(
            base("ObjectEvent"),
            json!({"action": "OBSERVE", "disposition": "recalled",
                   "quantityList": [{"epcClass": "https://id.gs1.org/01/09520123456788/10/L1"}, {"epcClass": "https://id.gs1.org/01/09520123456788/10/L2"}]}),
        );
        assert_eq!(
            Importer { key: &key(1), parties: &party_map(), signer_is_lab: false }
                .prepare(&event)
                .map(drop)
                .map_err(|e| e.to_string()),
            Err("recall.recall_number: is required".to_owned())
        );
        let full = with(
            event,
            json!({"qtrace:recall": {"recallNumber": "R-1", "riskClass": 1, "reason": "melamine", "initiator": "voluntary",
                                     "manufacturerUSCC": MAKER, "regions": ["310000"]}}),
        );
        match map(&full).body {
            Some(Body::Recall(r)) => {
                assert_eq!(
                    (r.gtin.as_str(), r.lots.clone(), r.risk_class),
                    (GTIN, vec!["L1".to_owned(), "L2".to_owned()], 1)
                );
                assert_eq!(
                    (r.initiator, r.regions),
                    (pb::RecallInitiator::Voluntary as i32, vec!["310000".to_owned()])
                );
            }
            other => panic!("{other:?}"),
        }
        let two_gtins = with(full, json!({"epcList": ["urn:epc:id:sgtin:4012345.011111.1"]}));
        let got = map_event(&two_gtins, &party_map()).map(drop).map_err(|e| e.to_string());
        assert!(matches!(&got, Err(m) if m.contains("a qtrace recall names one GTIN")), "{got:?}");
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                json!({"type": "ObjectEvent", "action": "ADD", "epcList": ["urn:epc:id:sgtin:4012345.011111.1"]}),
                "eventTime: is required",
            ),
            (
                with(base("ObjectEvent"), json!({"action": "ADD", "epcList": "urn:epc:id:sgtin:4012345.011111.1"})),
                "epcList: must be an array",
            ),
            (
                with(base("ObjectEvent"), json!({"action": "ADD", "epcList": ["urn:epc:id:sscc:0614141.1234567890"]})),
                "epcList[0]: \"urn:epc:id:sscc:0614141.1234567890\" is not a product",
            ),
            (
                with(
                    base("ObjectEvent"),
                    json!({"action": "ADD", "quantityList": [{"epcClass": "urn:epc:class:lgtin:4012345.012345.1", "quantity": "many"}]}),
                ),
                "quantityList[0].quantity: must be a number",
            ),
            (
                with(
                    base("ObjectEvent"),
                    json!({"action": "ADD", "readPoint": {"id": "urn:epc:id:sgln:0614141.0734.0"}}),
                ),
                "readPoint.id:",
            ),
            (
                with(
                    base("ObjectEvent"),
                    json!({"action": "ADD", "ilmd": {"cbvmda:itemExpirationDate": "2026-02-30"}}),
                ),
                "ilmd.cbvmda:itemExpirationDate:",
            ),
        ];
        for (event, fragment) in cases {
            let got = map_event(&event, &party_map()).map(drop).map_err(|e| e.to_string());
            assert!(matches!(&got, Err(m) if m.contains(fragment)), "{fragment}: {got:?}");
        }
    }

    /// Each shared example file, imported by a manufacturer's key (not a
    /// lab's) with the party map: per event, the record kind or the
    /// refusal's class, and a fragment of its reason.
    #[test]
    fn shared_examples_map_or_are_refused_with_reasons() {
        let party = "party";
        let no_kind = "no_record_kind";
        let lab = "needs_lab";
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "Example_9.6.1-ObjectEvent.jsonld",
                &[(party, "the source party is missing"), (party, "the source party is missing")],
            ),
            ("Example_9.6.1-ObjectEvent-with-pseudo-SBDH-headers.jsonld", &[(party, "source"), (party, "source")]),
            ("Example_9.6.1-with-comment.jsonld", &[(party, "source"), (party, "source")]),
            ("Example_9.6.2-ObjectEvent.jsonld", &[("receipt", "")]),
            ("Example_9.6.3-AggregationEvent.jsonld", &[(no_kind, "aggregation has no qtrace record kind")]),
            (
                "Example_9.6.4-TransformationEvent.jsonld",
                &[("invalid", "transformation.outputs[0].product.lot: is required")],
            ),
            ("WithSensorData/SensorDataExample1.jsonld", &[(lab, "testing lab")]),
            ("WithSensorData/SensorDataExample1b.jsonld", &[(lab, "testing lab")]),
            ("WithSensorData/SensorDataExample2.jsonld", &[(lab, "testing lab")]),
            ("WithSensorData/SensorDataExample3.jsonld", &[(lab, "testing lab")]),
            ("WithSensorData/SensorDataExample4.jsonld", &[(lab, "testing lab")]),
            ("WithSensorData/SensorDataExample5.jsonld", &[(lab, "testing lab")]),
            ("WithSensorData/SensorDataExample6.jsonld", &[(lab, "testing lab")]),
            ("WithSensorData/SensorDataExample7.jsonld", &[(lab, "testing lab")]),
            ("WithSensorData/SensorDataExample8.jsonld", &[(no_kind, "aggregation")]),
            ("WithSensorData/SensorDataExample9.jsonld", &[(no_kind, "sensor_reporting")]),
            ("WithSensorData/SensorDataExample10.jsonld", &[(no_kind, "sensor_reporting")]),
            ("WithSensorData/SensorDataExample11.jsonld", &[(no_kind, "TransactionEvent")]),
            ("WithSensorData/SensorDataExample12.jsonld", &[(no_kind, "errorDeclaration")]),
            ("WithSensorData/SensorDataExample13.jsonld", &[(no_kind, "sensor_reporting")]),
            ("WithSensorData/SensorDataExample14.jsonld", &[(no_kind, "sensor_reporting")]),
            ("WithSensorData/SensorDataExample15.jsonld", &[(no_kind, "sensor_reporting")]),
            ("WithSensorData/SensorDataExample16.jsonld", &[(no_kind, "sensor_reporting")]),
            ("WithSensorData/SensorDataExample17.jsonld", &[(no_kind, "sensor_reporting")]),
        ];
        let parties = party_map();
        let maker = key(13);
        let importer = Importer { key: &maker, parties: &parties, signer_is_lab: false };
        let mut seen = 0;
        for (file, want) in cases {
            let path = vectors().join("examples").join(file);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let document: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            let events = events_of(&document).unwrap_or_else(|e| panic!("{file}: {e}"));
            let got: Vec<(String, String)> = events
                .iter()
                .map(|event| match importer.prepare(event) {
                    Ok(prepared) => (prepared.kind.name().to_owned(), String::new()),
                    Err(refusal) => (refusal.code().to_owned(), refusal.to_string()),
                })
                .collect();
            assert_eq!(got.len(), want.len(), "{file}: {got:?}");
            for ((code, reason), (want_code, fragment)) in got.iter().zip(want.iter()) {
                assert_eq!(code, want_code, "{file}: {reason}");
                assert!(reason.contains(fragment), "{file}: {reason:?} lacks {fragment:?}");
            }
            seen += 1;
        }
        // Every example in the shared vectors is covered above.
        let mut files = 0;
        for dir in [vectors().join("examples"), vectors().join("examples/WithSensorData")] {
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            files +=
                entries.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "jsonld")).count();
        }
        assert_eq!(seen, files);
        // With a lab's key the inspections get as far as the ledger's own checks.
        let lab_importer = Importer { key: &maker, parties: &parties, signer_is_lab: true };
        let sensor1 = std::fs::read_to_string(vectors().join("examples/WithSensorData/SensorDataExample1.jsonld"))
            .unwrap_or_default();
        let document: Value = serde_json::from_str(&sensor1).unwrap_or_default();
        let events = events_of(&document).unwrap_or_default();
        let got = events.first().map(|e| lab_importer.prepare(e).map(drop).map_err(|e| e.to_string()));
        assert_eq!(got, Some(Err("inspection.report_number: is required".to_owned())));
        // Without the party map, 9.6.2 names the party it cannot resolve.
        let empty = PartyMap::default();
        let bare = Importer { key: &maker, parties: &empty, signer_is_lab: false };
        let text =
            std::fs::read_to_string(vectors().join("examples/Example_9.6.2-ObjectEvent.jsonld")).unwrap_or_default();
        let document: Value = serde_json::from_str(&text).unwrap_or_default();
        let got = events_of(&document)
            .unwrap_or_default()
            .first()
            .map(|e| bare.prepare(e).map(drop).map_err(|e| e.to_string()));
        assert_eq!(
            got,
            Some(Err("the source party urn:epc:id:sgln:4012345.00001.0 (GLN 4012345000016) has no USCC: EPCIS names \
                      parties by GLN, so add the GLN to --party-map (GLN = \"USCC\") or give qtrace:sourceUSCC"
                .to_owned()))
        );
        let _ = fixtures::header();
    }
}
