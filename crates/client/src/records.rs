//! Building records: one function per `qtrace` command, each taking typed
//! arguments (identifiers that already parsed) and returning the
//! [`pb::Event`] to sign, and [`seal`], which encodes, validates and signs it.
//!
//! The builders fill the EPCIS "why" (business step and disposition) from
//! the Core Business Vocabulary so that records read the same as EPCIS
//! events: production `commissioning`/`active`, shipment
//! `shipping`/`in_transit`, receipt `receiving`/`in_progress`, sale
//! `retail_selling`/`retail_sold`, inspection `inspecting` (or `sampling`
//! when destructive) with `conformant`/`non_conformant`, recall `recalled`.
//!
//! Free-text arguments are `&str`/`String`, where empty means "not given",
//! as in the protobuf. Lengths and control characters are not checked here:
//! [`seal`] runs the ledger's own [`decode_event`] on the encoded bytes, so a
//! user sees exactly the error the node would give.

use prost::Message as _;

use crate::event::{EventError, ValidEvent, decode_event};
use crate::hash::{EntryHash, LogId};
use crate::ids::{Date, Gln, Gtin, Lot, ProductCode, Uscc};
use crate::pb::{self, event::Body, subject::Kind};
use crate::signing::{PublicKey, SecretKey};

/// What every record carries besides its body: when it happened (as the
/// signer claims) and a nonce that tells apart two otherwise identical
/// records by one signer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    pub time: pb::EventTime,
    /// 0 means none (it is then not encoded).
    pub nonce: u64,
}

/// A reference to a record of some log, as another record names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    pub log_id: LogId,
    pub seq: u64,
    pub entry_hash: EntryHash,
}

impl RecordRef {
    pub fn to_pb(&self) -> pb::RecordRef {
        pb::RecordRef { log_id: self.log_id.0.to_vec(), seq: self.seq, entry_hash: self.entry_hash.0.to_vec() }
    }
}

/// A lot of a product: the GTIN and the lot number (批号).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotKey {
    pub gtin: Gtin,
    pub lot: Lot,
}

impl LotKey {
    pub fn to_pb(&self) -> pb::ProductKey {
        pb::ProductKey { gtin: self.gtin.to_string(), lot: self.lot.to_string(), serial: String::new() }
    }
}

/// The product key of a printed product code (its expiry date is not part
/// of the key).
pub fn product_key(code: &ProductCode) -> pb::ProductKey {
    pb::ProductKey {
        gtin: code.gtin.to_string(),
        lot: code.lot.as_ref().map(Lot::to_string).unwrap_or_default(),
        serial: code.serial.as_ref().map(|s| s.to_string()).unwrap_or_default(),
    }
}

/// The items in their first order, each once: a list given twice on the
/// command line means the same thing as given once. Lists are short, so the
/// quadratic scan is fine.
fn unique<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn refs(refs: &[RecordRef]) -> Vec<pb::RecordRef> {
    unique(refs.iter().map(RecordRef::to_pb))
}

fn opt_text<T: ToString>(value: Option<&T>) -> String {
    value.map(T::to_string).unwrap_or_default()
}

fn event(header: &Header, subject: Kind, body: Body) -> pb::Event {
    pb::Event {
        event_time: Some(header.time),
        subject: Some(pb::Subject { kind: Some(subject) }),
        nonce: header.nonce,
        body: Some(body),
        ..Default::default()
    }
}

fn with_why(mut event: pb::Event, biz_step: &str, disposition: &str) -> pb::Event {
    event.biz_step = biz_step.to_owned();
    event.disposition = disposition.to_owned();
    event
}

fn with_parents(mut event: pb::Event, parents: &[RecordRef]) -> pb::Event {
    event.parents = refs(parents);
    event
}

// ---------------------------------------------------------------------------
// Organisations and keys
// ---------------------------------------------------------------------------

/// An organisation's registration (机构登记), as a regulator records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Organisation {
    pub uscc: Uscc,
    pub name: String,
    pub roles: Vec<pb::Role>,
    /// Labs and certification bodies need one to sign inspections or
    /// certificates.
    pub accreditation: Option<Accreditation>,
    pub address: String,
    /// Administrative division code, 6 digits, or empty.
    pub region: String,
}

/// An accreditation (资质认定 / 认证机构批准): what the organisation may test
/// or certify, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Accreditation {
    pub number: String,
    /// Digits of the 14-digit GTIN form (see [`crate::input::parse_gtin_prefix`]).
    pub gtin_prefixes: Vec<String>,
    pub standards: Vec<String>,
    pub valid_from: Date,
    pub valid_until: Date,
}

fn org_fields(org: &Organisation) -> (Vec<i32>, Vec<pb::Accreditation>) {
    let roles = unique(org.roles.iter().map(|role| *role as i32));
    let accreditations = org
        .accreditation
        .iter()
        .map(|a| pb::Accreditation {
            number: a.number.clone(),
            gtin_prefixes: a.gtin_prefixes.clone(),
            standards: a.standards.clone(),
            valid_from: a.valid_from.to_string(),
            valid_until: a.valid_until.to_string(),
        })
        .collect();
    (roles, accreditations)
}

