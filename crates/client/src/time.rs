//! Event times: a strict RFC 3339 parser, zone offsets, and the two text
//! forms the client prints (an event time at its own offset, and a node's
//! logging time in UTC).
//!
//! Hand-written rather than taken from a date-time crate because the ledger
//! needs only this one format, and a ~60-line parser over [`Date`] is easier
//! to audit than a dependency. It is strict on purpose: an event time is
//! signed, so "2026-11-21 10:00" silently read in the machine's local zone
//! would sign a claim the user did not make.

use crate::ids::Date;
use crate::pb;

/// The zone offset used when none is given: China Standard Time, UTC+08:00.
pub const DEFAULT_OFFSET: &str = "+08:00";

/// The largest zone offset in use anywhere, ±14:00, in minutes; the ledger
/// refuses event times with a larger one.
pub const MAX_OFFSET_MINUTES: i32 = 14 * 60;

const MILLIS_PER_DAY: i64 = 86_400_000;

/// Why a time or zone offset was refused; the message names the part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an RFC 3339 time such as 2026-11-21T10:00:00+08:00: {detail}")]
pub struct TimeError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub detail: String,
}

/// Why a zone offset was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a zone offset such as +08:00, -05:30 or Z: {detail}")]
pub struct OffsetError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub detail: String,
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into an event time.
///
/// `T` and `Z` may be lower case, as RFC 3339 allows; a space instead of `T`,
/// a missing offset and leap seconds (`:60`) are refused. Fractions finer
/// than a millisecond are truncated, because the ledger counts milliseconds.
pub fn parse_rfc3339(input: &str) -> Result<pb::EventTime, TimeError> {
    let fail = |detail: String| TimeError { input: input.to_owned(), detail };
    if let Some((position, ch)) = (1..).zip(input.chars()).find(|(_, c)| !c.is_ascii()) {
        return Err(fail(format!("character {position} is {ch:?}; only ASCII is allowed")));
    }
    let bytes = input.as_bytes();
    // The input is ASCII, so every byte index is a character boundary.
    let Some(date_text) = input.get(..10) else {
        return Err(fail("it is too short; write date, 'T', time and offset".to_owned()));
    };
    let date = Date::parse_iso(date_text).map_err(|e| fail(e.to_string()))?;
    match bytes.get(10) {
        Some(b'T' | b't') => {}
        Some(&other) => {
            return Err(fail(format!("character 11 is {:?}; date and time are separated by 'T'", char::from(other))));
        }
        None => return Err(fail("the time of day is missing; write e.g. 2026-11-21T10:00:00+08:00".to_owned())),
    }
    let hour = two_digits(bytes, 11, "hour").map_err(&fail)?;
    let minute = colon_then_two_digits(bytes, 13, "minute").map_err(&fail)?;
    let second = colon_then_two_digits(bytes, 16, "second").map_err(&fail)?;
    if hour > 23 || minute > 59 {
        return Err(fail(format!("{hour:02}:{minute:02} is not a time of day")));
    }
    if second > 59 {
        return Err(fail(format!("second {second} does not exist (leap seconds are not supported)")));
    }
    let mut rest = bytes.get(19..).unwrap_or_default();
    let mut millis = 0i64;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n_digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if n_digits == 0 {
            return Err(fail("a '.' must be followed by the digits of a fraction of a second".to_owned()));
        }
        // Only milliseconds are kept: pad or truncate the fraction to 3 digits.
        let kept = n_digits.min(3);
        millis =
            fraction.iter().take(kept).fold(0, |acc, b| acc * 10 + i64::from(b - b'0')) * 10i64.pow(3 - kept as u32);
        rest = &fraction[n_digits..];
    }
    let offset_text = std::str::from_utf8(rest).unwrap_or_default();
    let offset_minutes = parse_offset(offset_text).map_err(|e| fail(format!("zone offset: {}", e.detail)))?;
    let seconds_of_day = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    let local_millis = date.days_since_epoch() * MILLIS_PER_DAY + seconds_of_day * 1000 + millis;
    Ok(pb::EventTime { unix_millis: local_millis - i64::from(offset_minutes) * 60_000, offset_minutes })
}

