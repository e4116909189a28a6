//! The one-authority check (`airlock::proxy::target`): every authority a
//! request carries must name the session's host and port.
//!
//! Checks, beyond "no panic": an accepted request names, in every
//! authority and every `Host`, the session's host (ASCII case, one
//! trailing dot, IPv6 spelling aside) and port, as `http`'s own authority
//! parser reads them; it has at most one `Host`; the authority the
//! gateway sends upstream passes the same check for its session.
//!
//! Input: lines `SESSION_HOST`, `PORT`, `tls` or `plain`, the request's
//! `:authority` (empty for none), then one `Host` value per line.

#![no_main]

use airlock::proxy::Transport;
use airlock::proxy::target::{SessionHost, check_authorities, outgoing_authority};
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Uri};
use libfuzzer_sys::fuzz_target;

fn same_host(found: &str, session: &str) -> bool {
    let bare = |h: &str| h.trim_start_matches('[').trim_end_matches(']').to_owned();
    let (f, s) = (bare(found), bare(session));
    let f = f.strip_suffix('.').unwrap_or(&f);
    let s = s.strip_suffix('.').unwrap_or(&s);
    f.eq_ignore_ascii_case(s)
        || matches!(
            (f.parse::<std::net::Ipv6Addr>(), s.parse::<std::net::Ipv6Addr>()),
            (Ok(a), Ok(b)) if a == b
        )
}

/// `text`, read by `http`'s parser, names the session.
fn names_session(text: &str, session: &SessionHost<'_>) {
    let Ok(a) = Authority::try_from(text) else {
        return;
    };
    assert!(
        same_host(a.host(), session.host),
        "{text:?} accepted for session {:?}",
        session.host
    );
    let default = session.transport.default_port();
    assert_eq!(
        a.port_u16().unwrap_or(default),
        session.port,
        "{text:?} accepted for port {}",
        session.port
    );
    assert!(!text.contains('@'), "{text:?}: user info accepted");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let host = lines.next().unwrap_or_default();
    let port: u16 = lines
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(443);
    let transport = if lines.next() == Some("plain") {
        Transport::Plain
    } else {
        Transport::Tls
    };
    let authority = lines.next().unwrap_or_default();
    let session = SessionHost {
        host,
        port,
        transport,
    };

    let uri = if authority.is_empty() {
        Uri::from_static("/")
    } else {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTPS);
        let Ok(a) = Authority::try_from(authority) else {
            return;
        };
        parts.authority = Some(a);
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        let Ok(uri) = Uri::from_parts(parts) else {
            return;
        };
        uri
    };
    let mut headers = HeaderMap::new();
    let mut hosts = Vec::new();
    for line in lines {
        let Ok(v) = HeaderValue::from_str(line) else {
            return;
        };
        headers.append(http::header::HOST, v);
        hosts.push(line);
    }
    if check_authorities(&uri, &headers, &session).is_ok() {
        assert!(hosts.len() <= 1, "{hosts:?} accepted");
        if let Some(a) = uri.authority() {
            names_session(a.as_str(), &session);
        }
        for h in &hosts {
            names_session(h, &session);
        }
    }

    // What goes upstream names the session, by the same check.
    let out = outgoing_authority(&session);
    if Authority::try_from(out.as_str()).is_ok()
        && let Ok(v) = HeaderValue::from_str(&out)
    {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, v);
        let sane = !host.is_empty()
            && !host.contains(['@', '/', '?', '#', ' ', '\\', '[', ']'])
            && (host.parse::<std::net::Ipv6Addr>().is_ok() || !host.contains(':'));
        if sane {
            assert!(
                check_authorities(&Uri::from_static("/"), &h, &session).is_ok(),
                "the outgoing authority {out:?} fails its own session {session:?}"
            );
        }
    }
});
