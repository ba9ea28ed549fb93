//! GS1 EPCIS 2.0 interoperability: EPCIS JSON(-LD) events become qtrace
//! records ([`Importer`]), and a product's qtrace records become an
//! `EPCISDocument` ([`export_document`]).
//!
//! The JSON is walked as [`serde_json::Value`]: EPCIS events are open-ended
//! (every object takes extension fields), and only the fields below mean
//! anything to qtrace. Every EPCIS event becomes either one qtrace event or
//! one [`Refusal`] saying why not; nothing is merged, split or dropped
//! silently, and nothing here panics on input.
//!
//! # EPCIS → qtrace
//!
//! | EPCIS 2.0 event | qtrace record | how |
//! |---|---|---|
//! | ObjectEvent, bizStep `commissioning` or `creating_class_instance`, or action `ADD` without bizStep | Production | the one item of `epcList`/`quantityList` is the output lot (lot from the LGTIN or Digital Link `/10/`, else ILMD `cbvmda:lotNumber`); ILMD `cbvmda:productionDate`, `cbvmda:itemExpirationDate`; factory = bizLocation. More than one item is refused: a production record creates one lot |
//! | TransformationEvent | Transformation | `inputEPCList` + `inputQuantityList` → inputs, `outputEPCList` + `outputQuantityList` → outputs (ILMD lot applies to outputs), dates and factory as for production |
//! | ObjectEvent, bizStep `shipping` | Shipment | items from `epcList`/`quantityList`; `sourceList`/`destinationList`: the `location` entry is the party's GLN; the USCC comes from `qtrace:sourceUSCC`/`qtrace:destinationUSCC`, else from `--party-map` looked up by the GLN of the `owning_party`, else `possessing_party`, else `location` entry. No USCC: refused |
//! | ObjectEvent, bizStep `receiving` | Receipt | as shipping |
//! | ObjectEvent, bizStep `retail_selling` or disposition `retail_sold` | Sale | store = bizLocation |
//! | ObjectEvent, bizStep `inspecting` or `sampling` | Inspection, only when the importing key is a testing lab's (else refused: "inspection needs a testing lab's key") | the one item is the product; report number = bizTransaction of type `testres`; conclusion = disposition `conformant`/`non_conformant`; `sampling` = destructive; each `sensorReport` → a test item (name = type, component, time; value; unit = uom) |
//! | ObjectEvent, disposition `recalled` (no rule above) | Recall | GTIN and lots from the items; number, risk class, reason and initiator only from `qtrace:recall` (EPCIS has no place for them; without it the ledger refuses the record) |
//! | ObjectEvent, bizStep `sensor_reporting` | refused | monitoring readings are not a qtrace record |
//! | ObjectEvent, action `DELETE`, or another bizStep | refused | no qtrace record kind |
//! | AggregationEvent | refused | "aggregation has no qtrace record kind (packing is not a quality event)" |
//! | TransactionEvent | refused | its bizTransactionList belongs on the shipping/receiving ObjectEvent, where it becomes documents |
//! | AssociationEvent | refused | no qtrace record kind |
//! | any event with `errorDeclaration` | refused | it declares an earlier event wrong: record a qtrace correction (`qtrace correct`) |
//!
//! | EPCIS field | qtrace field |
//! |---|---|
//! | `eventTime` + `eventTimeZoneOffset` | `event_time` (milliseconds; the offset in minutes) |
//! | `readPoint` / `bizLocation` (`urn:epc:id:sgln:`, Digital Link `/414/`) | `location` GLNs, check digit computed from company prefix + location reference; a sub-location (SGLN extension, AI 254) or a non-GLN place (`geo:`) is kept as attribute `epcis:readPoint` / `epcis:bizLocation` |
//! | `bizStep` / `disposition` | `biz_step` / `disposition`, CBV prefixes (`urn:epcglobal:cbv:bizstep:`, `https://ref.gs1.org/cbv/BizStep-`, …) stripped |
//! | `bizTransactionList` | documents (kind = the type's short name, or `bizTransaction`; id = the URI) |
//! | `certificationInfo` | documents of kind `certificate` |
//! | `sensorElementList` (not an inspection) | attributes `epcis:sensor <type> …` = `<value> <uom>` |
//! | `eventID` | attribute `epcis:eventID` |
//! | SGTIN `urn:epc:id:sgtin:` / Digital Link `/01/…/21/` | GTIN + serial |
//! | LGTIN `urn:epc:class:lgtin:` / Digital Link `/01/…/10/` | GTIN + lot |
//! | `urn:epc:idpat:sgtin:CP.ITEM.*` | the GTIN (any item of it) |
//! | `quantity` + `uom` | quantity (no `uom`: a count, unit `EA`) |
//! | party `urn:epc:id:pgln:`, `urn:epc:id:sgln:`, Digital Link `/417/` or `/414/` | a GLN, looked up in the party map |
//!
//! Every mapped event is encoded and checked with the ledger's own
//! [`decode_event`](crate::event::decode_event) before it is signed, so one
//! the node would refuse is refused here with the ledger's exact message.
//!
//! # qtrace → EPCIS
//!
//! | qtrace record | EPCIS event |
//! |---|---|
//! | Production | ObjectEvent `ADD`, bizStep `commissioning`, ILMD dates |
//! | Transformation | TransformationEvent, bizStep `commissioning` |
//! | Shipment / Receipt | ObjectEvent `OBSERVE`, `shipping` / `receiving`, source and destination `location`s |
//! | Sale | ObjectEvent `OBSERVE`, `retail_selling`, `retail_sold` |
//! | Inspection / SpotCheck | ObjectEvent `OBSERVE`, `inspecting` (or `sampling`), disposition `conformant`/`non_conformant`; report, standards and test items in `qtrace:` fields |
//! | Recall | ObjectEvent `OBSERVE`, disposition `recalled`, one `quantityList` entry per lot, the rest in `qtrace:recall` |
//! | anything else (certificates, recall progress, corrections, registry) | not an EPCIS event: listed in the document's `qtrace:otherRecords` |
//!
//! Products and places are written as GS1 Digital Link URIs
//! (`https://id.gs1.org/01/…/10/…`, `…/414/<GLN>`), because an EPC URN
//! needs the GS1 company prefix length, which a GTIN or GLN alone does not
//! tell. Certificate documents become `certificationInfo`
//! (`qtrace:certificate/<issuer>/<number>`, a compact IRI in the `qtrace`
//! namespace, unless the document id is a URI already).
//!
//! Each event's `eventID` is `ni:///sha-256;<entry hash hex>?ver=CBV2.0`:
//! the qtrace entry hash (RFC 6962 leaf hash of the entry), so the same
//! record always exports with the same id. `recordTime` is when the node
//! logged it.
//!
//! ## Exact round trips
//!
//! An exported event also carries, in the `qtrace` namespace
//! (`https://example.invalid/qtrace/v1#`, declared in `@context`), what EPCIS
//! has no field for: `qtrace:kind`, `qtrace:signer` and `qtrace:signature`
//! (hex), `qtrace:parents`, `qtrace:nonce`, `qtrace:region`,
//! `qtrace:documents`, `qtrace:attributes`, body fields (`qtrace:sourceUSCC`,
//! `qtrace:reportNumber`, `qtrace:testItems`, `qtrace:recall`, …), and, only
//! when the standard fields cannot say them exactly, `qtrace:subject`,
//! `qtrace:bizStep`, `qtrace:disposition` and `qtrace:items` /
//! `qtrace:inputs` / `qtrace:outputs`. An event with `qtrace:kind` is read
//! back from the standard what/when/where fields plus these, and nothing is
//! derived for it (no `epcis:eventID` attribute: its eventID names the qtrace
//! entry itself), so importing an export rebuilds the same event bytes. When
//! it was signed by another key than the importing one, the rebuilt bytes
//! must verify under `qtrace:signature` and are submitted as the original
//! signed record (the node answers "duplicate" if it holds it); if they do
//! not verify, the document was changed after export and the event is
//! refused. Other extension fields are not recorded.
//!
//! # Files
//!
//! `uri.rs` reads and writes EPC URIs and GS1 Digital Links (with the
//! ledger's check digit and percent encoding), `cbv.rs` holds the CBV
//! vocabularies, `import.rs` maps EPCIS to qtrace and `export.rs` qtrace to
//! EPCIS; this file holds what they share (the errors) and the public names.
//! Each submodule takes this file's imports with `use super::*`.

