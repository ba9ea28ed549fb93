//! What a verdict, a bundle or a trace is about, as a person types it:
//! a record (by sequence number or entry hash in the node's own log, or
//! `LOGID/SEQ` in a log the node mirrors), a certificate (`USCC/NUMBER`),
//! or a product code (GS1 Digital Link, element string, GTIN or
//! `GTIN/LOT`).
//!
//! Each parser returns a value that only needs the node to be looked up,
//! so a command refuses bad input (exit 2) before contacting anyone.

use std::fmt;

use crate::hash::LogId;
use crate::ids::{ProductCode, Uscc};
use crate::input::{InputError, RecordKey};
use crate::pb;

fn fail<T>(message: impl Into<String>) -> Result<T, InputError> {
    Err(InputError(message.into()))
}

/// A record of the node's own log, or of another log it mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordTarget {
    /// In the node's own log: a sequence number or an entry hash.
    Own(RecordKey),
    /// In the log `log` (which the node writes or mirrors), at `seq`.
    Other { log: LogId, seq: u64 },
}

impl RecordTarget {
    /// Parses `SEQ`, a 64-hex-digit entry hash, or `LOGID/SEQ` (the log id
    /// in 64 hex digits, the sequence number in decimal).
    pub fn parse(input: &str) -> Result<Self, InputError> {
        let Some((log, seq)) = input.split_once('/') else {
            return RecordKey::parse(input).map(RecordTarget::Own);
        };
        let shape =
            || format!("{input:?} is not LOGID/SEQ (the log id in 64 hex digits, the sequence number in decimal)");
        if log.len() != 64 || !log.bytes().all(|b| b.is_ascii_hexdigit()) {
            return fail(shape());
        }
        let log = LogId::from_hex(log).map_err(|e| InputError(e.to_string()))?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return fail(shape());
        }
        let seq = seq.parse::<u64>().map_err(|_| InputError(format!("sequence number {seq} is too large")))?;
        Ok(RecordTarget::Other { log, seq })
    }
}

impl fmt::Display for RecordTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordTarget::Own(key) => write!(f, "{key}"),
            RecordTarget::Other { log, seq } => write!(f, "{log}/{seq}"),
        }
    }
}

impl std::str::FromStr for RecordTarget {
    type Err = InputError;

    fn from_str(input: &str) -> Result<Self, InputError> {
        Self::parse(input)
    }
}

/// A certificate: its issuer's USCC and its number (证书编号).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateId {
    pub issuer: Uscc,
    pub number: String,
}

impl CertificateId {
    /// Parses `USCC/NUMBER`, e.g. `913301007042187B2H/CQC-MP-1`. A number
    /// holds no `/` and no control characters (the ledger refuses such
    /// numbers at issue), so the first `/` splits the two.
    pub fn parse(input: &str) -> Result<Self, InputError> {
        let Some((issuer, number)) = input.split_once('/') else {
            return fail(format!(
                "{input:?} is not USCC/NUMBER: give the issuer's unified social credit code, a slash and the \
                 certificate number, e.g. 913301007042187B2H/CQC-2026-001"
            ));
        };
        let issuer = Uscc::parse(issuer).map_err(|e| InputError(format!("{input:?}: issuer: {e}")))?;
        if number.trim().is_empty() {
            return fail(format!("{input:?} has no certificate number after the slash"));
        }
        if number.contains('/') || number.chars().any(char::is_control) {
            return fail(format!("{input:?}: a certificate number holds no '/' and no control characters"));
        }
        if number.len() > qtrace_ledger::event::MAX_NAME_BYTES {
            return fail(format!(
                "{input:?}: the certificate number is {} bytes; at most {} are allowed",
                number.len(),
                qtrace_ledger::event::MAX_NAME_BYTES
            ));
        }
        Ok(CertificateId { issuer, number: number.to_owned() })
    }

    pub fn to_pb(&self) -> pb::CertificateKey {
        pb::CertificateKey { issuer_uscc: self.issuer.to_string(), number: self.number.clone() }
    }
}

impl fmt::Display for CertificateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.issuer, self.number)
    }
}

impl std::str::FromStr for CertificateId {
    type Err = InputError;

    fn from_str(input: &str) -> Result<Self, InputError> {
        Self::parse(input)
    }
}

/// Parses a product code as a verdict takes it: a GS1 Digital Link URI, an
/// element string such as `(01)09520123456788(10)P-1`, a bare GTIN, or the
/// short form `GTIN/LOT`.
pub fn parse_product(input: &str) -> Result<ProductCode, InputError> {
    qtrace_ledger::verdict::product_code(input).map_err(|e| {
        InputError(format!(
            "{input:?} is not a product code (a GS1 Digital Link, an element string such as (01)…(10)…, a GTIN, \
             or GTIN/LOT): {e}"
        ))
    })
}

/// A record or a product code, for commands that take either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Record(RecordTarget),
    Product(ProductCode),
}

