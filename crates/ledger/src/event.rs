//! Decoding and validating events.
//!
//! [`decode_event`] is the only way from untrusted bytes to an event the rest
//! of qtrace handles. It refuses anything but the canonical protobuf encoding
//! (so one event has one byte form, and nothing unknown rides along inside a
//! signed record), any event over [`MAX_EVENT_BYTES`], and any field that is
//! missing, over-long or not a valid identifier, naming the field by its
//! path (`shipment.items[2].product.lot`).
//!
//! The checks here need nothing but the event itself. Whether the signer may
//! sign it, whether its parents exist and whether a certificate transition is
//! legal depend on the log, and are checked by [`crate::registry`] and the
//! node.

use std::fmt;

use prost::Message;

pub use crate::entry::MAX_EVENT_BYTES;
use crate::hash::{EntryHash, LogId};
use crate::ids::{Date, Gln, Gtin, IdError, Lot, Serial, Uscc};
use crate::pb::{self, event::Body};

/// Longest free-text field (reasons, addresses, scopes), in bytes.
pub const MAX_TEXT_BYTES: usize = 2_000;
/// Longest name or short code, in bytes.
pub const MAX_NAME_BYTES: usize = 200;
/// Most parents one record may name.
pub const MAX_PARENTS: usize = 64;
/// Most attributes, documents, standards or test items in one list.
pub const MAX_LIST: usize = 256;
/// Most lots in one movement or transformation.
pub const MAX_LOTS: usize = 1_000;
/// Event times must fall in [2000-01-01, 2100-01-01) UTC.
pub const MIN_EVENT_MILLIS: i64 = 946_684_800_000;
pub const MAX_EVENT_MILLIS: i64 = 4_102_444_800_000;

/// Every kind of record body. The order is the wire order of the `oneof`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Genesis,
    OrgRegistered,
    OrgUpdated,
    KeyRegistered,
    KeyRevoked,
    Production,
    Transformation,
    Shipment,
    Receipt,
    Sale,
    Inspection,
    SpotCheck,
    CertificateIssued,
    CertificateSuspended,
    CertificateRestored,
    CertificateScopeReduced,
    CertificateWithdrawn,
    CertificateCancelled,
    CertificateRenewed,
    Recall,
    RecallProgress,
    RecallClosed,
    Blacklisted,
    Delisted,
    Correction,
}

impl EventKind {
    pub const ALL: [EventKind; 25] = [
        EventKind::Genesis,
        EventKind::OrgRegistered,
        EventKind::OrgUpdated,
        EventKind::KeyRegistered,
        EventKind::KeyRevoked,
        EventKind::Production,
        EventKind::Transformation,
        EventKind::Shipment,
        EventKind::Receipt,
        EventKind::Sale,
        EventKind::Inspection,
        EventKind::SpotCheck,
        EventKind::CertificateIssued,
        EventKind::CertificateSuspended,
        EventKind::CertificateRestored,
        EventKind::CertificateScopeReduced,
        EventKind::CertificateWithdrawn,
        EventKind::CertificateCancelled,
        EventKind::CertificateRenewed,
        EventKind::Recall,
        EventKind::RecallProgress,
        EventKind::RecallClosed,
        EventKind::Blacklisted,
        EventKind::Delisted,
        EventKind::Correction,
    ];

    pub fn of(body: &Body) -> Self {
        match body {
            Body::Genesis(_) => EventKind::Genesis,
            Body::OrgRegistered(_) => EventKind::OrgRegistered,
            Body::OrgUpdated(_) => EventKind::OrgUpdated,
            Body::KeyRegistered(_) => EventKind::KeyRegistered,
            Body::KeyRevoked(_) => EventKind::KeyRevoked,
            Body::Production(_) => EventKind::Production,
            Body::Transformation(_) => EventKind::Transformation,
            Body::Shipment(_) => EventKind::Shipment,
            Body::Receipt(_) => EventKind::Receipt,
            Body::Sale(_) => EventKind::Sale,
            Body::Inspection(_) => EventKind::Inspection,
            Body::SpotCheck(_) => EventKind::SpotCheck,
            Body::CertificateIssued(_) => EventKind::CertificateIssued,
            Body::CertificateSuspended(_) => EventKind::CertificateSuspended,
            Body::CertificateRestored(_) => EventKind::CertificateRestored,
            Body::CertificateScopeReduced(_) => EventKind::CertificateScopeReduced,
            Body::CertificateWithdrawn(_) => EventKind::CertificateWithdrawn,
            Body::CertificateCancelled(_) => EventKind::CertificateCancelled,
            Body::CertificateRenewed(_) => EventKind::CertificateRenewed,
            Body::Recall(_) => EventKind::Recall,
            Body::RecallProgress(_) => EventKind::RecallProgress,
            Body::RecallClosed(_) => EventKind::RecallClosed,
            Body::Blacklisted(_) => EventKind::Blacklisted,
            Body::Delisted(_) => EventKind::Delisted,
            Body::Correction(_) => EventKind::Correction,
        }
    }

