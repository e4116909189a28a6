//! The path glob an access request suggests for the request it records
//! (docs/policy.md, "Access requests"): the request's first path segment
//! and everything under it, so one click covers an API's family of calls
//! (`/v1/**` for `POST /v1/chat/completions`) without covering the whole
//! host.
//!
//! The suggestion is built from the path as the trail holds it (raw, its
//! query values removed). A first segment that a glob could misread (glob
//! characters, a backslash) or that a rule would match in another
//! spelling (a percent escape: rules match the canonical path) gives
//! `/**`, the whole host, rather than a glob that might not cover the
//! request it was made for; the operator sees the pattern before allowing.

use super::PathGlob;

/// The path glob an allow rule for a request to `path` would carry.
pub fn suggest_path(path: &str) -> String {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let Some(rest) = path.strip_prefix('/') else {
        // `OPTIONS *`, or an absolute-form target the trail kept as is.
        return PathGlob::ANY.to_owned();
    };
    let (first, deeper) = match rest.split_once('/') {
        Some((first, _)) => (first, true),
        None => (rest, false),
    };
    let plain = first
        .bytes()
        .all(|b| !matches!(b, b'*' | b'?' | b'[' | b']' | b'{' | b'}' | b'\\' | b'%'));
    if first.is_empty() || !plain {
        return PathGlob::ANY.to_owned();
    }
    // `/v1/**` does not match `/v1` itself: a one-segment path is
    // suggested as it is.
    if deeper {
        format!("/{first}/**")
    } else {
        format!("/{first}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_segment_and_everything_under_it() {
        let cases = [
            ("/v1/chat/completions", "/v1/**"),
            ("/v1/", "/v1/**"),
            ("/repos/o/r/pulls?state=&page=", "/repos/**"),
            ("/health", "/health"),
            ("/health?verbose=", "/health"),
            ("/", "/**"),
            ("", "/**"),
            ("*", "/**"),
            ("//double", "/**"),
            ("/a*b/c", "/**"),
            ("/[x]/c", "/**"),
            ("/{a,b}/c", "/**"),
            ("/a\\b/c", "/**"),
            ("/caf%C3%A9/menu", "/**"),
        ];
        for (path, want) in cases {
            assert_eq!(suggest_path(path), want, "{path:?}");
        }
    }

    #[test]
    fn a_suggestion_is_a_valid_glob_that_covers_its_request() {
        for path in ["/v1/chat/completions", "/health", "/", "/a*b/c", "/x/y?k="] {
            let glob = PathGlob::parse(&suggest_path(path)).unwrap();
            let bare = path.split_once('?').map_or(path, |(p, _)| p);
            assert!(glob.matches(bare), "{path:?} -> {}", glob.as_str());
        }
        // ...and no more than its first segment's family.
        let glob = PathGlob::parse(&suggest_path("/v1/chat")).unwrap();
        assert!(!glob.matches("/v2/chat") && !glob.matches("/v1x/chat"));
    }
}