use std::collections::BTreeMap;

use prost::Message as _;
use serde_json::{Map, Value, json};

use crate::event::{EventError, EventKind, decode_event};
use crate::hash::EntryHash;
use crate::ids::{Date, Gln, Gtin, IdError, Lot, ProductCode, Serial, Uscc};
use crate::pb::{self, event::Body, subject::Kind};
use crate::records;
use crate::signing::{PublicKey, SecretKey};
use crate::time::{format_event_time, format_micros_utc, parse_offset, parse_rfc3339};
use crate::verify::CheckedEntry;

mod cbv;
mod export;
mod import;
mod uri;

use self::cbv::{BIZ_STEP, BTT, DISPOSITION, SDT, Vocabulary, cbv_short, other_vocabulary_uri};
pub use self::cbv::{BIZ_STEPS, BIZ_TRANSACTION_TYPES, DISPOSITIONS};
pub use self::export::{Exported, event_id_of, export_document, export_event};
use self::import::{CERTIFICATE_IRI, Fields, read_items};
pub use self::import::{
    Importer, PartyMap, Prepared, classify, derived_subject, event_id, event_type, events_of, map_event,
    needs_lab_check, read_event_time,
};
pub use self::uri::{
    Place, format_offset, is_uri, location_uri, parse_location, parse_party, parse_product, product_uri,
};

