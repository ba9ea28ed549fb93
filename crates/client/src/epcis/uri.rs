//! GS1 identifiers in EPC URIs and GS1 Digital Link URIs: products
//! (SGTIN, LGTIN, SGTIN patterns, AI 01), locations (SGLN, AI 414) and
//! parties (PGLN, SGLN, AI 417/414), read into the ledger's identifier
//! types and written back as Digital Links. The GS1 check digit and the
//! percent encoding are the ledger's ([`crate::ids`]).

use crate::ids::{PercentError, gs1_check_char, percent_decode_component, percent_encode};

use super::*;

fn malformed(uri: &str, detail: impl Into<String>) -> UriError {
    UriError::Malformed { uri: uri.to_owned(), detail: detail.into() }
}

/// Decodes the `%XX` escapes of one component of `uri` (EPC URIs escape `%`,
/// `/`, `"`, `#`, `&`, `?`, `<`, `>`, `\` and more in serials and lots), with
/// the ledger's decoder; a refusal names the URI.
pub(super) fn decode_component(uri: &str, component: &str) -> Result<String, UriError> {
    percent_decode_component(component).map_err(|e| match e {
        PercentError::BadEscape => malformed(uri, format!("in {component:?}, '%' must be followed by two hex digits")),
        PercentError::NotUtf8 => malformed(uri, format!("{component:?} does not decode to UTF-8 text")),
    })
}

/// The `CompanyPrefix.Reference` digits of an EPC URI, checked: all digits, a
/// company prefix of 6 to 12 digits, `total` digits in all.
fn epc_digits(uri: &str, company_prefix: &str, reference: &str, total: usize) -> Result<(), UriError> {
    if let Some(ch) = company_prefix.chars().chain(reference.chars()).find(|c| !c.is_ascii_digit()) {
        return Err(malformed(uri, format!("{ch:?} in the company prefix or reference is not a digit")));
    }
    if !(6..=12).contains(&company_prefix.len()) {
        return Err(malformed(
            uri,
            format!("the company prefix {company_prefix:?} must have 6 to 12 digits, it has {}", company_prefix.len()),
        ));
    }
    let found = company_prefix.len() + reference.len();
    if found != total {
        return Err(malformed(
            uri,
            format!("company prefix and reference must have {total} digits together, they have {found}"),
        ));
    }
    Ok(())
}

/// The GTIN of an SGTIN/LGTIN's `CompanyPrefix.IndicatorItemReference`: the
/// indicator digit first, then the company prefix and the item reference,
/// then the computed check digit.
fn gtin_of(uri: &str, company_prefix: &str, item_reference: &str) -> Result<Gtin, UriError> {
    epc_digits(uri, company_prefix, item_reference, 13)?;
    let (indicator, item) = item_reference.split_at(1.min(item_reference.len()));
    let data = format!("{indicator}{company_prefix}{item}");
    let check =
        gs1_check_char(&data).ok_or_else(|| malformed(uri, "the company prefix and reference are not all digits"))?;
    let full = format!("{data}{check}");
    Gtin::parse(&full).map_err(|source| UriError::Identifier { uri: uri.to_owned(), source })
}

/// The GLN of an SGLN/PGLN's `CompanyPrefix.Reference` (12 digits), with the
/// computed check digit.
fn gln_of(uri: &str, company_prefix: &str, reference: &str) -> Result<Gln, UriError> {
    epc_digits(uri, company_prefix, reference, 12)?;
    let data = format!("{company_prefix}{reference}");
    let check =
        gs1_check_char(&data).ok_or_else(|| malformed(uri, "the company prefix and reference are not all digits"))?;
    let full = format!("{data}{check}");
    Gln::parse(&full).map_err(|source| UriError::Identifier { uri: uri.to_owned(), source })
}

/// The three `.`-separated parts after `prefix` (the last may contain dots).
fn three_parts<'a>(uri: &'a str, prefix: &str) -> Option<Result<(&'a str, &'a str, &'a str), UriError>> {
    let rest = uri.strip_prefix(prefix)?;
    let mut parts = rest.splitn(3, '.');
    Some(match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
        _ => Err(malformed(uri, "expected CompanyPrefix.Reference.Value")),
    })
}