/// `qtrace org register`.
pub fn org_register(header: &Header, org: &Organisation) -> pb::Event {
    let (roles, accreditations) = org_fields(org);
    let body = pb::OrgRegistered {
        uscc: org.uscc.to_string(),
        name: org.name.clone(),
        roles,
        accreditations,
        address: org.address.clone(),
        region: org.region.clone(),
    };
    event(header, Kind::OrganisationUscc(org.uscc.to_string()), Body::OrgRegistered(body))
}

/// `qtrace org update`: the new registration replaces the old one whole.
pub fn org_update(header: &Header, org: &Organisation) -> pb::Event {
    let (roles, accreditations) = org_fields(org);
    let body = pb::OrgUpdated {
        uscc: org.uscc.to_string(),
        name: org.name.clone(),
        roles,
        accreditations,
        address: org.address.clone(),
        region: org.region.clone(),
    };
    event(header, Kind::OrganisationUscc(org.uscc.to_string()), Body::OrgUpdated(body))
}

/// `qtrace key register`: binds a key to an organisation and a named person.
pub fn key_register(
    header: &Header,
    uscc: &Uscc,
    key: &PublicKey,
    person: &str,
    title: &str,
    admin: bool,
) -> pb::Event {
    let body = pb::KeyRegistered {
        uscc: uscc.to_string(),
        public_key: key.to_bytes().to_vec(),
        person: person.to_owned(),
        title: title.to_owned(),
        admin,
    };
    event(header, Kind::OrganisationUscc(uscc.to_string()), Body::KeyRegistered(body))
}

/// `qtrace key revoke`. `org` is the organisation the key acts for, the
/// record's subject.
pub fn key_revoke(header: &Header, org: &Uscc, key: &PublicKey, reason: &str) -> pb::Event {
    let body = pb::KeyRevoked { public_key: key.to_bytes().to_vec(), reason: reason.to_owned() };
    event(header, Kind::OrganisationUscc(org.to_string()), Body::KeyRevoked(body))
}

// ---------------------------------------------------------------------------
// Production and movements
// ---------------------------------------------------------------------------

/// A record used as an input of production, with the lots it produced or
/// moved (see [`lots_of`]).
#[derive(Debug, Clone, PartialEq)]
pub struct InputRecord {
    pub reference: RecordRef,
    pub lots: Vec<pb::ProductKey>,
}

/// A production run (生产): a new lot, made from nothing recorded
/// (commissioning) or from input records (a transformation).
#[derive(Debug, Clone, PartialEq)]
pub struct Production {
    pub output: LotKey,
    pub quantity: Option<pb::Quantity>,
    pub production_date: Option<Date>,
    pub expiry_date: Option<Date>,
    pub factory: Option<Gln>,
    pub inputs: Vec<InputRecord>,
}

/// `qtrace produce`: a `Production` record, or with inputs a
/// `Transformation` whose inputs are the input records' lots and whose
/// parents are the input records.
pub fn produce(header: &Header, p: &Production) -> pb::Event {
    let output = pb::LotQuantity { product: Some(p.output.to_pb()), quantity: p.quantity.clone() };
    let subject = Kind::Product(p.output.to_pb());
    let production_date = opt_text(p.production_date.as_ref());
    let expiry_date = opt_text(p.expiry_date.as_ref());
    let factory_gln = opt_text(p.factory.as_ref());
    if p.inputs.is_empty() {
        let body = pb::Production { output: Some(output), production_date, expiry_date, factory_gln };
        return with_why(event(header, subject, Body::Production(body)), "commissioning", "active");
    }
    let inputs = unique(
        p.inputs.iter().flat_map(|i| &i.lots).map(|lot| pb::LotQuantity { product: Some(lot.clone()), quantity: None }),
    );
    let body = pb::Transformation { inputs, outputs: vec![output], production_date, expiry_date, factory_gln };
    let parents: Vec<RecordRef> = p.inputs.iter().map(|i| i.reference).collect();
    with_parents(with_why(event(header, subject, Body::Transformation(body)), "commissioning", "active"), &parents)
}

/// The lots a record produced or moved, so that a later record can name it
/// as an input: a production's output, a transformation's outputs, or the
/// items of a shipment or receipt. Other records name no lots.
pub fn lots_of(event: &pb::Event) -> Vec<pb::ProductKey> {
    let items = |items: &[pb::LotQuantity]| items.iter().filter_map(|i| i.product.clone()).collect::<Vec<_>>();
    let mut lots = match event.body.as_ref() {
        Some(Body::Production(p)) => p.output.iter().filter_map(|o| o.product.clone()).collect(),
        Some(Body::Transformation(t)) => items(&t.outputs),
        Some(Body::Shipment(s)) => items(&s.items),
        Some(Body::Receipt(r)) => items(&r.items),
        _ => Vec::new(),
    };
    lots.retain(|p| !p.lot.is_empty());
    unique(lots)
}

