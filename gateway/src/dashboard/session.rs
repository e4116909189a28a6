//! Logged-in sessions, kept in the daemon's memory: a restart logs the
//! operator out, and nothing about a session is ever in the database.
//!
//! A session is two secrets, and a request must carry both:
//!
//! - the **cookie** (`airlock_session`, 256 random bits). The table is
//!   keyed by its SHA-256 so a memory dump of the table alone cannot be
//!   replayed as a cookie;
//! - the **path key** (128 random bits), the first segment of every page's
//!   address: `/s/KEY/agents`. [`super::session_path`] takes it off the
//!   path before routing.
//!
//! Why two: cookies ignore ports, and Chromium sends even a `Secure`
//! `__Host-` cookie set by `https://127.0.0.1:A` to `http://127.0.0.1:B`
//! (loopback counts as a secure context; measured, see
//! `docs/dashboard.md`). So any local process that serves a page the
//! operator opens (an agent's "preview" on `127.0.0.1:3000`) is sent the
//! dashboard's cookies. The session cookie is therefore scoped to
//! `Path=/s/KEY/`: the browser sends it only to addresses under the path
//! key, which such a page cannot know, and a cookie that leaked anyway is
//! refused without the key that was issued with it.
//!
//! Each session also has its own CSRF token, put in every form and checked
//! on every state-changing request.

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
    /// The path key this session's cookie is valid with.
    path_key: String,
    csrf: String,
    created: Instant,
    flash: Option<Flash>,
}

/// What a handler knows about the logged-in operator's session.
#[derive(Debug, Clone)]
pub struct SessionCtx {
    key: [u8; 32],
    pub csrf: String,
    /// Where this session's pages live: `/s/KEY` (no trailing slash).
    pub base: String,
}

impl SessionCtx {
    /// The address of dashboard page `path` (`/agents`) in this session.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A session just started: what the login response hands the browser.
#[derive(Debug)]
pub struct NewSession {
    pub cookie: String,
    /// `/s/KEY`, where the browser goes next.
    pub base: String,
}

impl NewSession {
    /// The `Set-Cookie` value that gives the browser this session.
    pub fn set_cookie(&self) -> String {
        session_cookie(&self.base, &self.cookie, SESSION_LIFETIME)
    }
}

/// The path prefix of a session's pages.
pub const PATH_PREFIX: &str = "/s/";

fn base_of(path_key: &str) -> String {
    format!("{PATH_PREFIX}{path_key}")
}

#[derive(Debug, Default)]
pub struct Sessions {
    table: Mutex<HashMap<[u8; 32], Entry>>,
}

/// 256 random bits, URL-safe base64.
pub fn random_token() -> String {
    random_bits::<32>()
}

/// `N` random bytes, URL-safe base64 (no `/`, so it fits one path segment).
fn random_bits<const N: usize>() -> String {
    let mut bytes = [0u8; N];
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

    /// Starts a session: a fresh cookie and path key.
    pub fn create(&self) -> NewSession {
        let cookie = random_token();
        let path_key = random_bits::<16>();
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
                path_key: path_key.clone(),
                csrf: random_token(),
                created: Instant::now(),
                flash: None,
            },
        );
        NewSession {
            cookie,
            base: base_of(&path_key),
        }
    }

    /// The live session the cookie names, if the request came with the
    /// path key issued with it. A cookie alone (no key, or another
    /// session's) is no session.
    pub fn get(&self, cookie: &str, path_key: Option<&str>) -> Option<SessionCtx> {
        let path_key = path_key?;
        let key = key_of(cookie);
        let mut table = self.lock();
        match table.get(&key) {
            Some(e) if e.created.elapsed() >= SESSION_LIFETIME => {
                table.remove(&key);
                None
            }
            Some(e) if same_token(&e.path_key, path_key) => Some(SessionCtx {
                key,
                csrf: e.csrf.clone(),
                base: base_of(&e.path_key),
            }),
            _ => None,
        }
    }

    /// Is this session still live (not ended, not expired)?
    pub fn is_live(&self, session: &SessionCtx) -> bool {
        self.lock()
            .get(&session.key)
            .is_some_and(|e| e.created.elapsed() < SESSION_LIFETIME)
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
/// Only for cookies that are no session (the login form's CSRF cookie):
/// `Path=/` reaches every port of the host.
/// (`Secure` would add nothing: the dashboard serves plain HTTP on
/// loopback, and Chromium sends `Secure` cookies to plain-HTTP loopback.)
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        max_age.as_secs()
    )
}

/// The session cookie's `Set-Cookie`: scoped to the session's own pages
/// (`base` is `/s/KEY`), so the browser never sends it anywhere else.
/// An empty value with a zero age removes it (logout).
pub fn session_cookie(base: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path={base}/; HttpOnly; SameSite=Strict; Max-Age={}",
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

    fn path_key(new: &NewSession) -> &str {
        new.base.strip_prefix(PATH_PREFIX).unwrap()
    }

    #[test]
    fn sessions_live_until_ended() {
        let s = Sessions::default();
        let new = s.create();
        let (cookie, key) = (new.cookie.as_str(), Some(path_key(&new)));
        let ctx = s.get(cookie, key).unwrap();
        assert_eq!(ctx.at("/agents"), format!("{}/agents", new.base));
        assert!(s.get("forged", key).is_none());
        assert!(s.is_live(&ctx));
        s.set_flash(&ctx, true, "done");
        assert_eq!(s.take_flash(&ctx).unwrap().text, "done");
        assert!(s.take_flash(&ctx).is_none());
        s.end(&ctx);
        assert!(s.get(cookie, key).is_none());
        assert!(!s.is_live(&ctx));
    }

    #[test]
    fn a_cookie_needs_the_path_key_it_was_issued_with() {
        let s = Sessions::default();
        let mine = s.create();
        let other = s.create();
        assert!(s.get(&mine.cookie, None).is_none(), "a cookie alone");
        assert!(s.get(&mine.cookie, Some("")).is_none());
        assert!(
            s.get(&mine.cookie, Some(path_key(&other))).is_none(),
            "another session's key"
        );
        assert!(s.get(&mine.cookie, Some(path_key(&mine))).is_some());
        // The cookie is scoped to the session's own pages.
        let set = mine.set_cookie();
        assert!(set.contains(&format!("Path={}/;", mine.base)), "{set}");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        // One path segment of URL-safe characters.
        assert!(
            path_key(&mine)
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
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