    /// The snake_case name used in the CLI, JSON and error messages.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Genesis => "genesis",
            EventKind::OrgRegistered => "org_registered",
            EventKind::OrgUpdated => "org_updated",
            EventKind::KeyRegistered => "key_registered",
            EventKind::KeyRevoked => "key_revoked",
            EventKind::Production => "production",
            EventKind::Transformation => "transformation",
            EventKind::Shipment => "shipment",
            EventKind::Receipt => "receipt",
            EventKind::Sale => "sale",
            EventKind::Inspection => "inspection",
            EventKind::SpotCheck => "spot_check",
            EventKind::CertificateIssued => "certificate_issued",
            EventKind::CertificateSuspended => "certificate_suspended",
            EventKind::CertificateRestored => "certificate_restored",
            EventKind::CertificateScopeReduced => "certificate_scope_reduced",
            EventKind::CertificateWithdrawn => "certificate_withdrawn",
            EventKind::CertificateCancelled => "certificate_cancelled",
            EventKind::CertificateRenewed => "certificate_renewed",
            EventKind::Recall => "recall",
            EventKind::RecallProgress => "recall_progress",
            EventKind::RecallClosed => "recall_closed",
            EventKind::Blacklisted => "blacklisted",
            EventKind::Delisted => "delisted",
            EventKind::Correction => "correction",
        }
    }

    /// The Chinese term users know the record by.
    pub fn name_zh(self) -> &'static str {
        match self {
            EventKind::Genesis => "创世记录",
            EventKind::OrgRegistered => "机构登记",
            EventKind::OrgUpdated => "机构变更",
            EventKind::KeyRegistered => "密钥登记",
            EventKind::KeyRevoked => "密钥撤销",
            EventKind::Production => "生产",
            EventKind::Transformation => "加工",
            EventKind::Shipment => "发货",
            EventKind::Receipt => "收货",
            EventKind::Sale => "销售",
            EventKind::Inspection => "检验",
            EventKind::SpotCheck => "监督抽查",
            EventKind::CertificateIssued => "发证",
            EventKind::CertificateSuspended => "暂停",
            EventKind::CertificateRestored => "恢复",
            EventKind::CertificateScopeReduced => "缩小范围",
            EventKind::CertificateWithdrawn => "撤销",
            EventKind::CertificateCancelled => "注销",
            EventKind::CertificateRenewed => "换证/延续",
            EventKind::Recall => "召回",
            EventKind::RecallProgress => "召回进展",
            EventKind::RecallClosed => "召回结束",
            EventKind::Blacklisted => "列入黑名单",
            EventKind::Delisted => "移出黑名单",
            EventKind::Correction => "更正",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("event is {found} bytes; at most {MAX_EVENT_BYTES} are accepted")]
    TooLarge { found: usize },
    #[error("event is empty")]
    Empty,
    #[error("not a protobuf qtrace.v1.Event: {0}")]
    Decode(String),
    #[error(
        "not the canonical encoding (unknown fields, fields out of order, or default values written); encode the Event with a protobuf library and sign those bytes"
    )]
    NonCanonical,
    #[error("is required")]
    Missing,
    #[error("is {found} bytes; at most {max} are allowed")]
    TooLong { max: usize, found: usize },
    #[error("has {found} elements; at most {max} are allowed")]
    TooMany { max: usize, found: usize },
    #[error("{0}")]
    Identifier(IdError),
    #[error("{0}")]
    Invalid(String),
}

/// An event was refused; `field` is the path of the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct EventError {
    pub field: String,
    pub problem: Problem,
}

impl EventError {
    fn new(field: impl Into<String>, problem: Problem) -> Self {
        EventError { field: field.into(), problem }
    }
}

type Result<T, E = EventError> = std::result::Result<T, E>;

/// A decoded event that passed every self-contained check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    pub event: pb::Event,
    pub kind: EventKind,
}

impl ValidEvent {
    /// The body; present by construction.
    pub fn body(&self) -> Option<&Body> {
        self.event.body.as_ref()
    }
}

/// Decodes and validates untrusted event bytes.
pub fn decode_event(bytes: &[u8]) -> Result<ValidEvent> {
    if bytes.is_empty() {
        return Err(EventError::new("event", Problem::Empty));
    }
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(EventError::new("event", Problem::TooLarge { found: bytes.len() }));
    }
    let event = pb::Event::decode(bytes).map_err(|e| EventError::new("event", Problem::Decode(e.to_string())))?;
    if event.encoded_len() != bytes.len() || event.encode_to_vec() != bytes {
        return Err(EventError::new("event", Problem::NonCanonical));
    }
    let kind = validate(&event)?;
    Ok(ValidEvent { event, kind })
}