/// One side of a movement of goods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub uscc: Uscc,
    pub gln: Option<Gln>,
}

impl Party {
    fn to_pb(&self) -> pb::Party {
        pb::Party { uscc: self.uscc.to_string(), location_gln: opt_text(self.gln.as_ref()) }
    }
}

/// Goods moving from one party to another (发货 / 收货).
#[derive(Debug, Clone, PartialEq)]
pub struct Movement {
    pub item: LotKey,
    pub quantity: Option<pb::Quantity>,
    pub from: Party,
    pub to: Party,
    pub shipment_number: String,
    /// Upstream records: a shipment's production, a receipt's shipment.
    pub parents: Vec<RecordRef>,
}

fn movement_parts(m: &Movement) -> (Vec<pb::LotQuantity>, Option<pb::Party>, Option<pb::Party>) {
    let items = vec![pb::LotQuantity { product: Some(m.item.to_pb()), quantity: m.quantity.clone() }];
    (items, Some(m.from.to_pb()), Some(m.to.to_pb()))
}

/// `qtrace ship`.
pub fn ship(header: &Header, m: &Movement) -> pb::Event {
    let (items, source, destination) = movement_parts(m);
    let body = pb::Shipment { items, source, destination, shipment_number: m.shipment_number.clone() };
    let e = event(header, Kind::Product(m.item.to_pb()), Body::Shipment(body));
    with_parents(with_why(e, "shipping", "in_transit"), &m.parents)
}

/// `qtrace receive`: usually names the shipment as a parent.
pub fn receive(header: &Header, m: &Movement) -> pb::Event {
    let (items, source, destination) = movement_parts(m);
    let body = pb::Receipt { items, source, destination, shipment_number: m.shipment_number.clone() };
    let e = event(header, Kind::Product(m.item.to_pb()), Body::Receipt(body));
    with_parents(with_why(e, "receiving", "in_progress"), &m.parents)
}

/// A retail sale (销售).
#[derive(Debug, Clone, PartialEq)]
pub struct Sale {
    pub item: LotKey,
    pub quantity: Option<pb::Quantity>,
    pub store: Option<Gln>,
    pub parents: Vec<RecordRef>,
}

/// `qtrace sell`.
pub fn sell(header: &Header, s: &Sale) -> pb::Event {
    let items = vec![pb::LotQuantity { product: Some(s.item.to_pb()), quantity: s.quantity.clone() }];
    let body = pb::Sale { items, store_gln: opt_text(s.store.as_ref()) };
    let e = event(header, Kind::Product(s.item.to_pb()), Body::Sale(body));
    with_parents(with_why(e, "retail_selling", "retail_sold"), &s.parents)
}

// ---------------------------------------------------------------------------
// Inspections and spot checks
// ---------------------------------------------------------------------------

fn conclusion_disposition(conclusion: pb::Conclusion) -> &'static str {
    match conclusion {
        pb::Conclusion::NonConformant => "non_conformant",
        pb::Conclusion::Conformant | pb::Conclusion::Unspecified => "conformant",
    }
}

/// A testing lab's inspection report (检验报告).
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    pub product: ProductCode,
    pub report_number: String,
    pub standards: Vec<String>,
    pub items: Vec<pb::TestItem>,
    pub conclusion: pb::Conclusion,
    /// Sampling (破坏性抽样) rather than non-destructive inspection.
    pub destructive: bool,
    /// The organisation that commissioned the test (委托方).
    pub client: Option<Uscc>,
    /// The record of the lot sampled, if any.
    pub sample: Option<RecordRef>,
}

/// `qtrace inspect`.
pub fn inspect(header: &Header, i: &Inspection) -> pb::Event {
    let body = pb::Inspection {
        report_number: i.report_number.clone(),
        product: Some(product_key(&i.product)),
        standards: i.standards.clone(),
        items: i.items.clone(),
        conclusion: i.conclusion as i32,
        destructive: i.destructive,
        client_uscc: opt_text(i.client.as_ref()),
    };
    let step = if i.destructive { "sampling" } else { "inspecting" };
    let e = event(header, Kind::Product(product_key(&i.product)), Body::Inspection(body));
    let parents: Vec<RecordRef> = i.sample.iter().copied().collect();
    with_parents(with_why(e, step, conclusion_disposition(i.conclusion)), &parents)
}

/// A regulator's supervision spot check (监督抽查) result.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotCheck {
    pub plan_number: String,
    pub product: ProductCode,
    /// The producer whose product was checked (被抽查企业).
    pub inspected: Uscc,
    pub lab: Option<Uscc>,
    pub standards: Vec<String>,
    pub items: Vec<pb::TestItem>,
    pub result: pb::Conclusion,
    pub published_on: Date,
}

