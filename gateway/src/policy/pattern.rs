//! Host patterns and path globs.
//!
//! A host pattern is one of:
//! - `*`: every host (rules only; a secret must name its host);
//! - `api.example.com`: that host exactly (case-insensitive, trailing dot ignored);
//! - `*.example.com`: any subdomain of `example.com`, not `example.com` itself;
//! - an IP literal: `10.1.2.3`, `[2001:db8::1]` (or without brackets);
//!
//! each optionally followed by `:PORT`; without a port it matches every port.
//!
//! A path glob starts with `/` and matches the request path without its
//! query: `*` stays within one segment, `**` crosses segments, `?` is one
//! character, `[abc]` a class. `/**` (the default) matches every path.
//!
//! Globs match the canonical path ([`super::canonical`]): unreserved
//! characters decoded, other escapes upper-case (`/caf%C3%A9`). A rule
//! matches when any reading of the path does, ignoring case
//! ([`PathGlob::matches_any`]); a secret's scope only when every reading
//! does ([`PathGlob::matches`]).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use globset::{GlobBuilder, GlobMatcher};

use super::canonical::PathForms;

/// Why a pattern or glob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("host pattern is empty")]
    EmptyHost,
    #[error("host pattern {0:?} is not a host name, *.suffix, * or an IP address")]
    BadHost(String),
    #[error(
        "host pattern {0:?} looks like a URL: give only the host (and port), e.g. api.example.com; put paths in --path"
    )]
    UrlNotHost(String),
    #[error("host pattern {0:?} has a port that is not a number from 1 to 65535")]
    BadPort(String),
    #[error("path glob {0:?} must start with '/'")]
    PathNotAbsolute(String),
    #[error("path glob {glob:?} is invalid: {reason}")]
    BadGlob { glob: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// Stored with its leading dot (`.example.com`) so matching is one
    /// `ends_with`.
    Suffix(String),
    Ip(IpAddr),
}

/// A parsed host pattern; see the module docs for the syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PatternError::EmptyHost);
        }
        if text.contains("://") || text.contains('/') {
            return Err(PatternError::UrlNotHost(text.to_owned()));
        }
        let (host, port) = split_port(text)?;
        let host = parse_host(host).ok_or_else(|| PatternError::BadHost(text.to_owned()))?;
        Ok(HostPattern { host, port })
    }

    /// True when this pattern names every host (`*`).
    pub fn is_wildcard_any(&self) -> bool {
        self.host == HostMatch::Any
    }

    /// Does a request to `host` (a name or IP literal, any case, IPv6 with or
    /// without brackets) on `port` fall under this pattern?
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.trim_end_matches('.');
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(name) => host.eq_ignore_ascii_case(name),
            HostMatch::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
            }
            HostMatch::Ip(ip) => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                bare.parse::<IpAddr>().is_ok_and(|h| h == *ip)
            }
        }
    }
}

/// Splits `host:port`, `[v6]:port`, `[v6]`, bare `v6` and `host`.
fn split_port(text: &str) -> Result<(&str, Option<u16>), PatternError> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| PatternError::BadPort(text.to_owned()))
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| PatternError::BadHost(text.to_owned()))?;
        return match after {
            "" => Ok((inside, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((inside, Some(parse_port(port)?))),
                None => Err(PatternError::BadHost(text.to_owned())),
            },
        };
    }
    // More than one colon and no brackets: a bare IPv6 address, no port.
    if text.matches(':').count() > 1 {
        return Ok((text, None));
    }
    match text.split_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((text, None)),
    }
}

fn parse_host(host: &str) -> Option<HostMatch> {
    if host == "*" {
        return Some(HostMatch::Any);
    }
    // Before the address test, so `1.2.3.4.` is the address, not a name
    // that displays as one (and reads back as something else).
    let host = host.trim_end_matches('.');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(HostMatch::Ip(ip));
    }
    if host.contains(':') {
        return host
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| HostMatch::Ip(ip.into()));
    }
    let host = host.to_ascii_lowercase();
    match host.strip_prefix("*.") {
        Some(suffix) if is_dns_name(suffix) => Some(HostMatch::Suffix(format!(".{suffix}"))),
        Some(_) => None,
        None if is_dns_name(&host) => Some(HostMatch::Exact(host)),
        None => None,
    }
}

