//! Identifiers of the unified coding rules (统一编码规则): organisations
//! ([`Uscc`]), locations ([`Gln`]), products ([`Gtin`], [`Lot`], [`Serial`],
//! expiry [`Date`]) and the two ways a product code is printed on a package,
//! a GS1 Digital Link URI and a GS1 element string ([`ProductCode`]).
//!
//! Every type here follows "parse, don't validate": the only way to obtain a
//! value is through a parser that checks every rule, so a [`Gtin`] that exists
//! has a correct check digit and the rest of the ledger never checks it again.
//! Parsers never panic, whatever the input. A refusal is an [`IdError`] whose
//! message names the rule that failed (the position and character, the length,
//! or the expected and found check character) in words a regulator can act on.
//!
//! The module does no I/O and never reads the clock, so the same text parses
//! to the same value on every node and in every year. That is why two-digit
//! GS1 years are read as 20YY rather than with GS1's sliding century window
//! (see [`Date::from_yymmdd`]).

use std::fmt;
use std::str::FromStr;

/// Why an identifier was refused.
///
/// Each variant names one rule so that callers (and the gRPC layer) can map
/// it without parsing the message, and each message says which rule failed
/// in plain words, e.g. "GTIN check digit is 9, expected 8".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The text has the wrong number of characters for its kind.
    #[error("{kind} must be {expected} long, found {found}")]
    Length {
        /// What was being parsed, e.g. "GTIN".
        kind: &'static str,
        /// The lengths that are allowed, with their unit, e.g. "18 characters".
        expected: &'static str,
        /// How many characters the text has.
        found: usize,
    },
    /// A character is outside the alphabet of its kind.
    #[error("{kind} character {position} is {ch:?}, which is not allowed (allowed: {allowed})")]
    BadChar {
        /// What was being parsed, e.g. "USCC".
        kind: &'static str,
        /// The 1-based position of the character, counted in characters.
        position: usize,
        /// The character as it was given.
        ch: char,
        /// A description of the alphabet of this kind.
        allowed: &'static str,
    },
    /// A check digit or check character does not match the rest of the code.
    #[error("{kind} {check} is {found}, expected {expected}")]
    CheckDigit {
        /// What was being parsed, e.g. "GTIN".
        kind: &'static str,
        /// Which check failed, e.g. "check digit" or "organisation code check character".
        check: &'static str,
        /// The check character computed from the other characters.
        expected: char,
        /// The check character the code carries.
        found: char,
    },
    /// A GS1 Digital Link lists its key qualifiers in the wrong order.
    #[error("qualifiers out of order: {first} before {second} (a GS1 Digital Link lists 22, then 10, then 21)")]
    QualifierOrder {
        /// The qualifier (AI) that came first.
        first: &'static str,
        /// The qualifier (AI) that came after it but belongs before it.
        second: &'static str,
    },
    /// The same application identifier appears twice, so its value is ambiguous.
    #[error("AI {ai} appears more than once in the {kind}")]
    DuplicateAi {
        /// What was being parsed, e.g. "element string".
        kind: &'static str,
        /// The repeated application identifier, e.g. "10".
        ai: &'static str,
    },
    /// A product code has no GTIN (AI 01), which is its primary key.
    #[error("product code has no GTIN (AI 01)")]
    MissingGtin,
    /// Text of the right shape names a day that does not exist.
    #[error("{kind} {value:?} does not exist: {detail}")]
    BadDate {
        /// What was being parsed, e.g. "expiry date (AI 17)".
        kind: &'static str,
        /// The date text as given (or as built from its parts).
        value: String,
        /// Which part is wrong, e.g. "February 2023 has 28 days".
        detail: String,
    },
    /// The text does not have the structure of its kind at all.
    #[error("{kind} is malformed: {detail}")]
    Syntax {
        /// What was being parsed, e.g. "Digital Link".
        kind: &'static str,
        /// What is wrong with the structure.
        detail: String,
    },
}

fn syntax(kind: &'static str, detail: impl Into<String>) -> IdError {
    IdError::Syntax { kind, detail: detail.into() }
}

/// Returns the ASCII text stored in a fixed-size identifier.
///
/// Every constructor stores only ASCII digits or letters, so the conversion
/// cannot fail; the fallback only keeps the function total.
fn ascii_str(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// Implements `Display`, `FromStr` and `AsRef<str>` for a type with
/// `parse` and `as_str`, so every identifier prints and parses the same way.
macro_rules! text_impls {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = IdError;

            fn from_str(input: &str) -> Result<Self, IdError> {
                Self::parse(input)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

/// Implements `Debug` as `Name("text")` for identifiers stored as ASCII bytes,
/// because a list of byte values would be unreadable in logs and test output.
macro_rules! debug_as_text {
    ($ty:ident) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($ty)).field(&self.as_str()).finish()
            }
        }
    };
}

// ---------------------------------------------------------------------------
// USCC
// ---------------------------------------------------------------------------

/// The 31 characters of a USCC in value order; the letters I, O, S, V and Z
/// are left out because they are easily confused with digits.
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// GB 32100-2015 weights for the 17 data characters, w_i = 3^i mod 31.
const USCC_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// GB 11714 weights for the 8 body characters of the organisation code.
const ORG_CODE_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

const USCC_ALLOWED: &str = "digits and upper-case letters except I, O, S, V and Z";

/// A unified social credit code (统一社会信用代码, GB 32100-2015), the
/// identifier of every registered organisation in China.
///
/// A `Uscc` holds 18 upper-case characters whose check character (the 18th)
/// and embedded organisation code check character (the 17th) are both
/// correct. Lower-case input is accepted and stored upper case, because codes
/// are often typed by hand and the alphabet has only one case; the stored
/// form is therefore canonical and two spellings of one code compare equal.
///
/// The organisation code check (GB 11714, characters 9 to 17) is enforced:
/// every valid USCC in the shared test vectors satisfies it, including an
/// individual business (`92…`), so the vectors give no reason to relax it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uscc([u8; 18]);

impl Uscc {
    /// Parses a USCC, accepting lower case and storing upper case.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        const KIND: &str = "USCC";
        let found = input.chars().count();
        if found != 18 {
            return Err(IdError::Length { kind: KIND, expected: "18 characters", found });
        }
        let mut code = [0u8; 18];
        let mut values = [0u32; 18];
        for (position, ((slot, value_slot), ch)) in (1..).zip(code.iter_mut().zip(values.iter_mut()).zip(input.chars()))
        {
            let upper = ch.to_ascii_uppercase();
            let value = USCC_ALPHABET.iter().position(|&a| char::from(a) == upper).ok_or(IdError::BadChar {
                kind: KIND,
                position,
                ch,
                allowed: USCC_ALLOWED,
            })?;
            // `upper` is one of the ASCII characters of the alphabet, so it fits a byte.
            *slot = upper as u8;
            *value_slot = value as u32;
        }

        let [data @ .., check] = &values;
        let sum: u32 = data.iter().zip(USCC_WEIGHTS).map(|(v, w)| v * w).sum();
        let expected = (31 - sum % 31) % 31;
        if expected != *check {
            return Err(IdError::CheckDigit {
                kind: KIND,
                check: "check character",
                expected: uscc_char(expected),
                found: uscc_char(*check),
            });
        }

        // Characters 9 to 17 are the organisation code, which carries its own
        // GB 11714 mod-11 check in its last character.
        let [_, _, _, _, _, _, _, _, org_code @ .., _] = &code;
        let [org_body @ .., org_check] = org_code;
        let org_sum: u32 = org_body.iter().zip(ORG_CODE_WEIGHTS).map(|(&c, w)| gb11714_value(c) * w).sum();
        let org_expected = match 11 - org_sum % 11 {
            10 => 'X',
            11 => '0',
            digit => char::from_digit(digit, 10).unwrap_or('?'),
        };
        if char::from(*org_check) != org_expected {
            return Err(IdError::CheckDigit {
                kind: KIND,
                check: "organisation code (characters 9 to 17) check character",
                expected: org_expected,
                found: char::from(*org_check),
            });
        }
        Ok(Uscc(code))
    }

    /// The 18 characters, upper case.
    pub fn as_str(&self) -> &str {
        ascii_str(&self.0)
    }
}

fn uscc_char(value: u32) -> char {
    USCC_ALPHABET.get(value as usize).map_or('?', |&b| char::from(b))
}

/// The GB 11714 value of a character: digits are themselves and letters
/// count from A = 10, which differs from the USCC alphabet's values.
fn gb11714_value(c: u8) -> u32 {
    match c {
        b'0'..=b'9' => u32::from(c - b'0'),
        b'A'..=b'Z' => u32::from(c - b'A') + 10,
        _ => 0,
    }
}

text_impls!(Uscc);
debug_as_text!(Uscc);

// ---------------------------------------------------------------------------
// GS1 numeric keys: GTIN and GLN
// ---------------------------------------------------------------------------

const DIGITS_ALLOWED: &str = "digits 0-9";