/// The EPCIS 2.0 JSON-LD context every exported document names first.
pub const EPCIS_CONTEXT: &str = "https://ref.gs1.org/standards/epcis/epcis-context.jsonld";
/// The namespace of qtrace's extension fields (`qtrace:…`).
pub const QTRACE_NAMESPACE: &str = "https://example.invalid/qtrace/v1#";
/// The resolver under which exported Digital Link URIs are written.
pub const GS1_RESOLVER: &str = "https://id.gs1.org";

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why an EPC URI, Digital Link or party map entry was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// A well-formed identifier of another kind (an SSCC where a product was
    /// expected, say).
    #[error("{uri:?} is not {expected}")]
    Unsupported { uri: String, expected: &'static str },
    /// The identifier's structure is wrong.
    #[error("{uri:?} is malformed: {detail}")]
    Malformed { uri: String, detail: String },
    /// The GS1 key inside it is not valid.
    #[error("{uri:?}: {source}")]
    Identifier { uri: String, source: IdError },
}

/// Why a file is not an EPCIS document qtrace can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    #[error("not an EPCIS document: the top level must be a JSON object")]
    NotAnObject,
    #[error(
        "not an EPCIS document: type is {0:?}; expected EPCISDocument, EPCISQueryDocument or a single event \
         (ObjectEvent, AggregationEvent, TransactionEvent, TransformationEvent, AssociationEvent)"
    )]
    UnknownType(String),
    #[error("{0} is missing or is not an array")]
    NoEventList(&'static str),
}

/// Why one EPCIS event did not become a qtrace record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("an event must be a JSON object")]
    NotAnObject,
    #[error("event type {0:?} is not an EPCIS 2.0 event type")]
    UnknownType(String),
    #[error("aggregation has no qtrace record kind (packing is not a quality event)")]
    Aggregation,
    #[error(
        "a TransactionEvent has no qtrace record kind: give its bizTransactionList on the shipping or receiving \
         ObjectEvent, where it becomes the record's documents"
    )]
    Transaction,
    #[error("association (of assets, sensors or parts) has no qtrace record kind")]
    Association,
    #[error(
        "errorDeclaration: the event declares an earlier EPCIS event wrong; record that as a qtrace correction of the \
         earlier record (qtrace correct), not as a new record"
    )]
    ErrorDeclaration,
    #[error("action DELETE (the objects cease to exist) has no qtrace record kind")]
    Delete,
    #[error(
        "bizStep sensor_reporting: monitoring readings without a production, movement, sale or inspection are not a qtrace record"
    )]
    SensorReporting,
    #[error(
        "bizStep {biz_step:?} with disposition {disposition:?} has no qtrace record kind (qtrace records commissioning, \
         transformation, shipping, receiving, retail selling, inspecting/sampling and recalls)"
    )]
    NoRecordKind { biz_step: String, disposition: String },
    #[error(
        "qtrace:kind {0:?} is not a record kind qtrace exports as EPCIS (production, transformation, shipment, \
         receipt, sale, inspection, spot_check, recall)"
    )]
    UnknownQtraceKind(String),
    #[error("inspection needs a testing lab's key")]
    NeedsLab,
    #[error("{field}: {problem}")]
    Field { field: String, problem: String },
    #[error(
        "the {side} party is missing: a qtrace {kind} names the USCC of both organisations ({side}List with an \
         owning_party, possessing_party or location, or qtrace:{side}USCC)"
    )]
    NoParty { side: &'static str, kind: &'static str },
    #[error(
        "the {side} party {party} has no USCC: EPCIS names parties by GLN, so add the GLN to --party-map \
         (GLN = \"USCC\") or give qtrace:{side}USCC"
    )]
    NoUscc { side: &'static str, party: String },
    /// The mapped event fails the ledger's own checks; the message is the
    /// ledger's, exactly as the node would give it.
    #[error("{0}")]
    Ledger(EventError),
    #[error(
        "qtrace:signature does not verify under qtrace:signer {signer} for the event rebuilt from this EPCIS event \
         (it was changed after export); remove qtrace:signer and qtrace:signature to record it as your own"
    )]
    Signature { signer: String },
}

