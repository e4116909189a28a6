//! Logged-in sessions, kept in the daemon's memory: a restart logs the
//! operator out, and nothing about a session is ever in the database.
//!
//! The cookie holds 256 random bits; the table is keyed by their SHA-256 so
//! a memory dump of the table alone cannot be replayed as a cookie. Each
//! session has its own CSRF token, put in every form and checked on every
//! state-changing request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "airlock_session";
/// The login form's double-submit CSRF cookie (there is no session yet).
pub const LOGIN_COOKIE: &str = "airlock_login";
/// A session ends this long after login, used or not.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Bounds memory: logins beyond this push out the oldest session.
const MAX_SESSIONS: usize = 256;

/// A message shown once on the next page (after a redirect).
#[derive(Debug, Clone)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

#[derive(Debug)]
struct Entry {
    csrf: String,
    created: Instant,
    flash: Option<Flash>,
}

/// What a handler knows about the logged-in operator's session.
#[derive(Debug, Clone)]
pub struct SessionCtx {
    key: [u8; 32],
    pub csrf: String,
}

#[derive(Debug, Default)]
pub struct Sessions {
    table: Mutex<HashMap<[u8; 32], Entry>>,
}

/// 256 random bits, URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn key_of(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        // A poisoned lock only means another request panicked mid-update;
        // the map itself is still consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session; returns the cookie value.
    pub fn create(&self) -> String {
        let cookie = random_token();
        let mut table = self.lock();
        table.retain(|_, e| e.created.elapsed() < SESSION_LIFETIME);
        if table.len() >= MAX_SESSIONS
            && let Some(oldest) = table.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| *k)
        {
            table.remove(&oldest);
        }
        table.insert(
            key_of(&cookie),
            Entry {
                csrf: random_token(),
                created: Instant::now(),
                flash: None,
            },
        );
        cookie
    }

    /// The live session the cookie names, if any.
    pub fn get(&self, cookie: &str) -> Option<SessionCtx> {
        let key = key_of(cookie);
        let mut table = self.lock();
        match table.get(&key) {
            Some(e) if e.created.elapsed() < SESSION_LIFETIME => Some(SessionCtx {
                key,
                csrf: e.csrf.clone(),
            }),
            Some(_) => {
                table.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn end(&self, session: &SessionCtx) {
        self.lock().remove(&session.key);
    }

    pub fn set_flash(&self, session: &SessionCtx, ok: bool, text: impl Into<String>) {
        if let Some(e) = self.lock().get_mut(&session.key) {
            e.flash = Some(Flash {
                ok,
                text: text.into(),
            });
        }
    }

    pub fn take_flash(&self, session: &SessionCtx) -> Option<Flash> {
        self.lock()
            .get_mut(&session.key)
            .and_then(|e| e.flash.take())
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: never readable by scripts, never sent cross-site.
/// (`Secure` would go here under TLS; the dashboard serves plain HTTP on
/// loopback, where browsers would drop a `Secure` cookie.)
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        max_age.as_secs()
    )
}

/// Constant-time comparison of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_live_until_ended() {
        let s = Sessions::default();
        let cookie = s.create();
        let ctx = s.get(&cookie).unwrap();
        assert!(s.get("forged").is_none());
        s.set_flash(&ctx, true, "done");
        assert_eq!(s.take_flash(&ctx).unwrap().text, "done");
        assert!(s.take_flash(&ctx).is_none());
        s.end(&ctx);
        assert!(s.get(&cookie).is_none());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; airlock_session=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }
}