fn is_http(uri: &str) -> bool {
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

const PRODUCT: &str = "a product (an SGTIN, LGTIN, SGTIN pattern or GS1 Digital Link with AI 01)";
const LOCATION: &str = "a location (urn:epc:id:sgln: or a GS1 Digital Link with AI 414)";
const PARTY: &str = "a party (urn:epc:id:pgln:, urn:epc:id:sgln: or a GS1 Digital Link with AI 417 or 414)";

/// Reads an EPC or class identifier naming a product: SGTIN (GTIN + serial),
/// LGTIN (GTIN + lot), an SGTIN pattern `CP.ITEM.*` (the GTIN), or a GS1
/// Digital Link with AI 01.
pub fn parse_product(uri: &str) -> Result<ProductCode, UriError> {
    let id = |source| UriError::Identifier { uri: uri.to_owned(), source };
    if let Some(parts) = three_parts(uri, "urn:epc:id:sgtin:") {
        let (company_prefix, item, serial) = parts?;
        let gtin = gtin_of(uri, company_prefix, item)?;
        let serial = Serial::parse(&decode_component(uri, serial)?).map_err(id)?;
        return Ok(ProductCode { gtin, lot: None, serial: Some(serial), expiry: None });
    }
    if let Some(parts) = three_parts(uri, "urn:epc:class:lgtin:") {
        let (company_prefix, item, lot) = parts?;
        let gtin = gtin_of(uri, company_prefix, item)?;
        let lot = Lot::parse(&decode_component(uri, lot)?).map_err(id)?;
        return Ok(ProductCode { gtin, lot: Some(lot), serial: None, expiry: None });
    }
    if let Some(parts) = three_parts(uri, "urn:epc:idpat:sgtin:") {
        let (company_prefix, item, serial) = parts?;
        if item == "*" || serial != "*" {
            return Err(UriError::Unsupported {
                uri: uri.to_owned(),
                expected: "a pattern of one GTIN's items (urn:epc:idpat:sgtin:CompanyPrefix.ItemReference.*)",
            });
        }
        return Ok(ProductCode::from(gtin_of(uri, company_prefix, item)?));
    }
    if is_http(uri) {
        return ProductCode::parse_digital_link(uri).map_err(|e| match e {
            IdError::MissingGtin => UriError::Unsupported { uri: uri.to_owned(), expected: PRODUCT },
            other => id(other),
        });
    }
    Err(UriError::Unsupported { uri: uri.to_owned(), expected: PRODUCT })
}

/// The value after AI `ai` in a Digital Link path (searched from the right,
/// so a resolver prefix may contain the same digits), and the value after a
/// following AI 254 (a GLN extension), if any.
fn digital_link_key(uri: &str, ai: &str) -> Option<(String, Option<String>)> {
    let after_scheme = uri.split_once("://")?.1;
    let path = after_scheme.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').skip(1).filter(|s| !s.is_empty()).collect();
    let idx = segments.iter().rposition(|s| *s == ai)?;
    let value = segments.get(idx + 1)?;
    let extension = match (segments.get(idx + 2), segments.get(idx + 3)) {
        (Some(&"254"), Some(ext)) => Some((*ext).to_owned()),
        _ => None,
    };
    Some(((*value).to_owned(), extension))
}

/// A place named by a location identifier: its GLN, and the extension (a
/// sub-location) when there is one other than `0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub gln: Gln,
    pub extension: Option<String>,
}

/// Reads a location: `urn:epc:id:sgln:CompanyPrefix.LocationReference.Extension`
/// or a GS1 Digital Link `…/414/<GLN>[/254/<extension>]`.
pub fn parse_location(uri: &str) -> Result<Place, UriError> {
    let id = |source| UriError::Identifier { uri: uri.to_owned(), source };
    if let Some(parts) = three_parts(uri, "urn:epc:id:sgln:") {
        let (company_prefix, reference, extension) = parts?;
        let gln = gln_of(uri, company_prefix, reference)?;
        let extension = Some(decode_component(uri, extension)?).filter(|e| e != "0");
        return Ok(Place { gln, extension });
    }
    if is_http(uri)
        && let Some((value, extension)) = digital_link_key(uri, "414")
    {
        let gln = Gln::parse(&value).map_err(id)?;
        let extension = match extension {
            Some(ext) => Some(decode_component(uri, &ext)?),
            None => None,
        };
        return Ok(Place { gln, extension });
    }
    Err(UriError::Unsupported { uri: uri.to_owned(), expected: LOCATION })
}

/// Reads a party: `urn:epc:id:pgln:CompanyPrefix.PartyReference`, an SGLN
/// (EPCIS 1.x named parties by SGLN; the extension is ignored), or a GS1
/// Digital Link with AI 417 (party GLN) or 414.
pub fn parse_party(uri: &str) -> Result<Gln, UriError> {
    let id = |source| UriError::Identifier { uri: uri.to_owned(), source };
    if let Some(rest) = uri.strip_prefix("urn:epc:id:pgln:") {
        let Some((company_prefix, reference)) = rest.split_once('.') else {
            return Err(malformed(uri, "expected CompanyPrefix.PartyReference"));
        };
        return gln_of(uri, company_prefix, reference);
    }
    if uri.starts_with("urn:epc:id:sgln:") {
        return parse_location(uri).map(|place| place.gln);
    }
    if is_http(uri) {
        for ai in ["417", "414"] {
            if let Some((value, _)) = digital_link_key(uri, ai) {
                return Gln::parse(&value).map_err(id);
            }
        }
    }
    if uri.len() == 13 && uri.bytes().all(|b| b.is_ascii_digit()) {
        return Gln::parse(uri).map_err(id);
    }
    Err(UriError::Unsupported { uri: uri.to_owned(), expected: PARTY })
}