/// `qtrace spotcheck`.
pub fn spot_check(header: &Header, s: &SpotCheck) -> pb::Event {
    let body = pb::SpotCheck {
        plan_number: s.plan_number.clone(),
        product: Some(product_key(&s.product)),
        inspected_uscc: s.inspected.to_string(),
        lab_uscc: opt_text(s.lab.as_ref()),
        standards: s.standards.clone(),
        items: s.items.clone(),
        result: s.result as i32,
        published_on: s.published_on.to_string(),
    };
    let e = event(header, Kind::Product(product_key(&s.product)), Body::SpotCheck(body));
    with_why(e, "inspecting", conclusion_disposition(s.result))
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A certificate is named by its issuer and its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateKey {
    pub issuer: Uscc,
    pub number: String,
}

impl CertificateKey {
    fn to_pb(&self) -> pb::CertificateKey {
        pb::CertificateKey { issuer_uscc: self.issuer.to_string(), number: self.number.clone() }
    }
}

/// A certificate as issued (发证).
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateIssue {
    pub key: CertificateKey,
    pub holder: Uscc,
    pub manufacturer: Option<Uscc>,
    pub factory_name: String,
    pub factory_gln: Option<Gln>,
    pub products: Vec<Gtin>,
    pub standards: Vec<String>,
    /// Certification mode, e.g. 型式试验+初始工厂检查+获证后监督.
    pub mode: String,
    pub issued_on: Date,
    pub valid_until: Date,
    pub scope: String,
    /// The inspection reports the certificate rests on.
    pub based_on: Vec<RecordRef>,
}

fn cert_event(header: &Header, key: &CertificateKey, body: Body) -> pb::Event {
    event(header, Kind::Certificate(key.to_pb()), body)
}

/// `qtrace cert issue`.
pub fn cert_issue(header: &Header, c: &CertificateIssue) -> pb::Event {
    let body = pb::CertificateIssued {
        certificate: Some(c.key.to_pb()),
        holder_uscc: c.holder.to_string(),
        manufacturer_uscc: opt_text(c.manufacturer.as_ref()),
        factory_name: c.factory_name.clone(),
        factory_gln: opt_text(c.factory_gln.as_ref()),
        products: unique(
            c.products.iter().map(|gtin| pb::CertifiedProduct { gtin: gtin.to_string(), ..Default::default() }),
        ),
        standards: c.standards.clone(),
        certification_mode: c.mode.clone(),
        issued_on: c.issued_on.to_string(),
        valid_until: c.valid_until.to_string(),
        scope: c.scope.clone(),
    };
    with_parents(cert_event(header, &c.key, Body::CertificateIssued(body)), &c.based_on)
}

/// `qtrace cert suspend` (暂停); `until` is the date by which the holder
/// must remedy.
pub fn cert_suspend(header: &Header, key: &CertificateKey, reason: &str, until: Option<Date>) -> pb::Event {
    let body = pb::CertificateSuspended {
        certificate: Some(key.to_pb()),
        reason: reason.to_owned(),
        until: opt_text(until.as_ref()),
    };
    cert_event(header, key, Body::CertificateSuspended(body))
}

/// `qtrace cert restore` (恢复).
pub fn cert_restore(header: &Header, key: &CertificateKey, reason: &str) -> pb::Event {
    let body = pb::CertificateRestored { certificate: Some(key.to_pb()), reason: reason.to_owned() };
    cert_event(header, key, Body::CertificateRestored(body))
}

/// `qtrace cert withdraw` (撤销).
pub fn cert_withdraw(header: &Header, key: &CertificateKey, reason: &str) -> pb::Event {
    let body = pb::CertificateWithdrawn { certificate: Some(key.to_pb()), reason: reason.to_owned() };
    cert_event(header, key, Body::CertificateWithdrawn(body))
}

/// `qtrace cert cancel` (注销).
pub fn cert_cancel(header: &Header, key: &CertificateKey, reason: &str) -> pb::Event {
    let body = pb::CertificateCancelled { certificate: Some(key.to_pb()), reason: reason.to_owned() };
    cert_event(header, key, Body::CertificateCancelled(body))
}

/// `qtrace cert reduce` (缩小范围): `removed` are GTINs or GTIN prefixes.
pub fn cert_reduce(header: &Header, key: &CertificateKey, removed: &[String], reason: &str) -> pb::Event {
    let body = pb::CertificateScopeReduced {
        certificate: Some(key.to_pb()),
        removed_gtins: removed.to_vec(),
        reason: reason.to_owned(),
    };
    cert_event(header, key, Body::CertificateScopeReduced(body))
}

/// `qtrace cert renew`: extends validity.
pub fn cert_renew(header: &Header, key: &CertificateKey, valid_until: Date, reason: &str) -> pb::Event {
    let body = pb::CertificateRenewed {
        certificate: Some(key.to_pb()),
        valid_until: valid_until.to_string(),
        reason: reason.to_owned(),
    };
    cert_event(header, key, Body::CertificateRenewed(body))
}

// ---------------------------------------------------------------------------
// Recalls, blacklist, corrections
// ---------------------------------------------------------------------------

/// A recall (召回).
#[derive(Debug, Clone, PartialEq)]
pub struct Recall {
    pub number: String,
    pub gtin: Gtin,
    /// Empty: every lot of the GTIN.
    pub lots: Vec<Lot>,
    /// Administrative division codes; empty: nationwide.
    pub regions: Vec<String>,
    /// 1 (most serious) to 3.
    pub risk_class: u32,
    pub reason: String,
    pub initiator: pb::RecallInitiator,
    pub manufacturer: Option<Uscc>,
    pub remedy: String,
}

/// `qtrace recall`.
pub fn recall(header: &Header, r: &Recall) -> pb::Event {
    let subject = pb::ProductKey { gtin: r.gtin.to_string(), ..Default::default() };
    let body = pb::Recall {
        recall_number: r.number.clone(),
        gtin: r.gtin.to_string(),
        lots: r.lots.iter().map(Lot::to_string).collect(),
        regions: r.regions.clone(),
        risk_class: r.risk_class,
        reason: r.reason.clone(),
        initiator: r.initiator as i32,
        manufacturer_uscc: opt_text(r.manufacturer.as_ref()),
        remedy: r.remedy.clone(),
        ..Default::default()
    };
    with_why(event(header, Kind::Product(subject), Body::Recall(body)), "", "recalled")
}

/// An entry on the quality blacklist (质量失信黑名单).
#[derive(Debug, Clone, PartialEq)]
pub struct Blacklisting {
    pub uscc: Uscc,
    pub reason: String,
    pub legal_basis: String,
    /// The deciding authority: the signer's organisation.
    pub authority: Uscc,
    pub listed_on: Date,
    pub until: Option<Date>,
}

/// `qtrace blacklist`.
pub fn blacklist(header: &Header, b: &Blacklisting) -> pb::Event {
    let body = pb::Blacklisted {
        uscc: b.uscc.to_string(),
        reason: b.reason.clone(),
        legal_basis: b.legal_basis.clone(),
        authority_uscc: b.authority.to_string(),
        listed_on: b.listed_on.to_string(),
        until: opt_text(b.until.as_ref()),
    };
    event(header, Kind::OrganisationUscc(b.uscc.to_string()), Body::Blacklisted(body))
}

/// `qtrace delist` (移出黑名单, 信用修复).
pub fn delist(header: &Header, uscc: &Uscc, reason: &str, delisted_on: Date) -> pb::Event {
    let body = pb::Delisted { uscc: uscc.to_string(), reason: reason.to_owned(), delisted_on: delisted_on.to_string() };
    event(header, Kind::OrganisationUscc(uscc.to_string()), Body::Delisted(body))
}

/// An error declaration (更正) about an earlier record.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    pub target: RecordRef,
    /// The target record's subject, so the correction is found wherever the
    /// target is.
    pub subject: pb::Subject,
    pub kind: pb::CorrectionKind,
    pub reason: String,
    /// Records that state the correct data.
    pub corrective: Vec<RecordRef>,
}