/// Checks every self-contained rule of an event and returns its kind.
pub fn validate(event: &pb::Event) -> Result<EventKind> {
    let body = event.body.as_ref().ok_or_else(|| EventError::new("body", Problem::Missing))?;
    let kind = EventKind::of(body);
    let time = event.event_time.as_ref().ok_or_else(|| EventError::new("event_time", Problem::Missing))?;
    if !(MIN_EVENT_MILLIS..MAX_EVENT_MILLIS).contains(&time.unix_millis) {
        return Err(EventError::new(
            "event_time.unix_millis",
            Problem::Invalid(format!(
                "{} is outside 2000-01-01 .. 2100-01-01 (milliseconds since 1970)",
                time.unix_millis
            )),
        ));
    }
    if !(-840..=840).contains(&time.offset_minutes) {
        return Err(EventError::new(
            "event_time.offset_minutes",
            Problem::Invalid(format!("{} is not a zone offset (-840 ..= 840 minutes)", time.offset_minutes)),
        ));
    }
    match (&event.subject, kind) {
        (None, EventKind::Genesis) => {}
        (None, _) => return Err(EventError::new("subject", Problem::Missing)),
        (Some(subject), _) => subject_check(subject)?,
    }
    list("parents", &event.parents, MAX_PARENTS, record_ref)?;
    if let Some(location) = &event.location {
        opt_gln("location.read_point_gln", &location.read_point_gln)?;
        opt_gln("location.business_location_gln", &location.business_location_gln)?;
        opt_region("location.region", &location.region)?;
    }
    name("biz_step", &event.biz_step)?;
    name("disposition", &event.disposition)?;
    list("documents", &event.documents, MAX_LIST, |path, d| {
        required_name(&format!("{path}.kind"), &d.kind)?;
        required_name(&format!("{path}.id"), &d.id)?;
        if !(d.sha256.is_empty() || d.sha256.len() == 32) {
            return Err(EventError::new(
                format!("{path}.sha256"),
                Problem::Invalid(format!("must be empty or 32 bytes, found {}", d.sha256.len())),
            ));
        }
        Ok(())
    })?;
    list("attributes", &event.attributes, MAX_LIST, |path, a| {
        required_name(&format!("{path}.name"), &a.name)?;
        text(&format!("{path}.value"), &a.value)
    })?;
    body_check(body)?;
    Ok(kind)
}

fn subject_check(subject: &pb::Subject) -> Result<()> {
    use pb::subject::Kind;
    match subject.kind.as_ref() {
        None => Err(EventError::new("subject.kind", Problem::Missing)),
        Some(Kind::Product(p)) => product("subject.product", p).map(drop),
        Some(Kind::Certificate(c)) => certificate("subject.certificate", c),
        Some(Kind::OrganisationUscc(u)) => uscc("subject.organisation_uscc", u).map(drop),
    }
}