/// Computes the GS1 mod-10 check digit of `data`: weights 3, 1, 3, 1… from
/// the rightmost data digit leftwards, check = (10 − Σ mod 10) mod 10.
fn gs1_check_digit(data: &[u8]) -> u8 {
    let sum: u32 = data.iter().rev().enumerate().map(|(i, &d)| u32::from(d) * if i % 2 == 0 { 3 } else { 1 }).sum();
    // The result is below 10, so it fits a byte.
    ((10 - sum % 10) % 10) as u8
}

/// The GS1 mod-10 check digit of the data digits `data` (ASCII `0`-`9`), for
/// a caller that assembles a GS1 key from parts, such as an EPC URI's
/// company prefix and reference. `None` if `data` holds anything but digits.
pub fn gs1_check_char(data: &str) -> Option<char> {
    let digits: Option<Vec<u8>> = data.chars().map(|c| c.to_digit(10).map(|d| d as u8)).collect();
    // A check digit is below 10, so `b'0' + it` is an ASCII digit.
    digits.map(|digits| char::from(b'0' + gs1_check_digit(&digits)))
}

/// Reads `input` as decimal digits (values 0 to 9) after its length was
/// checked, naming the first character that is not a digit.
fn decimal_digits(kind: &'static str, input: &str) -> Result<Digits, IdError> {
    let mut digits = Digits { values: [0; 14], len: 0 };
    for (ch, position) in input.chars().zip(1..) {
        let Some(d) = ch.to_digit(10) else {
            return Err(IdError::BadChar { kind, position, ch, allowed: DIGITS_ALLOWED });
        };
        let Some(slot) = digits.values.get_mut(digits.len) else {
            let found = input.chars().count();
            return Err(IdError::Length { kind, expected: "at most 14 digits", found });
        };
        // A decimal digit is below 10, so it fits a byte.
        *slot = d as u8;
        digits.len += 1;
    }
    Ok(digits)
}

/// Decimal digit values, held inline: no numeric identifier here is longer
/// than 14 digits.
struct Digits {
    values: [u8; 14],
    len: usize,
}

impl std::ops::Deref for Digits {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.values.get(..self.len).unwrap_or_default()
    }
}

/// Checks the GS1 mod-10 check digit of a full key given as digit values.
fn verify_gs1_check(kind: &'static str, digits: &[u8]) -> Result<(), IdError> {
    let Some((&found, data)) = digits.split_last() else {
        return Err(syntax(kind, "no digits"));
    };
    let expected = gs1_check_digit(data);
    if expected == found {
        Ok(())
    } else {
        Err(IdError::CheckDigit {
            kind,
            check: "check digit",
            expected: char::from(b'0' + expected),
            found: char::from(b'0' + found),
        })
    }
}

/// A Global Trade Item Number, the GS1 key of a product type.
///
/// It is always stored as 14 digits: GTIN-8, GTIN-12 and GTIN-13 are
/// left-padded with zeros, as GS1 prescribes for databases, so that the
/// same product has one key however its barcode spelled it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gtin([u8; 14]);

impl Gtin {
    /// Parses a GTIN-8, -12, -13 or -14 and checks its mod-10 check digit.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        const KIND: &str = "GTIN";
        let found = input.chars().count();
        if !matches!(found, 8 | 12 | 13 | 14) {
            return Err(IdError::Length { kind: KIND, expected: "8, 12, 13 or 14 digits", found });
        }
        let digits = decimal_digits(KIND, input)?;
        verify_gs1_check(KIND, &digits)?;
        let mut padded = [b'0'; 14];
        for (slot, digit) in padded.iter_mut().rev().zip(digits.iter().rev()) {
            *slot = b'0' + digit;
        }
        Ok(Gtin(padded))
    }

    /// The 14-digit form, e.g. `09520123456788`.
    pub fn as_str(&self) -> &str {
        ascii_str(&self.0)
    }

    /// The 14 digits as values 0 to 9, for callers that compute with them.
    pub fn digits(&self) -> [u8; 14] {
        self.0.map(|b| b.wrapping_sub(b'0'))
    }

    /// Whether the 14-digit form starts with `prefix`, taken literally
    /// (including the leading indicator or padding digit).
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.as_str().starts_with(prefix)
    }

    /// Whether the GTIN lies under a GS1 company prefix, given as GS1 writes
    /// it (the GTIN-13 form, e.g. `9520123` or `0614141`).
    ///
    /// The first of the 14 digits is the indicator digit (or padding), which
    /// is not part of the company prefix, so it is skipped before comparing.
    pub fn has_company_prefix(&self, company_prefix: &str) -> bool {
        self.as_str().get(1..).is_some_and(|rest| rest.starts_with(company_prefix))
    }
}

text_impls!(Gtin);
debug_as_text!(Gtin);

/// A Global Location Number, the GS1 key of a place or a party: 13 digits
/// whose last is a GS1 mod-10 check digit.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gln([u8; 13]);

impl Gln {
    /// Parses a 13-digit GLN and checks its mod-10 check digit.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        const KIND: &str = "GLN";
        let found = input.chars().count();
        if found != 13 {
            return Err(IdError::Length { kind: KIND, expected: "13 digits", found });
        }
        let digits = decimal_digits(KIND, input)?;
        verify_gs1_check(KIND, &digits)?;
        let mut code = [b'0'; 13];
        for (slot, digit) in code.iter_mut().zip(digits.iter()) {
            *slot = b'0' + digit;
        }
        Ok(Gln(code))
    }

    /// The 13 digits.
    pub fn as_str(&self) -> &str {
        ascii_str(&self.0)
    }
}

text_impls!(Gln);
debug_as_text!(Gln);

// ---------------------------------------------------------------------------
// Lot and serial: GS1 character set 82
// ---------------------------------------------------------------------------

/// GS1 General Specifications Figure 7.11-1, "CSET 82": the characters
/// allowed in alphanumeric AIs such as lot (10) and serial (21).
const CSET82: &str = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

/// Which ASCII characters are in [`CSET82`].
const CSET82_TABLE: [bool; 128] = {
    let mut table = [false; 128];
    let bytes = CSET82.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        table[bytes[i] as usize] = true;
        i += 1;
    }
    table
};

fn in_cset82(ch: char) -> bool {
    CSET82_TABLE.get(ch as usize).copied().unwrap_or(false)
}

const CSET82_ALLOWED: &str = "letters, digits and !\"%&'()*+,-./:;<=>?_ (GS1 character set 82)";

/// A value of an alphanumeric AI held inline: 1 to 20 ASCII characters,
/// zero-padded. CSET 82 has no NUL, so the derived order (bytes first) is
/// the order of the text, and traces copy lots without allocating.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Cset82 {
    bytes: [u8; 20],
    len: u8,
}

impl Cset82 {
    fn as_str(&self) -> &str {
        ascii_str(self.bytes.get(..usize::from(self.len)).unwrap_or_default())
    }
}

/// Parses a value of an alphanumeric AI: 1 to 20 characters of CSET 82.
fn parse_cset82(kind: &'static str, input: &str) -> Result<Cset82, IdError> {
    let found = input.chars().count();
    if !(1..=20).contains(&found) {
        return Err(IdError::Length { kind, expected: "1 to 20 characters", found });
    }
    if let Some((position, ch)) = (1..).zip(input.chars()).find(|&(_, ch)| !in_cset82(ch)) {
        return Err(IdError::BadChar { kind, position, ch, allowed: CSET82_ALLOWED });
    }
    // Every character is ASCII, so there are `found` (at most 20) bytes.
    let mut value = Cset82 { bytes: [0; 20], len: 0 };
    for (slot, byte) in value.bytes.iter_mut().zip(input.bytes()) {
        *slot = byte;
        value.len += 1;
    }
    Ok(value)
}

/// A batch or lot number (GS1 AI 10): 1 to 20 characters of GS1's
/// 82-character set. Case is significant, as GS1 specifies.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lot(Cset82);

impl Lot {
    /// Parses a lot number.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        parse_cset82("lot", input).map(Lot)
    }

    /// The lot number as given.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

text_impls!(Lot);
debug_as_text!(Lot);

/// A serial number (GS1 AI 21): 1 to 20 characters of GS1's 82-character
/// set. A serial is unique only within its GTIN, so it identifies an item
/// only together with one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Cset82);

impl Serial {
    /// Parses a serial number.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        parse_cset82("serial", input).map(Serial)
    }

    /// The serial number as given.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

text_impls!(Serial);
debug_as_text!(Serial);

// ---------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn is_leap_year(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// The number of days of `month` (1 to 12), or `None` for a month that does
/// not exist.
fn days_in_month(year: u16, month: u8) -> Option<u8> {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => Some(31),
        4 | 6 | 9 | 11 => Some(30),
        2 if is_leap_year(year) => Some(29),
        2 => Some(28),
        _ => None,
    }
}

