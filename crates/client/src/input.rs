//! Parsers for what a person types on the command line that is not an
//! identifier of the unified coding rules (those are in [`crate::ids`]):
//! record references, test items, region codes, GTIN prefixes and amounts.
//!
//! Each parser returns a value the record builders in [`crate::records`]
//! accept as is, and each error says what was expected, so the `qtrace` CLI
//! can use them directly as clap value parsers.

use std::fmt;

use crate::hash::{EntryHash, LogId};
use crate::pb;

/// Why a command-line value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, InputError> {
    Err(InputError(message.into()))
}

/// How a record is named on the command line: by its sequence number in the
/// node's log, or by its entry hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKey {
    /// A sequence number, written in decimal.
    Seq(u64),
    /// An entry hash, written as 64 hex digits.
    Hash(EntryHash),
    /// A record of another log the node mirrors, written `LOGID/SEQ` (the
    /// log id in 64 hex digits): a parent in another agency's log.
    InLog(LogId, u64),
}

impl RecordKey {
    /// Parses a decimal sequence number or a 64-hex-digit entry hash.
    ///
    /// A 64-digit decimal string is read as a hash: no sequence number has
    /// that many digits (a `u64` has at most 20).
    pub fn parse(input: &str) -> Result<Self, InputError> {
        if let Some((log, seq)) = input.split_once('/') {
            let shape =
                || format!("{input:?} is not LOGID/SEQ (the log id in 64 hex digits, the sequence number in decimal)");
            if log.len() != 64 || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
                return fail(shape());
            }
            let log = LogId::from_hex(log).map_err(|_| InputError(shape()))?;
            let seq = seq.parse::<u64>().map_err(|_| InputError(format!("sequence number {seq} is too large")))?;
            return Ok(RecordKey::InLog(log, seq));
        }
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            return EntryHash::from_hex(input).map(RecordKey::Hash).map_err(|e| InputError(e.to_string()));
        }
        if !input.is_empty() && input.bytes().all(|b| b.is_ascii_digit()) {
            return match input.parse::<u64>() {
                Ok(seq) => Ok(RecordKey::Seq(seq)),
                Err(_) => fail(format!("sequence number {input} is too large")),
            };
        }
        fail(format!(
            "{input:?} is not a record: give its sequence number (decimal, e.g. 42) or its entry hash (64 hex digits)"
        ))
    }

    /// The key as a `GetEntry` request asks for it.
    pub fn to_request(self) -> pb::GetEntryRequest {
        let (key, log_id) = match self {
            RecordKey::Seq(seq) => (pb::get_entry_request::Key::Seq(seq), Vec::new()),
            RecordKey::Hash(hash) => (pb::get_entry_request::Key::EntryHash(hash.0.to_vec()), Vec::new()),
            RecordKey::InLog(log, seq) => (pb::get_entry_request::Key::Seq(seq), log.0.to_vec()),
        };
        pb::GetEntryRequest { key: Some(key), log_id }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordKey::Seq(seq) => write!(f, "#{seq}"),
            RecordKey::Hash(hash) => write!(f, "{hash}"),
            RecordKey::InLog(log, seq) => write!(f, "{log}/{seq}"),
        }
    }
}

impl std::str::FromStr for RecordKey {
    type Err = InputError;

    fn from_str(input: &str) -> Result<Self, InputError> {
        Self::parse(input)
    }
}

