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
//! the regulator role. Organisations on the blacklist may not sign
//! production, transformation, movement, sale, inspection or certificate
//! records, and may not be the holder of a new, renewed or restored
//! certificate.

use std::collections::{BTreeMap, HashMap};

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
}

impl AuthError {
    pub fn class(&self) -> RefusalClass {
        match self {
            AuthError::UnknownKey { .. }
            | AuthError::RevokedKey { .. }
            | AuthError::RoleNotAllowed { .. }
            | AuthError::NotAccredited { .. }
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
        }
    }
}

/// Looks up records a new event refers to. The node answers from its store;
/// an offline verifier from a bundle.
pub trait Records {
    /// The entry hash and signer of record `seq` of log `log`, if known.
    fn record(&self, log: &LogId, seq: u64) -> Option<(EntryHash, [u8; 32])>;
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
    pub revoked_at: Option<u64>,
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
}

/// Who signed an accepted event, and under which authority.
#[derive(Debug, Clone, PartialEq)]
pub struct Authority {
    pub uscc: Option<Uscc>,
    pub person: String,
    pub title: String,
    pub root: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Registry {
    log_id: Option<LogId>,
    log_key: Option<[u8; 32]>,
    genesis_seen: bool,
    orgs: HashMap<Uscc, Organisation>,
    keys: HashMap<[u8; 32], KeyInfo>,
    blacklist: HashMap<Uscc, Vec<BlacklistPeriod>>,
    certificates: BTreeMap<(Uscc, String), CertInfo>,
}

impl Registry {
    /// An empty registry for the log signed by `log_key`.
    pub fn new(log_key: [u8; 32]) -> Self {
        Registry { log_id: Some(LogId::of_key(&log_key)), log_key: Some(log_key), ..Default::default() }
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

    /// The current blacklisting of an organisation, if it is listed now.
    pub fn blacklisting(&self, uscc: &Uscc) -> Option<&BlacklistPeriod> {
        self.blacklist.get(uscc).and_then(|periods| periods.iter().rev().find(|p| p.delisted_at.is_none()))
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
        if !self.genesis_seen {
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
        let has = |role: pb::Role| org.roles.contains(&role);
        let is_regulator = has(pb::Role::Regulator);
        let kind = event.kind;
        let event_date = event_date(&event.event);
        let deny = |allowed: &'static str| AuthError::RoleNotAllowed {
            kind,
            allowed,
            uscc: org.uscc.to_string(),
            roles: roles_text(&org.roles),
        };
        let good_standing = |uscc: &Uscc| -> Result<(), AuthError> {
            match self.blacklisting(uscc) {
                Some(p) => Err(AuthError::Blacklisted {
                    uscc: uscc.to_string(),
                    since: p.listed_on.clone(),
                    reason: p.reason.clone(),
                }),
                None => Ok(()),
            }
        };
        match body {
            Body::Genesis(_) => return Err(AuthError::Genesis),
            Body::OrgRegistered(o) => {
                if !is_regulator {
                    return Err(deny("a regulator"));
                }
                let uscc = parse_uscc(&o.uscc)?;
                if self.orgs.contains_key(&uscc) {
                    return Err(AuthError::Other(format!(
                        "organisation {uscc} is already registered; use org_updated to change it"
                    )));
                }
            }
            Body::OrgUpdated(o) => {
                if !is_regulator {
                    return Err(deny("a regulator"));
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
                if !(is_regulator || (key.admin && key.uscc == target)) {
                    return Err(deny("a regulator or an admin key of the same organisation"));
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
                if !(is_regulator || (key.admin && key.uscc == target.uscc)) {
                    return Err(deny("a regulator or an admin key of the key's organisation"));
                }
                if let Some(revoked_at) = target.revoked_at {
                    return Err(AuthError::RevokedKey { key: hex::encode(bytes), revoked_at });
                }
            }
            Body::Production(_) | Body::Transformation(_) => {
                if !has(pb::Role::Manufacturer) {
                    return Err(deny("a manufacturer"));
                }
                good_standing(&org.uscc)?;
            }
            Body::Shipment(_) | Body::Receipt(_) => {
                if !(has(pb::Role::Manufacturer) || has(pb::Role::Distributor) || has(pb::Role::Retailer)) {
                    return Err(deny("a manufacturer, distributor or retailer"));
                }
                good_standing(&org.uscc)?;
            }
            Body::Sale(_) => {
                if !has(pb::Role::Retailer) {
                    return Err(deny("a retailer"));
                }
                good_standing(&org.uscc)?;
            }
            Body::Inspection(i) => {
                if !has(pb::Role::TestingLab) {
                    return Err(deny("a testing lab"));
                }
                good_standing(&org.uscc)?;
                let gtin = i.product.as_ref().and_then(|p| Gtin::parse(&p.gtin).ok());
                check_accreditation(org, event_date.as_ref(), gtin.iter(), &i.standards)?;
            }
            Body::SpotCheck(_) => {
                if !is_regulator {
                    return Err(deny("a regulator"));
                }
            }
            Body::CertificateIssued(c) => {
                if !has(pb::Role::CertificationBody) {
                    return Err(deny("a certification body"));
                }
                good_standing(&org.uscc)?;
                let cert = c.certificate.as_ref().ok_or(AuthError::Other("certificate missing".into()))?;
                issuer_is_signer(cert, org)?;
                let holder = parse_uscc(&c.holder_uscc)?;
                if !self.orgs.contains_key(&holder) {
                    return Err(AuthError::UnknownOrganisation { uscc: holder.to_string() });
                }
                good_standing(&holder)?;
                let gtins: Vec<Gtin> = c.products.iter().filter_map(|p| gtin_for_scope(&p.gtin)).collect();
                check_accreditation(org, event_date.as_ref(), gtins.iter(), &c.standards)?;
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
                if !has(pb::Role::CertificationBody) {
                    return Err(deny("a certification body"));
                }
                let cert = certificate_key(body).ok_or(AuthError::Other("certificate missing".into()))?;
                issuer_is_signer(cert, org)?;
                let issuer = parse_uscc(&cert.issuer_uscc)?;
                let info = self.certificates.get(&(issuer.clone(), cert.number.clone())).ok_or_else(|| {
                    AuthError::UnknownCertificate { issuer: issuer.to_string(), number: cert.number.clone() }
                })?;
                let expired = event_date.as_ref().is_some_and(|d| *d > info.valid_until);
                let allowed = match (info.state, kind) {
                    (CertState::Active, EventKind::CertificateSuspended) => !expired,
                    (CertState::Suspended, EventKind::CertificateRestored) => !expired,
                    (CertState::Active, EventKind::CertificateScopeReduced) => !expired,
                    (CertState::Active | CertState::Suspended, EventKind::CertificateWithdrawn) => true,
                    (CertState::Active | CertState::Suspended, EventKind::CertificateCancelled) => true,
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
                        kind,
                    });
                }
                if matches!(kind, EventKind::CertificateRestored | EventKind::CertificateRenewed)
                    && let Ok(holder) = Uscc::parse(&info.holder)
                {
                    good_standing(&holder)?;
                }
            }
            Body::Recall(r) => {
                let initiator = pb::RecallInitiator::try_from(r.initiator).unwrap_or(pb::RecallInitiator::Unspecified);
                match initiator {
                    pb::RecallInitiator::Voluntary => {
                        if !has(pb::Role::Manufacturer) {
                            return Err(deny("a manufacturer (voluntary recall, 主动召回)"));
                        }
                        if !r.manufacturer_uscc.is_empty() && parse_uscc(&r.manufacturer_uscc)? != org.uscc {
                            return Err(AuthError::Mismatch {
                                field: "recall.manufacturer_uscc",
                                detail: format!(
                                    "a voluntary recall is signed by the manufacturer itself; the signer is {}",
                                    org.uscc
                                ),
                            });
                        }
                    }
                    _ => {
                        if !is_regulator {
                            return Err(deny("a regulator (ordered recall, 责令召回)"));
                        }
                    }
                }
            }
            Body::RecallProgress(_) | Body::RecallClosed(_) => {
                if !(is_regulator || has(pb::Role::Manufacturer)) {
                    return Err(deny("the recall's initiator or a regulator"));
                }
                let recall = match body {
                    Body::RecallProgress(p) => p.recall.as_ref(),
                    Body::RecallClosed(c) => c.recall.as_ref(),
                    _ => None,
                };
                if let Some(recall) = recall
                    && !is_regulator
                {
                    let log = LogId::from_slice(&recall.log_id).map_err(|e| AuthError::Other(e.to_string()))?;
                    let (_, recall_signer) = records.record(&log, recall.seq).ok_or_else(|| {
                        AuthError::UnknownRecord { field: "recall", log: log.to_hex(), seq: recall.seq }
                    })?;
                    let recall_org = self.keys.get(&recall_signer).map(|k| &k.uscc);
                    if recall_org != Some(&org.uscc) {
                        return Err(deny("the recall's initiator or a regulator"));
                    }
                }
            }
            Body::Blacklisted(_) | Body::Delisted(_) => {
                if !is_regulator {
                    return Err(deny("a regulator"));
                }
                if let Body::Delisted(d) = body {
                    let uscc = parse_uscc(&d.uscc)?;
                    if self.blacklisting(&uscc).is_none() {
                        return Err(AuthError::Other(format!("organisation {uscc} is not on the blacklist")));
                    }
                }
            }
            Body::Correction(c) => {
                let target = c.target.as_ref().ok_or(AuthError::Other("correction.target missing".into()))?;
                let log = LogId::from_slice(&target.log_id).map_err(|e| AuthError::Other(e.to_string()))?;
                let (_, target_signer) = records.record(&log, target.seq).ok_or_else(|| AuthError::UnknownRecord {
                    field: "correction.target",
                    log: log.to_hex(),
                    seq: target.seq,
                })?;
                let target_org = self.keys.get(&target_signer).map(|k| &k.uscc);
                if target_org != Some(&org.uscc) {
                    return Err(AuthError::RoleNotAllowed {
                        kind,
                        allowed: "the organisation that signed the corrected record",
                        uscc: org.uscc.to_string(),
                        roles: roles_text(&org.roles),
                    });
                }
            }
        }
        Ok(authority)
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
            let (hash, _) = records.record(&log, r.seq).ok_or_else(|| AuthError::UnknownRecord {
                field,
                log: log.to_hex(),
                seq: r.seq,
            })?;
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

    /// Applies an appended (authorised) event to the derived state.
    pub fn apply(&mut self, seq: u64, signer: &[u8; 32], event: &ValidEvent) {
        let Some(body) = event.body() else { return };
        match body {
            Body::Genesis(g) => {
                if seq != 0 || Some(*signer) != self.log_key {
                    return;
                }
                self.genesis_seen = true;
                if let Ok(uscc) = Uscc::parse(&g.operator_uscc) {
                    self.orgs.insert(
                        uscc.clone(),
                        Organisation {
                            uscc: uscc.clone(),
                            name: g.operator_name.clone(),
                            roles: vec![pb::Role::Regulator],
                            accreditations: Vec::new(),
                            region: String::new(),
                            registered_at: seq,
                        },
                    );
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
                                    revoked_at: None,
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
                            revoked_at: None,
                        },
                    );
                }
            }
            Body::KeyRevoked(k) => {
                if let Ok(bytes) = <[u8; 32]>::try_from(k.public_key.as_slice())
                    && let Some(info) = self.keys.get_mut(&bytes)
                {
                    info.revoked_at.get_or_insert(seq);
                }
            }
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
                    Body::CertificateCancelled(_) => info.state = CertState::Cancelled,
                    Body::CertificateRenewed(r) => {
                        if let Ok(until) = Date::parse_iso(&r.valid_until) {
                            info.valid_until = until;
                        }
                    }
                    _ => {}
                }
            }
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

fn certificate_key(body: &Body) -> Option<&pb::CertificateKey> {
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
        return Err(AuthError::Mismatch {
            field: "certificate.issuer_uscc",
            detail: format!(
                "is {}, but the signer's organisation is {}; only the issuing body may sign for a certificate",
                cert.issuer_uscc, org.uscc
            ),
        });
    }
    Ok(())
}

/// A product GTIN as written in a certificate; prefixes are checked by their
/// digits against accreditation prefixes below.
fn gtin_for_scope(value: &str) -> Option<Gtin> {
    Gtin::parse(value).ok()
}

fn check_accreditation<'a>(
    org: &Organisation,
    date: Option<&Date>,
    gtins: impl Iterator<Item = &'a Gtin>,
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
    for gtin in gtins {
        let covered = valid.iter().any(|a| {
            a.gtin_prefixes.iter().any(|p| gtin.as_str().starts_with(p.as_str()))
                && (a.standards.is_empty()
                    || standards.is_empty()
                    || standards.iter().all(|s| a.standards.iter().any(|allowed| s.starts_with(allowed.as_str()))))
        });
        if !covered {
            return Err(AuthError::NotAccredited {
                uscc: org.uscc.to_string(),
                date: date_text,
                what: format!("GTIN {gtin} with standards [{}] (out of scope, 超出资质范围)", standards.join(", ")),
            });
        }
    }
    Ok(())
}

fn parse_uscc(value: &str) -> Result<Uscc, AuthError> {
    Uscc::parse(value).map_err(|e| AuthError::Other(e.to_string()))
}

fn roles_text(roles: &[pb::Role]) -> String {
    if roles.is_empty() {
        return "none".into();
    }
    roles.iter().map(|r| role_name(*r)).collect::<Vec<_>>().join(", ")
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