fn body_check(body: &Body) -> Result<()> {
    match body {
        Body::Genesis(g) => {
            required_name("genesis.origin", &g.origin)?;
            if g.origin.chars().any(|c| c.is_whitespace() || c == '+') {
                return Err(EventError::new(
                    "genesis.origin",
                    Problem::Invalid("must not contain whitespace or '+' (it names the log in signed notes)".into()),
                ));
            }
            uscc("genesis.operator_uscc", &g.operator_uscc)?;
            required_name("genesis.operator_name", &g.operator_name)?;
            if g.root_authority_keys.is_empty() {
                return Err(EventError::new("genesis.root_authority_keys", Problem::Missing));
            }
            list("genesis.root_authority_keys", &g.root_authority_keys, 16, |path, key| public_key(path, key))
        }
        Body::OrgRegistered(o) => {
            org("org_registered", &o.uscc, &o.name, &o.roles, &o.accreditations, &o.address, &o.region)
        }
        Body::OrgUpdated(o) => org("org_updated", &o.uscc, &o.name, &o.roles, &o.accreditations, &o.address, &o.region),
        Body::KeyRegistered(k) => {
            uscc("key_registered.uscc", &k.uscc)?;
            public_key("key_registered.public_key", &k.public_key)?;
            required_name("key_registered.person", &k.person)?;
            required_name("key_registered.title", &k.title)
        }
        Body::KeyRevoked(k) => {
            public_key("key_revoked.public_key", &k.public_key)?;
            required_text("key_revoked.reason", &k.reason)
        }
        Body::Production(p) => {
            let output = p.output.as_ref().ok_or_else(|| EventError::new("production.output", Problem::Missing))?;
            lot_quantity("production.output", output, true)?;
            opt_date("production.production_date", &p.production_date)?;
            opt_date("production.expiry_date", &p.expiry_date)?;
            date_order("production", &p.production_date, &p.expiry_date)?;
            opt_gln("production.factory_gln", &p.factory_gln)
        }
        Body::Transformation(t) => {
            non_empty_list("transformation.inputs", &t.inputs, MAX_LOTS, |path, l| lot_quantity(path, l, false))?;
            non_empty_list("transformation.outputs", &t.outputs, MAX_LOTS, |path, l| lot_quantity(path, l, true))?;
            opt_date("transformation.production_date", &t.production_date)?;
            opt_date("transformation.expiry_date", &t.expiry_date)?;
            date_order("transformation", &t.production_date, &t.expiry_date)?;
            opt_gln("transformation.factory_gln", &t.factory_gln)
        }
        Body::Shipment(s) => movement("shipment", &s.items, &s.source, &s.destination, &s.shipment_number),
        Body::Receipt(r) => movement("receipt", &r.items, &r.source, &r.destination, &r.shipment_number),
        Body::Sale(s) => {
            non_empty_list("sale.items", &s.items, MAX_LOTS, |path, l| lot_quantity(path, l, false))?;
            opt_gln("sale.store_gln", &s.store_gln)
        }
        Body::Inspection(i) => {
            required_name("inspection.report_number", &i.report_number)?;
            let p = i.product.as_ref().ok_or_else(|| EventError::new("inspection.product", Problem::Missing))?;
            product("inspection.product", p)?;
            names("inspection.standards", &i.standards)?;
            list("inspection.items", &i.items, MAX_LIST, test_item)?;
            conclusion("inspection.conclusion", i.conclusion)?;
            opt_uscc("inspection.client_uscc", &i.client_uscc)
        }
        Body::SpotCheck(s) => {
            required_name("spot_check.plan_number", &s.plan_number)?;
            let p = s.product.as_ref().ok_or_else(|| EventError::new("spot_check.product", Problem::Missing))?;
            product("spot_check.product", p)?;
            uscc("spot_check.inspected_uscc", &s.inspected_uscc)?;
            opt_uscc("spot_check.lab_uscc", &s.lab_uscc)?;
            names("spot_check.standards", &s.standards)?;
            list("spot_check.items", &s.items, MAX_LIST, test_item)?;
            conclusion("spot_check.result", s.result)?;
            opt_date("spot_check.published_on", &s.published_on)
        }
        Body::CertificateIssued(c) => {
            let key = c
                .certificate
                .as_ref()
                .ok_or_else(|| EventError::new("certificate_issued.certificate", Problem::Missing))?;
            certificate("certificate_issued.certificate", key)?;
            uscc("certificate_issued.holder_uscc", &c.holder_uscc)?;
            opt_uscc("certificate_issued.manufacturer_uscc", &c.manufacturer_uscc)?;
            name("certificate_issued.factory_name", &c.factory_name)?;
            opt_gln("certificate_issued.factory_gln", &c.factory_gln)?;
            non_empty_list("certificate_issued.products", &c.products, MAX_LIST, |path, p| {
                gtin_or_prefix(&format!("{path}.gtin"), &p.gtin)?;
                name(&format!("{path}.name"), &p.name)?;
                name(&format!("{path}.model"), &p.model)
            })?;
            names("certificate_issued.standards", &c.standards)?;
            text("certificate_issued.certification_mode", &c.certification_mode)?;
            let issued = date("certificate_issued.issued_on", &c.issued_on)?;
            let until = date("certificate_issued.valid_until", &c.valid_until)?;
            if until < issued {
                return Err(EventError::new(
                    "certificate_issued.valid_until",
                    Problem::Invalid(format!("{until} is before issued_on {issued}")),
                ));
            }
            text("certificate_issued.scope", &c.scope)
        }
        Body::CertificateSuspended(c) => {
            cert_ref("certificate_suspended", &c.certificate)?;
            required_text("certificate_suspended.reason", &c.reason)?;
            opt_date("certificate_suspended.until", &c.until)
        }
        Body::CertificateRestored(c) => {
            cert_ref("certificate_restored", &c.certificate)?;
            required_text("certificate_restored.reason", &c.reason)
        }
        Body::CertificateScopeReduced(c) => {
            cert_ref("certificate_scope_reduced", &c.certificate)?;
            non_empty_list("certificate_scope_reduced.removed_gtins", &c.removed_gtins, MAX_LIST, |path, g| {
                gtin_or_prefix(path, g)
            })?;
            required_text("certificate_scope_reduced.reason", &c.reason)
        }
        Body::CertificateWithdrawn(c) => {
            cert_ref("certificate_withdrawn", &c.certificate)?;
            required_text("certificate_withdrawn.reason", &c.reason)
        }
        Body::CertificateCancelled(c) => {
            cert_ref("certificate_cancelled", &c.certificate)?;
            required_text("certificate_cancelled.reason", &c.reason)
        }
        Body::CertificateRenewed(c) => {
            cert_ref("certificate_renewed", &c.certificate)?;
            date("certificate_renewed.valid_until", &c.valid_until)?;
            text("certificate_renewed.reason", &c.reason)
        }
        Body::Recall(r) => {
            required_name("recall.recall_number", &r.recall_number)?;
            gtin("recall.gtin", &r.gtin)?;
            list("recall.lots", &r.lots, MAX_LOTS, |path, l| Lot::parse(l).map(drop).map_err(|e| id_err(path, e)))?;
            match (r.serial_from.is_empty(), r.serial_to.is_empty()) {
                (true, true) => {}
                (false, false) => {
                    Serial::parse(&r.serial_from).map_err(|e| id_err("recall.serial_from", e))?;
                    Serial::parse(&r.serial_to).map_err(|e| id_err("recall.serial_to", e))?;
                    if r.serial_from > r.serial_to {
                        return Err(EventError::new(
                            "recall.serial_to",
                            Problem::Invalid("serial range ends before it starts".into()),
                        ));
                    }
                }
                (true, false) => return Err(EventError::new("recall.serial_from", Problem::Missing)),
                (false, true) => return Err(EventError::new("recall.serial_to", Problem::Missing)),
            }
            if let Some(range) = &r.dates {
                if pb::DateKind::try_from(range.kind).ok().is_none_or(|k| k == pb::DateKind::Unspecified) {
                    return Err(EventError::new(
                        "recall.dates.kind",
                        Problem::Invalid("must be production or expiry".into()),
                    ));
                }
                let from = date("recall.dates.from", &range.from)?;
                let to = date("recall.dates.to", &range.to)?;
                if to < from {
                    return Err(EventError::new("recall.dates.to", Problem::Invalid(format!("{to} is before {from}"))));
                }
            }
            list("recall.regions", &r.regions, MAX_LIST, |path, region| {
                opt_region(path, region)?;
                if region.is_empty() { Err(EventError::new(path, Problem::Missing)) } else { Ok(()) }
            })?;
            if !(1..=3).contains(&r.risk_class) {
                return Err(EventError::new(
                    "recall.risk_class",
                    Problem::Invalid(format!("{} is not a risk class; use 1 (most serious), 2 or 3", r.risk_class)),
                ));
            }
            required_text("recall.reason", &r.reason)?;
            if pb::RecallInitiator::try_from(r.initiator).ok().is_none_or(|i| i == pb::RecallInitiator::Unspecified) {
                return Err(EventError::new(
                    "recall.initiator",
                    Problem::Invalid("must be voluntary or ordered".into()),
                ));
            }
            opt_uscc("recall.manufacturer_uscc", &r.manufacturer_uscc)?;
            text("recall.remedy", &r.remedy)
        }
        Body::RecallProgress(p) => {
            let recall =
                p.recall.as_ref().ok_or_else(|| EventError::new("recall_progress.recall", Problem::Missing))?;
            record_ref("recall_progress.recall", recall)?;
            opt_quantity("recall_progress.quantity_recovered", p.quantity_recovered.as_ref())?;
            opt_quantity("recall_progress.quantity_sold", p.quantity_sold.as_ref())?;
            text("recall_progress.note", &p.note)
        }
        Body::RecallClosed(c) => {
            let recall = c.recall.as_ref().ok_or_else(|| EventError::new("recall_closed.recall", Problem::Missing))?;
            record_ref("recall_closed.recall", recall)?;
            required_text("recall_closed.closeout", &c.closeout)?;
            opt_quantity("recall_closed.quantity_recovered", c.quantity_recovered.as_ref())
        }
        Body::Blacklisted(b) => {
            uscc("blacklisted.uscc", &b.uscc)?;
            required_text("blacklisted.reason", &b.reason)?;
            required_text("blacklisted.legal_basis", &b.legal_basis)?;
            uscc("blacklisted.authority_uscc", &b.authority_uscc)?;
            let listed = date("blacklisted.listed_on", &b.listed_on)?;
            if !b.until.is_empty() {
                let until = date("blacklisted.until", &b.until)?;
                if until < listed {
                    return Err(EventError::new(
                        "blacklisted.until",
                        Problem::Invalid(format!("{until} is before listed_on {listed}")),
                    ));
                }
            }
            Ok(())
        }
        Body::Delisted(d) => {
            uscc("delisted.uscc", &d.uscc)?;
            required_text("delisted.reason", &d.reason)?;
            date("delisted.delisted_on", &d.delisted_on).map(drop)
        }
        Body::Correction(c) => {
            let target = c.target.as_ref().ok_or_else(|| EventError::new("correction.target", Problem::Missing))?;
            record_ref("correction.target", target)?;
            if pb::CorrectionKind::try_from(c.kind).ok().is_none_or(|k| k == pb::CorrectionKind::Unspecified) {
                return Err(EventError::new(
                    "correction.kind",
                    Problem::Invalid("must be did_not_occur or incorrect_data".into()),
                ));
            }
            required_text("correction.reason", &c.reason)?;
            list("correction.corrective", &c.corrective, MAX_PARENTS, record_ref)
        }
    }
}