/// Parses a zone offset `±HH:MM` or `Z` into minutes east of UTC, refusing
/// offsets beyond ±14:00. `-00:00` ("local offset unknown" in RFC 3339) is
/// read as UTC.
pub fn parse_offset(input: &str) -> Result<i32, OffsetError> {
    let fail = |detail: &str| OffsetError { input: input.to_owned(), detail: detail.to_owned() };
    if input.eq_ignore_ascii_case("z") {
        return Ok(0);
    }
    let bytes = input.as_bytes();
    let sign = match bytes.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        Some(_) => return Err(fail("it must start with '+' or '-', or be 'Z'")),
        None => return Err(fail("it is missing; add Z or ±HH:MM")),
    };
    if bytes.len() != 6 {
        return Err(fail("write it as ±HH:MM"));
    }
    let hours = two_digits(bytes, 1, "offset hours").map_err(|d| fail(&d))?;
    let minutes = colon_then_two_digits(bytes, 3, "offset minutes").map_err(|d| fail(&d))?;
    if minutes > 59 {
        return Err(fail("the minutes must be 00 to 59"));
    }
    let total = i32::from(hours) * 60 + i32::from(minutes);
    if total > MAX_OFFSET_MINUTES {
        return Err(fail("offsets range from -14:00 to +14:00"));
    }
    Ok(sign * total)
}

fn two_digits(bytes: &[u8], at: usize, what: &str) -> Result<u8, String> {
    match (bytes.get(at), bytes.get(at + 1)) {
        (Some(a), Some(b)) if a.is_ascii_digit() && b.is_ascii_digit() => Ok((a - b'0') * 10 + (b - b'0')),
        _ => Err(format!("the {what} must be two digits at character {}", at + 1)),
    }
}

fn colon_then_two_digits(bytes: &[u8], at: usize, what: &str) -> Result<u8, String> {
    if bytes.get(at) != Some(&b':') {
        return Err(format!("character {} must be ':' before the {what}", at + 1));
    }
    two_digits(bytes, at + 1, what)
}

/// The current time as milliseconds since the Unix epoch (0 if the clock is
/// before 1970, which the ledger then refuses with a clear message).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// Writes an event time at its own offset, e.g. `2026-11-21T10:00:00+08:00`
/// (milliseconds only when there are any), which [`parse_rfc3339`] reads
/// back to the same value.
pub fn format_event_time(time: &pb::EventTime) -> String {
    let offset = i64::from(time.offset_minutes);
    let local = time.unix_millis.saturating_add(offset * 60_000);
    let mut text = format_local_millis(local);
    if offset == 0 {
        text.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        text.push_str(&format!("{sign}{:02}:{:02}", offset.abs() / 60, offset.abs() % 60));
    }
    text
}