/// A calendar date (proleptic Gregorian, years 1 to 9999), used for expiry
/// and production dates and for dates in records.
///
/// It carries no time zone on purpose: GS1 dates and the dates on
/// certificates are calendar days, not instants. Ordering is chronological.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Date {
    // Field order matters: the derived `Ord` compares year, then month, then day.
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// The calendar date `days` days after 1970-01-01 (negative: before),
    /// clamped to years 1 ..= 9999. Uses the proleptic Gregorian calendar
    /// (Howard Hinnant's `civil_from_days`).
    pub fn from_days_since_epoch(days: i64) -> Self {
        // Clamp so the arithmetic below cannot overflow and the year fits.
        let days = days.clamp(-719_162, 2_932_896);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
        Date { year, month, day }
    }

    /// Days since 1970-01-01 of this date.
    pub fn days_since_epoch(&self) -> i64 {
        let (year, month, day) = (i64::from(self.year), i64::from(self.month), i64::from(self.day));
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let mp = if month > 2 { month - 3 } else { month + 9 };
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// Builds a date from its parts, refusing days that do not exist
    /// (such as 2023-02-29) and years outside 1 to 9999.
    pub fn new(year: u16, month: u8, day: u8) -> Result<Self, IdError> {
        Self::checked("date", year, month, day, || format!("{year:04}-{month:02}-{day:02}"))
    }

    /// Parses the ISO 8601 calendar form `YYYY-MM-DD`, which is also what
    /// [`Display`](fmt::Display) writes.
    pub fn parse_iso(input: &str) -> Result<Self, IdError> {
        const KIND: &str = "date";
        const SHAPE: &str = "digits in the form YYYY-MM-DD";
        let found = input.chars().count();
        if found != 10 {
            return Err(IdError::Length { kind: KIND, expected: "10 characters (YYYY-MM-DD)", found });
        }
        let mut digits = Vec::with_capacity(8);
        for (position, ch) in (1..).zip(input.chars()) {
            let is_dash_position = position == 5 || position == 8;
            match (is_dash_position, ch, ch.to_digit(10)) {
                (true, '-', _) => {}
                // A decimal digit is below 10, so it fits a u16.
                (false, _, Some(d)) => digits.push(d as u16),
                _ => {
                    return Err(IdError::BadChar { kind: KIND, position, ch, allowed: SHAPE });
                }
            }
        }
        let number = |range: std::ops::Range<usize>| {
            digits.get(range).unwrap_or_default().iter().fold(0u16, |acc, d| acc * 10 + d)
        };
        let year = number(0..4);
        // Two decimal digits are below 100, so they fit a byte.
        let month = number(4..6) as u8;
        let day = number(6..8) as u8;
        Self::checked(KIND, year, month, day, || input.to_owned())
    }

    /// The same as [`Date::parse_iso`], so that `Date` parses like the
    /// other identifier types.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        Self::parse_iso(input)
    }

    /// Parses a GS1 date (AI 11 production date, AI 17 expiry) written
    /// `YYMMDD`.
    ///
    /// The year is always read as 20YY (2000 to 2099). GS1's own rule slides
    /// a century window around the current year, which would make the same
    /// label parse differently depending on when it was read; a ledger needs
    /// the same answer on every node in every year. The two rules agree for
    /// every YY within 49 years of the reading year, so they differ only for
    /// dates that are decades away, such as a label read in 2026 with YY = 99
    /// (GS1: 1999, here: 2099).
    ///
    /// GS1 writes DD = 00 when only the year and month are known; for an
    /// expiry that means the end of the month, so it is read as the last day
    /// of that month.
    pub fn from_yymmdd(input: &str) -> Result<Self, IdError> {
        Self::parse_yymmdd("GS1 date (YYMMDD)", input)
    }

    /// Writes the date as GS1 `YYMMDD`, or `None` if its year is outside
    /// 2000 to 2099, which six digits cannot express under the 20YY reading.
    pub fn to_yymmdd(&self) -> Option<String> {
        (2000..=2099).contains(&self.year).then(|| format!("{:02}{:02}{:02}", self.year - 2000, self.month, self.day))
    }

    /// The year, 1 to 9999.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// The month, 1 to 12.
    pub fn month(&self) -> u8 {
        self.month
    }

    /// The day of the month, 1 to 31.
    pub fn day(&self) -> u8 {
        self.day
    }

    fn parse_yymmdd(kind: &'static str, input: &str) -> Result<Self, IdError> {
        let found = input.chars().count();
        if found != 6 {
            return Err(IdError::Length { kind, expected: "6 digits (YYMMDD)", found });
        }
        let digits = decimal_digits(kind, input)?;
        let pair = |i: usize| {
            let tens = digits.get(i).copied().unwrap_or_default();
            let ones = digits.get(i + 1).copied().unwrap_or_default();
            tens * 10 + ones
        };
        let year = 2000 + u16::from(pair(0));
        let month = pair(2);
        let day = match (pair(4), days_in_month(year, month)) {
            (0, Some(last_day)) => last_day,
            (day, _) => day,
        };
        Self::checked(kind, year, month, day, || input.to_owned())
    }

    /// Validates the parts; `text` builds the value for the error message only
    /// when there is an error.
    fn checked(
        kind: &'static str,
        year: u16,
        month: u8,
        day: u8,
        text: impl FnOnce() -> String,
    ) -> Result<Self, IdError> {
        let fail = |detail: String| IdError::BadDate { kind, value: text(), detail };
        if !(1..=9999).contains(&year) {
            return Err(fail(format!("year {year} is outside 1 to 9999")));
        }
        let Some(last_day) = days_in_month(year, month) else {
            return Err(fail(format!("there is no month {month}")));
        };
        if day == 0 {
            return Err(fail("there is no day 0".to_owned()));
        }
        if day > last_day {
            let name =
                usize::from(month).checked_sub(1).and_then(|idx| MONTH_NAMES.get(idx)).copied().unwrap_or("that month");
            return Err(fail(format!("{name} {year} has {last_day} days")));
        }
        Ok(Date { year, month, day })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for Date {
    type Err = IdError;

    fn from_str(input: &str) -> Result<Self, IdError> {
        Self::parse_iso(input)
    }
}

// ---------------------------------------------------------------------------
// Product codes
// ---------------------------------------------------------------------------

const DIGITAL_LINK: &str = "Digital Link";
const ELEMENT_STRING: &str = "element string";
const EXPIRY: &str = "expiry date (AI 17)";
const PRODUCTION: &str = "production date (AI 11)";
const CPV: &str = "consumer product variant (AI 22)";

/// A product as identified on its package: the GTIN, and the lot, serial
/// and expiry date when the package carries them.
///
/// It parses from a GS1 Digital Link URI, a GS1 element string, or a bare
/// GTIN, and both printed forms of one product parse to equal values. The
/// fields are public because each is already a valid value of its own type.
///
/// A production date (AI 11) and a consumer product variant (AI 22) are
/// checked when present but not kept, because they do not identify the item:
/// the ledger records production in its own events. Other GS1 attributes
/// (Digital Link query parameters, unknown AIs in an element string) are
/// ignored for the same reason.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ProductCode {
    /// The product type (AI 01).
    pub gtin: Gtin,
    /// The batch or lot (AI 10), if printed.
    pub lot: Option<Lot>,
    /// The serial number (AI 21), if printed.
    pub serial: Option<Serial>,
    /// The expiry date (AI 17), if printed.
    pub expiry: Option<Date>,
}

impl From<Gtin> for ProductCode {
    fn from(gtin: Gtin) -> Self {
        ProductCode { gtin, lot: None, serial: None, expiry: None }
    }
}