fn org(
    prefix: &str,
    code: &str,
    org_name: &str,
    roles: &[i32],
    accreditations: &[pb::Accreditation],
    address: &str,
    region: &str,
) -> Result<()> {
    uscc(&format!("{prefix}.uscc"), code)?;
    required_name(&format!("{prefix}.name"), org_name)?;
    non_empty_list(&format!("{prefix}.roles"), roles, 6, |path, role| match pb::Role::try_from(*role) {
        Ok(pb::Role::Unspecified) | Err(_) => {
            Err(EventError::new(path, Problem::Invalid(format!("{role} is not a role"))))
        }
        Ok(_) => Ok(()),
    })?;
    list(&format!("{prefix}.accreditations"), accreditations, MAX_LIST, |path, a| {
        required_name(&format!("{path}.number"), &a.number)?;
        non_empty_list(&format!("{path}.gtin_prefixes"), &a.gtin_prefixes, MAX_LIST, |p, g| gtin_or_prefix(p, g))?;
        names(&format!("{path}.standards"), &a.standards)?;
        let from = date(&format!("{path}.valid_from"), &a.valid_from)?;
        let until = date(&format!("{path}.valid_until"), &a.valid_until)?;
        if until < from {
            return Err(EventError::new(
                format!("{path}.valid_until"),
                Problem::Invalid(format!("{until} is before valid_from {from}")),
            ));
        }
        Ok(())
    })?;
    text(&format!("{prefix}.address"), address)?;
    opt_region(&format!("{prefix}.region"), region)
}

