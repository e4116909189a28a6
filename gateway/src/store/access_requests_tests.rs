//! The access requests' keying: which refusals ask for what, and how a
//! batch's refusals fold into one sighting per key.

use chrono::TimeZone;

use super::*;

fn refused(agent: &str, method: &str, host: &str, path: &str, secs: i64) -> NewRequestEvent {
    NewRequestEvent {
        at: Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap(),
        agent: Some(agent.into()),
        method: Some(method.into()),
        host: Some(host.into()),
        path: Some(path.into()),
        decision: Decision::DeniedByDefault,
        status: Some(403),
        ..NewRequestEvent::default()
    }
}

#[test]
fn refusals_are_keyed_by_agent_method_host_and_suggested_path() {
    let events = [
        refused("bot", "GET", "api.test", "/v1/models", 3),
        refused("bot", "GET", "api.test", "/v1/chat?page=", 1),
        refused("bot", "POST", "api.test", "/v1/chat", 2),
        refused("bot", "GET", "api.test:8443", "/v1/models", 4),
        refused("other", "GET", "api.test", "/v1/models", 5),
        refused("bot", "GET", "api.test", "/v2/models", 6),
        refused("bot", "GET", "api.test", "/v1/x/y", 0),
    ];
    let refs: Vec<&NewRequestEvent> = events.iter().collect();
    let seen = sightings(&refs);
    let keys: Vec<(&str, &str, &str, &str, i64)> = seen
        .iter()
        .map(|s| (s.agent, s.method, s.host, s.path_pattern.as_str(), s.count))
        .collect();
    assert_eq!(
        keys,
        [
            ("bot", "GET", "api.test", "/v1/**", 3),
            ("bot", "POST", "api.test", "/v1/**", 1),
            ("bot", "GET", "api.test:8443", "/v1/**", 1),
            ("other", "GET", "api.test", "/v1/**", 1),
            ("bot", "GET", "api.test", "/v2/**", 1),
        ]
    );
    // First and last seen span the key's refusals, whatever their order.
    let at = |s: i64| Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap();
    assert_eq!((seen[0].first_seen, seen[0].last_seen), (at(0), at(3)));
}

#[test]
fn an_ungranted_placeholder_asks_for_its_grant_keyed_by_agent_and_secret() {
    let ungranted = |agent: &str, secret: &str, path: &str, secs| NewRequestEvent {
        decision: Decision::Exfiltration,
        ungranted: Some(secret.into()),
        ..refused(agent, "GET", "api.test", path, secs)
    };
    let events = [
        ungranted("bot", "github", "/repos/a", 2),
        // Another host, method or path: the same grant answers it.
        NewRequestEvent {
            method: Some("POST".into()),
            host: Some("uploads.test".into()),
            ..ungranted("bot", "github", "/x/y", 1)
        },
        ungranted("bot", "openai", "/v1/chat", 3),
        ungranted("other", "github", "/repos/a", 4),
        // Denied by default on the same request: a rule request too.
        refused("bot", "GET", "api.test", "/repos/a", 5),
    ];
    let refs: Vec<&NewRequestEvent> = events.iter().collect();
    let seen = sightings(&refs);
    let keys: Vec<(AccessKind, &str, Option<&str>, i64)> = seen
        .iter()
        .map(|s| (s.kind, s.agent, s.secret, s.count))
        .collect();
    assert_eq!(
        keys,
        [
            (AccessKind::Grant, "bot", Some("github"), 2),
            (AccessKind::Grant, "bot", Some("openai"), 1),
            (AccessKind::Grant, "other", Some("github"), 1),
            (AccessKind::Rule, "bot", None, 1),
        ]
    );
    // A grant request shows the first refusal's request.
    assert_eq!(
        (seen[0].method, seen[0].path_pattern.as_str()),
        ("GET", "/repos/**")
    );
}

#[test]
fn only_refusals_that_ask_for_something_count() {
    let mut blocked = refused("bot", "GET", "a.test", "/x", 0);
    blocked.decision = Decision::Blocked;
    // Exfiltration for another reason than a missing grant (a secret
    // sent to another host, a Host header that differs): no grant
    // would make it right.
    let mut exfiltration = refused("bot", "GET", "a.test", "/x", 0);
    exfiltration.decision = Decision::Exfiltration;
    let mut anonymous = refused("bot", "GET", "a.test", "/x", 0);
    anonymous.agent = None;
    let allowed = NewRequestEvent {
        decision: Decision::Allowed,
        ..refused("bot", "GET", "a.test", "/x", 0)
    };
    let events = [blocked, exfiltration, anonymous, allowed];
    let refs: Vec<&NewRequestEvent> = events.iter().collect();
    assert!(sightings(&refs).is_empty());
}

#[test]
fn statuses_and_kinds_have_their_stored_words() {
    let words: Vec<&str> = AccessStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(words, ["open", "allowed", "dismissed"]);
    let words: Vec<&str> = AccessKind::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(words, ["rule", "grant"]);
}