fn format_local_millis(millis: i64) -> String {
    let date = Date::from_days_since_epoch(millis.div_euclid(MILLIS_PER_DAY));
    let in_day = millis.rem_euclid(MILLIS_PER_DAY);
    let (seconds, ms) = (in_day / 1000, in_day % 1000);
    let mut text = format!("{date}T{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60);
    if ms != 0 {
        text.push_str(&format!(".{ms:03}"));
    }
    text
}

/// Writes a node's logging time (microseconds since the epoch) in UTC with
/// all six fraction digits, e.g. `2026-11-21T02:00:00.123456Z`.
pub fn format_micros_utc(micros: i64) -> String {
    let date = Date::from_days_since_epoch(micros.div_euclid(MILLIS_PER_DAY * 1000));
    let in_day = micros.rem_euclid(MILLIS_PER_DAY * 1000);
    let (seconds, us) = (in_day / 1_000_000, in_day % 1_000_000);
    format!("{date}T{:02}:{:02}:{:02}.{us:06}Z", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// The calendar date at the event's own offset: the day the signer would
/// write on paper, used as the default for "issued on" and "listed on".
pub fn local_date(time: &pb::EventTime) -> Date {
    let event = pb::Event { event_time: Some(*time), ..Default::default() };
    // `event_date` only fails on arithmetic overflow of absurd times; the
    // UTC day is a fine answer for those.
    crate::registry::event_date(&event)
        .unwrap_or_else(|| Date::from_days_since_epoch(time.unix_millis.div_euclid(MILLIS_PER_DAY)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str) {
        let got = match parse_rfc3339(input) {
            Ok(t) => format!("ok {} {}", t.unix_millis, t.offset_minutes),
            Err(e) => format!("error: {}", e.detail),
        };
        assert_eq!(got, expect, "{input}");
    }

    #[test]
    fn rfc3339_cases() {
        let cases = [
            ("1970-01-01T00:00:00Z", "ok 0 0"),
            ("1970-01-01T08:00:00+08:00", "ok 0 480"),
            ("2026-11-21T10:00:00+08:00", "ok 1795226400000 480"),
            ("2026-11-21T02:00:00Z", "ok 1795226400000 0"),
            ("2026-11-21t02:00:00z", "ok 1795226400000 0"),
            ("2026-11-20T21:00:00-05:00", "ok 1795226400000 -300"),
            ("2026-11-21T07:30:00+05:30", "ok 1795226400000 330"),
            ("2026-11-21T02:00:00-00:00", "ok 1795226400000 0"),
            ("2026-11-21T02:00:00.5Z", "ok 1795226400500 0"),
            ("2026-11-21T02:00:00.123Z", "ok 1795226400123 0"),
            ("2026-11-21T02:00:00.123999999Z", "ok 1795226400123 0"),
            ("2024-02-29T23:59:59+14:00", "ok 1709200799000 840"),
            ("1969-12-31T23:59:59.999Z", "ok -1 0"),
            ("2026-11-21 10:00:00+08:00", "error: character 11 is ' '; date and time are separated by 'T'"),
            ("2026-11-21T10:00:00", "error: zone offset: it is missing; add Z or ±HH:MM"),
            ("2026-11-21", "error: the time of day is missing; write e.g. 2026-11-21T10:00:00+08:00"),
            ("2026-11-21T10:00", "error: character 17 must be ':' before the second"),
            ("2026-11", "error: it is too short; write date, 'T', time and offset"),
            ("2026-11-21T10:00:00.000", "error: zone offset: it is missing; add Z or ±HH:MM"),
            ("2026-11-21T10:00:00+0800", "error: zone offset: write it as ±HH:MM"),
            ("2026-11-21T10:00:00+15:00", "error: zone offset: offsets range from -14:00 to +14:00"),
            ("2026-11-21T10:00:00+08:60", "error: zone offset: the minutes must be 00 to 59"),
            ("2026-11-21T10:00:00 08:00", "error: zone offset: it must start with '+' or '-', or be 'Z'"),
            ("2026-11-21T24:00:00+08:00", "error: 24:00 is not a time of day"),
            ("2026-11-21T10:60:00+08:00", "error: 10:60 is not a time of day"),
            ("2026-12-31T23:59:60Z", "error: second 60 does not exist (leap seconds are not supported)"),
            ("2026-11-21T1:00:00+08:00Z", "error: the hour must be two digits at character 12"),
            ("2026-11-21T10-00:00+08:00", "error: character 14 must be ':' before the minute"),
            ("2026-11-21T10:00:00.+08:00", "error: a '.' must be followed by the digits of a fraction of a second"),
            ("2023-02-29T10:00:00+08:00", "error: date \"2023-02-29\" does not exist: February 2023 has 28 days"),
            ("2026-11-21T10:00:00+08:00 ", "error: zone offset: write it as ±HH:MM"),
            ("２026-11-21T10:00:00+08:00", "error: character 1 is '２'; only ASCII is allowed"),
            ("", "error: it is too short; write date, 'T', time and offset"),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
    }

    #[test]
    fn offsets() {
        let cases = [
            ("+08:00", Ok(480)),
            ("-05:30", Ok(-330)),
            ("Z", Ok(0)),
            ("z", Ok(0)),
            ("+14:00", Ok(840)),
            ("-14:00", Ok(-840)),
            ("+14:01", Err("offsets range from -14:00 to +14:00")),
            ("08:00", Err("it must start with '+' or '-', or be 'Z'")),
            ("+8:00", Err("write it as ±HH:MM")),
            ("+08:0x", Err("the offset minutes must be two digits at character 5")),
        ];
        for (input, expect) in cases {
            assert_eq!(parse_offset(input).map_err(|e| e.detail), expect.map_err(str::to_owned), "{input}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        let cases = [
            ("2026-11-21T10:00:00+08:00", "2026-11-21T10:00:00+08:00"),
            ("2026-11-21T02:00:00.120Z", "2026-11-21T02:00:00.120Z"),
            ("2026-11-21T02:00:00+00:00", "2026-11-21T02:00:00Z"),
            ("2026-11-20T21:00:00.001-05:00", "2026-11-20T21:00:00.001-05:00"),
            ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z"),
        ];
        for (input, expect) in cases {
            let time = parse_rfc3339(input).expect("valid test input");
            let text = format_event_time(&time);
            assert_eq!(text, expect, "{input}");
            assert_eq!(parse_rfc3339(&text), Ok(time), "{input}");
        }
        assert_eq!(format_micros_utc(1_795_226_400_123_456), "2026-11-21T02:00:00.123456Z");
        assert_eq!(format_micros_utc(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn local_dates_follow_the_offset() {
        let cases = [
            ("2026-11-21T00:30:00+08:00", "2026-11-21"),
            ("2026-11-20T23:30:00-05:00", "2026-11-20"),
            ("2026-11-20T16:30:00Z", "2026-11-20"),
        ];
        for (input, expect) in cases {
            let time = parse_rfc3339(input).expect("valid test input");
            assert_eq!(local_date(&time).to_string(), expect, "{input}");
        }
    }
}
