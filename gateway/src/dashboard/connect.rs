//! A secret's "Connect": the OAuth2 authorization-code flow with PKCE
//! (RFC 7636, S256) and state, run by the operator's browser, so the
//! refresh token goes from the provider to the vault without anyone
//! copying it.
//!
//! 1. The Secrets page posts to `/secrets/NAME/connect` (a session and its
//!    CSRF token, like every form). [`Connect::start`] makes the state and
//!    the PKCE verifier, remembers them with the secret and the session,
//!    and the browser is sent to the provider's authorization URL with
//!    the state also in a cookie.
//! 2. The provider sends the browser back to [`CALLBACK_PATH`] on the
//!    dashboard. This address is fixed (it is registered at the provider),
//!    so it carries no session path key; what admits the callback is the
//!    state, which must be a pending one *and* equal the cookie (so a
//!    code obtained by someone else cannot be planted in the operator's
//!    browser), of a session still logged in.
//! 3. [`crate::service::Service::connect_secret`] exchanges the code
//!    (with the verifier) at the token endpoint and seals the tokens.
//!
//! The cookie is `SameSite=Lax`, unlike the dashboard's others, because
//! it must come back on the provider's cross-site redirect; it names a
//! pending flow only. Nothing of a flow is in the database.

use std::time::Duration;

use openidconnect::url::Url;
use openidconnect::{PkceCodeChallenge, PkceCodeVerifier};

use crate::credentials::AuthorizationCode;
use crate::dashboard::pending::Pending;
use crate::dashboard::public_url::PublicUrl;
use crate::dashboard::session::{SessionCtx, random_token, same_token};
use crate::service::connect::ConnectTarget;

/// Where the provider sends the browser back: register
/// `ORIGIN/oauth2/callback` as the OAuth client's redirect URI, where
/// ORIGIN is the dashboard's public URL or `http://<listener>`.
pub const CALLBACK_PATH: &str = "/oauth2/callback";
/// The cookie carrying the state between the redirect and the callback.
pub const CONNECT_COOKIE: &str = "airlock_connect";
/// How long the operator has at the provider.
pub const CONNECT_LIFETIME: Duration = Duration::from_secs(600);
/// Bounds memory against someone clicking "Connect" in a loop.
const MAX_PENDING: usize = 32;

/// Why a Connect did not complete (before the code exchange).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "this Connect expired, was already used, or was started in another browser or session: \
         press Connect again"
    )]
    UnknownState,
    #[error("the authorization URL {0:?} is not a URL")]
    BadUrl(String),
    #[error("the provider did not authorize the connection: {0}")]
    Provider(String),
}

/// A started Connect, until its callback.
pub struct Flow {
    pub target: ConnectTarget,
    /// The session that started it: the callback completes only while it
    /// is logged in, and sends the browser back to its pages.
    pub session: SessionCtx,
    verifier: PkceCodeVerifier,
}

impl Flow {
    /// The code exchange's request, for the code the provider returned.
    pub fn code<'a>(&'a self, code: &'a str, redirect_uri: &'a str) -> AuthorizationCode<'a> {
        AuthorizationCode {
            code,
            redirect_uri,
            verifier: self.verifier.secret(),
        }
    }
}

/// The Connect flows of this dashboard.
pub struct Connect {
    redirect_uri: String,
    pending: Pending<Flow>,
}

impl Connect {
    /// `origin`: where browsers reach the dashboard.
    pub fn new(origin: &PublicUrl) -> Connect {
        Connect {
            redirect_uri: origin.join(CALLBACK_PATH),
            pending: Pending::new(CONNECT_LIFETIME, MAX_PENDING),
        }
    }

