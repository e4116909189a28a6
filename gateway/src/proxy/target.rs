//! One request, one authority, one path: what the request names must be
//! what the connection was opened for, and what goes upstream is built
//! from the session, not from the agent's headers.
//!
//! A request can name its server up to three ways at once: an
//! absolute-form target (`GET https://h/x`), HTTP/2's `:authority`, and
//! any number of `Host` headers. A Host-routed upstream (a CDN, a PaaS, an
//! ingress) picks the tenant from whichever it reads, so all of them must
//! equal the session's host and port ([`check_authorities`]): ASCII case
//! and one trailing dot do not matter, an IPv6 literal may be spelled any
//! way, no port means the scheme's default (443, or 80 for plain HTTP).
//! Two `Host` headers are refused even when they agree, and so is user
//! info (`user@host`), which RFC 9110 forbids in `Host`.
//!
//! The upstream then gets one authority, [`outgoing_authority`], made from
//! the session alone (the `Host` of HTTP/1.1, the `:authority` of HTTP/2,
//! the host AWS SigV4 signs), and an origin-form target (`/path?query`)
//! with the canonical path ([`crate::policy::canonical`]); anything but
//! `/...` (or `OPTIONS *`) is refused, so a `:path` can never carry an
//! authority of its own.
//!
//! A transparent connection without SNI has the original IP as its host:
//! the same rule applies (the request must name that IP, as curl does for
//! `https://1.2.3.4/`), and the IP is what goes upstream. A client that
//! sent no SNI and a name in `Host` is refused rather than silently sent
//! to the IP's default vhost.

use std::net::Ipv6Addr;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, request};

use super::Transport;
use crate::policy::{PathError, PathForms};

/// Why a request's authority is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("the request names no host: send a Host header (or :authority)")]
    Missing,
    #[error("the request has {0} Host headers; send exactly one")]
    DuplicateHost(usize),
    #[error("the request's host {0:?} is not a valid host[:port] (no user info, IPv6 in brackets)")]
    Malformed(String),
    #[error("the request is addressed to {found} but the connection was opened for {expected}")]
    Mismatch { found: String, expected: String },
}

/// The host and port a session was opened for.
#[derive(Debug, Clone, Copy)]
pub struct SessionHost<'a> {
    /// A DNS name or IP literal (IPv6 with or without brackets).
    pub host: &'a str,
    pub port: u16,
    /// TLS (default port 443) or plain HTTP (80).
    pub transport: Transport,
}

impl SessionHost<'_> {
    fn default_port(&self) -> u16 {
        self.transport.default_port()
    }

    fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// The authority the upstream receives: the session's host (IPv6 in
/// brackets), with its port unless it is the scheme's default.
pub fn outgoing_authority(session: &SessionHost<'_>) -> String {
    let bare = session.bare_host();
    let bracketed = bare.contains(':');
    match (bracketed, session.port == session.default_port()) {
        (false, true) => bare.to_owned(),
        (true, true) => format!("[{bare}]"),
        (false, false) => format!("{bare}:{}", session.port),
        (true, false) => format!("[{bare}]:{}", session.port),
    }
}

/// Splits `host[:port]` / `[v6][:port]` strictly: no user info, an IPv6
/// literal only in brackets, a port of digits (empty means none).
pub fn parse_authority(text: &str) -> Option<(&str, Option<u16>)> {
    if text.is_empty() || text.contains(['@', '/', '?', '#', ' ', '\\']) {
        return None;
    }
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            inside.parse::<Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (inside, port)
        }
        None => match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    if host.is_empty() || host.contains([':', '[', ']']) && !text.starts_with('[') {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

fn same_host(found: &str, session: &str) -> bool {
    let f = found.strip_suffix('.').unwrap_or(found);
    let s = session.strip_suffix('.').unwrap_or(session);
    if f.eq_ignore_ascii_case(s) {
        return true;
    }
    matches!(
        (found.parse::<Ipv6Addr>(), session.parse::<Ipv6Addr>()),
        (Ok(a), Ok(b)) if a == b
    )
}

/// Does the authority `text` name the session's host and port?
pub fn check_one(text: &str, session: &SessionHost<'_>) -> Result<(), AuthorityError> {
    let (host, port) =
        parse_authority(text).ok_or_else(|| AuthorityError::Malformed(text.to_owned()))?;
    let port = port.unwrap_or(session.default_port());
    if same_host(host, session.bare_host()) && port == session.port {
        Ok(())
    } else {
        Err(AuthorityError::Mismatch {
            found: text.to_owned(),
            expected: outgoing_authority(session),
        })
    }
}

/// Phase check: every authority the request carries names the session.
/// A mismatch is reported before a duplicate, so two `Host` headers one
/// of which names another tenant are an attempt, not a mere mistake.
pub fn check_authorities(
    uri: &Uri,
    headers: &HeaderMap,
    session: &SessionHost<'_>,
) -> Result<(), AuthorityError> {
    let mut named = 0;
    if let Some(authority) = uri.authority() {
        check_one(authority.as_str(), session)?;
        named += 1;
    }
    let mut hosts = 0;
    for value in headers.get_all(header::HOST) {
        let text = value.to_str().map_err(|_| {
            AuthorityError::Malformed(String::from_utf8_lossy(value.as_bytes()).into())
        })?;
        check_one(text, session)?;
        hosts += 1;
    }
    if hosts > 1 {
        return Err(AuthorityError::DuplicateHost(hosts));
    }
    if named + hosts == 0 {
        return Err(AuthorityError::Missing);
    }
    Ok(())
}

/// Why a request target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("CONNECT inside a connection to a server is not forwarded")]
    Connect,
    #[error("'*' is a request target only for OPTIONS")]
    Asterisk,
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("the canonical request target is not a valid URI")]
    Rebuild,
}