impl ProductCode {
    /// Parses any printed form: a Digital Link URI (`https://…` or
    /// `http://…`), an element string (`(01)…`) or a bare GTIN.
    ///
    /// The input is not trimmed, so stray spaces are reported with their
    /// position rather than silently accepted.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        if strip_prefix_ignore_case(input, "https://").is_some() || strip_prefix_ignore_case(input, "http://").is_some()
        {
            Self::parse_digital_link(input)
        } else if input.starts_with('(') {
            Self::parse_element_string(input)
        } else if input.contains("://") {
            Err(syntax("product code", "a GS1 Digital Link must start with https:// or http://"))
        } else {
            Gtin::parse(input).map(ProductCode::from)
        }
    }

    /// Parses a GS1 Digital Link URI:
    /// `https://<host>[/prefix…]/01/<gtin>[/22/<cpv>][/10/<lot>][/21/<serial>][?17=YYMMDD&…]`.
    ///
    /// The resolver host and any path prefix are not part of the product's
    /// identity, so any are accepted. Path segments are percent-decoded. The
    /// GTIN may have 8, 12, 13 or 14 digits. Key qualifiers must be in the
    /// order 22, 10, 21, as the Digital Link standard requires, so that each
    /// product has one canonical link. One trailing slash is tolerated
    /// because it is a common copying artefact and cannot change the meaning.
    /// A lot or serial in the query string is refused rather than ignored,
    /// because ignoring it would silently merge distinct items.
    pub fn parse_digital_link(input: &str) -> Result<Self, IdError> {
        let after_scheme = strip_prefix_ignore_case(input, "https://")
            .or_else(|| strip_prefix_ignore_case(input, "http://"))
            .ok_or_else(|| syntax(DIGITAL_LINK, "it must start with https:// or http://"))?;
        // The fragment is for the browser only and never identifies anything.
        let without_fragment = after_scheme.split_once('#').map_or(after_scheme, |(before, _)| before);
        let (host_and_path, query) = match without_fragment.split_once('?') {
            Some((before, query)) => (before, Some(query)),
            None => (without_fragment, None),
        };
        let (host, path) = host_and_path.split_once('/').unwrap_or((host_and_path, ""));
        if host.is_empty() {
            return Err(syntax(DIGITAL_LINK, "it has no host name"));
        }
        if let Some(ch) = host.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(syntax(DIGITAL_LINK, format!("the host name contains {ch:?}")));
        }
        let path = path.strip_suffix('/').unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();

        // The GTIN's "01" is found from the right at an even distance from
        // the end, because after it come only (AI, value) pairs; this lets a
        // resolver's path prefix itself contain a segment "01".
        let n_segments = segments.len();
        let key_idx = segments
            .iter()
            .enumerate()
            .rev()
            .find(|&(idx, segment)| *segment == "01" && (n_segments - idx).is_multiple_of(2))
            .map(|(idx, _)| idx)
            // With an odd count some qualifier lacks its value; parsing from
            // the first "01" reports which one.
            .or_else(|| segments.iter().position(|segment| *segment == "01"))
            .ok_or(IdError::MissingGtin)?;

        let mut rest = segments.iter().skip(key_idx + 1);
        let gtin_segment = rest.next().ok_or_else(|| syntax(DIGITAL_LINK, "AI 01 has no GTIN after it"))?;
        let mut code = ProductCode::from(Gtin::parse(&percent_decode(gtin_segment)?)?);

        // Rank of each qualifier in the required order 22, 10, 21.
        let mut previous: Option<(u8, &'static str)> = None;
        while let Some(&ai_segment) = rest.next() {
            let (rank, ai) = match ai_segment {
                "22" => (0, "22"),
                "10" => (1, "10"),
                "21" => (2, "21"),
                other => {
                    return Err(syntax(
                        DIGITAL_LINK,
                        format!(
                            "path segment {other:?} after the GTIN is not a qualifier (only 22, 10 and 21 may follow AI 01)"
                        ),
                    ));
                }
            };
            if let Some((previous_rank, previous_ai)) = previous {
                if rank == previous_rank {
                    return Err(IdError::DuplicateAi { kind: DIGITAL_LINK, ai });
                }
                if rank < previous_rank {
                    return Err(IdError::QualifierOrder { first: previous_ai, second: ai });
                }
            }
            previous = Some((rank, ai));
            let value = rest.next().ok_or_else(|| syntax(DIGITAL_LINK, format!("qualifier {ai} has no value")))?;
            let value = percent_decode(value)?;
            match rank {
                0 => {
                    parse_cset82(CPV, &value)?;
                }
                1 => code.lot = Some(Lot::parse(&value)?),
                _ => code.serial = Some(Serial::parse(&value)?),
            }
        }

        let mut seen_production = false;
        for param in query.unwrap_or_default().split('&') {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            // A key that does not decode is not one of ours, and unknown
            // parameters are ignored, so it is skipped like any other.
            let Ok(key) = percent_decode(key) else {
                continue;
            };
            match key.as_str() {
                "17" => {
                    if code.expiry.is_some() {
                        return Err(IdError::DuplicateAi { kind: DIGITAL_LINK, ai: "17" });
                    }
                    code.expiry = Some(Date::parse_yymmdd(EXPIRY, &percent_decode(value)?)?);
                }
                "11" => {
                    if seen_production {
                        return Err(IdError::DuplicateAi { kind: DIGITAL_LINK, ai: "11" });
                    }
                    seen_production = true;
                    Date::parse_yymmdd(PRODUCTION, &percent_decode(value)?)?;
                }
                "01" | "10" | "21" | "22" => {
                    return Err(syntax(DIGITAL_LINK, format!("AI {key} belongs in the path, not in the query")));
                }
                // Other GS1 attributes and non-GS1 parameters (such as
                // linkType) describe or route the request but do not identify
                // the item, so they are ignored.
                _ => {}
            }
        }
        Ok(code)
    }

    /// Parses a GS1 element string in human-readable bracketed form, e.g.
    /// `(01)09520123456788(17)180426(10)ABC1(21)12345`.
    ///
    /// AI 01 must come first and must have exactly 14 digits, as the GS1 AI
    /// table fixes its length. AIs 10, 11, 17, 21 and 22 are checked; other
    /// AIs are ignored like unknown Digital Link attributes. A `(` inside a
    /// value must be written `\(`, the convention of GS1 barcode tools,
    /// because a bare `(` starts the next AI.
    pub fn parse_element_string(input: &str) -> Result<Self, IdError> {
        let fields = split_element_string(input)?;
        match fields.first() {
            Some((ai, _)) if ai == "01" => {}
            Some((first_ai, _)) if fields.iter().any(|(ai, _)| ai == "01") => {
                return Err(syntax(
                    ELEMENT_STRING,
                    format!("AI (01) must come first, but ({first_ai}) comes before it"),
                ));
            }
            _ => return Err(IdError::MissingGtin),
        }

        let mut gtin = None;
        let mut lot = None;
        let mut serial = None;
        let mut expiry = None;
        let mut seen_production = false;
        let mut seen_cpv = false;
        for (ai, value) in &fields {
            let (ai, already_seen): (&'static str, bool) = match ai.as_str() {
                "01" => ("01", gtin.is_some()),
                "10" => ("10", lot.is_some()),
                "21" => ("21", serial.is_some()),
                "17" => ("17", expiry.is_some()),
                "11" => ("11", seen_production),
                "22" => ("22", seen_cpv),
                // Unknown AIs carry attributes that do not identify the item.
                _ => continue,
            };
            if already_seen {
                return Err(IdError::DuplicateAi { kind: ELEMENT_STRING, ai });
            }
            match ai {
                "01" => {
                    let found = value.chars().count();
                    if found != 14 {
                        return Err(IdError::Length { kind: "GTIN in AI (01)", expected: "14 digits", found });
                    }
                    gtin = Some(Gtin::parse(value)?);
                }
                "10" => lot = Some(Lot::parse(value)?),
                "21" => serial = Some(Serial::parse(value)?),
                "17" => expiry = Some(Date::parse_yymmdd(EXPIRY, value)?),
                "11" => {
                    Date::parse_yymmdd(PRODUCTION, value)?;
                    seen_production = true;
                }
                _ => {
                    parse_cset82(CPV, value)?;
                    seen_cpv = true;
                }
            }
        }
        // The first field was checked to be AI 01 above, so the GTIN is set.
        let gtin = gtin.ok_or(IdError::MissingGtin)?;
        Ok(ProductCode { gtin, lot, serial, expiry })
    }

    /// Writes the canonical GS1 Digital Link URI under the resolver `base`
    /// (e.g. `https://id.gs1.org`, with or without a trailing slash, with or
    /// without a path prefix).
    ///
    /// Lot and serial characters other than letters, digits, `-`, `.` and `_`
    /// are percent-encoded, which is always safe in a path segment and
    /// decodes to the same value. An expiry outside 2000 to 2099 cannot be
    /// written as YYMMDD, so it is written as `YYYY-MM-DD`, which no GS1
    /// parser accepts: the mistake then shows instead of naming another day.
    pub fn to_digital_link(&self, base: &str) -> String {
        let mut out = base.trim_end_matches('/').to_owned();
        out.push_str("/01/");
        out.push_str(self.gtin.as_str());
        if let Some(lot) = &self.lot {
            out.push_str("/10/");
            percent_encode_into(&mut out, lot.as_str());
        }
        if let Some(serial) = &self.serial {
            out.push_str("/21/");
            percent_encode_into(&mut out, serial.as_str());
        }
        if let Some(expiry) = &self.expiry {
            out.push_str("?17=");
            out.push_str(&gs1_date_text(expiry));
        }
        out
    }

    /// Writes the bracketed GS1 element string, fixed-length AIs first as GS1
    /// recommends: `(01)…(17)…(10)…(21)…`. A `(` in a lot or serial is
    /// written `\(` so that the string parses back to the same value; an
    /// expiry outside 2000 to 2099 is written as in [`ProductCode::to_digital_link`].
    pub fn to_element_string(&self) -> String {
        let mut out = format!("(01){}", self.gtin);
        if let Some(expiry) = &self.expiry {
            out.push_str("(17)");
            out.push_str(&gs1_date_text(expiry));
        }
        if let Some(lot) = &self.lot {
            out.push_str("(10)");
            out.push_str(&lot.as_str().replace('(', "\\("));
        }
        if let Some(serial) = &self.serial {
            out.push_str("(21)");
            out.push_str(&serial.as_str().replace('(', "\\("));
        }
        out
    }
}

/// Displays the element string, the form people read off a label.
impl fmt::Display for ProductCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_element_string())
    }
}

