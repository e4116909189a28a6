//! The explicit proxy's own request: its target
//! (`airlock::proxy::explicit::proxy_target`) and its `Proxy-Authorization`
//! (`airlock::proxy::auth::token_from_header`), from raw request heads
//! parsed the way hyper parses them (httparse, then `http::Uri`).
//!
//! Checks: an accepted target has a host and a port the gateway can dial
//! (non-empty, no brackets left, an IPv6 literal where there were brackets,
//! no user info, never port 0), CONNECT only with an explicit port, plain requests only
//! for `http://`; a token is never empty. Whatever follows the head is
//! used as a token: Basic and Bearer credentials built from it read back
//! as that token.

#![no_main]

use std::net::Ipv6Addr;

use airlock::proxy::auth::token_from_header;
use airlock::proxy::explicit::{TargetKind, proxy_target};
use airlock::proxy::tls_name_for;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Method, Uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = req.parse(data) else {
        return;
    };
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return;
    };
    target(method, path);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("proxy-authorization")
            && let Some(token) = token_from_header(h.value)
        {
            assert!(!token.is_empty(), "an empty token from {:?}", h.value);
        }
    }
    if let Some(rest) = data.get(head_len..) {
        round_trip(rest);
    }
});

fn target(method: &str, path: &str) {
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method.as_bytes()), Uri::try_from(path)) else {
        return;
    };
    let Ok(t) = proxy_target(&method, &uri) else {
        return;
    };
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    assert!(
        !authority.contains('@'),
        "{method} {path}: user info accepted"
    );
    assert!(
        !t.host.is_empty(),
        "{method} {path}: empty host from {authority:?}"
    );
    assert_ne!(t.port, 0, "{method} {path}: port 0");
    assert!(
        !t.host.contains(['[', ']']),
        "{method} {path}: host {:?}",
        t.host
    );
    if authority.starts_with('[') {
        assert!(
            t.host.parse::<Ipv6Addr>().is_ok(),
            "{method} {path}: {:?} is not IPv6",
            t.host
        );
    }
    let tunnel = t.kind == TargetKind::Tunnel;
    assert_eq!(tunnel, method == Method::CONNECT);
    if tunnel {
        assert_eq!(uri.port_u16(), Some(t.port), "{method} {path}");
    } else {
        assert_eq!(uri.scheme_str(), Some("http"), "{method} {path}");
    }
    let _ = tls_name_for(&t.host);
}

/// Credentials the client builds for `token` read back as `token`.
fn round_trip(token: &[u8]) {
    let Ok(token) = std::str::from_utf8(token) else {
        return;
    };
    if token.is_empty() {
        return;
    }
    let basic = format!("Basic {}", STANDARD.encode(format!("agent:{token}")));
    let read = token_from_header(basic.as_bytes());
    assert_eq!(
        read.as_deref().map(String::as_str),
        Some(token),
        "Basic with {token:?}"
    );
    if token.trim() == token && !token.contains(char::is_whitespace) {
        let bearer = format!("Bearer {token}");
        let read = token_from_header(bearer.as_bytes());
        assert_eq!(
            read.as_deref().map(String::as_str),
            Some(token),
            "Bearer {token:?}"
        );
    }
}