/// Parses a test item written `NAME=VALUE[UNIT]`: `melamine=0.05mg/kg`,
/// `fat=3.1%`, `appearance=normal`, `lead=<0.01 mg/kg`.
///
/// When the value starts with a number (optionally after a comparison sign
/// `<`, `>`, `<=`, `>=`, `≤` or `≥`), the number is the value and the rest is
/// the unit; otherwise the whole text is the value and there is no unit.
pub fn parse_test_item(input: &str) -> Result<pb::TestItem, InputError> {
    let Some((name, measured)) = input.split_once('=') else {
        return fail(format!("{input:?} is not NAME=VALUE[UNIT], e.g. melamine=0.05mg/kg or appearance=normal"));
    };
    let name = name.trim();
    let measured = measured.trim();
    if name.is_empty() {
        return fail(format!("{input:?} has no item name before '='"));
    }
    if measured.is_empty() {
        return fail(format!("{input:?} has no value after '='"));
    }
    let number_len = leading_number_len(measured);
    let (value, unit) = if number_len == 0 {
        (measured, "")
    } else {
        // `leading_number_len` counts whole characters, so this is a boundary.
        let (value, unit) = measured.split_at(number_len);
        (value, unit.trim())
    };
    Ok(pb::TestItem { name: name.to_owned(), value: value.to_owned(), unit: unit.to_owned(), ..Default::default() })
}

/// The length in bytes of the number at the start of `text` (with an
/// optional comparison sign, sign, decimals and exponent), or 0 if it does
/// not start with one.
fn leading_number_len(text: &str) -> usize {
    let comparison = ["<=", ">=", "<", ">", "≤", "≥"].into_iter().find(|c| text.starts_with(c)).map_or(0, str::len);
    let bytes = text.as_bytes();
    let mut at = comparison;
    while bytes.get(at) == Some(&b' ') {
        at += 1;
    }
    if matches!(bytes.get(at), Some(b'+' | b'-')) {
        at += 1;
    }
    let digits = |from: usize| bytes.iter().skip(from).take_while(|b| b.is_ascii_digit()).count();
    let whole = digits(at);
    at += whole;
    let mut fraction = 0;
    if bytes.get(at) == Some(&b'.') {
        fraction = digits(at + 1);
        if fraction > 0 {
            at += 1 + fraction;
        }
    }
    if whole == 0 && fraction == 0 {
        return 0;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(at + 1), Some(b'+' | b'-')));
        let exponent = digits(at + 1 + sign);
        if exponent > 0 {
            at += 1 + sign + exponent;
        }
    }
    at
}

/// Parses a 6-digit administrative division code (行政区划代码), e.g. `310000`.
pub fn parse_region(input: &str) -> Result<String, InputError> {
    if input.len() == 6 && input.bytes().all(|b| b.is_ascii_digit()) {
        Ok(input.to_owned())
    } else {
        fail(format!("{input:?} is not a 6-digit administrative division code (行政区划代码), e.g. 310000"))
    }
}

/// Parses a GTIN prefix of an accreditation or certificate scope: 1 to 13
/// digits of the 14-digit form, or a whole GTIN (8, 12, 13 or 14 digits with
/// a valid check digit, stored as 14 digits).
///
/// A 13-digit text is read as a GTIN-13 when its check digit is valid, and
/// as a prefix otherwise, so `0952012345678` and `9520123456788` both do
/// what a person means.
pub fn parse_gtin_prefix(input: &str) -> Result<String, InputError> {
    if input.is_empty() || input.len() > 14 || !input.bytes().all(|b| b.is_ascii_digit()) {
        return fail(format!("{input:?} is neither a GTIN nor a GTIN prefix of 1 to 13 digits"));
    }
    match crate::ids::Gtin::parse(input) {
        Ok(gtin) => Ok(gtin.to_string()),
        Err(e) if input.len() == 14 => fail(e.to_string()),
        Err(_) => Ok(input.to_owned()),
    }
}