fn movement(
    prefix: &str,
    items: &[pb::LotQuantity],
    source: &Option<pb::Party>,
    destination: &Option<pb::Party>,
    number: &str,
) -> Result<()> {
    non_empty_list(&format!("{prefix}.items"), items, MAX_LOTS, |path, l| lot_quantity(path, l, false))?;
    for (field, party) in [("source", source), ("destination", destination)] {
        let path = format!("{prefix}.{field}");
        let party = party.as_ref().ok_or_else(|| EventError::new(path.clone(), Problem::Missing))?;
        uscc(&format!("{path}.uscc"), &party.uscc)?;
        opt_gln(&format!("{path}.location_gln"), &party.location_gln)?;
    }
    name(&format!("{prefix}.shipment_number"), number)
}

fn test_item(path: &str, item: &pb::TestItem) -> Result<()> {
    required_name(&format!("{path}.name"), &item.name)?;
    name(&format!("{path}.value"), &item.value)?;
    name(&format!("{path}.unit"), &item.unit)?;
    name(&format!("{path}.limit"), &item.limit)?;
    if item.result != 0 {
        conclusion(&format!("{path}.result"), item.result)?;
    }
    Ok(())
}

fn conclusion(path: &str, value: i32) -> Result<()> {
    match pb::Conclusion::try_from(value) {
        Ok(pb::Conclusion::Conformant | pb::Conclusion::NonConformant) => Ok(()),
        _ => {
            Err(EventError::new(path, Problem::Invalid("must be conformant (合格) or non_conformant (不合格)".into())))
        }
    }
}

fn cert_ref(prefix: &str, key: &Option<pb::CertificateKey>) -> Result<()> {
    let path = format!("{prefix}.certificate");
    let key = key.as_ref().ok_or_else(|| EventError::new(path.clone(), Problem::Missing))?;
    certificate(&path, key)
}

fn certificate(path: &str, key: &pb::CertificateKey) -> Result<()> {
    uscc(&format!("{path}.issuer_uscc"), &key.issuer_uscc)?;
    required_name(&format!("{path}.number"), &key.number)?;
    if key.number.contains('/') || key.number.chars().any(char::is_control) {
        return Err(EventError::new(
            format!("{path}.number"),
            Problem::Invalid("must not contain '/' or control characters".into()),
        ));
    }
    Ok(())
}

/// Validates a product key and returns its parts.
pub fn product(path: &str, key: &pb::ProductKey) -> Result<(Gtin, Option<Lot>, Option<Serial>)> {
    let g = gtin(&format!("{path}.gtin"), &key.gtin)?;
    let lot = if key.lot.is_empty() {
        None
    } else {
        Some(Lot::parse(&key.lot).map_err(|e| id_err(&format!("{path}.lot"), e))?)
    };
    let serial = if key.serial.is_empty() {
        None
    } else {
        Some(Serial::parse(&key.serial).map_err(|e| id_err(&format!("{path}.serial"), e))?)
    };
    Ok((g, lot, serial))
}

fn lot_quantity(path: &str, item: &pb::LotQuantity, needs_lot: bool) -> Result<()> {
    let key = item.product.as_ref().ok_or_else(|| EventError::new(format!("{path}.product"), Problem::Missing))?;
    let (_, lot, _) = product(&format!("{path}.product"), key)?;
    if needs_lot && lot.is_none() {
        return Err(EventError::new(format!("{path}.product.lot"), Problem::Missing));
    }
    opt_quantity(&format!("{path}.quantity"), item.quantity.as_ref())
}

fn opt_quantity(path: &str, quantity: Option<&pb::Quantity>) -> Result<()> {
    let Some(q) = quantity else { return Ok(()) };
    if !q.value.is_finite() || q.value < 0.0 {
        return Err(EventError::new(
            format!("{path}.value"),
            Problem::Invalid(format!("{} is not a finite, non-negative amount", q.value)),
        ));
    }
    required_name(&format!("{path}.unit"), &q.unit)
}

fn record_ref(path: &str, r: &pb::RecordRef) -> Result<()> {
    LogId::from_slice(&r.log_id)
        .map_err(|e| EventError::new(format!("{path}.log_id"), Problem::Invalid(e.to_string())))?;
    EntryHash::from_slice(&r.entry_hash)
        .map_err(|e| EventError::new(format!("{path}.entry_hash"), Problem::Invalid(e.to_string())))?;
    Ok(())
}

fn public_key(path: &str, key: &[u8]) -> Result<()> {
    crate::signing::PublicKey::from_slice(key)
        .map(drop)
        .map_err(|e| EventError::new(path, Problem::Invalid(e.to_string())))
}

fn id_err(path: &str, e: IdError) -> EventError {
    EventError::new(path, Problem::Identifier(e))
}

fn uscc(path: &str, value: &str) -> Result<Uscc> {
    if value.is_empty() {
        return Err(EventError::new(path, Problem::Missing));
    }
    Uscc::parse(value).map_err(|e| id_err(path, e))
}

fn opt_uscc(path: &str, value: &str) -> Result<()> {
    if value.is_empty() { Ok(()) } else { uscc(path, value).map(drop) }
}

