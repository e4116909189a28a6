//! One secret's access token in memory, and the single flight that renews
//! it: requests read the cached token without waiting; when it is due,
//! one task renews it (under the secret's own async lock, so renewing one
//! secret never waits for another's) while the others either go on with
//! the current token (still valid, inside the skew) or wait for the new
//! one (expired). A failure is remembered for a few seconds, so requests
//! fail fast instead of queueing on a token endpoint that is down.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use zeroize::Zeroizing;

use super::error::CredentialError;

/// How early a token is renewed: 10% of its lifetime, at most a minute,
/// so a one-hour token is renewed a minute before it expires and a
/// five-second one half a second before.
pub fn skew(lifetime_secs: u64) -> ChronoDuration {
    let tenth_ms = lifetime_secs.saturating_mul(100);
    ChronoDuration::milliseconds(i64::try_from(tenth_ms.min(60_000)).unwrap_or(60_000))
}

/// An access token as requests use it: shared, zeroized when the last
/// request holding it is done.
#[derive(Clone)]
pub struct AccessToken(Arc<Zeroizing<String>>);

impl AccessToken {
    pub fn new(token: Zeroizing<String>) -> Self {
        AccessToken(Arc::new(token))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The same token (not merely an equal one): what a 401 names.
    fn same(&self, other: &AccessToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// A cached token and when it is due.
#[derive(Clone, Debug)]
pub struct Cached {
    pub token: AccessToken,
    pub expires_at: DateTime<Utc>,
    pub refresh_at: DateTime<Utc>,
}

impl Cached {
    pub fn new(token: AccessToken, expires_at: DateTime<Utc>, lifetime_secs: u64) -> Self {
        Cached {
            token,
            refresh_at: expires_at - skew(lifetime_secs),
            expires_at,
        }
    }
}

/// The last failure, and until when requests get it without a new try.
#[derive(Debug, Clone)]
struct Failure {
    error: CredentialError,
    /// `None`: until the secret is replaced (needs reconnection).
    until: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct State {
    token: Option<Cached>,
    failure: Option<Failure>,
    /// The token an upstream answered 401 to: never used again, even if
    /// the database still holds it as unexpired.
    rejected: Option<AccessToken>,
}

/// What a request finds in the cache.
pub enum Peek {
    /// Use it.
    Fresh(AccessToken),
    /// Fail with it (a recent failure, or the grant revoked).
    Failed(CredentialError),
    /// Renew; the token that may still be used meanwhile, if any.
    Renew(Option<AccessToken>),
}

/// One secret (at one version)'s token and its single flight.
#[derive(Debug, Default)]
pub struct Entry {
    /// Held by the one task renewing the token; never across an agent's
    /// upstream request.
    pub flight: tokio::sync::Mutex<()>,
    state: RwLock<State>,
}

impl Entry {
    pub fn peek(&self, now: DateTime<Utc>) -> Peek {
        let Ok(state) = self.state.read() else {
            return Peek::Renew(None);
        };
        let usable = state
            .token
            .as_ref()
            .filter(|c| now < c.expires_at)
            .map(|c| c.token.clone());
        if let Some(c) = state.token.as_ref().filter(|c| now < c.refresh_at) {
            return Peek::Fresh(c.token.clone());
        }
        if let Some(f) = &state.failure {
            let current = f.until.is_none_or(|until| now < until);
            if current {
                return match usable {
                    Some(token) if f.until.is_some() => Peek::Fresh(token),
                    _ => Peek::Failed(f.error.clone()),
                };
            }
        }
        Peek::Renew(usable)
    }

    /// The token the upstream refused, if it is the one cached: it is
    /// dropped so the next request renews.
    pub fn reject(&self, token: &AccessToken) {
        let Ok(mut state) = self.state.write() else {
            return;
        };
        if state.token.as_ref().is_some_and(|c| c.token.same(token)) {
            state.token = None;
        }
        state.rejected = Some(token.clone());
    }

    /// Whether `token` (as text) is the one an upstream refused.
    pub fn is_rejected(&self, token: &str) -> bool {
        self.state
            .read()
            .ok()
            .and_then(|s| s.rejected.as_ref().map(|r| r.expose() == token))
            .unwrap_or(false)
    }

    pub fn renewed(&self, cached: Cached) {
        if let Ok(mut state) = self.state.write() {
            *state = State {
                token: Some(cached),
                failure: None,
                rejected: None,
            };
        }
    }

    /// Remembers `error` until `until` (`None`: for good).
    pub fn failed(&self, error: CredentialError, until: Option<DateTime<Utc>>) {
        if let Ok(mut state) = self.state.write() {
            if until.is_none() {
                state.token = None;
            }
            state.failure = Some(Failure { error, until });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> AccessToken {
        AccessToken::new(Zeroizing::new(s.into()))
    }

    #[test]
    fn skew_is_a_tenth_up_to_a_minute() {
        assert_eq!(skew(3600), ChronoDuration::seconds(60));
        assert_eq!(skew(5), ChronoDuration::milliseconds(500));
        assert_eq!(skew(0), ChronoDuration::zero());
    }

    #[test]
    fn due_tokens_stay_usable_until_they_expire() {
        let e = Entry::default();
        let now = Utc::now();
        assert!(matches!(e.peek(now), Peek::Renew(None)));
        e.renewed(Cached::new(
            token("a"),
            now + ChronoDuration::seconds(10),
            10,
        ));
        assert!(matches!(e.peek(now), Peek::Fresh(_)));
        let due = now + ChronoDuration::milliseconds(9500);
        assert!(matches!(e.peek(due), Peek::Renew(Some(_))));
        assert!(matches!(
            e.peek(now + ChronoDuration::seconds(11)),
            Peek::Renew(None)
        ));
    }

    #[test]
    fn failures_are_remembered_and_revocation_for_good() {
        let e = Entry::default();
        let now = Utc::now();
        let err = CredentialError::Internal {
            secret: "s".into(),
            reason: "x".into(),
        };
        e.failed(err.clone(), Some(now + ChronoDuration::seconds(5)));
        assert!(matches!(e.peek(now), Peek::Failed(_)));
        assert!(matches!(
            e.peek(now + ChronoDuration::seconds(6)),
            Peek::Renew(None)
        ));
        e.failed(err, None);
        assert!(matches!(
            e.peek(now + ChronoDuration::days(1)),
            Peek::Failed(_)
        ));
    }

    #[test]
    fn a_rejected_token_is_dropped() {
        let e = Entry::default();
        let now = Utc::now();
        let t = token("a");
        e.renewed(Cached::new(
            t.clone(),
            now + ChronoDuration::seconds(100),
            100,
        ));
        e.reject(&t);
        assert!(matches!(e.peek(now), Peek::Renew(None)));
        assert!(e.is_rejected("a"));
    }
}