    /// The redirect URI to register at the provider.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Starts a flow: the provider's authorization URL to send the browser
    /// to, and the state for the cookie.
    pub fn start(
        &self,
        target: ConnectTarget,
        session: SessionCtx,
    ) -> Result<(String, String), ConnectError> {
        let grant = &target.grant;
        let base = grant.authorize_url.as_deref().unwrap_or_default();
        let mut url = Url::parse(base).map_err(|_| ConnectError::BadUrl(base.to_owned()))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = random_token();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &grant.client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("state", &state)
                .append_pair("code_challenge", challenge.as_str())
                .append_pair("code_challenge_method", challenge.method().as_str());
            if let Some(scope) = grant.scope_param() {
                q.append_pair("scope", &scope);
            }
            for (name, value) in &grant.authorize_params {
                q.append_pair(name, value);
            }
        }
        self.pending.insert(
            state.clone(),
            Flow {
                target,
                session,
                verifier,
            },
        );
        Ok((url.into(), state))
    }

    /// The flow a callback completes: its state must be pending and equal
    /// the cookie the browser sent.
    pub fn finish(&self, state: &str, cookie_state: Option<&str>) -> Result<Flow, ConnectError> {
        if state.is_empty() || !cookie_state.is_some_and(|c| same_token(c, state)) {
            return Err(ConnectError::UnknownState);
        }
        self.pending.take(state).ok_or(ConnectError::UnknownState)
    }
}

/// The state cookie: `Lax` so the provider's redirect brings it back,
/// scoped to the callback.
pub fn cookie(value: &str, max_age: Duration) -> String {
    format!(
        "{CONNECT_COOKIE}={value}; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age={}",
        max_age.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GrantType, OAuth2Grant, SecretName};

    fn target() -> ConnectTarget {
        let mut grant = OAuth2Grant::new(
            GrantType::RefreshToken,
            "https://idp.example/token".into(),
            "client 1".into(),
            vec!["openid".into(), "offline_access".into()],
        );
        grant.authorize_url = Some("https://idp.example/auth?tenant=t1".into());
        grant
            .authorize_params
            .insert("access_type".into(), "offline".into());
        ConnectTarget {
            secret: SecretName::parse("mail").unwrap(),
            secret_id: uuid::Uuid::new_v4(),
            grant,
        }
    }

    fn session() -> SessionCtx {
        let sessions = crate::dashboard::session::Sessions::default();
        let new = sessions.create();
        sessions
            .get(&new.cookie, new.base.strip_prefix("/s/"))
            .expect("a session")
    }

    #[test]
    fn the_authorization_url_carries_pkce_state_and_the_presets_parameters() {
        let c = Connect::new(&PublicUrl::of_listener("127.0.0.1:10254".parse().unwrap()));
        let (url, state) = c.start(target(), session()).unwrap();
        let url = Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["tenant"], "t1", "the URL's own query is kept");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "client 1");
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:10254/oauth2/callback");
        assert_eq!(q["scope"], "openid offline_access");
        assert_eq!(q["state"], state);
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["access_type"], "offline");
        let flow = c.finish(&state, Some(&state)).unwrap();
        // The challenge is the verifier's SHA-256, as the provider checks.
        let expected = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            flow.code("c", "r").verifier.to_owned(),
        ));
        assert_eq!(q["code_challenge"], expected.as_str());
    }

    #[test]
    fn a_callback_needs_its_own_cookie_and_works_once() {
        let c = Connect::new(&PublicUrl::of_listener("127.0.0.1:1".parse().unwrap()));
        let (_, state) = c.start(target(), session()).unwrap();
        assert!(matches!(
            c.finish(&state, None),
            Err(ConnectError::UnknownState)
        ));
        assert!(matches!(
            c.finish(&state, Some("another")),
            Err(ConnectError::UnknownState)
        ));
        assert!(c.finish(&state, Some(&state)).is_ok());
        assert!(matches!(
            c.finish(&state, Some(&state)),
            Err(ConnectError::UnknownState)
        ));
        assert!(matches!(
            c.finish("", Some("")),
            Err(ConnectError::UnknownState)
        ));
    }
}
