//! Verdicts: the answer a regulator or a consumer acts on, with evidence.
//!
//! A verdict is computed from a [`View`](crate::view::View) and the
//! verifier's trusted log keys, and does no I/O, so a node computes it over
//! its store and `qtrace verify --offline` computes the same one over an
//! evidence bundle. Each check is a line with a severity, a detail in plain
//! words and the evidence behind it (record citations
//! `<log id>/<seq>/<entry hash>`, checkpoints, proofs).
//!
//! The overall verdict is INVALID if any check is invalid, WARNING if any
//! check warns, VALID otherwise, and NOT_FOUND when the ledger holds nothing
//! about the subject.

// One concern per file: `report` is what a verdict produces and how it is
// printed, `checks` the checks every subject shares, `certificates` a
// certificate's history and checks, `product` and `record` the subjects.
mod certificates;
mod checks;
mod product;
mod record;
mod report;
#[cfg(test)]
mod tests;

use crate::hash::LogId;
use crate::ids::{Date, Gtin, Lot, ProductCode, Uscc};
use crate::note::{CosignatureVerifier, Verifier};
use crate::pb;
use crate::trace::{self, Limits};
use crate::view::{RecordId, View, ViewError};

pub use certificates::{CertStatus, CertificateHistory, verify_certificate};
pub use product::verify_product;
pub use record::verify_record;
pub use report::{
    CertificateView, Check, Overall, Report, Responsible, Severity, Step, describe, to_json, to_json_value, to_pb,
};

/// Which logs (and witnesses) the verifier trusts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub logs: Vec<Verifier>,
    pub witnesses: Vec<CosignatureVerifier>,
}

impl Trust {
    fn verifier(&self, log: &LogId) -> Option<&Verifier> {
        self.logs.iter().find(|v| LogId::of_key(&v.public_key().to_bytes()) == *log)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub limits: Limits,
    /// Include records their signers corrected away (did_not_occur,
    /// incorrect_data): the raw view, `--raw` on the CLI, `raw` on the wire.
    pub include_corrected: bool,
    /// Witness policy: how many trusted witnesses must cosign the checkpoint
    /// that proves a record (k of the n in [`Trust::witnesses`]); fewer is
    /// a warning. 0 asks for none.
    pub witness_quorum: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerdictError {
    #[error("{0}")]
    View(#[from] ViewError),
    #[error("{0}")]
    Trace(#[from] trace::TraceError),
}

/// A verdict subject that names nothing to verify, or names it wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    #[error("subject: give a record, a certificate or a product code")]
    Missing,
    /// `field` is the subject's field path, e.g. `subject.certificate.issuer_uscc`.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    Verdict(#[from] VerdictError),
}

/// The one dispatch from a verdict subject (a record, a certificate or a
/// product code, as a Verify request and an evidence bundle name it) to its
/// verdict; the node, `qtrace check`/`verify --offline`, the fuzz targets
/// and the tests all call it. `at` (the status on a date) and `product`
/// (does it cover this GTIN) are questions about a certificate and are
/// ignored for other subjects.
pub fn verify_subject(
    view: &dyn View,
    trust: &Trust,
    subject: Option<&pb::VerdictSubject>,
    at: Option<Date>,
    product: Option<&Gtin>,
    options: Options,
) -> Result<Report, SubjectError> {
    use pb::verdict_subject::Kind;
    let invalid = |field: &'static str, reason: &dyn std::fmt::Display| SubjectError::Invalid {
        field,
        reason: reason.to_string(),
    };
    let report = match subject.and_then(|s| s.kind.as_ref()).ok_or(SubjectError::Missing)? {
        Kind::Record(r) => {
            let log = LogId::from_slice(&r.log_id).map_err(|e| invalid("subject.record.log_id", &e))?;
            verify_record(view, trust, RecordId { log, seq: r.seq }, options)?
        }
        Kind::Certificate(c) => {
            let issuer = Uscc::parse(&c.issuer_uscc).map_err(|e| invalid("subject.certificate.issuer_uscc", &e))?;
            verify_certificate(view, trust, &issuer, &c.number, product, at, options)?
        }
        Kind::ProductCode(text) => {
            let code = product_code(text).map_err(|e| invalid("subject.product_code", &e))?;
            verify_product(view, trust, &code, options)?
        }
    };
    Ok(report)
}

/// Parses a verdict subject given on a command line or in a request.
pub fn product_code(text: &str) -> Result<ProductCode, crate::ids::IdError> {
    // "GTIN/LOT" is accepted as a short form.
    if let Some((gtin, lot)) = text.split_once('/')
        && !text.contains(':')
        && !text.starts_with('(')
    {
        let gtin = Gtin::parse(gtin)?;
        let lot = Lot::parse(lot)?;
        return Ok(ProductCode { gtin, lot: Some(lot), serial: None, expiry: None });
    }
    ProductCode::parse(text)
}