/// Reads the request target: origin form `/...` only (or `OPTIONS *`),
/// its path canonical. The query is kept as sent.
pub fn read_target<'u>(method: &Method, uri: &'u Uri) -> Result<PathForms<'u>, TargetError> {
    if method == Method::CONNECT {
        return Err(TargetError::Connect);
    }
    // An absolute-form target without a path (`GET http://h HTTP/1.1`)
    // asks for `/`.
    let Some(pq) = uri.path_and_query() else {
        return Ok(PathForms::parse("/")?);
    };
    let raw = pq.as_str();
    if raw == "*" {
        if method != Method::OPTIONS {
            return Err(TargetError::Asterisk);
        }
        return Ok(PathForms::parse("*")?);
    }
    // `pq.path()` would read `?x` as `/`: look at what was sent. And
    // `http` keeps an HTTP/2 `:path` of `#x` as an empty path that reads
    // (and displays) as `/`; only a URI made of it tells it apart.
    if !raw.starts_with('/') || Uri::from(pq.clone()).path().is_empty() {
        return Err(PathError::NotOriginForm.into());
    }
    Ok(PathForms::parse(pq.path())?)
}

/// Rewrites the request for the upstream: origin-form target with the
/// canonical path (`canonical`; `None` when the path already is), one
/// `Host` with the session's authority.
pub fn rewrite(
    parts: &mut request::Parts,
    canonical: Option<&str>,
    authority: HeaderValue,
) -> Result<(), TargetError> {
    let origin_form = parts.uri.scheme().is_none() && parts.uri.authority().is_none();
    match (canonical, parts.uri.path_and_query()) {
        (None, _) if origin_form => {}
        (None, Some(pq)) => parts.uri = Uri::from(pq.clone()),
        (None, None) => parts.uri = Uri::from_static("/"),
        (Some(path), _) => {
            let pq = match parts.uri.query() {
                Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
                None => PathAndQuery::try_from(path),
            }
            .map_err(|_| TargetError::Rebuild)?;
            parts.uri = Uri::from(pq);
        }
    }
    parts.headers.remove(header::HOST);
    parts.headers.insert(header::HOST, authority);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: SessionHost<'static> = SessionHost {
        host: "api.x.com",
        port: 443,
        transport: Transport::Tls,
    };

    fn req(target: &str, hosts: &[&str]) -> http::Request<()> {
        let mut b = http::Request::get(target);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    }

    fn check(target: &str, hosts: &[&str], s: &SessionHost<'_>) -> Result<(), AuthorityError> {
        let r = req(target, hosts);
        check_authorities(r.uri(), r.headers(), s)
    }

    #[test]
    fn the_sessions_host_in_any_spelling_passes() {
        for h in [
            "api.x.com",
            "API.X.COM",
            "api.x.com.",
            "api.x.com:443",
            "api.x.com:",
        ] {
            assert_eq!(check("/", &[h], &S), Ok(()), "{h}");
        }
        assert_eq!(check("https://api.x.com/x", &["api.x.com"], &S), Ok(()));
        assert_eq!(check("https://api.x.com/x", &[], &S), Ok(()));
        let v6 = SessionHost {
            host: "::1",
            port: 8443,
            transport: Transport::Tls,
        };
        assert_eq!(check("/", &["[::1]:8443"], &v6), Ok(()));
        assert_eq!(check("/", &["[0:0::1]:8443"], &v6), Ok(()));
    }

    #[test]
    fn any_other_authority_is_a_mismatch() {
        let mismatch = |target: &str, hosts: &[&str]| {
            matches!(
                check(target, hosts, &S),
                Err(AuthorityError::Mismatch { .. })
            )
        };
        assert!(mismatch("/", &["evil.tenant"]));
        assert!(mismatch("/", &["api.x.com:8443"]));
        assert!(mismatch("/", &["api.x.com.evil"]));
        assert!(mismatch("/", &["api.x.com.."]));
        // Absolute form and Host must both name the session.
        assert!(mismatch("https://api.x.com/x", &["evil.tenant"]));
        assert!(mismatch("https://evil.tenant/x", &["api.x.com"]));
        // One of two Host headers naming another tenant: an attempt.
        assert!(mismatch("/", &["api.x.com", "evil.tenant"]));
        // No port on a session with another port means 443: not it.
        let other = SessionHost { port: 8443, ..S };
        assert!(matches!(
            check("/", &["api.x.com"], &other),
            Err(AuthorityError::Mismatch { .. })
        ));
        let plain = SessionHost {
            port: 80,
            transport: Transport::Plain,
            ..S
        };
        assert_eq!(check("/", &["api.x.com"], &plain), Ok(()));
    }

    #[test]
    fn duplicates_missing_and_malformed_are_refused() {
        assert_eq!(
            check("/", &["api.x.com", "api.x.com"], &S),
            Err(AuthorityError::DuplicateHost(2))
        );
        assert_eq!(check("/", &[], &S), Err(AuthorityError::Missing));
        for h in [
            "user@api.x.com",
            "api.x.com:443x",
            "::1",
            "[::1",
            "api.x.com:99999",
            "",
        ] {
            assert!(
                matches!(check("/", &[h], &S), Err(AuthorityError::Malformed(_))),
                "{h}"
            );
        }
    }

    #[test]
    fn the_outgoing_authority_comes_from_the_session() {
        assert_eq!(outgoing_authority(&S), "api.x.com");
        assert_eq!(
            outgoing_authority(&SessionHost { port: 8443, ..S }),
            "api.x.com:8443"
        );
        let v6 = SessionHost {
            host: "::1",
            port: 443,
            transport: Transport::Tls,
        };
        assert_eq!(outgoing_authority(&v6), "[::1]");
        assert_eq!(
            outgoing_authority(&SessionHost { port: 1, ..v6 }),
            "[::1]:1"
        );
        let plain = SessionHost {
            port: 80,
            transport: Transport::Plain,
            ..S
        };
        assert_eq!(outgoing_authority(&plain), "api.x.com");
        assert_eq!(
            outgoing_authority(&SessionHost { port: 443, ..plain }),
            "api.x.com:443"
        );
    }

    fn target(method: Method, t: &str) -> Result<String, TargetError> {
        let uri: Uri = t.parse().unwrap();
        read_target(&method, &uri).map(|f| f.canonical().to_owned())
    }

    #[test]
    fn only_origin_form_targets_are_read() {
        assert_eq!(target(Method::GET, "/%61/b?q=%61").unwrap(), "/a/b");
        assert_eq!(target(Method::GET, "https://api.x.com").unwrap(), "/");
        assert_eq!(target(Method::OPTIONS, "*").unwrap(), "*");
        assert_eq!(target(Method::GET, "*"), Err(TargetError::Asterisk));
        let q = Uri::from_parts({
            let mut p = http::uri::Parts::default();
            p.scheme = Some(http::uri::Scheme::HTTPS);
            p.authority = Some("api.x.com".parse().unwrap());
            p.path_and_query = Some("?x=1".parse().unwrap());
            p
        })
        .unwrap();
        assert_eq!(
            read_target(&Method::GET, &q),
            Err(TargetError::Path(PathError::NotOriginForm))
        );
        // Found by the `canonical` fuzz target: `#x` is kept as an empty
        // path that reads as `/`.
        let mut p = http::uri::Parts::default();
        p.scheme = Some(http::uri::Scheme::HTTPS);
        p.authority = Some("api.x.com".parse().unwrap());
        p.path_and_query = Some("#%00//".parse().unwrap());
        let fragment = Uri::from_parts(p).unwrap();
        assert_eq!(
            read_target(&Method::GET, &fragment),
            Err(TargetError::Path(PathError::NotOriginForm))
        );
        assert_eq!(
            target(Method::GET, "/x/../admin"),
            Err(TargetError::Path(PathError::DotSegment))
        );
        let connect: Uri = "api.x.com:443".parse().unwrap();
        assert_eq!(
            read_target(&Method::CONNECT, &connect),
            Err(TargetError::Connect)
        );
    }

    #[test]
    fn the_rewrite_sends_origin_form_and_the_sessions_host() {
        let (mut parts, ()) = req("https://api.x.com/%61?k=%61", &["API.x.com."]).into_parts();
        rewrite(
            &mut parts,
            Some("/a"),
            HeaderValue::from_static("api.x.com"),
        )
        .unwrap();
        assert_eq!(parts.uri, "/a?k=%61");
        assert_eq!(parts.headers.get_all("host").iter().count(), 1);
        assert_eq!(parts.headers["host"], "api.x.com");
        let (mut parts, ()) = req("https://api.x.com/b?q", &[]).into_parts();
        rewrite(&mut parts, None, HeaderValue::from_static("api.x.com:8443")).unwrap();
        assert_eq!(parts.uri, "/b?q");
        assert_eq!(parts.headers["host"], "api.x.com:8443");
    }
}