impl FromStr for ProductCode {
    type Err = IdError;

    fn from_str(input: &str) -> Result<Self, IdError> {
        Self::parse(input)
    }
}

fn gs1_date_text(date: &Date) -> String {
    date.to_yymmdd().unwrap_or_else(|| date.to_string())
}

fn strip_prefix_ignore_case<'a>(input: &'a str, prefix: &str) -> Option<&'a str> {
    let head = input.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) { input.get(prefix.len()..) } else { None }
}

fn hex_value(b: u8) -> Option<u8> {
    // A hexadecimal digit is below 16, so it fits a byte.
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Why a URI component does not percent-decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PercentError {
    /// A `%` not followed by two hexadecimal digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

/// Decodes the `%XX` escapes of a URI component (a Digital Link path
/// segment, an EPC URI's lot or serial); the result must be UTF-8.
pub fn percent_decode_component(component: &str) -> Result<String, PercentError> {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while let Some(&b) = bytes.get(idx) {
        if b == b'%' {
            let high = bytes.get(idx + 1).copied().and_then(hex_value);
            let low = bytes.get(idx + 2).copied().and_then(hex_value);
            let (Some(high), Some(low)) = (high, low) else {
                return Err(PercentError::BadEscape);
            };
            out.push(high << 4 | low);
            idx += 3;
        } else {
            out.push(b);
            idx += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PercentError::NotUtf8)
}

/// [`percent_decode_component`] for a Digital Link, refusals naming it.
fn percent_decode(component: &str) -> Result<String, IdError> {
    percent_decode_component(component).map_err(|e| match e {
        PercentError::BadEscape => {
            syntax(DIGITAL_LINK, format!("in {component:?}, a '%' must be followed by two hexadecimal digits"))
        }
        PercentError::NotUtf8 => syntax(DIGITAL_LINK, format!("{component:?} does not decode to UTF-8 text")),
    })
}

/// Percent-encodes every byte that is not an RFC 3986 unreserved character
/// (letters, digits, `-`, `.`, `_`, `~`), which is safe in any URI component.
pub fn percent_encode_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// [`percent_encode_into`] a new string.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    percent_encode_into(&mut out, value);
    out
}

/// Splits a bracketed element string into (AI, value) pairs, undoing `\(`
/// escapes in values.
fn split_element_string(input: &str) -> Result<Vec<(String, String)>, IdError> {
    let mut fields = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let Some(after_open) = rest.strip_prefix('(') else {
            return Err(syntax(ELEMENT_STRING, format!("expected '(' to start an AI, found {rest:?}")));
        };
        let Some((ai, tail)) = after_open.split_once(')') else {
            return Err(syntax(ELEMENT_STRING, "an AI is missing its closing ')'"));
        };
        let ai_len = ai.chars().count();
        if !(2..=4).contains(&ai_len) || !ai.chars().all(|c| c.is_ascii_digit()) {
            return Err(syntax(
                ELEMENT_STRING,
                format!(
                    "({ai}) is not an AI; an AI is 2 to 4 digits in brackets (a '(' inside a value must be written \\()"
                ),
            ));
        }
        let mut value = String::new();
        let mut end = tail.len();
        let mut chars = tail.char_indices().peekable();
        while let Some((idx, ch)) = chars.next() {
            match ch {
                '(' => {
                    end = idx;
                    break;
                }
                '\\' if matches!(chars.peek(), Some((_, '('))) => {
                    value.push('(');
                    chars.next();
                }
                _ => value.push(ch),
            }
        }
        fields.push((ai.to_owned(), value));
        rest = tail.get(end..).unwrap_or_default();
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn gs1_check_chars() {
        let cases: &[(&str, Option<char>)] = &[
            ("0952012345678", Some('8')),
            ("0061414177777", Some('8')),
            ("061414100001", Some('2')),
            ("693123400001", Some('3')),
            ("9638507", Some('4')),
            // The GS1 General Specifications' examples (an EPC URI's parts).
            ("950600013430", Some('7')),
            ("1061414107346", Some('4')),
            ("", Some('0')),
            ("09520a", None),
            ("０９", None),
        ];
        for (data, want) in cases {
            assert_eq!(gs1_check_char(data), *want, "{data:?}");
        }
    }

    #[test]
    fn percent_components() {
        let decodes: &[(&str, Result<&str, PercentError>)] = &[
            ("ABC1", Ok("ABC1")),
            ("SEED%2FLOT", Ok("SEED/LOT")),
            ("%e6%89%b9", Ok("批")),
            ("100%", Err(PercentError::BadEscape)),
            ("%G0", Err(PercentError::BadEscape)),
            ("%2", Err(PercentError::BadEscape)),
            ("%FF", Err(PercentError::NotUtf8)),
        ];
        for (component, want) in decodes {
            assert_eq!(percent_decode_component(component).as_deref().map_err(Clone::clone), *want, "{component:?}");
        }
        let encodes: &[(&str, &str)] =
            &[("ABC-1.x_y~z", "ABC-1.x_y~z"), ("SEED/LOT", "SEED%2FLOT"), ("a b%", "a%20b%25"), ("批", "%E6%89%B9")];
        for (value, want) in encodes {
            assert_eq!(percent_encode(value), *want, "{value:?}");
            assert_eq!(percent_decode_component(want).as_deref(), Ok(*value), "{want:?} decodes back");
        }
        // The Digital Link's own refusals keep naming it.
        assert_eq!(
            percent_decode("%G0"),
            Err(syntax(DIGITAL_LINK, "in \"%G0\", a '%' must be followed by two hexadecimal digits"))
        );
    }

    // -----------------------------------------------------------------------
    // Test vectors (testdata/)
    // -----------------------------------------------------------------------

    /// Describes a product code in the words the vector file uses.
    fn describe(code: &ProductCode) -> String {
        let mut out = format!("gtin {}", code.gtin);
        if let Some(lot) = &code.lot {
            out.push_str(&format!(" lot {lot}"));
        }
        if let Some(serial) = &code.serial {
            out.push_str(&format!(" serial {serial}"));
        }
        if let Some(expiry) = &code.expiry {
            out.push_str(&format!(" expiry {expiry}"));
        }
        out
    }

    /// Checks that a refusal is the one the vector's reason describes, and
    /// fails on a reason this test does not understand so that new vectors
    /// cannot pass unexamined.
    fn check_reason(kind: &str, value: &str, reason: &str, err: &IdError) {
        let matches = if reason.contains("check digit") || reason.contains("check character") {
            matches!(err, IdError::CheckDigit { .. })
                && (!reason.starts_with("gtin ") || matches!(err, IdError::CheckDigit { kind: "GTIN", .. }))
        } else if reason == "qualifiers out of order" {
            matches!(err, IdError::QualifierOrder { .. })
        } else if let Some(n) = reason.strip_prefix("length ") {
            let n: usize = n.parse().unwrap_or_else(|_| panic!("bad reason {reason:?}"));
            matches!(err, IdError::Length { found, .. } if *found == n)
        } else if reason == "non-digit" {
            matches!(err, IdError::BadChar { ch, .. } if !ch.is_ascii_digit())
        } else if let Some(letter) = reason.strip_prefix("character ").and_then(|r| r.strip_suffix(" not in alphabet"))
        {
            matches!(err, IdError::BadChar { ch, .. } if ch.to_string() == letter)
        } else if reason == "lot longer than 20 characters" {
            matches!(err, IdError::Length { kind: "lot", found, .. } if *found > 20)
        } else {
            panic!("vector {kind} {value:?}: no rule for reason {reason:?}");
        };
        assert!(matches, "vector {kind} {value:?}: refused with {err:?} ({err}), but the reason is {reason:?}");
    }

    #[test]
    fn identifier_vectors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/identifiers.tsv");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read the vectors at {path}: {e}"));
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("kind\tvalue\tvalid\treason"));
        let mut n_rows = 0;
        for line in lines.filter(|line| !line.trim().is_empty()) {
            let columns: Vec<&str> = line.split('\t').collect();
            let (kind, value, valid) = match columns[..] {
                [kind, value, valid, ..] => (kind, value, valid),
                _ => panic!("malformed vector line {line:?}"),
            };
            let reason = columns.get(3).copied().unwrap_or_default();
            let valid = match valid {
                "yes" => true,
                "no" => false,
                other => panic!("vector {value:?}: valid column is {other:?}"),
            };
            let parsed: Result<String, IdError> = match kind {
                "uscc" => Uscc::parse(value).map(|id| id.to_string()),
                "gtin" => Gtin::parse(value).map(|id| id.to_string()),
                "gln" => Gln::parse(value).map(|id| id.to_string()),
                "digital_link" => {
                    let parsed = ProductCode::parse_digital_link(value);
                    assert_eq!(parsed, ProductCode::parse(value), "{value:?}");
                    parsed.map(|code| describe(&code))
                }
                "element_string" => {
                    let parsed = ProductCode::parse_element_string(value);
                    assert_eq!(parsed, ProductCode::parse(value), "{value:?}");
                    parsed.map(|code| describe(&code))
                }
                other => panic!("vector {value:?}: unknown kind {other:?}"),
            };
            match (valid, parsed) {
                (true, Ok(shown)) => match kind {
                    "gtin" => {
                        assert_eq!(shown.len(), 14, "{value:?}");
                        assert!(shown.ends_with(value), "{value:?} became {shown:?}");
                        assert!(shown.trim_end_matches(value).chars().all(|c| c == '0'));
                    }
                    "uscc" | "gln" => assert_eq!(shown, value),
                    _ if reason.starts_with("gtin ") => assert_eq!(shown, reason, "{value:?}"),
                    _ => {}
                },
                (true, Err(err)) => panic!("vector {kind} {value:?} is valid but refused: {err}"),
                (false, Ok(shown)) => {
                    panic!("vector {kind} {value:?} is invalid ({reason}) but parsed as {shown:?}")
                }
                (false, Err(err)) => check_reason(kind, value, reason, &err),
            }
            n_rows += 1;
        }
        // Guards against a truncated file or a filter that skips rows.
        assert!(n_rows >= 26, "only {n_rows} vectors were read from {path}");
    }

    // -----------------------------------------------------------------------
    // Tables of our own cases
    // -----------------------------------------------------------------------

    /// Shows a parse result as `ok <display>` or `error: <message>`, so a
    /// table states both what is accepted and exactly what a user is told.
    fn check<T: fmt::Display>(parse: fn(&str) -> Result<T, IdError>, input: &str, expect: &str) {
        let shown = match parse(input) {
            Ok(value) => format!("ok {value}"),
            Err(err) => format!("error: {err}"),
        };
        assert_eq!(shown, expect, "input {input:?}");
    }

    #[test]
    fn uscc_cases() {
        let cases = [
            ("9144030071526726XG", "ok 9144030071526726XG"),
            // Lower case is accepted and stored upper case.
            ("9144030071526726xg", "ok 9144030071526726XG"),
            ("91310000ma1k2q7a5l", "ok 91310000MA1K2Q7A5L"),
            ("91310000MA1K2Q7A5M", "error: USCC check character is M, expected L"),
            (
                "9133010070I2187B2H",
                "error: USCC character 11 is 'I', which is not allowed (allowed: digits and upper-case letters except I, O, S, V and Z)",
            ),
            (
                "9133010070i2187B2H",
                "error: USCC character 11 is 'i', which is not allowed (allowed: digits and upper-case letters except I, O, S, V and Z)",
            ),
            ("", "error: USCC must be 18 characters long, found 0"),
            ("9144030071526726XG ", "error: USCC must be 18 characters long, found 19"),
            // Non-ASCII input is counted in characters, not bytes.
            (
                "9144030071526726X统",
                "error: USCC character 18 is '统', which is not allowed (allowed: digits and upper-case letters except I, O, S, V and Z)",
            ),
            // The main check passes but the organisation code check does not:
            // characters 9 to 17 were changed and the 18th recomputed.
            (
                "91440300715267260N",
                "error: USCC organisation code (characters 9 to 17) check character is 0, expected X",
            ),
        ];
        for (input, expect) in cases {
            check(Uscc::parse, input, expect);
        }
    }

    #[test]
    fn gtin_cases() {
        let cases = [
            ("09520123456788", "ok 09520123456788"),
            // GTIN-13, GTIN-12 and GTIN-8 are left-padded to 14 digits.
            ("9520123456788", "ok 09520123456788"),
            ("036000291452", "ok 00036000291452"),
            ("96385074", "ok 00000096385074"),
            ("10614141000019", "ok 10614141000019"),
            ("09520123456789", "error: GTIN check digit is 9, expected 8"),
            ("9638507", "error: GTIN must be 8, 12, 13 or 14 digits long, found 7"),
            ("095201234567880", "error: GTIN must be 8, 12, 13 or 14 digits long, found 15"),
            ("", "error: GTIN must be 8, 12, 13 or 14 digits long, found 0"),
            ("0952012345678X", "error: GTIN character 14 is 'X', which is not allowed (allowed: digits 0-9)"),
            ("095201234567８8", "error: GTIN character 13 is '８', which is not allowed (allowed: digits 0-9)"),
            (" 9520123456788", "error: GTIN character 1 is ' ', which is not allowed (allowed: digits 0-9)"),
        ];
        for (input, expect) in cases {
            check(Gtin::parse, input, expect);
        }
    }

    #[test]
    fn gtin_accessors() {
        let gtin = Gtin::parse("9520123456788").expect("valid GTIN-13");
        assert_eq!(gtin.digits(), [0, 9, 5, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8]);
        assert!(gtin.has_prefix("0952"));
        assert!(!gtin.has_prefix("9520123"));
        assert!(gtin.has_company_prefix("9520123"));
        assert!(!gtin.has_company_prefix("09520123"));
        assert_eq!(format!("{gtin:?}"), "Gtin(\"09520123456788\")");
        assert_eq!("96385074".parse::<Gtin>(), Gtin::parse("00000096385074"));
    }

    #[test]
    fn gln_cases() {
        let cases = [
            ("0614141000012", "ok 0614141000012"),
            ("0614141000013", "error: GLN check digit is 3, expected 2"),
            ("614141000012", "error: GLN must be 13 digits long, found 12"),
            ("06141410000-2", "error: GLN character 12 is '-', which is not allowed (allowed: digits 0-9)"),
        ];
        for (input, expect) in cases {
            check(Gln::parse, input, expect);
        }
    }

    #[test]
    fn lot_and_serial_cases() {
        let cases = [
            ("ABC1", "ok ABC1"),
            ("a-b/c%(d)_?", "ok a-b/c%(d)_?"),
            ("ABCDEFGHIJKLMNOPQRST", "ok ABCDEFGHIJKLMNOPQRST"),
            ("ABCDEFGHIJKLMNOPQRSTU", "error: lot must be 1 to 20 characters long, found 21"),
            ("", "error: lot must be 1 to 20 characters long, found 0"),
            (
                "AB C",
                "error: lot character 3 is ' ', which is not allowed (allowed: letters, digits and !\"%&'()*+,-./:;<=>?_ (GS1 character set 82))",
            ),
            (
                "AB#",
                "error: lot character 3 is '#', which is not allowed (allowed: letters, digits and !\"%&'()*+,-./:;<=>?_ (GS1 character set 82))",
            ),
            (
                "批号",
                "error: lot character 1 is '批', which is not allowed (allowed: letters, digits and !\"%&'()*+,-./:;<=>?_ (GS1 character set 82))",
            ),
        ];
        for (input, expect) in cases {
            check(Lot::parse, input, expect);
        }
        check(Serial::parse, "12345", "ok 12345");
        check(Serial::parse, "123456789012345678901", "error: serial must be 1 to 20 characters long, found 21");
        assert_eq!(CSET82.chars().count(), 82);
        // The lookup table agrees with the character set, ASCII and beyond.
        for ch in ('\0'..='\u{2ff}').chain(['批', '\u{ff01}']) {
            assert_eq!(in_cset82(ch), CSET82.contains(ch), "{ch:?}");
        }
    }

    #[test]
    fn date_cases() {
        let cases = [
            ("2024-02-29", "ok 2024-02-29"),
            ("2000-02-29", "ok 2000-02-29"),
            ("2023-02-29", "error: date \"2023-02-29\" does not exist: February 2023 has 28 days"),
            ("1900-02-29", "error: date \"1900-02-29\" does not exist: February 1900 has 28 days"),
            ("2024-04-31", "error: date \"2024-04-31\" does not exist: April 2024 has 30 days"),
            ("2024-13-01", "error: date \"2024-13-01\" does not exist: there is no month 13"),
            ("2024-00-01", "error: date \"2024-00-01\" does not exist: there is no month 0"),
            ("2024-01-00", "error: date \"2024-01-00\" does not exist: there is no day 0"),
            ("0000-01-01", "error: date \"0000-01-01\" does not exist: year 0 is outside 1 to 9999"),
            (
                "2024/01/01",
                "error: date character 5 is '/', which is not allowed (allowed: digits in the form YYYY-MM-DD)",
            ),
            ("2024-1-01", "error: date must be 10 characters (YYYY-MM-DD) long, found 9"),
        ];
        for (input, expect) in cases {
            check(Date::parse_iso, input, expect);
        }

        let yymmdd_cases = [
            ("180426", "ok 2018-04-26"),
            ("991231", "ok 2099-12-31"),
            // DD = 00 means the last day of the month.
            ("240200", "ok 2024-02-29"),
            ("230200", "ok 2023-02-28"),
            ("230229", "error: GS1 date (YYMMDD) \"230229\" does not exist: February 2023 has 28 days"),
            ("231301", "error: GS1 date (YYMMDD) \"231301\" does not exist: there is no month 13"),
            ("2304", "error: GS1 date (YYMMDD) must be 6 digits (YYMMDD) long, found 4"),
        ];
        for (input, expect) in yymmdd_cases {
            check(Date::from_yymmdd, input, expect);
        }

        let new_year_eve = Date::new(2023, 12, 31).expect("valid date");
        let new_year = Date::new(2024, 1, 1).expect("valid date");
        assert!(new_year_eve < new_year);
        assert!(Date::new(2024, 2, 1).expect("valid date") < Date::new(2024, 10, 1).expect("valid date"));
        assert_eq!(
            Date::new(2023, 2, 29).map_err(|e| e.to_string()),
            Err("date \"2023-02-29\" does not exist: February 2023 has 28 days".to_owned())
        );
        assert_eq!(Date::new(1999, 1, 1).map(|d| d.to_yymmdd()), Ok(None));
        assert_eq!(Date::new(2018, 4, 26).map(|d| d.to_yymmdd()), Ok(Some("180426".to_owned())));
    }

    /// Shows a product code result in the vector file's words.
    fn product(input: &str) -> Result<Described, IdError> {
        ProductCode::parse(input).map(|code| Described(describe(&code)))
    }

    struct Described(String);

    impl fmt::Display for Described {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    #[test]
    fn product_code_cases() {
        let cases = [
            // Digital Link.
            (
                "https://id.gs1.org/01/09520123456788/10/ABC1/21/12345?17=180426",
                "ok gtin 09520123456788 lot ABC1 serial 12345 expiry 2018-04-26",
            ),
            ("https://id.gs1.org/01/9520123456788", "ok gtin 09520123456788"),
            ("http://example.org/01/96385074/21/A1", "ok gtin 00000096385074 serial A1"),
            ("HTTPS://EXAMPLE.ORG/01/09520123456788/10/abc", "ok gtin 09520123456788 lot abc"),
            ("https://example.org/01/09520123456788/10/AB%2FC%25%28", "ok gtin 09520123456788 lot AB/C%("),
            ("https://example.org/01/09520123456788/10/LOT-7/", "ok gtin 09520123456788 lot LOT-7"),
            (
                "https://example.org/some/prefix/01/09520123456788/22/V1/10/L1/21/S1",
                "ok gtin 09520123456788 lot L1 serial S1",
            ),
            // A path prefix may itself contain a segment "01".
            ("https://example.org/01/x/01/09520123456788/10/01", "ok gtin 09520123456788 lot 01"),
            (
                "https://example.org/01/09520123456788?foo=bar&17=240200&linkType=all#top",
                "ok gtin 09520123456788 expiry 2024-02-29",
            ),
            (
                "https://example.org/01/09520123456788?11=%zz&x=%",
                "error: Digital Link is malformed: in \"%zz\", a '%' must be followed by two hexadecimal digits",
            ),
            (
                "https://example.org/01/09520123456788/21/12345/10/ABC1",
                "error: qualifiers out of order: 21 before 10 (a GS1 Digital Link lists 22, then 10, then 21)",
            ),
            (
                "https://example.org/01/09520123456788/10/A/22/V",
                "error: qualifiers out of order: 10 before 22 (a GS1 Digital Link lists 22, then 10, then 21)",
            ),
            (
                "https://example.org/01/09520123456788/10/A/10/B",
                "error: AI 10 appears more than once in the Digital Link",
            ),
            ("https://example.org/01/09520123456788/10//21/5", "error: lot must be 1 to 20 characters long, found 0"),
            (
                "https://example.org/01/09520123456788/21/123456789012345678901",
                "error: serial must be 1 to 20 characters long, found 21",
            ),
            (
                "https://example.org/01/09520123456788/10/A%20B",
                "error: lot character 2 is ' ', which is not allowed (allowed: letters, digits and !\"%&'()*+,-./:;<=>?_ (GS1 character set 82))",
            ),
            (
                "https://example.org/01/09520123456788/10/A%2",
                "error: Digital Link is malformed: in \"A%2\", a '%' must be followed by two hexadecimal digits",
            ),
            (
                "https://example.org/01/09520123456788/10/%FF",
                "error: Digital Link is malformed: \"%FF\" does not decode to UTF-8 text",
            ),
            ("https://example.org/01/09520123456788/10", "error: Digital Link is malformed: qualifier 10 has no value"),
            (
                "https://example.org/01/09520123456788/99/x",
                "error: Digital Link is malformed: path segment \"99\" after the GTIN is not a qualifier (only 22, 10 and 21 may follow AI 01)",
            ),
            (
                "https://example.org/01/09520123456788?17=230229",
                "error: expiry date (AI 17) \"230229\" does not exist: February 2023 has 28 days",
            ),
            (
                "https://example.org/01/09520123456788?17=180426&17=180427",
                "error: AI 17 appears more than once in the Digital Link",
            ),
            (
                "https://example.org/01/09520123456788?10=ABC",
                "error: Digital Link is malformed: AI 10 belongs in the path, not in the query",
            ),
            ("https://example.org/01/09520123456789/10/ABC1", "error: GTIN check digit is 9, expected 8"),
            ("https://example.org/10/ABC1", "error: product code has no GTIN (AI 01)"),
            ("https://example.org", "error: product code has no GTIN (AI 01)"),
            ("https:///01/09520123456788", "error: Digital Link is malformed: it has no host name"),
            ("https://example.org/01", "error: Digital Link is malformed: AI 01 has no GTIN after it"),
            (
                "ftp://example.org/01/09520123456788",
                "error: product code is malformed: a GS1 Digital Link must start with https:// or http://",
            ),
            // Element strings.
            (
                "(01)09520123456788(17)180426(10)ABC1(21)12345",
                "ok gtin 09520123456788 lot ABC1 serial 12345 expiry 2018-04-26",
            ),
            ("(01)09520123456788(21)12345(10)ABC1(11)180101", "ok gtin 09520123456788 lot ABC1 serial 12345"),
            ("(01)09520123456788(10)A\\(B)", "ok gtin 09520123456788 lot A(B)"),
            ("(01)09520123456788(15)181231(10)ABC", "ok gtin 09520123456788 lot ABC"),
            (
                "(10)ABC(01)09520123456788",
                "error: element string is malformed: AI (01) must come first, but (10) comes before it",
            ),
            ("(10)ABC", "error: product code has no GTIN (AI 01)"),
            ("(01)9520123456788", "error: GTIN in AI (01) must be 14 digits long, found 13"),
            ("(01)09520123456788(10)ABC(10)DEF", "error: AI 10 appears more than once in the element string"),
            ("(01)09520123456788(10)A(B", "error: element string is malformed: an AI is missing its closing ')'"),
            (
                "(01)09520123456788(10)A(B)C",
                "error: element string is malformed: (B) is not an AI; an AI is 2 to 4 digits in brackets (a '(' inside a value must be written \\()",
            ),
            (
                "(01)09520123456788(11)181332",
                "error: production date (AI 11) \"181332\" does not exist: there is no month 13",
            ),
            ("(01)09520123456788(17)1804", "error: expiry date (AI 17) must be 6 digits (YYMMDD) long, found 4"),
            ("(01)09520123456788(10)", "error: lot must be 1 to 20 characters long, found 0"),
            ("(01)09520123456788 (10)A", "error: GTIN in AI (01) must be 14 digits long, found 15"),
            // Bare GTINs.
            ("9520123456788", "ok gtin 09520123456788"),
            ("abc", "error: GTIN must be 8, 12, 13 or 14 digits long, found 3"),
        ];
        for (input, expect) in cases {
            check(product, input, expect);
        }
    }

    #[test]
    fn product_code_output() {
        let code = ProductCode {
            gtin: Gtin::parse("9520123456788").expect("valid GTIN"),
            lot: Some(Lot::parse("AB/C(1)").expect("valid lot")),
            serial: Some(Serial::parse("12345").expect("valid serial")),
            expiry: Some(Date::new(2018, 4, 26).expect("valid date")),
        };
        let link = code.to_digital_link("https://id.gs1.org/");
        assert_eq!(link, "https://id.gs1.org/01/09520123456788/10/AB%2FC%281%29/21/12345?17=180426");
        assert_eq!(code.to_digital_link("https://id.gs1.org"), link);
        let element = code.to_element_string();
        assert_eq!(element, "(01)09520123456788(17)180426(10)AB/C\\(1)(21)12345");
        assert_eq!(code.to_string(), element);
        assert_eq!(ProductCode::parse(&link), Ok(code.clone()));
        assert_eq!(ProductCode::parse(&element), Ok(code.clone()));
        assert_eq!(element.parse::<ProductCode>(), Ok(code.clone()));

        // An expiry that YYMMDD cannot hold is written so that it fails to
        // parse instead of naming a different day.
        let old = ProductCode { expiry: Some(Date::new(1999, 12, 31).expect("valid date")), ..code };
        assert!(old.to_digital_link("https://id.gs1.org").ends_with("?17=1999-12-31"));
        assert!(ProductCode::parse(&old.to_element_string()).is_err());
    }

    // -----------------------------------------------------------------------
    // Properties
    // -----------------------------------------------------------------------

    fn with_gs1_check(data: &str) -> String {
        let digits: Vec<u8> = data.bytes().map(|b| b - b'0').collect();
        format!("{data}{}", gs1_check_digit(&digits))
    }

    fn with_uscc_checks(first8: &[u8], org_body: &[u8]) -> String {
        let org_sum: u32 = org_body.iter().zip(ORG_CODE_WEIGHTS).map(|(&c, w)| gb11714_value(c) * w).sum();
        let org_check = match 11 - org_sum % 11 {
            10 => b'X',
            11 => b'0',
            d => b'0' + d as u8,
        };
        let mut data: Vec<u8> = first8.iter().chain(org_body).copied().collect();
        data.push(org_check);
        let sum: u32 = data
            .iter()
            .zip(USCC_WEIGHTS)
            .map(|(&c, w)| USCC_ALPHABET.iter().position(|&a| a == c).expect("alphabet character") as u32 * w)
            .sum();
        data.push(USCC_ALPHABET[((31 - sum % 31) % 31) as usize]);
        String::from_utf8(data).expect("ASCII")
    }

    fn uscc_chars(n: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::sample::select(USCC_ALPHABET.to_vec()), n)
    }

    fn cset82_value() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(CSET82.chars().collect::<Vec<_>>()), 1..=20)
            .prop_map(|chars| chars.into_iter().collect())
    }

    fn gs1_date() -> impl Strategy<Value = Date> {
        (2000u16..=2099, 1u8..=12, 1u8..=31).prop_filter_map("day exists", |(y, m, d)| Date::new(y, m, d).ok())
    }

    fn product_code() -> impl Strategy<Value = ProductCode> {
        (
            "[0-9]{13}",
            proptest::option::of(cset82_value()),
            proptest::option::of(cset82_value()),
            proptest::option::of(gs1_date()),
        )
            .prop_map(|(data, lot, serial, expiry)| ProductCode {
                gtin: Gtin::parse(&with_gs1_check(&data)).expect("generated GTIN"),
                lot: lot.map(|l| Lot::parse(&l).expect("generated lot")),
                serial: serial.map(|s| Serial::parse(&s).expect("generated serial")),
                expiry,
            })
    }

    /// Text that looks like our identifiers, so that the parsers' deeper
    /// branches are reached far more often than with arbitrary strings.
    fn near_miss() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "(https?://[a-z.]{0,6})?(/(01|10|21|22|[0-9]{0,14}|%[0-9A-Fa-f]{0,2}|[ -~]{0,4}|统)){0,8}(\\?([0-9]{2}=[0-9%]{0,7}&?){0,3})?(#.*)?",
            "(\\((01|10|11|17|21|22|[0-9]{0,5}|x)\\)([0-9]{0,14}|[ -~]{0,8}|\\\\\\(|统)){0,5}",
            "[0-9A-Za-z%()\\\\-]{0,20}",
        ]
    }

    /// A valid product code in either printed form with one character
    /// deleted, inserted or replaced (or none), so that the parsers meet
    /// inputs that fail late, deep inside their rules.
    fn mutated_code() -> impl Strategy<Value = String> {
        let inserted = prop_oneof![
            Just('/'),
            Just('('),
            Just(')'),
            Just('%'),
            Just('?'),
            Just('&'),
            Just('='),
            Just('\\'),
            Just('0'),
            Just('1'),
            any::<char>(),
        ];
        (product_code(), any::<bool>(), 0usize..4, any::<proptest::sample::Index>(), inserted).prop_map(
            |(code, as_link, edit, at, ch)| {
                let text = if as_link { code.to_digital_link("https://id.gs1.org") } else { code.to_element_string() };
                let mut chars: Vec<char> = text.chars().collect();
                let idx = at.index(chars.len());
                match edit {
                    0 => {}
                    1 => {
                        chars.remove(idx);
                    }
                    2 => chars.insert(idx, ch),
                    _ => chars[idx] = ch,
                }
                chars.into_iter().collect()
            },
        )
    }

    proptest! {
        /// Lots and serials held inline keep their text, and order (so
        /// sorted lists and map keys) as their text does.
        #[test]
        fn lots_and_serials_keep_text_and_order(a in cset82_value(), b in cset82_value()) {
            let (lot_a, lot_b) = (Lot::parse(&a).expect("generated lot"), Lot::parse(&b).expect("generated lot"));
            prop_assert_eq!(lot_a.as_str(), a.as_str());
            prop_assert_eq!(lot_a.cmp(&lot_b), a.cmp(&b));
            prop_assert_eq!(lot_a == lot_b, a == b);
            let serial = Serial::parse(&b).expect("generated serial");
            prop_assert_eq!(serial.as_str(), b.as_str());
            prop_assert_eq!(format!("{lot_a:?}"), format!("Lot({a:?})"));
        }

        #[test]
        fn no_parser_panics(input in prop_oneof![near_miss(), mutated_code()]) {
            let _ = Uscc::parse(&input);
            let _ = Gtin::parse(&input);
            let _ = Gln::parse(&input);
            let _ = Lot::parse(&input);
            let _ = Serial::parse(&input);
            let _ = Date::parse_iso(&input);
            let _ = Date::from_yymmdd(&input);
            let _ = ProductCode::parse_digital_link(&input);
            let _ = ProductCode::parse_element_string(&input);
            // Whatever parses must write out and parse back to the same value.
            if let Ok(code) = ProductCode::parse(&input) {
                prop_assert_eq!(ProductCode::parse(&code.to_element_string()), Ok(code.clone()));
                prop_assert_eq!(ProductCode::parse(&code.to_digital_link("https://id.gs1.org")), Ok(code));
            }
        }

        #[test]
        fn gtins_round_trip(data in "[0-9]{13}") {
            let text = with_gs1_check(&data);
            let gtin = Gtin::parse(&text).expect("generated GTIN");
            prop_assert_eq!(gtin.as_str(), text.as_str());
            // The shorter forms pad to the same 14 digits.
            if let Some(short) = text.strip_prefix('0') {
                prop_assert_eq!(Gtin::parse(short), Ok(gtin.clone()));
            }
            prop_assert_eq!(gtin.to_string().parse::<Gtin>(), Ok(gtin));
        }

        #[test]
        fn gtin_single_digit_errors_are_caught(data in "[0-9]{13}", idx in 0usize..14, delta in 1u8..10) {
            let mut bytes = with_gs1_check(&data).into_bytes();
            bytes[idx] = b'0' + (bytes[idx] - b'0' + delta) % 10;
            let corrupted = String::from_utf8(bytes).expect("ASCII");
            let is_check_digit_error = matches!(Gtin::parse(&corrupted), Err(IdError::CheckDigit { .. }));
            prop_assert!(is_check_digit_error);
        }

        #[test]
        fn glns_round_trip(data in "[0-9]{12}") {
            let text = with_gs1_check(&data);
            let gln = Gln::parse(&text).expect("generated GLN");
            prop_assert_eq!(gln.as_str(), text.as_str());
            prop_assert_eq!(gln.to_string().parse::<Gln>(), Ok(gln));
        }

        #[test]
        fn usccs_round_trip(first8 in uscc_chars(8), org_body in uscc_chars(8)) {
            let text = with_uscc_checks(&first8, &org_body);
            let uscc = Uscc::parse(&text).expect("generated USCC");
            prop_assert_eq!(uscc.as_str(), text.as_str());
            prop_assert_eq!(Uscc::parse(&text.to_ascii_lowercase()), Ok(uscc.clone()));
            prop_assert_eq!(uscc.to_string().parse::<Uscc>(), Ok(uscc));
        }

        #[test]
        fn dates_round_trip(date in gs1_date()) {
            prop_assert_eq!(Date::parse_iso(&date.to_string()), Ok(date));
            let yymmdd = date.to_yymmdd().expect("year 2000 to 2099");
            prop_assert_eq!(Date::from_yymmdd(&yymmdd), Ok(date));
        }

        #[test]
        fn digital_link_and_element_string_agree(
            code in product_code(),
            base in prop_oneof![
                Just("https://id.gs1.org"),
                Just("https://example.org/"),
                Just("http://example.org/01/prefix/01"),
            ],
        ) {
            let link = code.to_digital_link(base);
            let element = code.to_element_string();
            prop_assert_eq!(ProductCode::parse(&link), Ok(code.clone()));
            prop_assert_eq!(ProductCode::parse(&element), Ok(code));
        }
    }

    #[test]
    fn days_since_epoch_round_trip() {
        let cases = [(0, "1970-01-01"), (-1, "1969-12-31"), (19_782, "2024-02-29"), (20_413, "2025-11-21")];
        for (days, text) in cases {
            let date = Date::from_days_since_epoch(days);
            assert_eq!(date.to_string(), text, "{days}");
            assert_eq!(date.days_since_epoch(), days, "{text}");
        }
        for days in (-800_000..3_000_000).step_by(997) {
            let clamped = days.clamp(-719_162, 2_932_896);
            assert_eq!(Date::from_days_since_epoch(days).days_since_epoch(), clamped);
        }
    }
}
