//! The registry and authorisation rules, derived from the log alone.
//!
//! A [`Registry`] is built by replaying entries in order ([`Registry::apply`])
//! and answers, for a new signed event, whether its signer may append it
//! ([`Registry::authorize`]). It holds no I/O: the node keeps one in memory
//! and rebuilds it at start from its entries, and an offline verifier builds
//! one from the registry entries in an evidence bundle.
//!
//! # Role × record-kind matrix
//!
//! | record kinds                                   | who may sign                                   |
//! |------------------------------------------------|------------------------------------------------|
//! | genesis                                        | the log key, as entry 0 only                   |
//! | org_registered, org_updated                    | regulator                                      |
//! | key_registered, key_revoked                    | regulator, or an admin key of the key's org    |
//! | production, transformation                     | manufacturer                                   |
//! | shipment, receipt                              | manufacturer, distributor, retailer            |
//! | sale                                           | retailer                                       |
//! | inspection                                     | testing lab, accredited and in scope           |
//! | spot_check                                     | regulator                                      |
//! | certificate_* (issue … renew)                  | certification body, accredited and in scope    |
//! | recall (voluntary) / recall (ordered)          | manufacturer / regulator                       |
//! | recall_progress, recall_closed                 | the recall's initiator org, or a regulator     |
//! | blacklisted, delisted                          | regulator                                      |
//! | correction                                     | the organisation that signed the target record |
//!
//! Root authority keys named in the genesis entry act for the operator with
//! the regulator role. Organisations on the blacklist (on the event's date,
//! until delisted or past the listing's last day) may not sign production,
//! transformation, movement, sale or inspection records, nor issue, restore
//! or renew certificates, and may not be the holder of a new, renewed or
//! restored certificate. Acts that restrict a certificate (suspend, reduce,
//! withdraw, cancel) stay open to its body whatever its standing. Issuing,
//! restoring and renewing need an accreditation in force that covers the
//! certified products; a renewal must extend the validity.

use std::collections::{HashMap, HashSet};

use crate::event::{EventKind, ValidEvent};
use crate::hash::{EntryHash, LogId};
use crate::ids::{Date, Gtin, Uscc};
use crate::pb::{self, event::Body};

/// How a refusal is classed; the node maps each to one gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalClass {
    /// The event itself is malformed (INVALID_ARGUMENT).
    InvalidArgument,
    /// The signer may not sign this (PERMISSION_DENIED).
    PermissionDenied,
    /// The state of the ledger does not allow it now (FAILED_PRECONDITION).
    FailedPrecondition,
    /// Something it names does not exist (NOT_FOUND).
    NotFound,
    /// It would create something that already exists (ALREADY_EXISTS).
    AlreadyExists,
    /// Not a refusal of the event: the records it names could not be read
    /// (a storage failure). The node logs the cause and answers INTERNAL.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("signer key {key} is not registered to any organisation")]
    UnknownKey { key: String },
    #[error("signer key {key} was revoked at entry {revoked_at}")]
    RevokedKey { key: String, revoked_at: u64 },
    #[error("organisation {uscc} is not registered")]
    UnknownOrganisation { uscc: String },
    #[error("{kind} records may be signed by {allowed}; the signer's organisation {uscc} has roles {roles}")]
    RoleNotAllowed { kind: EventKind, allowed: &'static str, uscc: String, roles: String },
    #[error("organisation {uscc} has no accreditation valid on {date} covering {what}")]
    NotAccredited { uscc: String, date: String, what: String },
    #[error("organisation {uscc} is on the quality blacklist (质量失信黑名单) since {since}: {reason}")]
    Blacklisted { uscc: String, since: String, reason: String },
    #[error("{field}: {detail}")]
    Mismatch { field: &'static str, detail: String },
    #[error(
        "certificate.issuer_uscc is {issuer}, but the signer's organisation is {signer}; only the issuing body may sign for its certificates"
    )]
    NotIssuer { issuer: String, signer: String },
    #[error("certificate {issuer}/{number} already exists")]
    CertificateExists { issuer: String, number: String },
    #[error("certificate {issuer}/{number} does not exist")]
    UnknownCertificate { issuer: String, number: String },
    #[error("certificate {issuer}/{number} is {state}; {kind} is not allowed from that state")]
    IllegalTransition { issuer: String, number: String, state: &'static str, kind: EventKind },
    #[error("{field}: record {log}/{seq} is not in the ledger")]
    UnknownRecord { field: &'static str, log: String, seq: u64 },
    #[error("{field}: record {log}/{seq} has entry hash {found}, not {given}")]
    RecordHashMismatch { field: &'static str, log: String, seq: u64, given: String, found: String },
    #[error("genesis may only be the first entry of a log, signed by the log key")]
    Genesis,
    #[error("the log has no genesis entry yet")]
    NoGenesis,
    #[error("{0}")]
    Other(String),
    /// The records the event names could not be read: the node's failure,
    /// not the event's.
    #[error("{0}")]
    Unreadable(#[from] RecordsError),
}

impl AuthError {
    pub fn class(&self) -> RefusalClass {
        match self {
            AuthError::UnknownKey { .. }
            | AuthError::RevokedKey { .. }
            | AuthError::RoleNotAllowed { .. }
            | AuthError::NotAccredited { .. }
            | AuthError::NotIssuer { .. }
            | AuthError::Genesis => RefusalClass::PermissionDenied,
            AuthError::Blacklisted { .. }
            | AuthError::IllegalTransition { .. }
            | AuthError::NoGenesis
            | AuthError::Other(_) => RefusalClass::FailedPrecondition,
            AuthError::UnknownOrganisation { .. }
            | AuthError::UnknownCertificate { .. }
            | AuthError::UnknownRecord { .. } => RefusalClass::NotFound,
            AuthError::CertificateExists { .. } => RefusalClass::AlreadyExists,
            AuthError::Mismatch { .. } | AuthError::RecordHashMismatch { .. } => RefusalClass::InvalidArgument,
            AuthError::Unreadable(_) => RefusalClass::Internal,
        }
    }
}

/// Looks up records a new event refers to. The node answers from its store;
/// an offline verifier from a bundle.
pub trait Records {
    /// What is known of record `seq` of log `log`: `Ok(None)` when it does
    /// not exist, an error when it could not be read.
    fn record(&self, log: &LogId, seq: u64) -> Result<Option<RecordInfo>, RecordsError>;
}

/// A record could not be read (a storage failure): never a reason to tell
/// the caller that the record does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reading record {log}/{seq}: {detail}")]
pub struct RecordsError {
    pub log: LogId,
    pub seq: u64,
    pub detail: String,
}

/// The record `seq` of `log`, which `field` names: it must exist.
fn named_record(records: &dyn Records, field: &'static str, log: &LogId, seq: u64) -> Result<RecordInfo, AuthError> {
    records.record(log, seq)?.ok_or_else(|| AuthError::UnknownRecord { field, log: log.to_hex(), seq })
}

/// The facts about an earlier record that authorisation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    pub hash: EntryHash,
    pub signer: [u8; 32],
    /// `None` when the record's event does not decode.
    pub kind: Option<EventKind>,
}

/// A registered organisation, as of its latest registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Organisation {
    pub uscc: Uscc,
    pub name: String,
    pub roles: Vec<pb::Role>,
    pub accreditations: Vec<pb::Accreditation>,
    pub region: String,
    /// Entry that registered or last updated it.
    pub registered_at: u64,
}

/// A registered key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    pub uscc: Uscc,
    pub person: String,
    pub title: String,
    pub admin: bool,
    pub root: bool,
    /// The entry that registered it (the genesis entry for root keys).
    pub registered_at: u64,
    /// The log holding the registration (keys may be registered on any
    /// trusted log of the federation).
    pub registered_in: LogId,
    pub revoked_at: Option<u64>,
    pub revoked_in: Option<LogId>,
}

/// One blacklisting, possibly ended.
#[derive(Debug, Clone, PartialEq)]
pub struct BlacklistPeriod {
    pub reason: String,
    pub legal_basis: String,
    pub listed_on: String,
    pub until: String,
    pub listed_at: u64,
    pub delisted_at: Option<u64>,
    pub delisted_on: String,
}

/// The lifecycle state of a certificate, as recorded (expiry is derived
/// from `valid_until` by whoever asks, at the date they ask about).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertState {
    Active,
    Suspended,
    Withdrawn,
    Cancelled,
}

impl CertState {
    pub fn name(self) -> &'static str {
        match self {
            CertState::Active => "active (有效)",
            CertState::Suspended => "suspended (暂停)",
            CertState::Withdrawn => "withdrawn (撤销)",
            CertState::Cancelled => "cancelled (注销)",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    pub state: CertState,
    pub holder: String,
    pub valid_until: Date,
    pub issued_at: u64,
    /// Certified GTINs or prefixes, after scope reductions.
    pub products: Vec<String>,
}

/// Who signed an accepted event, and under which authority.
#[derive(Debug, Clone, PartialEq)]
pub struct Authority {
    pub uscc: Option<Uscc>,
    pub person: String,
    pub title: String,
    pub root: bool,
}

/// The signer of an event being authorised: its key, its organisation,
/// and what it signs on which date.
struct Signer<'a> {
    org: &'a Organisation,
    key: &'a KeyInfo,
    kind: EventKind,
    date: Option<Date>,
}