fn gtin(path: &str, value: &str) -> Result<Gtin> {
    if value.is_empty() {
        return Err(EventError::new(path, Problem::Missing));
    }
    Gtin::parse(value).map_err(|e| id_err(path, e))
}

/// A full GTIN, or a prefix of the 14-digit form (1 to 13 digits) naming a
/// range of products (a company prefix, say).
fn gtin_or_prefix(path: &str, value: &str) -> Result<()> {
    if value.len() == 14 {
        return gtin(path, value).map(drop);
    }
    if value.is_empty() || value.len() > 14 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EventError::new(
            path,
            Problem::Invalid(format!("{value:?} is neither a 14-digit GTIN nor a prefix of 1 to 13 digits")),
        ));
    }
    Ok(())
}

fn opt_gln(path: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    Gln::parse(value).map(drop).map_err(|e| id_err(path, e))
}

fn opt_region(path: &str, value: &str) -> Result<()> {
    if value.is_empty() || (value.len() == 6 && value.bytes().all(|b| b.is_ascii_digit())) {
        Ok(())
    } else {
        Err(EventError::new(
            path,
            Problem::Invalid(format!("{value:?} is not a 6-digit administrative division code (行政区划代码)")),
        ))
    }
}

fn date(path: &str, value: &str) -> Result<Date> {
    if value.is_empty() {
        return Err(EventError::new(path, Problem::Missing));
    }
    Date::parse_iso(value).map_err(|e| id_err(path, e))
}

fn opt_date(path: &str, value: &str) -> Result<()> {
    if value.is_empty() { Ok(()) } else { date(path, value).map(drop) }
}

fn date_order(prefix: &str, produced: &str, expires: &str) -> Result<()> {
    if let (Ok(p), Ok(e)) = (Date::parse_iso(produced), Date::parse_iso(expires))
        && e < p
    {
        return Err(EventError::new(
            format!("{prefix}.expiry_date"),
            Problem::Invalid(format!("{e} is before production_date {p}")),
        ));
    }
    Ok(())
}

fn bounded(path: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(EventError::new(path, Problem::TooLong { max, found: value.len() }));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(EventError::new(path, Problem::Invalid("contains control characters".into())));
    }
    Ok(())
}

fn name(path: &str, value: &str) -> Result<()> {
    bounded(path, value, MAX_NAME_BYTES)?;
    if value.contains('\n') {
        return Err(EventError::new(path, Problem::Invalid("must be a single line".into())));
    }
    Ok(())
}

fn required_name(path: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(EventError::new(path, Problem::Missing));
    }
    name(path, value)
}

fn text(path: &str, value: &str) -> Result<()> {
    bounded(path, value, MAX_TEXT_BYTES)
}

fn required_text(path: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(EventError::new(path, Problem::Missing));
    }
    text(path, value)
}

fn names(path: &str, values: &[String]) -> Result<()> {
    list(path, values, MAX_LIST, |p, v| required_name(p, v))
}

fn list<T>(path: &str, items: &[T], max: usize, mut check: impl FnMut(&str, &T) -> Result<()>) -> Result<()> {
    if items.len() > max {
        return Err(EventError::new(path, Problem::TooMany { max, found: items.len() }));
    }
    for (i, item) in items.iter().enumerate() {
        check(&format!("{path}[{i}]"), item)?;
    }
    Ok(())
}

fn non_empty_list<T>(path: &str, items: &[T], max: usize, check: impl FnMut(&str, &T) -> Result<()>) -> Result<()> {
    if items.is_empty() {
        return Err(EventError::new(path, Problem::Missing));
    }
    list(path, items, max, check)
}

/// A key under which an entry is found again: the indexes of the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexKey {
    /// Every record about any lot or item of a GTIN.
    Gtin(Gtin),
    /// Records about one lot of a GTIN.
    Lot(Gtin, Lot),
    /// Records about one item (serial) of a GTIN.
    Serial(Gtin, Serial),
    /// Records about one certificate: issuer and number.
    Certificate(Uscc, String),
    /// Records about or naming an organisation.
    Organisation(Uscc),
    /// Records naming this record (log id, sequence) as a parent.
    Parent(LogId, u64),
    /// Records signed by this key.
    Signer([u8; 32]),
}