impl Target {
    /// A record if the text names one (a bare number is a sequence number,
    /// so a product line is written `(01)GTIN`), otherwise a product code.
    pub fn parse(input: &str) -> Result<Self, InputError> {
        if let Ok(record) = RecordTarget::parse(input) {
            return Ok(Target::Record(record));
        }
        match qtrace_ledger::verdict::product_code(input) {
            Ok(code) => Ok(Target::Product(code)),
            Err(e) => fail(format!(
                "{input:?} is neither a record (sequence number, entry hash or LOGID/SEQ) nor a product code \
                 (Digital Link, element string or GTIN/LOT): {e}"
            )),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = InputError;

    fn from_str(input: &str) -> Result<Self, InputError> {
        Self::parse(input)
    }
}

/// The subject of a verdict request for a product code. The element string
/// is sent, which the node parses back to the same code.
pub fn product_subject(code: &ProductCode) -> pb::VerdictSubject {
    pb::VerdictSubject { kind: Some(pb::verdict_subject::Kind::ProductCode(code.to_element_string())) }
}

/// A verdict subject in words, as `qtrace` prints it.
pub fn describe_subject(subject: Option<&pb::VerdictSubject>) -> String {
    use pb::verdict_subject::Kind;
    match subject.and_then(|s| s.kind.as_ref()) {
        Some(Kind::Record(r)) => format!("record {}/{}", hex::encode(&r.log_id), r.seq),
        Some(Kind::Certificate(c)) => format!("certificate {}/{}", c.issuer_uscc, c.number),
        Some(Kind::ProductCode(code)) => format!("product {code}"),
        None => "nothing".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::EntryHash;

    #[test]
    fn record_targets() {
        let log = "ab".repeat(32);
        let hash = "3f".repeat(32);
        let other = format!("{log}/7");
        let big = format!("{log}/18446744073709551616");
        let short_log = format!("{}/7", "ab".repeat(31));
        let no_seq = format!("{log}/");
        let hex_seq = format!("{log}/0x7");
        let cases: Vec<(&str, Result<RecordTarget, &str>)> = vec![
            ("0", Ok(RecordTarget::Own(RecordKey::Seq(0)))),
            ("42", Ok(RecordTarget::Own(RecordKey::Seq(42)))),
            (&hash, Ok(RecordTarget::Own(RecordKey::Hash(EntryHash([0x3f; 32]))))),
            (&other, Ok(RecordTarget::Other { log: LogId([0xab; 32]), seq: 7 })),
            (&big, Err("sequence number 18446744073709551616 is too large")),
            (&short_log, Err("is not LOGID/SEQ")),
            (&no_seq, Err("is not LOGID/SEQ")),
            (&hex_seq, Err("is not LOGID/SEQ")),
            ("7/7", Err("is not LOGID/SEQ")),
            ("", Err("\"\" is not a record")),
            ("x", Err("\"x\" is not a record")),
        ];
        for (input, expect) in cases {
            match (RecordTarget::parse(input), expect) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
                (Err(got), Err(want)) => assert!(got.0.contains(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(RecordTarget::parse(&other).map(|t| t.to_string()), Ok(other.clone()));
    }

    #[test]
    fn certificate_ids() {
        let long = format!("913301007042187B2H/{}", "N".repeat(201));
        // (input, Ok((issuer, number)) or Err(part of the message))
        type Case<'a> = (&'a str, Result<(&'a str, &'a str), &'a str>);
        let cases: Vec<Case> = vec![
            ("913301007042187B2H/CQC-MP-1", Ok(("913301007042187B2H", "CQC-MP-1"))),
            ("913301007042187B2H/认证 2026 第1号", Ok(("913301007042187B2H", "认证 2026 第1号"))),
            ("913301007042187B2H", Err("is not USCC/NUMBER")),
            ("913301007042187B2H/", Err("has no certificate number")),
            ("913301007042187B2H/ ", Err("has no certificate number")),
            ("913301007042187B2H/CQC/2026", Err("holds no '/'")),
            ("913301007042187B2H/CQC\n1", Err("holds no '/'")),
            ("913301007042187B2I/CQC-1", Err("issuer:")),
            ("/CQC-1", Err("issuer:")),
            (&long, Err("is 201 bytes; at most 200")),
        ];
        for (input, expect) in cases {
            match (CertificateId::parse(input), expect) {
                (Ok(got), Ok((issuer, number))) => {
                    assert_eq!((got.issuer.as_str(), got.number.as_str()), (issuer, number), "{input}");
                    assert_eq!(got.to_string(), input);
                    assert_eq!(got.to_pb().issuer_uscc, issuer);
                }
                (Err(got), Err(want)) => assert!(got.0.contains(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn targets_and_product_codes() {
        let gtin = "09520123456788";
        let cases: Vec<(String, Result<&str, &str>)> = vec![
            ("12".into(), Ok("record #12")),
            (format!("{gtin}/P-1"), Ok("(01)09520123456788(10)P-1")),
            (format!("({gtin})"), Err("neither a record")),
            (format!("(01){gtin}(10)P-1"), Ok("(01)09520123456788(10)P-1")),
            (format!("https://id.gs1.org/01/{gtin}/10/P-1"), Ok("(01)09520123456788(10)P-1")),
            (format!("(01){gtin}"), Ok("(01)09520123456788")),
            ("09520123456789/P-1".into(), Err("neither a record")),
            ("hello".into(), Err("neither a record")),
        ];
        for (input, expect) in cases {
            let got = Target::parse(&input).map(|t| match t {
                Target::Record(r) => format!("record {r}"),
                Target::Product(code) => code.to_element_string(),
            });
            match (got, expect) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
                (Err(got), Err(want)) => assert!(got.0.contains(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
        // A bare GTIN is a product for `check`, which takes only codes.
        assert_eq!(parse_product(gtin).map(|c| c.lot), Ok(None));
        assert!(parse_product("09520123456789").is_err_and(|e| e.0.contains("is not a product code")));
        let subject = product_subject(&parse_product(&format!("{gtin}/P-1")).expect("code"));
        assert_eq!(describe_subject(Some(&subject)), "product (01)09520123456788(10)P-1");
    }
}