impl Signer<'_> {
    fn has(&self, role: pb::Role) -> bool {
        self.org.roles.contains(&role)
    }

    fn is_regulator(&self) -> bool {
        self.has(pb::Role::Regulator)
    }

    /// The refusal of a signer whose roles do not allow the event.
    fn deny(&self, allowed: &'static str) -> AuthError {
        AuthError::RoleNotAllowed {
            kind: self.kind,
            allowed,
            uscc: self.org.uscc.to_string(),
            roles: roles_text(&self.org.roles),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Registry {
    log_id: Option<LogId>,
    log_key: Option<[u8; 32]>,
    /// Logs whose genesis root authorities are honoured: this one and the
    /// federation peers it trusts.
    trusted: HashMap<LogId, [u8; 32]>,
    genesis_seen: HashSet<LogId>,
    // Persistent maps: a clone costs O(1) and shares structure until either
    // copy changes, so the node's writer builds each batch on its own copy
    // while readers keep the published one.
    orgs: imbl::HashMap<Uscc, Organisation>,
    keys: imbl::HashMap<[u8; 32], KeyInfo>,
    blacklist: imbl::HashMap<Uscc, Vec<BlacklistPeriod>>,
    certificates: imbl::OrdMap<(Uscc, String), CertInfo>,
}

impl Registry {
    /// An empty registry for the log signed by `log_key`.
    pub fn new(log_key: [u8; 32]) -> Self {
        let log_id = LogId::of_key(&log_key);
        Registry {
            log_id: Some(log_id),
            log_key: Some(log_key),
            trusted: HashMap::from([(log_id, log_key)]),
            ..Default::default()
        }
    }

    /// Honours the registry records of another log of the federation: its
    /// genesis root authorities, organisations, keys and blacklist.
    pub fn trust_log(&mut self, log_key: [u8; 32]) {
        self.trusted.insert(LogId::of_key(&log_key), log_key);
    }

    /// Whether records of `log` are honoured.
    pub fn trusts(&self, log: &LogId) -> bool {
        self.trusted.contains_key(log)
    }

    pub fn organisation(&self, uscc: &Uscc) -> Option<&Organisation> {
        self.orgs.get(uscc)
    }

    pub fn key(&self, key: &[u8; 32]) -> Option<&KeyInfo> {
        self.keys.get(key)
    }

    pub fn certificate(&self, issuer: &Uscc, number: &str) -> Option<&CertInfo> {
        self.certificates.get(&(issuer.clone(), number.to_string()))
    }

    /// The blacklisting of an organisation in force on `date`: not delisted,
    /// and `date` from its first day (`listed_on`: a listing decided today
    /// to take effect next month counts from next month) to its last
    /// (`until`, open-ended when empty). With no date, any listing not
    /// delisted, future-dated ones included (they may be delisted).
    pub fn blacklisting(&self, uscc: &Uscc, date: Option<&Date>) -> Option<&BlacklistPeriod> {
        self.blacklist.get(uscc).and_then(|periods| {
            periods.iter().rev().find(|p| {
                let Some(d) = date else { return p.delisted_at.is_none() };
                // Both dates were checked when the listing was accepted; one
                // that does not parse leaves that end of the period open.
                let started = Date::parse_iso(&p.listed_on).ok().is_none_or(|from| from <= *d);
                let not_ended = Date::parse_iso(&p.until).ok().is_none_or(|until| *d <= until);
                p.delisted_at.is_none() && started && not_ended
            })
        })
    }

    pub fn blacklist_history(&self, uscc: &Uscc) -> &[BlacklistPeriod] {
        self.blacklist.get(uscc).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Checks whether `signer` may append `event` as entry `seq`.
    pub fn authorize(
        &self,
        seq: u64,
        signer: &[u8; 32],
        event: &ValidEvent,
        records: &dyn Records,
    ) -> Result<Authority, AuthError> {
        let body = event.body().ok_or(AuthError::Other("event has no body".into()))?;
        if let Body::Genesis(_) = body {
            if seq == 0 && Some(*signer) == self.log_key {
                return Ok(Authority { uscc: None, person: "log key".into(), title: String::new(), root: true });
            }
            return Err(AuthError::Genesis);
        }
        if !self.log_id.is_some_and(|id| self.genesis_seen.contains(&id)) {
            return Err(AuthError::NoGenesis);
        }
        self.check_refs(event, records)?;
        let key = self.keys.get(signer).ok_or_else(|| AuthError::UnknownKey { key: hex::encode(signer) })?;
        if let Some(revoked_at) = key.revoked_at {
            return Err(AuthError::RevokedKey { key: hex::encode(signer), revoked_at });
        }
        let org =
            self.orgs.get(&key.uscc).ok_or_else(|| AuthError::UnknownOrganisation { uscc: key.uscc.to_string() })?;
        let authority = Authority {
            uscc: Some(key.uscc.clone()),
            person: key.person.clone(),
            title: key.title.clone(),
            root: key.root,
        };
        let signer = Signer { org, key, kind: event.kind, date: event_date(&event.event) };
        match body {
            Body::Genesis(_) => return Err(AuthError::Genesis),
            Body::OrgRegistered(_) | Body::OrgUpdated(_) | Body::KeyRegistered(_) | Body::KeyRevoked(_) => {
                self.authorize_org_or_key(&signer, body)?
            }
            Body::Production(_) | Body::Transformation(_) | Body::Shipment(_) | Body::Receipt(_) | Body::Sale(_) => {
                self.authorize_goods_movement(&signer, body)?
            }
            Body::Inspection(_) | Body::SpotCheck(_) => self.authorize_test(&signer, body)?,
            Body::CertificateIssued(_)
            | Body::CertificateSuspended(_)
            | Body::CertificateRestored(_)
            | Body::CertificateScopeReduced(_)
            | Body::CertificateWithdrawn(_)
            | Body::CertificateCancelled(_)
            | Body::CertificateRenewed(_) => self.authorize_certificate(&signer, body)?,
            Body::Recall(_) | Body::RecallProgress(_) | Body::RecallClosed(_) => {
                self.authorize_recall(&signer, body, records)?
            }
            Body::Blacklisted(_) | Body::Delisted(_) => self.authorize_blacklist(&signer, body)?,
            Body::Correction(c) => self.authorize_correction(&signer, c, records)?,
        }
        Ok(authority)
    }

    /// Organisations and keys: registered and updated by a regulator; keys
    /// also by an admin key of their own organisation.
    fn authorize_org_or_key(&self, signer: &Signer<'_>, body: &Body) -> Result<(), AuthError> {
        match body {
            Body::OrgRegistered(o) => {
                if !signer.is_regulator() {
                    return Err(signer.deny("a regulator"));
                }
                let uscc = parse_uscc(&o.uscc)?;
                if self.orgs.contains_key(&uscc) {
                    return Err(AuthError::Other(format!(
                        "organisation {uscc} is already registered; use org_updated to change it"
                    )));
                }
            }
            Body::OrgUpdated(o) => {
                if !signer.is_regulator() {
                    return Err(signer.deny("a regulator"));
                }
                let uscc = parse_uscc(&o.uscc)?;
                if !self.orgs.contains_key(&uscc) {
                    return Err(AuthError::UnknownOrganisation { uscc: uscc.to_string() });
                }
            }
            Body::KeyRegistered(k) => {
                let target = parse_uscc(&k.uscc)?;
                if !self.orgs.contains_key(&target) {
                    return Err(AuthError::UnknownOrganisation { uscc: target.to_string() });
                }
                if !(signer.is_regulator() || (signer.key.admin && signer.key.uscc == target)) {
                    return Err(signer.deny("a regulator or an admin key of the same organisation"));
                }
                if let Ok(bytes) = <[u8; 32]>::try_from(k.public_key.as_slice())
                    && self.keys.contains_key(&bytes)
                {
                    return Err(AuthError::Other(format!("key {} is already registered", hex::encode(bytes))));
                }
            }
            Body::KeyRevoked(k) => {
                let bytes = <[u8; 32]>::try_from(k.public_key.as_slice())
                    .map_err(|_| AuthError::Other("key_revoked.public_key must be 32 bytes".into()))?;
                let target = self.keys.get(&bytes).ok_or_else(|| AuthError::UnknownKey { key: hex::encode(bytes) })?;
                if !(signer.is_regulator() || (signer.key.admin && signer.key.uscc == target.uscc)) {
                    return Err(signer.deny("a regulator or an admin key of the key's organisation"));
                }
                if let Some(revoked_at) = target.revoked_at {
                    return Err(AuthError::RevokedKey { key: hex::encode(bytes), revoked_at });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Production, transformation, shipment, receipt and sale: by the roles
    /// that move goods, in good standing.
    fn authorize_goods_movement(&self, signer: &Signer<'_>, body: &Body) -> Result<(), AuthError> {
        match body {
            Body::Production(_) | Body::Transformation(_) => {
                if !signer.has(pb::Role::Manufacturer) {
                    return Err(signer.deny("a manufacturer"));
                }
                self.good_standing(signer, &signer.org.uscc)?;
            }
            Body::Shipment(_) | Body::Receipt(_) => {
                if !(signer.has(pb::Role::Manufacturer)
                    || signer.has(pb::Role::Distributor)
                    || signer.has(pb::Role::Retailer))
                {
                    return Err(signer.deny("a manufacturer, distributor or retailer"));
                }
                self.good_standing(signer, &signer.org.uscc)?;
            }
            Body::Sale(_) => {
                if !signer.has(pb::Role::Retailer) {
                    return Err(signer.deny("a retailer"));
                }
                self.good_standing(signer, &signer.org.uscc)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Inspections (an accredited lab in good standing) and spot checks (a
    /// regulator).
    fn authorize_test(&self, signer: &Signer<'_>, body: &Body) -> Result<(), AuthError> {
        match body {
            Body::Inspection(i) => {
                if !signer.has(pb::Role::TestingLab) {
                    return Err(signer.deny("a testing lab"));
                }
                self.good_standing(signer, &signer.org.uscc)?;
                let gtin = i.product.as_ref().map(|p| p.gtin.as_str());
                check_accreditation(signer.org, signer.date.as_ref(), gtin.into_iter(), &i.standards)?;
            }
            Body::SpotCheck(_) if !signer.is_regulator() => return Err(signer.deny("a regulator")),
            _ => {}
        }
        Ok(())
    }

    /// Certificates: issued and changed by their issuing body, along the
    /// allowed transitions.
    fn authorize_certificate(&self, signer: &Signer<'_>, body: &Body) -> Result<(), AuthError> {
        match body {
            Body::CertificateIssued(c) => {
                if !signer.has(pb::Role::CertificationBody) {
                    return Err(signer.deny("a certification body"));
                }
                self.good_standing(signer, &signer.org.uscc)?;
                let cert = c.certificate.as_ref().ok_or(AuthError::Other("certificate missing".into()))?;
                issuer_is_signer(cert, signer.org)?;
                let holder = parse_uscc(&c.holder_uscc)?;
                if !self.orgs.contains_key(&holder) {
                    return Err(AuthError::UnknownOrganisation { uscc: holder.to_string() });
                }
                self.good_standing(signer, &holder)?;
                check_accreditation(
                    signer.org,
                    signer.date.as_ref(),
                    c.products.iter().map(|p| p.gtin.as_str()),
                    &c.standards,
                )?;
                let issuer = parse_uscc(&cert.issuer_uscc)?;
                if self.certificates.contains_key(&(issuer.clone(), cert.number.clone())) {
                    return Err(AuthError::CertificateExists {
                        issuer: issuer.to_string(),
                        number: cert.number.clone(),
                    });
                }
            }
            Body::CertificateSuspended(_)
            | Body::CertificateRestored(_)
            | Body::CertificateScopeReduced(_)
            | Body::CertificateWithdrawn(_)
            | Body::CertificateCancelled(_)
            | Body::CertificateRenewed(_) => {
                if !signer.has(pb::Role::CertificationBody) {
                    return Err(signer.deny("a certification body"));
                }
                let cert = certificate_key(body).ok_or(AuthError::Other("certificate missing".into()))?;
                issuer_is_signer(cert, signer.org)?;
                let issuer = parse_uscc(&cert.issuer_uscc)?;
                let info = self.certificates.get(&(issuer.clone(), cert.number.clone())).ok_or_else(|| {
                    AuthError::UnknownCertificate { issuer: issuer.to_string(), number: cert.number.clone() }
                })?;
                let expired = signer.date.as_ref().is_some_and(|d| *d > info.valid_until);
                let allowed = match (info.state, signer.kind) {
                    (CertState::Active, EventKind::CertificateSuspended) => !expired,
                    (CertState::Suspended, EventKind::CertificateRestored) => !expired,
                    (CertState::Active, EventKind::CertificateScopeReduced) => !expired,
                    (CertState::Active | CertState::Suspended, EventKind::CertificateWithdrawn) => !expired,
                    (CertState::Active | CertState::Suspended, EventKind::CertificateCancelled) => !expired,
                    (CertState::Active, EventKind::CertificateRenewed) => !expired,
                    _ => false,
                };
                if !allowed {
                    return Err(AuthError::IllegalTransition {
                        issuer: issuer.to_string(),
                        number: cert.number.clone(),
                        state: if expired && matches!(info.state, CertState::Active | CertState::Suspended) {
                            "expired (过期)"
                        } else {
                            info.state.name()
                        },
                        kind: signer.kind,
                    });
                }
                // Acts that keep or widen a certificate's force need a body in
                // good standing with an accreditation in force, and a holder
                // in good standing; acts that restrict it (suspend, reduce,
                // withdraw, cancel) never do, so a body can always act.
                if matches!(signer.kind, EventKind::CertificateRestored | EventKind::CertificateRenewed) {
                    self.good_standing(signer, &signer.org.uscc)?;
                    if let Ok(holder) = Uscc::parse(&info.holder) {
                        self.good_standing(signer, &holder)?;
                    }
                    check_accreditation(
                        signer.org,
                        signer.date.as_ref(),
                        info.products.iter().map(String::as_str),
                        &[],
                    )?;
                }
                if let Body::CertificateRenewed(r) = body
                    && let Ok(until) = Date::parse_iso(&r.valid_until)
                    && until <= info.valid_until
                {
                    return Err(AuthError::Mismatch {
                        field: "certificate_renewed.valid_until",
                        detail: format!(
                            "{until} does not extend the certificate, which is already valid until {}",
                            info.valid_until
                        ),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Recalls: voluntary by the manufacturer itself, ordered by a regulator;
    /// their progress by the initiator or a regulator.
    fn authorize_recall(&self, signer: &Signer<'_>, body: &Body, records: &dyn Records) -> Result<(), AuthError> {
        match body {
            Body::Recall(r) => {
                let initiator = pb::RecallInitiator::try_from(r.initiator).unwrap_or(pb::RecallInitiator::Unspecified);
                match initiator {
                    pb::RecallInitiator::Voluntary => {
                        if !signer.has(pb::Role::Manufacturer) {
                            return Err(signer.deny("a manufacturer (voluntary recall, 主动召回)"));
                        }
                        if !r.manufacturer_uscc.is_empty() && parse_uscc(&r.manufacturer_uscc)? != signer.org.uscc {
                            return Err(AuthError::Mismatch {
                                field: "recall.manufacturer_uscc",
                                detail: format!(
                                    "a voluntary recall is signed by the manufacturer itself; the signer is {}",
                                    signer.org.uscc
                                ),
                            });
                        }
                    }
                    _ => {
                        if !signer.is_regulator() {
                            return Err(signer.deny("a regulator (ordered recall, 责令召回)"));
                        }
                    }
                }
            }
            Body::RecallProgress(_) | Body::RecallClosed(_) => {
                if !(signer.is_regulator() || signer.has(pb::Role::Manufacturer)) {
                    return Err(signer.deny("the recall's initiator or a regulator"));
                }
                let recall = match body {
                    Body::RecallProgress(p) => p.recall.as_ref(),
                    Body::RecallClosed(c) => c.recall.as_ref(),
                    _ => None,
                };
                let recall = recall.ok_or(AuthError::Other("the recall record is required".into()))?;
                let log = LogId::from_slice(&recall.log_id).map_err(|e| AuthError::Other(e.to_string()))?;
                let named = named_record(records, "recall", &log, recall.seq)?;
                if named.kind != Some(EventKind::Recall) {
                    return Err(AuthError::Mismatch {
                        field: "recall",
                        detail: format!("record {} of log {} is not a recall", recall.seq, log),
                    });
                }
                if !signer.is_regulator() {
                    let log = LogId::from_slice(&recall.log_id).map_err(|e| AuthError::Other(e.to_string()))?;
                    let info = named_record(records, "recall", &log, recall.seq)?;
                    let recall_org = self.keys.get(&info.signer).map(|k| &k.uscc);
                    if recall_org != Some(&signer.org.uscc) {
                        return Err(signer.deny("the recall's initiator or a regulator"));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The quality blacklist: a regulator lists and delists.
    fn authorize_blacklist(&self, signer: &Signer<'_>, body: &Body) -> Result<(), AuthError> {
        if !signer.is_regulator() {
            return Err(signer.deny("a regulator"));
        }
        if let Body::Delisted(d) = body {
            let uscc = parse_uscc(&d.uscc)?;
            if self.blacklisting(&uscc, None).is_none() {
                return Err(AuthError::Other(format!("organisation {uscc} is not on the blacklist")));
            }
        }
        Ok(())
    }

    /// Corrections: by the organisation that signed the corrected record.
    fn authorize_correction(
        &self,
        signer: &Signer<'_>,
        c: &pb::Correction,
        records: &dyn Records,
    ) -> Result<(), AuthError> {
        let target = c.target.as_ref().ok_or(AuthError::Other("correction.target missing".into()))?;
        let log = LogId::from_slice(&target.log_id).map_err(|e| AuthError::Other(e.to_string()))?;
        let info = named_record(records, "correction.target", &log, target.seq)?;
        let target_org = self.keys.get(&info.signer).map(|k| &k.uscc);
        if target_org != Some(&signer.org.uscc) {
            return Err(AuthError::RoleNotAllowed {
                kind: signer.kind,
                allowed: "the organisation that signed the corrected record",
                uscc: signer.org.uscc.to_string(),
                roles: roles_text(&signer.org.roles),
            });
        }
        Ok(())
    }

    /// A blacklisted organisation may not act on the event's date.
    fn good_standing(&self, signer: &Signer<'_>, uscc: &Uscc) -> Result<(), AuthError> {
        match self.blacklisting(uscc, signer.date.as_ref()) {
            Some(p) => Err(AuthError::Blacklisted {
                uscc: uscc.to_string(),
                since: p.listed_on.clone(),
                reason: p.reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Every record an event names must exist with the hash it gives.
    fn check_refs(&self, event: &ValidEvent, records: &dyn Records) -> Result<(), AuthError> {
        let mut refs: Vec<(&'static str, &pb::RecordRef)> =
            event.event.parents.iter().map(|p| ("parents", p)).collect();
        match event.body() {
            Some(Body::RecallProgress(p)) => refs.extend(p.recall.iter().map(|r| ("recall_progress.recall", r))),
            Some(Body::RecallClosed(c)) => refs.extend(c.recall.iter().map(|r| ("recall_closed.recall", r))),
            Some(Body::Correction(c)) => {
                refs.extend(c.target.iter().map(|r| ("correction.target", r)));
                refs.extend(c.corrective.iter().map(|r| ("correction.corrective", r)));
            }
            _ => {}
        }
        for (field, r) in refs {
            let log = LogId::from_slice(&r.log_id).map_err(|e| AuthError::Other(e.to_string()))?;
            let hash = named_record(records, field, &log, r.seq)?.hash;
            if hash.0.as_slice() != r.entry_hash.as_slice() {
                return Err(AuthError::RecordHashMismatch {
                    field,
                    log: log.to_hex(),
                    seq: r.seq,
                    given: hex::encode(&r.entry_hash),
                    found: hash.to_hex(),
                });
            }
        }
        Ok(())
    }

    /// Applies an appended (authorised) event of this registry's own log.
    pub fn apply(&mut self, seq: u64, signer: &[u8; 32], event: &ValidEvent) {
        let log = self.log_id.unwrap_or_else(|| LogId::of_key(signer));
        self.apply_in(log, seq, signer, event);
    }

    /// Applies an event of log `log`, which must be trusted (its own or a
    /// peer's); events of other logs are ignored.
    pub fn apply_in(&mut self, log: LogId, seq: u64, signer: &[u8; 32], event: &ValidEvent) {
        if !self.trusted.contains_key(&log) && self.log_id.is_some() {
            return;
        }
        let Some(body) = event.body() else { return };
        match body {
            Body::Genesis(_)
            | Body::OrgRegistered(_)
            | Body::OrgUpdated(_)
            | Body::KeyRegistered(_)
            | Body::KeyRevoked(_) => self.apply_org_or_key(log, seq, signer, body),
            Body::CertificateIssued(_)
            | Body::CertificateSuspended(_)
            | Body::CertificateRestored(_)
            | Body::CertificateScopeReduced(_)
            | Body::CertificateWithdrawn(_)
            | Body::CertificateCancelled(_)
            | Body::CertificateRenewed(_) => self.apply_certificate(seq, body),
            Body::Blacklisted(_) | Body::Delisted(_) => self.apply_blacklist(seq, body),
            _ => {}
        }
    }

    /// Genesis (the operator and its root authority keys), organisations
    /// and keys.
    fn apply_org_or_key(&mut self, log: LogId, seq: u64, signer: &[u8; 32], body: &Body) {
        match body {
            Body::Genesis(g) => {
                let is_log_key = match self.trusted.get(&log) {
                    Some(key) => key == signer,
                    None => LogId::of_key(signer) == log,
                };
                if seq != 0 || !is_log_key || !self.genesis_seen.insert(log) {
                    return;
                }
                if let Ok(uscc) = Uscc::parse(&g.operator_uscc) {
                    // An operator already registered (on another log) keeps
                    // its registration and gains the regulator role.
                    let org = self.orgs.entry(uscc.clone()).or_insert_with(|| Organisation {
                        uscc: uscc.clone(),
                        name: g.operator_name.clone(),
                        roles: Vec::new(),
                        accreditations: Vec::new(),
                        region: String::new(),
                        registered_at: seq,
                    });
                    if !org.roles.contains(&pb::Role::Regulator) {
                        org.roles.push(pb::Role::Regulator);
                    }
                    for key in &g.root_authority_keys {
                        if let Ok(bytes) = <[u8; 32]>::try_from(key.as_slice()) {
                            self.keys.insert(
                                bytes,
                                KeyInfo {
                                    uscc: uscc.clone(),
                                    person: "root authority".into(),
                                    title: "根权限 root authority".into(),
                                    admin: true,
                                    root: true,
                                    registered_at: seq,
                                    registered_in: log,
                                    revoked_at: None,
                                    revoked_in: None,
                                },
                            );
                        }
                    }
                }
            }
            Body::OrgRegistered(o) => self.put_org(seq, &o.uscc, &o.name, &o.roles, &o.accreditations, &o.region),
            Body::OrgUpdated(o) => self.put_org(seq, &o.uscc, &o.name, &o.roles, &o.accreditations, &o.region),
            Body::KeyRegistered(k) => {
                if let (Ok(uscc), Ok(bytes)) = (Uscc::parse(&k.uscc), <[u8; 32]>::try_from(k.public_key.as_slice())) {
                    self.keys.insert(
                        bytes,
                        KeyInfo {
                            uscc,
                            person: k.person.clone(),
                            title: k.title.clone(),
                            admin: k.admin,
                            root: false,
                            registered_at: seq,
                            registered_in: log,
                            revoked_at: None,
                            revoked_in: None,
                        },
                    );
                }
            }
            Body::KeyRevoked(k) => {
                if let Ok(bytes) = <[u8; 32]>::try_from(k.public_key.as_slice())
                    && let Some(info) = self.keys.get_mut(&bytes)
                    && info.revoked_at.is_none()
                {
                    info.revoked_at = Some(seq);
                    info.revoked_in = Some(log);
                }
            }
            _ => {}
        }
    }

    /// Certificates: issued, then their state and scope.
    fn apply_certificate(&mut self, seq: u64, body: &Body) {
        match body {
            Body::CertificateIssued(c) => {
                if let Some(cert) = &c.certificate
                    && let Ok(issuer) = Uscc::parse(&cert.issuer_uscc)
                    && let Ok(valid_until) = Date::parse_iso(&c.valid_until)
                {
                    self.certificates.insert(
                        (issuer, cert.number.clone()),
                        CertInfo {
                            state: CertState::Active,
                            holder: c.holder_uscc.clone(),
                            valid_until,
                            issued_at: seq,
                            products: c.products.iter().map(|p| p.gtin.clone()).collect(),
                        },
                    );
                }
            }
            Body::CertificateSuspended(_)
            | Body::CertificateRestored(_)
            | Body::CertificateScopeReduced(_)
            | Body::CertificateWithdrawn(_)
            | Body::CertificateCancelled(_)
            | Body::CertificateRenewed(_) => {
                let Some(cert) = certificate_key(body) else { return };
                let Ok(issuer) = Uscc::parse(&cert.issuer_uscc) else { return };
                let Some(info) = self.certificates.get_mut(&(issuer, cert.number.clone())) else { return };
                match body {
                    Body::CertificateSuspended(_) => info.state = CertState::Suspended,
                    Body::CertificateRestored(_) => info.state = CertState::Active,
                    Body::CertificateWithdrawn(_) => info.state = CertState::Withdrawn,
                    Body::CertificateScopeReduced(r) => {
                        info.products.retain(|g| !r.removed_gtins.iter().any(|removed| g.starts_with(removed.as_str())))
                    }
                    Body::CertificateCancelled(_) => info.state = CertState::Cancelled,
                    Body::CertificateRenewed(r) => {
                        if let Ok(until) = Date::parse_iso(&r.valid_until) {
                            info.valid_until = until;
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The quality blacklist: listings and delistings.
    fn apply_blacklist(&mut self, seq: u64, body: &Body) {
        match body {
            Body::Blacklisted(b) => {
                if let Ok(uscc) = Uscc::parse(&b.uscc) {
                    self.blacklist.entry(uscc).or_default().push(BlacklistPeriod {
                        reason: b.reason.clone(),
                        legal_basis: b.legal_basis.clone(),
                        listed_on: b.listed_on.clone(),
                        until: b.until.clone(),
                        listed_at: seq,
                        delisted_at: None,
                        delisted_on: String::new(),
                    });
                }
            }
            Body::Delisted(d) => {
                if let Ok(uscc) = Uscc::parse(&d.uscc)
                    && let Some(periods) = self.blacklist.get_mut(&uscc)
                {
                    for period in periods.iter_mut().filter(|p| p.delisted_at.is_none()) {
                        period.delisted_at = Some(seq);
                        period.delisted_on = d.delisted_on.clone();
                    }
                }
            }
            _ => {}
        }
    }

    fn put_org(
        &mut self,
        seq: u64,
        uscc: &str,
        name: &str,
        roles: &[i32],
        accreditations: &[pb::Accreditation],
        region: &str,
    ) {
        let Ok(uscc) = Uscc::parse(uscc) else { return };
        let roles = roles.iter().filter_map(|r| pb::Role::try_from(*r).ok()).collect();
        self.orgs.insert(
            uscc.clone(),
            Organisation {
                uscc,
                name: name.to_string(),
                roles,
                accreditations: accreditations.to_vec(),
                region: region.to_string(),
                registered_at: seq,
            },
        );
    }

    /// The log this registry belongs to.
    pub fn log_id(&self) -> Option<LogId> {
        self.log_id
    }

    /// The public key of the log this registry belongs to.
    pub fn log_key(&self) -> Option<[u8; 32]> {
        self.log_key
    }
}

/// The certificate a certificate record is about, for any of its kinds.
pub fn certificate_key(body: &Body) -> Option<&pb::CertificateKey> {
    match body {
        Body::CertificateIssued(c) => c.certificate.as_ref(),
        Body::CertificateSuspended(c) => c.certificate.as_ref(),
        Body::CertificateRestored(c) => c.certificate.as_ref(),
        Body::CertificateScopeReduced(c) => c.certificate.as_ref(),
        Body::CertificateWithdrawn(c) => c.certificate.as_ref(),
        Body::CertificateCancelled(c) => c.certificate.as_ref(),
        Body::CertificateRenewed(c) => c.certificate.as_ref(),
        _ => None,
    }
}

fn issuer_is_signer(cert: &pb::CertificateKey, org: &Organisation) -> Result<(), AuthError> {
    if parse_uscc(&cert.issuer_uscc)? != org.uscc {
        return Err(AuthError::NotIssuer { issuer: cert.issuer_uscc.clone(), signer: org.uscc.to_string() });
    }
    Ok(())
}

/// Whether a standard named in a record falls under a standard named in an
/// accreditation: the same number, or a dated or sub-numbered edition of it
/// ("GB 19644" covers "GB 19644-2010" and "GB 19644.1", not "GB 196440").
pub fn standard_covers(allowed: &str, standard: &str) -> bool {
    match standard.strip_prefix(allowed) {
        Some(rest) => rest.is_empty() || rest.starts_with(['-', '.', ' ']),
        None => false,
    }
}

/// Checks that one of the organisation's accreditations is valid on `date`
/// and covers every product (a 14-digit GTIN, or a GTIN prefix naming a
/// range of products) and the standards given. A prefix is covered only if
/// the whole range it names is: it must itself start with an accredited
/// prefix.
pub fn check_accreditation<'a>(
    org: &Organisation,
    date: Option<&Date>,
    products: impl Iterator<Item = &'a str>,
    standards: &[String],
) -> Result<(), AuthError> {
    let valid: Vec<&pb::Accreditation> = org
        .accreditations
        .iter()
        .filter(|a| match (date, Date::parse_iso(&a.valid_from), Date::parse_iso(&a.valid_until)) {
            (Some(d), Ok(from), Ok(until)) => from <= *d && *d <= until,
            _ => false,
        })
        .collect();
    let date_text = date.map(|d| d.to_string()).unwrap_or_else(|| "the event date".into());
    if valid.is_empty() {
        return Err(AuthError::NotAccredited {
            uscc: org.uscc.to_string(),
            date: date_text,
            what: "anything (no accreditation in force; 资质认定无效)".into(),
        });
    }
    for product in products {
        // GTINs given in 8, 12 or 13 digits are compared in their 14-digit form.
        let digits = Gtin::parse(product).map(|g| g.as_str().to_string()).unwrap_or_else(|_| product.to_string());
        let covered = valid.iter().any(|a| {
            a.gtin_prefixes.iter().any(|p| digits.starts_with(p.as_str()))
                && (a.standards.is_empty()
                    || standards.is_empty()
                    || standards.iter().all(|s| a.standards.iter().any(|allowed| standard_covers(allowed, s))))
        });
        if !covered {
            return Err(AuthError::NotAccredited {
                uscc: org.uscc.to_string(),
                date: date_text,
                what: format!("GTIN {digits} with standards [{}] (out of scope, 超出资质范围)", standards.join(", ")),
            });
        }
    }
    Ok(())
}

fn parse_uscc(value: &str) -> Result<Uscc, AuthError> {
    Uscc::parse(value).map_err(|e| AuthError::Other(e.to_string()))
}

/// Roles as their CLI names, comma separated.
pub fn roles_text(roles: &[pb::Role]) -> String {
    if roles.is_empty() {
        return "none".into();
    }
    roles.iter().map(|r| role_name(*r)).collect::<Vec<_>>().join(", ")
}

/// Which roles may sign a kind of record (the matrix in the module docs).
/// Key records may also be signed by an admin key of the key's own
/// organisation, and corrections by the original signer's organisation
/// whatever its role; those rules need the record and are checked apart.
pub fn allowed_roles(kind: EventKind) -> &'static [pb::Role] {
    use pb::Role::*;
    match kind {
        EventKind::Genesis => &[],
        EventKind::OrgRegistered | EventKind::OrgUpdated => &[Regulator],
        EventKind::KeyRegistered | EventKind::KeyRevoked => &[Regulator],
        EventKind::Production | EventKind::Transformation => &[Manufacturer],
        EventKind::Shipment | EventKind::Receipt => &[Manufacturer, Distributor, Retailer],
        EventKind::Sale => &[Retailer],
        EventKind::Inspection => &[TestingLab],
        EventKind::SpotCheck => &[Regulator],
        EventKind::CertificateIssued
        | EventKind::CertificateSuspended
        | EventKind::CertificateRestored
        | EventKind::CertificateScopeReduced
        | EventKind::CertificateWithdrawn
        | EventKind::CertificateCancelled
        | EventKind::CertificateRenewed => &[CertificationBody],
        EventKind::Recall | EventKind::RecallProgress | EventKind::RecallClosed => &[Manufacturer, Regulator],
        EventKind::Blacklisted | EventKind::Delisted => &[Regulator],
        EventKind::Correction => &[Regulator, CertificationBody, TestingLab, Manufacturer, Distributor, Retailer],
    }
}

/// The CLI name of a role.
pub fn role_name(role: pb::Role) -> &'static str {
    match role {
        pb::Role::Unspecified => "unspecified",
        pb::Role::Regulator => "regulator",
        pb::Role::CertificationBody => "certification_body",
        pb::Role::TestingLab => "testing_lab",
        pb::Role::Manufacturer => "manufacturer",
        pb::Role::Distributor => "distributor",
        pb::Role::Retailer => "retailer",
    }
}

/// Parses a CLI role name.
pub fn parse_role(name: &str) -> Option<pb::Role> {
    [
        pb::Role::Regulator,
        pb::Role::CertificationBody,
        pb::Role::TestingLab,
        pb::Role::Manufacturer,
        pb::Role::Distributor,
        pb::Role::Retailer,
    ]
    .into_iter()
    .find(|r| role_name(*r) == name)
}

/// The local calendar date of an event, at its own zone offset.
pub fn event_date(event: &pb::Event) -> Option<Date> {
    let t = event.event_time.as_ref()?;
    let local_millis = t.unix_millis.checked_add(i64::from(t.offset_minutes) * 60_000)?;
    Some(Date::from_days_since_epoch(local_millis.div_euclid(86_400_000)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind as K;
    use crate::pb::subject::Kind;
    use crate::testkit::{
        self, CERT_BODY, CERT_BODY_2, CERT_NUMBER, DISTRIBUTOR, EVENT_DATE, GTIN_OUT_OF_SCOPE, GTIN_POWDER, LAB,
        MANUFACTURER, MANUFACTURER_2, REGULATOR, RETAILER, TestLog, UNREGISTERED, Who, example, on, valid, with_refs,
    };
    use RefusalClass as C;

    /// The variant's name, so tables can say which refusal they expect
    /// without spelling out the evidence each carries.
    fn variant(e: &AuthError) -> &'static str {
        match e {
            AuthError::UnknownKey { .. } => "UnknownKey",
            AuthError::RevokedKey { .. } => "RevokedKey",
            AuthError::UnknownOrganisation { .. } => "UnknownOrganisation",
            AuthError::RoleNotAllowed { .. } => "RoleNotAllowed",
            AuthError::NotAccredited { .. } => "NotAccredited",
            AuthError::Blacklisted { .. } => "Blacklisted",
            AuthError::Mismatch { .. } => "Mismatch",
            AuthError::NotIssuer { .. } => "NotIssuer",
            AuthError::CertificateExists { .. } => "CertificateExists",
            AuthError::UnknownCertificate { .. } => "UnknownCertificate",
            AuthError::IllegalTransition { .. } => "IllegalTransition",
            AuthError::UnknownRecord { .. } => "UnknownRecord",
            AuthError::RecordHashMismatch { .. } => "RecordHashMismatch",
            AuthError::Genesis => "Genesis",
            AuthError::NoGenesis => "NoGenesis",
            AuthError::Other(_) => "Other",
            AuthError::Unreadable(_) => "Unreadable",
        }
    }

    /// Accepted, or refused with this variant and class.
    type Want = Result<(), (&'static str, RefusalClass)>;
    const OK: Want = Ok(());
    const ROLE: Want = Err(("RoleNotAllowed", C::PermissionDenied));
    const NOT_ACCREDITED: Want = Err(("NotAccredited", C::PermissionDenied));
    const BLACKLISTED: Want = Err(("Blacklisted", C::FailedPrecondition));
    const MISMATCH: Want = Err(("Mismatch", C::InvalidArgument));

    fn check(name: &str, got: Result<Authority, AuthError>, want: Want) {
        match (got, want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(want)) => assert_eq!((variant(&e), e.class()), want, "{name}: {e}"),
            (Ok(authority), Err(want)) => panic!("{name}: accepted (signed by {authority:?}), expected {want:?}"),
            (Err(e), Ok(())) => panic!("{name}: refused: {e}"),
        }
    }

    fn uscc(code: &str) -> Uscc {
        Uscc::parse(code).unwrap_or_else(|e| panic!("{code}: {e}"))
    }

    /// `event`, a certificate record, about certificate `number` of `issuer`.
    fn about_cert(mut event: pb::Event, issuer: &str, number: &str) -> pb::Event {
        let key = testkit::cert_key(issuer, number);
        event.subject = Some(pb::Subject { kind: Some(Kind::Certificate(key.clone())) });
        let slot = match event.body.as_mut() {
            Some(Body::CertificateIssued(c)) => &mut c.certificate,
            Some(Body::CertificateSuspended(c)) => &mut c.certificate,
            Some(Body::CertificateRestored(c)) => &mut c.certificate,
            Some(Body::CertificateScopeReduced(c)) => &mut c.certificate,
            Some(Body::CertificateWithdrawn(c)) => &mut c.certificate,
            Some(Body::CertificateCancelled(c)) => &mut c.certificate,
            Some(Body::CertificateRenewed(c)) => &mut c.certificate,
            other => panic!("not a certificate record: {other:?}"),
        };
        *slot = Some(key);
        event
    }

    fn blacklist(code: &str) -> pb::Event {
        let mut event = example(K::Blacklisted);
        event.subject = Some(pb::Subject { kind: Some(Kind::OrganisationUscc(code.into())) });
        if let Some(Body::Blacklisted(b)) = event.body.as_mut() {
            b.uscc = code.into();
        }
        event
    }

    fn delist(code: &str) -> pb::Event {
        let mut event = example(K::Delisted);
        event.subject = Some(pb::Subject { kind: Some(Kind::OrganisationUscc(code.into())) });
        if let Some(Body::Delisted(d)) = event.body.as_mut() {
            d.uscc = code.into();
        }
        event
    }

    fn recall(initiator: pb::RecallInitiator, manufacturer: &str) -> pb::Event {
        let mut event = example(K::Recall);
        if let Some(Body::Recall(r)) = event.body.as_mut() {
            r.initiator = initiator.into();
            r.manufacturer_uscc = manufacturer.into();
        }
        event
    }

    /// Appends an inspection report and the certificate [`CERT_NUMBER`]
    /// resting on it, issued by [`CERT_BODY`] to the manufacturer, valid
    /// until 2028-06-14; returns the report.
    fn with_certificate(log: &mut TestLog) -> pb::RecordRef {
        let report = log.accept(Who::Lab, &example(K::Inspection));
        log.accept(Who::CertBody, &with_refs(example(K::CertificateIssued), &report));
        report
    }

    /// The standard log plus the records the matrix's events need: a
    /// production, a shipment, certificate A (active) and B (suspended), a
    /// voluntary recall, and the second manufacturer on the blacklist.
    struct MatrixLog {
        log: TestLog,
        production: pb::RecordRef,
        shipment: pb::RecordRef,
        report: pb::RecordRef,
        recall: pb::RecordRef,
    }

    const CERT_B: &str = "CQC2025010801234568";

    fn matrix_log() -> MatrixLog {
        let mut log = TestLog::standard();
        let production = log.accept(Who::Manufacturer, &example(K::Production));
        let shipment = log.accept(Who::Manufacturer, &with_refs(example(K::Shipment), &production));
        let report = with_certificate(&mut log);
        log.accept(Who::CertBody, &about_cert(with_refs(example(K::CertificateIssued), &report), CERT_BODY, CERT_B));
        log.accept(Who::CertBody, &about_cert(example(K::CertificateSuspended), CERT_BODY, CERT_B));
        let recall = log.accept(Who::Manufacturer, &example(K::Recall));
        log.accept(Who::Regulator, &blacklist(MANUFACTURER_2));
        MatrixLog { log, production, shipment, report, recall }
    }

    #[test]
    fn role_by_kind_matrix() {
        let MatrixLog { log, production, shipment, report, recall: recall_ref } = matrix_log();
        const Y: bool = true;
        const N: bool = false;
        let signers = [Who::Regulator, Who::CertBody, Who::Lab, Who::Manufacturer, Who::Distributor, Who::Retailer];
        let new_org = testkit::org_registered(
            UNREGISTERED,
            "成都市蓉城副食品批发部",
            &[pb::Role::Distributor],
            Vec::new(),
            "510100",
        );
        let cert = |kind| about_cert(example(kind), CERT_BODY, CERT_NUMBER);
        #[rustfmt::skip]
        let rows: Vec<(&str, pb::Event, [bool; 6])> = vec![
            //                                                                              REG CB LAB MFR DIST RET
            ("genesis", example(K::Genesis),                                                [N, N, N, N, N, N]),
            ("org_registered", new_org,                                                     [Y, N, N, N, N, N]),
            ("org_updated", example(K::OrgUpdated),                                         [Y, N, N, N, N, N]),
            // A key of the manufacturer: the regulator or the manufacturer's admin key.
            ("key_registered", example(K::KeyRegistered),                                   [Y, N, N, Y, N, N]),
            ("key_revoked", example(K::KeyRevoked),                                         [Y, N, N, Y, N, N]),
            ("production", example(K::Production),                                          [N, N, N, Y, N, N]),
            ("transformation", with_refs(example(K::Transformation), &production),          [N, N, N, Y, N, N]),
            ("shipment", with_refs(example(K::Shipment), &production),                      [N, N, N, Y, Y, Y]),
            ("receipt", with_refs(example(K::Receipt), &shipment),                          [N, N, N, Y, Y, Y]),
            ("sale", example(K::Sale),                                                      [N, N, N, N, N, Y]),
            ("inspection", example(K::Inspection),                                          [N, N, Y, N, N, N]),
            ("spot_check", example(K::SpotCheck),                                           [Y, N, N, N, N, N]),
            ("certificate_issued", about_cert(with_refs(example(K::CertificateIssued), &report), CERT_BODY, "CQC2025010801234569"),
                                                                                            [N, Y, N, N, N, N]),
            ("certificate_suspended", cert(K::CertificateSuspended),                        [N, Y, N, N, N, N]),
            ("certificate_restored", about_cert(example(K::CertificateRestored), CERT_BODY, CERT_B),
                                                                                            [N, Y, N, N, N, N]),
            ("certificate_scope_reduced", cert(K::CertificateScopeReduced),                 [N, Y, N, N, N, N]),
            ("certificate_withdrawn", cert(K::CertificateWithdrawn),                        [N, Y, N, N, N, N]),
            ("certificate_cancelled", cert(K::CertificateCancelled),                        [N, Y, N, N, N, N]),
            ("certificate_renewed", cert(K::CertificateRenewed),                            [N, Y, N, N, N, N]),
            ("recall (voluntary)", recall(pb::RecallInitiator::Voluntary, MANUFACTURER),    [N, N, N, Y, N, N]),
            ("recall (ordered)", recall(pb::RecallInitiator::Ordered, MANUFACTURER),        [Y, N, N, N, N, N]),
            // The recall was initiated by the manufacturer.
            ("recall_progress", with_refs(example(K::RecallProgress), &recall_ref),         [Y, N, N, Y, N, N]),
            ("recall_closed", with_refs(example(K::RecallClosed), &recall_ref),             [Y, N, N, Y, N, N]),
            ("blacklisted", blacklist(DISTRIBUTOR),                                         [Y, N, N, N, N, N]),
            ("delisted", delist(MANUFACTURER_2),                                            [Y, N, N, N, N, N]),
            // The shipment was signed by the manufacturer.
            ("correction", with_refs(example(K::Correction), &shipment),                    [N, N, N, Y, N, N]),
        ];
        let kinds: std::collections::BTreeSet<EventKind> = rows.iter().map(|(_, e, _)| valid(e).kind).collect();
        assert_eq!(kinds.len(), EventKind::ALL.len(), "the matrix covers every kind");
        let mut wrong = Vec::new();
        for (name, event, allowed) in &rows {
            for (who, allowed) in signers.iter().zip(allowed) {
                let got = log.authorize(*who, event);
                let denied = if *name == "genesis" { "Genesis" } else { "RoleNotAllowed" };
                let fits = match &got {
                    Ok(_) => *allowed,
                    Err(e) => !allowed && variant(e) == denied && e.class() == C::PermissionDenied,
                };
                if !fits {
                    wrong.push(format!(
                        "{name} signed by {who:?}: expected {}, got {got:?}",
                        if *allowed { "allowed" } else { denied }
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{} cells differ from the matrix:\n{}", wrong.len(), wrong.join("\n"));
    }

    #[test]
    fn accepted_events_carry_the_signer_authority() {
        let mut log = TestLog::standard();
        let authority = log.authorize(Who::Staff, &example(K::Production));
        assert_eq!(
            authority,
            Ok(Authority {
                uscc: Some(uscc(MANUFACTURER)),
                person: "李娜".into(),
                title: "质检员 quality clerk".into(),
                root: false,
            })
        );
        let root = log.authorize(Who::Regulator, &example(K::SpotCheck)).map(|a| (a.uscc, a.root));
        assert_eq!(root, Ok((Some(uscc(REGULATOR)), true)));
        log.accept(Who::Manufacturer, &example(K::Production));
        let org = log.registry.organisation(&uscc(LAB)).map(|o| (o.roles.clone(), o.accreditations.len()));
        assert_eq!(org, Some((vec![pb::Role::TestingLab], 1)));
        assert_eq!(log.registry.log_id(), Some(log.log_id));
    }

    #[test]
    fn testing_lab_accreditation() {
        type Edit = fn(&mut pb::Event);
        fn set_gtin(event: &mut pb::Event, gtin: &str) {
            if let Some(Body::Inspection(i)) = event.body.as_mut() {
                i.product.get_or_insert_default().gtin = gtin.into();
            }
            if let Some(pb::Subject { kind: Some(Kind::Product(p)) }) = event.subject.as_mut() {
                p.gtin = gtin.into();
            }
        }
        fn set_standards(event: &mut pb::Event, standards: &[&str]) {
            if let Some(Body::Inspection(i)) = event.body.as_mut() {
                i.standards = standards.iter().map(|s| s.to_string()).collect();
            }
        }
        // 20:00 UTC on the last day of validity is already 04:00 the next
        // day in Beijing, where the sample was taken.
        fn last_evening_utc(event: &mut pb::Event) {
            let utc_evening = testkit::time_on("2027-12-31").unix_millis + 18 * 3_600_000;
            event.event_time = Some(pb::EventTime { unix_millis: utc_evening, offset_minutes: 480 });
        }
        let keep: Edit = |_| {};
        let cases: &[(&str, &str, Edit, Want)] = &[
            ("in scope, inside validity", EVENT_DATE, keep, OK),
            ("first day of validity", "2024-01-01", keep, OK),
            ("last day of validity", "2027-12-31", keep, OK),
            ("the day before validity", "2023-12-31", keep, NOT_ACCREDITED),
            ("expired accreditation", "2028-01-01", keep, NOT_ACCREDITED),
            ("expired in local time", EVENT_DATE, last_evening_utc, NOT_ACCREDITED),
            ("another in-scope prefix", EVENT_DATE, |e| set_gtin(e, GTIN_POWDER), OK),
            ("GTIN outside every scope prefix", EVENT_DATE, |e| set_gtin(e, GTIN_OUT_OF_SCOPE), NOT_ACCREDITED),
            ("standard not covered", EVENT_DATE, |e| set_standards(e, &["GB 2760-2014"]), NOT_ACCREDITED),
            (
                "one of two standards not covered",
                EVENT_DATE,
                |e| set_standards(e, &["GB 10766-2021", "GB 2760-2014"]),
                NOT_ACCREDITED,
            ),
            ("part of a covered standard", EVENT_DATE, |e| set_standards(e, &["GB 5009.3-2016"]), OK),
            ("two covered standards", EVENT_DATE, |e| set_standards(e, &["GB 10766-2021", "GB 19644-2010"]), OK),
        ];
        let log = TestLog::standard();
        for (name, date, edit, want) in cases {
            let mut event = on(example(K::Inspection), date);
            edit(&mut event);
            check(name, log.authorize(Who::Lab, &event), *want);
        }
    }

    /// `check_accreditation` compares standards with `starts_with`, so an
    /// accreditation for "GB 5009" (food test methods) also covers "GB
    /// 50090-2006", a railway design code. A covered standard must match up
    /// to the end of its number: end of text, '-', '.' or ' '.
    #[test]
    fn standards_match_whole_standard_numbers() {
        let mut event = example(K::Inspection);
        if let Some(Body::Inspection(i)) = event.body.as_mut() {
            i.standards = vec!["GB 50090-2006".into()];
        }
        check("GB 5009 does not cover GB 50090", TestLog::standard().authorize(Who::Lab, &event), NOT_ACCREDITED);
    }

    #[test]
    fn certification_body_accreditation() {
        let cases: &[(&str, &str, &str, Want)] = &[
            ("in scope", EVENT_DATE, testkit::GTIN_FORMULA, OK),
            ("after the accreditation expired", "2028-03-01", testkit::GTIN_FORMULA, NOT_ACCREDITED),
            ("product out of scope", EVENT_DATE, GTIN_OUT_OF_SCOPE, NOT_ACCREDITED),
        ];
        let log = TestLog::standard();
        for (name, date, gtin, want) in cases {
            let mut event = on(example(K::CertificateIssued), date);
            event.parents.clear();
            if let Some(Body::CertificateIssued(c)) = event.body.as_mut() {
                c.products[0].gtin = (*gtin).into();
                c.issued_on = (*date).into();
                c.valid_until = "2031-01-01".into();
            }
            check(name, log.authorize(Who::CertBody, &event), *want);
        }
    }

    /// `gtin_for_scope` drops every certified product given as a GTIN prefix,
    /// though its comment says prefixes "are checked by their digits against
    /// accreditation prefixes below", so a body may certify a whole range of
    /// products outside its scope.
    #[test]
    fn certified_gtin_prefixes_are_checked_against_scope() {
        let mut event = example(K::CertificateIssued);
        event.parents.clear();
        if let Some(Body::CertificateIssued(c)) = event.body.as_mut() {
            c.products[0].gtin = "0400638".into();
        }
        check("prefix 0400638", TestLog::standard().authorize(Who::CertBody, &event), NOT_ACCREDITED);
    }

    /// Issues [`CERT_NUMBER`] (valid until 2028-06-14), appends `history`
    /// (each on [`EVENT_DATE`]), then asks whether `then` may follow on
    /// `date`.
    fn lifecycle(history: &[EventKind], then: EventKind, date: &str) -> (TestLog, Result<Authority, AuthError>) {
        let mut log = TestLog::standard();
        with_certificate(&mut log);
        for kind in history {
            log.accept(Who::CertBody, &example(*kind));
        }
        let got = log.authorize(Who::CertBody, &on(example(then), date));
        (log, got)
    }

    #[test]
    fn certificate_lifecycle() {
        const ACTIVE: &str = "active (有效)";
        const SUSPENDED: &str = "suspended (暂停)";
        const WITHDRAWN: &str = "withdrawn (撤销)";
        const CANCELLED: &str = "cancelled (注销)";
        const EXPIRED: &str = "expired (过期)";
        const AFTER_EXPIRY: &str = "2028-06-15";
        const TRANSITIONS: [EventKind; 6] = [
            K::CertificateSuspended,
            K::CertificateRestored,
            K::CertificateScopeReduced,
            K::CertificateWithdrawn,
            K::CertificateCancelled,
            K::CertificateRenewed,
        ];
        // (history, next record, its date, None if legal or the state the
        // refusal names).
        let mut cases: Vec<(Vec<EventKind>, EventKind, &str, Option<&str>)> = vec![
            (vec![], K::CertificateSuspended, EVENT_DATE, None),
            (vec![], K::CertificateScopeReduced, EVENT_DATE, None),
            (vec![], K::CertificateWithdrawn, EVENT_DATE, None),
            (vec![], K::CertificateCancelled, EVENT_DATE, None),
            (vec![], K::CertificateRenewed, EVENT_DATE, None),
            (vec![], K::CertificateSuspended, "2028-06-14", None),
            (vec![K::CertificateSuspended], K::CertificateRestored, EVENT_DATE, None),
            (vec![K::CertificateSuspended], K::CertificateWithdrawn, EVENT_DATE, None),
            (vec![K::CertificateSuspended], K::CertificateCancelled, EVENT_DATE, None),
            (vec![K::CertificateSuspended, K::CertificateRestored], K::CertificateSuspended, EVENT_DATE, None),
            (vec![K::CertificateScopeReduced], K::CertificateSuspended, EVENT_DATE, None),
            (vec![K::CertificateScopeReduced], K::CertificateRenewed, EVENT_DATE, None),
            // Renewed until 2031, so still in force after the first expiry.
            (vec![K::CertificateRenewed], K::CertificateSuspended, "2029-01-10", None),
            (vec![], K::CertificateRestored, EVENT_DATE, Some(ACTIVE)),
            (vec![K::CertificateSuspended], K::CertificateSuspended, EVENT_DATE, Some(SUSPENDED)),
            (vec![K::CertificateSuspended], K::CertificateScopeReduced, EVENT_DATE, Some(SUSPENDED)),
            (vec![K::CertificateSuspended], K::CertificateRenewed, EVENT_DATE, Some(SUSPENDED)),
            (
                vec![K::CertificateSuspended, K::CertificateWithdrawn],
                K::CertificateRestored,
                EVENT_DATE,
                Some(WITHDRAWN),
            ),
            (vec![], K::CertificateSuspended, AFTER_EXPIRY, Some(EXPIRED)),
            (vec![], K::CertificateScopeReduced, AFTER_EXPIRY, Some(EXPIRED)),
            (vec![], K::CertificateRenewed, AFTER_EXPIRY, Some(EXPIRED)),
            (vec![], K::CertificateRestored, AFTER_EXPIRY, Some(EXPIRED)),
            (vec![K::CertificateSuspended], K::CertificateRestored, AFTER_EXPIRY, Some(EXPIRED)),
            (vec![K::CertificateSuspended], K::CertificateRenewed, AFTER_EXPIRY, Some(EXPIRED)),
        ];
        // Nothing follows a withdrawal or a cancellation.
        for (terminal, state) in [(K::CertificateWithdrawn, WITHDRAWN), (K::CertificateCancelled, CANCELLED)] {
            for then in TRANSITIONS {
                cases.push((vec![terminal], then, EVENT_DATE, Some(state)));
            }
        }
        for (history, then, date, refused_in) in &cases {
            let name = format!("{history:?} then {then} on {date}");
            let (log, got) = lifecycle(history, *then, date);
            match (got, refused_in) {
                (Ok(_), None) => {}
                (Err(AuthError::IllegalTransition { state, kind, number, issuer }), Some(want_state)) => {
                    assert_eq!((state, kind), (*want_state, *then), "{name}");
                    assert_eq!((issuer.as_str(), number.as_str()), (CERT_BODY, CERT_NUMBER), "{name}");
                }
                (got, _) => panic!("{name}: got {got:?}, expected refusal in state {refused_in:?}"),
            }
            let recorded = history.iter().fold(CertState::Active, |state, kind| match kind {
                K::CertificateSuspended => CertState::Suspended,
                K::CertificateRestored => CertState::Active,
                K::CertificateWithdrawn => CertState::Withdrawn,
                K::CertificateCancelled => CertState::Cancelled,
                _ => state,
            });
            let cert = log.registry.certificate(&uscc(CERT_BODY), CERT_NUMBER);
            assert_eq!(cert.map(|c| c.state), Some(recorded), "{name}");
        }
        let illegal = AuthError::IllegalTransition {
            issuer: CERT_BODY.into(),
            number: CERT_NUMBER.into(),
            state: ACTIVE,
            kind: K::CertificateRestored,
        };
        assert_eq!(illegal.class(), C::FailedPrecondition);

        // A renewal moves the expiry.
        let (log, _) = lifecycle(&[K::CertificateRenewed], K::CertificateSuspended, EVENT_DATE);
        let until = log.registry.certificate(&uscc(CERT_BODY), CERT_NUMBER).map(|c| c.valid_until.to_string());
        assert_eq!(until.as_deref(), Some("2031-06-14"));

        // A transition of a certificate nobody issued.
        let unknown = about_cert(example(K::CertificateSuspended), CERT_BODY, "CQC2025999999999999");
        let log = TestLog::standard();
        check("unknown certificate", log.authorize(Who::CertBody, &unknown), Err(("UnknownCertificate", C::NotFound)));
    }

    /// DOMAIN.md: "Withdrawn, Cancelled and Expired are terminal", but
    /// `authorize` allows withdrawing or cancelling an expired certificate.
    #[test]
    fn expired_certificates_are_terminal() {
        for then in [K::CertificateWithdrawn, K::CertificateCancelled] {
            let (_, got) = lifecycle(&[], then, "2028-06-15");
            assert!(
                matches!(&got, Err(AuthError::IllegalTransition { state: "expired (过期)", .. })),
                "{then} after expiry: {got:?}"
            );
        }
    }

    /// DOMAIN.md: "Renewed extends validity"; a renewal to a date before the
    /// current expiry would shorten it, and is accepted.
    #[test]
    fn renewal_does_not_shorten_validity() {
        let mut log = TestLog::standard();
        with_certificate(&mut log);
        let mut renewal = example(K::CertificateRenewed);
        if let Some(Body::CertificateRenewed(r)) = renewal.body.as_mut() {
            r.valid_until = "2026-01-31".into();
        }
        let got = log.authorize(Who::CertBody, &renewal);
        assert!(got.is_err(), "renewal from 2028-06-14 back to 2026-01-31 was accepted: {got:?}");
    }

    /// The module docs and DESIGN.md: certificate records (issue … renew)
    /// are signed by a certification body "accredited and in scope", but
    /// only issuance checks the accreditation: this body renews on
    /// 2028-03-10, after its accreditation ended on 2028-02-28.
    #[test]
    fn renewal_needs_an_accreditation_in_force() {
        let mut log = TestLog::standard();
        with_certificate(&mut log);
        let renewal = on(example(K::CertificateRenewed), "2028-03-10");
        check("renewal after the accreditation ended", log.authorize(Who::CertBody, &renewal), NOT_ACCREDITED);
    }

    /// The module docs: organisations on the blacklist "may not sign …
    /// certificate records", but only issuance checks the signing body.
    #[test]
    fn blacklisted_body_cannot_renew_or_restore() {
        let mut accepted = Vec::new();
        for kind in [K::CertificateRenewed, K::CertificateRestored] {
            let mut log = TestLog::standard();
            with_certificate(&mut log);
            if kind == K::CertificateRestored {
                log.accept(Who::CertBody, &example(K::CertificateSuspended));
            }
            log.accept(Who::Regulator, &blacklist(CERT_BODY));
            match log.authorize(Who::CertBody, &example(kind)) {
                Err(e) => assert_eq!((variant(&e), e.class()), ("Blacklisted", C::FailedPrecondition), "{kind}: {e}"),
                Ok(_) => accepted.push(kind),
            }
        }
        assert!(accepted.is_empty(), "a blacklisted certification body signed {accepted:?}");
    }

    #[test]
    fn certificates_belong_to_their_issuer() {
        let mut log = TestLog::standard();
        let report = with_certificate(&mut log);
        let again = with_refs(example(K::CertificateIssued), &report);
        check("same number again", log.authorize(Who::CertBody, &again), Err(("CertificateExists", C::AlreadyExists)));
        // Numbers are per issuer: another body may use the same number.
        let other_issuer = about_cert(again.clone(), CERT_BODY_2, CERT_NUMBER);
        check("same number, another issuer", log.authorize(Who::CertBody2, &other_issuer), OK);
        let not_issuer: Want = Err(("NotIssuer", C::PermissionDenied));
        check("issuing in another body's name", log.authorize(Who::CertBody2, &again), not_issuer);
        for kind in [K::CertificateSuspended, K::CertificateWithdrawn, K::CertificateRenewed] {
            check(
                &format!("{kind} of another body's certificate"),
                log.authorize(Who::CertBody2, &example(kind)),
                not_issuer,
            );
        }
    }

    #[test]
    fn blacklist_blocks_and_delisting_restores() {
        let mut log = TestLog::standard();
        let report = with_certificate(&mut log);
        log.accept(Who::CertBody, &example(K::CertificateSuspended));
        let production = log.accept(Who::Manufacturer, &example(K::Production));
        check(
            "delisting an organisation not listed",
            log.authorize(Who::Regulator, &delist(MANUFACTURER)),
            Err(("Other", C::FailedPrecondition)),
        );
        log.accept(Who::Regulator, &blacklist(MANUFACTURER));
        let listing =
            log.registry.blacklisting(&uscc(MANUFACTURER), None).map(|p| (p.listed_on.clone(), p.delisted_at));
        assert_eq!(listing, Some(("2025-06-15".into(), None)));

        let new_certificate =
            about_cert(with_refs(example(K::CertificateIssued), &report), CERT_BODY, "CQC2025010801234570");
        let shipment = with_refs(example(K::Shipment), &production);
        let while_listed: Vec<(&str, Who, pb::Event, Want)> = vec![
            ("production", Who::Manufacturer, example(K::Production), BLACKLISTED),
            ("production by a clerk of the listed company", Who::Staff, example(K::Production), BLACKLISTED),
            ("transformation", Who::Manufacturer, with_refs(example(K::Transformation), &production), BLACKLISTED),
            ("shipment", Who::Manufacturer, shipment.clone(), BLACKLISTED),
            ("new certificate for the listed holder", Who::CertBody, new_certificate.clone(), BLACKLISTED),
            ("restoring the listed holder's certificate", Who::CertBody, example(K::CertificateRestored), BLACKLISTED),
            // Others go on trading, and the listed company still recalls.
            ("the distributor ships", Who::Distributor, shipment.clone(), OK),
            ("voluntary recall by the listed company", Who::Manufacturer, example(K::Recall), OK),
        ];
        for (name, who, event, want) in &while_listed {
            check(name, log.authorize(*who, event), *want);
        }

        log.accept(Who::Regulator, &delist(MANUFACTURER));
        assert_eq!(log.registry.blacklisting(&uscc(MANUFACTURER), None), None);
        let history = log.registry.blacklist_history(&uscc(MANUFACTURER));
        assert_eq!(
            history.iter().map(|p| (p.delisted_at.is_some(), p.delisted_on.as_str())).collect::<Vec<_>>(),
            [(true, "2025-06-15")]
        );
        for (name, who, event, _) in &while_listed {
            check(&format!("after delisting: {name}"), log.authorize(*who, event), OK);
        }
    }

    #[test]
    fn a_listing_counts_from_its_first_day_to_its_last() {
        /// (case, listed_on, until, delisted, asked about, in force)
        type Case<'a> = (&'a str, &'a str, &'a str, bool, Option<&'a str>, bool);
        let cases: &[Case<'_>] = &[
            ("the day before the listing", "2025-06-15", "", false, Some("2025-06-14"), false),
            ("its first day", "2025-06-15", "", false, Some("2025-06-15"), true),
            ("open-ended, years later", "2025-06-15", "", false, Some("2030-01-01"), true),
            ("its last day", "2025-06-15", "2025-12-31", false, Some("2025-12-31"), true),
            ("the day after its last", "2025-06-15", "2025-12-31", false, Some("2026-01-01"), false),
            ("delisted", "2025-06-15", "", true, Some("2025-07-01"), false),
            ("future-dated, asked with no date (it may be delisted)", "2025-07-01", "", false, None, true),
            ("future-dated, asked about today", "2025-07-01", "", false, Some("2025-06-15"), false),
            ("future-dated, on its first day", "2025-07-01", "", false, Some("2025-07-01"), true),
        ];
        for (case, listed_on, until, delisted, date, want) in cases {
            let mut registry = Registry::new([9; 32]);
            registry.blacklist.insert(
                uscc(MANUFACTURER),
                vec![BlacklistPeriod {
                    reason: "reason".into(),
                    legal_basis: "basis".into(),
                    listed_on: listed_on.to_string(),
                    until: until.to_string(),
                    listed_at: 5,
                    delisted_at: delisted.then_some(6),
                    delisted_on: String::new(),
                }],
            );
            let date = date.map(|d| Date::parse_iso(d).unwrap());
            let got = registry.blacklisting(&uscc(MANUFACTURER), date.as_ref()).is_some();
            assert_eq!(got, *want, "{case}");
        }
    }

    #[test]
    fn a_future_dated_listing_does_not_refuse_todays_records() {
        let mut log = TestLog::standard();
        let mut listing = blacklist(MANUFACTURER);
        if let Some(Body::Blacklisted(b)) = listing.body.as_mut() {
            b.listed_on = "2025-07-01".into();
        }
        log.accept(Who::Regulator, &listing);
        check(
            "production before the listing's first day",
            log.authorize(Who::Manufacturer, &example(K::Production)),
            OK,
        );
        let mut later = example(K::Production);
        later.event_time = Some(testkit::time_on("2025-07-01"));
        check("production on the listing's first day", log.authorize(Who::Manufacturer, &later), BLACKLISTED);
        check("delisting before its first day", log.authorize(Who::Regulator, &delist(MANUFACTURER)), OK);
    }

    #[test]
    fn keys_are_registered_and_revoked_by_the_right_signers() {
        let mut log = TestLog::standard();
        let newcomer_for =
            |org: &str, admin: bool| testkit::key_registered(org, Who::Newcomer, "王芳", "生产经理", admin);
        let revoke = |key: Who| {
            let mut event = example(K::KeyRevoked);
            if let Some(Body::KeyRevoked(k)) = event.body.as_mut() {
                k.public_key = key.public().to_vec();
            }
            event
        };
        let cases: Vec<(&str, Who, pb::Event, Want)> = vec![
            (
                "unknown key signs a production",
                Who::Newcomer,
                example(K::Production),
                Err(("UnknownKey", C::PermissionDenied)),
            ),
            ("admin registers a key of its own organisation", Who::Manufacturer, newcomer_for(MANUFACTURER, false), OK),
            (
                "admin registers a key of another organisation",
                Who::Manufacturer,
                newcomer_for(DISTRIBUTOR, false),
                ROLE,
            ),
            ("non-admin registers a key of its own organisation", Who::Staff, newcomer_for(MANUFACTURER, false), ROLE),
            ("regulator registers a key of any organisation", Who::Regulator, newcomer_for(RETAILER, true), OK),
            (
                "key for an organisation nobody registered",
                Who::Regulator,
                newcomer_for(UNREGISTERED, false),
                Err(("UnknownOrganisation", C::NotFound)),
            ),
            (
                "registering a registered key again",
                Who::Regulator,
                testkit::key_registered(LAB, Who::Staff, "李娜", "质检员", false),
                Err(("Other", C::FailedPrecondition)),
            ),
            ("admin revokes a key of its own organisation", Who::Manufacturer, revoke(Who::Staff), OK),
            ("admin revokes a key of another organisation", Who::Distributor, revoke(Who::Staff), ROLE),
            ("non-admin revokes a key", Who::Staff, revoke(Who::Manufacturer), ROLE),
            (
                "revoking a key nobody registered",
                Who::Regulator,
                revoke(Who::Newcomer),
                Err(("UnknownKey", C::PermissionDenied)),
            ),
        ];
        for (name, who, event, want) in &cases {
            check(name, log.authorize(*who, event), *want);
        }

        // The registered key signs; the revoked one no longer does.
        log.accept(Who::Manufacturer, &newcomer_for(MANUFACTURER, false));
        check("newly registered key signs", log.authorize(Who::Newcomer, &example(K::Production)), OK);
        let revocation = log.accept(Who::Manufacturer, &revoke(Who::Staff));
        assert_eq!(log.registry.key(&Who::Staff.public()).and_then(|k| k.revoked_at), Some(revocation.seq));
        let revoked = Err(("RevokedKey", C::PermissionDenied));
        check("revoked key signs a production", log.authorize(Who::Staff, &example(K::Production)), revoked);
        check("revoking a revoked key", log.authorize(Who::Regulator, &revoke(Who::Staff)), revoked);
        // A revoked admin key loses its admin rights too.
        log.accept(Who::Regulator, &revoke(Who::Manufacturer));
        check(
            "revoked admin registers a key",
            log.authorize(Who::Manufacturer, &newcomer_for(MANUFACTURER, false)),
            revoked,
        );
    }

    #[test]
    fn organisations_are_registered_once_and_updated_when_known() {
        let log = TestLog::standard();
        let again =
            testkit::org_registered(LAB, "深圳市计量质量检测研究院", &[pb::Role::TestingLab], Vec::new(), "440300");
        check(
            "registering a registered organisation",
            log.authorize(Who::Regulator, &again),
            Err(("Other", C::FailedPrecondition)),
        );
        let mut update = example(K::OrgUpdated);
        if let Some(Body::OrgUpdated(o)) = update.body.as_mut() {
            o.uscc = UNREGISTERED.into();
        }
        check(
            "updating an unknown organisation",
            log.authorize(Who::Regulator, &update),
            Err(("UnknownOrganisation", C::NotFound)),
        );
    }

    #[test]
    fn genesis_only_first_and_by_the_log_key() {
        let genesis = valid(&example(K::Genesis));
        let production = valid(&example(K::Production));
        let mut log = TestLog::empty();
        let registry = &log.registry;
        let at = |seq: u64, who: Who, event| registry.authorize(seq, &who.public(), event, &log).map(drop);
        assert_eq!(at(0, Who::Log, &genesis), Ok(()));
        assert_eq!(at(0, Who::Regulator, &genesis), Err(AuthError::Genesis));
        assert_eq!(at(1, Who::Log, &genesis), Err(AuthError::Genesis));
        assert_eq!(at(0, Who::Regulator, &production), Err(AuthError::NoGenesis));
        assert_eq!(AuthError::Genesis.class(), C::PermissionDenied);
        assert_eq!(AuthError::NoGenesis.class(), C::FailedPrecondition);

        // A genesis applied by any other key, or later than entry 0, starts
        // nothing.
        let mut registry = Registry::new(Who::Log.public());
        registry.apply(0, &Who::Regulator.public(), &genesis);
        registry.apply(1, &Who::Log.public(), &genesis);
        assert_eq!(
            registry.authorize(2, &Who::Regulator.public(), &production, &log).map(drop),
            Err(AuthError::NoGenesis)
        );
        assert_eq!(registry.key(&Who::Regulator.public()), None);

        log.accept(Who::Log, &example(K::Genesis));
        check("a second genesis", log.authorize(Who::Log, &example(K::Genesis)), Err(("Genesis", C::PermissionDenied)));
        let root = log.registry.key(&Who::Regulator.public()).map(|k| (k.uscc.to_string(), k.admin, k.root));
        assert_eq!(root, Some((REGULATOR.to_string(), true, true)));
    }

    #[test]
    fn referenced_records_must_exist_with_their_hash() {
        let mut log = TestLog::standard();
        let production = log.accept(Who::Manufacturer, &example(K::Production));
        let shipment = log.accept(Who::Manufacturer, &with_refs(example(K::Shipment), &production));
        let recall_ref = log.accept(Who::Manufacturer, &example(K::Recall));
        let beyond = pb::RecordRef { seq: 999, ..production.clone() };
        let wrong_hash = pb::RecordRef { entry_hash: shipment.entry_hash.clone(), ..production.clone() };
        let other_log = testkit::placeholder_ref();
        let unknown = Err(("UnknownRecord", C::NotFound));
        let mismatch = Err(("RecordHashMismatch", C::InvalidArgument));
        let progress = |parent: &pb::RecordRef, recall_ref: &pb::RecordRef| {
            let mut event = with_refs(example(K::RecallProgress), parent);
            if let Some(Body::RecallProgress(p)) = event.body.as_mut() {
                p.recall = Some(recall_ref.clone());
            }
            event
        };
        let correction = |target: &pb::RecordRef, corrective: &pb::RecordRef| {
            let mut event = with_refs(example(K::Correction), target);
            if let Some(Body::Correction(c)) = event.body.as_mut() {
                c.corrective = vec![corrective.clone()];
            }
            event
        };
        let cases: Vec<(&str, pb::Event, Want, &str)> = vec![
            ("parent exists", with_refs(example(K::Shipment), &production), OK, ""),
            ("parent beyond the log", with_refs(example(K::Shipment), &beyond), unknown, "parents"),
            ("parent with another record's hash", with_refs(example(K::Shipment), &wrong_hash), mismatch, "parents"),
            (
                "parent in a log this registry does not know",
                with_refs(example(K::Shipment), &other_log),
                unknown,
                "parents",
            ),
            ("recall beyond the log", progress(&recall_ref, &beyond), unknown, "recall_progress.recall"),
            ("recall with a wrong hash", progress(&recall_ref, &wrong_hash), mismatch, "recall_progress.recall"),
            (
                "corrective record with a wrong hash",
                correction(&shipment, &wrong_hash),
                mismatch,
                "correction.corrective",
            ),
            ("correction target beyond the log", correction(&beyond, &shipment), unknown, "correction.target"),
        ];
        for (name, event, want, want_field) in &cases {
            let got = log.authorize(Who::Manufacturer, event);
            let field = match &got {
                Err(AuthError::UnknownRecord { field, .. } | AuthError::RecordHashMismatch { field, .. }) => *field,
                _ => "",
            };
            assert_eq!(field, *want_field, "{name}: {got:?}");
            check(name, got, *want);
        }
    }

    /// Records whose store cannot be read: every read fails.
    struct Unreadable;

    impl Records for Unreadable {
        fn record(&self, log: &LogId, seq: u64) -> Result<Option<RecordInfo>, RecordsError> {
            Err(RecordsError { log: *log, seq, detail: "disk read failed".into() })
        }
    }

    #[test]
    fn a_record_that_cannot_be_read_is_not_reported_missing() {
        let mut log = TestLog::standard();
        let production = log.accept(Who::Manufacturer, &example(K::Production));
        let shipment = log.accept(Who::Manufacturer, &with_refs(example(K::Shipment), &production));
        let recall_ref = log.accept(Who::Manufacturer, &example(K::Recall));
        let mut progress = with_refs(example(K::RecallProgress), &production);
        if let Some(Body::RecallProgress(p)) = progress.body.as_mut() {
            p.recall = Some(recall_ref.clone());
        }
        let cases: Vec<(&str, Who, pb::Event)> = vec![
            ("parent", Who::Manufacturer, with_refs(example(K::Shipment), &production)),
            ("recall named by its progress", Who::Manufacturer, progress),
            ("correction target", Who::Manufacturer, with_refs(example(K::Correction), &shipment)),
        ];
        for (name, who, event) in &cases {
            // The same event authorises against readable records.
            assert!(log.authorize(*who, event).is_ok(), "{name}");
            let got = log.registry.authorize(log.next_seq(), &who.public(), &valid(event), &Unreadable);
            let Err(error) = got else { panic!("{name}: authorised without its records") };
            assert_eq!((variant(&error), error.class()), ("Unreadable", C::Internal), "{name}: {error}");
            assert!(error.to_string().contains("disk read failed"), "{name}: the cause is kept: {error}");
        }
    }

    #[test]
    fn corrections_come_from_the_original_signer_organisation() {
        let mut log = TestLog::standard();
        let production = log.accept(Who::Manufacturer, &example(K::Production));
        let shipment = log.accept(Who::Manufacturer, &with_refs(example(K::Shipment), &production));
        let correct_shipment = with_refs(example(K::Correction), &shipment);
        let correct_genesis = with_refs(example(K::Correction), &log.record_ref(0));
        let cases: Vec<(&str, Who, &pb::Event, Want)> = vec![
            ("the signer's own key", Who::Manufacturer, &correct_shipment, OK),
            ("another key of the same organisation", Who::Staff, &correct_shipment, OK),
            ("the receiving distributor", Who::Distributor, &correct_shipment, ROLE),
            ("a regulator", Who::Regulator, &correct_shipment, ROLE),
            ("a competitor", Who::Manufacturer2, &correct_shipment, ROLE),
            ("genesis, signed by the log key, by a root authority", Who::Regulator, &correct_genesis, ROLE),
        ];
        for (name, who, event, want) in cases {
            check(name, log.authorize(who, event), want);
        }
    }

    #[test]
    fn recalls_and_their_progress() {
        use pb::RecallInitiator::{Ordered, Voluntary};
        let mut log = TestLog::standard();
        let cases: Vec<(&str, Who, pb::Event, Want)> = vec![
            ("voluntary recall by the manufacturer", Who::Manufacturer, recall(Voluntary, MANUFACTURER), OK),
            ("voluntary recall naming no manufacturer", Who::Manufacturer, recall(Voluntary, ""), OK),
            ("voluntary recall by a regulator", Who::Regulator, recall(Voluntary, MANUFACTURER), ROLE),
            ("ordered recall by a regulator", Who::Regulator, recall(Ordered, MANUFACTURER), OK),
            ("ordered recall by the manufacturer", Who::Manufacturer, recall(Ordered, MANUFACTURER), ROLE),
            (
                "voluntary recall of a competitor's product",
                Who::Manufacturer2,
                recall(Voluntary, MANUFACTURER),
                MISMATCH,
            ),
            ("voluntary recall by a distributor", Who::Distributor, recall(Voluntary, MANUFACTURER), ROLE),
        ];
        for (name, who, event, want) in &cases {
            check(name, log.authorize(*who, event), *want);
        }

        let voluntary = log.accept(Who::Manufacturer, &recall(Voluntary, MANUFACTURER));
        let ordered = log.accept(Who::Regulator, &recall(Ordered, MANUFACTURER));
        let progress = |r: &pb::RecordRef| with_refs(example(K::RecallProgress), r);
        let closed = |r: &pb::RecordRef| with_refs(example(K::RecallClosed), r);
        let cases: Vec<(&str, Who, pb::Event, Want)> = vec![
            ("progress by the initiator", Who::Manufacturer, progress(&voluntary), OK),
            ("progress by another key of the initiator", Who::Staff, progress(&voluntary), OK),
            ("progress by a regulator", Who::Regulator, progress(&voluntary), OK),
            ("progress by another manufacturer", Who::Manufacturer2, progress(&voluntary), ROLE),
            ("progress by a distributor", Who::Distributor, progress(&voluntary), ROLE),
            ("closing by the initiator", Who::Manufacturer, closed(&voluntary), OK),
            ("closing by another manufacturer", Who::Manufacturer2, closed(&voluntary), ROLE),
            // The regulator initiated the ordered recall.
            ("progress of an ordered recall by the manufacturer", Who::Manufacturer, progress(&ordered), ROLE),
            ("progress of an ordered recall by the regulator", Who::Regulator, progress(&ordered), OK),
        ];
        for (name, who, event, want) in &cases {
            check(name, log.authorize(*who, event), *want);
        }
    }

    #[test]
    fn every_refusal_has_its_class() {
        let cases = [
            (AuthError::UnknownKey { key: String::new() }, C::PermissionDenied),
            (AuthError::RevokedKey { key: String::new(), revoked_at: 3 }, C::PermissionDenied),
            (AuthError::UnknownOrganisation { uscc: String::new() }, C::NotFound),
            (
                AuthError::RoleNotAllowed {
                    kind: K::Sale,
                    allowed: "a retailer",
                    uscc: String::new(),
                    roles: String::new(),
                },
                C::PermissionDenied,
            ),
            (
                AuthError::NotAccredited { uscc: String::new(), date: String::new(), what: String::new() },
                C::PermissionDenied,
            ),
            (
                AuthError::Blacklisted { uscc: String::new(), since: String::new(), reason: String::new() },
                C::FailedPrecondition,
            ),
            (AuthError::Mismatch { field: "f", detail: String::new() }, C::InvalidArgument),
            (AuthError::NotIssuer { issuer: String::new(), signer: String::new() }, C::PermissionDenied),
            (AuthError::CertificateExists { issuer: String::new(), number: String::new() }, C::AlreadyExists),
            (AuthError::UnknownCertificate { issuer: String::new(), number: String::new() }, C::NotFound),
            (
                AuthError::IllegalTransition {
                    issuer: String::new(),
                    number: String::new(),
                    state: "s",
                    kind: K::CertificateRestored,
                },
                C::FailedPrecondition,
            ),
            (AuthError::UnknownRecord { field: "parents", log: String::new(), seq: 0 }, C::NotFound),
            (
                AuthError::RecordHashMismatch {
                    field: "parents",
                    log: String::new(),
                    seq: 0,
                    given: String::new(),
                    found: String::new(),
                },
                C::InvalidArgument,
            ),
            (AuthError::Genesis, C::PermissionDenied),
            (AuthError::NoGenesis, C::FailedPrecondition),
            (AuthError::Other(String::new()), C::FailedPrecondition),
        ];
        for (error, class) in cases {
            assert_eq!(error.class(), class, "{}", variant(&error));
        }
    }

    #[test]
    fn role_names_round_trip() {
        for role in [
            pb::Role::Regulator,
            pb::Role::CertificationBody,
            pb::Role::TestingLab,
            pb::Role::Manufacturer,
            pb::Role::Distributor,
            pb::Role::Retailer,
        ] {
            assert_eq!(parse_role(role_name(role)), Some(role));
        }
        assert_eq!(parse_role("unspecified"), None);
        assert_eq!(parse_role("Regulator"), None);
    }

    #[test]
    fn event_date_is_the_local_date() {
        let at = |unix_millis, offset_minutes| {
            let event =
                pb::Event { event_time: Some(pb::EventTime { unix_millis, offset_minutes }), ..Default::default() };
            event_date(&event).map(|d| d.to_string())
        };
        // 2025-06-14T20:00Z is the 15th in Beijing and still the 14th in New York.
        let evening = testkit::time_on("2025-06-14").unix_millis + 18 * 3_600_000;
        assert_eq!(at(evening, 480).as_deref(), Some("2025-06-15"));
        assert_eq!(at(evening, -300).as_deref(), Some("2025-06-14"));
        assert_eq!(at(i64::MAX, 840), None);
        assert_eq!(event_date(&pb::Event::default()), None);
    }
}

#[cfg(test)]
mod clone_tests {
    use super::*;

    /// The `n`th valid USCC of a made-up series: both check characters are
    /// taken from the parser's own refusal, which names the expected one.
    fn nth_uscc(n: u32) -> Uscc {
        let mut code: Vec<char> = format!("91310000{n:09}0").chars().collect();
        for _ in 0..6 {
            let text: String = code.iter().collect();
            match Uscc::parse(&text) {
                Ok(uscc) => return uscc,
                Err(crate::ids::IdError::CheckDigit { check, expected, .. }) => {
                    let at = if check.starts_with("organisation") { 16 } else { 17 };
                    code[at] = expected;
                }
                Err(e) => panic!("{text}: {e}"),
            }
        }
        panic!("no valid USCC for {n}");
    }

    /// A registry the size of a province's: `n_orgs` organisations with a
    /// key each and `n_certs` certificates.
    fn large(n_orgs: u32, n_certs: u32) -> Registry {
        let mut registry = Registry::new([7; 32]);
        let orgs: Vec<Uscc> = (0..n_orgs).map(nth_uscc).collect();
        for (i, uscc) in orgs.iter().enumerate() {
            let seq = i as u64;
            registry.orgs.insert(
                uscc.clone(),
                Organisation {
                    uscc: uscc.clone(),
                    name: format!("organisation {i}"),
                    roles: vec![pb::Role::Manufacturer],
                    accreditations: Vec::new(),
                    region: "310000".into(),
                    registered_at: seq,
                },
            );
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&seq.to_be_bytes());
            registry.keys.insert(
                key,
                KeyInfo {
                    uscc: uscc.clone(),
                    person: format!("person {i}"),
                    title: "质量负责人".into(),
                    admin: false,
                    root: false,
                    registered_at: seq,
                    registered_in: LogId([7; 32]),
                    revoked_at: None,
                    revoked_in: None,
                },
            );
        }
        for i in 0..n_certs {
            let issuer = orgs[(i % n_orgs) as usize].clone();
            registry.certificates.insert(
                (issuer, format!("CQC{i:016}")),
                CertInfo {
                    state: CertState::Active,
                    holder: orgs[((i + 1) % n_orgs) as usize].to_string(),
                    valid_until: Date::new(2030, 1, 1).unwrap(),
                    issued_at: u64::from(i),
                    products: vec!["06901234567892".into()],
                },
            );
        }
        registry
    }

    #[test]
    fn a_clone_is_independent_of_its_original() {
        let original = large(10_000, 100_000);
        let started = std::time::Instant::now();
        let mut copy = original.clone();
        // Printed, not asserted: the figure the design rests on.
        println!("clone of 10,000 organisations and 100,000 certificates: {:?}", started.elapsed());
        let holder = nth_uscc(3);
        let issuer = nth_uscc(0);
        let number = format!("CQC{:016}", 0);
        copy.blacklist.entry(holder.clone()).or_default().push(BlacklistPeriod {
            reason: "r".into(),
            legal_basis: "b".into(),
            listed_on: "2025-01-01".into(),
            until: String::new(),
            listed_at: 1,
            delisted_at: None,
            delisted_on: String::new(),
        });
        if let Some(info) = copy.certificates.get_mut(&(issuer.clone(), number.clone())) {
            info.state = CertState::Withdrawn;
        }
        copy.orgs.remove(&holder);
        assert!(copy.blacklisting(&holder, None).is_some());
        assert_eq!(original.blacklisting(&holder, None), None);
        assert_eq!(copy.certificate(&issuer, &number).map(|c| c.state), Some(CertState::Withdrawn));
        assert_eq!(original.certificate(&issuer, &number).map(|c| c.state), Some(CertState::Active));
        assert!(copy.organisation(&holder).is_none());
        assert!(original.organisation(&holder).is_some());
    }
}