/// Parses an amount of goods: a finite, non-negative decimal number.
pub fn parse_amount(input: &str) -> Result<f64, InputError> {
    match input.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => fail(format!("{input:?} is not an amount (a non-negative number such as 12 or 2.5)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys() {
        let hash = "3f".repeat(32);
        let digits64 = "1".repeat(64);
        let cases: Vec<(&str, Result<RecordKey, &str>)> = vec![
            ("0", Ok(RecordKey::Seq(0))),
            ("42", Ok(RecordKey::Seq(42))),
            ("18446744073709551615", Ok(RecordKey::Seq(u64::MAX))),
            ("18446744073709551616", Err("sequence number 18446744073709551616 is too large")),
            (&hash, Ok(RecordKey::Hash(EntryHash([0x3f; 32])))),
            (&digits64, Ok(RecordKey::Hash(EntryHash([0x11; 32])))),
            ("", Err("\"\" is not a record")),
            ("-1", Err("\"-1\" is not a record")),
            ("4 2", Err("\"4 2\" is not a record")),
            ("0x2a", Err("\"0x2a\" is not a record")),
            ("3f3f", Err("\"3f3f\" is not a record")),
            ("zz", Err("\"zz\" is not a record")),
        ];
        for (input, expect) in cases {
            match (RecordKey::parse(input), expect) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
                (Err(got), Err(want)) => assert!(got.0.starts_with(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
        let upper = "AB".repeat(32);
        assert_eq!(RecordKey::parse(&upper), Ok(RecordKey::Hash(EntryHash([0xab; 32]))));
    }

    #[test]
    fn test_items() {
        let cases = [
            ("melamine=0.05mg/kg", Ok(("melamine", "0.05", "mg/kg"))),
            ("appearance=normal", Ok(("appearance", "normal", ""))),
            ("fat=3.1%", Ok(("fat", "3.1", "%"))),
            ("protein = 2.9 g/100g", Ok(("protein", "2.9", "g/100g"))),
            ("lead=<0.01mg/kg", Ok(("lead", "<0.01", "mg/kg"))),
            ("lead=≤0.01 mg/kg", Ok(("lead", "≤0.01", "mg/kg"))),
            ("count=1.5e3CFU/g", Ok(("count", "1.5e3", "CFU/g"))),
            ("count=12each", Ok(("count", "12", "each"))),
            ("temperature=-18℃", Ok(("temperature", "-18", "℃"))),
            ("pH=7", Ok(("pH", "7", ""))),
            ("melamine=not detected", Ok(("melamine", "not detected", ""))),
            ("三聚氰胺=未检出", Ok(("三聚氰胺", "未检出", ""))),
            ("ratio=.5", Ok(("ratio", ".5", ""))),
            ("formula=a=b", Ok(("formula", "a=b", ""))),
            ("melamine", Err("\"melamine\" is not NAME=VALUE[UNIT]")),
            ("=0.05mg/kg", Err("\"=0.05mg/kg\" has no item name before '='")),
            ("melamine=", Err("\"melamine=\" has no value after '='")),
        ];
        for (input, expect) in cases {
            match (parse_test_item(input), expect) {
                (Ok(item), Ok((name, value, unit))) => {
                    assert_eq!(
                        (item.name.as_str(), item.value.as_str(), item.unit.as_str()),
                        (name, value, unit),
                        "{input}"
                    )
                }
                (Err(got), Err(want)) => assert!(got.0.starts_with(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn regions_prefixes_and_amounts() {
        assert_eq!(parse_region("310000"), Ok("310000".into()));
        for bad in ["31000", "3100000", "31000a", ""] {
            assert!(parse_region(bad).is_err(), "{bad}");
        }
        let prefixes = [
            ("9520123", Ok("9520123")),
            ("0", Ok("0")),
            ("9520123456788", Ok("09520123456788")),
            ("0952012345678", Ok("0952012345678")),
            ("09520123456788", Ok("09520123456788")),
            ("09520123456789", Err("GTIN check digit is 9, expected 8")),
            ("952012345678899", Err("\"952012345678899\" is neither")),
            ("95a", Err("\"95a\" is neither")),
            ("", Err("\"\" is neither")),
        ];
        for (input, expect) in prefixes {
            match (parse_gtin_prefix(input), expect) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
                (Err(got), Err(want)) => assert!(got.0.starts_with(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(parse_amount("2.5"), Ok(2.5));
        assert_eq!(parse_amount("0"), Ok(0.0));
        for bad in ["-1", "NaN", "inf", "", "1,5"] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
    }
}