/// Letters, digits, `-` and `_` in dot-separated labels of 1 to 63 bytes,
/// no label starting or ending with `-`, at most 253 bytes in all.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostMatch::Any => f.write_str("*")?,
            HostMatch::Exact(name) => f.write_str(name)?,
            HostMatch::Suffix(suffix) => write!(f, "*{suffix}")?,
            HostMatch::Ip(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            HostMatch::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// A compiled path glob; see the module docs for the syntax.
#[derive(Debug, Clone)]
pub struct PathGlob {
    text: String,
    matcher: GlobMatcher,
    /// The same glob ignoring ASCII case, for restrictive rules: some
    /// upstreams serve `/Admin` as `/admin`.
    caseless: GlobMatcher,
}

impl PathGlob {
    /// The glob that matches every path.
    pub const ANY: &'static str = "/**";

    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if !text.starts_with('/') {
            return Err(PatternError::PathNotAbsolute(text.to_owned()));
        }
        let build = |caseless: bool| {
            GlobBuilder::new(text)
                .literal_separator(true)
                .backslash_escape(true)
                .case_insensitive(caseless)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| PatternError::BadGlob {
                    glob: text.to_owned(),
                    reason: e.kind().to_string(),
                })
        };
        Ok(PathGlob {
            text: text.to_owned(),
            matcher: build(false)?,
            caseless: build(true)?,
        })
    }

    /// `/**` is every request, also `OPTIONS *`, whose target is no path:
    /// a block rule or secret for a whole host must cover it.
    fn is_any(&self) -> bool {
        self.text == Self::ANY
    }

    /// The permissive test, for a secret's scope: does every way an
    /// upstream may read `path` (without its query string) match? A path
    /// the gateway would refuse matches nothing but `/**`.
    pub fn matches(&self, path: &str) -> bool {
        if self.is_any() {
            return true;
        }
        PathForms::parse(path).is_ok_and(|forms| self.matches_every(&forms))
    }

    /// Every reading of `forms` matches, with case.
    pub fn matches_every(&self, forms: &PathForms<'_>) -> bool {
        self.is_any() || forms.all().all(|p| self.matcher.is_match(p))
    }

    /// The restrictive test, for rules: does any reading of `forms`
    /// match, ignoring ASCII case?
    pub fn matches_any(&self, forms: &PathForms<'_>) -> bool {
        self.is_any() || forms.all().any(|p| self.caseless.is_match(p))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for PathGlob {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for PathGlob {}

impl fmt::Display for PathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(p: &str) -> HostPattern {
        HostPattern::parse(p).unwrap()
    }

    #[test]
    fn exact_hosts_ignore_case_and_trailing_dot() {
        let p = host("API.OpenAI.com");
        assert!(p.matches("api.openai.com", 443));
        assert!(p.matches("api.openai.com.", 8443));
        assert!(!p.matches("evil-api.openai.com", 443));
        assert!(!p.matches("api.openai.com.evil", 443));
        assert_eq!(p.to_string(), "api.openai.com");
    }

    #[test]
    fn suffix_matches_subdomains_only() {
        let p = host("*.example.com");
        assert!(p.matches("a.example.com", 443));
        assert!(p.matches("a.b.EXAMPLE.com", 443));
        assert!(!p.matches("example.com", 443));
        assert!(!p.matches("badexample.com", 443));
    }

    #[test]
    fn ports_and_ip_literals() {
        let p = host("localhost:8443");
        assert!(p.matches("localhost", 8443));
        assert!(!p.matches("localhost", 443));
        let v6 = host("[::1]:443");
        assert!(v6.matches("[::1]", 443));
        assert!(v6.matches("::1", 443));
        assert!(!v6.matches("::2", 443));
        assert_eq!(v6.to_string(), "[::1]:443");
        assert!(host("2001:db8::1").matches("[2001:db8::1]", 1));
        assert!(host("10.0.0.1").matches("10.0.0.1", 80));
        assert!(host("*").matches("anything.at.all", 1));
    }

    #[test]
    fn bad_hosts_are_refused() {
        for bad in [
            "",
            "a b",
            "*.",
            "*x.com",
            "a..b",
            "-a.com",
            "http://a.com",
            "a.com/x",
            "[::1",
            "[::1]x",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            HostPattern::parse("a.com:99999"),
            Err(PatternError::BadPort("a.com:99999".into()))
        );
        assert!(HostPattern::parse("a.com:0").is_err());
    }

    /// Found by the `pattern` fuzz target's round trip: `1.2.3.4.` was
    /// kept as a name and displayed as `1.2.3.4`, which parses as an address.
    #[test]
    fn an_address_with_a_trailing_dot_is_the_address() {
        for text in ["1.2.3.4.", "1.2.3.4.:443", "::1."] {
            let p = host(text);
            assert_eq!(HostPattern::parse(&p.to_string()), Ok(p.clone()), "{text}");
        }
        assert_eq!(host("1.2.3.4."), host("1.2.3.4"));
        assert!(host("1.2.3.4.").matches("1.2.3.4", 443));
    }

    #[test]
    fn globs_respect_segments() {
        let any = PathGlob::parse(PathGlob::ANY).unwrap();
        for p in ["/", "/a", "/a/b/c"] {
            assert!(any.matches(p), "{p}");
        }
        let one = PathGlob::parse("/v1/*").unwrap();
        assert!(one.matches("/v1/chat"));
        assert!(!one.matches("/v1/chat/completions"));
        let deep = PathGlob::parse("/v1/**").unwrap();
        assert!(deep.matches("/v1/chat/completions"));
        assert!(!deep.matches("/v2/chat"));
    }

    /// Found by the `pattern` fuzz target: `/**` did not match the
    /// asterisk-form target `*` (`OPTIONS * HTTP/1.1`), so a rule blocking
    /// a whole host let that request through.
    #[test]
    fn the_default_glob_matches_every_request_target() {
        let any = PathGlob::parse(PathGlob::ANY).unwrap();
        assert!(any.matches("*"));
        assert!(!PathGlob::parse("/*").unwrap().matches("*"));
    }

    fn forms(raw: &str) -> PathForms<'_> {
        PathForms::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    /// Issue #15, item 5: each spelling of `/admin/x` is under a rule on
    /// `/admin/**` (or refused before matching, for dot segments).
    #[test]
    fn rules_match_every_spelling_of_a_path() {
        let block = PathGlob::parse("/admin/**").unwrap();
        for raw in [
            "/admin/x",
            "//admin/x",
            "/%61dmin/x",
            "/admin%2fx",
            "/admin%2Fx",
            "/admin%5Cx",
            "/admin\\x",
            "/Admin/x",
            "/ADMIN/X",
            "/admin;v=1/x",
            "/%41dmin/x",
        ] {
            assert!(block.matches_any(&forms(raw)), "{raw}");
        }
        for raw in ["/x/../admin", "/x/%2e%2e/admin/x", "/..;/admin/x"] {
            assert!(PathForms::parse(raw).is_err(), "{raw}");
        }
        assert!(!block.matches_any(&forms("/administrator/x")));
        assert!(!block.matches_any(&forms("/v1/admin")));
    }

    /// A secret's scope holds only when every reading is inside it.
    #[test]
    fn scopes_hold_only_for_every_reading() {
        let v1 = PathGlob::parse("/v1/**").unwrap();
        assert!(v1.matches("/v1/chat"));
        assert!(v1.matches("/v1/%63hat"));
        assert!(!v1.matches("/v1/../admin"));
        assert!(!v1.matches("/V1/chat"));
        // `//v1/x` is `/v1/x` to nginx but not to others: both readings
        // must be inside the scope, and `//v1/x` is not.
        assert!(!v1.matches("//v1/chat"));
        // S3 keys and GitHub refs with %2F stay inside a bucket's scope.
        let bucket = PathGlob::parse("/bucket/**").unwrap();
        assert!(bucket.matches("/bucket/dir%2Fkey.txt"));
        assert!(bucket.matches("/bucket/a%2Fb%2Fc"));
        // ... but not inside a one-segment scope one reading leaves.
        let one = PathGlob::parse("/bucket/*").unwrap();
        assert!(!one.matches("/bucket/dir%2Fkey.txt"));
        assert!(one.matches("/bucket/key.txt"));
        // A path the gateway refuses is in no scope but `/**`.
        assert!(!bucket.matches("/bucket/%zz"));
        assert!(
            PathGlob::parse(PathGlob::ANY)
                .unwrap()
                .matches("/bucket/%zz")
        );
    }

    #[test]
    fn bad_globs_are_refused() {
        assert_eq!(
            PathGlob::parse("v1/*"),
            Err(PatternError::PathNotAbsolute("v1/*".into()))
        );
        assert!(matches!(
            PathGlob::parse("/v1/[abc"),
            Err(PatternError::BadGlob { .. })
        ));
    }
}