/// `qtrace correct`.
pub fn correct(header: &Header, c: &Correction) -> pb::Event {
    let body = pb::Correction {
        target: Some(c.target.to_pb()),
        kind: c.kind as i32,
        reason: c.reason.clone(),
        corrective: refs(&c.corrective),
    };
    pb::Event {
        event_time: Some(header.time),
        subject: Some(c.subject.clone()),
        nonce: header.nonce,
        body: Some(Body::Correction(body)),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

/// A signed event ready to submit, with the decoded form the ledger will see.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    pub signed: pb::SignedEvent,
    pub event: ValidEvent,
}

/// Encodes `event` once, validates those bytes with the ledger's own
/// [`decode_event`] (so a mistake gets the node's precise message before
/// anything is signed or sent) and signs them.
pub fn seal(event: &pb::Event, key: &SecretKey) -> Result<Sealed, EventError> {
    sign_bytes(event.encode_to_vec(), key)
}

/// Validates already-encoded event bytes and signs them as they are.
pub fn sign_bytes(event_bytes: Vec<u8>, key: &SecretKey) -> Result<Sealed, EventError> {
    let event = decode_event(&event_bytes)?;
    let signature = key.sign_event(&event_bytes);
    let signed = pb::SignedEvent {
        event: event_bytes,
        signer: key.public_key().to_bytes().to_vec(),
        signature: signature.to_vec(),
    };
    Ok(Sealed { signed, event })
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! One valid event of every kind, built from the shared test vectors'
    //! identifiers, for the builder and renderer tests.

    use super::*;

    pub const REGULATOR: &str = "91310000MA1K2Q7A5L";
    pub const LAB: &str = "913301007042187B2H";
    pub const MAKER: &str = "914403007152672A21";
    pub const SHOP: &str = "92320900MA1N3T5C5Q";
    pub const BODY: &str = "9144030071526726XG";
    pub const GTIN: &str = "09520123456788";
    pub const GTIN2: &str = "06931234567899";
    pub const GLN: &str = "0614141000012";
    pub const GLN2: &str = "6931234000013";

    pub fn uscc(text: &str) -> Uscc {
        Uscc::parse(text).expect("test vector USCC")
    }

    pub fn date(text: &str) -> Date {
        Date::parse_iso(text).expect("test date")
    }

    pub fn lot(gtin: &str, lot: &str) -> LotKey {
        LotKey { gtin: Gtin::parse(gtin).expect("test GTIN"), lot: Lot::parse(lot).expect("test lot") }
    }

    pub fn header() -> Header {
        // 2026-11-21T10:00:00+08:00
        Header { time: pb::EventTime { unix_millis: 1_795_226_400_000, offset_minutes: 480 }, nonce: 7 }
    }

    pub fn reference(seq: u64) -> RecordRef {
        RecordRef { log_id: LogId([0xaa; 32]), seq, entry_hash: EntryHash([seq as u8; 32]) }
    }

    pub fn test_items() -> Vec<pb::TestItem> {
        vec![
            pb::TestItem {
                name: "melamine".into(),
                value: "0.05".into(),
                unit: "mg/kg".into(),
                limit: "<= 2.5".into(),
                result: pb::Conclusion::Conformant as i32,
            },
            pb::TestItem { name: "appearance".into(), value: "normal".into(), ..Default::default() },
        ]
    }

    pub fn organisation() -> Organisation {
        Organisation {
            uscc: uscc(LAB),
            name: "浙江省检验检测研究院".into(),
            roles: vec![pb::Role::TestingLab, pb::Role::TestingLab],
            accreditation: Some(Accreditation {
                number: "CMA 200000000001".into(),
                gtin_prefixes: vec!["0952012".into(), GTIN2.into()],
                standards: vec!["GB 19644".into()],
                valid_from: date("2026-01-01"),
                valid_until: date("2031-12-31"),
            }),
            address: "杭州市".into(),
            region: "330100".into(),
        }
    }

    pub fn cert_key() -> CertificateKey {
        CertificateKey { issuer: uscc(BODY), number: "CQC2026010001".into() }
    }

    /// Built with the builders (named) plus the bodies no command builds.
    pub fn every_kind() -> Vec<(&'static str, pb::Event)> {
        let h = header();
        let key = SecretKey::from_seed(&[5; 32]).public_key();
        let movement = Movement {
            item: lot(GTIN, "L2026-11"),
            quantity: Some(pb::Quantity { value: 120.0, unit: "KGM".into() }),
            from: Party { uscc: uscc(MAKER), gln: Some(Gln::parse(GLN).expect("test GLN")) },
            to: Party { uscc: uscc(SHOP), gln: None },
            shipment_number: "DESADV-1".into(),
            parents: vec![reference(3)],
        };
        let production = Production {
            output: lot(GTIN, "L2026-11"),
            quantity: Some(pb::Quantity { value: 500.0, unit: "EA".into() }),
            production_date: Some(date("2026-11-20")),
            expiry_date: Some(date("2027-11-19")),
            factory: Some(Gln::parse(GLN2).expect("test GLN")),
            inputs: Vec::new(),
        };
        let transformation = Production {
            inputs: vec![
                InputRecord { reference: reference(1), lots: vec![lot(GTIN2, "MILK-1").to_pb()] },
                InputRecord { reference: reference(2), lots: vec![lot(GTIN2, "MILK-2").to_pb()] },
            ],
            ..production.clone()
        };
        let inspection = Inspection {
            product: ProductCode::parse("https://id.gs1.org/01/09520123456788/10/L2026-11").expect("test code"),
            report_number: "ZJ-2026-0001".into(),
            standards: vec!["GB 19644".into()],
            items: test_items(),
            conclusion: pb::Conclusion::Conformant,
            destructive: true,
            client: Some(uscc(MAKER)),
            sample: Some(reference(4)),
        };
        let spot = SpotCheck {
            plan_number: "SC-2026-12".into(),
            product: ProductCode::parse(GTIN).expect("test code"),
            inspected: uscc(MAKER),
            lab: Some(uscc(LAB)),
            standards: vec!["GB 19644".into()],
            items: test_items(),
            result: pb::Conclusion::NonConformant,
            published_on: date("2026-11-21"),
        };
        let issue = CertificateIssue {
            key: cert_key(),
            holder: uscc(MAKER),
            manufacturer: Some(uscc(MAKER)),
            factory_name: "深圳工厂".into(),
            factory_gln: Some(Gln::parse(GLN2).expect("test GLN")),
            products: vec![Gtin::parse(GTIN).expect("test GTIN")],
            standards: vec!["GB 19644".into()],
            mode: "型式试验+初始工厂检查+获证后监督".into(),
            issued_on: date("2026-11-21"),
            valid_until: date("2031-11-20"),
            scope: "乳粉".into(),
            based_on: vec![reference(5)],
        };
        let recall_body = Recall {
            number: "R-2026-001".into(),
            gtin: Gtin::parse(GTIN).expect("test GTIN"),
            lots: vec![Lot::parse("L2026-11").expect("test lot")],
            regions: vec!["310000".into()],
            risk_class: 1,
            reason: "melamine above limit".into(),
            initiator: pb::RecallInitiator::Ordered,
            manufacturer: Some(uscc(MAKER)),
            remedy: "return for refund".into(),
        };
        let blacklisting = Blacklisting {
            uscc: uscc(MAKER),
            reason: "forged reports".into(),
            legal_basis: "产品质量法 第五十条".into(),
            authority: uscc(REGULATOR),
            listed_on: date("2026-11-21"),
            until: Some(date("2029-11-20")),
        };
        let correction = Correction {
            target: reference(6),
            subject: pb::Subject { kind: Some(Kind::Product(lot(GTIN, "L2026-11").to_pb())) },
            kind: pb::CorrectionKind::IncorrectData,
            reason: "wrong quantity".into(),
            corrective: vec![reference(7)],
        };
        let genesis = pb::Event {
            event_time: Some(h.time),
            body: Some(Body::Genesis(pb::LogGenesis {
                origin: "qtrace.example/sh-amr".into(),
                operator_uscc: REGULATOR.into(),
                operator_name: "上海市市场监督管理局".into(),
                root_authority_keys: vec![key.to_bytes().to_vec()],
            })),
            ..Default::default()
        };
        let subject_product = pb::Subject { kind: Some(Kind::Product(lot(GTIN, "L2026-11").to_pb())) };
        let recall_progress = pb::Event {
            event_time: Some(h.time),
            subject: Some(subject_product.clone()),
            parents: vec![reference(8).to_pb()],
            body: Some(Body::RecallProgress(pb::RecallProgress {
                recall: Some(reference(8).to_pb()),
                parties_notified: 12,
                quantity_recovered: Some(pb::Quantity { value: 40.0, unit: "EA".into() }),
                quantity_sold: Some(pb::Quantity { value: 100.0, unit: "EA".into() }),
                note: "wholesalers notified".into(),
            })),
            ..Default::default()
        };
        let recall_closed = pb::Event {
            event_time: Some(h.time),
            subject: Some(subject_product),
            location: Some(pb::Location {
                read_point_gln: GLN.into(),
                business_location_gln: GLN2.into(),
                region: "310000".into(),
            }),
            documents: vec![pb::Document { kind: "closeout".into(), id: "C-1".into(), sha256: vec![9; 32] }],
            attributes: vec![pb::Attribute { name: "note".into(), value: "done".into() }],
            body: Some(Body::RecallClosed(pb::RecallClosed {
                recall: Some(reference(8).to_pb()),
                closeout: "all stock destroyed".into(),
                quantity_recovered: Some(pb::Quantity { value: 95.5, unit: "EA".into() }),
            })),
            ..Default::default()
        };
        let cert = cert_key();
        vec![
            ("genesis", genesis),
            ("org_registered", org_register(&h, &organisation())),
            ("org_updated", org_update(&h, &Organisation { accreditation: None, ..organisation() })),
            ("key_registered", key_register(&h, &uscc(LAB), &key, "张伟", "首席质量官", true)),
            ("key_revoked", key_revoke(&h, &uscc(LAB), &key, "laptop lost")),
            ("production", produce(&h, &production)),
            ("transformation", produce(&h, &transformation)),
            ("shipment", ship(&h, &movement)),
            ("receipt", receive(&h, &movement)),
            (
                "sale",
                sell(
                    &h,
                    &Sale {
                        item: lot(GTIN, "L2026-11"),
                        quantity: None,
                        store: Some(Gln::parse(GLN2).expect("test GLN")),
                        parents: vec![],
                    },
                ),
            ),
            ("inspection", inspect(&h, &inspection)),
            ("spot_check", spot_check(&h, &spot)),
            ("certificate_issued", cert_issue(&h, &issue)),
            ("certificate_suspended", cert_suspend(&h, &cert, "factory audit failed", Some(date("2027-01-31")))),
            ("certificate_restored", cert_restore(&h, &cert, "corrective actions verified")),
            (
                "certificate_scope_reduced",
                cert_reduce(&h, &cert, &[GTIN.to_owned(), "0952".to_owned()], "model discontinued"),
            ),
            ("certificate_withdrawn", cert_withdraw(&h, &cert, "forged test report")),
            ("certificate_cancelled", cert_cancel(&h, &cert, "holder's request")),
            ("certificate_renewed", cert_renew(&h, &cert, date("2036-11-20"), "")),
            ("recall", recall(&h, &recall_body)),
            ("recall_progress", recall_progress),
            ("recall_closed", recall_closed),
            ("blacklisted", blacklist(&h, &blacklisting)),
            ("delisted", delist(&h, &uscc(MAKER), "credit repaired", date("2029-11-21"))),
            ("correction", correct(&h, &correction)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::event::EventKind;

    #[test]
    fn every_builder_passes_the_ledger_decoder() {
        let key = SecretKey::from_seed(&[9; 32]);
        let events = every_kind();
        // The fixtures cover every kind of record, in the wire order.
        let names: Vec<&str> = events.iter().map(|(name, _)| *name).collect();
        let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, all);
        for (name, event) in events {
            let sealed = seal(&event, &key).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(sealed.event.kind.name(), name);
            assert_eq!(sealed.event.event, event, "{name}: decodes to what was built");
            assert_eq!(
                key.public_key().verify_event(&sealed.signed.event, &sealed.signed.signature),
                Ok(()),
                "{name}: signature"
            );
        }
    }

    #[test]
    fn builders_fill_what_the_ledger_indexes() {
        let events: std::collections::HashMap<_, _> = every_kind().into_iter().collect();
        let cases: Vec<(&str, &str, &str, usize)> = vec![
            // kind, biz_step, disposition, number of parents
            ("production", "commissioning", "active", 0),
            ("transformation", "commissioning", "active", 2),
            ("shipment", "shipping", "in_transit", 1),
            ("receipt", "receiving", "in_progress", 1),
            ("sale", "retail_selling", "retail_sold", 0),
            ("inspection", "sampling", "conformant", 1),
            ("spot_check", "inspecting", "non_conformant", 0),
            ("certificate_issued", "", "", 1),
            ("recall", "", "recalled", 0),
            ("org_registered", "", "", 0),
        ];
        for (kind, step, disposition, n_parents) in cases {
            let e = &events[kind];
            assert_eq!(
                (e.biz_step.as_str(), e.disposition.as_str(), e.parents.len()),
                (step, disposition, n_parents),
                "{kind}"
            );
        }
        // Roles given twice are recorded once.
        match events["org_registered"].body.as_ref() {
            Some(Body::OrgRegistered(o)) => assert_eq!(o.roles, vec![pb::Role::TestingLab as i32]),
            other => panic!("{other:?}"),
        }
        // A transformation consumes the input records' lots.
        match events["transformation"].body.as_ref() {
            Some(Body::Transformation(t)) => {
                let lots: Vec<&str> =
                    t.inputs.iter().filter_map(|i| i.product.as_ref()).map(|p| p.lot.as_str()).collect();
                assert_eq!(lots, ["MILK-1", "MILK-2"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lots_of_records() {
        let events: std::collections::HashMap<_, _> = every_kind().into_iter().collect();
        let cases = [
            ("production", vec!["L2026-11"]),
            ("transformation", vec!["L2026-11"]),
            ("shipment", vec!["L2026-11"]),
            ("receipt", vec!["L2026-11"]),
            ("sale", vec![]),
            ("inspection", vec![]),
            ("certificate_issued", vec![]),
        ];
        for (kind, want) in cases {
            let lots: Vec<String> = lots_of(&events[kind]).into_iter().map(|p| p.lot).collect();
            assert_eq!(lots, want, "{kind}");
        }
    }

    #[test]
    fn seal_reports_the_ledgers_error() {
        let key = SecretKey::from_seed(&[9; 32]);
        let public = key.public_key();
        let h = header();
        let cases: Vec<(pb::Event, &str)> = vec![
            (
                key_revoke(&h, &uscc(LAB), &public, &"x".repeat(2001)),
                "key_revoked.reason: is 2001 bytes; at most 2000 are allowed",
            ),
            (key_revoke(&h, &uscc(LAB), &public, "  "), "key_revoked.reason: is required"),
            (
                key_register(&h, &uscc(LAB), &public, "张伟\n李", "QA", false),
                "key_registered.person: must be a single line",
            ),
            (
                produce(
                    &Header { time: pb::EventTime { unix_millis: 0, offset_minutes: 480 }, nonce: 0 },
                    &Production {
                        output: lot(GTIN, "A"),
                        quantity: None,
                        production_date: None,
                        expiry_date: None,
                        factory: None,
                        inputs: vec![],
                    },
                ),
                "event_time.unix_millis: 0 is outside 2000-01-01 .. 2100-01-01 (milliseconds since 1970)",
            ),
            (
                produce(
                    &h,
                    &Production {
                        output: lot(GTIN, "A"),
                        quantity: None,
                        production_date: Some(date("2026-11-20")),
                        expiry_date: Some(date("2026-11-19")),
                        factory: None,
                        inputs: vec![],
                    },
                ),
                "production.expiry_date: 2026-11-19 is before production_date 2026-11-20",
            ),
        ];
        for (event, want) in cases {
            assert_eq!(seal(&event, &key).map(drop).map_err(|e| e.to_string()), Err(want.to_owned()));
        }
    }
}