/// Writes a GLN as a GS1 Digital Link location URI.
pub fn location_uri(gln: &str) -> String {
    format!("{GS1_RESOLVER}/414/{gln}")
}

/// Writes a product key as a GS1 Digital Link URI (GTIN, lot, serial).
pub fn product_uri(key: &pb::ProductKey) -> String {
    let mut out = format!("{GS1_RESOLVER}/01/{}", key.gtin);
    if !key.lot.is_empty() {
        out.push_str("/10/");
        out.push_str(&percent_encode(&key.lot));
    }
    if !key.serial.is_empty() {
        out.push_str("/21/");
        out.push_str(&percent_encode(&key.serial));
    }
    out
}

/// Whether `text` is an absolute URI in the sense of RFC 3986: a scheme,
/// `:`, and only URI characters (percent escapes well formed).
pub fn is_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else { return false };
    let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok || rest.is_empty() {
        return false;
    }
    let bytes = rest.as_bytes();
    let mut idx = 0;
    while let Some(&b) = bytes.get(idx) {
        if b == b'%' {
            let ok = bytes.get(idx + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(idx + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            idx += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?#".contains(&b)) {
            return false;
        }
        idx += 1;
    }
    true
}

/// An event time's zone offset as EPCIS writes it, `±HH:MM`.
pub fn format_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    /// `Ok((gln, extension))` or `Err(fragment of the message)`.
    type LocationCase = (&'static str, Result<(&'static str, Option<&'static str>), &'static str>);

    /// `Ok((gtin, lot, serial))` or `Err(fragment of the message)`.
    type ProductCase = (&'static str, Result<(&'static str, &'static str, &'static str), &'static str>);

    #[test]
    fn products_from_epc_uris_and_digital_links() {
        let cases: &[ProductCase] = &[
            ("urn:epc:id:sgtin:0614141.107346.2017", Ok(("10614141073464", "", "2017"))),
            ("urn:epc:id:sgtin:0614141.107346.32a%2Fb", Ok(("10614141073464", "", "32a/b"))),
            ("urn:epc:id:sgtin:4012345.011111.9876", Ok(("04012345111118", "", "9876"))),
            ("urn:epc:id:sgtin:123456789012.0.7", Ok(("01234567890128", "", "7"))),
            ("urn:epc:class:lgtin:4012345.012345.998877", Ok(("04012345123456", "998877", ""))),
            ("urn:epc:class:lgtin:4023333.002000.2019-10-07", Ok(("04023333020008", "2019-10-07", ""))),
            ("urn:epc:idpat:sgtin:4012345.066666.*", Ok(("04012345666663", "", ""))),
            ("https://id.gs1.org/01/09506000134352", Ok(("09506000134352", "", ""))),
            ("https://id.gs1.org/01/09520123456788/10/ABC1/21/12345", Ok(("09520123456788", "ABC1", "12345"))),
            ("https://example.org/r/01/9520123456788/10/L%2F1", Ok(("09520123456788", "L/1", ""))),
            ("urn:epc:id:sscc:0614141.1234567890", Err("is not a product")),
            ("https://id.example.com/8003/040123450007718765", Err("is not a product")),
            ("urn:epc:id:giai:4000001.111", Err("is not a product")),
            ("urn:epc:idpat:sgtin:4012345.*.*", Err("is not a pattern of one GTIN's items")),
            ("urn:epc:idpat:sgtin:4012345.066666.12", Err("is not a pattern of one GTIN's items")),
            ("urn:epc:id:sgtin:06141X1.107346.1", Err("'X' in the company prefix or reference is not a digit")),
            ("urn:epc:id:sgtin:0614141.10734.1", Err("must have 13 digits together, they have 12")),
            ("urn:epc:id:sgtin:06141.10734600.1", Err("must have 6 to 12 digits, it has 5")),
            ("urn:epc:id:sgtin:0614141.107346", Err("expected CompanyPrefix.Reference.Value")),
            (
                "urn:epc:class:lgtin:4012345.012345.ABCDEFGHIJKLMNOPQRSTU",
                Err("lot must be 1 to 20 characters long, found 21"),
            ),
            ("urn:epc:id:sgtin:0614141.107346.%zz", Err("'%' must be followed by two hex digits")),
            ("https://id.gs1.org/01/09520123456789", Err("GTIN check digit is 9, expected 8")),
        ];
        for (uri, want) in cases {
            let got = parse_product(uri).map(|c| {
                let key = records::product_key(&c);
                (key.gtin, key.lot, key.serial)
            });
            match (want, &got) {
                (Ok((gtin, lot, serial)), Ok(got)) => {
                    assert_eq!((got.0.as_str(), got.1.as_str(), got.2.as_str()), (*gtin, *lot, *serial), "{uri}")
                }
                (Err(fragment), Err(e)) => assert!(e.to_string().contains(fragment), "{uri}: {e}"),
                _ => panic!("{uri}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn locations_and_parties() {
        let locations: &[LocationCase] = &[
            ("urn:epc:id:sgln:0614141.07346.1234", Ok(("0614141073467", Some("1234")))),
            ("urn:epc:id:sgln:0012345.11111.0", Ok(("0012345111112", None))),
            ("urn:epc:id:sgln:4012345.00225.0", Ok(("4012345002256", None))),
            ("urn:epc:id:sgln:4012345.00001.a%2Fb", Ok(("4012345000016", Some("a/b")))),
            ("https://id.gs1.org/414/9506000134307", Ok(("9506000134307", None))),
            ("https://id.example.com/414/4012345000054/254/A1", Ok(("4012345000054", Some("A1")))),
            ("geo:42.698334,23.319941", Err("is not a location")),
            ("https://id.gs1.org/414/9506000134308", Err("GLN check digit is 8, expected 7")),
            ("urn:epc:id:sgln:0614141.0734.0", Err("must have 12 digits together, they have 11")),
        ];
        for (uri, want) in locations {
            let got = parse_location(uri);
            match (want, &got) {
                (Ok((g, ext)), Ok(place)) => {
                    assert_eq!((place.gln.as_str(), place.extension.as_deref()), (*g, *ext), "{uri}")
                }
                (Err(fragment), Err(e)) => assert!(e.to_string().contains(fragment), "{uri}: {e}"),
                _ => panic!("{uri}: expected {want:?}, got {got:?}"),
            }
        }
        let parties: &[(&str, Result<&str, &str>)] = &[
            ("urn:epc:id:pgln:0614141.00001", Ok("0614141000012")),
            ("urn:epc:id:sgln:4012345.00001.0", Ok("4012345000016")),
            ("https://id.gs1.org/417/0614141000012", Ok("0614141000012")),
            ("https://id.gs1.org/414/4012345000054", Ok("4012345000054")),
            ("6931234000013", Ok("6931234000013")),
            ("urn:epc:id:pgln:0614141", Err("expected CompanyPrefix.PartyReference")),
            ("urn:epc:id:pgln:0614141.0000A", Err("'A' in the company prefix or reference is not a digit")),
            ("mailto:shop@example.com", Err("is not a party")),
            ("0614141000013", Err("GLN check digit is 3, expected 2")),
        ];
        for (uri, want) in parties {
            let got = parse_party(uri);
            match (want, &got) {
                (Ok(g), Ok(found)) => assert_eq!(found.as_str(), *g, "{uri}"),
                (Err(fragment), Err(e)) => assert!(e.to_string().contains(fragment), "{uri}: {e}"),
                _ => panic!("{uri}: expected {want:?}, got {got:?}"),
            }
        }
        // Written back as Digital Links, which read back the same.
        assert_eq!(location_uri(GLN), "https://id.gs1.org/414/0614141000012");
        assert_eq!(parse_location(&location_uri(GLN2)).map(|p| p.gln), Ok(gln(GLN2)));
        let key = pb::ProductKey { gtin: GTIN.into(), lot: "L/1%".into(), serial: "S&1".into() };
        let uri = product_uri(&key);
        assert_eq!(uri, "https://id.gs1.org/01/09520123456788/10/L%2F1%25/21/S%261");
        assert!(is_uri(&uri));
        assert_eq!(parse_product(&uri).map(|c| records::product_key(&c)), Ok(key));
    }

    #[test]
    fn uris_as_the_schema_checks_them() {
        let cases = [
            ("https://id.gs1.org/414/0614141000012", true),
            ("ni:///sha-256;ab01?ver=CBV2.0", true),
            ("urn:epcglobal:cbv:bt:0614141073467:1152", true),
            ("qtrace:certificate/9144030071526726XG%2FCQC-1", true),
            ("qtrace:kind", true),
            ("CQC-2026-001", false),
            ("9144030071526726XG/CQC-1", false),
            ("http://example.com/a b", false),
            ("http://example.com/%zz", false),
            ("1http://example.com", false),
            ("urn:", false),
            ("证书:1", false),
        ];
        for (text, want) in cases {
            assert_eq!(is_uri(text), want, "{text}");
        }
    }
}