impl Refusal {
    /// A stable short name of the refusal's class, for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotAnObject | Refusal::UnknownType(_) => "not_an_event",
            Refusal::Aggregation
            | Refusal::Transaction
            | Refusal::Association
            | Refusal::ErrorDeclaration
            | Refusal::Delete
            | Refusal::SensorReporting
            | Refusal::NoRecordKind { .. }
            | Refusal::UnknownQtraceKind(_) => "no_record_kind",
            Refusal::NeedsLab => "needs_lab",
            Refusal::Field { .. } => "field",
            Refusal::NoParty { .. } | Refusal::NoUscc { .. } => "party",
            Refusal::Ledger(_) => "invalid",
            Refusal::Signature { .. } => "signature",
        }
    }
}

fn field_error(field: impl Into<String>, problem: impl Into<String>) -> Refusal {
    Refusal::Field { field: field.into(), problem: problem.into() }
}

/// Helpers the submodules' tests share.
#[cfg(test)]
mod test_support {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::entry::Entry;
    use crate::hash::LogId;
    pub(super) use crate::records::fixtures::{self, GLN, GLN2, GTIN, LAB, MAKER, SHOP, every_kind, uscc};

    /// The GS1 EPCIS vectors vendored in the repository (`testdata/epcis`).
    pub(super) fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/epcis")
    }

    pub(super) fn gln(text: &str) -> Gln {
        Gln::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// The party map the tests import with: the two parties of example
    /// 9.6.2, one given as a bare GLN and one as a PGLN.
    pub(super) fn party_map() -> PartyMap {
        let text = format!("\"4012345000016\" = \"{MAKER}\"\n\"urn:epc:id:pgln:0614141.00001\" = \"{SHOP}\"\n");
        PartyMap::parse_toml(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(super) fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32])
    }

    /// A record as a node would hand it out, signed by `signer`.
    pub(super) fn checked(event: &pb::Event, signer: &SecretKey, seq: u64) -> CheckedEntry {
        let sealed = records::seal(event, signer).unwrap_or_else(|e| panic!("fixture does not seal: {e}"));
        let signature = <[u8; 64]>::try_from(sealed.signed.signature.as_slice()).unwrap_or_else(|_| panic!("64 bytes"));
        let entry = Entry {
            seq,
            prev_hash: EntryHash([7; 32]),
            logged_at_micros: 1_795_226_400_123_456,
            signer: signer.public_key().to_bytes(),
            signature,
            event: sealed.signed.event,
        };
        CheckedEntry { log_id: LogId([3; 32]), hash: entry.hash(), entry, event: sealed.event }
    }

    pub(super) fn attribute(name: &str, value: &str) -> pb::Attribute {
        pb::Attribute { name: name.into(), value: value.into() }
    }

    pub(super) fn lot(gtin: &str, lot: &str, serial: &str, quantity: Option<(f64, &str)>) -> pb::LotQuantity {
        pb::LotQuantity {
            product: Some(pb::ProductKey { gtin: gtin.into(), lot: lot.into(), serial: serial.into() }),
            quantity: quantity.map(|(value, unit)| pb::Quantity { value, unit: unit.into() }),
        }
    }
}
