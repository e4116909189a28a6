//! Host patterns and path globs (`airlock::policy`), as operators type them
//! for rules and secrets.
//!
//! Checks: what parses displays as text that parses back to the same
//! pattern; a pattern matches the host it names; matching ignores ASCII case
//! and a trailing dot; `/**` matches every path a request can carry, and a
//! glob with no special characters that is a canonical, unambiguous path
//! matches its own text; a path inside a glob as a scope (every reading)
//! is under it as a rule (any reading).
//!
//! Input: five lines, `PATTERN`, `GLOB`, `HOST`, `PORT`, `PATH` (the last
//! takes the rest; missing lines are empty, a bad port is 443).

#![no_main]

use std::sync::LazyLock;

use airlock::policy::{HostPattern, PathForms, PathGlob};
use http::uri::PathAndQuery;
use libfuzzer_sys::fuzz_target;

/// `/**`, compiled once: compiling a glob costs more than the rest of a run.
static ANY: LazyLock<PathGlob> =
    LazyLock::new(|| PathGlob::parse(PathGlob::ANY).unwrap_or_else(|e| panic!("/**: {e}")));

struct Input<'a> {
    pattern: &'a str,
    glob: &'a str,
    host: &'a str,
    port: u16,
    path: &'a str,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(5, '\n');
    let mut next = || lines.next().unwrap_or_default();
    let input = Input {
        pattern: next(),
        glob: next(),
        host: next(),
        port: next().trim().parse().unwrap_or(443),
        path: next(),
    };
    host_pattern(&input);
    path_glob(&input);
});

fn host_pattern(input: &Input<'_>) {
    let Ok(pattern) = HostPattern::parse(input.pattern) else {
        return;
    };
    let shown = pattern.to_string();
    let again = HostPattern::parse(&shown).unwrap_or_else(|e| {
        panic!(
            "{:?} displays as {shown:?}, which is refused: {e}",
            input.pattern
        )
    });
    assert_eq!(again, pattern, "{:?} -> {shown:?}", input.pattern);

    let (host, port) = named_host(&shown);
    let port = port.unwrap_or(input.port);
    assert!(
        pattern.matches(&host, port),
        "{shown:?} does not match its own host {host:?}:{port}"
    );

    let (host, port) = (input.host, input.port);
    let verdict = pattern.matches(host, port);
    assert_eq!(
        verdict,
        pattern.matches(&host.to_ascii_uppercase(), port),
        "{shown:?} on {host:?}: case matters"
    );
    assert_eq!(
        verdict,
        pattern.matches(&format!("{host}."), port),
        "{shown:?} on {host:?}: a trailing dot matters"
    );
}

/// A host (and the port, if any) that the displayed pattern `shown` names:
/// itself for a name or address, a subdomain for `*.suffix`.
fn named_host(shown: &str) -> (String, Option<u16>) {
    let (host, port) = match shown.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']').unwrap_or((rest, ""));
            (inside, after.strip_prefix(':'))
        }
        None => match shown.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (shown, None),
        },
    };
    let port = port.map(|p| {
        p.parse()
            .unwrap_or_else(|e| panic!("{shown:?}: port {p:?}: {e}"))
    });
    let host = match host {
        "*" => "any.host.example".to_owned(),
        _ => match host.strip_prefix('*') {
            Some(suffix) => format!("sub{suffix}"),
            None => host.to_owned(),
        },
    };
    (host, port)
}

fn path_glob(input: &Input<'_>) {
    // Only paths a request line can carry: what the gateway matches against.
    let path = PathAndQuery::try_from(input.path)
        .ok()
        .map(|pq| pq.path().to_owned());
    if let Some(path) = &path {
        assert!(ANY.matches(path), "/** does not match {path:?}");
    }
    let Ok(glob) = PathGlob::parse(input.glob) else {
        return;
    };
    let shown = glob.to_string();
    let again = PathGlob::parse(&shown).unwrap_or_else(|e| {
        panic!(
            "{:?} displays as {shown:?}, which is refused: {e}",
            input.glob
        )
    });
    assert_eq!(again, glob);
    if let Some(path) = &path {
        assert_eq!(glob.matches(path), again.matches(path));
        if let Ok(forms) = PathForms::parse(path)
            && glob.matches(path)
        {
            assert!(
                glob.matches_any(&forms),
                "{shown:?}: {path:?} in scope, not under the rule"
            );
        }
    }
    // Globs match canonical paths (`policy::canonical`): only a glob that
    // is one, read one way, can match its own text.
    let canonical =
        PathForms::parse(&shown).is_ok_and(|f| !f.is_ambiguous() && f.canonical() == shown);
    let literal = canonical && !shown.contains(['*', '?', '[', ']', '{', '}', '\\']);
    if literal {
        assert!(
            glob.matches(&shown),
            "the literal glob {shown:?} does not match itself"
        );
    }
}
