//! Just enough DER to read a certificate's validity period, which neither
//! rustls nor rcgen (without its x509-parser feature) exposes. rustls does
//! not check a trust anchor's dates, but agents' TLS stacks do, so the CA's
//! own expiry is checked at start with this.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

const TAG_SEQUENCE: u8 = 0x30;
const TAG_INTEGER: u8 = 0x02;
const TAG_VERSION: u8 = 0xa0;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;

/// `(notBefore, notAfter)` of a DER certificate, or `None` if it cannot be
/// read (RFC 5280 §4.1).
pub(crate) fn validity(cert: &[u8]) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let (certificate, _) = element(cert, TAG_SEQUENCE)?;
    let (tbs, _) = element(certificate, TAG_SEQUENCE)?;
    let rest = match element(tbs, TAG_VERSION) {
        Some((_, rest)) => rest,
        None => tbs,
    };
    let (_, rest) = element(rest, TAG_INTEGER)?; // serialNumber
    let (_, rest) = element(rest, TAG_SEQUENCE)?; // signature
    let (_, rest) = element(rest, TAG_SEQUENCE)?; // issuer
    let (validity, _) = element(rest, TAG_SEQUENCE)?;
    let (not_before, rest) = time_element(validity)?;
    let (not_after, _) = time_element(rest)?;
    Some((not_before, not_after))
}

/// The contents of the element with `tag` at the start of `input`, and
/// what follows it.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len_byte, rest) = rest.split_first()?;
    let (len, rest) = if len_byte < 0x80 {
        (usize::from(len_byte), rest)
    } else {
        let count = usize::from(len_byte & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(count);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

fn time_element(input: &[u8]) -> Option<(OffsetDateTime, &[u8])> {
    if let Some((utc, rest)) = element(input, TAG_UTC_TIME) {
        // YYMMDDHHMMSSZ; RFC 5280: YY >= 50 means 19YY.
        let [digits @ .., b'Z'] = utc else {
            return None;
        };
        if digits.len() != 12 {
            return None;
        }
        let yy = i32::from(two_digits(&digits[0..2])?);
        let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
        return Some((date_time(year, &digits[2..])?, rest));
    }
    let (generalized, rest) = element(input, TAG_GENERALIZED_TIME)?;
    // YYYYMMDDHHMMSSZ
    let [digits @ .., b'Z'] = generalized else {
        return None;
    };
    if digits.len() != 14 {
        return None;
    }
    let year = i32::from(two_digits(&digits[0..2])?) * 100 + i32::from(two_digits(&digits[2..4])?);
    Some((date_time(year, &digits[4..])?, rest))
}

/// `MMDDHHMMSS` after the year.
fn date_time(year: i32, digits: &[u8]) -> Option<OffsetDateTime> {
    let field = |i: usize| two_digits(digits.get(i * 2..i * 2 + 2)?);
    let month = Month::try_from(field(0)?).ok()?;
    let date = Date::from_calendar_date(year, month, field(1)?).ok()?;
    let time = Time::from_hms(field(2)?, field(3)?, field(4)?).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

fn two_digits(pair: &[u8]) -> Option<u8> {
    match pair {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some((a - b'0') * 10 + (b - b'0')),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, date_time_ymd};

    #[test]
    fn reads_utc_and_generalized_times() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.not_before = date_time_ymd(2001, 2, 3);
        params.not_after = date_time_ymd(2051, 12, 31);
        let cert = params.self_signed(&key).unwrap();
        let (from, to) = validity(cert.der()).unwrap();
        assert_eq!(from, date_time_ymd(2001, 2, 3));
        assert_eq!(to, date_time_ymd(2051, 12, 31));
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert_eq!(validity(&[]), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
        let key = KeyPair::generate().unwrap();
        let der = CertificateParams::default()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec();
        for end in 0..der.len() {
            let _ = validity(&der[..end]);
        }
    }
}
