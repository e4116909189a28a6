//! [`LeafName`]: the host name or IP literal a leaf certificate is minted
//! for. It comes from the agent (SNI, CONNECT target, Host header), so it is
//! validated and normalised before it reaches the CA or a cache key.

use std::fmt;
use std::net::IpAddr;

use rustls_pki_types::{DnsName, ServerName};

use super::TlsError;

/// The longest DNS name, in bytes (RFC 1035, without the trailing dot).
const MAX_NAME_LEN: usize = 253;
/// The longest DNS label, in bytes.
const MAX_LABEL_LEN: usize = 63;
/// How much of a rejected name an error message repeats.
const MAX_ECHO_LEN: usize = 80;

/// A validated SNI host name (lower-case, no trailing dot) or IP address
/// (canonical text form), usable as a certificate name and a cache key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LeafName {
    /// The normalised text: the certificate's CN and the cache key.
    text: String,
    /// The same name typed for rustls: an IP literal goes in an iPAddress
    /// SAN, a DNS name in a dNSName SAN.
    server: ServerName<'static>,
}

impl LeafName {
    /// Validates and normalises `input`: ASCII letters are lower-cased, one
    /// trailing dot is dropped, `[v6]` brackets are accepted around an IPv6
    /// literal. Rejects empty names, names over 253 bytes, empty or
    /// over-long labels, and any character outside `a-z 0-9 - _ .`.
    pub fn parse(input: &str) -> Result<Self, TlsError> {
        let invalid = |reason| TlsError::InvalidName {
            name: echo(input),
            reason,
        };
        let unbracketed = input
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'));
        if let Some(inner) = unbracketed {
            return match inner.parse::<IpAddr>() {
                Ok(ip @ IpAddr::V6(_)) => Ok(LeafName::from_ip(ip)),
                _ => Err(invalid("brackets may only enclose an IPv6 address")),
            };
        }
        if let Ok(ip) = input.parse::<IpAddr>() {
            return Ok(LeafName::from_ip(ip));
        }
        let text = input
            .strip_suffix('.')
            .unwrap_or(input)
            .to_ascii_lowercase();
        let dns = check_dns_name(&text).map_err(invalid)?;
        Ok(LeafName {
            text,
            server: ServerName::DnsName(dns),
        })
    }

    /// A name for an IP address (an original destination without SNI).
    pub fn from_ip(ip: IpAddr) -> Self {
        LeafName {
            text: ip.to_string(),
            server: ServerName::IpAddress(ip.into()),
        }
    }

    /// The normalised name, e.g. `api.example.com` or `::1`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The address, when the name is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match &self.server {
            ServerName::IpAddress(ip) => Some(IpAddr::from(*ip)),
            _ => None,
        }
    }

    /// The name as rustls wants it for a client connection (upstream SNI and
    /// certificate verification).
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server
    }
}

impl fmt::Display for LeafName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for LeafName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeafName({})", self.text)
    }
}

impl AsRef<str> for LeafName {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// Checks a lower-cased DNS name without trailing dot, with a reason an
/// operator can act on; `DnsName` (what rustls accepts) has the last word.
fn check_dns_name(text: &str) -> Result<DnsName<'static>, &'static str> {
    if text.is_empty() {
        return Err("the name is empty");
    }
    if text.len() > MAX_NAME_LEN {
        return Err("the name is longer than 253 bytes");
    }
    if let Some(bad) = text
        .bytes()
        .find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
    {
        return Err(if bad == b'*' {
            "wildcards are not host names"
        } else {
            "only letters, digits, '-', '_' and '.' are allowed"
        });
    }
    for label in text.split('.') {
        if label.is_empty() {
            return Err("a label between dots is empty");
        }
        if label.len() > MAX_LABEL_LEN {
            return Err("a label is longer than 63 bytes");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
    }
    DnsName::try_from(text.to_owned()).map_err(|_| "it looks like a number, not a host name")
}

/// The start of a rejected input, printable, for an error message.
fn echo(input: &str) -> String {
    let mut end = input.len().min(MAX_ECHO_LEN);
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    let mut shown = input[..end].to_owned();
    if end < input.len() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        let name = LeafName::parse("API.Example.COM.").unwrap();
        assert_eq!(name.as_str(), "api.example.com");
        assert_eq!(name.ip(), None);
        assert_eq!(
            LeafName::parse("my_bucket.s3.amazonaws.com")
                .unwrap()
                .as_str(),
            "my_bucket.s3.amazonaws.com"
        );
        assert_eq!(LeafName::parse("localhost").unwrap().as_str(), "localhost");
    }

    #[test]
    fn ip_literals_parse_in_canonical_form() {
        let v4 = LeafName::parse("127.0.0.1").unwrap();
        assert_eq!(v4.ip(), Some("127.0.0.1".parse().unwrap()));
        let v6 = LeafName::parse("[0:0::1]").unwrap();
        assert_eq!(v6.as_str(), "::1");
        assert_eq!(LeafName::parse("::1").unwrap(), v6);
        assert!(matches!(v6.server_name(), ServerName::IpAddress(_)));
        assert!(LeafName::parse("[127.0.0.1]").is_err());
    }

    #[test]
    fn bad_names_are_rejected_with_a_reason() {
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(60).as_str(); 5].join(".");
        for (input, reason) in [
            ("", "empty"),
            (".", "empty"),
            ("a..b", "empty"),
            ("*.example.com", "wildcard"),
            ("exa mple.com", "allowed"),
            ("exämple.com", "allowed"),
            ("a\0b", "allowed"),
            ("-a.com", "'-'"),
            (long_label.as_str(), "63"),
            (long_name.as_str(), "253"),
            ("1.2.3.256", "number"),
        ] {
            let err = LeafName::parse(input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input:?}: {err}");
        }
        let err = LeafName::parse(&"é".repeat(200)).unwrap_err().to_string();
        assert!(err.len() < 300, "the echo is bounded: {err}");
    }
}
