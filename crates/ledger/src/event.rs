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
/// Most documents, standards or test items in one list.
pub const MAX_LIST: usize = 256;
/// Most free attributes on one event.
pub const MAX_ATTRIBUTES: usize = 64;
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
    list("attributes", &event.attributes, MAX_ATTRIBUTES, |path, a| {
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
                    if r.serial_from.len() != r.serial_to.len() {
                        return Err(EventError::new(
                            "recall.serial_to",
                            Problem::Invalid(
                                "serial range ends must have the same length (they are compared as strings)".into(),
                            ),
                        ));
                    }
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
    /// Every registry record (genesis, organisations, keys, blacklist): what
    /// an offline verifier replays to know who may sign what.
    Registry,
    /// The records that create a lot (its production or transformation):
    /// a lot's origin without scanning every use of the lot.
    Creates(Gtin, Lot),
    /// Inspections and spot checks of a lot.
    Tests(Gtin, Lot),
    /// Recalls of a GTIN.
    RecallOf(Gtin),
    /// Certificates listing a GTIN or GTIN prefix (the digits as written).
    CertifiedFor(String),
    /// Corrections of the record (log id, sequence).
    Corrects(LogId, u64),
}

/// A decoded event without the self-contained checks of [`decode_event`],
/// for records already in a log (the checks ran when it was appended, and
/// a verdict re-runs them in its integrity check). `None` when the bytes
/// are not an event with a body.
pub fn decode_stored(bytes: &[u8]) -> Option<ValidEvent> {
    let event = pb::Event::decode(bytes).ok()?;
    let kind = EventKind::of(event.body.as_ref()?);
    Some(ValidEvent { event, kind })
}

/// The index keys of a valid event, derived from the event alone. The store
/// also adds [`IndexKey::Signer`] from the entry.
pub fn index_keys(event: &pb::Event) -> Vec<IndexKey> {
    let mut keys = Vec::new();
    let add_lot = |keys: &mut Vec<IndexKey>, p: Option<&pb::ProductKey>, make: fn(Gtin, Lot) -> IndexKey| {
        if let Some(p) = p
            && let (Ok(g), Ok(lot)) = (Gtin::parse(&p.gtin), Lot::parse(&p.lot))
        {
            keys.push(make(g, lot));
        }
    };
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
        Some(Body::Production(p)) => {
            let output = p.output.as_ref().and_then(|o| o.product.as_ref());
            add_product(&mut keys, output);
            add_lot(&mut keys, output, IndexKey::Creates);
        }
        Some(Body::Transformation(t)) => {
            lots(&mut keys, &t.inputs, &mut add_product);
            lots(&mut keys, &t.outputs, &mut add_product);
            for output in &t.outputs {
                add_lot(&mut keys, output.product.as_ref(), IndexKey::Creates);
            }
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
            add_lot(&mut keys, i.product.as_ref(), IndexKey::Tests);
            add_org(&mut keys, &i.client_uscc);
        }
        Some(Body::SpotCheck(s)) => {
            add_product(&mut keys, s.product.as_ref());
            add_lot(&mut keys, s.product.as_ref(), IndexKey::Tests);
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
                keys.push(IndexKey::CertifiedFor(p.gtin.clone()));
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
                keys.push(IndexKey::RecallOf(g.clone()));
                keys.push(IndexKey::Gtin(g));
            }
            add_org(&mut keys, &r.manufacturer_uscc);
        }
        Some(Body::RecallProgress(p)) => add_ref(&mut keys, p.recall.as_ref()),
        Some(Body::RecallClosed(c)) => add_ref(&mut keys, c.recall.as_ref()),
        Some(Body::Blacklisted(b)) => add_org(&mut keys, &b.uscc),
        Some(Body::Delisted(d)) => add_org(&mut keys, &d.uscc),
        Some(Body::Correction(c)) => {
            add_ref(&mut keys, c.target.as_ref());
            if let Some(target) = &c.target
                && let Ok(log) = LogId::from_slice(&target.log_id)
            {
                keys.push(IndexKey::Corrects(log, target.seq));
            }
        }
    }
    if matches!(
        event.body.as_ref(),
        Some(
            Body::Genesis(_)
                | Body::OrgRegistered(_)
                | Body::OrgUpdated(_)
                | Body::KeyRegistered(_)
                | Body::KeyRevoked(_)
                | Body::Blacklisted(_)
                | Body::Delisted(_)
        )
    ) {
        keys.push(IndexKey::Registry);
    }
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::testkit::{
        self, CERT_BODY, CERT_NUMBER, DISTRIBUTOR, GTIN_FORMULA, GTIN_POWDER, LAB, LOT, MANUFACTURER, REGULATOR,
        encode, example, placeholder_ref,
    };

    /// The body of `$event` as variant `$variant`, mutably; the tables below
    /// edit one field of an example each.
    macro_rules! body {
        ($event:expr, $variant:ident) => {
            match $event.body.as_mut() {
                Some(Body::$variant(body)) => body,
                other => panic!("expected a {} body, found {other:?}", stringify!($variant)),
            }
        };
    }

    fn gtin(code: &str) -> Gtin {
        Gtin::parse(code).unwrap_or_else(|e| panic!("{code}: {e}"))
    }

    fn lot(code: &str) -> Lot {
        Lot::parse(code).unwrap_or_else(|e| panic!("{code}: {e}"))
    }

    fn org(code: &str) -> IndexKey {
        IndexKey::Organisation(Uscc::parse(code).unwrap_or_else(|e| panic!("{code}: {e}")))
    }

    #[test]
    fn every_kind_has_a_valid_example() {
        for kind in EventKind::ALL {
            let event = example(kind);
            let bytes = encode(&event);
            let decoded = decode_event(&bytes);
            assert_eq!(decoded, Ok(ValidEvent { event: event.clone(), kind }), "{kind}");
            assert_eq!(decoded.map(|v| encode(&v.event)), Ok(bytes), "{kind}: re-encoding changed the bytes");
            assert_eq!(validate(&event), Ok(kind), "{kind}");
        }
    }

    #[test]
    fn kinds_follow_the_wire_order_and_have_distinct_names() {
        for (field_number, kind) in (20u64..).zip(EventKind::ALL) {
            let body_only = pb::Event { body: example(kind).body, ..Default::default() };
            assert_eq!(body_only.body.as_ref().map(EventKind::of), Some(kind));
            // Body tags 20..=44 are two-byte varints: (number << 3) | 2 for a
            // length-delimited field.
            let bytes = encode(&body_only);
            let tag = u64::from(bytes[0] & 0x7f) | (u64::from(bytes[1]) << 7);
            assert_eq!(tag, (field_number << 3) | 2, "{kind}");
            assert_eq!(kind.to_string(), kind.name());
            assert!(!kind.name_zh().is_empty(), "{kind}");
        }
        let names: BTreeSet<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
        let names_zh: BTreeSet<&str> = EventKind::ALL.iter().map(|k| k.name_zh()).collect();
        assert_eq!((names.len(), names_zh.len()), (EventKind::ALL.len(), EventKind::ALL.len()));
    }

    /// What a refusal must say: the problem's variant and, where it carries
    /// data, the data (for `Invalid`, a fragment of the message).
    #[derive(Debug)]
    enum Want {
        Missing,
        Invalid(&'static str),
        Id(IdError),
        TooLong { max: usize, found: usize },
        TooMany { max: usize, found: usize },
    }

    fn check_refused(name: &str, event: &pb::Event, field: &str, want: &Want) {
        let err = match decode_event(&encode(event)) {
            Err(err) => err,
            Ok(accepted) => panic!("{name}: accepted as {}", accepted.kind),
        };
        assert_eq!(err.field, field, "{name}: {err}");
        let matches = match (want, &err.problem) {
            (Want::Missing, Problem::Missing) => true,
            (Want::Invalid(fragment), Problem::Invalid(message)) => message.contains(fragment),
            (Want::Id(want), Problem::Identifier(got)) => want == got,
            (Want::TooLong { max, found }, Problem::TooLong { max: m, found: f }) => (max, found) == (m, f),
            (Want::TooMany { max, found }, Problem::TooMany { max: m, found: f }) => (max, found) == (m, f),
            _ => false,
        };
        assert!(matches, "{name}: expected {want:?}, got {:?}", err.problem);
        // The bytes were canonical, so validating the message directly must
        // give the same answer.
        assert_eq!(validate(event), Err(err), "{name}");
    }

    fn gtin_check(expected: char, found: char) -> Want {
        Want::Id(IdError::CheckDigit { kind: "GTIN", check: "check digit", expected, found })
    }

    fn gln_check(expected: char, found: char) -> Want {
        Want::Id(IdError::CheckDigit { kind: "GLN", check: "check digit", expected, found })
    }

    /// The identity point: a valid encoding of a small-order (weak) key.
    fn weak_key() -> Vec<u8> {
        let mut key = vec![0u8; 32];
        key[0] = 1;
        key
    }

    #[test]
    fn bad_events_name_the_field_and_the_problem() {
        use EventKind as K;
        type Edit = fn(&mut pb::Event);
        let cases: &[(&str, EventKind, Edit, &str, Want)] = &[
            ("no body", K::Shipment, |e| e.body = None, "body", Want::Missing),
            ("no event time", K::Shipment, |e| e.event_time = None, "event_time", Want::Missing),
            (
                "event in 1970",
                K::Shipment,
                |e| e.event_time = Some(pb::EventTime { unix_millis: 0, offset_minutes: 480 }),
                "event_time.unix_millis",
                Want::Invalid("outside 2000-01-01 .. 2100-01-01"),
            ),
            (
                "event a millisecond before 2000",
                K::Production,
                |e| e.event_time = Some(pb::EventTime { unix_millis: MIN_EVENT_MILLIS - 1, offset_minutes: 0 }),
                "event_time.unix_millis",
                Want::Invalid("outside"),
            ),
            (
                "event on 2100-01-01",
                K::Sale,
                |e| e.event_time = Some(pb::EventTime { unix_millis: MAX_EVENT_MILLIS, offset_minutes: 0 }),
                "event_time.unix_millis",
                Want::Invalid("outside"),
            ),
            (
                "offset of +14:01",
                K::Shipment,
                |e| e.event_time.get_or_insert_default().offset_minutes = 841,
                "event_time.offset_minutes",
                Want::Invalid("not a zone offset"),
            ),
            (
                "offset of -14:01",
                K::Recall,
                |e| e.event_time.get_or_insert_default().offset_minutes = -841,
                "event_time.offset_minutes",
                Want::Invalid("not a zone offset"),
            ),
            ("no subject", K::Shipment, |e| e.subject = None, "subject", Want::Missing),
            (
                "empty subject",
                K::Inspection,
                |e| e.subject = Some(pb::Subject { kind: None }),
                "subject.kind",
                Want::Missing,
            ),
            (
                "subject GTIN check digit",
                K::Production,
                |e| {
                    e.subject = Some(pb::Subject {
                        kind: Some(pb::subject::Kind::Product(pb::ProductKey {
                            gtin: "09520123456789".into(),
                            ..Default::default()
                        })),
                    })
                },
                "subject.product.gtin",
                gtin_check('8', '9'),
            ),
            (
                "subject certificate without issuer",
                K::CertificateSuspended,
                |e| {
                    e.subject = Some(pb::Subject {
                        kind: Some(pb::subject::Kind::Certificate(pb::CertificateKey {
                            issuer_uscc: String::new(),
                            number: CERT_NUMBER.into(),
                        })),
                    })
                },
                "subject.certificate.issuer_uscc",
                Want::Missing,
            ),
            (
                "GTIN check digit in the second shipped item",
                K::Shipment,
                |e| body!(e, Shipment).items[1].product.get_or_insert_default().gtin = "06931234567898".into(),
                "shipment.items[1].product.gtin",
                gtin_check('9', '8'),
            ),
            (
                "lot of 21 characters",
                K::Production,
                |e| {
                    body!(e, Production).output.get_or_insert_default().product.get_or_insert_default().lot =
                        "L20250615A-ABCDEFGHIJ".into()
                },
                "production.output.product.lot",
                Want::Id(IdError::Length { kind: "lot", expected: "1 to 20 characters", found: 21 }),
            ),
            (
                "serial of 21 characters",
                K::Sale,
                |e| body!(e, Sale).items[0].product.get_or_insert_default().serial = "123456789012345678901".into(),
                "sale.items[0].product.serial",
                Want::Id(IdError::Length { kind: "serial", expected: "1 to 20 characters", found: 21 }),
            ),
            (
                "transformation output without a lot",
                K::Transformation,
                |e| body!(e, Transformation).outputs[0].product.get_or_insert_default().lot.clear(),
                "transformation.outputs[0].product.lot",
                Want::Missing,
            ),
            (
                "65 parents",
                K::Receipt,
                |e| e.parents = vec![placeholder_ref(); MAX_PARENTS + 1],
                "parents",
                Want::TooMany { max: 64, found: 65 },
            ),
            (
                "parent entry hash of 31 bytes",
                K::Shipment,
                |e| {
                    e.parents[0].entry_hash.pop();
                },
                "parents[0].entry_hash",
                Want::Invalid("must be 32 bytes, found 31"),
            ),
            (
                "correction target log id of 33 bytes",
                K::Correction,
                |e| body!(e, Correction).target.get_or_insert_default().log_id.push(0),
                "correction.target.log_id",
                Want::Invalid("must be 32 bytes, found 33"),
            ),
            (
                "corrective record without hash",
                K::Correction,
                |e| body!(e, Correction).corrective[0].entry_hash.clear(),
                "correction.corrective[0].entry_hash",
                Want::Invalid("must be 32 bytes, found 0"),
            ),
            (
                "recall progress without the recall",
                K::RecallProgress,
                |e| body!(e, RecallProgress).recall = None,
                "recall_progress.recall",
                Want::Missing,
            ),
            (
                "recall reason over 2,000 bytes",
                K::Recall,
                // 667 three-byte characters: 2,001 bytes but only 667 characters.
                |e| body!(e, Recall).reason = "召".repeat(667),
                "recall.reason",
                Want::TooLong { max: 2_000, found: 2_001 },
            ),
            (
                "attribute value over 2,000 bytes",
                K::Shipment,
                |e| e.attributes[0].value = "x".repeat(MAX_TEXT_BYTES + 1),
                "attributes[0].value",
                Want::TooLong { max: 2_000, found: 2_001 },
            ),
            (
                "organisation name with a newline",
                K::OrgRegistered,
                |e| body!(e, OrgRegistered).name = "深圳市计量\n质量检测研究院".into(),
                "org_registered.name",
                Want::Invalid("single line"),
            ),
            (
                "organisation name over 200 bytes",
                K::OrgUpdated,
                |e| body!(e, OrgUpdated).name = "乳".repeat(67),
                "org_updated.name",
                Want::TooLong { max: 200, found: 201 },
            ),
            (
                "biz_step with a bell character",
                K::Shipment,
                |e| e.biz_step = "shipping\u{7}".into(),
                "biz_step",
                Want::Invalid("control characters"),
            ),
            (
                "blank person",
                K::KeyRegistered,
                |e| body!(e, KeyRegistered).person = "  ".into(),
                "key_registered.person",
                Want::Missing,
            ),
            (
                "holder USCC with a wrong check character",
                K::CertificateIssued,
                |e| body!(e, CertificateIssued).holder_uscc = "91310000MA1K2Q7A5M".into(),
                "certificate_issued.holder_uscc",
                Want::Id(IdError::CheckDigit { kind: "USCC", check: "check character", expected: 'L', found: 'M' }),
            ),
            (
                "manufacturer USCC of 17 characters",
                K::CertificateIssued,
                |e| body!(e, CertificateIssued).manufacturer_uscc = "92320900MA1N3T5C5".into(),
                "certificate_issued.manufacturer_uscc",
                Want::Id(IdError::Length { kind: "USCC", expected: "18 characters", found: 17 }),
            ),
            (
                "certificate valid until the day before issue",
                K::CertificateIssued,
                |e| body!(e, CertificateIssued).valid_until = "2025-06-14".into(),
                "certificate_issued.valid_until",
                Want::Invalid("before issued_on 2025-06-15"),
            ),
            (
                "certified product prefix with a letter O",
                K::CertificateIssued,
                |e| body!(e, CertificateIssued).products[0].gtin = "0952O12".into(),
                "certificate_issued.products[0].gtin",
                Want::Invalid("neither a 14-digit GTIN nor a prefix"),
            ),
            (
                "certificate number with a slash",
                K::CertificateWithdrawn,
                |e| body!(e, CertificateWithdrawn).certificate.get_or_insert_default().number = "CQC/2025".into(),
                "certificate_withdrawn.certificate.number",
                Want::Invalid("'/'"),
            ),
            (
                "cancellation without the certificate",
                K::CertificateCancelled,
                |e| body!(e, CertificateCancelled).certificate = None,
                "certificate_cancelled.certificate",
                Want::Missing,
            ),
            (
                "renewal date with slashes",
                K::CertificateRenewed,
                |e| body!(e, CertificateRenewed).valid_until = "2031/06/14".into(),
                "certificate_renewed.valid_until",
                Want::Id(IdError::BadChar {
                    kind: "date",
                    position: 5,
                    ch: '/',
                    allowed: "digits in the form YYYY-MM-DD",
                }),
            ),
            (
                "scope reduced by nothing",
                K::CertificateScopeReduced,
                |e| body!(e, CertificateScopeReduced).removed_gtins.clear(),
                "certificate_scope_reduced.removed_gtins",
                Want::Missing,
            ),
            (
                "risk class 0",
                K::Recall,
                |e| body!(e, Recall).risk_class = 0,
                "recall.risk_class",
                Want::Invalid("not a risk class"),
            ),
            (
                "risk class 4",
                K::Recall,
                |e| body!(e, Recall).risk_class = 4,
                "recall.risk_class",
                Want::Invalid("not a risk class"),
            ),
            (
                "recall initiator unspecified",
                K::Recall,
                |e| body!(e, Recall).initiator = pb::RecallInitiator::Unspecified.into(),
                "recall.initiator",
                Want::Invalid("voluntary or ordered"),
            ),
            (
                "recall initiator 3, not in the enum",
                K::Recall,
                |e| body!(e, Recall).initiator = 3,
                "recall.initiator",
                Want::Invalid("voluntary or ordered"),
            ),
            (
                "serial range reversed",
                K::Recall,
                |e| {
                    let recall = body!(e, Recall);
                    recall.serial_from = "SN000200".into();
                    recall.serial_to = "SN000100".into();
                },
                "recall.serial_to",
                Want::Invalid("ends before it starts"),
            ),
            (
                "serial range without a start",
                K::Recall,
                |e| body!(e, Recall).serial_to = "SN000100".into(),
                "recall.serial_from",
                Want::Missing,
            ),
            (
                "recall date range reversed",
                K::Recall,
                |e| {
                    body!(e, Recall).dates = Some(pb::DateRange {
                        kind: pb::DateKind::Production.into(),
                        from: "2025-06-30".into(),
                        to: "2025-06-01".into(),
                    })
                },
                "recall.dates.to",
                Want::Invalid("is before 2025-06-30"),
            ),
            (
                "recall date range of unspecified kind",
                K::Recall,
                |e| {
                    body!(e, Recall).dates =
                        Some(pb::DateRange { kind: 0, from: "2025-06-01".into(), to: "2025-06-30".into() })
                },
                "recall.dates.kind",
                Want::Invalid("production or expiry"),
            ),
            (
                "empty recall region",
                K::Recall,
                |e| body!(e, Recall).regions[1].clear(),
                "recall.regions[1]",
                Want::Missing,
            ),
            (
                "recall region of 5 digits",
                K::Recall,
                |e| body!(e, Recall).regions[0] = "44030".into(),
                "recall.regions[0]",
                Want::Invalid("6-digit administrative division code"),
            ),
            (
                "weak public key registered",
                K::KeyRegistered,
                |e| body!(e, KeyRegistered).public_key = weak_key(),
                "key_registered.public_key",
                Want::Invalid("small order"),
            ),
            (
                "revoked public key of 31 bytes",
                K::KeyRevoked,
                |e| body!(e, KeyRevoked).public_key = vec![7; 31],
                "key_revoked.public_key",
                Want::Invalid("must be 32 bytes, found 31"),
            ),
            (
                "weak root authority key",
                K::Genesis,
                |e| body!(e, Genesis).root_authority_keys.push(weak_key()),
                "genesis.root_authority_keys[1]",
                Want::Invalid("small order"),
            ),
            (
                "genesis without root authority",
                K::Genesis,
                |e| body!(e, Genesis).root_authority_keys.clear(),
                "genesis.root_authority_keys",
                Want::Missing,
            ),
            (
                "genesis origin with a space",
                K::Genesis,
                |e| body!(e, Genesis).origin = "qtrace.example/sh amr".into(),
                "genesis.origin",
                Want::Invalid("whitespace"),
            ),
            (
                "accreditation dates reversed",
                K::OrgRegistered,
                |e| body!(e, OrgRegistered).accreditations[0].valid_until = "2023-12-31".into(),
                "org_registered.accreditations[0].valid_until",
                Want::Invalid("before valid_from 2024-01-01"),
            ),
            (
                "accreditation prefix with a letter",
                K::OrgRegistered,
                |e| body!(e, OrgRegistered).accreditations[0].gtin_prefixes[1] = "069312A".into(),
                "org_registered.accreditations[0].gtin_prefixes[1]",
                Want::Invalid("neither a 14-digit GTIN nor a prefix"),
            ),
            (
                "unknown role value 9",
                K::OrgRegistered,
                |e| body!(e, OrgRegistered).roles.push(9),
                "org_registered.roles[1]",
                Want::Invalid("9 is not a role"),
            ),
            (
                "role unspecified",
                K::OrgUpdated,
                |e| body!(e, OrgUpdated).roles = vec![0],
                "org_updated.roles[0]",
                Want::Invalid("0 is not a role"),
            ),
            (
                "no roles",
                K::OrgRegistered,
                |e| body!(e, OrgRegistered).roles.clear(),
                "org_registered.roles",
                Want::Missing,
            ),
            (
                "organisation region with a letter",
                K::OrgRegistered,
                |e| body!(e, OrgRegistered).region = "44030X".into(),
                "org_registered.region",
                Want::Invalid("6-digit"),
            ),
            (
                "NaN quantity",
                K::Shipment,
                |e| body!(e, Shipment).items[0].quantity.get_or_insert_default().value = f64::NAN,
                "shipment.items[0].quantity.value",
                Want::Invalid("not a finite, non-negative amount"),
            ),
            (
                "negative quantity",
                K::Receipt,
                |e| body!(e, Receipt).items[0].quantity.get_or_insert_default().value = -600.0,
                "receipt.items[0].quantity.value",
                Want::Invalid("not a finite, non-negative amount"),
            ),
            (
                "infinite quantity recovered",
                K::RecallProgress,
                |e| body!(e, RecallProgress).quantity_recovered.get_or_insert_default().value = f64::INFINITY,
                "recall_progress.quantity_recovered.value",
                Want::Invalid("not a finite, non-negative amount"),
            ),
            (
                "quantity without unit",
                K::Transformation,
                |e| body!(e, Transformation).inputs[0].quantity.get_or_insert_default().unit.clear(),
                "transformation.inputs[0].quantity.unit",
                Want::Missing,
            ),
            (
                "bad region code",
                K::Production,
                |e| e.location.get_or_insert_default().region = "31000".into(),
                "location.region",
                Want::Invalid("6-digit administrative division code"),
            ),
            (
                "read point GLN check digit",
                K::Production,
                |e| e.location.get_or_insert_default().read_point_gln = "6931234000012".into(),
                "location.read_point_gln",
                gln_check('3', '2'),
            ),
            (
                "receipt source GLN check digit",
                K::Receipt,
                |e| body!(e, Receipt).source.get_or_insert_default().location_gln = "0614141000013".into(),
                "receipt.source.location_gln",
                gln_check('2', '3'),
            ),
            (
                "expiry before production",
                K::Production,
                |e| body!(e, Production).expiry_date = "2025-06-14".into(),
                "production.expiry_date",
                Want::Invalid("before production_date 2025-06-15"),
            ),
            (
                "inspection conclusion unspecified",
                K::Inspection,
                |e| body!(e, Inspection).conclusion = 0,
                "inspection.conclusion",
                Want::Invalid("conformant"),
            ),
            (
                "test item result 7",
                K::Inspection,
                |e| body!(e, Inspection).items[1].result = 7,
                "inspection.items[1].result",
                Want::Invalid("conformant"),
            ),
            (
                "spot check without the inspected party",
                K::SpotCheck,
                |e| body!(e, SpotCheck).inspected_uscc.clear(),
                "spot_check.inspected_uscc",
                Want::Missing,
            ),
            (
                "blacklisting that ends before it starts",
                K::Blacklisted,
                |e| body!(e, Blacklisted).until = "2025-06-01".into(),
                "blacklisted.until",
                Want::Invalid("before listed_on 2025-06-15"),
            ),
            (
                "delisting without reason",
                K::Delisted,
                |e| body!(e, Delisted).reason.clear(),
                "delisted.reason",
                Want::Missing,
            ),
            (
                "correction kind unspecified",
                K::Correction,
                |e| body!(e, Correction).kind = pb::CorrectionKind::Unspecified.into(),
                "correction.kind",
                Want::Invalid("did_not_occur or incorrect_data"),
            ),
            ("sale of nothing", K::Sale, |e| body!(e, Sale).items.clear(), "sale.items", Want::Missing),
            (
                "shipment without destination",
                K::Shipment,
                |e| body!(e, Shipment).destination = None,
                "shipment.destination",
                Want::Missing,
            ),
            (
                "document hash of 16 bytes",
                K::Shipment,
                |e| e.documents[0].sha256.truncate(16),
                "documents[0].sha256",
                Want::Invalid("must be empty or 32 bytes, found 16"),
            ),
            (
                "attribute without name",
                K::Shipment,
                |e| e.attributes[0].name.clear(),
                "attributes[0].name",
                Want::Missing,
            ),
            (
                "65 attributes",
                K::Shipment,
                |e| {
                    e.attributes =
                        vec![pb::Attribute { name: "批次 batch".into(), value: "1".into() }; MAX_ATTRIBUTES + 1]
                },
                "attributes",
                Want::TooMany { max: 64, found: 65 },
            ),
        ];
        assert!(cases.len() >= 30);
        for (name, kind, edit, field, want) in cases {
            let mut event = example(*kind);
            edit(&mut event);
            check_refused(name, &event, field, want);
        }
    }

    /// The wire contract (event.proto, `Event.attributes`) says "Free
    /// attributes, at most 64", but `validate` lets up to [`MAX_LIST`] (256)
    /// through.
    #[test]
    fn attributes_are_limited_to_what_the_proto_promises() {
        let mut event = example(EventKind::Shipment);
        event.attributes = vec![pb::Attribute { name: "批次 batch".into(), value: "1".into() }; 65];
        check_refused("65 attributes", &event, "attributes", &Want::TooMany { max: 64, found: 65 });
    }

    /// event.proto says the ends of a recall's serial range are "compared as
    /// strings of equal length"; ends of different lengths make the range
    /// meaningless ("100" sorts before "99", so this reversed range passes
    /// the order check) and must be refused.
    #[test]
    fn serial_range_ends_must_have_equal_length() {
        let mut event = example(EventKind::Recall);
        let recall = body!(event, Recall);
        recall.serial_from = "100".into();
        recall.serial_to = "99".into();
        check_refused("serial range 100 ..= 99", &event, "recall.serial_to", &Want::Invalid("length"));
    }

    fn non_canonical() -> Result<ValidEvent, EventError> {
        Err(EventError { field: "event".into(), problem: Problem::NonCanonical })
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        let event = pb::Event { nonce: 7, ..example(EventKind::Shipment) };
        let canonical = encode(&event);
        // Fields 1 to 8, the nonce (field 9) and the body (field 27) can be
        // encoded apart and concatenated, which is how protobuf merges.
        let head = encode(&pb::Event { nonce: 0, body: None, ..event.clone() });
        let body = encode(&pb::Event { body: event.body.clone(), ..Default::default() });
        let nonce = [0x48, 0x07];
        assert_eq!([&head[..], &nonce, &body].concat(), canonical);
        // The event time (field 1) apart from everything after it.
        let time = encode(&pb::Event { event_time: event.event_time, ..Default::default() });
        let after_time = encode(&pb::Event { event_time: None, ..event.clone() });
        assert_eq!([&time[..], &after_time].concat(), canonical);
        // The event time (with offset 0) written with its zero offset
        // spelled out; the canonical form leaves a zero field out.
        let millis = event.event_time.as_ref().map_or(0, |t| t.unix_millis);
        let zero_offset_time = pb::EventTime { unix_millis: millis, offset_minutes: 0 };
        let mut time_fields = vec![0x08];
        prost::encoding::encode_varint(millis as u64, &mut time_fields);
        assert_eq!(zero_offset_time.encode_to_vec(), time_fields);
        time_fields.extend_from_slice(&[0x10, 0x00]);
        let explicit_zero = [&[0x0a, time_fields.len() as u8][..], &time_fields, &after_time].concat();
        let canonical_zero = encode(&pb::Event { event_time: Some(zero_offset_time), ..event.clone() });
        assert_eq!(decode_event(&canonical_zero).map(|v| v.kind), Ok(EventKind::Shipment));

        let cases: &[(&str, Vec<u8>)] = &[
            ("unknown field 99 appended", [&canonical[..], &[0x98, 0x06, 0x01]].concat()),
            ("unknown length-delimited field 15 appended", [&canonical[..], &[0x7a, 0x02, b'h', b'i']].concat()),
            ("nonce 0 written explicitly", [&head[..], &[0x48, 0x00], &body].concat()),
            ("nonce written twice", [&head[..], &nonce, &nonce, &body].concat()),
            ("nonce as an over-long varint", [&head[..], &[0x48, 0x87, 0x00], &body].concat()),
            ("event time written twice", [&time[..], &canonical].concat()),
            ("body before the common fields", [&body[..], &head, &nonce].concat()),
            ("zero offset written inside the event time", explicit_zero),
        ];
        for (name, bytes) in cases {
            assert_eq!(decode_event(bytes), non_canonical(), "{name}");
        }
    }

    #[test]
    fn sizes_and_garbage_are_refused() {
        let event_error = |problem| Err(EventError { field: "event".into(), problem });
        assert_eq!(decode_event(&[]), event_error(Problem::Empty));
        assert_eq!(
            decode_event(&vec![0u8; MAX_EVENT_BYTES + 1]),
            event_error(Problem::TooLarge { found: MAX_EVENT_BYTES + 1 })
        );
        // A real event just at the limit is accepted and one byte more is
        // refused for its size alone: grow the last attribute until the
        // encoding is exactly MAX_EVENT_BYTES long.
        let mut event = example(EventKind::Shipment);
        event.attributes =
            vec![pb::Attribute { name: "检测记录 test record".into(), value: "记".repeat(666) }; 32];
        event.attributes.push(pb::Attribute { name: "备注 note".into(), value: String::new() });
        let base = encode(&event).len();
        assert!(base < MAX_EVENT_BYTES && MAX_EVENT_BYTES - base < MAX_TEXT_BYTES, "base size {base}");
        let mut pad = MAX_EVENT_BYTES - base;
        let at_limit = loop {
            if let Some(last) = event.attributes.last_mut() {
                last.value = "x".repeat(pad);
            }
            let bytes = encode(&event);
            if bytes.len() <= MAX_EVENT_BYTES {
                break bytes;
            }
            pad -= bytes.len() - MAX_EVENT_BYTES;
        };
        assert_eq!(at_limit.len(), MAX_EVENT_BYTES);
        assert_eq!(decode_event(&at_limit).map(|v| v.kind), Ok(EventKind::Shipment));
        if let Some(last) = event.attributes.last_mut() {
            last.value.push('x');
        }
        let over = encode(&event);
        assert_eq!(decode_event(&over), event_error(Problem::TooLarge { found: MAX_EVENT_BYTES + 1 }));

        let garbage: &[(&str, &[u8])] = &[
            ("0xff bytes", &[0xff; 12]),
            ("length beyond the end", &[0x0a, 0x05, 0x08]),
            ("invalid UTF-8 in biz_step", &[0x2a, 0x02, 0xff, 0xfe]),
            ("wire type 7", &[0x0f, 0x00]),
            ("end of a group never started", &[0x0c]),
            ("varint of 11 bytes", &[0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            ("field number 0", &[0x00, 0x01]),
        ];
        for (name, bytes) in garbage {
            let got = decode_event(bytes);
            assert!(
                matches!(&got, Err(EventError { field, problem: Problem::Decode(_) }) if field == "event"),
                "{name}: {got:?}"
            );
        }
    }

    #[test]
    fn index_keys_of_examples() {
        use EventKind as K;
        let formula = gtin(GTIN_FORMULA);
        let parent = IndexKey::Parent(LogId([0x5a; 32]), 41);
        let cert = IndexKey::Certificate(Uscc::parse(CERT_BODY).unwrap_or_else(|e| panic!("{e}")), CERT_NUMBER.into());
        let cases: Vec<(EventKind, Vec<IndexKey>)> = vec![
            (
                K::Shipment,
                vec![
                    IndexKey::Gtin(formula.clone()),
                    IndexKey::Gtin(gtin(GTIN_POWDER)),
                    IndexKey::Lot(formula.clone(), lot(LOT)),
                    IndexKey::Lot(gtin(GTIN_POWDER), lot("B7")),
                    org(MANUFACTURER),
                    org(DISTRIBUTOR),
                    parent.clone(),
                ],
            ),
            // The certificate, holder and manufacturer (the same
            // organisation, once), each full GTIN it covers, the report it
            // rests on.
            (
                K::CertificateIssued,
                vec![
                    cert.clone(),
                    org(MANUFACTURER),
                    IndexKey::Gtin(formula.clone()),
                    IndexKey::CertifiedFor(GTIN_FORMULA.into()),
                    parent.clone(),
                ],
            ),
            (K::CertificateSuspended, vec![cert.clone()]),
            // A scope reduction is found under the certificate only, not
            // under the GTINs it removes.
            (K::CertificateScopeReduced, vec![cert]),
            (
                K::Recall,
                vec![
                    IndexKey::Gtin(formula.clone()),
                    IndexKey::RecallOf(formula.clone()),
                    IndexKey::Lot(formula.clone(), lot(LOT)),
                    IndexKey::Lot(formula.clone(), lot("L20250616B")),
                    org(MANUFACTURER),
                ],
            ),
            // The corrected record is found as a parent and under the
            // corrections key; corrective records are not indexed.
            (
                K::Correction,
                vec![
                    IndexKey::Gtin(formula.clone()),
                    IndexKey::Lot(formula.clone(), lot(LOT)),
                    parent.clone(),
                    IndexKey::Corrects(LogId([0x5a; 32]), 41),
                ],
            ),
            (K::RecallProgress, vec![IndexKey::Gtin(formula.clone()), parent]),
            (
                K::Sale,
                vec![
                    IndexKey::Gtin(formula.clone()),
                    IndexKey::Lot(formula.clone(), lot(LOT)),
                    IndexKey::Serial(formula.clone(), Serial::parse("12345").unwrap_or_else(|e| panic!("{e}"))),
                ],
            ),
            (
                K::SpotCheck,
                vec![
                    IndexKey::Gtin(formula.clone()),
                    IndexKey::Lot(formula.clone(), lot(LOT)),
                    IndexKey::Tests(formula, lot(LOT)),
                    org(MANUFACTURER),
                    org(LAB),
                ],
            ),
            // Registry records are also found under the registry key, which
            // is what an offline verifier replays.
            (K::Genesis, vec![org(REGULATOR), IndexKey::Registry]),
            (K::KeyRevoked, vec![org(MANUFACTURER), IndexKey::Registry]),
            (K::OrgRegistered, vec![org(LAB), IndexKey::Registry]),
            (K::Delisted, vec![org(testkit::MANUFACTURER_2), IndexKey::Registry]),
        ];
        for (kind, mut want) in cases {
            want.sort();
            assert_eq!(index_keys(&example(kind)), want, "{kind}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2_048)) {
            let _ = decode_event(&bytes);
        }

        /// Whatever a corrupted or truncated valid event decodes to, if it
        /// is accepted at all its bytes are the canonical encoding.
        #[test]
        fn accepted_bytes_are_canonical(
            kind in 0..EventKind::ALL.len(),
            position: prop::sample::Index,
            byte: u8,
            keep: prop::sample::Index,
        ) {
            let mut bytes = encode(&example(EventKind::ALL[kind]));
            let at = position.index(bytes.len());
            bytes[at] = byte;
            bytes.truncate(keep.index(bytes.len()) + 1);
            if let Ok(accepted) = decode_event(&bytes) {
                prop_assert_eq!(encode(&accepted.event), bytes);
            }
        }

        #[test]
        fn valid_events_round_trip(
            kind in 0..EventKind::ALL.len(),
            nonce: u64,
            unix_millis in MIN_EVENT_MILLIS..MAX_EVENT_MILLIS,
            offset_minutes in -840i32..=840,
            note in "\\PC{0,60}",
            new_lot in "[A-Za-z0-9!%&()*+,./:;<=>?_-]{1,20}",
        ) {
            let kind = EventKind::ALL[kind];
            let mut event = example(kind);
            event.nonce = nonce;
            event.event_time = Some(pb::EventTime { unix_millis, offset_minutes });
            event.attributes.push(pb::Attribute { name: "备注 note".into(), value: note });
            if let Some(pb::Subject { kind: Some(pb::subject::Kind::Product(p)) }) = event.subject.as_mut()
                && !p.lot.is_empty()
            {
                p.lot = new_lot;
            }
            let bytes = encode(&event);
            let decoded = decode_event(&bytes);
            prop_assert_eq!(&decoded, &Ok(ValidEvent { event, kind }));
            prop_assert_eq!(decoded.map(|v| encode(&v.event)), Ok(bytes));
        }
    }
}
