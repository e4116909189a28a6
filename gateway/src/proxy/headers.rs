//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and
//! never cross the gateway. Nothing is added that would tell the upstream
//! a proxy is there (no Via, no X-Forwarded-For).

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};
use smallvec::SmallVec;

/// Request heads larger than this get 431, whichever protocol carried them.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Hop-by-hop names `http` has no constants for.
const NON_STANDARD: &[&str] = &["keep-alive", "proxy-connection"];

/// Whether `strip_hop_by_hop` would remove or rewrite `name` whatever the
/// `Connection` header names (which it is itself).
fn always_stripped(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::TE || NON_STANDARD.contains(&name.as_str())
}

/// Removes hop-by-hop headers and those the `Connection` header names.
/// With `upgrade`, keeps `Upgrade` and `Connection: upgrade`, which a
/// WebSocket handshake needs end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass comparing names finds the few that are there (usually none
    // in a request, `Connection` in a response); only those are removed.
    // A lookup and removal for every hop-by-hop name, twice per request,
    // cost ~5k instructions in the first profile. Both lists stay inline
    // (no allocation) for up to four names.
    let te_named;
    let present: SmallVec<[HeaderName; 4]> = {
        let named: SmallVec<[&str; 4]> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        // Header names are lowercase; `Connection` may spell them otherwise.
        let is_named = |n: &HeaderName| named.iter().any(|c| c.eq_ignore_ascii_case(n.as_str()));
        te_named = is_named(&header::TE);
        headers
            .keys()
            .filter(|n| always_stripped(n) || is_named(n))
            .cloned()
            .collect()
    };
    if present.is_empty() {
        return;
    }
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    for name in &present {
        if name != header::TE || te_named {
            headers.remove(name);
        }
    }
    // TE is hop-by-hop, but "trailers" must reach gRPC servers (unless
    // `Connection` named it too).
    if present.contains(&header::TE) && !te_named {
        let te_trailers = headers
            .get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            });
        headers.remove(header::TE);
        if te_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    if let (true, Some(value)) = (upgrade, upgrade_value) {
        headers.insert(header::UPGRADE, value);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Refuses request heads over `limit` bytes (names and values), whatever
/// the protocol's own framing limits let through.
pub fn check_size(headers: &HeaderMap, limit: usize) -> Result<(), super::error::ProxyError> {
    let size: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if size > limit {
        Err(super::error::ProxyError::HeadersTooLarge { limit })
    } else {
        Ok(())
    }
}

/// Is this an HTTP/1.1 protocol upgrade request (WebSocket)?
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Is this a WebSocket handshake, the one protocol switch the gateway
/// forwards? `Upgrade` must name exactly `websocket`: a request for any
/// other protocol (`h2c`, or a list) has its `Upgrade` removed and goes
/// as an ordinary request, since after a switch to another protocol the
/// connection's later requests would pass no policy and no audit.
pub fn wants_websocket(headers: &HeaderMap) -> bool {
    wants_upgrade(headers) && upgrade_is_websocket(headers)
}

/// Did the upstream's 101 switch to WebSocket (and nothing else)?
pub fn is_websocket_switch(headers: &HeaderMap) -> bool {
    upgrade_is_websocket(headers)
}

fn upgrade_is_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_connection_scoped_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("te", HeaderValue::from_static("trailers, deflate"));
        h.insert("authorization", HeaderValue::from_static("Bearer y"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["te"], "trailers");
        assert!(h.contains_key("authorization"));
    }

    #[test]
    fn leaves_end_to_end_headers_alone() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer y"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
        // Each of them alone is enough to be removed.
        for name in ["keep-alive", "proxy-connection", "transfer-encoding", "te"] {
            let mut h = before.clone();
            h.insert(name, HeaderValue::from_static("x"));
            strip_hop_by_hop(&mut h, false);
            assert_eq!(h, before, "{name}");
        }
        // A TE that Connection names goes, trailers or not.
        let mut h = before.clone();
        h.insert("connection", HeaderValue::from_static("te"));
        h.insert("te", HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
    }

    #[test]
    fn keeps_an_upgrade_when_asked() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    /// Issue #15, item 8: only WebSocket is bridged; an `h2c` (or any
    /// other) upgrade request loses its `Upgrade` and goes as a request.
    #[test]
    fn only_websocket_is_an_upgrade() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("Upgrade, HTTP2-Settings"),
        );
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQCAAAAAAIAAAAA"),
        );
        assert!(!wants_websocket(&h));
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
        for (value, ok) in [
            ("websocket", true),
            ("WebSocket", true),
            ("h2c", false),
            ("websocket, h2c", false),
            ("TLS/1.2", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert("connection", HeaderValue::from_static("upgrade"));
            h.insert("upgrade", HeaderValue::from_static(value));
            assert_eq!(wants_websocket(&h), ok, "{value}");
            assert_eq!(is_websocket_switch(&h), ok, "{value}");
        }
    }
}