/// The index keys of a valid event, derived from the event alone. The store
/// also adds [`IndexKey::Signer`] from the entry.
pub fn index_keys(event: &pb::Event) -> Vec<IndexKey> {
    let mut keys = Vec::new();
    let mut add_product = |keys: &mut Vec<IndexKey>, p: Option<&pb::ProductKey>| {
        let Some(p) = p else { return };
        let Ok(g) = Gtin::parse(&p.gtin) else { return };
        if let Ok(lot) = Lot::parse(&p.lot) {
            keys.push(IndexKey::Lot(g.clone(), lot));
        }
        if let Ok(serial) = Serial::parse(&p.serial) {
            keys.push(IndexKey::Serial(g.clone(), serial));
        }
        keys.push(IndexKey::Gtin(g));
    };
    let add_org = |keys: &mut Vec<IndexKey>, code: &str| {
        if let Ok(u) = Uscc::parse(code) {
            keys.push(IndexKey::Organisation(u));
        }
    };
    let add_cert = |keys: &mut Vec<IndexKey>, key: Option<&pb::CertificateKey>| {
        if let Some(key) = key
            && let Ok(u) = Uscc::parse(&key.issuer_uscc)
        {
            keys.push(IndexKey::Certificate(u, key.number.clone()));
        }
    };
    let add_ref = |keys: &mut Vec<IndexKey>, r: Option<&pb::RecordRef>| {
        if let Some(r) = r
            && let Ok(log) = LogId::from_slice(&r.log_id)
        {
            keys.push(IndexKey::Parent(log, r.seq));
        }
    };
    if let Some(subject) = event.subject.as_ref().and_then(|s| s.kind.as_ref()) {
        use pb::subject::Kind;
        match subject {
            Kind::Product(p) => add_product(&mut keys, Some(p)),
            Kind::Certificate(c) => add_cert(&mut keys, Some(c)),
            Kind::OrganisationUscc(u) => add_org(&mut keys, u),
        }
    }
    for parent in &event.parents {
        add_ref(&mut keys, Some(parent));
    }
    let lots = |keys: &mut Vec<IndexKey>,
                items: &[pb::LotQuantity],
                add: &mut dyn FnMut(&mut Vec<IndexKey>, Option<&pb::ProductKey>)| {
        for item in items {
            add(keys, item.product.as_ref());
        }
    };
    match event.body.as_ref() {
        None => {}
        Some(Body::Genesis(g)) => add_org(&mut keys, &g.operator_uscc),
        Some(Body::OrgRegistered(o)) => add_org(&mut keys, &o.uscc),
        Some(Body::OrgUpdated(o)) => add_org(&mut keys, &o.uscc),
        Some(Body::KeyRegistered(k)) => add_org(&mut keys, &k.uscc),
        Some(Body::KeyRevoked(_)) => {}
        Some(Body::Production(p)) => add_product(&mut keys, p.output.as_ref().and_then(|o| o.product.as_ref())),
        Some(Body::Transformation(t)) => {
            lots(&mut keys, &t.inputs, &mut add_product);
            lots(&mut keys, &t.outputs, &mut add_product);
        }
        Some(Body::Shipment(s)) => {
            lots(&mut keys, &s.items, &mut add_product);
            for party in [&s.source, &s.destination].into_iter().flatten() {
                add_org(&mut keys, &party.uscc);
            }
        }
        Some(Body::Receipt(r)) => {
            lots(&mut keys, &r.items, &mut add_product);
            for party in [&r.source, &r.destination].into_iter().flatten() {
                add_org(&mut keys, &party.uscc);
            }
        }
        Some(Body::Sale(s)) => lots(&mut keys, &s.items, &mut add_product),
        Some(Body::Inspection(i)) => {
            add_product(&mut keys, i.product.as_ref());
            add_org(&mut keys, &i.client_uscc);
        }
        Some(Body::SpotCheck(s)) => {
            add_product(&mut keys, s.product.as_ref());
            add_org(&mut keys, &s.inspected_uscc);
            add_org(&mut keys, &s.lab_uscc);
        }
        Some(Body::CertificateIssued(c)) => {
            add_cert(&mut keys, c.certificate.as_ref());
            add_org(&mut keys, &c.holder_uscc);
            add_org(&mut keys, &c.manufacturer_uscc);
            for p in &c.products {
                if let Ok(g) = Gtin::parse(&p.gtin) {
                    keys.push(IndexKey::Gtin(g));
                }
            }
        }
        Some(Body::CertificateSuspended(c)) => add_cert(&mut keys, c.certificate.as_ref()),
        Some(Body::CertificateRestored(c)) => add_cert(&mut keys, c.certificate.as_ref()),
        Some(Body::CertificateScopeReduced(c)) => add_cert(&mut keys, c.certificate.as_ref()),
        Some(Body::CertificateWithdrawn(c)) => add_cert(&mut keys, c.certificate.as_ref()),
        Some(Body::CertificateCancelled(c)) => add_cert(&mut keys, c.certificate.as_ref()),
        Some(Body::CertificateRenewed(c)) => add_cert(&mut keys, c.certificate.as_ref()),
        Some(Body::Recall(r)) => {
            if let Ok(g) = Gtin::parse(&r.gtin) {
                for lot in &r.lots {
                    if let Ok(lot) = Lot::parse(lot) {
                        keys.push(IndexKey::Lot(g.clone(), lot));
                    }
                }
                keys.push(IndexKey::Gtin(g));
            }
            add_org(&mut keys, &r.manufacturer_uscc);
        }
        Some(Body::RecallProgress(p)) => add_ref(&mut keys, p.recall.as_ref()),
        Some(Body::RecallClosed(c)) => add_ref(&mut keys, c.recall.as_ref()),
        Some(Body::Blacklisted(b)) => add_org(&mut keys, &b.uscc),
        Some(Body::Delisted(d)) => add_org(&mut keys, &d.uscc),
        Some(Body::Correction(c)) => add_ref(&mut keys, c.target.as_ref()),
    }
    keys.sort();
    keys.dedup();
    keys
}
